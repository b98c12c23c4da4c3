"""`fleetdr-lab volume put|get|ls` through the real CLI, and the Python helpers it is built on."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from helpers import delete_namespace, make_namespace, pvc, unique, wait_for


@pytest.fixture(scope="module")
def bound(lab, apis):
    """A namespace with a Bound claim `data` and a Pending claim `pending` in c1."""
    ns = unique("vol")
    make_namespace(apis.core, ns)
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("data"))
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("pending", storage_class="none"))
    claim = wait_for(lambda: (lambda c: c.status.phase == "Bound" and c)(
        apis.core.read_namespaced_persistent_volume_claim("data", ns)), "claim bound")
    yield ns, claim
    delete_namespace(apis.core, ns)


def _vol(lab, action, ns, *args, pvc_name="data", cluster="c1", check=True):
    return lab.cli("volume", action, "--cluster", cluster, "--namespace", ns, "--pvc", pvc_name,
                   *args, check=check)


def test_put_get_roundtrip_lands_in_the_pv_host_path(lab, bound):
    ns, claim = bound
    _vol(lab, "put", ns, "notes/hello.txt", "--text", "hello volume")
    assert _vol(lab, "get", ns, "notes/hello.txt").stdout == "hello volume"
    # the bytes are in the PV's hostPath directory under the lab dir
    host = lab.dir / "volumes" / "c1" / claim.spec.volume_name / "notes" / "hello.txt"
    assert host.read_text() == "hello volume"


def test_put_from_file_and_get_to_file_are_byte_identical(lab, bound, tmp_path):
    ns, _ = bound
    payload = os.urandom(256 * 1024) + bytes(range(256))
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    _vol(lab, "put", ns, "/bin/blob.bin", "--from", str(src))
    out = tmp_path / "out.bin"
    _vol(lab, "get", ns, "bin/blob.bin", "--to", str(out))
    assert out.read_bytes() == payload


def test_ls_lists_files_with_sizes_and_sha256(lab, bound):
    ns, _ = bound
    _vol(lab, "put", ns, "tree/a.txt", "--text", "alpha")
    _vol(lab, "put", ns, "tree/sub/b.txt", "--text", "beta!")
    entries = json.loads(_vol(lab, "ls", ns, "tree", "--sha256", "--json").stdout)
    assert entries == [
        {"path": "tree/a.txt", "size": 5, "sha256": hashlib.sha256(b"alpha").hexdigest()},
        {"path": "tree/sub/b.txt", "size": 5, "sha256": hashlib.sha256(b"beta!").hexdigest()},
    ]
    text = _vol(lab, "ls", ns, "tree", "--sha256").stdout.splitlines()
    assert text[0].split() == ["5", hashlib.sha256(b"alpha").hexdigest(), "tree/a.txt"]


def test_python_helpers_resolve_through_the_api(lab, bound):
    from fleetdr_lab import volumes
    ns, _ = bound
    assert volumes.put(lab.dir, "c1", ns, "data", "py/x.bin", data=b"\x00\x01") == 2
    assert volumes.get(lab.dir, "c1", ns, "data", "py/x.bin") == b"\x00\x01"
    assert volumes.sha256_tree(lab.dir, "c1", ns, "data", "py") == {
        "py/x.bin": hashlib.sha256(b"\x00\x01").hexdigest()}


@pytest.mark.parametrize("args,code,message", [
    (("get", "--pvc", "missing", "x"), 6, 'persistentvolumeclaim "missing" not found'),
    (("get", "--pvc", "pending", "x"), 7, "is not bound"),
    (("get", "--pvc", "data", "../../etc/passwd"), 2, "escapes the volume"),
    (("put", "--pvc", "data", "a/../../evil", "--text", "x"), 2, "escapes the volume"),
    (("get", "--pvc", "data", "no/such/file"), 6, "is not a file"),
])
def test_errors_are_clear_and_have_distinct_exit_codes(lab, bound, args, code, message):
    ns, _ = bound
    action, *rest = args
    proc = lab.cli("volume", action, "--cluster", "c1", "--namespace", ns, *rest, check=False)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr


def test_unknown_cluster(lab, bound):
    ns, _ = bound
    proc = _vol(lab, "ls", ns, cluster="c99", check=False)
    assert proc.returncode == 5 and "unknown cluster 'c99'" in proc.stderr


def test_symlink_out_of_the_volume_is_refused(lab, bound, tmp_path):
    ns, claim = bound
    root = lab.dir / "volumes" / "c1" / claim.spec.volume_name
    (root / "escape").symlink_to(tmp_path)
    try:
        proc = _vol(lab, "put", ns, "escape/owned.txt", "--text", "x", check=False)
        assert proc.returncode == 2 and "outside the volume" in proc.stderr
        assert not (tmp_path / "owned.txt").exists()
    finally:
        (root / "escape").unlink()
