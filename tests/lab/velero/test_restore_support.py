"""Helpers shared by the part-B Velero tests (restore, schedule, fs-backup, cross-cluster).

Everything goes through the lab's Kubernetes API (kubernetes client) and boto3; no test reads the
lab's internals.
"""
from __future__ import annotations

import gzip
import json
import time
import uuid

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

TERMINAL_RESTORE_PHASES = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def poll(predicate, timeout: float = 60.0, what: str = "condition", interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


class Kube:
    """Typed API handles for one cluster of the lab."""

    def __init__(self, velero):
        self.api_client = velero.api_client
        self.core = k8s.CoreV1Api(self.api_client)
        self.apps = k8s.AppsV1Api(self.api_client)
        self.storage = k8s.StorageV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)

    def namespace(self, name: str, labels: dict | None = None):
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name, "labels": labels or {}}})

    def configmap(self, ns: str, name: str, data: dict, labels: dict | None = None):
        return self.core.create_namespaced_config_map(ns, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": data})

    def read_configmap(self, ns: str, name: str):
        return self.api_client.sanitize_for_serialization(self.core.read_namespaced_config_map(name, ns))

    def exists(self, reader, *args) -> bool:
        try:
            reader(*args)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise


def run_backup(velero, name: str, spec: dict, timeout: float = 90.0) -> dict:
    velero.create_backup(name, spec)
    backup = velero.wait_backup(name, timeout=timeout)
    assert backup["status"]["phase"] in ("Completed", "PartiallyFailed"), backup["status"]
    return backup


def create_restore(velero, name: str, spec: dict) -> dict:
    return velero.create("restores", {"kind": "Restore", "metadata": {"name": name}, "spec": spec})


def wait_restore(velero, name: str, timeout: float = 90.0) -> dict:
    return poll(lambda: (lambda r: r if (r.get("status") or {}).get("phase") in TERMINAL_RESTORE_PHASES
                         else None)(velero.get("restores", name)), timeout, what=f"restore {name} terminal")


def restore(velero, name: str, spec: dict, timeout: float = 90.0) -> dict:
    create_restore(velero, name, spec)
    return wait_restore(velero, name, timeout)


def restore_prefix(velero, name: str) -> str:
    root = f"{velero.prefix.strip('/')}/" if velero.prefix else ""
    return f"{root}restores/{name}/"


def restore_file(velero, name: str, suffix: str):
    """A gzip JSON file of restores/<name>/ (suffix e.g. `results.gz`)."""
    key = f"{restore_prefix(velero, name)}restore-{name}-{suffix}"
    return json.loads(gzip.decompress(velero.read_object(key)))


def all_messages(result: dict) -> list[str]:
    out = list(result.get("velero") or []) + list(result.get("cluster") or [])
    for msgs in (result.get("namespaces") or {}).values():
        out += msgs
    return out
