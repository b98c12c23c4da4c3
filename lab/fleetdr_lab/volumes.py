"""Read and write files inside a PVC's data, the way a pod mounting it would see them.

The PVC is resolved through the cluster's Kubernetes API (kubeconfig in the lab dir):
PVC -> must be Bound -> its PV -> spec.hostPath.path, a directory under <lab>/volumes/. Nothing
here reads the lab's internals, so what these helpers see is what the API says.

CLI (hooked into `fleetdr-lab` by add_cli):
  fleetdr-lab volume put --cluster C --namespace NS --pvc NAME PATH [--from FILE | --text STRING]
  fleetdr-lab volume get --cluster C --namespace NS --pvc NAME PATH [--to FILE]
  fleetdr-lab volume ls  --cluster C --namespace NS --pvc NAME [PATH] [--sha256] [--json]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from . import labdir

EXIT_FAILED = 1
EXIT_BAD_PATH = 2
EXIT_NOT_RUNNING = 4
EXIT_UNKNOWN_CLUSTER = 5
EXIT_NOT_FOUND = 6
EXIT_NOT_BOUND = 7

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  other failure (API error, volume without a hostPath)
  2  bad input: a PATH escaping the volume (`..`) or usage error
  4  no lab is running in --dir
  5  unknown cluster
  6  PVC, or the file/directory PATH inside it, not found
  7  PVC not bound to a volume yet
"""


class VolumeError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------- resolution
class _Api:
    """Minimal GET-only Kubernetes API client from a kubeconfig context (bearer token + CA data).

    The CLI only needs two reads, and importing the kubernetes package costs seconds; this keeps
    `volume` commands quick while still going through the cluster's real API endpoint."""

    def __init__(self, kubeconfig: Path, context: str):
        import yaml
        doc = yaml.safe_load(kubeconfig.read_text()) or {}
        contexts = {c["name"]: c.get("context") or {} for c in doc.get("contexts") or []}
        if context not in contexts:
            raise VolumeError(EXIT_UNKNOWN_CLUSTER, f"unknown cluster {context!r} "
                                                    f"(known: {', '.join(sorted(contexts))})")
        ctx = contexts[context]
        cluster = next((c.get("cluster") or {} for c in doc.get("clusters") or []
                        if c.get("name") == ctx.get("cluster")), {})
        user = next((u.get("user") or {} for u in doc.get("users") or []
                     if u.get("name") == ctx.get("user")), {})
        self.server = cluster.get("server", "").rstrip("/")
        self.token = user.get("token")
        self.ssl = ssl.create_default_context()
        if cluster.get("certificate-authority-data"):
            self.ssl.load_verify_locations(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            self.ssl.load_verify_locations(cafile=cluster["certificate-authority"])

    def get(self, path: str) -> dict | None:
        """The object at path, or None on 404."""
        req = urllib.request.Request(self.server + path, headers={
            "Accept": "application/json",
            **({"Authorization": f"Bearer {self.token}"} if self.token else {})})
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise VolumeError(EXIT_FAILED, f"GET {path}: {e.code} {e.reason}")
        except (urllib.error.URLError, OSError) as e:
            raise VolumeError(EXIT_NOT_RUNNING, f"cluster API {self.server} is not answering: "
                                                f"{getattr(e, 'reason', e)}")


def _api(lab_dir, cluster: str):
    paths = labdir.LabPaths.of(lab_dir)
    kubeconfig = paths.kubeconfig
    if not kubeconfig.exists():
        raise VolumeError(EXIT_NOT_RUNNING, f"no lab in {paths.dir} (no kubeconfig)")
    return _Api(kubeconfig, cluster), paths


def pv_data_dir(cluster_data_dir, pv: dict) -> Path | None:
    """Where a PV's data lives on the lab host: its hostPath/local path, or for a volume of a CSI
    driver the lab emulates (Rook's Ceph RBD/CephFS) <cluster data dir>/<pv name>, as a node
    would see the mounted volume."""
    spec = pv.get("spec") or {}
    source = spec.get("hostPath") or spec.get("local") or {}
    if source.get("path"):
        return Path(source["path"])
    if ((spec.get("csi") or {}).get("driver") or "").endswith(".csi.ceph.com"):
        return Path(cluster_data_dir) / pv["metadata"]["name"]
    return None


def volume_root(lab_dir, cluster: str, namespace: str, pvc: str) -> Path:
    """The data directory of a bound PVC (its PV's hostPath)."""
    api, paths = _api(lab_dir, cluster)
    q = urllib.parse.quote
    claim = api.get(f"/api/v1/namespaces/{q(namespace)}/persistentvolumeclaims/{q(pvc)}")
    if claim is None:
        raise VolumeError(EXIT_NOT_FOUND, f'persistentvolumeclaim "{pvc}" not found in '
                                          f'namespace "{namespace}" of cluster {cluster}')
    phase = (claim.get("status") or {}).get("phase")
    volume_name = (claim.get("spec") or {}).get("volumeName")
    if phase != "Bound" or not volume_name:
        raise VolumeError(EXIT_NOT_BOUND, f"PVC {namespace}/{pvc} in cluster {cluster} is not "
                                          f"bound to a volume (phase {phase or 'Pending'})")
    pv = api.get(f"/api/v1/persistentvolumes/{q(volume_name)}")
    if pv is None:
        raise VolumeError(EXIT_NOT_FOUND, f"PV {volume_name} of PVC {namespace}/{pvc} not found")
    host_path = pv_data_dir(paths.volumes / cluster, pv)
    if not host_path:
        raise VolumeError(EXIT_FAILED, f"PV {volume_name} of PVC {namespace}/{pvc} has no "
                                       "hostPath: its data is not in the lab dir")
    root = Path(host_path).resolve()
    volumes_dir = paths.volumes.resolve()
    if volumes_dir not in root.parents:
        raise VolumeError(EXIT_FAILED, f"PV {volume_name} points at {host_path}, outside "
                                       f"{volumes_dir}: refused")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _inside(root: Path, path: str | None) -> Path:
    """root/path, refusing anything that would leave the volume."""
    rel = PurePosixPath(path or "/")
    if ".." in rel.parts:
        raise VolumeError(EXIT_BAD_PATH, f"path {path!r} escapes the volume: '..' is not allowed")
    parts = [p for p in rel.parts if p not in ("/", ".")]
    target = root.joinpath(*parts) if parts else root
    resolved = target.resolve()
    if resolved != root and root not in resolved.parents:
        raise VolumeError(EXIT_BAD_PATH, f"path {path!r} resolves outside the volume: refused")
    return target


# ---------------------------------------------------------------------- operations
def put(lab_dir, cluster: str, namespace: str, pvc: str, dest_path: str,
        data: bytes | str | None = None, src_file: str | os.PathLike | None = None) -> int:
    """Write data (or src_file's content) to dest_path inside the PVC; returns bytes written."""
    if (data is None) == (src_file is None):
        raise ValueError("give exactly one of data and src_file")
    root = volume_root(lab_dir, cluster, namespace, pvc)
    target = _inside(root, dest_path)
    if target == root or target.is_dir():
        raise VolumeError(EXIT_BAD_PATH, f"{dest_path!r} is a directory")
    if src_file is not None:
        data = Path(src_file).read_bytes()
    if isinstance(data, str):
        data = data.encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return len(data)


def get(lab_dir, cluster: str, namespace: str, pvc: str, path: str) -> bytes:
    root = volume_root(lab_dir, cluster, namespace, pvc)
    target = _inside(root, path)
    if not target.is_file():
        raise VolumeError(EXIT_NOT_FOUND, f"{path!r} is not a file in PVC {namespace}/{pvc}")
    return target.read_bytes()


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ls(lab_dir, cluster: str, namespace: str, pvc: str, path: str | None = None,
       sha256: bool = False) -> list[dict]:
    """Files (recursively) under path in the PVC: [{path, size[, sha256]}], sorted by path,
    paths relative to the volume root."""
    root = volume_root(lab_dir, cluster, namespace, pvc)
    base = _inside(root, path)
    if not base.exists():
        raise VolumeError(EXIT_NOT_FOUND, f"{path!r} not found in PVC {namespace}/{pvc}")
    files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    out = []
    for f in files:
        entry = {"path": f.relative_to(root).as_posix(), "size": f.stat().st_size}
        if sha256:
            entry["sha256"] = _digest(f)
        out.append(entry)
    return out


def sha256_tree(lab_dir, cluster: str, namespace: str, pvc: str, path: str | None = None) -> dict:
    """{relative path: sha256} of every file in the PVC - compare two volumes byte for byte."""
    return {e["path"]: e["sha256"] for e in ls(lab_dir, cluster, namespace, pvc, path, sha256=True)}


# ---------------------------------------------------------------------- CLI
def add_cli(subparsers) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=argparse.SUPPRESS,
                        help="lab directory (default: $FLEETDR_LAB_DIR or .lab)")
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument("--cluster", required=True, metavar="C")
    target.add_argument("--namespace", "-n", default="default", metavar="NS")
    target.add_argument("--pvc", required=True, metavar="NAME")
    fmt = dict(epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)

    p = subparsers.add_parser("volume", help="read and write files inside a PVC's data",
                              description="read and write files inside a PVC's data",
                              parents=[common], **fmt)
    vsub = p.add_subparsers(dest="volume_command", required=True, metavar="ACTION")

    put_p = vsub.add_parser("put", help="write a file into the PVC", parents=[common, target], **fmt)
    put_p.add_argument("path", metavar="PATH", help="destination inside the volume")
    src = put_p.add_mutually_exclusive_group()
    src.add_argument("--from", dest="src_file", metavar="FILE", help="local file to copy")
    src.add_argument("--text", metavar="STRING", help="content (default: read stdin)")
    put_p.set_defaults(func=_cmd_put, subparser=put_p)

    get_p = vsub.add_parser("get", help="print (or save) a file of the PVC",
                            parents=[common, target], **fmt)
    get_p.add_argument("path", metavar="PATH")
    get_p.add_argument("--to", dest="dest_file", metavar="FILE", help="default: stdout")
    get_p.set_defaults(func=_cmd_get, subparser=get_p)

    ls_p = vsub.add_parser("ls", help="list files of the PVC (recursive)",
                           parents=[common, target], **fmt)
    ls_p.add_argument("path", nargs="?", default=None, metavar="PATH")
    ls_p.add_argument("--sha256", action="store_true", help="also print each file's sha256")
    ls_p.add_argument("--json", action="store_true", help="machine-readable output")
    ls_p.set_defaults(func=_cmd_ls, subparser=ls_p)


def _run(fn):
    """Errors as VolumeError, which the CLI reports like its own (message on stderr, exit
    code)."""
    try:
        return fn()
    except (OSError, ValueError) as e:
        raise VolumeError(EXIT_FAILED, str(e)) from None


def _lab_dir(args):
    return getattr(args, "paths", None).dir if getattr(args, "paths", None) else args.dir


def _cmd_put(args) -> int:
    def go():
        if args.src_file is not None:
            n = put(_lab_dir(args), args.cluster, args.namespace, args.pvc, args.path,
                    src_file=args.src_file)
        else:
            data = args.text.encode() if args.text is not None else sys.stdin.buffer.read()
            n = put(_lab_dir(args), args.cluster, args.namespace, args.pvc, args.path, data=data)
        print(f"wrote {n} bytes to {args.path} in PVC {args.namespace}/{args.pvc} "
              f"({args.cluster})", file=sys.stderr)
        return 0
    return _run(go)


def _cmd_get(args) -> int:
    def go():
        data = get(_lab_dir(args), args.cluster, args.namespace, args.pvc, args.path)
        if args.dest_file:
            Path(args.dest_file).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        return 0
    return _run(go)


def _cmd_ls(args) -> int:
    def go():
        entries = ls(_lab_dir(args), args.cluster, args.namespace, args.pvc, args.path,
                     sha256=args.sha256)
        if args.json:
            print(json.dumps(entries, indent=2))
        else:
            for e in entries:
                cols = [f"{e['size']:>10}"]
                if args.sha256:
                    cols.append(e["sha256"])
                cols.append(e["path"])
                print("  ".join(cols))
        return 0
    return _run(go)
