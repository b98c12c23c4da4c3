"""BackupStorageLocation validation against the lab's S3.

Upstream source: Velero pkg/controller/backup_storage_location_controller.go.
"""
from __future__ import annotations

import base64

from kubernetes.client.rest import ApiException


def make_bsl(v, name, prefix=None, bucket=None, config=None, credential=None, **spec_extra):
    spec = {"provider": "aws", "objectStorage": {"bucket": bucket or v.bucket},
            "config": dict(v.bsl_config if config is None else config)}
    if prefix is not None:
        spec["objectStorage"]["prefix"] = prefix
    if credential:
        spec["credential"] = credential
    spec.update(spec_extra)
    v.create("backupstoragelocations", {"kind": "BackupStorageLocation", "metadata": {"name": name}, "spec": spec})
    return name


def secret(v, name, text):
    try:
        v.core.create_namespaced_secret(v.namespace, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {"cloud": base64.b64encode(text.encode()).decode()}})
    except ApiException as exc:
        if exc.status != 409:
            raise


def test_default_bsl_available(velero):
    bsl = velero.get("backupstoragelocations", "default")
    st = bsl["status"]
    assert st["phase"] == "Available"
    assert st["lastValidationTime"].endswith("Z")
    assert not st.get("message")
    assert bsl["spec"]["default"] is True


def test_wrong_access_key_is_unavailable(velero):
    secret(velero, "wrong-creds", "[default]\naws_access_key_id=AKIAWRONGWRONGWRONG0\n"
                                  "aws_secret_access_key=not-the-secret\n")
    name = make_bsl(velero, velero.unique("wrongkey"), prefix="wrong-key",
                    credential={"name": "wrong-creds", "key": "cloud"})
    st = velero.wait_bsl(name, "Unavailable")["status"]
    assert st["message"].startswith(
        f'BackupStorageLocation "{name}" is unavailable: rpc error: code = Unknown desc = '
        "operation error S3: ListObjectsV2, https response error StatusCode: 403")
    assert "api error InvalidAccessKeyId" in st["message"]
    assert st["lastValidationTime"]
    # ... and a backup to it fails validation
    b = velero.backup(velero.unique("to-unavailable"), {"storageLocation": name})
    assert b["status"]["phase"] == "FailedValidation"
    assert b["status"]["validationErrors"] == [
        f"backup can't be created because BackupStorageLocation {name} is in Unavailable status."]
    velero.delete("backupstoragelocations", name)


def test_explicit_credential_with_the_right_key_works(velero):
    secret(velero, "right-creds", (velero.lab.dir / "credentials-velero").read_text())
    name = make_bsl(velero, velero.unique("rightkey"), prefix=velero.unique("rk"),
                    credential={"name": "right-creds", "key": "cloud"})
    velero.wait_bsl(name, "Available")
    b = velero.backup(velero.unique("via-cred"), {"storageLocation": name, "includedNamespaces": ["default"]})
    assert b["status"]["phase"] == "Completed"
    velero.delete("backupstoragelocations", name)


def test_wrong_bucket_is_unavailable(velero):
    name = make_bsl(velero, velero.unique("nobucket"), bucket="no-such-bucket-fleetdr")
    st = velero.wait_bsl(name, "Unavailable")["status"]
    assert "StatusCode: 404" in st["message"] and "api error NoSuchBucket" in st["message"]
    velero.delete("backupstoragelocations", name)


def test_invalid_config_key_is_unavailable(velero):
    cfg = dict(velero.bsl_config, regoin="us-east-1")
    name = make_bsl(velero, velero.unique("badkey"), config=cfg)
    st = velero.wait_bsl(name, "Unavailable")["status"]
    assert st["message"] == (
        f'BackupStorageLocation "{name}" is unavailable: rpc error: code = Unknown desc = config has '
        "invalid keys [regoin]; valid keys are [region s3Url publicUrl kmsKeyId customerKeyEncryptionFile "
        "customerKeyEncryptionSecret s3ForcePathStyle signatureVersion credentialsFile profile "
        "serverSideEncryption insecureSkipTLSVerify enableSharedConfig tagging checksumAlgorithm bucket "
        "prefix caCert]")
    velero.delete("backupstoragelocations", name)


def test_unknown_top_level_directories_make_it_unavailable(velero):
    prefix = velero.unique("junk")
    s3 = velero.s3()
    for d in ("backups", "kopia", "junk1", "junk2"):
        s3.put_object(Bucket=velero.bucket, Key=f"{prefix}/{d}/x", Body=b"x")
    s3.put_object(Bucket=velero.bucket, Key=f"{prefix}/loose-file", Body=b"x")  # loose objects are fine
    name = make_bsl(velero, velero.unique("junk"), prefix=prefix)
    st = velero.wait_bsl(name, "Unavailable")["status"]
    assert st["message"] == (f'BackupStorageLocation "{name}" is unavailable: '
                             "Backup store contains invalid top-level directories: [junk1 junk2]")
    # removing the junk and touching the spec re-validates it (validation runs on every spec change)
    for d in ("junk1", "junk2"):
        s3.delete_object(Bucket=velero.bucket, Key=f"{prefix}/{d}/x")
    velero.patch("backupstoragelocations", name, {"spec": {"validationFrequency": "30s"}})
    velero.wait_bsl(name, "Available")
    velero.delete("backupstoragelocations", name)


def test_only_one_default_bsl(velero):
    name = make_bsl(velero, velero.unique("newdefault"), prefix=velero.unique("nd"), default=True)
    velero.wait_for(lambda: velero.get("backupstoragelocations", "default")["spec"].get("default") is False,
                    what="old default cleared")
    assert velero.get("backupstoragelocations", name)["spec"]["default"] is True
    # several defaults: the most recently created keeps it, the older one is reset again
    velero.patch("backupstoragelocations", "default", {"spec": {"default": True}})
    velero.wait_for(lambda: velero.get("backupstoragelocations", "default")["spec"].get("default") is False,
                    what="older default reset")
    assert velero.get("backupstoragelocations", name)["spec"]["default"] is True
    velero.delete("backupstoragelocations", name)
    velero.patch("backupstoragelocations", "default", {"spec": {"default": True}})
    velero.wait_for(lambda: velero.get("backupstoragelocations", "default")["spec"].get("default") is True,
                    what="default restored")


def test_kubectl_columns(velero, lab):
    out = lab.kubectl("get", "bsl", "-n", velero.namespace, "default", context=velero.cluster).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "LAST", "VALIDATED", "AGE", "DEFAULT"]
    assert row.split()[0:2] == ["default", "Available"] and row.split()[-1] == "true"


def test_revoked_credentials_make_bsl_unavailable(private_velero):
    v = private_velero
    private = v.lab
    private.cli("s3", "revoke")
    try:
        # due validation after the change; touching the spec validates now
        v.patch("backupstoragelocations", "default", {"spec": {"validationFrequency": "1s"}})
        st = v.wait_bsl("default", "Unavailable")["status"]
        assert "StatusCode: 403" in st["message"] and "api error AccessDenied" in st["message"]
        b = v.backup(v.unique("revoked"), {})
        assert b["status"]["phase"] == "FailedValidation"
    finally:
        private.cli("s3", "restore")
    v.wait_bsl("default", "Available")   # periodic validation (1s) picks the restored key up



def test_bsl_needs_the_object_store_plugin(scratch_lab, velero_installer):
    """Without the AWS plugin init container the server has no `velero.io/aws` ObjectStore."""
    v = velero_installer(scratch_lab, "c1", namespace=velero_installer.unique("velero"), plugins=())
    v.install(wait=False)
    try:
        st = v.wait_bsl("default", "Unavailable")["status"]
        assert st["message"] == ('BackupStorageLocation "default" is unavailable: '
                                 "unable to locate ObjectStore plugin named velero.io/aws")
    finally:
        v.uninstall()


def test_crds_as_kubectl_sees_them(velero, lab):
    out = lab.kubectl("api-resources", "--api-group=velero.io", "--no-headers", context=velero.cluster).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert len(rows) == 13
    assert rows["backupstoragelocations"][1] == "bsl" and rows["serverstatusrequests"][1] == "ssr"
    assert rows["volumesnapshotlocations"][1] == "vsl"
    assert {r[-1] for r in rows.values()} >= {"Backup", "DataUpload", "DataDownload"}
    # no /status subresource: status written on the main resource is kept
    crd = velero.ext.read_custom_resource_definition("backups.velero.io")
    assert not (crd.spec.versions[0].subresources and crd.spec.versions[0].subresources.status)
