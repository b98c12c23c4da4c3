# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers shared by the integration tests that run playbooks against a lab."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path


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


def api_get(lab, cluster, path):
    """GET an API path on a lab cluster as plain JSON; None when it is not there."""
    api = lab.api(cluster)
    try:
        response = api.call_api(*api.param_serialize("GET", path, header_params={"Accept": "application/json"},
                                                     auth_settings=["BearerToken"]))
        response.read()
        return json.loads(response.data) if response.status == 200 else None
    finally:
        api.close()


ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


class PlaybookRunner(object):
    """Runs ``ansible-playbook fleetdr.kube.<playbook>`` on a lab's inventory from a work directory.

    ``outputs`` (a list) collects every stdout+stderr, for secret scans.
    """

    def __init__(self, lab, collections, work, outputs=None):
        assert ANSIBLE_PLAYBOOK.exists(), "ansible-playbook is not installed next to %s" % sys.executable
        self.lab, self.collections, self.work = lab, collections, work
        self.outputs = outputs if outputs is not None else []

    def __call__(self, playbook, *extra, check_rc=None, env=None):
        env = dict(os.environ, **(env or {}))
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORKS": "5",
        })
        target = playbook if "/" in playbook else "fleetdr.kube." + playbook  # a path, or one of the collection's
        cmd = [str(ANSIBLE_PLAYBOOK), "-i", str(self.lab.inventory), target, *extra]
        proc = subprocess.run(cmd, cwd=self.work, env=env, capture_output=True, text=True, timeout=600, check=False)
        self.outputs.append(proc.stdout + proc.stderr)
        if check_rc is not None:
            assert proc.returncode == check_rc, proc.stdout[-8000:] + proc.stderr[-3000:]
        return proc

    def report(self, operation, name):
        """The newest report directory of that run, with its parsed report.json."""
        dirs = sorted((self.work / "fleetdr-reports").glob("%s-%s-*" % (operation, name)))
        assert dirs, "no report for %s %s" % (operation, name)
        return dirs[-1], json.loads((dirs[-1] / "report.json").read_text())
