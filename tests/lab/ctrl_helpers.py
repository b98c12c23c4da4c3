"""Helpers shared by the controller tests: typed API handles, a namespace per test, and
waiting for a condition (with a generous deadline - a wait, never a timing assertion)."""
from __future__ import annotations

import time
import uuid

from kubernetes import client
from kubernetes.client.rest import ApiException

WAIT_SECONDS = 60


class Apis:
    def __init__(self, api_client):
        self.client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ext = client.ApiextensionsV1Api(api_client)

    def close(self):
        self.client.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(predicate, what: str, timeout: float = WAIT_SECONDS, interval: float = 0.05):
    """Poll predicate() until it returns a truthy value; return it. Fails with `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ApiException as e:
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f" (last API error: {last_error.status} {last_error.reason})"
                                    if last_error else ""))
        time.sleep(interval)


def gone(read) -> bool:
    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def make_namespace(core, name: str):
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def delete_namespace(core, name: str):
    try:
        core.delete_namespace(name)
    except ApiException as e:
        if e.status not in (404, 409):
            raise


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.27", labels=None,
               volumes=None, **spec_extra) -> dict:
    labels = labels or {"app": name}
    pod_spec = {"containers": [{"name": "main", "image": image,
                                "ports": [{"containerPort": 8080, "name": "http"}]}]}
    if volumes:
        pod_spec["volumes"] = volumes
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                     **spec_extra}}


def pvc(name: str, size: str = "1Gi", storage_class: str | None = None, volume_name=None) -> dict:
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if volume_name:
        spec["volumeName"] = volume_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": spec}


def cond(obj, ctype):
    """The condition of that type from a kubernetes-client model or dict, or None."""
    status = obj.status if hasattr(obj, "status") else obj.get("status", {})
    conditions = (status.conditions if hasattr(status, "conditions") else
                  status.get("conditions")) or []
    for c in conditions:
        t = c.type if hasattr(c, "type") else c.get("type")
        if t == ctype:
            return c
    return None


def deployment_ready(apps, ns, name, replicas):
    d = apps.read_namespaced_deployment(name, ns)
    s = d.status
    return (s.observed_generation == d.metadata.generation and (s.updated_replicas or 0) == replicas
            and (s.ready_replicas or 0) == replicas and (s.available_replicas or 0) == replicas
            and (s.replicas or 0) == replicas) and d


def owned_pods(core, ns, selector):
    return [p for p in core.list_namespaced_pod(ns, label_selector=selector).items]
