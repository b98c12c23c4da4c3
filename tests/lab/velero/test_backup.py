"""Backups in the emulated Velero 1.18: phases, the start-of-backup spec mutation, bucket files,
tarball layout, results on partial failure (through the Kubernetes API and boto3 only)."""
from __future__ import annotations

import gzip
import io
import json
import tarfile
import threading
from datetime import datetime, timedelta

import pytest
from kubernetes import client as k8s_client
from kubernetes import watch as k8s_watch



def make_namespace(v, name: str, labels: dict | None = None, configmaps=("cm-a", "cm-b"),
                   cm_labels: dict | None = None):
    v.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": name, "labels": labels or {}}})
    for cm in configmaps:
        v.core.create_namespaced_config_map(name, {"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": cm, "labels": cm_labels or {}},
                                                   "data": {"k": cm}})


def gunzip_json(data: bytes):
    return json.loads(gzip.decompress(data))


def tar_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def tar_file(data: bytes, path: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.extractfile(path).read()


def ts(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")


def test_phase_sequence_of_a_successful_backup(velero):
    ns = velero.unique("bk-phases")
    make_namespace(velero, ns)
    name = velero.unique("phases")
    rv = velero.custom.list_namespaced_custom_object("velero.io", "v1", velero.namespace, "backups")["metadata"]["resourceVersion"]
    seen: list[str] = []
    progress: list[dict] = []
    done = threading.Event()

    def watch():
        w = k8s_watch.Watch()
        for ev in w.stream(velero.custom.list_namespaced_custom_object, "velero.io", "v1", velero.namespace,
                           "backups", resource_version=rv, timeout_seconds=60):
            obj = ev["object"]
            if obj["metadata"]["name"] != name:
                continue
            st = obj.get("status") or {}
            phase = st.get("phase", "")
            if not seen or seen[-1] != phase:
                seen.append(phase)
            if st.get("progress"):
                progress.append(st["progress"])
            if phase in ("Completed", "PartiallyFailed", "Failed", "FailedValidation"):
                w.stop()
                break
        done.set()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    velero.create_backup(name, {"includedNamespaces": [ns]})
    assert done.wait(60)
    # 1.18: the queue controller moves it through Queued and ReadyToStart; "New" is never written.
    assert seen == ["", "Queued", "ReadyToStart", "InProgress", "Finalizing", "Completed"] or \
        seen == ["Queued", "ReadyToStart", "InProgress", "Finalizing", "Completed"], seen
    # progress was written while running, and at the end totals match
    assert progress and progress[-1]["itemsBackedUp"] == progress[-1]["totalItems"]
    b = velero.get("backups", name)
    assert "queuePosition" not in b["status"]


def test_start_of_backup_spec_mutation_and_status(velero):
    ns = velero.unique("bk-mutate")
    make_namespace(velero, ns)
    name = velero.unique("mutate")
    b = velero.backup(name, {"includedNamespaces": [ns]})
    spec, st, meta = b["spec"], b["status"], b["metadata"]
    assert st["phase"] == "Completed"
    assert spec["ttl"] == "720h0m0s"
    assert spec["storageLocation"] == "default"
    assert spec["csiSnapshotTimeout"] == "10m0s"
    assert spec["itemOperationTimeout"] == "4h0m0s"
    assert spec["volumeGroupSnapshotLabelKey"] == "velero.io/volume-group"
    assert spec["defaultVolumesToFsBackup"] is False
    assert spec["snapshotMoveData"] is False
    # new-style filters in use -> auto-excludes go to the scoped lists (1.17+)
    assert "volumesnapshots.snapshot.storage.k8s.io" in spec["excludedNamespaceScopedResources"]
    assert "volumesnapshotcontents.snapshot.storage.k8s.io" in spec["excludedClusterScopedResources"]
    assert meta["labels"]["velero.io/storage-location"] == "default"
    assert meta["annotations"]["velero.io/resource-timeout"] == "10m0s"
    assert meta["annotations"]["velero.io/source-cluster-k8s-major-version"] == "1"
    v = k8s_client.VersionApi(velero.api_client).get_code()
    version = {"gitVersion": v.git_version, "minor": v.minor}
    assert meta["annotations"]["velero.io/source-cluster-k8s-gitversion"] == version["gitVersion"]
    assert meta["annotations"]["velero.io/source-cluster-k8s-minor-version"] == version["minor"]
    assert st["version"] == 1 and st["formatVersion"] == "1.1.0"
    assert ts(st["expiration"]) - ts(st["startTimestamp"]) == timedelta(hours=720)
    assert st["completionTimestamp"] >= st["startTimestamp"]
    assert st["progress"]["totalItems"] == st["progress"]["itemsBackedUp"] >= 3  # namespace + 2 configmaps


def test_custom_ttl_and_old_style_auto_excludes(velero):
    ns = velero.unique("bk-ttl")
    make_namespace(velero, ns)
    name = velero.unique("ttl")
    b = velero.backup(name, {"includedNamespaces": [ns], "ttl": "1h30m", "includedResources": ["configmaps"]})
    assert b["spec"]["ttl"] == "1h30m0s"
    assert ts(b["status"]["expiration"]) - ts(b["status"]["startTimestamp"]) == timedelta(minutes=90)
    assert b["spec"]["excludedResources"] == ["volumesnapshots.snapshot.storage.k8s.io",
                                              "volumesnapshotcontents.snapshot.storage.k8s.io"]


def test_bucket_files_and_tarball_layout(velero):
    ns = velero.unique("bk-files")
    make_namespace(velero, ns)
    name = velero.unique("files")
    b = velero.backup(name, {"includedNamespaces": [ns]})
    assert b["status"]["phase"] == "Completed"
    root = velero.backup_prefix(name)
    keys = sorted(k[len(root):] for k in velero.bucket_keys(root))
    assert keys == sorted([
        "velero-backup.json", f"{name}.tar.gz", f"{name}-logs.gz", f"{name}-results.gz",
        f"{name}-resource-list.json.gz", f"{name}-volumesnapshots.json.gz",
        f"{name}-itemoperations.json.gz", f"{name}-podvolumebackups.json.gz",
        f"{name}-volumeinfo.json.gz"])  # 1.18 writes no -csi-* files

    meta_raw = velero.read_object(root + "velero-backup.json")
    assert meta_raw.startswith(b"{\n")  # pretty JSON, not gzipped
    meta = json.loads(meta_raw)
    assert meta["apiVersion"] == "velero.io/v1" and meta["kind"] == "Backup"
    assert meta["metadata"]["name"] == name
    assert meta["status"]["phase"] == "Completed"  # rewritten by the finalizer
    assert meta["status"]["completionTimestamp"]

    tarball = velero.read_object(root + f"{name}.tar.gz")
    members = tar_members(tarball)
    names = list(members)
    assert names[0] == "metadata/version"
    assert tar_file(tarball, "metadata/version") == b"1.1.0\n"
    for path in (f"resources/namespaces/cluster/{ns}.json",
                 f"resources/namespaces/v1-preferredversion/cluster/{ns}.json",
                 f"resources/configmaps/namespaces/{ns}/cm-a.json",
                 f"resources/configmaps/v1-preferredversion/namespaces/{ns}/cm-a.json",
                 f"resources/configmaps/namespaces/{ns}/cm-b.json"):
        assert path in members, (path, names)
    assert all(m.isfile() and m.mode == 0o755 for m in members.values())
    cm = tar_file(tarball, f"resources/configmaps/namespaces/{ns}/cm-a.json")
    assert not cm.endswith(b"\n")
    obj = json.loads(cm)
    assert obj["apiVersion"] == "v1" and obj["kind"] == "ConfigMap"
    assert obj["metadata"]["uid"] and obj["metadata"]["resourceVersion"]  # nothing stripped
    assert list(obj) == sorted(obj)  # keys sorted like json.Marshal of unstructured

    rl = gunzip_json(velero.read_object(root + f"{name}-resource-list.json.gz"))
    assert rl["v1/ConfigMap"] == sorted(f"{ns}/{c}" for c in
                                        [x for x in ("cm-a", "cm-b", "kube-root-ca.crt")
                                         if f"resources/configmaps/namespaces/{ns}/{x}.json" in members])
    assert rl["v1/Namespace"] == [ns]
    assert gunzip_json(velero.read_object(root + f"{name}-results.gz")) == {"errors": {}, "warnings": {}}
    assert gunzip_json(velero.read_object(root + f"{name}-itemoperations.json.gz")) == []
    log = gzip.decompress(velero.read_object(root + f"{name}-logs.gz")).decode()
    assert "level=info" in log and name in log


def watch_phases(v, name, create) -> list[str]:
    """Run `create()` and return the distinct phases the backup went through, via a watch."""
    rv = v.custom.list_namespaced_custom_object("velero.io", "v1", v.namespace, "backups")["metadata"]["resourceVersion"]
    seen, done = [], threading.Event()

    def run():
        w = k8s_watch.Watch()
        for ev in w.stream(v.custom.list_namespaced_custom_object, "velero.io", "v1", v.namespace, "backups",
                           resource_version=rv, timeout_seconds=60):
            if ev["object"]["metadata"]["name"] != name:
                continue
            phase = (ev["object"].get("status") or {}).get("phase", "")
            if phase and (not seen or seen[-1] != phase):
                seen.append(phase)
            if phase in ("Completed", "PartiallyFailed", "Failed", "FailedValidation"):
                w.stop()
                break
        done.set()

    threading.Thread(target=run, daemon=True).start()
    create()
    assert done.wait(60)
    return seen


def test_failed_item_makes_backup_partially_failed_with_results(velero):
    ns = velero.unique("bk-fail")
    make_namespace(velero, ns)
    velero.core.create_namespaced_config_map(ns, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "broken", "annotations": {"fleetdr.lab/fail-backup": "true"}}})
    name = velero.unique("partial")
    phases = watch_phases(velero, name, lambda: velero.create_backup(name, {"includedNamespaces": [ns]}))
    assert phases == ["Queued", "ReadyToStart", "InProgress", "FinalizingPartiallyFailed", "PartiallyFailed"]
    b = velero.get("backups", name)
    assert b["status"]["phase"] == "PartiallyFailed"
    assert b["status"]["errors"] == 1
    assert b["status"].get("failureReason") is None
    root = velero.backup_prefix(name)
    results = gunzip_json(velero.read_object(root + f"{name}-results.gz"))
    entries = results["errors"]["namespaces"][ns]
    assert len(entries) == 1
    assert entries[0].startswith(" resource: /configmaps name: /broken message: /Error backing up item error: /")
    assert "velero" not in results["errors"] and results["warnings"] == {}
    members = tar_members(velero.read_object(root + f"{name}.tar.gz"))
    assert f"resources/configmaps/namespaces/{ns}/broken.json" not in members
    assert f"resources/configmaps/namespaces/{ns}/cm-a.json" in members
    meta = json.loads(velero.read_object(root + "velero-backup.json"))
    assert meta["status"]["phase"] == "PartiallyFailed"


def test_missing_included_namespace_is_partially_failed(velero):
    name = velero.unique("missing-ns")
    b = velero.backup(name, {"includedNamespaces": ["does-not-exist-xyz"]})
    assert b["status"]["phase"] == "PartiallyFailed"
    results = gunzip_json(velero.read_object(velero.backup_prefix(name) + f"{name}-results.gz"))
    assert results["errors"]["velero"] == [
        " message: /fail to get the namespace does-not-exist-xyz specified in backup.Spec.IncludedNamespaces"]


@pytest.mark.parametrize("spec, message", [
    ({"storageLocation": "nope"}, "the default 'nope' wasn't found"),
    ({"labelSelector": {"matchLabels": {"a": "b"}}, "orLabelSelectors": [{"matchLabels": {"c": "d"}}]},
     "encountered labelSelector as well as orLabelSelectors in backup spec, only one can be specified"),
    ({"includedResources": ["pods"], "includedNamespaceScopedResources": ["configmaps"]},
     "They cannot be used together"),
    ({"includedNamespaces": ["*", "default"]},
     "includes list must either contain '*' only, or a non-empty list of items"),
    ({"excludedNamespaces": ["*"]}, "excludes list cannot contain '*'"),
    ({"includedNamespaces": ["Bad_Name"]}, 'invalid namespace "Bad_Name"'),
    ({"includedResources": ["pods"], "excludedResources": ["pods"]},
     "excludes list cannot contain an item in the includes list: pods"),
    ({"includedClusterScopedResources": ["*"], "excludedClusterScopedResources": ["*"]},
     "when exclude is '*', include must be empty"),
])
def test_failed_validation(velero, spec, message):
    name = velero.unique("invalid")
    b = velero.backup(name, spec)
    st = b["status"]
    assert st["phase"] == "FailedValidation"
    assert any(message in e for e in st["validationErrors"]), st["validationErrors"]
    assert "startTimestamp" not in st and "completionTimestamp" not in st
    assert st["expiration"]  # set even for FailedValidation (GC deletes them later)
    assert velero.bucket_keys(velero.backup_prefix(name)) == []


def test_failed_validation_phase_path(velero):
    name = velero.unique("fv-path")
    phases = watch_phases(velero, name, lambda: velero.create_backup(name, {"storageLocation": "missing"}))
    assert phases == ["Queued", "ReadyToStart", "FailedValidation"]


def test_read_only_bsl_blocks_backup_creation(velero):
    bsl = velero.unique("ro")
    velero.create("backupstoragelocations", {
        "kind": "BackupStorageLocation", "metadata": {"name": bsl},
        "spec": {"provider": "aws", "accessMode": "ReadOnly",
                 "objectStorage": {"bucket": velero.bucket, "prefix": velero.prefix},
                 "config": velero.bsl_config}})
    velero.wait_bsl(bsl, "Available")
    name = velero.unique("ro-backup")
    b = velero.backup(name, {"storageLocation": bsl})
    assert b["status"]["phase"] == "FailedValidation"
    assert b["status"]["validationErrors"] == [
        f"backup can't be created because backup storage location {bsl} is currently in read-only mode"]
    velero.delete("backupstoragelocations", bsl)


def test_name_already_in_storage_fails(velero):
    ns = velero.unique("bk-dup")
    make_namespace(velero, ns)
    name = velero.unique("dup")
    assert velero.backup(name, {"includedNamespaces": [ns]})["status"]["phase"] == "Completed"
    # kubectl delete of the CR keeps the data; a new backup with the same name must not overwrite it
    velero.delete("backups", name)
    velero.wait_for(lambda: velero.get_or_none("backups", name) is None, what="backup CR gone")
    b = velero.backup(name, {"includedNamespaces": [ns]})
    assert b["status"]["phase"] == "Failed"
    assert b["status"]["failureReason"] == "backup already exists in object storage"
    assert b["status"]["completionTimestamp"]


def test_queue_positions_with_two_backups(velero):
    ns = velero.unique("bk-queue")
    make_namespace(velero, ns, configmaps=[f"cm-{i}" for i in range(30)])
    first, second = velero.unique("q1"), velero.unique("q2")
    velero.create_backup(first, {"includedNamespaces": [ns]})
    velero.create_backup(second, {"includedNamespaces": [ns]})
    # the second one waits its turn (same namespace, --concurrent-backups 1) and still completes
    assert velero.wait_backup(first)["status"]["phase"] == "Completed"
    b2 = velero.wait_backup(second)
    assert b2["status"]["phase"] == "Completed"
    assert b2["status"]["startTimestamp"] >= velero.get("backups", first)["status"]["startTimestamp"]


def test_tarball_reader_used_by_restore(velero):
    """read_backup_tarball (the reader restore uses) sees both copies and the format version."""
    from fleetdr_lab.controllers.velero.tarball import read_backup_tarball
    ns = velero.unique("bk-reader")
    make_namespace(velero, ns)
    name = velero.unique("reader")
    assert velero.backup(name, {"includedNamespaces": [ns]})["status"]["phase"] == "Completed"
    contents = read_backup_tarball(velero.read_object(velero.backup_prefix(name) + f"{name}.tar.gz"))
    assert contents.format_version == "1.1.0"
    assert contents.get("configmaps", ns, "cm-a")["data"] == {"k": "cm-a"}
    assert contents.get("namespaces", None, ns)["kind"] == "Namespace"
    assert contents.preferred_version("configmaps") == "v1"
    assert contents.versions["configmaps"]["v1-preferredversion"][ns]["cm-b"] == contents.get("configmaps", ns, "cm-b")
    assert ns in contents.namespaces()
    assert contents.warnings == []


def test_download_request_presigns_backup_files(velero):
    import urllib.parse
    ns = velero.unique("bk-dl")
    make_namespace(velero, ns)
    name = velero.unique("dl")
    assert velero.backup(name, {"includedNamespaces": [ns]})["status"]["phase"] == "Completed"
    dr = velero.create("downloadrequests", {"kind": "DownloadRequest", "metadata": {"name": f"{name}-results"},
                                            "spec": {"target": {"kind": "BackupResults", "name": name}}})
    got = velero.wait_for(lambda: (lambda d: d if (d.get("status") or {}).get("phase") == "Processed" else None)(
        velero.get("downloadrequests", dr["metadata"]["name"])), what="download request processed")
    st = got["status"]
    assert ts(st["expiration"]) > datetime.utcnow()
    # moto's server cannot authorise query-string (presigned) requests while IAM auth is on, so
    # check the URL itself: a 10-minute SigV4 GET of exactly the results key of this backup.
    url = urllib.parse.urlparse(st["downloadURL"])
    query = urllib.parse.parse_qs(url.query)
    assert url.path == f"/{velero.bucket}/{velero.backup_prefix(name)}{name}-results.gz"
    assert query["X-Amz-Expires"] == ["600"] and query["X-Amz-Signature"]
    assert url.netloc == urllib.parse.urlparse(velero.bsl_config["s3Url"]).netloc
    velero.delete("downloadrequests", dr["metadata"]["name"])


def _running_pod(v, ns, name, annotations=None, labels=None):
    v.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "infinity"]}]}})
    v.wait_for(lambda: v.core.read_namespaced_pod(name, ns).status.phase == "Running", what=f"pod {name} Running")


def test_backup_hooks_status_and_failures(velero):
    ns = velero.unique("bk-hooks")
    make_namespace(velero, ns, configmaps=())
    _running_pod(velero, ns, "good", annotations={
        "pre.hook.backup.velero.io/command": '["/bin/sh", "-c", "sync"]',
        "pre.hook.backup.velero.io/container": "app"}, labels={"hooked": "yes"})
    _running_pod(velero, ns, "strict", annotations={
        "pre.hook.backup.velero.io/command": "fsfreeze", "pre.hook.backup.velero.io/container": "sidecar",
        "pre.hook.backup.velero.io/on-error": "Fail"})
    name = velero.unique("hooks")
    b = velero.backup(name, {"includedNamespaces": [ns], "hooks": {"resources": [{
        "name": "post-check", "labelSelector": {"matchLabels": {"hooked": "yes"}},
        "post": [{"exec": {"container": "missing", "command": ["true"]}}]}]}})
    st = b["status"]
    assert st["phase"] == "PartiallyFailed"
    # good: annotation pre hook ok + spec post hook failed; strict: annotation pre hook failed
    assert st["hookStatus"] == {"hooksAttempted": 3, "hooksFailed": 2}
    root = velero.backup_prefix(name)
    members = tar_members(velero.read_object(root + f"{name}.tar.gz"))
    assert f"resources/pods/namespaces/{ns}/good.json" in members
    # a pre hook failing with onError: Fail keeps the pod out of the tarball, not out of the list
    assert f"resources/pods/namespaces/{ns}/strict.json" not in members
    assert f"{ns}/strict" in gunzip_json(velero.read_object(root + f"{name}-resource-list.json.gz"))["v1/Pod"]
    errors = gunzip_json(velero.read_object(root + f"{name}-results.gz"))["errors"]["namespaces"][ns]
    assert ' resource: /pods name: /strict message: /Error executing hook error: /no such container: "sidecar"' in errors
