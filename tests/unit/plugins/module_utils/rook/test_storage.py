"""Pools, storage classes, bucket claims as Rook and the bucket library want them, checked before the write."""
import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import storage


def test_pool_defaults_to_three_replicas_on_hosts():
    assert storage.pool_spec({}) == {"failureDomain": "host", "replicated": {"size": 3}}


def test_erasure_coded_pool():
    spec = storage.pool_spec({"erasure_coded": {"data_chunks": 2, "coding_chunks": 1}, "failure_domain": "osd"})
    assert spec == {"failureDomain": "osd", "erasureCoded": {"dataChunks": 2, "codingChunks": 1}}


@pytest.mark.parametrize("options, option", [
    ({"replicated_size": 3, "erasure_coded": {"data_chunks": 2, "coding_chunks": 1}}, "data_pool.erasure_coded"),
    ({"erasure_coded": {"data_chunks": 1, "coding_chunks": 1}}, "data_pool.erasure_coded"),
    ({"replicated_size": 0}, "data_pool.replicated_size"),
    ({"replicated_size": 1, "require_safe_replica_size": True}, "data_pool.require_safe_replica_size"),
])
def test_pool_rules_name_the_option(options, option):
    with pytest.raises(ValidationError) as caught:
        storage.pool_spec(options, "data_pool.")
    assert caught.value.option == option


def test_block_class_uses_operator_namespace_for_the_driver_and_cluster_namespace_for_the_rest():
    sc = storage.block_storage_class({"name": "block", "default": True}, "replicapool", "storage", "rook-system")
    assert sc["provisioner"] == "rook-system.rbd.csi.ceph.com"
    assert sc["parameters"]["clusterID"] == "storage" and sc["parameters"]["pool"] == "replicapool"
    assert sc["parameters"]["csi.storage.k8s.io/node-stage-secret-name"] == "rook-csi-rbd-node"
    assert sc["parameters"]["csi.storage.k8s.io/provisioner-secret-namespace"] == "storage"
    assert sc["metadata"]["annotations"] == {storage.DEFAULT_CLASS_ANNOTATION: "true"}
    assert sc["allowVolumeExpansion"] is True and sc["reclaimPolicy"] == "Delete"


def test_file_class_names_the_ceph_data_pool_not_the_entry():
    sc = storage.file_storage_class({"name": "fs"}, "myfs", [{"name": "replicated"}], "rook-ceph", "rook-ceph")
    assert sc["parameters"]["pool"] == "myfs-replicated" and sc["parameters"]["fsName"] == "myfs"
    assert storage.filesystem_data_pool_name("ceph-filesystem", [{}]) == "ceph-filesystem-data0"
    assert sc["provisioner"] == "rook-ceph.cephfs.csi.ceph.com"


@pytest.mark.parametrize("data, expected", [
    ({}, "ceph.rook.io/bucket"),
    ({"ROOK_OBC_WATCH_OPERATOR_NAMESPACE": "true"}, "rook-ceph.ceph.rook.io/bucket"),
    ({"ROOK_OBC_WATCH_OPERATOR_NAMESPACE": "false"}, "ceph.rook.io/bucket"),
    ({"ROOK_OBC_PROVISIONER_NAME_PREFIX": "mine", "ROOK_OBC_WATCH_OPERATOR_NAMESPACE": "true"}, "mine.ceph.rook.io/bucket"),
])
def test_bucket_provisioner_name_follows_the_operator_config(data, expected):
    assert storage.bucket_provisioner({"data": data}, "rook-ceph") == expected
    assert storage.bucket_provisioner(None, "rook-ceph") == "ceph.rook.io/bucket"


def test_object_store_names_are_at_most_38_characters():
    assert storage.object_store_name("s" * 38) == "s" * 38
    with pytest.raises(ValidationError):
        storage.object_store_name("s" * 39)


def test_bucket_claim_generates_a_name_unless_given_and_carries_quotas_as_strings():
    claim = storage.bucket_claim({"name": "uploads", "claim_namespace": "shop", "storage_class": "bucket", "max_objects": 100})
    assert claim["spec"] == {"storageClassName": "bucket", "generateBucketName": "uploads", "additionalConfig": {"maxObjects": "100"}}
    assert claim["metadata"] == {"name": "uploads", "namespace": "shop"}
    fixed = storage.bucket_claim({"name": "uploads", "claim_namespace": "shop", "storage_class": "bucket", "bucket_name": "exact"})
    assert fixed["spec"] == {"storageClassName": "bucket", "bucketName": "exact"}


class Api(object):
    def __init__(self, objects):
        self.objects = objects

    def request(self, action, method, path, **kwargs):
        return self.objects.get(path)


def test_a_claim_on_a_class_no_rook_store_serves_is_refused_before_the_write():
    api = Api({"/apis/storage.k8s.io/v1/storageclasses/gp2": {"provisioner": "ebs.csi.aws.com"},
               "/apis/storage.k8s.io/v1/storageclasses/bucket": {"provisioner": "rook-ceph.ceph.rook.io/bucket"}})
    storage.check_bucket_class(api, "bucket")
    with pytest.raises(ValidationError) as caught:
        storage.check_bucket_class(api, "gp2")
    assert caught.value.option == "storage_class" and "ebs.csi.aws.com" in caught.value.msg
    with pytest.raises(ValidationError):
        storage.check_bucket_class(api, "missing")


def test_cluster_gate_says_why_rook_holds_dependents_back():
    base = "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephclusters"
    assert "no CephCluster" in storage.cluster_gate(Api({}), "rook-ceph")
    sick = {"items": [{"metadata": {"name": "rook-ceph"}, "status": {"ceph": {"health": "HEALTH_ERR"}}}]}
    assert "HEALTH_ERR" in storage.cluster_gate(Api({base: sick}), "rook-ceph")
    fine = {"items": [{"metadata": {"name": "rook-ceph"}, "status": {"ceph": {"health": "HEALTH_WARN"}}}]}
    assert storage.cluster_gate(Api({base: fine}), "rook-ceph") is None
