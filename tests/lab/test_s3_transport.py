"""The lab's S3 fast paths: the S3 child (fleetdr_lab.s3_child_server) and the emulated Velero's signed
HTTP transport (controllers/velero/backup_store.py SignedHttp).

- SignedHttp signs exactly like botocore's S3SigV4Auth (same Authorization for the same request);
- against the session lab's S3: objects written through it read back the same through boto3,
  a wrong key or a revoked key never succeeds (the call falls back to boto3 and gets Velero's
  error text), and the S3 child keeps connections alive (several requests, one TCP connection).
"""
from __future__ import annotations

import socket
import uuid

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fleetdr_lab.controllers.velero import backup_store as vs3


@pytest.mark.parametrize("method,key,body,token", [
    ("PUT", "velero/c1/backups/b1/b1.tar.gz", b"\x1f\x8b" + b"x" * 300, None),
    ("HEAD", "velero/c1/backups/b1/velero-backup.json", None, None),
    ("GET", "p/a b+c/\u00e9~x", None, "session-token"),
    ("DELETE", "k", None, None),
])
def test_signature_matches_botocore(method, key, body, token):
    t = vs3.SignedHttp("http://127.0.0.1:4566", "eu-west-1", "AKIDEXAMPLE", "secret/key+x", token)
    path = "/fleetdr/" + vs3.percent_encode(key, safe="/~")
    req = AWSRequest(method=method, url="http://127.0.0.1:4566" + path, data=body or b"")
    S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+x", token), "s3", "eu-west-1").add_auth(req)
    ours = t.sign(method, path, body, amz_date=req.headers["X-Amz-Date"])
    assert ours["authorization"] == req.headers["Authorization"]
    assert ours["x-amz-content-sha256"] == req.headers["X-Amz-Content-SHA256"]
    if token:
        assert ours["x-amz-security-token"] == req.headers["X-Amz-Security-Token"]


def test_usable_only_where_boto3_sends_path_style_sigv4():
    assert vs3.SignedHttp.usable("http://127.0.0.1:9000", False, "s3v4", "k", "s")
    assert vs3.SignedHttp.usable("http://localhost:9000", True, "s3v4", "k", "s")
    assert not vs3.SignedHttp.usable("http://localhost:9000", False, "s3v4", "k", "s")   # virtual host
    assert not vs3.SignedHttp.usable("https://127.0.0.1:9000", True, "s3v4", "k", "s")
    assert not vs3.SignedHttp.usable("http://127.0.0.1:9000", True, "s3", "k", "s")      # SigV2
    assert not vs3.SignedHttp.usable("http://127.0.0.1:9000/base", True, "s3v4", "k", "s")
    assert not vs3.SignedHttp.usable("http://127.0.0.1:9000", True, "s3v4", None, None)


def _store(lab, key_id=None, secret=None):
    s3 = lab.s3
    params = (s3["endpoint"], s3["region"], key_id or s3["access_key_id"],
              secret or s3["secret_access_key"], None, True, True)
    bs = vs3.BackupStore("default", s3["bucket"], "t", vs3._client_for(*params))
    bs.transport = vs3.SignedHttp(s3["endpoint"], s3["region"], params[2], params[3], None)
    return bs


def test_transport_round_trip_matches_boto3(lab):
    bs = _store(lab)
    key = f"transport-test/{uuid.uuid4().hex}/a b+\u00e9.gz"
    data = bytes(range(256)) * 40
    assert bs.object_exists(key) is False
    bs.put_object(key, data)
    assert bs.object_exists(key) is True
    assert bs.get_object(key) == data
    s3 = lab.s3_client()
    got = s3.get_object(Bucket=lab.s3["bucket"], Key=key)
    assert got["Body"].read() == data
    assert got["ContentType"] == "binary/octet-stream"
    bs.delete_object(key)
    assert bs.object_exists(key) is False


def test_wrong_key_is_rejected_with_velero_error(lab):
    bs = _store(lab, secret="not-the-secret")
    assert bs.transport.put(lab.s3["bucket"], "transport-test/denied", b"1") is False
    with pytest.raises(vs3.ObjectStoreError) as err:
        bs.put_object("transport-test/denied", b"1")
    assert "StatusCode: 403" in str(err.value) and "SignatureDoesNotMatch" in str(err.value)
    with pytest.raises(vs3.ObjectStoreError, match="StatusCode: 403"):
        bs.object_exists("transport-test/denied")


def test_s3_child_keeps_connections_alive(lab):
    s3 = lab.s3
    host, port = s3["endpoint"].rsplit("//", 1)[1].split(":")
    t = vs3.SignedHttp(s3["endpoint"], s3["region"], s3["access_key_id"], s3["secret_access_key"], None)
    key = f"transport-test/{uuid.uuid4().hex}"
    for i in range(3):
        assert t.put(s3["bucket"], f"{key}-{i}", b"x" * i)
    conn = t._local.conn
    assert conn is not None
    local = conn.sock.getsockname()
    for i in range(3):
        assert t.get(s3["bucket"], f"{key}-{i}") == b"x" * i
    assert t._local.conn is conn and conn.sock.getsockname() == local   # same TCP connection
    # a plain HTTP/1.1 client sees no "Connection: close" either
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /moto-api/data.json HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        buf = b""
        while buf.count(b"HTTP/1.1 200") < 2:
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
    assert b"Connection: close" not in buf


def test_revoked_key_is_denied_then_restored(lab_factory):
    private = lab_factory(clusters=1)
    bs = _store(private)
    key = f"transport-test/{uuid.uuid4().hex}"
    bs.put_object(key, b"before")
    private.cli("s3", "revoke")
    try:
        assert bs.transport.put(private.s3["bucket"], key, b"during") is False
        assert bs.transport.get(private.s3["bucket"], key) is None
        with pytest.raises(vs3.ObjectStoreError) as err:
            bs.put_object(key, b"during")
        assert "StatusCode: 403" in str(err.value) and "AccessDenied" in str(err.value)
        with pytest.raises(vs3.ObjectStoreError, match="StatusCode: 403"):
            bs.get_object(key)
    finally:
        private.cli("s3", "restore")
    assert bs.get_object(key) == b"before"
