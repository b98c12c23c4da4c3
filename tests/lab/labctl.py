"""Drive a fleetdr-lab through its real CLI, for tests and benchmarks.

`LabHandle` is what the `lab` / `lab_factory` fixtures hand out (see CONTRACT.md, Tests).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_SRC = REPO / "lab"


def cli_command() -> list[str]:
    """The installed `fleetdr-lab` entry point next to this Python, else `python -m`."""
    script = Path(sys.executable).with_name("fleetdr-lab")
    if script.exists():
        return [str(script)]
    found = shutil.which("fleetdr-lab")
    return [found] if found else [sys.executable, "-m", "fleetdr_lab.cli"]


def cli_env() -> dict:
    env = dict(os.environ)
    env.pop("FLEETDR_LAB_DIR", None)  # every call names its --dir explicitly
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LAB_SRC), env.get("PYTHONPATH")) if p)
    return env


def run_cli(*args: str, lab_dir: str | Path | None = None, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = cli_command() + [str(a) for a in args]
    if lab_dir is not None:
        cmd += ["--dir", str(lab_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


class LabHandle:
    """A running lab, seen from outside: its files, its clusters and the CLI."""

    def __init__(self, directory: str | Path, owned: bool = True):
        self.dir = Path(directory).resolve()
        self.owned = owned  # False when reusing FLEETDR_LAB_DIR: never stop someone's lab

    # -- files ------------------------------------------------------------------------------
    @property
    def state(self) -> dict:
        return json.loads((self.dir / "lab.json").read_text())

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def log(self) -> Path:
        return self.dir / "lab.log"

    @property
    def clusters(self) -> list[str]:
        return [c["name"] for c in self.state["clusters"]]

    @property
    def s3(self) -> dict:
        return json.loads((self.dir / "s3.json").read_text())

    def cluster_info(self, name: str) -> dict:
        return next(c for c in self.state["clusters"] if c["name"] == name)

    def cluster_kubeconfig(self, name: str) -> Path:
        return self.dir / "kubeconfigs" / f"{name}.yaml"

    # -- clients ----------------------------------------------------------------------------
    def api(self, cluster: str):
        """A kubernetes.client.ApiClient for that cluster's context (the caller closes it)."""
        from kubernetes import config as kconfig
        return kconfig.new_client_from_config(config_file=str(self.kubeconfig), context=cluster)

    def s3_client(self, access_key_id: str | None = None, secret_access_key: str | None = None):
        import boto3
        from botocore.config import Config
        s3 = self.s3
        return boto3.client(
            "s3", endpoint_url=s3["endpoint"], region_name=s3["region"],
            aws_access_key_id=access_key_id or s3["access_key_id"],
            aws_secret_access_key=secret_access_key or s3["secret_access_key"],
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))

    def cli(self, *args: str, check: bool = True, timeout: float = 300):
        return run_cli(*args, lab_dir=self.dir, check=check, timeout=timeout)

    def kubectl(self, *args: str, context: str = "c1", check: bool = True):
        cmd = ["kubectl", "--kubeconfig", str(self.kubeconfig), "--context", context, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stderr}")
        return proc

    def install_rook(self, context: str = "c1"):
        """Rook installed the quickstart way: `kubectl create -f crds.yaml -f common.yaml -f operator.yaml`
        of the lab's stand-in release manifests (`fleetdr-lab rook manifests`, written once per lab)."""
        out = self.dir / "rook-manifests"
        if not (out / "operator.yaml").exists():
            self.cli("rook", "manifests", "--out", str(out))
        return self.kubectl("create", "-f", str(out / "crds.yaml"), "-f", str(out / "common.yaml"), "-f", str(out / "operator.yaml"),
                            context=context)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no lab.log)"

    # -- lifecycle --------------------------------------------------------------------------
    @classmethod
    def up(cls, directory: str | Path, clusters: int = 3, nodes: int = 1,
           extra: tuple[str, ...] = (), processes: int | None = None) -> "LabHandle":
        """`fleetdr-lab up`; processes None lets the lab choose how many serve the clusters."""
        handle = cls(directory)
        if processes is not None:
            extra = ("--processes", str(processes), *extra)
        handle.cli("up", "--clusters", str(clusters), "--nodes", str(nodes), *extra)
        return handle

    def down(self) -> None:
        if self.owned:
            self.cli("down", check=False)

    def __repr__(self) -> str:
        return f"LabHandle({str(self.dir)!r})"
