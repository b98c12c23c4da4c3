"""Rook shared filesystems in the lab (Rook pkg/operator/ceph/file, ceph-csi internal/cephfs):
CephFilesystem checked by the API (activeCount 1..50, required parts) and by the operator (Failure),
MDS Deployments per activeCount/activeStandby, CephFS volumes through the `<opns>.cephfs.csi.ceph.com`
driver whose StorageClass `pool` must be the Ceph data pool name `<fs>-<dataPool name>`, and deletion
held by subvolume groups and the subvolumes in them."""
from __future__ import annotations

import pytest
from helpers import gone, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

GROUP, VERSION, NS = "ceph.rook.io", "v1", "rook-ceph"
DRIVER = "rook-ceph.cephfs.csi.ceph.com"


def filesystem(name, **spec):
    body = {"metadataPool": {"replicated": {"size": 3}}, "dataPools": [{"name": "replicated", "replicated": {"size": 3}}],
            "preserveFilesystemOnDelete": True, "metadataServer": {"activeCount": 1, "activeStandby": True}}
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CephFilesystem", "metadata": {"name": name, "namespace": NS}, "spec": body}


def get(custom, plural, name):
    return custom.get_namespaced_custom_object(GROUP, VERSION, NS, plural, name)


def phase_is(custom, plural, name, phase):
    return lambda: (lambda o: o if (o.get("status") or {}).get("phase") == phase else None)(get(custom, plural, name))


def deployments(ceph_apis):
    return [d.metadata.name for d in client.AppsV1Api(ceph_apis[1].api_client).list_namespaced_deployment(NS).items]


def events_of(core, name, reason):
    return [e.message for e in core.list_namespaced_event(NS).items if e.involved_object.name == name and e.reason == reason]


def test_the_api_refuses_a_filesystem_without_an_active_mds(ceph_apis):
    custom, _core, _storage = ceph_apis
    for spec, field in (({"metadataServer": {"activeCount": 0}}, "activeCount"), ({"metadataServer": None}, "metadataServer")):
        body = filesystem("refused", **spec)
        if body["spec"]["metadataServer"] is None:
            del body["spec"]["metadataServer"]
        with pytest.raises(ApiException) as caught:
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephfilesystems", body)
        assert caught.value.status == 422 and field in caught.value.body


def test_a_bad_data_pool_fails_the_filesystem_with_rooks_reason(ceph_apis):
    custom, core, _storage = ceph_apis
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephfilesystems", filesystem(
        "badfs", dataPools=[{"name": "one", "replicated": {"size": 1, "requireSafeReplicaSize": True}}]))
    wait_for(phase_is(custom, "cephfilesystems", "badfs", "Failure"), "badfs Failure")
    assert any("Invalid data pool: error pool size is 1 and requireSafeReplicaSize is true" in m
               for m in events_of(core, "badfs", "ReconcileFailed"))
    assert not [d for d in deployments(ceph_apis) if d.startswith("rook-ceph-mds-badfs-")]
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "cephfilesystems", "badfs")
    wait_for(lambda: gone(lambda: get(custom, "cephfilesystems", "badfs")), "badfs deleted")


def test_filesystem_mds_cephfs_volumes_and_deletion_order(ceph_lab, ceph_apis):
    custom, core, storage = ceph_apis
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephfilesystems", filesystem("myfs"))
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephfilesystemsubvolumegroups", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephFilesystemSubVolumeGroup", "metadata": {"name": "myfs-csi", "namespace": NS},
        "spec": {"name": "csi", "filesystemName": "myfs", "pinning": {"distributed": 1}}})
    fs = wait_for(phase_is(custom, "cephfilesystems", "myfs", "Ready"), "myfs Ready", timeout=60)
    assert "cephfilesystem.ceph.rook.io" in fs["metadata"]["finalizers"]
    # activeCount 1 with activeStandby: two MDS daemons, a and b, with Rook's labels
    mds = sorted(d for d in deployments(ceph_apis) if d.startswith("rook-ceph-mds-myfs-"))
    assert mds == ["rook-ceph-mds-myfs-a", "rook-ceph-mds-myfs-b"]
    labels = client.AppsV1Api(core.api_client).read_namespaced_deployment("rook-ceph-mds-myfs-b", NS).metadata.labels
    assert labels["app"] == "rook-ceph-mds" and labels["rook_file_system"] == "myfs" and labels["mds"] == "myfs-b"
    wait_for(phase_is(custom, "cephfilesystemsubvolumegroups", "myfs-csi", "Ready"), "subvolume group Ready")

    # the class's pool is the Ceph pool name <fs>-<dataPool name>; the bare entry name is refused by Ceph
    for name, pool in (("cephfs-wrong-pool", "replicated"), ("rook-cephfs", "myfs-replicated")):
        storage.create_storage_class({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name}, "provisioner": DRIVER,
            "reclaimPolicy": "Delete", "allowVolumeExpansion": True,
            "parameters": {"clusterID": NS, "fsName": "myfs", "pool": pool,
                           "csi.storage.k8s.io/provisioner-secret-name": "rook-csi-cephfs-provisioner",
                           "csi.storage.k8s.io/provisioner-secret-namespace": NS,
                           "csi.storage.k8s.io/node-stage-secret-name": "rook-csi-cephfs-node",
                           "csi.storage.k8s.io/node-stage-secret-namespace": NS}})
    for claim, sc in (("shared-wrong", "cephfs-wrong-pool"), ("shared", "rook-cephfs")):
        core.create_namespaced_persistent_volume_claim("default", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": sc, "resources": {"requests": {"storage": "1Gi"}}}})
    bound = wait_for(lambda: (lambda c: c if c.status.phase == "Bound" else None)(
        core.read_namespaced_persistent_volume_claim("shared", "default")), "shared Bound")
    refused = wait_for(lambda: [m for m in core.list_namespaced_event("default").items
                                if m.involved_object.name == "shared-wrong" and m.reason == "ProvisioningFailed"], "ProvisioningFailed")
    assert "Invalid pool layout 'replicated'. It must be a valid data pool" in refused[0].message
    assert core.read_namespaced_persistent_volume_claim("shared-wrong", "default").status.phase == "Pending"
    core.delete_namespaced_persistent_volume_claim("shared-wrong", "default")
    pv = core.read_persistent_volume(bound.spec.volume_name)
    attributes = pv.spec.csi.volume_attributes
    assert pv.spec.csi.driver == DRIVER and attributes["clusterID"] == NS and attributes["fsName"] == "myfs"
    assert attributes["pool"] == "myfs-replicated" and attributes["subvolumeName"].startswith("csi-vol-")
    assert attributes["subvolumePath"].startswith("/volumes/csi/" + attributes["subvolumeName"] + "/")
    ceph_lab.cli("volume", "put", "--cluster", "c1", "--namespace", "default", "--pvc", "shared", "--text", "cephfs bytes", "/f.txt")
    assert "cephfs bytes" in ceph_lab.cli("volume", "get", "--cluster", "c1", "--namespace", "default", "--pvc", "shared",
                                          "/f.txt").stdout

    # deletion: the filesystem waits for its subvolume group, the group for the subvolume (the volume)
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "cephfilesystems", "myfs")
    blocked = wait_for(lambda: [c for c in (get(custom, "cephfilesystems", "myfs").get("status") or {}).get("conditions") or []
                                if c["type"] == "DeletionIsBlocked"], "myfs DeletionIsBlocked")
    assert "CephFilesystemSubVolumeGroups: [myfs-csi]" in blocked[0]["message"]
    assert "filesystem subvolume groups that contain subvolumes" in blocked[0]["message"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "cephfilesystemsubvolumegroups", "myfs-csi")
    held = wait_for(lambda: [c for c in (get(custom, "cephfilesystemsubvolumegroups", "myfs-csi").get("status") or {}).get(
        "conditions") or [] if c["type"] == "DeletionIsBlocked"], "group DeletionIsBlocked")
    assert pv.metadata.name in held[0]["message"]
    assert not gone(lambda: get(custom, "cephfilesystems", "myfs"))
    core.delete_namespaced_persistent_volume_claim("shared", "default")
    wait_for(lambda: gone(lambda: core.read_persistent_volume(pv.metadata.name)), "the CephFS volume deleted (reclaim Delete)")
    wait_for(lambda: gone(lambda: get(custom, "cephfilesystemsubvolumegroups", "myfs-csi")), "group deleted")
    wait_for(lambda: gone(lambda: get(custom, "cephfilesystems", "myfs")), "myfs deleted")
    wait_for(lambda: not [d for d in deployments(ceph_apis) if d.startswith("rook-ceph-mds-myfs-")], "MDS Deployments collected")
