import json

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ConflictError, FleetdrError, NotFoundError, ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, spec as specs

from fakes import FakeKube


def kube_with_bsl(phase="Available"):
    kube = FakeKube()
    kube.objects[("backupstoragelocations", "default")] = {
        "metadata": {"name": "default"}, "spec": {"provider": "aws", "default": True, "objectStorage": {"bucket": "b"}},
        "status": {"phase": phase, "message": "bucket gone" if phase == "Unavailable" else ""}}
    return kube


def velero_starts(kube, name):
    """What Velero's backup controller writes at start (Velero pkg/controller/backup_controller.go prepareBackupRequest)."""
    obj = kube.objects[("backups", name)]
    obj["spec"].setdefault("ttl", "720h0m0s")
    obj["spec"].setdefault("storageLocation", "default")
    obj["spec"]["excludedResources"] = obj["spec"].get("excludedResources", []) + list(objects._AUTO_EXCLUDED)
    obj["spec"].setdefault("includedNamespaces", ["*"])
    obj["status"] = {"phase": "Completed"}


def test_create_backup_records_requested_spec():
    kube = kube_with_bsl()
    spec = specs.build_backup_spec({"included_namespaces": ["shop"], "ttl": "24h"})
    changed, obj, diff = objects.ensure_backup(kube, "b1", spec, {"team": "a"})
    assert changed and kube.writes == [("create", "backups", "b1")]
    assert json.loads(obj["metadata"]["annotations"][names.ANNOTATION_REQUESTED_SPEC]) == spec
    assert diff["after"]["spec"] == spec and diff["before"] == {}


def test_second_run_is_unchanged_despite_velero_mutations():
    kube = kube_with_bsl()
    spec = specs.build_backup_spec({"included_resources": ["pods"]})
    objects.ensure_backup(kube, "b1", spec)
    velero_starts(kube, "b1")
    changed, obj, dummy = objects.ensure_backup(kube, "b1", spec)
    assert not changed and len(kube.writes) == 1


def test_naming_the_location_velero_defaulted_is_no_change():
    # A Backup recorded without a location (Velero wrote its default in) is the same as one naming that
    # default; naming another location is a difference.
    kube = kube_with_bsl()
    objects.ensure_backup(kube, "b1", {"includedNamespaces": ["a"]})
    velero_starts(kube, "b1")
    assert objects.spec_differences({"includedNamespaces": ["a"], "storageLocation": "default"}, kube.get("backups", "b1")) == []
    assert objects.spec_differences({"includedNamespaces": ["a"], "storageLocation": "other"},
                                    kube.get("backups", "b1")) == ["storageLocation"]


def test_unrecorded_backup_compared_tolerantly():
    kube = kube_with_bsl()
    kube.objects[("backups", "b2")] = {"metadata": {"name": "b2"}, "spec": {"includedResources": ["pods"]}}
    velero_starts(kube, "b2")
    assert objects.spec_differences({"includedResources": ["pods"]}, kube.get("backups", "b2")) == []
    assert objects.spec_differences({"includedResources": ["pods"], "ttl": "720h"}, kube.get("backups", "b2")) == []
    assert objects.spec_differences({"includedResources": ["secrets"]}, kube.get("backups", "b2")) == ["includedResources"]


def test_different_spec_under_same_name_is_a_clear_conflict():
    kube = kube_with_bsl()
    objects.ensure_backup(kube, "b1", {"includedNamespaces": ["a"]})
    with pytest.raises(ConflictError) as err:
        objects.ensure_backup(kube, "b1", {"includedNamespaces": ["b"], "ttl": "1h0m0s"})
    assert "immutable" in err.value.msg and "includedNamespaces" in err.value.msg and "ttl" in err.value.msg
    assert err.value.context["differences"]["includedNamespaces"] == {"requested": ["b"], "existing": ["a"]}
    assert len(kube.writes) == 1


def test_check_mode_writes_nothing():
    kube = kube_with_bsl()
    changed, obj, dummy = objects.ensure_backup(kube, "b1", {}, check_mode=True)
    assert changed and obj["metadata"]["name"] == "b1" and kube.writes == []


def test_missing_or_unavailable_location_fails_before_create():
    kube = kube_with_bsl()
    with pytest.raises(NotFoundError) as err:
        objects.ensure_backup(kube, "b1", {"storageLocation": "nope"})
    assert err.value.context["option"] == "storage_location"
    bad = kube_with_bsl("Unavailable")
    with pytest.raises(FleetdrError) as err:
        objects.ensure_backup(bad, "b1", {})
    assert "bucket gone" in err.value.msg
    assert kube.writes == [] and bad.writes == []


def test_label_change_on_existing_backup_is_applied():
    kube = kube_with_bsl()
    objects.ensure_backup(kube, "b1", {}, {"a": "1"})
    changed, obj, diff = objects.ensure_backup(kube, "b1", {}, {"a": "2"})
    assert changed and obj["metadata"]["labels"]["a"] == "2"
    assert diff["before"]["metadata"]["labels"] == {"a": "1"}


def test_delete_goes_through_delete_backup_request():
    kube = kube_with_bsl()
    objects.ensure_backup(kube, "b1", {})

    def velero_deletes(dbr):  # successful deletion: Backup and request both disappear
        kube.objects.pop(("backups", dbr["spec"]["backupName"]))
        kube.objects.pop(("deletebackuprequests", dbr["metadata"]["name"]))

    kube.on_create["deletebackuprequests"] = velero_deletes
    changed, obj, request = objects.delete_backup(kube, "b1", wait=True, timeout=5)
    assert changed and obj is None
    created = [w for w in kube.writes if w[1] == "deletebackuprequests"]
    assert created and created[0][0] == "create"
    assert request is None  # the request deleted itself
    assert objects.delete_backup(kube, "b1") == (False, None, None)


def test_failed_delete_request_reports_velero_errors():
    kube = kube_with_bsl()
    objects.ensure_backup(kube, "b1", {})

    def velero_refuses(dbr):
        dbr["status"] = {"phase": "Processed", "errors": ["backup is still in progress"]}

    kube.on_create["deletebackuprequests"] = velero_refuses
    with pytest.raises(FleetdrError) as err:
        objects.delete_backup(kube, "b1", wait=True, timeout=5)
    assert "still in progress" in err.value.msg


def test_delete_request_is_labelled_like_velero_cli():
    kube = kube_with_bsl()
    objects.ensure_backup(kube, "b1", {})
    changed, obj, body = objects.delete_backup(kube, "b1", check_mode=True)
    assert changed and kube.writes == [("create", "backups", "b1")]
    assert body["spec"] == {"backupName": "b1"}
    assert body["metadata"]["labels"]["velero.io/backup-name"] == "b1"
    assert body["metadata"]["labels"]["velero.io/backup-uid"] == "uid-b1"


def test_schedule_create_update_and_idempotence():
    kube = kube_with_bsl()
    desired = objects.schedule_spec("0 2 * * *", {"includedNamespaces": ["a"]})
    assert objects.ensure_schedule(kube, "s1", desired)[0]
    kube.objects[("schedules", "s1")]["spec"]["skipImmediately"] = False  # Velero writes this back
    assert objects.ensure_schedule(kube, "s1", desired)[0] is False
    paused = objects.schedule_spec("0 2 * * *", {"includedNamespaces": ["a"]}, paused=True)
    changed, obj, diff = objects.ensure_schedule(kube, "s1", paused)
    assert changed and obj["spec"]["paused"] is True and obj["spec"]["skipImmediately"] is False
    assert diff["before"]["spec"]["paused"] is False


def test_template_from_backup_prefers_recorded_spec():
    kube = kube_with_bsl()
    spec = {"includedNamespaces": ["shop"], "ttl": "24h0m0s"}
    objects.ensure_backup(kube, "b1", spec)
    velero_starts(kube, "b1")
    assert objects.template_from_backup(kube, "b1") == spec
    kube.objects[("backups", "raw")] = {"metadata": {"name": "raw"},
                                        "spec": {"includedNamespaces": ["x"], "excludedResources": list(objects._AUTO_EXCLUDED),
                                                 "volumeGroupSnapshotLabelKey": "velero.io/volume-group"}}
    assert objects.template_from_backup(kube, "raw") == {"includedNamespaces": ["x"]}
    with pytest.raises(NotFoundError):
        objects.template_from_backup(kube, "missing")


def test_newest_completed_backup_of_schedule():
    kube = kube_with_bsl()
    for name, phase, start in (("s-1", "Completed", "2026-01-01T01:00:00Z"), ("s-2", "Completed", "2026-01-02T01:00:00Z"),
                               ("s-3", "PartiallyFailed", "2026-01-03T01:00:00Z")):
        kube.objects[("backups", name)] = {"metadata": {"name": name, "labels": {"velero.io/schedule-name": "s"}},
                                           "status": {"phase": phase, "startTimestamp": start}}
    assert objects.resolve_restore_source(kube, schedule_name="s")["metadata"]["name"] == "s-2"
    with pytest.raises(NotFoundError) as err:
        objects.resolve_restore_source(kube, schedule_name="other")
    assert err.value.context["option"] == "schedule_name"
    with pytest.raises(NotFoundError) as err:
        objects.resolve_restore_source(kube, backup_name="nope")
    assert err.value.context["option"] == "backup_name"


def test_restore_writes_plugin_configmaps_and_modifiers_first():
    kube = kube_with_bsl()
    rules = specs.validate_resource_modifier_rules([{"conditions": {"group_resource": "deployments.apps"},
                                                     "patches": [{"operation": "replace", "path": "/spec/replicas", "value": "1"}]}])
    mappings = {objects.STORAGE_CLASS_PLUGIN: ("storage_class_mapping", {"gp2": "standard"}),
                objects.IMAGE_NAME_PLUGIN: ("image_registry_mapping", {"old.io": "new.io"})}
    changed, obj, diff, changes = objects.ensure_restore(kube, "r1", {"backupName": "b1"}, None, mappings, rules)
    assert changed
    assert [w[1] for w in kube.writes] == ["configmaps", "configmaps", "configmaps", "restores"]
    sc = kube.configmaps["fleetdr-change-storage-class"]
    assert sc["data"] == {"gp2": "standard"}
    assert sc["metadata"]["labels"]["velero.io/change-storage-class"] == "RestoreItemAction"
    assert "velero.io/plugin-config" in sc["metadata"]["labels"]
    assert kube.configmaps["fleetdr-change-image-name"]["data"] == {"case1": "old.io,new.io"}
    mod_name = obj["spec"]["resourceModifier"]["name"]
    assert "resourceModifierRules" in kube.configmaps[mod_name]["data"]["rules.yaml"]
    # same request again: nothing written
    before = len(kube.writes)
    assert objects.ensure_restore(kube, "r1", {"backupName": "b1"}, None, mappings, rules)[0] is False
    assert len(kube.writes) == before


def test_restore_without_mapping_removes_our_plugin_configmap():
    kube = kube_with_bsl()
    mappings = {objects.STORAGE_CLASS_PLUGIN: ("storage_class_mapping", {"gp2": "standard"})}
    objects.ensure_restore(kube, "r1", {"backupName": "b1"}, None, mappings)
    objects.ensure_restore(kube, "r2", {"backupName": "b1"}, None, {objects.STORAGE_CLASS_PLUGIN: ("storage_class_mapping", None)})
    assert "fleetdr-change-storage-class" not in kube.configmaps


def test_foreign_plugin_configmap_refuses_and_writes_nothing():
    kube = kube_with_bsl()
    kube.configmaps["theirs"] = {"metadata": {"name": "theirs", "labels": {"velero.io/plugin-config": "",
                                                                           "velero.io/change-storage-class": "RestoreItemAction"}}}
    mappings = {objects.STORAGE_CLASS_PLUGIN: ("storage_class_mapping", {"gp2": "standard"})}
    with pytest.raises(ValidationError) as err:
        objects.ensure_restore(kube, "r1", {"backupName": "b1"}, None, mappings)
    assert err.value.option == "storage_class_mapping" and "theirs" in err.value.msg
    assert kube.writes == []


def test_restore_conflict_on_different_spec():
    kube = kube_with_bsl()
    objects.ensure_restore(kube, "r1", {"backupName": "b1"})
    with pytest.raises(ConflictError):
        objects.ensure_restore(kube, "r1", {"backupName": "b1", "includedNamespaces": ["x"]})


def test_location_secret_compared_not_shown():
    kube = kube_with_bsl()
    content = objects.credentials_file("AKID", "SECRET")
    action, body = objects.plan_secret(kube, "loc-credentials", "cloud", content)
    assert action == "create"
    spec = {"provider": "aws", "objectStorage": {"bucket": "x"}, "credential": {"name": "loc-credentials", "key": "cloud"}}
    changed, obj, diff, secret_action = objects.ensure_location(
        kube, "backupstoragelocations", "BackupStorageLocation", "loc", spec, secret_plan=(action, body))
    assert changed and secret_action == "create"
    assert "SECRET" not in json.dumps(diff) and "SECRET" not in json.dumps(obj)
    assert objects.plan_secret(kube, "loc-credentials", "cloud", content) == (None, None)
    action, dummy = objects.plan_secret(kube, "loc-credentials", "cloud", objects.credentials_file("AKID", "OTHER"))
    assert action == "replace"
    again = objects.ensure_location(kube, "backupstoragelocations", "BackupStorageLocation", "loc", spec)
    assert again[0] is False


class CountingKube(FakeKube):
    """FakeKube that counts reads, to show which requests a path makes."""

    def __init__(self):
        super(CountingKube, self).__init__()
        self.reads = []

    def get(self, plural, name, namespace=None):
        self.reads.append(("get", plural, name))
        return super(CountingKube, self).get(plural, name, namespace)

    def list(self, plural, label_selector=None, field_selector=None, namespace=None):
        self.reads.append(("list", plural))
        return super(CountingKube, self).list(plural, label_selector, field_selector, namespace)


def test_location_checked_creates_without_reading_first():
    kube = CountingKube()
    changed, obj, dummy = objects.ensure_backup(kube, "b1", {"includedNamespaces": ["a"]}, location_checked=True)
    assert changed and kube.writes == [("create", "backups", "b1")]
    assert kube.reads == []  # neither the Backup nor the location was read again
    assert obj["metadata"]["resourceVersion"]  # the waiter starts its watch from here


def test_location_checked_conflict_still_compares_with_the_existing_backup():
    kube = CountingKube()
    objects.ensure_backup(kube, "b1", {"includedNamespaces": ["a"]}, location_checked=True)
    velero_starts(kube, "b1")
    changed, obj, dummy = objects.ensure_backup(kube, "b1", {"includedNamespaces": ["a"]}, location_checked=True)
    assert not changed and obj["status"]["phase"] == "Completed" and len(kube.writes) == 1
    with pytest.raises(ConflictError):
        objects.ensure_backup(kube, "b1", {"includedNamespaces": ["b"]}, location_checked=True)


def test_location_checked_in_check_mode_writes_nothing():
    kube = CountingKube()
    changed, obj, dummy = objects.ensure_backup(kube, "b1", {}, check_mode=True, location_checked=True)
    assert changed and kube.writes == [] and kube.reads == [("get", "backups", "b1")]
