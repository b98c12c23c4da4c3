# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/example/ as it is, with the lab's endpoints put in its place: the status playbook reaches
every one of its five hosts (four through contexts of the environment kubeconfig, prod-us-1 by URL and
a vault-encrypted token opened with the README's example password), and --limit env_prod selects the
production clusters with their labels."""

import base64
import json
import re
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
CONTEXTS = {"prod-eu-1": "c1", "prod-eu-2": "c2", "staging-eu-1": "c1", "staging-us-1": "c2"}  # prod-us-1: c2 by URL


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("example-lab"), clusters=2)
    try:
        yield handle
    finally:
        handle.down()


def _password():
    return re.search(r"example password \*\*`([^`]+)`\*\*", (EXAMPLE / "README.md").read_text()).group(1)


def example_on_lab(lab, work):
    """A copy of the example inventory whose cluster endpoints are the lab's; the rest untouched."""
    inventory = work / "inventory"
    shutil.copytree(EXAMPLE, inventory)
    password = work / "vault-pass"
    password.write_text(_password() + "\n")
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    for host, context in CONTEXTS.items():
        hosts["all"]["children"]["fleet"]["hosts"][host]["fleetdr_context"] = context
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    for env in ("prod", "staging"):
        path = inventory / "group_vars" / ("env_%s.yml" % env)
        text = path.read_text().replace("~/.kube/fleet-%s.yaml" % env, str(lab.kubeconfig))
        assert str(lab.kubeconfig) in text
        path.write_text(text)
    # prod-us-1: URL + token + CA of lab cluster c2, the token vault-encrypted with the example password
    config = yaml.safe_load(lab.kubeconfig.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == "c2")
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    ca = work / "c2-ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    vaulted = subprocess.run([str(Path(sys.executable).with_name("ansible-vault")), "encrypt_string", "--vault-password-file",
                              str(password), user["token"], "--name", "fleetdr_api_key"],
                             check=True, capture_output=True, text=True).stdout
    host_vars = inventory / "host_vars" / "prod-us-1.yml"
    text = host_vars.read_text()
    text = text.replace("https://api.prod-us-1.example.com:6443", cluster["server"]).replace("/etc/fleetdr/ca/prod-us-1.crt", str(ca))
    text = text[:text.index("fleetdr_api_key: !vault")] + vaulted
    host_vars.write_text(text)
    return inventory, password


def test_status_runs_on_the_example_inventory_structure(lab, collections, tmp_path):
    inventory, password = example_on_lab(lab, tmp_path)
    play = PlaybookRunner(types.SimpleNamespace(inventory=inventory), collections, tmp_path)  # -i the example's copy
    proc = play("status", "--vault-password-file", str(password), "-e", "fail_on=never", "-e", "wait_timeout=20")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    report_dir, report = play.report("status", "status")
    clusters = dict((c["name"], c) for c in report["clusters"])
    assert sorted(clusters) == ["prod-eu-1", "prod-eu-2", "prod-us-1", "staging-eu-1", "staging-us-1"]
    for name, cluster in clusters.items():
        # the API server answered every host (authenticated, TLS verified): only Velero is missing in the lab
        assert "Velero is not installed" in cluster["reason"], (name, json.dumps(cluster)[:2000])
    assert clusters["prod-us-1"]["labels"] == {"env": "prod", "region": "us"}

    proc = play("status", "--vault-password-file", str(password), "--limit", "env_prod", "-e", "fail_on=never", "-e", "wait_timeout=20")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    _dir, report = play.report("status", "status")
    assert sorted(c["name"] for c in report["clusters"]) == ["prod-eu-1", "prod-eu-2", "prod-us-1"]
    assert "example-token" not in (_dir / "report.json").read_text()
