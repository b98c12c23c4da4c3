# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup vault's Ceph health is read once per run, for every cluster that keeps its backups there."""

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet import job as jobs


def test_the_vault_is_looked_up_once_even_when_it_cannot_be_read():
    job = jobs.FleetJob("backup", "nightly", {"ceph_health_gate": "enforce"})
    asked = []

    def resolve(name):
        asked.append(name)
        return None  # not an inventory host

    job.resolve_cluster = resolve
    for attempt in range(3):
        with pytest.raises(FleetdrError) as caught:
            job.vault_health("c9", deadline=None)
        assert "the vault cluster c9 is not an inventory host" in caught.value.msg, attempt
    assert asked == ["c9"]
