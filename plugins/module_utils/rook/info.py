# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One cluster's Rook-Ceph state, read only: operator, CephCluster and health, daemons and where
they run, pools, filesystems, object stores, bucket claims, storage classes and Rook's volumes.

Names and labels are Rook's own: daemons carry ``app=rook-ceph-<daemon>`` (Rook
pkg/operator/ceph/controller/spec.go), CSI drivers are ``<operator namespace>.rbd.csi.ceph.com``
and ``.cephfs.csi.ceph.com`` (pkg/operator/ceph/csi/controller.go), the bucket provisioner is
``<namespace>.ceph.rook.io/bucket`` or ``ceph.rook.io/bucket`` (pkg/operator/ceph/object/objectstore.go).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.fleetdr.kube.plugins.module_utils.rook import objects, status as statuses

OPERATOR = "rook-ceph-operator"
DAEMONS = (("mon", "rook-ceph-mon"), ("mgr", "rook-ceph-mgr"), ("osd", "rook-ceph-osd"))
_BUCKET_PROVISIONER = re.compile(r"^(?:[a-z0-9-]+\.)?ceph\.rook\.io/bucket$")


def _items(client, action, path):
    return (client.request(action, "GET", path, missing_ok=True) or {}).get("items") or []


def _wanted(spec, daemon):
    count = ((spec or {}).get(daemon) or {}).get("count")
    if daemon == "mon":
        return count or 3  # 0 means 3 (Rook pkg/operator/ceph/cluster/mon/mon.go)
    if daemon == "mgr":
        return count or 1  # 0 means 1 (Rook pkg/operator/ceph/cluster/mgr/mgr.go)
    return None


def operator(client, operator_namespace):
    deployment = client.request("Reading Deployment {0}/{1}".format(operator_namespace, OPERATOR), "GET",
                                "/apis/apps/v1/namespaces/{0}/deployments/{1}".format(operator_namespace, OPERATOR), missing_ok=True)
    if deployment is None:
        return {"installed": False, "version": None, "available": False}
    containers = ((((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [{}])
    image = containers[0].get("image") or ""
    state = deployment.get("status") or {}
    return {"installed": True, "image": image, "version": image.rsplit(":", 1)[1] if ":" in image else None,
            "replicas": (deployment.get("spec") or {}).get("replicas"), "available": bool(state.get("availableReplicas"))}


def daemons(client, namespace, spec):
    """{mon|mgr|osd: {wanted, ready, nodes}}: Deployments and the nodes their pods run on."""
    out = {}
    for daemon, app in DAEMONS:
        deployments = _items(client, "Listing {0} Deployments".format(app), "/apis/apps/v1/namespaces/{0}/deployments".format(namespace)
                             + "?labelSelector=app%3D{0}".format(app))
        pods = _items(client, "Listing {0} pods".format(app), "/api/v1/namespaces/{0}/pods?labelSelector=app%3D{1}".format(namespace, app))
        ready = sum(1 for d in deployments if ((d.get("status") or {}).get("readyReplicas") or 0) >= 1)
        out[daemon] = {"wanted": _wanted(spec, daemon) if daemon != "osd" else len(deployments), "ready": ready,
                       "nodes": sorted(set(p["spec"].get("nodeName") for p in pods if (p.get("spec") or {}).get("nodeName")))}
    return out


def _phase_list(client, namespace, plural):
    return [{"name": item["metadata"]["name"], "phase": (item.get("status") or {}).get("phase")}
            for item in _items(client, "Listing {0}".format(plural), objects.collection(namespace, plural))]


def storage_classes(client, namespace, operator_namespace):
    drivers = {"{0}.rbd.csi.ceph.com".format(operator_namespace): "block", "{0}.cephfs.csi.ceph.com".format(operator_namespace): "file"}
    out = []
    for sc in _items(client, "Listing StorageClasses", "/apis/storage.k8s.io/v1/storageclasses"):
        provisioner = sc.get("provisioner") or ""
        parameters = sc.get("parameters") or {}
        kind = drivers.get(provisioner) or ("object" if _BUCKET_PROVISIONER.match(provisioner) else None)
        if kind is None:
            continue
        if kind != "object" and parameters.get("clusterID") not in (None, namespace):
            continue
        if kind == "object" and parameters.get("objectStoreNamespace") not in (None, namespace):
            continue
        default = ((sc.get("metadata") or {}).get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"
        out.append({"name": sc["metadata"]["name"], "type": kind, "provisioner": provisioner, "default": default})
    return sorted(out, key=lambda sc: sc["name"])


def bucket_claims(client, classes):
    names = set(sc["name"] for sc in classes if sc["type"] == "object")
    out = []
    for claim in _items(client, "Listing ObjectBucketClaims", "/apis/objectbucket.io/v1alpha1/objectbucketclaims"):
        if (claim.get("spec") or {}).get("storageClassName") in names:
            out.append({"name": claim["metadata"]["name"], "namespace": claim["metadata"]["namespace"],
                        "phase": (claim.get("status") or {}).get("phase"), "bucket": (claim.get("spec") or {}).get("bucketName")})
    return sorted(out, key=lambda c: (c["namespace"], c["name"]))


def gather(client, namespace, operator_namespace):
    """The whole picture for one cluster; ``cluster`` is None when no CephCluster exists."""
    found = _items(client, "Listing CephClusters", objects.collection(namespace, "cephclusters"))
    ceph = found[0] if found else None
    classes = storage_classes(client, namespace, operator_namespace)
    return {
        "operator": operator(client, operator_namespace),
        "cluster": dict(statuses.summary(ceph), name=ceph["metadata"]["name"], namespace=namespace) if ceph else None,
        "daemons": daemons(client, namespace, (ceph or {}).get("spec")) if ceph else {},
        "block_pools": _phase_list(client, namespace, "cephblockpools"),
        "filesystems": _phase_list(client, namespace, "cephfilesystems"),
        "object_stores": _phase_list(client, namespace, "cephobjectstores"),
        "storage_classes": classes,
        "bucket_claims": bucket_claims(client, classes),
        "volumes": objects.rook_volumes(client, namespace, operator_namespace),
    }


_SEVERITY = {"HEALTH_OK": 0, "HEALTH_WARN": 1, "HEALTH_ERR": 2}


def ceph_health(client, deadline=None):
    """(health, checks text) of the least healthy CephCluster on the cluster; None without Rook
    (no CephCluster CRD or none created) or while no cluster reported health yet. ``deadline``
    (time.monotonic()) bounds the read and its retries."""
    listing = client.request("Listing CephClusters", "GET", "/apis/ceph.rook.io/v1/cephclusters", missing_ok=True,
                             deadline=deadline) or {}
    worst = None
    for item in listing.get("items") or []:
        info = statuses.summary(item)
        if info["health"] and (worst is None or _SEVERITY.get(info["health"], 2) > _SEVERITY.get(worst["health"], 2)):
            worst = dict(info, where="{0}/{1}".format(item["metadata"]["namespace"], item["metadata"]["name"]))
    if worst is None:
        return None
    checks = "; ".join("{0}: {1}".format(k, v) for k, v in worst["health_checks"].items())
    return worst["health"], "Ceph {0} on CephCluster {1}{2}".format(worst["health"], worst["where"], " ({0})".format(checks) if checks else "")
