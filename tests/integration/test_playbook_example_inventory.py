# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/example/ as it is, on a lab: its files unchanged but for prod-us-1's API URL and token, with
HOME holding the files it names (~/.kube/fleet.yaml with contexts prod-eu-1 and staging-eu-1, the CA
~/.kube/ca/prod-us-1.pem). The status playbook reaches all three hosts - two through kubeconfig contexts,
prod-us-1 by URL, CA and a vault-encrypted token opened with the example's vault-password.txt - and
--limit env_prod selects the production clusters."""

import base64
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner  # noqa: E402

EXAMPLE = REPO / "inventories" / "example"
LAB_CLUSTER = {"prod-eu-1": "c1", "staging-eu-1": "c2", "prod-us-1": "c2"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("example-lab"), clusters=2)
    try:
        yield handle
    finally:
        handle.down()


def _entry(config, kind, name):
    return next(item[kind[:-1]] for item in config[kind] if item["name"] == name)


def example_on_lab(lab, work):
    """The example inventory copied as it is; the lab behind the names it uses."""
    inventory = work / "inventory"
    shutil.copytree(EXAMPLE, inventory)
    home = work / "home"
    (home / ".kube" / "ca").mkdir(parents=True)
    config = yaml.safe_load(lab.kubeconfig.read_text())
    fleet = {"apiVersion": "v1", "kind": "Config", "current-context": "prod-eu-1", "clusters": [], "users": [], "contexts": []}
    for host in ("prod-eu-1", "staging-eu-1"):  # the contexts the example's host_vars name, on the lab's clusters
        context = _entry(config, "contexts", LAB_CLUSTER[host])
        fleet["clusters"].append({"name": host, "cluster": _entry(config, "clusters", context["cluster"])})
        fleet["users"].append({"name": host, "user": _entry(config, "users", context["user"])})
        fleet["contexts"].append({"name": host, "context": {"cluster": host, "user": host}})
    (home / ".kube" / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    # prod-us-1: lab cluster c2 by URL, its CA where the example says, its token vault-encrypted with the example's password
    context = _entry(config, "contexts", LAB_CLUSTER["prod-us-1"])
    cluster, user = _entry(config, "clusters", context["cluster"]), _entry(config, "users", context["user"])
    (home / ".kube" / "ca" / "prod-us-1.pem").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    # the token on stdin: a token starting with "-" would be read as an option
    vaulted = subprocess.run([str(Path(sys.executable).with_name("ansible-vault")), "encrypt_string", "--vault-password-file",
                              str(inventory / "vault-password.txt"), "--stdin-name", "fleetdr_api_key"],
                             input=user["token"], check=True, capture_output=True, text=True).stdout
    host_vars = inventory / "host_vars" / "prod-us-1.yml"
    text = host_vars.read_text()
    assert "https://api.prod-us-1.example.com:6443" in text and "fleetdr_api_key: !vault" in text
    text = text.replace("https://api.prod-us-1.example.com:6443", cluster["server"])
    host_vars.write_text(text[:text.index("fleetdr_api_key: !vault")] + vaulted)
    return inventory, home


def test_status_reaches_every_host_of_the_example_inventory(lab, collections, tmp_path, monkeypatch):
    inventory, home = example_on_lab(lab, tmp_path)
    monkeypatch.setenv("HOME", str(home))  # ~/.kube/... in the example's files
    play = PlaybookRunner(types.SimpleNamespace(inventory=inventory), collections, tmp_path)  # -i the example's copy
    password = ["--vault-password-file", str(inventory / "vault-password.txt")]
    proc = play("status", *password, "-e", "fail_on=never", "-e", "wait_timeout=20")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    _dir, report = play.report("status", "status")
    clusters = dict((c["name"], c) for c in report["clusters"])
    assert sorted(clusters) == ["prod-eu-1", "prod-us-1", "staging-eu-1"]
    for name, cluster in clusters.items():
        # the API server answered every host (authenticated, TLS verified): only Velero is missing in the lab
        assert "Velero is not installed" in cluster["reason"], (name, cluster)
    assert clusters["prod-us-1"]["labels"] == {"env": "prod", "region": "us-east"}

    proc = play("status", *password, "--limit", "env_prod", "-e", "fail_on=never", "-e", "wait_timeout=20")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    report_dir, report = play.report("status", "status")
    assert sorted(c["name"] for c in report["clusters"]) == ["prod-eu-1", "prod-us-1"]
    token = _entry(yaml.safe_load(lab.kubeconfig.read_text()), "users", "c2")["token"]
    assert token not in (report_dir / "report.json").read_text() and token not in proc.stdout + proc.stderr
