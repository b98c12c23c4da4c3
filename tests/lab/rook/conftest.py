"""One Rook lab shared by the storage-kind tests (object stores, filesystems): one cluster of 3 nodes
with a raw device each, Rook installed the quickstart way (kubectl create -f crds.yaml -f common.yaml
-f operator.yaml, from `fleetdr-lab rook manifests`) and one CephCluster (1 mon) in rook-ceph.
The tests work in their own object names, so they can share it."""
from __future__ import annotations

import pytest
from helpers import wait_for
from kubernetes import client
from labctl import LabHandle

GROUP, VERSION, NS = "ceph.rook.io", "v1", "rook-ceph"


@pytest.fixture(scope="session")
def ceph_lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("rook-storage"), clusters=1, nodes=3, extra=("--devices", "1"))
    try:
        handle.install_rook()
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="session")
def ceph_apis(ceph_lab):
    """(CustomObjectsApi, CoreV1Api, StorageV1Api) of c1, once the CephCluster is created."""
    api = ceph_lab.api("c1")
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    wait_for(lambda: [d for d in client.AppsV1Api(api).list_namespaced_deployment(NS).items if d.status.available_replicas],
             "the operator")
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephCluster", "metadata": {"name": "rook-ceph", "namespace": NS},
        "spec": {"cephVersion": {"image": "quay.io/ceph/ceph:v20.2.4"}, "dataDirHostPath": "/var/lib/rook", "mon": {"count": 1},
                 "mgr": {"count": 1}, "storage": {"useAllNodes": True, "useAllDevices": True}}})
    yield custom, core, client.StorageV1Api(api)
    api.close()
