# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a drill restores: the namespaces named, else the backup's own explicit list; never every namespace."""

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.drill import _not_ready, drill_namespaces
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import PreflightError


class Job(object):
    def __init__(self, **params):
        self.params = params


def backup(*namespaces):
    return {"metadata": {"name": "nightly-c1"}, "spec": {"includedNamespaces": list(namespaces)}}


def test_the_option_wins_then_the_backups_own_list():
    assert drill_namespaces(Job(included_namespaces=["shop"]), backup("shop", "db")) == ["shop"]
    assert drill_namespaces(Job(), backup("shop", "db")) == ["shop", "db"]


@pytest.mark.parametrize("namespaces", [(), ("*",)])
def test_a_backup_of_every_namespace_needs_the_option(namespaces):
    with pytest.raises(PreflightError) as caught:
        drill_namespaces(Job(), backup(*namespaces))
    assert "included_namespaces" in str(caught.value)


def test_not_ready_names_each_workload_short_of_its_replicas():
    items = {"web": {"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop-drill"}, "spec": {"replicas": 2},
                     "status": {"readyReplicas": 1}},
             "db": {"kind": "StatefulSet", "metadata": {"name": "db", "namespace": "shop-drill"}, "spec": {"replicas": 1},
                    "status": {"readyReplicas": 1}}}
    assert _not_ready(items) == ["Deployment shop-drill/web 1/2 ready"]
