# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/example parses as the README says: groups, how each cluster is reached, vaulted secrets
that decrypt, and the interpreter pinned to ansible-playbook's Python."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "inventories" / "example"
BIN = Path(sys.executable).parent


def run(tool, *args):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / tool), "-i", str(EXAMPLE), "--vault-password-file", str(EXAMPLE / "vault-password.txt"), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_groups_and_how_each_cluster_is_reached():
    inventory = json.loads(run("ansible-inventory", "--list"))
    assert sorted(inventory["fleet"]["hosts"]) == ["prod-eu-1", "prod-us-1", "staging-eu-1"]
    assert sorted(inventory["env_prod"]["hosts"]) == ["prod-eu-1", "prod-us-1"]
    assert sorted(inventory["region_eu_west"]["hosts"]) == ["prod-eu-1", "staging-eu-1"]
    hostvars = inventory["_meta"]["hostvars"]
    for host, values in hostvars.items():
        assert values["ansible_connection"] == "local"
        assert values["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
        assert ("fleetdr_kubeconfig" in values and "fleetdr_context" in values) or \
            ("fleetdr_host" in values and "fleetdr_api_key" in values), host
        assert set(values["fleetdr_cluster_labels"]) == {"env", "region"}
    assert hostvars["staging-eu-1"]["rook_ceph_cluster"]["monitor"]["count"] == 1
    assert hostvars["prod-eu-1"]["rook_ceph_cluster"]["monitor"]["count"] == 3
    # secrets are vault-encrypted in the files
    assert "__ansible_vault" in json.dumps(hostvars["prod-us-1"]["fleetdr_api_key"])
    assert "__ansible_vault" in json.dumps(hostvars["prod-eu-1"]["velero_s3_secret_access_key"])
    for path in EXAMPLE.rglob("*.yml"):
        assert "example/secret/key" not in path.read_text() and "example.token" not in path.read_text()


def test_vaulted_secrets_decrypt():
    out = run("ansible", "prod-us-1", "-m", "ansible.builtin.debug", "-a", "msg={{ fleetdr_api_key | length }}-{{ velero_s3_access_key_id }}")
    assert '"msg": "34-AKIAEXAMPLEEXAMPLE"' in out, out
