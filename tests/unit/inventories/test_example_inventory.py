# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/example/: what ansible-inventory makes of it (groups, every host reachable one way, labels
matching the groups), vault strings that open with the password its README documents, and settings
that are real options of the roles and modules they feed."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.vault import VaultLib, VaultSecret

REPO = pathlib.Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "inventories" / "example"
BIN = pathlib.Path(sys.executable).parent
HOSTS = {"prod-eu-1": ("prod", "eu"), "prod-eu-2": ("prod", "eu"), "prod-us-1": ("prod", "us"),
         "staging-eu-1": ("staging", "eu"), "staging-us-1": ("staging", "us")}


def documented_password():
    match = re.search(r"example password \*\*`([^`]+)`\*\*", (EXAMPLE / "README.md").read_text())
    assert match, "inventories/example/README.md must document the example vault password"
    return match.group(1)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    password_file = tmp_path_factory.mktemp("vault") / "pass"
    password_file.write_text(documented_password() + "\n")
    run = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(EXAMPLE), "--vault-password-file", str(password_file), "--list"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert run.returncode == 0, run.stderr
    assert "WARNING" not in run.stderr, run.stderr
    return json.loads(run.stdout)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!vault", lambda loader, node: {"__vault__": loader.construct_scalar(node)})


def vault_values():
    for path in sorted(EXAMPLE.rglob("*.yml")):
        for key, value in (yaml.load(path.read_text(), Loader=_Loader) or {}).items():
            if isinstance(value, dict) and "__vault__" in value:
                yield path, key, value["__vault__"]


def test_groups_per_environment_and_region_under_fleet(inventory):
    assert sorted(inventory["fleet"]["children"]) == ["env_prod", "env_staging", "region_eu", "region_us"]
    assert sorted(inventory["fleet"]["hosts"]) == sorted(HOSTS)
    for host, (env, region) in HOSTS.items():
        assert host in inventory["env_" + env]["hosts"] and host in inventory["region_" + region]["hosts"]
    assert sum(len(inventory["env_" + e]["hosts"]) for e in ("prod", "staging")) == len(HOSTS)


def test_every_cluster_is_reachable_one_way_and_labelled_as_its_groups(inventory):
    hostvars = inventory["_meta"]["hostvars"]
    for host, (env, region) in HOSTS.items():
        hv = hostvars[host]
        assert hv["fleetdr_cluster_labels"] == {"env": env, "region": region}
        assert hv["ansible_connection"] == "local"
        assert hv["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
        if hv.get("fleetdr_kubeconfig"):
            assert hv["fleetdr_context"] == host and "fleetdr_host" not in hv
            assert hv["fleetdr_kubeconfig"] == "~/.kube/fleet-{0}.yaml".format(env)
        else:  # URL + token, the token vault-encrypted
            assert hv["fleetdr_host"].startswith("https://") and "__ansible_vault" in hv["fleetdr_api_key"]
            assert os.path.isabs(hv["fleetdr_ca_cert"])
        assert "__ansible_vault" in hv["velero_s3_secret_access_key"]
        assert hv["fleetdr_s3_region"] == {"eu": "eu-west-1", "us": "us-east-1"}[region]
        assert hv["rook_ceph_cluster"]["monitor"]["count"] == (3 if env == "prod" else 1)
    assert [h for h in HOSTS if not hostvars[h].get("fleetdr_kubeconfig")] == ["prod-us-1"]


def test_vault_strings_open_with_the_documented_password():
    vault = VaultLib([("default", VaultSecret(documented_password().encode()))])
    found = dict(((path.name, key), vault.decrypt(text.encode()).decode()) for path, key, text in vault_values())
    assert set(key for _name, key in found) == {"velero_s3_access_key_id", "velero_s3_secret_access_key", "fleetdr_api_key"}
    assert all(value and "not-real" in value or value.startswith("AKIAEXAMPLE") for value in found.values())
    for path in EXAMPLE.rglob("*"):  # no secret in the clear: every key/token/password variable is vaulted
        if path.suffix == ".yml":
            for key, value in (yaml.load(path.read_text(), Loader=_Loader) or {}).items():
                if re.search(r"(secret|api_key|token|password)", key):
                    assert isinstance(value, dict) and "__vault__" in value, (path.name, key)


def _role_options(role):
    return yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]


def _module_options(module):
    """The options a module documents (DOCUMENTATION block parsed as YAML)."""
    source = (REPO / "plugins" / "modules" / (module + ".py")).read_text()
    doc = yaml.safe_load(re.search(r"DOCUMENTATION = r?('''|\"\"\")(.*?)\1", source, re.S).group(2))
    return doc["options"]


def _argspec(options):
    spec = {}
    for name, doc in options.items():
        entry = dict((k, doc[k]) for k in ("type", "elements", "choices", "required") if k in doc)
        if "suboptions" in doc:
            entry["options"] = _argspec(doc["suboptions"])
        spec[name] = entry
    return spec


def test_group_settings_are_options_of_the_roles_and_modules(inventory):
    velero, rook = _role_options("velero"), _role_options("rook_ceph")
    cluster_spec = _argspec(_module_options("rook_cluster"))
    for host in HOSTS:
        hv = inventory["_meta"]["hostvars"][host]
        for key in hv:
            if key.startswith("velero_"):
                assert key in velero, key
            if key.startswith("rook_ceph_"):
                assert key in rook, key
        checked = ArgumentSpecValidator(cluster_spec).validate(dict(hv["rook_ceph_cluster"]))
        assert not checked.error_messages, (host, checked.error_messages)
        assert not ArgumentSpecValidator(dict((k, v) for k, v in _argspec(velero).items() if k == "velero_resources")) \
            .validate({"velero_resources": hv["velero_resources"]}).error_messages
