"""A Ceph-backed volume through Velero's file-system backup into another cluster: c1 and c2 each run Rook
(one mon, one OSD, pool replicapool and class rook-ceph-block); an app's RBD volume in c1 is backed up
with the node-agent, the backup is synced into c2 through a read-only location, and the restore gives
c2 a claim bound to c2's own Ceph (a new RBD image of c2's pool) holding the same bytes.

Upstream source: Velero pkg/podvolume (file-system backup of any mounted volume), Rook/ceph-csi
internal/rbd (the restored claim is provisioned by the target cluster's driver)."""
from __future__ import annotations

import hashlib
import os

import pytest
from helpers import Apis, VeleroInstall, make_app, put_file, restore, run_backup, tree, unique, wait_for
from kubernetes import client
from labctl import LabHandle

GROUP, VERSION, NS = "ceph.rook.io", "v1", "rook-ceph"
DRIVER = "rook-ceph.rbd.csi.ceph.com"


def install_rook_storage(lab, cluster):
    lab.install_rook(cluster)
    api = lab.api(cluster)
    custom = client.CustomObjectsApi(api)
    wait_for(lambda: [d for d in client.AppsV1Api(api).list_namespaced_deployment(NS).items if d.status.available_replicas],
             "the operator in " + cluster)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephCluster", "metadata": {"name": "rook-ceph", "namespace": NS},
        "spec": {"cephVersion": {"image": "quay.io/ceph/ceph:v20.2.4"}, "dataDirHostPath": "/var/lib/rook", "mon": {"count": 1},
                 "mgr": {"count": 1}, "storage": {"useAllNodes": True, "useAllDevices": True}}})
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephblockpools", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephBlockPool", "metadata": {"name": "replicapool", "namespace": NS},
        "spec": {"replicated": {"size": 1, "requireSafeReplicaSize": False}}})
    client.StorageV1Api(api).create_storage_class({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "rook-ceph-block"}, "provisioner": DRIVER,
        "reclaimPolicy": "Delete", "parameters": {"clusterID": NS, "pool": "replicapool", "imageFormat": "2",
                                                  "imageFeatures": "layering"}})
    wait_for(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, NS, "cephblockpools", "replicapool").get("status")
                      or {}).get("phase") == "Ready", "replicapool Ready in " + cluster, timeout=60)
    api.close()


@pytest.fixture(scope="module")
def two_ceph_clusters(tmp_path_factory):
    lab = LabHandle.up(tmp_path_factory.mktemp("velero-rook"), clusters=2, nodes=1, extra=("--devices", "1"))
    installs = []
    try:
        for cluster in ("c1", "c2"):
            install_rook_storage(lab, cluster)
            installs.append(VeleroInstall(lab, cluster, node_agent=True).install())
        yield lab, installs[0], installs[1]
    finally:
        lab.down()


def test_a_ceph_volume_is_backed_up_in_c1_and_restored_onto_c2s_ceph(two_ceph_clusters, tmp_path):
    lab, velero, velero_c2 = two_ceph_clusters
    c1, c2 = Apis(velero.api_client), Apis(velero_c2.api_client)
    ns = unique("db")
    c1.namespace(ns)
    make_app(c1, ns, name="db", storage_class="rook-ceph-block")
    source_pv = c1.core.read_persistent_volume(c1.core.read_namespaced_persistent_volume_claim("data", ns).spec.volume_name)
    assert source_pv.spec.csi.driver == DRIVER
    files = {"pgdata/base.bin": os.urandom(700_000), "pgdata/PG_VERSION": b"16\n"}
    for path, data in files.items():
        put_file(lab, "c1", ns, "data", path, data, tmp_path)

    name = unique("rbd")
    backup = run_backup(velero, name, {"includedNamespaces": [ns], "defaultVolumesToFsBackup": True})
    assert backup["status"]["phase"] == "Completed", backup["status"]
    pvbs = velero.list("podvolumebackups", label_selector=f"velero.io/backup-name={name}")
    assert [p["status"]["phase"] for p in pvbs] == ["Completed"] and pvbs[0]["status"]["progress"]["totalBytes"] >= 700_000

    velero_c2.create("backupstoragelocations", {
        "kind": "BackupStorageLocation", "metadata": {"name": "from-c1"},
        "spec": {"provider": "aws", "accessMode": "ReadOnly", "objectStorage": {"bucket": velero.bucket, "prefix": velero.prefix},
                 "config": dict(velero.bsl_config)}})
    velero_c2.wait_bsl("from-c1", "Available")
    lab.cli("velero", "sync", "--cluster", "c2")
    wait_for(lambda: velero_c2.get_or_none("backups", name), what="backup synced into c2")
    wait_for(lambda: velero_c2.list("podvolumebackups", label_selector=f"velero.io/backup-name={name}"),
             what="pod volume backups synced into c2")  # Velero syncs the Backup first: wait for its volume backups
    result = restore(velero_c2, unique("rbd-r"), {"backupName": name})
    assert result["status"]["phase"] == "Completed", result["status"]

    claim = wait_for(lambda: (lambda c: c if c.status.phase == "Bound" else None)(
        c2.core.read_namespaced_persistent_volume_claim("data", ns)), "the restored claim Bound in c2")
    target_pv = c2.core.read_persistent_volume(claim.spec.volume_name)
    assert target_pv.spec.csi.driver == DRIVER and target_pv.spec.csi.volume_attributes["pool"] == "replicapool"
    assert target_pv.spec.csi.volume_handle != source_pv.spec.csi.volume_handle  # c2's own RBD image
    wait_for(lambda: [p for p in c2.core.list_namespaced_pod(ns, label_selector="app=db").items if p.status.phase == "Running"],
             what="db Running in c2")
    expected = dict((path, hashlib.sha256(data).hexdigest()) for path, data in files.items())
    assert tree(lab, "c2", ns, "data") == expected
    assert tree(lab, "c1", ns, "data") == expected
    used = wait_for(lambda: ((client.CustomObjectsApi(c2.api_client).get_namespaced_custom_object(
        GROUP, VERSION, NS, "cephclusters", "rook-ceph").get("status") or {}).get("ceph") or {}).get("capacity", {}).get("bytesUsed"),
        "c2's Ceph counting the restored volume")
    assert used >= 2 ** 30
