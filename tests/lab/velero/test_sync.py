"""Backup sync between clusters sharing a bucket/prefix.

Upstream source: Velero pkg/controller/backup_sync_controller.go.
"""
from __future__ import annotations

import json


def add_bsl(v, name, prefix, read_only=True, **spec_extra):
    spec = {"provider": "aws", "objectStorage": {"bucket": v.bucket, "prefix": prefix},
            "config": dict(v.bsl_config)}
    if read_only:
        spec["accessMode"] = "ReadOnly"
    spec.update(spec_extra)
    if v.get_or_none("backupstoragelocations", name) is None:
        v.create("backupstoragelocations", {"kind": "BackupStorageLocation", "metadata": {"name": name},
                                            "spec": spec})
    v.wait_bsl(name, "Available")


def sync_now(lab, cluster):
    return lab.cli("velero", "sync", "--cluster", cluster)


def test_backup_appears_in_the_other_cluster(lab, velero, velero_c2):
    ns = velero.unique("sync-src")
    velero.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    name = velero.unique("synced")
    src = velero.backup(name, {"includedNamespaces": [ns], "ttl": "48h"}, labels={"team": "payments"})
    assert src["status"]["phase"] == "Completed"

    add_bsl(velero_c2, "from-c1", velero.prefix)
    sync_now(lab, "c2")
    got = velero_c2.wait_for(lambda: velero_c2.get_or_none("backups", name), what="synced backup in c2")
    assert got["metadata"]["labels"]["team"] == "payments"
    assert got["metadata"]["labels"]["velero.io/storage-location"] == "from-c1"
    assert got["spec"]["storageLocation"] == "from-c1"
    assert got["spec"]["includedNamespaces"] == [ns]
    assert got["spec"]["ttl"] == "48h0m0s"
    # status travels with the create (no status subresource): phase, timestamps, expiration
    for k in ("phase", "startTimestamp", "completionTimestamp", "expiration", "formatVersion"):
        assert got["status"][k] == src["status"][k], k
    assert got["metadata"]["uid"] != src["metadata"]["uid"]
    bsl = velero_c2.get("backupstoragelocations", "from-c1")
    assert bsl["status"]["lastSyncedTime"]

    # kubectl delete of the synced CR: it comes back at the next sync while the data is there
    velero_c2.delete("backups", name)
    velero_c2.wait_for(lambda: velero_c2.get_or_none("backups", name) is None, what="deleted")
    sync_now(lab, "c2")
    assert velero_c2.wait_for(lambda: velero_c2.get_or_none("backups", name), what="re-created")

    # a ReadOnly location refuses deletion requests
    velero_c2.create("deletebackuprequests", {"kind": "DeleteBackupRequest",
                                              "metadata": {"generateName": f"{name}-"},
                                              "spec": {"backupName": name}})
    dbr = velero_c2.wait_for(lambda: next((d for d in velero_c2.list("deletebackuprequests")
                                           if d["spec"]["backupName"] == name
                                           and (d.get("status") or {}).get("phase") == "Processed"), None),
                             what="DBR processed")
    assert dbr["status"]["errors"] == [
        "cannot delete backup because backup storage location from-c1 is currently in read-only mode"]
    assert velero_c2.get_or_none("backups", name) is not None

    # the data vanishes from the bucket: sync deletes the Completed CR (orphan)
    s3 = velero.s3()
    for key in velero.bucket_keys(velero.backup_prefix(name)):
        s3.delete_object(Bucket=velero.bucket, Key=key)
    sync_now(lab, "c2")
    velero_c2.wait_for(lambda: velero_c2.get_or_none("backups", name) is None, what="orphan removed")


def test_in_flight_backups_are_skipped_unless_expired(lab, velero_c2):
    v = velero_c2
    prefix = v.unique("handmade")
    s3 = v.s3()

    def put(name, phase, expiration):
        body = {"kind": "Backup", "apiVersion": "velero.io/v1",
                "metadata": {"name": name, "namespace": "velero", "labels": {"origin": "elsewhere"}},
                "spec": {"storageLocation": "somewhere"},
                "status": {"phase": phase, "expiration": expiration}}
        s3.put_object(Bucket=v.bucket, Key=f"{prefix}/backups/{name}/velero-backup.json",
                      Body=json.dumps(body, indent=2).encode())

    finalizing, expired, failed = v.unique("fin"), v.unique("exp"), v.unique("failed")
    put(finalizing, "Finalizing", "2999-01-01T00:00:00Z")
    put(expired, "FinalizingPartiallyFailed", "2000-01-01T00:00:00Z")
    put(failed, "Failed", "2999-01-01T00:00:00Z")
    s3.put_object(Bucket=v.bucket, Key=f"{prefix}/backups/no-metadata/x.tar.gz", Body=b"x")
    add_bsl(v, "handmade", prefix)
    sync_now(lab, "c2")
    got = v.wait_for(lambda: v.get_or_none("backups", failed), what="failed backup synced")
    assert got["status"]["phase"] == "Failed"  # every other phase, Failed included, is synced
    exp = v.wait_for(lambda: v.get_or_none("backups", expired), what="expired in-flight synced")
    assert exp["status"]["phase"] == "PartiallyFailed"
    assert v.get_or_none("backups", finalizing) is None
    assert v.get_or_none("backups", "no-metadata") is None
    # with the default ReadWrite GC off-limits (ReadOnly), the expired one stays and is labelled
    v.wait_for(lambda: v.get("backups", expired)["metadata"]["labels"].get("velero.io/gc-failure") == "BSLReadOnly",
               what="gc-failure label")


def test_periodic_sync_follows_the_bsl_period(velero, velero_c2):
    # no control route here: a short spec.backupSyncPeriod makes the server's own ticker sync
    ns = velero.unique("periodic")
    velero.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    name = velero.unique("periodic")
    assert velero.backup(name, {"includedNamespaces": [ns]})["status"]["phase"] == "Completed"
    add_bsl(velero_c2, "periodic-from-c1", velero.prefix, backupSyncPeriod="1s")
    got = velero_c2.wait_for(lambda: velero_c2.get_or_none("backups", name), what="periodically synced")
    assert got["spec"]["storageLocation"] in ("periodic-from-c1", "from-c1")
    velero_c2.delete("backupstoragelocations", "periodic-from-c1")


def test_sync_route_errors(lab):
    out = lab.cli("velero", "sync", "--cluster", "nope", check=False)
    assert out.returncode == 5
