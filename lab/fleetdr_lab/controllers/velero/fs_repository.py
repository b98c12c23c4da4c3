"""The file-system backup repository under `<bsl root>/kopia/<volume-namespace>/`.

Shaped like a kopia repository, simplified: a format blob `kopia.repository` (unique ID, key
derivation salt, a password check), Velero's `udmrepo.Repository` blob, content blobs
`p<hmac>` (one per distinct 4 MiB chunk, AES-256-GCM encrypted with a key derived from the
repository password) and snapshot manifests `q<snapshot-id>` (the directory tree: paths, modes,
sizes, chunk lists). Contents are addressed by an HMAC of their plaintext, so a chunk already in
the repository is never uploaded again: a second backup of unchanged data uploads only its
manifest. All methods are blocking (boto3 and file IO): run them in an executor.

Upstream source: Velero pkg/repository/backup_repo_op.go, pkg/repository/provider/unified_repo.go.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK_SIZE = 4 * 1024 * 1024
FORMAT_BLOB = "kopia.repository"
UDM_BLOB = "udmrepo.Repository"
PASSWORD_CHECK = b"fleetdr-lab kopia password check"
RESTORE_MARKER_DIR = ".velero"


class RepositoryError(Exception):
    pass


@dataclass
class Progress:
    """Shared between the worker thread and the async status patcher."""
    total_bytes: int = 0
    bytes_done: int = 0
    incremental_bytes: int = 0
    lock: threading.Lock = None

    def __post_init__(self):
        self.lock = threading.Lock()

    def add(self, done: int = 0, incremental: int = 0):
        with self.lock:
            self.bytes_done += done
            self.incremental_bytes += incremental


def _derive_key(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 20000, dklen=64)


class FsRepository:
    def __init__(self, backup_store, volume_namespace: str, password: str):
        self.bs = backup_store
        self.volume_namespace = volume_namespace
        self.prefix = backup_store.layout.kopia_repo_dir(volume_namespace)
        self.password = password
        self._aead = None
        self._hmac_key = b""
        self.unique_id = ""

    # ---- open / create -----------------------------------------------------------------
    def open_or_create(self) -> bool:
        """Open the repository, initialising it when the format blob is absent. True if created."""
        key = self.prefix + FORMAT_BLOB
        if not self.bs.object_exists(key):
            salt = secrets.token_bytes(16)
            self.unique_id = base64.b64encode(secrets.token_bytes(32)).decode()
            self._set_keys(salt)
            nonce = secrets.token_bytes(12)
            check = nonce + self._aead.encrypt(nonce, PASSWORD_CHECK, None)
            fmt = {
                "tool": "fleetdr-lab", "uniqueID": self.unique_id,
                "keyAlgo": "pbkdf2-sha256", "encryption": "AES256-GCM", "hash": "HMAC-SHA256",
                "splitter": f"FIXED-{CHUNK_SIZE // (1024 * 1024)}M",
                "kdfSalt": base64.b64encode(salt).decode(),
                "passwordCheck": base64.b64encode(check).decode(),
            }
            self.bs.put_object(key, json.dumps(fmt, indent=2).encode())
            self.bs.put_object(self.prefix + UDM_BLOB, json.dumps({"uniqueID": self.unique_id}).encode())
            return True
        fmt = json.loads(self.bs.get_object(key))
        self.unique_id = fmt["uniqueID"]
        self._set_keys(base64.b64decode(fmt["kdfSalt"]))
        check = base64.b64decode(fmt["passwordCheck"])
        try:
            if self._aead.decrypt(check[:12], check[12:], None) != PASSWORD_CHECK:
                raise InvalidTag()
        except InvalidTag:
            raise RepositoryError("error to connect backup repo: error to connect repo with storage: "
                                  "error to connect to repository: invalid repository password") from None
        return False

    def _set_keys(self, salt: bytes):
        material = _derive_key(self.password, salt)
        self._aead = AESGCM(material[:32])
        self._hmac_key = material[32:]

    # ---- blobs -------------------------------------------------------------------------
    def _content_id(self, data: bytes) -> str:
        return hmac.new(self._hmac_key, data, hashlib.sha256).hexdigest()

    def existing_content_ids(self) -> set[str]:
        start = len(self.prefix) + 1
        return {k[start:] for k in self.bs.list_keys(self.prefix + "p")}

    def _put_content(self, content_id: str, data: bytes):
        nonce = secrets.token_bytes(12)
        self.bs.put_object(f"{self.prefix}p{content_id}", nonce + self._aead.encrypt(nonce, data, None))

    def _get_content(self, content_id: str) -> bytes:
        blob = self.bs.get_object(f"{self.prefix}p{content_id}")
        try:
            return self._aead.decrypt(blob[:12], blob[12:], None)
        except InvalidTag:
            raise RepositoryError(f"error reading content {content_id}: decryption failed") from None

    # ---- snapshots ---------------------------------------------------------------------
    @staticmethod
    def scan(directory: Path) -> tuple[list[Path], int]:
        """Files under `directory` (no restore markers) and their total size."""
        files, total = [], 0
        for root, dirs, names in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if not (Path(root) == directory and d == RESTORE_MARKER_DIR))
            for name in sorted(names):
                p = Path(root) / name
                st = p.lstat()
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
                files.append(p)
        return files, total

    def snapshot(self, directory: Path, tags: dict, source: dict, start_time: str, end_time_fn,
                 progress: Progress) -> tuple[str | None, int]:
        """Back up `directory`. Returns (snapshot ID or None when the volume is empty, total bytes)."""
        files, total = self.scan(directory)
        progress.total_bytes = total
        known = self.existing_content_ids()
        entries = []
        for path in files:
            rel = path.relative_to(directory).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries.append({"path": rel, "type": "symlink", "target": os.readlink(path)})
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            chunks = []
            with open(path, "rb") as fh:
                while True:
                    data = fh.read(CHUNK_SIZE)
                    if not data:
                        break
                    cid = self._content_id(data)
                    if cid not in known:
                        self._put_content(cid, data)
                        known.add(cid)
                        progress.add(done=len(data), incremental=len(data))
                    else:
                        progress.add(done=len(data))
                    chunks.append(cid)
            entries.append({"path": rel, "type": "file", "mode": stat.S_IMODE(st.st_mode),
                            "size": st.st_size, "mtime": st.st_mtime, "chunks": chunks})
        # empty directories are part of the tree too
        for root, dirs, _ in os.walk(directory):
            for d in dirs:
                p = Path(root) / d
                rel = p.relative_to(directory).as_posix()
                if rel == RESTORE_MARKER_DIR or rel.startswith(RESTORE_MARKER_DIR + "/"):
                    continue
                entries.append({"path": rel, "type": "dir", "mode": stat.S_IMODE(p.stat().st_mode)})
        if not any(e["type"] != "dir" for e in entries):
            return None, 0
        snapshot_id = secrets.token_hex(16)
        manifest = {"id": snapshot_id, "type": "snapshot", "source": source, "tags": tags,
                    "startTime": start_time, "endTime": end_time_fn(), "rootEntries": entries,
                    "stats": {"totalSize": total, "fileCount": sum(1 for e in entries if e["type"] == "file")}}
        nonce = secrets.token_bytes(12)
        self.bs.put_object(f"{self.prefix}q{snapshot_id}",
                           nonce + self._aead.encrypt(nonce, json.dumps(manifest).encode(), None))
        return snapshot_id, total

    def load_manifest(self, snapshot_id: str) -> dict:
        key = f"{self.prefix}q{snapshot_id}"
        if not self.bs.object_exists(key):
            raise RepositoryError(f"error to find snapshot {snapshot_id}: snapshot not found")
        blob = self.bs.get_object(key)
        try:
            return json.loads(self._aead.decrypt(blob[:12], blob[12:], None))
        except InvalidTag:
            raise RepositoryError(f"error reading snapshot {snapshot_id}: decryption failed") from None

    def snapshot_size(self, snapshot_id: str) -> int:
        return int(self.load_manifest(snapshot_id)["stats"]["totalSize"])

    def restore(self, snapshot_id: str, directory: Path, progress: Progress) -> int:
        manifest = self.load_manifest(snapshot_id)
        entries = manifest["rootEntries"]
        progress.total_bytes = int(manifest["stats"]["totalSize"])
        directory.mkdir(parents=True, exist_ok=True)
        for e in sorted((e for e in entries if e["type"] == "dir"), key=lambda e: e["path"]):
            (directory / e["path"]).mkdir(parents=True, exist_ok=True)
        for e in entries:
            target = directory / e["path"]
            if e["type"] == "symlink":
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink() or target.exists():
                    target.unlink()
                os.symlink(e["target"], target)
            elif e["type"] == "file":
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as fh:
                    for cid in e["chunks"]:
                        data = self._get_content(cid)
                        fh.write(data)
                        progress.add(done=len(data))
                os.chmod(target, e.get("mode", 0o644))
                if e.get("mtime"):
                    os.utime(target, (e["mtime"], e["mtime"]))
        return progress.total_bytes
