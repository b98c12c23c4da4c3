"""`fleetdr-lab rook manifests`: the lab's stand-ins for a Rook release's deploy/examples files.

Same file names, kinds, object names, namespaces, images and marker comments as Rook's
crds.yaml, common.yaml and operator.yaml (Rook deploy/examples/*.yaml, v1.20), so the quickstart
order and the collection's install path work on them unchanged. The CRD schemas are written by
the lab for the fields the emulated operator reads (Rook pkg/apis/ceph.rook.io/v1/types.go),
with the CEL-like rules the lab enforces itself (dataDirHostPath pattern, mon/mgr count bounds,
cleanupPolicy confirmation); unknown fields are preserved, as Rook's own schemas mostly do.
"""
from __future__ import annotations

from pathlib import Path

import yaml

DEFAULT_VERSION = "v1.20.6"
GROUP = "ceph.rook.io"

# plural, kind, short names, printer columns (name, jsonPath)
CEPH_KINDS = (
    ("cephclusters", "CephCluster", ["ceph"], [("DataDirHostPath", ".spec.dataDirHostPath", "string"),
                                             ("MonCount", ".spec.mon.count", "string"),
                                             ("Phase", ".status.phase", "string"),
                                             ("Message", ".status.message", "string"),
                                             ("Health", ".status.ceph.health", "string"),
                                             ("FSID", ".status.ceph.fsid", "string")]),
    ("cephblockpools", "CephBlockPool", ["cephbp"], [("Phase", ".status.phase", "string"),
                                                     ("Type", ".status.info.type", "string"),
                                                     ("FailureDomain", ".status.info.failureDomain", "string")]),
    ("cephfilesystems", "CephFilesystem", ["cephfs"], [("ActiveMDS", ".spec.metadataServer.activeCount", "string"),
                                                       ("Phase", ".status.phase", "string")]),
    ("cephobjectstores", "CephObjectStore", ["cephos"], [("Phase", ".status.phase", "string"),
                                                         ("Endpoint", ".status.info.endpoint", "string")]),
    ("cephobjectstoreusers", "CephObjectStoreUser", ["rcou", "objectuser", "cephosu"], [("Phase", ".status.phase", "string")]),
    ("cephblockpoolradosnamespaces", "CephBlockPoolRadosNamespace", [], [("Phase", ".status.phase", "string")]),
    ("cephclients", "CephClient", [], [("Phase", ".status.phase", "string")]),
    ("cephfilesystemsubvolumegroups", "CephFilesystemSubVolumeGroup", [], [("Phase", ".status.phase", "string")]),
    ("cephnfses", "CephNFS", ["nfs"], [("Phase", ".status.phase", "string")]),
    ("cephrbdmirrors", "CephRBDMirror", [], [("Phase", ".status.phase", "string")]),
)

_OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

CLUSTER_SPEC_SCHEMA = {
    "type": "object", "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "dataDirHostPath": {"type": "string", "pattern": r"^/(\S+)",
                            "x-kubernetes-validations": [{"message": "DataDirHostPath is immutable", "rule": "self == oldSelf"}]},
        "cephVersion": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                        "properties": {"image": {"type": "string"}, "allowUnsupported": {"type": "boolean"}}},
        "mon": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"count": {"type": "integer", "minimum": 0, "maximum": 9},
                               "allowMultiplePerNode": {"type": "boolean"}}},
        "mgr": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"count": {"type": "integer", "minimum": 0, "maximum": 5},
                               "allowMultiplePerNode": {"type": "boolean"}}},
        "cleanupPolicy": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                          "properties": {"confirmation": {"type": "string", "pattern": "^$|^yes-really-destroy-data$"}}},
        "storage": _OPEN, "placement": _OPEN, "labels": _OPEN, "annotations": _OPEN,
    },
}

# Rook deploy/examples/crds.yaml (cephfilesystems): the three parts are required, activeCount 1..50.
FILESYSTEM_SPEC_SCHEMA = {
    "type": "object", "x-kubernetes-preserve-unknown-fields": True,
    "required": ["dataPools", "metadataPool", "metadataServer"],
    "properties": {
        "metadataPool": _OPEN, "dataPools": {"type": "array", "items": _OPEN},
        "metadataServer": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "required": ["activeCount"],
                           "properties": {"activeCount": {"type": "integer", "minimum": 1, "maximum": 50},
                                          "activeStandby": {"type": "boolean"}}},
    },
}
SPEC_SCHEMAS = {"CephCluster": CLUSTER_SPEC_SCHEMA, "CephFilesystem": FILESYSTEM_SPEC_SCHEMA}


def _crd(group, version, plural, kind, short, columns, scope="Namespaced", spec_schema=None):
    schema = {"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "spec": spec_schema or _OPEN, "status": _OPEN}}
    if kind == "CephCluster":
        schema["required"] = ["metadata", "spec"]
    names = {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower()}
    if short:
        names["shortNames"] = list(short)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope, "names": names, "versions": [{
            "name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema": schema},
            "subresources": {"status": {}},
            "additionalPrinterColumns": [{"name": n, "type": t, "jsonPath": p} for n, p, t in columns]
                + [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]}]},
    }


def crds() -> list[dict]:
    out = [_crd(GROUP, "v1", plural, kind, short, columns, spec_schema=SPEC_SCHEMAS.get(kind))
           for plural, kind, short, columns in CEPH_KINDS]
    out.append(_crd("objectbucket.io", "v1alpha1", "objectbucketclaims", "ObjectBucketClaim", ["obc", "obcs"],
                    [("Phase", ".status.phase", "string")]))
    out.append(_crd("objectbucket.io", "v1alpha1", "objectbuckets", "ObjectBucket", ["ob", "obs"],
                    [("Phase", ".status.phase", "string")], scope="Cluster"))
    return out


def _namespaced(kind, name, api_version="v1", **rest):
    return dict({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "rook-ceph"}}, **rest)


def common() -> list[dict]:
    """Namespace, ServiceAccounts and RBAC as Rook's common.yaml names them."""
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rook-ceph"}}]
    for sa in ("rook-ceph-system", "rook-ceph-default", "rook-ceph-mgr", "rook-ceph-osd", "rook-ceph-rgw",
               "rook-ceph-cmd-reporter", "rook-ceph-purge-osd", "objectstorage-provisioner"):
        objs.append(_namespaced("ServiceAccount", sa))
    rules = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    for role in ("rook-ceph-system", "rook-ceph-global", "rook-ceph-cluster-mgmt", "rook-ceph-mgr-cluster",
                 "rook-ceph-object-bucket", "rook-ceph-osd"):
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role},
                     "rules": rules})
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                     "subjects": [{"kind": "ServiceAccount", "name": "rook-ceph-system", "namespace": "rook-ceph"}]})
    return objs


def operator(version: str = DEFAULT_VERSION) -> list[dict]:
    config = _namespaced("ConfigMap", "rook-ceph-operator-config", data={
        "ROOK_LOG_LEVEL": "INFO", "ROOK_CEPH_ALLOW_LOOP_DEVICES": "false",
        "ROOK_OBC_WATCH_OPERATOR_NAMESPACE": "true", "ROOK_ENABLE_DISCOVERY_DAEMON": "false",
        "ROOK_CEPH_COMMANDS_TIMEOUT_SECONDS": "15"})
    labels = {"app": "rook-ceph-operator"}
    deployment = _namespaced("Deployment", "rook-ceph-operator", api_version="apps/v1", spec={
        "replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {
            "serviceAccountName": "rook-ceph-system",
            "containers": [{"name": "rook-ceph-operator", "image": f"docker.io/rook/ceph:{version}", "args": ["ceph", "operator"],
                            "env": [{"name": "ROOK_CURRENT_NAMESPACE_ONLY", "value": "false"},
                                    {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                            "securityContext": {"runAsUser": 2016, "runAsGroup": 2016, "runAsNonRoot": True}}]}}})
    return [config, deployment]


def _dump(objs: list[dict]) -> str:
    """YAML documents with Rook's marker comments on the namespace lines."""
    text = yaml.safe_dump_all(objs, sort_keys=False)
    return "\n".join(line + " # namespace:operator" if line.strip() == "namespace: rook-ceph" else line
                     for line in text.splitlines()) + "\n"


def write(out_dir: Path, version: str = DEFAULT_VERSION) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"crds.yaml": crds(), "common.yaml": common(), "operator.yaml": operator(version)}
    paths = []
    for name, objs in files.items():
        path = out_dir / name
        path.write_text(f"# fleetdr-lab stand-in for Rook {version} deploy/examples/{name}\n" + _dump(objs))
        paths.append(path)
    return paths
