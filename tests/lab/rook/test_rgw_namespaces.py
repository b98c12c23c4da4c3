"""Each CephObjectStore is a RADOS gateway of its own, as in Rook: its own users, its own bucket namespace,
buckets owned by the user that created them.

Two clusters with Rook; object store `objects` in each and a second store `other` in c1. The same
bucket name in three stores holds three different objects; a key of one store is unknown to the
others (InvalidAccessKeyId); in one store a user cannot read, write or list another user's bucket
(AccessDenied) nor take its name (409 BucketAlreadyExists) while the owner re-creates it (200, radosgw's
default); a claim with an explicit bucket name gets its own bucket in its store even where another
store has that name, and stays Pending where its own store has it under another owner; Velero in c1
keeps its backups in an RGW bucket through the store's in-cluster Service URL.

Upstream: src/rgw/rgw_op.cc (RGWCreateBucket, verify_bucket_permission: owner or grants), rgw_auth_s3.cc
(signatures), Rook pkg/operator/ceph/object/bucket/provisioner.go, lib-bucket-provisioner."""
from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.error
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from helpers import VeleroInstall, run_backup, unique, wait_for
from kubernetes import client
from labctl import LabHandle

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

GROUP, VERSION, NS = "ceph.rook.io", "v1", "rook-ceph"
OBC = ("objectbucket.io", "v1alpha1")


def _decoded(secret):
    return dict((k, base64.b64decode(v).decode()) for k, v in secret.data.items())


class Gateways:
    def __init__(self, lab):
        self.lab = lab
        self.apis = dict((c, lab.api(c)) for c in ("c1", "c2"))

    def custom(self, cluster):
        return client.CustomObjectsApi(self.apis[cluster])

    def core(self, cluster):
        return client.CoreV1Api(self.apis[cluster])

    def endpoint(self, cluster, store):
        return self.lab.cli("rook", "endpoint", cluster, store).stdout.strip()

    def store(self, cluster, name):
        custom = self.custom(cluster)
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstores", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephObjectStore", "metadata": {"name": name, "namespace": NS},
            "spec": {"metadataPool": {"replicated": {"size": 1}}, "dataPool": {"replicated": {"size": 1}}, "gateway": {"port": 80}}})
        wait_for(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstores", name).get("status") or {})
                 .get("phase") == "Ready", f"store {name} Ready in {cluster}", timeout=60)

    def user(self, cluster, store, name):
        """(access key, secret key) of a new CephObjectStoreUser."""
        custom = self.custom(cluster)
        custom.create_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstoreusers", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephObjectStoreUser", "metadata": {"name": name, "namespace": NS},
            "spec": {"store": store, "displayName": name}})
        wait_for(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstoreusers", name).get("status") or {})
                 .get("phase") == "Ready", f"user {name} Ready")
        data = _decoded(self.core(cluster).read_namespaced_secret(f"rook-ceph-object-user-{store}-{name}", NS))
        return data["AccessKey"], data["SecretKey"]

    def s3(self, cluster, store, keys):
        return boto3.client("s3", endpoint_url=self.endpoint(cluster, store), region_name="us-east-1",
                            aws_access_key_id=keys[0], aws_secret_access_key=keys[1],
                            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))

    def claim(self, cluster, name, storage_class, bucket):
        self.custom(cluster).create_namespaced_custom_object(*OBC, "default", "objectbucketclaims", {
            "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"bucketName": bucket, "storageClassName": storage_class}})

    def claim_phase(self, cluster, name):
        return (self.custom(cluster).get_namespaced_custom_object(*OBC, "default", "objectbucketclaims", name).get("status")
                or {}).get("phase")

    def bucket_class(self, cluster, name, store):
        client.StorageV1Api(self.apis[cluster]).create_storage_class({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "rook-ceph.ceph.rook.io/bucket", "reclaimPolicy": "Delete",
            "parameters": {"objectStoreName": store, "objectStoreNamespace": NS}})


@pytest.fixture(scope="module")
def gateways(tmp_path_factory):
    lab = LabHandle.up(tmp_path_factory.mktemp("rgw"), clusters=2, nodes=1, extra=("--devices", "1"))
    try:
        for cluster in ("c1", "c2"):
            lab.install_rook(cluster)
        gw = Gateways(lab)
        for cluster in ("c1", "c2"):
            wait_for(lambda: [d for d in client.AppsV1Api(gw.apis[cluster]).list_namespaced_deployment(NS).items
                              if d.status.available_replicas], "the operator in " + cluster)
            gw.custom(cluster).create_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephCluster", "metadata": {"name": "rook-ceph", "namespace": NS},
                "spec": {"cephVersion": {"image": "quay.io/ceph/ceph:v20.2.4"}, "dataDirHostPath": "/var/lib/rook",
                         "mon": {"count": 1}, "mgr": {"count": 1}, "storage": {"useAllNodes": True, "useAllDevices": True}}})
        gw.store("c1", "objects")
        gw.store("c2", "objects")
        gw.store("c1", "other")
        yield gw
        for api in gw.apis.values():
            api.close()
    finally:
        lab.down()


def _code(call):
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def test_the_same_bucket_name_in_three_stores_is_three_buckets(gateways):
    stores = (("c1", "objects"), ("c2", "objects"), ("c1", "other"))
    clients = {}
    for cluster, store in stores:
        s3 = clients[(cluster, store)] = gateways.s3(cluster, store, gateways.user(cluster, store, f"ns-{cluster}-{store}"))
        s3.create_bucket(Bucket="velero")
        s3.put_object(Bucket="velero", Key="who", Body=f"{cluster}/{store}".encode())
    for (cluster, store), s3 in clients.items():
        assert s3.get_object(Bucket="velero", Key="who")["Body"].read() == f"{cluster}/{store}".encode()
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["velero"]
        assert s3.list_objects_v2(Bucket="velero")["Name"] == "velero"
    assert gateways.endpoint("c1", "objects") != gateways.endpoint("c2", "objects") != gateways.endpoint("c1", "other")
    # a key of one store means nothing to another one, whether on another cluster or on the same
    c1_user = gateways.user("c1", "objects", "ns-stranger")
    for cluster, store in (("c2", "objects"), ("c1", "other")):
        stranger = gateways.s3(cluster, store, c1_user)
        assert _code(lambda: stranger.list_objects_v2(Bucket="velero")) == "InvalidAccessKeyId"
        assert _code(lambda: stranger.list_buckets()) == "InvalidAccessKeyId"


def test_a_user_reaches_only_the_buckets_it_owns(gateways):
    alice_keys = gateways.user("c1", "objects", "alice")
    alice, bob = gateways.s3("c1", "objects", alice_keys), gateways.s3("c1", "objects", gateways.user("c1", "objects", "bob"))
    alice.create_bucket(Bucket="alice-data")
    alice.put_object(Bucket="alice-data", Key="report.txt", Body=b"alice's")
    bob.create_bucket(Bucket="bob-data")
    for call in (lambda: bob.get_object(Bucket="alice-data", Key="report.txt"),
                 lambda: bob.put_object(Bucket="alice-data", Key="bob.txt", Body=b"x"),
                 lambda: bob.list_objects_v2(Bucket="alice-data"),
                 lambda: bob.delete_object(Bucket="alice-data", Key="report.txt"),
                 lambda: bob.delete_bucket(Bucket="alice-data"),
                 lambda: bob.copy_object(Bucket="bob-data", Key="stolen", CopySource={"Bucket": "alice-data", "Key": "report.txt"})):
        assert _code(call) == "AccessDenied"
    with pytest.raises(ClientError) as caught:
        bob.head_bucket(Bucket="alice-data")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # the name is alice's: bob gets 409 BucketAlreadyExists, alice re-creating it is answered 200 (radosgw's default)
    assert _code(lambda: bob.create_bucket(Bucket="alice-data")) == "BucketAlreadyExists"
    assert alice.create_bucket(Bucket="alice-data")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert [b["Name"] for b in bob.list_buckets()["Buckets"]] == ["bob-data"]
    assert alice.get_object(Bucket="alice-data", Key="report.txt")["Body"].read() == b"alice's"
    assert [o["Key"] for o in alice.list_objects_v2(Bucket="alice-data")["Contents"]] == ["report.txt"]
    assert _code(lambda: bob.list_objects_v2(Bucket="nobody-has-it")) == "NoSuchBucket"
    # the owner copies and uploads in parts as usual; the answers name the bucket as the client knows it
    alice.copy_object(Bucket="alice-data", Key="copy.txt", CopySource={"Bucket": "alice-data", "Key": "report.txt"})
    assert alice.get_object(Bucket="alice-data", Key="copy.txt")["Body"].read() == b"alice's"
    upload = alice.create_multipart_upload(Bucket="alice-data", Key="big.bin")
    assert upload["Bucket"] == "alice-data"
    part = alice.upload_part(Bucket="alice-data", Key="big.bin", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 1024)
    done = alice.complete_multipart_upload(Bucket="alice-data", Key="big.bin", UploadId=upload["UploadId"],
                                           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert done["Bucket"] == "alice-data" and "/alice-data/big.bin" in done["Location"]
    assert alice.get_object(Bucket="alice-data", Key="big.bin")["Body"].read() == b"p" * 1024
    assert _code(lambda: alice.get_object(Bucket="alice-data", Key="missing")) == "NoSuchKey"
    # presigned URLs: the owner's works, another user's is refused
    url = alice.generate_presigned_url("get_object", Params={"Bucket": "alice-data", "Key": "report.txt"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"alice's"
    url = bob.generate_presigned_url("get_object", Params={"Bucket": "alice-data", "Key": "report.txt"}, ExpiresIn=60)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 403
    # wrong secret, unknown key, no signature at all
    assert _code(lambda: gateways.s3("c1", "objects", (alice_keys[0], "not-the-secret")).list_objects_v2(Bucket="alice-data")) \
        == "SignatureDoesNotMatch"
    assert _code(lambda: gateways.s3("c1", "objects", ("AKIDNOTINTHISSTORE00", "x")).list_objects_v2(Bucket="alice-data")) \
        == "InvalidAccessKeyId"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(gateways.endpoint("c1", "objects") + "/alice-data/report.txt", timeout=10)
    assert anonymous.value.code == 403 and b"<Code>AccessDenied</Code>" in anonymous.value.read()
    # the lab's own S3 endpoint (Velero's bucket) still answers with the lab's keys, and knows nothing of alice
    lab_s3 = gateways.lab.s3_client()
    assert lab_s3.list_objects_v2(Bucket=gateways.lab.s3["bucket"])["Name"] == gateways.lab.s3["bucket"]
    assert _code(lambda: gateways.lab.s3_client(*alice_keys).list_buckets()) == "InvalidAccessKeyId"


def test_a_claim_with_a_bucket_name_another_store_has_gets_its_own_bucket(gateways):
    owner = gateways.s3("c1", "objects", gateways.user("c1", "objects", "carol"))
    owner.create_bucket(Bucket="claimed-name")
    owner.put_object(Bucket="claimed-name", Key="carol.txt", Body=b"carol's")
    gateways.bucket_class("c2", "c2-objects", "objects")
    gateways.bucket_class("c1", "c1-other", "other")
    gateways.bucket_class("c1", "c1-objects", "objects")
    gateways.claim("c2", "elsewhere", "c2-objects", "claimed-name")
    gateways.claim("c1", "next-door", "c1-other", "claimed-name")
    gateways.claim("c1", "taken", "c1-objects", "claimed-name")
    for cluster, name, store in (("c2", "elsewhere", "objects"), ("c1", "next-door", "other")):
        wait_for(lambda: gateways.claim_phase(cluster, name) == "Bound", f"claim {name} Bound in {cluster}")
        keys = _decoded(gateways.core(cluster).read_namespaced_secret(name, "default"))
        s3 = gateways.s3(cluster, store, (keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]))
        assert s3.list_objects_v2(Bucket="claimed-name")["KeyCount"] == 0    # not carol's bucket
        s3.put_object(Bucket="claimed-name", Key="claim.txt", Body=name.encode())
        assert s3.get_object(Bucket="claimed-name", Key="claim.txt")["Body"].read() == name.encode()
    assert [o["Key"] for o in owner.list_objects_v2(Bucket="claimed-name")["Contents"]] == ["carol.txt"]
    # in carol's own store the name is hers: that claim is not provisioned (Pending, retried)
    time.sleep(1.0)
    assert gateways.claim_phase("c1", "taken") == "Pending"
    assert gateways.custom("c1").get_namespaced_custom_object(*OBC, "default", "objectbucketclaims", "taken")["spec"].get(
        "objectBucketName") in (None, "")
    gateways.custom("c1").delete_namespaced_custom_object(*OBC, "default", "objectbucketclaims", "taken")


def test_velero_keeps_its_backups_in_an_rgw_bucket_of_its_cluster(gateways):
    keys = gateways.user("c1", "objects", "velero")
    s3 = gateways.s3("c1", "objects", keys)
    s3.create_bucket(Bucket="backups")
    velero = VeleroInstall(gateways.lab, "c1").install()
    core = gateways.core("c1")
    core.create_namespaced_secret("velero", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "rgw-credentials"},
                                             "stringData": {"cloud": "[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n" % keys}})
    velero.create("backupstoragelocations", {
        "kind": "BackupStorageLocation", "metadata": {"name": "rgw"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "backups", "prefix": "c1"},
                 "credential": {"name": "rgw-credentials", "key": "cloud"},
                 "config": {"region": "us-east-1", "s3ForcePathStyle": "true", "s3Url": "http://rook-ceph-rgw-objects.rook-ceph.svc:80"}}})
    velero.wait_bsl("rgw", "Available")
    name = unique("onrgw")
    backup = run_backup(velero, name, {"includedNamespaces": ["default"], "storageLocation": "rgw"})
    assert backup["status"]["phase"] == "Completed", backup["status"]
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket="backups", Prefix=f"c1/backups/{name}/")["Contents"]]
    assert f"c1/backups/{name}/velero-backup.json" in stored
    # a location with a key of another store is refused by this one
    other = gateways.user("c2", "objects", "velero")
    core.create_namespaced_secret("velero", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c2-credentials"},
                                             "stringData": {"cloud": "[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n" % other}})
    velero.create("backupstoragelocations", {
        "kind": "BackupStorageLocation", "metadata": {"name": "wrong-store"},
        "spec": {"provider": "aws", "objectStorage": {"bucket": "backups"}, "credential": {"name": "c2-credentials", "key": "cloud"},
                 "config": {"region": "us-east-1", "s3ForcePathStyle": "true", "s3Url": "http://rook-ceph-rgw-objects.rook-ceph.svc:80"}}})
    bsl = velero.wait_bsl("wrong-store", "Unavailable")
    assert "InvalidAccessKeyId" in bsl["status"].get("message", ""), bsl["status"]


def test_a_store_with_buckets_is_not_deleted_until_they_are_gone(gateways):
    gateways.store("c2", "doomed")
    keys = gateways.user("c2", "doomed", "tenant")
    s3 = gateways.s3("c2", "doomed", keys)
    s3.create_bucket(Bucket="keep")
    s3.put_object(Bucket="keep", Key="k", Body=b"v")
    custom = gateways.custom("c2")
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstores", "doomed")
    blocked = wait_for(lambda: [c for c in (custom.get_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstores", "doomed")
                                            .get("status") or {}).get("conditions") or [] if c["type"] == "DeletionIsBlocked"],
                       "doomed DeletionIsBlocked")
    assert blocked[0]["message"] == ('CephObjectStore "rook-ceph/doomed" will not be deleted until all dependents are removed: '
                                     "CephObjectStoreUsers: [tenant], "
                                     "buckets in the object store (could be from ObjectBucketClaims or COSI Buckets): [keep]")
    # a bucket emptied and removed through S3 makes no event: the operator looks again by itself
    s3.delete_object(Bucket="keep", Key="k")
    s3.delete_bucket(Bucket="keep")
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstoreusers", "tenant")
    wait_for(lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstores",
                                                              field_selector="metadata.name=doomed")["items"], "doomed gone", timeout=40)
    assert gateways.lab.cli("rook", "endpoint", "c2", "doomed", check=False).returncode != 0
    with pytest.raises((EndpointConnectionError, ConnectionClosedError)):     # its gateway is gone
        s3.list_buckets()


def test_signature_version_2_requests_and_urls(gateways):
    """Velero's signatureVersion "1" and older clients sign with AWS Signature Version 2; RGW accepts it."""
    keys = gateways.user("c1", "objects", "oldclient")
    v2 = boto3.client("s3", endpoint_url=gateways.endpoint("c1", "objects"), region_name="us-east-1", aws_access_key_id=keys[0],
                      aws_secret_access_key=keys[1], config=Config(signature_version="s3", retries={"max_attempts": 1},
                                                                   s3={"addressing_style": "path"}))
    v2.create_bucket(Bucket="old-style")
    v2.put_object(Bucket="old-style", Key="dir/a file.txt", Body=b"v2", ContentType="text/plain", Metadata={"who": "me"})
    assert v2.get_object(Bucket="old-style", Key="dir/a file.txt")["Body"].read() == b"v2"
    assert [o["Key"] for o in v2.list_objects(Bucket="old-style", Prefix="dir/")["Contents"]] == ["dir/a file.txt"]
    assert v2.get_object_tagging(Bucket="old-style", Key="dir/a file.txt")["TagSet"] == []
    url = v2.generate_presigned_url("get_object", Params={"Bucket": "old-style", "Key": "dir/a file.txt"}, ExpiresIn=60)
    assert "Signature=" in url and "AWSAccessKeyId=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"v2"
    wrong = boto3.client("s3", endpoint_url=gateways.endpoint("c1", "objects"), region_name="us-east-1", aws_access_key_id=keys[0],
                         aws_secret_access_key="wrong", config=Config(signature_version="s3", retries={"max_attempts": 1},
                                                                      s3={"addressing_style": "path"}))
    assert _code(lambda: wrong.list_objects(Bucket="old-style")) == "SignatureDoesNotMatch"


def test_a_user_secret_with_other_keys_is_brought_back_to_the_gateways_key(gateways):
    """As after a Velero restore of the Secret from another cluster: the operator's next look at the user rewrites it."""
    keys = gateways.user("c2", "objects", "restored")
    core, name = gateways.core("c2"), "rook-ceph-object-user-objects-restored"
    core.patch_namespaced_secret(name, NS, {"stringData": {"AccessKey": "FROMANOTHERCLUSTER00", "SecretKey": "x" * 40}})
    gateways.custom("c2").patch_namespaced_custom_object(GROUP, VERSION, NS, "cephobjectstoreusers", "restored",
                                                         {"metadata": {"annotations": {"touched": "yes"}}})
    wait_for(lambda: _decoded(core.read_namespaced_secret(name, NS))["AccessKey"] == keys[0], "the Secret holding the gateway's key")
    assert _decoded(core.read_namespaced_secret(name, NS))["SecretKey"] == keys[1]
    gateways.s3("c2", "objects", keys).list_buckets()


def test_a_bucket_policy_grants_and_denies(gateways):
    """RGW evaluates a bucket's policy before ownership: Allow lets another user (or anybody: "*") in for the actions
    it names, an explicit Deny stops even the owner (rgw_op.cc verify_bucket_permission, rgw_iam_policy.cc)."""
    dave = gateways.s3("c1", "objects", gateways.user("c1", "objects", "dave"))
    erin = gateways.s3("c1", "objects", gateways.user("c1", "objects", "erin"))
    dave.create_bucket(Bucket="shared")
    dave.put_object(Bucket="shared", Key="doc.txt", Body=b"dave's")
    dave.put_object(Bucket="shared", Key="public/readme", Body=b"anyone")
    assert _code(lambda: erin.get_object(Bucket="shared", Key="doc.txt")) == "AccessDenied"
    dave.put_bucket_policy(Bucket="shared", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam:::user/erin"]}, "Action": ["s3:GetObject", "s3:ListBucket"],
         "Resource": ["arn:aws:s3:::shared", "arn:aws:s3:::shared/*"]},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared/public/*"},
        {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam:::user/dave"}, "Action": "s3:DeleteObject",
         "Resource": "arn:aws:s3:::shared/doc.txt"}]}))
    assert erin.get_object(Bucket="shared", Key="doc.txt")["Body"].read() == b"dave's"
    assert sorted(o["Key"] for o in erin.list_objects_v2(Bucket="shared")["Contents"]) == ["doc.txt", "public/readme"]
    assert _code(lambda: erin.put_object(Bucket="shared", Key="erin.txt", Body=b"x")) == "AccessDenied"
    assert _code(lambda: erin.get_bucket_policy(Bucket="shared")) == "AccessDenied"
    assert "shared" not in [b["Name"] for b in erin.list_buckets()["Buckets"]]   # still dave's bucket
    with urllib.request.urlopen(gateways.endpoint("c1", "objects") + "/shared/public/readme", timeout=10) as response:
        assert response.read() == b"anyone"
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(gateways.endpoint("c1", "objects") + "/shared/doc.txt", timeout=10)
    assert anonymous.value.code == 403
    assert _code(lambda: dave.delete_object(Bucket="shared", Key="doc.txt")) == "AccessDenied"
    dave.delete_object(Bucket="shared", Key="public/readme")      # not denied: the owner's
    dave.delete_bucket_policy(Bucket="shared")
    assert _code(lambda: erin.get_object(Bucket="shared", Key="doc.txt")) == "AccessDenied"
    dave.delete_object(Bucket="shared", Key="doc.txt")
