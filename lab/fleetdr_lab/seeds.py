"""Sample applications that `fleetdr-lab seed APP --cluster C [--namespace NS] [--storage-class SC]`
applies (the class of their volume claims defaults to the lab's hostPath class `standard`).

Applied through the cluster's Store with create-or-update, so seeding twice changes nothing
that the first seed did not already set.
"""
from __future__ import annotations

import base64

APPS = ("busybox", "database", "crd")
DEFAULT_NAMESPACES = {"busybox": "busybox", "database": "database", "crd": "widgets"}
WIDGET_GROUP = "example.fleetdr.io"


class UnknownApp(ValueError):
    pass


def _namespace(ns: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}


def busybox(ns: str, storage_class: str = "standard") -> list[dict]:
    labels = {"app": "busybox"}
    return [
        _namespace(ns),
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "busybox-data", "namespace": ns, "labels": labels},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                  "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "busybox", "namespace": ns, "labels": labels},
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "containers": [{
                         "name": "busybox", "image": "busybox:1.36",
                         "command": ["sh", "-c", "while true; do date >> /data/log; sleep 60; done"],
                         "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                     }],
                     "volumes": [{"name": "data",
                                  "persistentVolumeClaim": {"claimName": "busybox-data"}}],
                 },
             },
         }},
    ]


def database(ns: str, storage_class: str = "standard") -> list[dict]:
    labels = {"app": "database"}
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return [
        _namespace(ns),
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": "db-credentials", "namespace": ns, "labels": labels},
         "data": {"username": b64("fleetdr"), "password": b64("fleetdr-lab-password")}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "db-config", "namespace": ns, "labels": labels},
         "data": {"postgresql.conf": "max_connections = 100\nshared_buffers = 128MB\n",
                  "database": "fleetdr"}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "db", "namespace": ns, "labels": labels},
         "spec": {"clusterIP": "None", "selector": labels,
                  "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432,
                             "protocol": "TCP"}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "db", "namespace": ns, "labels": labels},
         "spec": {
             "serviceName": "db",
             "replicas": 1,
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {"containers": [{
                     "name": "postgres", "image": "postgres:16",
                     "ports": [{"containerPort": 5432, "name": "postgres"}],
                     "envFrom": [{"secretRef": {"name": "db-credentials"}}],
                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                                      {"name": "config", "mountPath": "/etc/postgresql"}],
                 }],
                     "volumes": [{"name": "config", "configMap": {"name": "db-config"}}]},
             },
             "volumeClaimTemplates": [{
                 "metadata": {"name": "data"},
                 "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                          "resources": {"requests": {"storage": "1Gi"}}},
             }],
         }},
    ]


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{WIDGET_GROUP}"},
    "spec": {
        "group": WIDGET_GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "listKind": "WidgetList", "shortNames": ["wdg"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer"},
                        "color": {"type": "string"}}},
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string"}}},
                }}},
        }],
    },
}


def crd(ns: str, _storage_class: str = "standard") -> list[dict]:
    return [
        WIDGET_CRD,
        _namespace(ns),
        {"apiVersion": f"{WIDGET_GROUP}/v1", "kind": "Widget",
         "metadata": {"name": "sample-widget", "namespace": ns, "labels": {"app": "widgets"}},
         "spec": {"size": 3, "color": "blue"}},
    ]


_BUILDERS = {"busybox": busybox, "database": database, "crd": crd}


def manifests(app: str, namespace: str | None = None, storage_class: str | None = None) -> list[dict]:
    if app not in _BUILDERS:
        raise UnknownApp(f"unknown app {app!r} (known: {', '.join(APPS)})")
    return _BUILDERS[app](namespace or DEFAULT_NAMESPACES[app], storage_class or "standard")


def seed(store, app: str, namespace: str | None = None, storage_class: str | None = None) -> list[dict]:
    """Apply an app's objects in order; returns short references to what was applied."""
    applied = []
    for obj in manifests(app, namespace, storage_class):
        result = store.apply_object(obj)
        meta = result.get("metadata", {})
        applied.append({"kind": result.get("kind", obj["kind"]),
                        "namespace": meta.get("namespace"), "name": meta.get("name")})
    return applied
