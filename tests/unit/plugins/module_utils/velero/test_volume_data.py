"""Volume data accounting (module_utils/velero/volume_data.py) and the verdict that counts it (results.verdict)."""
import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import results, volume_data


class Cluster(object):
    """The reads the accounting makes: built-in lists, Velero lists by label, a selection watch."""

    namespace = "velero"

    def __init__(self, core=None, velero=None, events=()):
        self.core = core or {}
        self.velero = velero or {}
        self.events = list(events)

    def list_core(self, plural, namespace=None, label_selector=None):
        return [o for o in self.core.get(plural, []) if namespace in ("*", None) or o["metadata"]["namespace"] == namespace]

    def list(self, plural, label_selector=None, field_selector=None, namespace=None):
        key, _eq, value = (label_selector or "").partition("=")
        return [o for o in self.velero.get(plural, []) if not key or (o["metadata"].get("labels") or {}).get(key) == value]

    def selection_source(self, plural, label_selector, namespace=None):
        cluster = self

        class Source(object):
            def get(self):
                items = dict((o["metadata"]["name"], o) for o in cluster.list(plural, label_selector))
                return {"metadata": {"resourceVersion": "1"}, "items": items}, "1"

            def stream(self, resource_version, timeout_seconds):
                items = dict((o["metadata"]["name"], o) for o in cluster.list(plural, label_selector))
                for number, obj in enumerate(cluster.events, 2):
                    items[obj["metadata"]["name"]] = obj
                    yield "MODIFIED", {"metadata": {"resourceVersion": str(number)}, "items": dict(items)}
                cluster.events = []
                return
        return Source()


def pvc(namespace, name, created="2026-01-01T00:00:00Z"):
    return {"metadata": {"namespace": namespace, "name": name, "creationTimestamp": created}}


def pod(namespace, name, claim, phase="Running", annotations=None, volume="data", created="2026-01-01T00:00:00Z"):
    return {"metadata": {"namespace": namespace, "name": name, "annotations": annotations or {}, "creationTimestamp": created},
            "spec": {"volumes": [{"name": volume, "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": phase}}


def pvb(name, backup, namespace, pod_name, claim, phase="Completed", size=16, snapshot="snap-1", volume="data"):
    status = {"phase": phase, "progress": {"totalBytes": size}}
    if snapshot:
        status["snapshotID"] = snapshot
    return {"metadata": {"name": name, "labels": {"velero.io/backup-name": backup}, "annotations": {"velero.io/pvc-name": claim}},
            "spec": {"pod": {"namespace": namespace, "name": pod_name}, "volume": volume}, "status": status}


def backup(name="b1", default_fs=True, **spec):
    spec.setdefault("includedNamespaces", ["app"])
    spec["defaultVolumesToFsBackup"] = default_fs
    return {"metadata": {"name": name}, "spec": spec, "status": {"phase": "Completed"}}


def test_backup_accounts_for_moved_and_skipped_pvcs_with_velero_reasons():
    cluster = Cluster(core={
        "persistentvolumeclaims": [pvc("app", "ok"), pvc("app", "pending"), pvc("app", "orphan"), pvc("app", "optout"),
                                   pvc("other", "not-in-scope")],
        "pods": [pod("app", "web", "ok"), pod("app", "stuck", "pending", phase="Pending"),
                 pod("app", "tool", "optout", annotations={"backup.velero.io/backup-volumes-excludes": "data"})],
    }, velero={"podvolumebackups": [pvb("b1-x", "b1", "app", "web", "ok")]})
    entries = dict((e["pvc"], e) for e in volume_data.backup_volumes(cluster, backup()))
    assert sorted(entries) == ["ok", "optout", "orphan", "pending"]
    assert entries["ok"]["moved"] and entries["ok"]["bytes"] == 16 and entries["ok"]["snapshot_id"] == "snap-1"
    assert entries["pending"]["requested"] and not entries["pending"]["moved"]
    assert "pod stuck is not Running (phase Pending)" in entries["pending"]["reason"]
    assert entries["orphan"]["requested"] and "no pod mounts it" in entries["orphan"]["reason"]
    assert not entries["optout"]["requested"] and "backup-volumes-excludes" in entries["optout"]["reason"]
    reason = volume_data.shortfall_reason(entries.values())
    assert reason.startswith("volume data not moved: ") and "app/pending" in reason and "app/orphan" in reason
    assert "app/optout" not in reason


def test_opt_in_mode_requests_only_annotated_volumes():
    cluster = Cluster(core={"persistentvolumeclaims": [pvc("app", "a"), pvc("app", "b")],
                            "pods": [pod("app", "p1", "a", phase="Pending", annotations={"backup.velero.io/backup-volumes": "data"}),
                                     pod("app", "p2", "b")]})
    entries = dict((e["pvc"], e) for e in volume_data.backup_volumes(cluster, backup(default_fs=False)))
    assert entries["a"]["requested"] and not entries["a"]["moved"]
    assert not entries["b"]["requested"] and "not opted in" in entries["b"]["reason"]


def test_backup_that_excludes_pvcs_accounts_for_none():
    cluster = Cluster(core={"persistentvolumeclaims": [pvc("app", "a")], "pods": [pod("app", "p", "a")]})
    assert volume_data.backup_volumes(cluster, backup(excludedResources=["persistentvolumeclaims"])) == []


def test_failed_pod_volume_backup_is_named_with_its_message():
    failed = pvb("b1-y", "b1", "app", "web", "ok", phase="Failed", snapshot=None)
    failed["status"]["message"] = "error running kopia backup: disk gone"
    cluster = Cluster(core={"persistentvolumeclaims": [pvc("app", "ok")], "pods": [pod("app", "web", "ok")]},
                      velero={"podvolumebackups": [failed]})
    entry = volume_data.backup_volumes(cluster, backup())[0]
    assert entry["requested"] and not entry["moved"] and "disk gone" in entry["reason"]


def restore(name="r1", created="2026-02-01T00:00:00Z", **spec):
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": dict(spec, backupName="b1")}


def test_restore_names_existing_pvcs_as_kept_and_counts_restored_bytes():
    pvbs = [pvb("b1-a", "b1", "app", "web", "data-web"), pvb("b1-b", "b1", "app", "db", "data-db")]
    pvr = {"metadata": {"name": "r1-x", "labels": {"velero.io/restore-name": "r1"}},
           "spec": {"pod": {"namespace": "moved", "name": "web"}, "volume": "data"},
           "status": {"phase": "Completed", "progress": {"totalBytes": 16}}}
    cluster = Cluster(core={
        "persistentvolumeclaims": [pvc("moved", "data-web", created="2026-02-01T00:00:05Z"),
                                   pvc("moved", "data-db", created="2025-12-31T00:00:00Z")],
        "pods": [pod("moved", "db", "data-db", created="2025-12-31T00:00:00Z")]},
        velero={"podvolumerestores": [pvr]})
    entries = dict((e["pvc"], e) for e in volume_data.restore_volumes(cluster, restore(namespaceMapping={"app": "moved"}), pvbs))
    assert entries["data-web"]["moved"] and entries["data-web"]["bytes"] == 16 and entries["data-web"]["namespace"] == "moved"
    assert not entries["data-db"]["moved"] and "already existed" in entries["data-db"]["reason"]


def test_restore_leaves_out_namespaces_it_does_not_restore():
    pvbs = [pvb("b1-a", "b1", "app", "web", "data-web")]
    assert volume_data.restore_volumes(Cluster(), restore(includedNamespaces=["other"]), pvbs) == []


def test_wait_for_pvbs_returns_once_every_expected_one_arrived():
    expected = [pvb("b1-a", "b1", "app", "web", "a"), pvb("b1-b", "b1", "app", "db", "b")]
    cluster = Cluster(velero={"podvolumebackups": [expected[0]]}, events=[expected[1]])
    got = volume_data.wait_for_pvbs(cluster, "b1", expected, timeout=5)
    assert sorted(p["metadata"]["name"] for p in got) == ["b1-a", "b1-b"]


def test_wait_for_pvbs_names_the_volumes_that_never_arrived():
    expected = [pvb("b1-a", "b1", "app", "web", "a"), pvb("b1-b", "b1", "app", "db", "b")]
    cluster = Cluster(velero={"podvolumebackups": [expected[0]]})
    with pytest.raises(FleetdrError) as info:
        volume_data.wait_for_pvbs(cluster, "b1", expected, timeout=1)
    assert "app/b" in info.value.msg and "app/a" not in info.value.msg


@pytest.mark.parametrize("phase,allow_pf,allow_missing,want", [
    ("Completed", False, False, "partially_failed"),
    ("Completed", False, True, "succeeded"),
    ("PartiallyFailed", False, True, "partially_failed"),
    ("PartiallyFailed", True, False, "partially_failed"),
    ("PartiallyFailed", True, True, "succeeded"),
    ("Failed", True, True, "failed"),
])
def test_verdict_counts_volume_data_that_did_not_move(phase, allow_pf, allow_missing, want):
    result = {"kind": "Backup", "name": "b1", "phase": phase, "errors": 0, "warnings": 0,
              "volumes": [volume_data._entry("app", "data", True, False, reason="pod web is not Running")]}
    verdict, reason = results.verdict(result, allow_pf, allow_missing)
    assert verdict == want
    if want == "partially_failed" and phase == "Completed":
        assert reason == "volume data not moved: app/data (pod web is not Running)"


def test_verdict_succeeds_when_all_data_moved():
    result = {"kind": "Restore", "name": "r1", "phase": "Completed", "volumes": [volume_data._entry("app", "data", True, True, size=4)]}
    assert results.verdict(result) == ("succeeded", None)
