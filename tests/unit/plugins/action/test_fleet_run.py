# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_run's input checks and the migrate helpers (no cluster needed)."""

import pytest

from ansible_collections.fleetdr.kube.plugins.action.fleet_run import misspelt_variables, probe_report_dir, selector_matches, validate_options
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import minor_version
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.migrate import (
    open_readonly_location, readonly_location_spec, source_credential)
from fakes import FakeKube


@pytest.mark.parametrize("operation,name,options,source,option", [
    ("backup", "", {}, None, "name"),
    ("backup", "Bad_Name", {}, None, "name"),
    ("backup", "ok", {"ttl": "forever"}, None, "ttl"),
    ("backup", "ok", {"wait": True}, None, "options"),  # unknown option
    ("backup", "ok", {"included_namespaces": "a,b", "label_selector": "app=x", "or_label_selectors": ["a=b"]}, None, "options"),
    ("restore", "", {}, None, "backup_name"),
    ("restore", "", {"backup_name": "b", "existing_resource_policy": "replace"}, None, "options"),
    ("schedule", "nightly", {"schedule": "61 * * * *"}, None, "schedule"),
    ("schedule", "nightly", {"schedule": "0 2 * * *", "from_backup": "b", "ttl": "1h"}, None, "from_backup"),
    ("migrate", "mv", {}, None, "source"),
    ("migrate", "mv", {"namespace_mapping": {"a": "B_"}}, "c1", "namespace_mapping"),
    ("drill", "", {}, None, "name"),
    ("drill", "weekly", {"scratch_suffix": "Drill_1"}, None, "scratch_suffix"),
    ("drill", "weekly", {"backup_name": "a", "schedule_name": "b"}, None, "options"),
    ("drill", "weekly", {"included_namespaces": ["Not A Namespace"]}, None, "included_namespaces"),
])
def test_bad_input_names_the_option(operation, name, options, source, option):
    with pytest.raises(ValidationError) as info:
        validate_options(operation, name, options, source)
    assert info.value.option == option


def test_survey_strings_are_converted():
    params = validate_options("backup", "nightly", {"included_namespaces": "shop, db", "default_volumes_to_fs_backup": "true"})
    assert params["backup_spec"]["includedNamespaces"] == ["shop", "db"]
    assert params["backup_spec"]["defaultVolumesToFsBackup"] is True


def test_restore_default_name_is_deterministic():
    first = validate_options("restore", "", {"backup_name": "nightly", "included_namespaces": ["shop"]})
    again = validate_options("restore", "", {"backup_name": "nightly", "included_namespaces": ["shop"]})
    other = validate_options("restore", "", {"backup_name": "nightly", "included_namespaces": ["db"]})
    assert first["run_name"] == again["run_name"] != other["run_name"]
    assert first["run_name"].startswith("nightly-restore-")


def test_selector_matches_labels():
    labels = {"env": "prod", "region": "eu-west"}
    assert selector_matches({}, labels)
    assert selector_matches({"env": "prod"}, labels)
    assert not selector_matches({"env": "prod", "region": "us-east"}, labels)


def test_readonly_location_reads_the_source_prefix_with_the_sources_credentials():
    source = {"spec": {"provider": "aws", "objectStorage": {"bucket": "fleetdr", "prefix": "c1"},
                       "config": {"region": "us-east-1"}, "credential": {"name": "src-creds", "key": "cloud"}, "default": True}}
    spec = readonly_location_spec(source, {"name": "fleetdr-from-c1", "key": "cloud"})
    assert spec["accessMode"] == "ReadOnly" and spec["default"] is False
    assert spec["objectStorage"] == {"bucket": "fleetdr", "prefix": "c1"}
    assert spec["credential"] == {"name": "fleetdr-from-c1", "key": "cloud"}


def test_the_source_credential_is_its_locations_secret_or_velero_s_default():
    kube = FakeKube()
    kube.secrets["src-creds"] = {"metadata": {"name": "src-creds"}, "data": {"aws": "a2V5cw=="}}
    kube.secrets["cloud-credentials"] = {"metadata": {"name": "cloud-credentials"}, "data": {"cloud": "ZGVmYXVsdA=="}}
    assert source_credential(kube, {"spec": {"credential": {"name": "src-creds", "key": "aws"}}}) == {"aws": "a2V5cw=="}
    assert source_credential(kube, {"spec": {}}) == {"cloud": "ZGVmYXVsdA=="}
    assert source_credential(kube, {"spec": {"credential": {"name": "missing", "key": "cloud"}}}) is None


def test_the_readonly_location_carries_the_source_credentials_and_fails_at_once_when_unavailable():
    kube = FakeKube()
    source = {"spec": {"provider": "aws", "objectStorage": {"bucket": "velero-c1", "prefix": "c1"}, "config": {}}}

    def validated_as(phase, message=None):
        def on_create(obj):
            obj["status"] = {"phase": phase, "message": message, "lastValidationTime": "2026-12-04T00:00:00Z"}
        return on_create

    kube.on_create["backupstoragelocations"] = validated_as("Available")
    bsl = open_readonly_location(kube, {"app.kubernetes.io/managed-by": "fleetdr.kube"}, "fleetdr-from-c1", source,
                                 {"cloud": "c291cmNlLWtleXM="}, 5)
    assert bsl["spec"]["credential"] == {"name": "fleetdr-from-c1", "key": "cloud"} and bsl["spec"]["accessMode"] == "ReadOnly"
    assert kube.secrets["fleetdr-from-c1"]["data"] == {"cloud": "c291cmNlLWtleXM="}

    kube = FakeKube()
    kube.on_create["backupstoragelocations"] = validated_as("Unavailable", "AccessDenied: Access Denied")
    with pytest.raises(FleetdrError) as caught:
        open_readonly_location(kube, {}, "fleetdr-from-c1", source, {"cloud": "c291cmNlLWtleXM="}, 5)
    assert caught.value.msg == "read-only location fleetdr-from-c1 on the source's bucket is Unavailable: AccessDenied: Access Denied"


def test_minor_version():
    assert minor_version("v1.18.1") == (1, 18)
    assert minor_version(None) is None and minor_version("latest") is None


def test_fleet_restore_and_velero_restore_name_a_restore_alike():
    from ansible_collections.fleetdr.kube.plugins.modules import velero_restore
    from ansible_collections.fleetdr.kube.plugins.module_utils.velero import spec

    options = {"backup_name": "nightly", "included_namespaces": ["shop"], "namespace_mapping": {"shop": "shop2"}}
    module_params = dict((key, None) for key in velero_restore.argspec())
    module_params.update(options)
    assert validate_options("restore", "", options)["run_name"] == spec.default_restore_name("nightly", module_params)


def test_misspelt_variables_are_caught_and_real_ones_left_alone():
    known = ["included_namespaces", "excluded_namespaces", "backup_name", "wait_timeout"]
    given = {"includd_namespaces": "db", "backup_name": "x", "velero_s3_access_key_id": "k", "wait_timout": 5, "unrelated": 1}
    assert misspelt_variables(given, known) == [("includd_namespaces", "included_namespaces"), ("wait_timout", "wait_timeout")]


def test_report_dir_probe_leaves_nothing_and_names_the_option(tmp_path):
    probe_report_dir(str(tmp_path / "a" / "b"), "report_dir")
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValidationError) as caught:
        probe_report_dir(str(blocker / "reports"), "report_path")
    assert caught.value.option == "report_path" and "reports cannot be written under" in caught.value.msg


def test_the_task_runs_with_the_inherited_heap_frozen_and_leaves_the_collector_as_it_found_it(monkeypatch):
    # The worker's inherited objects are frozen out of the cyclic collector while the task runs, and the
    # first-generation threshold raised; both are put back afterwards, also when the task fails.
    import gc

    from ansible_collections.fleetdr.kube.plugins.action import fleet_run

    seen = []

    def task(self, tmp=None, task_vars=None):
        seen.append((gc.get_freeze_count(), gc.get_threshold()))
        raise RuntimeError("the task failed")

    monkeypatch.setattr(fleet_run.ActionModule, "_run", task)
    before = gc.get_threshold()
    gc.unfreeze()
    with pytest.raises(RuntimeError):
        fleet_run.ActionModule.run(object.__new__(fleet_run.ActionModule))
    assert seen[0][0] > 1000 and seen[0][1][0] >= fleet_run.GC_FIRST_GENERATION_THRESHOLD and seen[0][1][1:] == before[1:]
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
