"""Rook object storage in the lab: CephObjectStore (RGW Deployment, Service, endpoint), CephObjectStoreUser
(its Secret's exact keys), ObjectBucketClaim/ObjectBucket (lib-bucket-provisioner's contract), with
the S3 API behind them real: the keys work with boto3 at the store's endpoint (`fleetdr-lab rook
endpoint`), wrong keys are refused, a claim's bucket is deleted with it (reclaim Delete)."""
from __future__ import annotations

import base64
import shutil
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from helpers import wait_for as wait

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

GROUP, VERSION, NS = "ceph.rook.io", "v1", "rook-ceph"


def endpoint(lab, store, cluster="c1", namespace=NS):
    """The store's S3 endpoint on the lab host (what http://rook-ceph-rgw-<store>.<ns>.svc is in the cluster)."""
    return lab.cli("rook", "endpoint", cluster, store, "--namespace", namespace).stdout.strip()


def s3(lab, key_id, secret, store="my-store", cluster="c1", namespace=NS):
    return boto3.client("s3", endpoint_url=endpoint(lab, store, cluster, namespace), region_name="us-east-1", aws_access_key_id=key_id,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))


def decoded(secret):
    return dict((k, base64.b64decode(v).decode()) for k, v in secret.data.items())


def test_object_store_user_and_its_keys(ceph_lab, ceph_apis):
    custom, core, _storage = ceph_apis
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstores", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephObjectStore", "metadata": {"name": "my-store", "namespace": NS},
        "spec": {"metadataPool": {"replicated": {"size": 3}}, "dataPool": {"erasureCoded": {"dataChunks": 2, "codingChunks": 1}},
                 "gateway": {"port": 80, "instances": 1}}})
    store = wait(lambda: (lambda s: s if (s.get("status") or {}).get("phase") == "Ready" else None)(
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstores", "my-store")), "store Ready", 60)
    assert store["status"]["info"]["endpoint"] == "http://rook-ceph-rgw-my-store.rook-ceph.svc:80"
    assert core.read_namespaced_service("rook-ceph-rgw-my-store", NS).spec.ports[0].target_port == 8080
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstoreusers", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephObjectStoreUser", "metadata": {"name": "velero", "namespace": NS},
        "spec": {"store": "my-store", "displayName": "velero"}})
    wait(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstoreusers", "velero").get("status") or {})
         .get("phase") == "Ready", "user Ready")
    secret = core.read_namespaced_secret("rook-ceph-object-user-my-store-velero", NS)
    data = decoded(secret)
    assert set(data) == {"AccessKey", "SecretKey", "Endpoint"} and secret.type == "kubernetes.io/rook"
    assert data["Endpoint"] == "http://rook-ceph-rgw-my-store.rook-ceph.svc:80"
    user = s3(ceph_lab, data["AccessKey"], data["SecretKey"])
    user.create_bucket(Bucket="velero-backups")
    user.put_object(Bucket="velero-backups", Key="hello", Body=b"rgw")
    assert user.get_object(Bucket="velero-backups", Key="hello")["Body"].read() == b"rgw"
    with pytest.raises(ClientError) as caught:
        s3(ceph_lab, data["AccessKey"], "wrong-secret").list_objects_v2(Bucket="velero-backups")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_bucket_claim_contract_and_deletion(ceph_lab, ceph_apis):
    custom, core, storage = ceph_apis
    storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "rook-ceph-bucket"},
                                  "provisioner": "rook-ceph.ceph.rook.io/bucket", "reclaimPolicy": "Delete",
                                  "parameters": {"objectStoreName": "my-store", "objectStoreNamespace": NS}})
    custom.create_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims", {
        "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim", "metadata": {"name": "uploads", "namespace": "default"},
        "spec": {"generateBucketName": "uploads", "storageClassName": "rook-ceph-bucket"}})
    claim = wait(lambda: (lambda c: c if (c.get("status") or {}).get("phase") == "Bound" else None)(
        custom.get_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims", "uploads")), "Bound")
    bucket = claim["spec"]["bucketName"]
    assert bucket.startswith("uploads-") and len(bucket) == len("uploads-") + 36
    assert claim["spec"]["objectBucketName"] == "obc-default-uploads"
    assert "objectbucket.io/finalizer" in claim["metadata"]["finalizers"]
    assert claim["metadata"]["labels"]["bucket-provisioner"] == "rook-ceph.ceph.rook.io-bucket"
    config = core.read_namespaced_config_map("uploads", "default").data
    assert config == {"BUCKET_HOST": "rook-ceph-rgw-my-store.rook-ceph.svc", "BUCKET_NAME": bucket, "BUCKET_PORT": "80",
                      "BUCKET_REGION": "", "BUCKET_SUBREGION": ""}
    keys = decoded(core.read_namespaced_secret("uploads", "default"))
    assert set(keys) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    ob = custom.get_cluster_custom_object("objectbucket.io", "v1alpha1", "objectbuckets", "obc-default-uploads")
    assert ob["status"]["phase"] == "Bound" and ob["spec"]["reclaimPolicy"] == "Delete"
    owner = s3(ceph_lab, keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"])
    owner.put_object(Bucket=bucket, Key="a.txt", Body=b"x")
    # a claim's key reaches its own bucket only: another claim's bucket answers AccessDenied
    custom.create_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims", {
        "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim", "metadata": {"name": "other", "namespace": "default"},
        "spec": {"generateBucketName": "other", "storageClassName": "rook-ceph-bucket"}})
    other = wait(lambda: (lambda c: c if (c.get("status") or {}).get("phase") == "Bound" else None)(
        custom.get_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims", "other")), "Bound")
    other_keys = decoded(core.read_namespaced_secret("other", "default"))
    s3(ceph_lab, other_keys["AWS_ACCESS_KEY_ID"], other_keys["AWS_SECRET_ACCESS_KEY"]).put_object(
        Bucket=other["spec"]["bucketName"], Key="b.txt", Body=b"y")
    for call in (lambda: owner.get_object(Bucket=other["spec"]["bucketName"], Key="b.txt"),
                 lambda: owner.put_object(Bucket=other["spec"]["bucketName"], Key="c.txt", Body=b"z"),
                 lambda: owner.list_objects_v2(Bucket=other["spec"]["bucketName"])):
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "AccessDenied"
    # the lab's own Velero bucket is not in this object store at all
    with pytest.raises(ClientError) as caught:
        owner.list_objects_v2(Bucket=ceph_lab.s3["bucket"])
    assert caught.value.response["Error"]["Code"] == "NoSuchBucket"
    custom.delete_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims", "other")
    # a claim of a class no Rook provisioner serves is ignored: no phase at all
    storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "other-bucket"},
                                  "provisioner": "example.com/bucket", "parameters": {}})
    custom.create_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims", {
        "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim", "metadata": {"name": "ignored", "namespace": "default"},
        "spec": {"generateBucketName": "x", "storageClassName": "other-bucket"}})
    time.sleep(0.5)
    assert not (custom.get_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims", "ignored")
                .get("status") or {}).get("phase")
    custom.delete_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims", "uploads")
    wait(lambda: not custom.list_namespaced_custom_object("objectbucket.io", "v1alpha1", "default", "objectbucketclaims",
                                                          field_selector="metadata.name=uploads")["items"], "claim gone")
    # the claim's user went with it, and so did its bucket: the name is free in the store again
    with pytest.raises(ClientError) as caught:
        owner.list_objects_v2(Bucket=bucket)
    assert caught.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    user = decoded(core.read_namespaced_secret("rook-ceph-object-user-my-store-velero", NS))
    taker = s3(ceph_lab, user["AccessKey"], user["SecretKey"])
    taker.create_bucket(Bucket=bucket)
    assert taker.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
