"""The lab directory: file layout, lab.json state, kubeconfigs, inventory, S3 files.

Every file is written atomically (temp file + rename) so a reader never sees half a file.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

DEFAULT_DIR = ".lab"


@dataclass(frozen=True)
class LabPaths:
    dir: Path

    @classmethod
    def of(cls, directory: str | os.PathLike) -> "LabPaths":
        return cls(Path(directory).expanduser().resolve())

    @property
    def state(self) -> Path: return self.dir / "lab.json"
    @property
    def log(self) -> Path: return self.dir / "lab.log"
    @property
    def pid(self) -> Path: return self.dir / "lab.pid"
    @property
    def ca_cert(self) -> Path: return self.dir / "ca.crt"
    @property
    def ca_key(self) -> Path: return self.dir / "ca.key"
    @property
    def serving_cert(self) -> Path: return self.dir / "apiserver.crt"
    @property
    def serving_key(self) -> Path: return self.dir / "apiserver.key"
    @property
    def kubeconfig(self) -> Path: return self.dir / "kubeconfig"
    @property
    def kubeconfigs(self) -> Path: return self.dir / "kubeconfigs"
    def cluster_kubeconfig(self, name: str) -> Path: return self.kubeconfigs / f"{name}.yaml"
    @property
    def inventory(self) -> Path: return self.dir / "inventory.yml"
    @property
    def s3(self) -> Path: return self.dir / "s3.json"
    @property
    def credentials_velero(self) -> Path: return self.dir / "credentials-velero"
    @property
    def volumes(self) -> Path: return self.dir / "volumes"
    @property
    def load_balancers(self) -> Path: return self.dir / "load-balancers"


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, doc: dict, mode: int = 0o644) -> None:
    write_atomic(path, json.dumps(doc, indent=2, sort_keys=True) + "\n", mode)


def read_state(paths: LabPaths) -> dict | None:
    try:
        return json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return None


def kubeconfig_doc(clusters: Iterable[dict], ca_pem: bytes, current: str | None = None) -> dict:
    """A kubeconfig with one context per cluster; context = cluster = user = cluster name."""
    clusters = list(clusters)
    ca_data = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": c["name"], "cluster": {
            "server": c["server"], "certificate-authority-data": ca_data}} for c in clusters],
        "users": [{"name": c["name"], "user": {"token": c["token"]}} for c in clusters],
        "contexts": [{"name": c["name"], "context": {"cluster": c["name"], "user": c["name"]}}
                     for c in clusters],
        "current-context": current or (clusters[0]["name"] if clusters else ""),
    }


def group_name(prefix: str, value: str) -> str:
    return f"{prefix}_" + "".join(ch if ch.isalnum() else "_" for ch in value)


def inventory_doc(paths: LabPaths, clusters: Iterable[dict], s3: dict) -> dict:
    hosts, children = {}, {}
    for c in clusters:
        hosts[c["name"]] = {
            "fleetdr_kubeconfig": str(paths.cluster_kubeconfig(c["name"])),
            "fleetdr_context": c["name"],
            "fleetdr_cluster_labels": dict(c["labels"]),
        }
        for key in ("env", "region"):
            group = group_name(key, c["labels"][key])
            children.setdefault(group, {"hosts": {}})["hosts"][c["name"]] = None
    # What every host shares is the group's: a 1,000-host inventory is parsed (and copied) by
    # Ansible in every run, per-host keys and all.
    return {"all": {"children": {"fleet": {
        "hosts": hosts,
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                 "fleetdr_s3_endpoint": s3["endpoint"], "fleetdr_s3_bucket": s3["bucket"],
                 "fleetdr_s3_region": s3["region"]},
        "children": dict(sorted(children.items())),
    }}}}


def write_client_files(paths: LabPaths, clusters: list[dict], ca_pem: bytes,
                       s3: dict, credentials: str) -> None:
    """Everything a client of the lab reads: kubeconfigs, inventory, S3 details."""
    dump = lambda doc: yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)  # noqa: E731
    for c in clusters:
        write_atomic(paths.cluster_kubeconfig(c["name"]),
                     dump(kubeconfig_doc([c], ca_pem)), 0o600)
    write_atomic(paths.kubeconfig, dump(kubeconfig_doc(clusters, ca_pem)), 0o600)
    write_atomic(paths.inventory, dump(inventory_doc(paths, clusters, s3)))
    write_json(paths.s3, s3, 0o600)
    write_atomic(paths.credentials_velero, credentials, 0o600)


class ExternalAddresses:
    """"<load balancer ip>:<port>" -> the lab address serving it, for every cluster of the lab.

    A LoadBalancer Service of one cluster is reached from another (Velero of c2 backing up to a Rook
    object store of c1), and the two may be served by different lab processes: each entry is also a
    file under <labdir>/load-balancers/ that every process reads when its own map misses."""

    def __init__(self, directory: Path):
        self.dir = directory
        self._local: dict[str, str] = {}

    def _file(self, key: str) -> Path:
        return self.dir / key.replace(":", "_")

    def __setitem__(self, key: str, target: str) -> None:
        if self._local.get(key) != target:
            self._local[key] = target
            write_atomic(self._file(key), target)

    def get(self, key: str, default: str | None = None) -> str | None:
        if key in self._local:
            return self._local[key]
        try:
            return self._file(key).read_text()
        except (OSError, ValueError):
            return default
