# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the integration tests that run playbooks against a lab."""

import re


class Recap(dict):
    """{host: {ok, changed, failed, ...}} from a PLAY RECAP.

    A host that no counted task ran on is absent from Ansible's recap: the fleet playbooks run
    their work once for all clusters and fail only the clusters that failed. Such a host reads
    as all zeros.
    """

    def __missing__(self, host):
        return {"ok": 0, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 0, "rescued": 0, "ignored": 0}


def recap(proc_or_text):
    text = getattr(proc_or_text, "stdout", proc_or_text)
    hosts = Recap()
    for line in text.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            hosts[match.group(1)] = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2)))
    return hosts


NAMESPACE_KINDS = {
    "cm": "list_namespaced_config_map",
    "pvc": "list_namespaced_persistent_volume_claim",
    "svc": "list_namespaced_service",
    "secret": "list_namespaced_secret",
    "sa": "list_namespaced_service_account",
}


def namespace_state(core_api, namespace, kinds=("cm", "pvc", "svc")):
    """{(kind, name): (uid, resourceVersion)} of a namespace and the listed kinds in it: any write shows."""
    state = {}
    for kind in kinds:
        for item in getattr(core_api, NAMESPACE_KINDS[kind])(namespace).items:
            state[(kind, item.metadata.name)] = (item.metadata.uid, item.metadata.resource_version)
    ns = core_api.read_namespace(namespace)
    state[("ns", namespace)] = (ns.metadata.uid, ns.metadata.resource_version)
    return state
