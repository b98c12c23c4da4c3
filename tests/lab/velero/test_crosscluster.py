"""The migration path: back up in c1 with a label selector, sync the backup into c2
through a read-only BSL on c1's prefix, restore it into c2 under another namespace name.

Upstream source: Velero pkg/controller/backup_sync_controller.go.
"""
from __future__ import annotations

import hashlib
import os

from helpers import Apis, make_app, put_file, restore, run_backup, tree, unique, wait_for


def test_backup_in_c1_sync_and_restore_in_c2(velero, velero_c2, lab, tmp_path):
    c1, c2 = Apis(velero.api_client), Apis(velero_c2.api_client)
    ns = unique("shop")
    c1.namespace(ns, {"env": "prod"})
    c1.configmap(ns, "settings", {"currency": "EUR"}, {"app": "shop"})
    c1.configmap(ns, "unrelated", {"a": "b"})                       # not selected by the label
    make_app(c1, ns, name="shop", annotations={"backup.velero.io/backup-volumes": "data"})
    files = {"orders.db": os.urandom(300_000), "conf/shop.ini": b"[shop]\ncurrency=EUR\n"}
    for path, data in files.items():
        put_file(lab, "c1", ns, "data", path, data, tmp_path)

    name = unique("mig")
    run_backup(velero, name, {"includedNamespaces": [ns], "labelSelector": {"matchLabels": {"app": "shop"}}})

    # c2 reads c1's backups through a second, read-only location on the same bucket/prefix
    velero_c2.create("backupstoragelocations", {
        "kind": "BackupStorageLocation", "metadata": {"name": "from-c1"},
        "spec": {"provider": "aws", "accessMode": "ReadOnly",
                 "objectStorage": {"bucket": velero.bucket, "prefix": velero.prefix},
                 "config": dict(velero.bsl_config)}})
    velero_c2.wait_bsl("from-c1", "Available")
    lab.cli("velero", "sync", "--cluster", "c2")
    synced = wait_for(lambda: velero_c2.get_or_none("backups", name), what="backup synced into c2")
    assert synced["spec"]["storageLocation"] == "from-c1"
    assert synced["status"]["phase"] == "Completed"
    wait_for(lambda: velero_c2.list("podvolumebackups", label_selector=f"velero.io/backup-name={name}"),
         what="pod volume backups synced into c2")

    target = unique("shop-c2")
    r = restore(velero_c2, unique("mig-r"), {"backupName": name, "namespaceMapping": {ns: target}})
    assert r["status"]["phase"] == "Completed", r["status"]

    # same spec, other cluster, mapped namespace
    assert c2.read_configmap(target, "settings")["data"] == {"currency": "EUR"}
    assert not c2.exists(c2.core.read_namespaced_config_map, "unrelated", target)
    src = c1.apps.read_namespaced_deployment("shop", ns)
    dst = c2.apps.read_namespaced_deployment("shop", target)
    ser = c1.api_client.sanitize_for_serialization
    assert ser(dst.spec.selector) == ser(src.spec.selector)
    assert ser(dst.spec.template.spec.containers) == ser(src.spec.template.spec.containers)
    assert dst.spec.replicas == src.spec.replicas
    assert c2.core.read_namespace(target).metadata.labels.get("env") == "prod"

    # pods come up and the volume's files are byte-identical
    def running():
        pods = c2.core.list_namespaced_pod(target, label_selector="app=shop").items
        return [p for p in pods if p.status.phase == "Running"]
    wait_for(running, what="shop pods Running in c2")
    expected = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    assert tree(lab, "c2", target, "data") == expected
    assert tree(lab, "c1", ns, "data") == expected

    # the restore's files went to the location of the backup (allowed on a ReadOnly BSL)
    keys = velero.bucket_keys(f"{velero.prefix.strip('/')}/restores/{r['metadata']['name']}/")
    assert any(k.endswith("-results.gz") for k in keys)

    # file-system restores need the same repository password in both clusters (13.3)
    secret = c2.core.read_namespaced_secret("velero-repo-credentials", velero_c2.namespace)
    original = secret.data["repository-password"]
    c2.core.patch_namespaced_secret("velero-repo-credentials", velero_c2.namespace,
                                    {"stringData": {"repository-password": "not-the-same"}})
    try:
        other = unique("shop-c2")
        bad = restore(velero_c2, unique("mig-bad"), {"backupName": name, "namespaceMapping": {ns: other}})
        assert bad["status"]["phase"] == "PartiallyFailed"
        pvr = velero_c2.list("podvolumerestores",
                             label_selector=f"velero.io/restore-name={bad['metadata']['name']}")[0]
        assert pvr["status"]["phase"] == "Failed"
        assert "invalid repository password" in pvr["status"]["message"]
    finally:
        c2.core.patch_namespaced_secret("velero-repo-credentials", velero_c2.namespace,
                                        {"data": {"repository-password": original}})
    velero_c2.delete("backupstoragelocations", "from-c1")
