# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The day-2 fleet operations with a least-privilege ServiceAccount token, not the lab's admin token.

Velero is installed on a private 3-cluster lab with the admin token (installing needs
cluster-admin). Then, on every cluster, ServiceAccount automation/fleetdr is bound to the
ClusterRoles of roles/velero/files/rbac/fleetdr-operator.yml exactly as that file's header tells
users to, a token is requested for it (TokenRequest, as `kubectl create token` does) and the
playbooks run from an inventory whose kubeconfigs carry only that token: backup with volume data,
status, migrate c1 -> c2, c3, schedule, drill. The install playbook is refused with that token
(the token really is not an admin's), and nothing of it is created.
"""

import base64
import concurrent.futures
import json
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from helpers import VeleroInstall, wait_for  # noqa: E402
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner  # noqa: E402

RBAC_FILE = REPO / "roles" / "velero" / "files" / "rbac" / "fleetdr-operator.yml"
CLUSTERS = ("c1", "c2", "c3")
FILE = "data/payload.txt"


def _header_commands():
    """The `kubectl create ...binding` commands of the RBAC file's header, as users would run them."""
    lines, current = [], ""
    for line in RBAC_FILE.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if current or text.startswith("kubectl "):
            current = (current + " " + text.split("#")[0].rstrip("\\").strip()).strip()
            if not text.split("#")[0].rstrip().endswith("\\"):
                lines.append(current)
                current = ""
    return lines


def _token(lab, cluster):
    from kubernetes import client

    api = client.CoreV1Api(lab.api(cluster))
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    return api.create_namespaced_service_account_token("fleetdr", "automation", request).status.token


def _grant(lab, cluster, work):
    """automation/fleetdr bound as the RBAC file says; a kubeconfig holding its token only."""
    lab.kubectl("apply", "-f", str(RBAC_FILE), context=cluster)
    lab.kubectl("create", "namespace", "automation", context=cluster)
    lab.kubectl("create", "serviceaccount", "fleetdr", "-n", "automation", context=cluster)
    for command in _header_commands():
        lab.kubectl(*command.split()[1:], context=cluster)
    admin = yaml.safe_load(lab.cluster_kubeconfig(cluster).read_text())
    token = _token(lab, cluster)
    assert token and token != admin["users"][0]["user"]["token"]
    config = dict(admin, users=[{"name": "fleetdr", "user": {"token": token}}],
                  contexts=[{"name": cluster, "context": {"cluster": cluster, "user": "fleetdr"}}], **{"current-context": cluster})
    path = work / ("%s-fleetdr.yaml" % cluster)
    path.write_text(yaml.safe_dump(config))
    return path, token


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("rbac-lab"), clusters=len(CLUSTERS))
    try:
        with concurrent.futures.ThreadPoolExecutor(len(CLUSTERS)) as pool:
            list(pool.map(lambda c: VeleroInstall(handle, c, prefix="rbac/" + c, version="v1.18.1", node_agent=True).install(wait=True),
                          handle.clusters))
        handle.cli("seed", "busybox", "--cluster", "c1")
        wait_for(lambda: "Bound" in handle.kubectl("get", "pvc", "busybox-data", "-n", "busybox", "-o", "jsonpath={.status.phase}",
                                                   context="c1").stdout, "busybox-data to be Bound")
        handle.cli("volume", "put", "--cluster", "c1", "-n", "busybox", "--pvc", "busybox-data", "--text", "least privilege\n", FILE)
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def granted(lab, tmp_path_factory):
    """(inventory path, tokens): the lab's inventory with each cluster's kubeconfig replaced by the token one."""
    work = tmp_path_factory.mktemp("rbac-kubeconfigs")
    inventory = yaml.safe_load(lab.inventory.read_text())
    tokens = []
    hosts = inventory["all"]["children"]["fleet"]["hosts"]
    for cluster in CLUSTERS:
        path, token = _grant(lab, cluster, work)
        hosts[cluster]["fleetdr_kubeconfig"] = str(path)
        tokens.append(token)
    target = work / "inventory.yml"
    target.write_text(yaml.safe_dump(inventory))
    return target, tokens


@pytest.fixture(scope="module")
def play(lab, granted, collections, tmp_path_factory):
    outputs = []
    runner = PlaybookRunner(types.SimpleNamespace(inventory=granted[0]), collections, tmp_path_factory.mktemp("rbac-work"), outputs)
    runner.outputs = outputs
    return runner


def _verdicts(report):
    return dict((c["name"], c["verdict"]) for c in report["clusters"])


def test_the_token_is_not_an_admin(lab, granted, play):
    proc = play("install", "-e", "velero_s3_access_key_id=x", "-e", "velero_s3_secret_access_key=y", "--limit", "c2")
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "forbidden" in text.lower(), text[-3000:]
    assert 'User \\"system:serviceaccount:automation:fleetdr\\"' in text or 'User "system:serviceaccount:automation:fleetdr"' in text


def test_backup_status_migrate_schedule_and_drill_with_the_token(lab, granted, play):
    play("backup", "-e", "backup_name=lp1", "-e", "included_namespaces=busybox", "-e", "default_volumes_to_fs_backup=true",
         "--limit", "c1", check_rc=0)
    report = play.report("backup", "lp1")[1]
    assert _verdicts(report) == {"c1": "succeeded"}
    volumes = [v for v in report["clusters"][0].get("volumes") or [] if v["pvc"] == "busybox-data"]
    assert volumes and volumes[0]["moved"] and volumes[0]["bytes"] == 16, report

    play("status", "-e", "fail_on=never", check_rc=0)
    report = play.report("status", "status")[1]
    assert set(_verdicts(report)) == set(CLUSTERS), report
    # c1 holds a backup; c2 and c3 none of their own yet: nothing failed for want of a permission
    assert _verdicts(report)["c1"] == "succeeded", report["clusters"][0]
    assert not any("forbidden" in (c["reason"] or "") for c in report["clusters"]), report["clusters"]

    play("migrate", "-e", "migrate_name=lpmove", "-e", "source_cluster=c1", "-e", "included_namespaces=busybox",
         "-e", "default_volumes_to_fs_backup=true", check_rc=0)
    report = play.report("migrate", "lpmove")[1]
    assert set(_verdicts(report).values()) == {"succeeded"}, report
    for target in ("c2", "c3"):
        out = lab.cli("volume", "ls", "--cluster", target, "-n", "busybox", "--pvc", "busybox-data", "--sha256").stdout
        assert FILE in out, out

    play("schedule", "-e", "schedule_name=lpnightly", "-e", "schedule='0 2 * * *'", "-e", "included_namespaces=busybox",
         "--limit", "c1", check_rc=0)
    schedules = json.loads(lab.kubectl("get", "schedules.velero.io", "-n", "velero", "-o", "json", context="c1").stdout)["items"]
    assert any(s["metadata"]["name"].startswith("lpnightly") for s in schedules), schedules

    play("drill", "-e", "drill_name=lpdrill", "-e", "backup_name=lp1", "--limit", "c1", check_rc=0)


def test_no_token_is_printed(granted, play):
    _inventory, tokens = granted
    for text in play.outputs:
        for token in tokens:
            assert token not in text
            assert base64.b64encode(token.encode()).decode() not in text


def test_the_rbac_file_is_what_its_header_binds():
    names = [item["metadata"]["name"] for item in yaml.safe_load(RBAC_FILE.read_text())["items"]]
    commands = _header_commands()
    assert len(commands) == 3
    for name in names:
        assert any("--clusterrole=" + name in command for command in commands), (name, commands)
