# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role fleetdr.kube.velero rendered for many hosts on the controller, with a real Ansible templar."""

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.fleetdr.kube.plugins.plugin_utils.role_objects import RoleObjects

KEYS = {"velero_s3_access_key_id": "AKIDEXAMPLE", "velero_s3_secret_access_key": "wJalrXUtnFEMIEXAMPLEKEY", "velero_s3_bucket": "fleet"}


def _render(hostvars, hosts=None):
    return RoleObjects(Templar(loader=DataLoader(), variables={})).render_all(hosts or sorted(hostvars), hostvars)


def _location(objects):
    return next(o for o in objects if o["kind"] == "BackupStorageLocation")


def test_each_host_gets_its_own_prefix_and_the_shared_settings():
    rendered = _render(dict(("c%d" % i, dict(KEYS)) for i in range(1, 6)))
    for host, (settings, objects, switched_off) in rendered.items():
        assert _location(objects)["spec"]["objectStorage"] == {"bucket": "fleet", "prefix": host}
        assert settings["velero_namespace"] == "velero" and settings["velero_s3_bucket"] == "fleet"
        kinds = [o["kind"] for o in objects]
        assert kinds.index("CustomResourceDefinition") < kinds.index("Namespace") < kinds.index("Deployment")
        assert sum(1 for k in kinds if k == "CustomResourceDefinition") >= 10
        assert switched_off == [] or all(o["kind"] in ("DaemonSet", "VolumeSnapshotLocation") for o in switched_off)
    # the hosts' objects are their own (a change to one host's objects is not seen by another)
    _location(rendered["c1"][1])["spec"]["objectStorage"]["prefix"] = "changed"
    assert _location(rendered["c2"][1])["spec"]["objectStorage"]["prefix"] == "c2"


def test_a_host_setting_overrides_the_default_and_is_typed_by_the_argument_spec():
    hostvars = {"c1": dict(KEYS), "c2": dict(KEYS, velero_bsl_prefix="", velero_node_agent="false", velero_namespace="backup")}
    rendered = _render(hostvars)
    assert _location(rendered["c1"][1])["spec"]["objectStorage"]["prefix"] == "c1"
    assert "prefix" not in _location(rendered["c2"][1])["spec"]["objectStorage"]
    assert rendered["c2"][0]["velero_node_agent"] is False
    assert {"kind": "DaemonSet", "apiVersion": "apps/v1", "metadata": {"name": "node-agent", "namespace": "backup"}} in rendered["c2"][2]
    assert _location(rendered["c2"][1])["metadata"]["namespace"] == "backup"
    assert _location(rendered["c1"][1])["metadata"]["namespace"] == "velero"


def test_a_wrong_type_and_missing_keys_are_refused_naming_the_host():
    with pytest.raises(ValueError, match="host c2"):
        _render({"c1": dict(KEYS), "c2": dict(KEYS, velero_node_agent="sometimes")})
    with pytest.raises(ValueError, match="velero_s3_access_key_id.*c1"):
        _render({"c1": {"velero_s3_bucket": "fleet"}})


def test_each_template_text_is_compiled_once_for_all_hosts():
    objects = RoleObjects(Templar(loader=DataLoader(), variables={}))
    environment = objects.host_templar._engine.environment
    compiled = []
    memoised = environment.from_string
    environment.from_string = lambda source, *args: compiled.append(str(source)) or memoised(source, *args)
    objects.render_all(["c1", "c2", "c3", "c4"], dict(("c%d" % i, dict(KEYS)) for i in range(1, 5)))
    per_host = [text for text in compiled if compiled.count(text) >= 4]
    assert per_host  # the per-host expression and defaults reach the environment once per host...
    # ...and are compiled once: the memo hands back the same template every time
    assert all(memoised(text) is memoised(text) for text in set(per_host))


def test_hosts_template_only_what_is_their_own():
    """Settings every host shares are resolved once for the fleet; each host templates only the names
    that depend on it (here the location prefix, from inventory_hostname) and its own templates."""
    objects = RoleObjects(Templar(loader=DataLoader(), variables={}))
    texts = []
    template = objects.host_templar.template
    objects.host_templar.template = lambda value, *args, **kwargs: texts.append(str(value)) or template(value, *args, **kwargs)
    rendered = objects.render_all(["c1", "c2", "c3"], dict(("c%d" % i, dict(KEYS)) for i in range(1, 4)))
    fleet_wide, per_host = texts[0], texts[1:]
    assert "'velero_namespace': velero_namespace" in fleet_wide and "'velero_version': velero_version" in fleet_wide
    expressions = [text for text in per_host if text.startswith("{{ {")]
    assert expressions == ["{{ {'velero_bsl_prefix': velero_bsl_prefix} }}"] * 3
    assert all(settings["velero_namespace"] == "velero" and settings["velero_version"] for settings, _o, _s in rendered.values())
