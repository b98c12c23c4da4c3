"""DeleteBackupRequests and garbage collection of expired backups.

Upstream source: Velero pkg/controller/backup_deletion_controller.go, gc_controller.go.
"""
from __future__ import annotations


def new_ns(v, prefix):
    ns = v.unique(prefix)
    v.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    v.core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": "c"}, "data": {"a": "b"}})
    return ns


def request_deletion(v, backup_name, labels=True):
    meta = {"generateName": f"{backup_name}-"}
    if labels:
        b = v.get("backups", backup_name)
        meta["labels"] = {"velero.io/backup-name": backup_name, "velero.io/backup-uid": b["metadata"]["uid"]}
    return v.create("deletebackuprequests", {"kind": "DeleteBackupRequest", "metadata": meta,
                                             "spec": {"backupName": backup_name}})


def test_delete_backup_request_removes_data_and_cr(velero):
    ns = new_ns(velero, "del")
    name = velero.unique("to-delete")
    assert velero.backup(name, {"includedNamespaces": [ns]})["status"]["phase"] == "Completed"
    assert velero.bucket_keys(velero.backup_prefix(name))
    dbr = request_deletion(velero, name)
    velero.wait_for(lambda: velero.get_or_none("backups", name) is None, what="backup CR deleted")
    assert velero.bucket_keys(velero.backup_prefix(name)) == []
    # a successful request deletes itself
    velero.wait_for(lambda: velero.get_or_none("deletebackuprequests", dbr["metadata"]["name"]) is None,
                    what="DBR gone")


def test_delete_request_for_unknown_backup(velero):
    dbr = request_deletion(velero, velero.unique("ghost"), labels=False)
    got = velero.wait_for(lambda: (lambda d: d if (d.get("status") or {}).get("phase") == "Processed" else None)(
        velero.get("deletebackuprequests", dbr["metadata"]["name"])), what="processed")
    assert got["status"]["errors"] == ["backup not found"]


def test_delete_request_without_backup_name(velero):
    dbr = velero.create("deletebackuprequests", {"kind": "DeleteBackupRequest",
                                                 "metadata": {"generateName": "empty-"}, "spec": {"backupName": ""}})
    got = velero.wait_for(lambda: (lambda d: d if (d.get("status") or {}).get("phase") == "Processed" else None)(
        velero.get("deletebackuprequests", dbr["metadata"]["name"])), what="processed")
    assert got["status"]["errors"] == ["spec.backupName is required"]


def test_gc_after_clock_advance(private_velero):
    v = private_velero
    ns = new_ns(v, "gc")
    short, long_ = v.unique("short"), v.unique("long")
    assert v.backup(short, {"includedNamespaces": [ns], "ttl": "1h"})["status"]["phase"] == "Completed"
    assert v.backup(long_, {"includedNamespaces": [ns]})["status"]["phase"] == "Completed"
    invalid = v.unique("invalid")
    assert v.backup(invalid, {"includedNamespaces": ["*", ns]})["status"]["phase"] == "FailedValidation"

    # ReadOnly location: GC labels instead of deleting
    v.patch("backupstoragelocations", "default", {"spec": {"accessMode": "ReadOnly"}})
    v.lab.cli("clock", "advance", "2h")
    got = v.wait_for(lambda: (lambda b: b if b["metadata"].get("labels", {}).get("velero.io/gc-failure") else None)(
        v.get("backups", short)), what="gc-failure label")
    assert got["metadata"]["labels"]["velero.io/gc-failure"] == "BSLReadOnly"
    assert v.bucket_keys(v.backup_prefix(short))

    v.patch("backupstoragelocations", "default", {"spec": {"accessMode": "ReadWrite"}})
    v.lab.cli("clock", "advance", "1h")   # the next GC round (--garbage-collection-frequency 1h)
    v.wait_for(lambda: v.get_or_none("backups", short) is None, what="expired backup collected")
    assert v.bucket_keys(v.backup_prefix(short)) == []
    assert v.get("backups", long_)["status"]["phase"] == "Completed"   # 720h default TTL not reached
    assert v.get("backups", invalid)["status"]["phase"] == "FailedValidation"

    # a backup whose location is gone is labelled BSLNotFound and kept
    s3 = v.lab.s3
    v.create("backupstoragelocations", {"kind": "BackupStorageLocation", "metadata": {"name": "temporary"},
                                        "spec": {"provider": "aws", "objectStorage": {"bucket": v.bucket,
                                                                                      "prefix": v.prefix + "-tmp"},
                                                 "config": {"region": s3["region"], "s3ForcePathStyle": "true",
                                                            "s3Url": s3["endpoint"]}}})
    v.wait_bsl("temporary", "Available")
    orphan = v.unique("orphan")
    assert v.backup(orphan, {"includedNamespaces": [ns], "storageLocation": "temporary",
                             "ttl": "1h"})["status"]["phase"] == "Completed"
    v.delete("backupstoragelocations", "temporary")

    v.lab.cli("clock", "advance", "721h")
    v.wait_for(lambda: v.get_or_none("backups", long_) is None, what="30-day backup collected")
    assert v.bucket_keys(v.backup_prefix(long_)) == []
    # FailedValidation backups have an expiration too and are collected the same way
    v.wait_for(lambda: v.get_or_none("backups", invalid) is None, what="FailedValidation backup collected")
    assert v.get("backups", orphan)["metadata"]["labels"]["velero.io/gc-failure"] == "BSLNotFound"
