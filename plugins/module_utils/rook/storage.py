# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Block, file and object storage on a Rook cluster: the CRs, their StorageClasses, and the waits.

Specs and checks follow Rook's own (pkg/operator/ceph/pool/validate.go, file/filesystem.go,
object/objectstore.go, object/user/controller.go) and lib-bucket-provisioner's claim contract
(kube-object-storage/lib-bucket-provisioner pkg/provisioner/controller.go). What Rook only logs
(a pool spec error keeps the CR Progressing with a Warning event; a claim that cannot be served
stays Pending) is caught here before the write where it can be, and otherwise reported with
Rook's event text when the wait ends, instead of a bare timeout.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible_collections.fleetdr.kube.plugins.module_utils import apply
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, ValidationError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import objects
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for

API_VERSION = "ceph.rook.io/v1"
OBC_API_VERSION = "objectbucket.io/v1alpha1"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"

ROOK_ARG_SPEC = {
    "namespace": {"type": "str", "default": "rook-ceph"},
    "operator_namespace": {"type": "str", "default": "rook-ceph"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 300},
}
POOL_ARG_SPEC = {
    "replicated_size": {"type": "int"},
    "require_safe_replica_size": {"type": "bool"},
    "erasure_coded": {"type": "dict", "options": {"data_chunks": {"type": "int", "required": True},
                                                  "coding_chunks": {"type": "int", "required": True}}},
    "failure_domain": {"type": "str", "default": "host"},
    "device_class": {"type": "str"},
    "parameters": {"type": "dict"},
}
STORAGE_CLASS_ARG_SPEC = {
    "name": {"type": "str", "required": True},
    "default": {"type": "bool", "default": False},
    "reclaim_policy": {"type": "str", "choices": ["Delete", "Retain"], "default": "Delete"},
}
BUCKET_CLASS_ARG_SPEC = {
    "name": {"type": "str", "required": True},
    "reclaim_policy": {"type": "str", "choices": ["Delete", "Retain"], "default": "Delete"},
}


# --------------------------------------------------------------------------- specs

def pool_spec(options, prefix=""):
    """A Rook PoolSpec from pool options; Rook's own validation, before any write. Errors name
    ``prefix`` + the option (``metadata_pool.replicated_size``)."""
    options = options or {}
    size, coded = options.get("replicated_size"), options.get("erasure_coded")
    if size is not None and coded:
        raise ValidationError(prefix + "erasure_coded", "and replicated_size are mutually exclusive (a pool is one or the other)")
    spec = {"failureDomain": options.get("failure_domain") or "host"}
    if coded:
        if coded["data_chunks"] < 2 or coded["coding_chunks"] < 1:
            raise ValidationError(prefix + "erasure_coded", "needs data_chunks >= 2 and coding_chunks >= 1, got {0}+{1}".format(
                coded["data_chunks"], coded["coding_chunks"]))
        spec["erasureCoded"] = {"dataChunks": coded["data_chunks"], "codingChunks": coded["coding_chunks"]}
    else:
        size = 3 if size is None else size
        if size < 1:
            raise ValidationError(prefix + "replicated_size", "must be at least 1, got {0}".format(size))
        if size == 1 and options.get("require_safe_replica_size"):
            raise ValidationError(prefix + "require_safe_replica_size", "cannot be true with replicated_size 1 (Rook: pool size is 1 "
                                  "and requireSafeReplicaSize is true, must be false)")
        spec["replicated"] = {"size": size}
        if options.get("require_safe_replica_size") is not None:
            spec["replicated"]["requireSafeReplicaSize"] = options["require_safe_replica_size"]
    if options.get("device_class"):
        spec["deviceClass"] = options["device_class"]
    if options.get("parameters"):
        spec["parameters"] = dict((str(k), str(v)) for k, v in options["parameters"].items())
    return spec


def rook_object(kind, name, namespace, spec):
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _secret_params(prefix, namespace):
    out = {}
    for key, secret in (("provisioner", "provisioner"), ("controller-expand", "provisioner"), ("node-stage", "node")):
        out["csi.storage.k8s.io/{0}-secret-name".format(key)] = "rook-csi-{0}-{1}".format(prefix, secret)
        out["csi.storage.k8s.io/{0}-secret-namespace".format(key)] = namespace
    return out


def storage_class(options, provisioner, parameters, expandable=True):
    """A StorageClass as Rook's examples write them (deploy/examples/csi/*/storageclass.yaml)."""
    metadata = {"name": options["name"]}
    if options.get("default"):
        metadata["annotations"] = {DEFAULT_CLASS_ANNOTATION: "true"}
    obj = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": metadata, "provisioner": provisioner,
           "parameters": parameters, "reclaimPolicy": options.get("reclaim_policy") or "Delete"}
    if expandable:
        obj["allowVolumeExpansion"] = True
    return obj


def block_storage_class(options, pool, namespace, operator_namespace):
    parameters = {"clusterID": namespace, "pool": pool, "imageFormat": "2", "imageFeatures": "layering",
                  "csi.storage.k8s.io/fstype": "ext4"}
    parameters.update(_secret_params("rbd", namespace))
    return storage_class(options, "{0}.rbd.csi.ceph.com".format(operator_namespace), parameters)


def filesystem_data_pool_name(filesystem, pools):
    """The Ceph name of the first data pool: <fs>-<name>, or <fs>-data0 when unnamed (Rook file/filesystem.go)."""
    first = (pools or [{}])[0]
    return "{0}-{1}".format(filesystem, first.get("name") or "data0")


def file_storage_class(options, filesystem, data_pools, namespace, operator_namespace):
    parameters = {"clusterID": namespace, "fsName": filesystem, "pool": filesystem_data_pool_name(filesystem, data_pools)}
    parameters.update(_secret_params("cephfs", namespace))
    return storage_class(options, "{0}.cephfs.csi.ceph.com".format(operator_namespace), parameters)


def bucket_provisioner(operator_config, namespace):
    """Rook pkg/operator/ceph/object/objectstore.go GetObjectBucketProvisioner, from rook-ceph-operator-config."""
    data = (operator_config or {}).get("data") or {}
    prefix = data.get("ROOK_OBC_PROVISIONER_NAME_PREFIX")
    if prefix:
        return "{0}.ceph.rook.io/bucket".format(prefix)
    if str(data.get("ROOK_OBC_WATCH_OPERATOR_NAMESPACE", "false")).lower() == "true":
        return "{0}.ceph.rook.io/bucket".format(namespace)
    return "ceph.rook.io/bucket"


def bucket_storage_class(options, store, namespace, provisioner):
    return storage_class(options, provisioner, {"objectStoreName": store, "objectStoreNamespace": namespace}, expandable=False)


def object_store_name(name):
    if len(name) > 38:  # Rook pkg/operator/ceph/object/objectstore.go: names its pools and daemons after the store
        raise ValidationError("name", "an object store name has at most 38 characters, got {0}".format(len(name)))
    return name


# --------------------------------------------------------------------------- apply, wait, delete

def _path(obj):
    meta = obj["metadata"]
    if obj["kind"] == "StorageClass":
        return "/apis/storage.k8s.io/v1/storageclasses", meta["name"]
    if obj["apiVersion"] == OBC_API_VERSION:
        return "/apis/{0}/namespaces/{1}/objectbucketclaims".format(OBC_API_VERSION, meta["namespace"]), meta["name"]
    return objects.collection(meta["namespace"], obj["kind"].lower() + "s"), meta["name"]


def warning_events(client, obj):
    """Rook's latest Warning events about ``obj`` (its only word on a spec it refuses)."""
    meta = obj["metadata"]
    query = {"fieldSelector": "involvedObject.name={0},type=Warning".format(meta["name"])}
    listing = client.request("Listing events of {0}".format(meta["name"]), "GET", "/api/v1/namespaces/{0}/events".format(meta["namespace"]),
                             query=query, missing_ok=True) or {}
    events = sorted(listing.get("items") or [], key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return [e.get("message") for e in events[-3:] if e.get("message")]


def cluster_gate(client, namespace):
    """Why Rook would hold dependents of this namespace's CephCluster back (None when it would not):
    they wait until its health is HEALTH_OK or HEALTH_WARN (Rook pkg/operator/ceph/controller/controller_utils.go)."""
    listing = client.request("Listing CephClusters", "GET", objects.collection(namespace, "cephclusters"), missing_ok=True) or {}
    items = listing.get("items") or []
    if not items:
        return "there is no CephCluster in namespace {0}".format(namespace)
    health = ((items[0].get("status") or {}).get("ceph") or {}).get("health")
    if health not in ("HEALTH_OK", "HEALTH_WARN"):
        return "CephCluster {0}/{1} health is {2}; Rook waits for HEALTH_OK or HEALTH_WARN".format(
            namespace, items[0]["metadata"]["name"], health or "not reported yet")
    return None


def wait_phase(client, obj, ready, failed, timeout):
    """Wait by watch until ``ready(live)``; fail at once when ``failed(live)`` returns a message."""
    collection, name = _path(obj)
    kind = obj["kind"]

    def settled(live):
        return live is not None and (ready(live) or failed(live) is not None)

    try:
        live = wait_for(client.watch_path(collection, name), settled, timeout, "{0} {1} to be ready".format(kind, name))
    except WaitTimeout as exc:
        phase = ((exc.last or {}).get("status") or {}).get("phase") or "no phase"
        why = warning_events(client, obj)
        gate = cluster_gate(client, obj["metadata"]["namespace"]) if obj["apiVersion"] == API_VERSION else None
        raise WaitTimeout("{0} {1} not ready after {2}s (phase {3}){4}{5}".format(
            kind, name, timeout, phase, ": " + "; ".join(why) if why else "", "; " + gate if gate else ""), last=exc.last)
    message = failed(live)
    if message is not None:
        raise FleetdrError("{0} {1} failed: {2}".format(kind, name, message), status=live.get("status"))
    return live


def phase_ready(live):
    status = live.get("status") or {}
    current = (status.get("observedGeneration") or live["metadata"].get("generation") or 0) >= (live["metadata"].get("generation") or 0)
    return status.get("phase") == "Ready" and current


def phase_failure(live):
    status = live.get("status") or {}
    if status.get("phase") in ("Failure", "ReconcileFailed"):
        conditions = [c.get("message") for c in status.get("conditions") or [] if c.get("message")]
        return status.get("message") or (conditions[-1] if conditions else "Rook set phase {0}".format(status["phase"]))
    return None


def ensure(client, wanted, check_mode=False, wait=False, timeout=300, ready=phase_ready, failed=phase_failure):
    """Apply ``wanted`` (the CR first, then its StorageClass if any); wait for the CR. Returns (changes, live CR)."""
    mapper = apply.ResourceMapper()
    changes = [apply.apply_object(client, mapper, obj, check_mode=check_mode) for obj in wanted]
    if check_mode:
        return changes, None
    collection, name = _path(wanted[0])
    live = client.request("Reading {0}".format(name), "GET", "{0}/{1}".format(collection, name), missing_ok=True)
    if wait:
        live = wait_phase(client, wanted[0], ready, failed, timeout)
    return changes, live


def remove(client, wanted, check_mode=False, wait=False, timeout=300):
    """Delete the StorageClass, then the CR; with ``wait`` until Rook let it go, or fail with the
    reason Rook gives for blocking it (DeletionIsBlocked / PoolDeletionIsBlocked)."""
    changes = apply.remove(client, wanted, check_mode)
    if check_mode or not wait:
        return changes
    collection, name = _path(wanted[0])

    def gone_or_blocked(live):
        return live is None or _blocked(live) is not None

    try:
        live = wait_for(client.watch_path(collection, name), gone_or_blocked, timeout, "{0} {1} to be deleted".format(wanted[0]["kind"], name))
    except WaitTimeout as exc:
        raise WaitTimeout("{0} {1} still there after {2}s{3}".format(wanted[0]["kind"], name, timeout, "".join(
            ": " + m for m in warning_events(client, wanted[0])[-1:])), last=exc.last)
    if live is not None:
        raise FleetdrError("Rook blocks the deletion of {0} {1}: {2}".format(wanted[0]["kind"], name, _blocked(live)))
    return changes


def _blocked(live):
    for condition in (live.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("DeletionIsBlocked", "PoolDeletionIsBlocked") and condition.get("status") == "True":
            return condition.get("message") or condition.get("reason")
    return None


def read_secret_data(client, namespace, name):
    secret = client.request("Reading Secret {0}/{1}".format(namespace, name), "GET",
                            "/api/v1/namespaces/{0}/secrets/{1}".format(namespace, name), missing_ok=True)
    if secret is None:
        return None
    return dict((k, base64.b64decode(v).decode("utf-8")) for k, v in (secret.get("data") or {}).items())


def module_result(module, client, wanted, ready=phase_ready, failed=phase_failure):
    """Run a storage module's state on ``wanted`` (the Rook object first) and shape its result."""
    params = module.params
    if params["state"] == "absent":
        changes = remove(client, wanted, module.check_mode, params["wait"], params["wait_timeout"])
        live = None
    else:
        changes, live = ensure(client, wanted, module.check_mode, params["wait"], params["wait_timeout"], ready, failed)
    status = (live or {}).get("status") or {}
    out = {"changed": apply.changed(changes), "result": {"phase": status.get("phase"), "info": status.get("info"),
                                                         "changes": [{"object": c["object"], "action": c["action"]} for c in changes]}}
    if live is not None:
        out["object"] = live
    if module._diff:
        out["diff"] = [c["diff"] for c in changes if c.get("diff")]
    return out


def claim_bound(live):
    return (live.get("status") or {}).get("phase") == "Bound"


def claim_never_failed(live):
    return None  # lib-bucket-provisioner leaves a claim Pending on any error


def bucket_claim(params):
    """An ObjectBucketClaim (lib-bucket-provisioner pkg/apis/objectbucket.io/v1alpha1)."""
    spec = {"storageClassName": params["storage_class"]}
    if params.get("bucket_name"):
        spec["bucketName"] = params["bucket_name"]
    else:
        spec["generateBucketName"] = params.get("generate_bucket_name") or params["name"]
    extra = dict((key, str(params[option])) for key, option in (("maxObjects", "max_objects"), ("maxSize", "max_size"))
                 if params.get(option) is not None)
    if extra:
        spec["additionalConfig"] = extra
    return {"apiVersion": OBC_API_VERSION, "kind": "ObjectBucketClaim",
            "metadata": {"name": params["name"], "namespace": params["claim_namespace"]}, "spec": spec}


def check_bucket_class(client, name):
    """A claim on a class that is missing, or that no Rook bucket provisioner serves, would stay Pending (or
    unanswered) forever: refuse it before the write."""
    sc = client.request("Reading StorageClass {0}".format(name), "GET", "/apis/storage.k8s.io/v1/storageclasses/{0}".format(name),
                        missing_ok=True)
    if sc is None:
        raise ValidationError("storage_class", "StorageClass {0} does not exist".format(name))
    provisioner = sc.get("provisioner") or ""
    if not provisioner.endswith("ceph.rook.io/bucket"):
        raise ValidationError("storage_class", "StorageClass {0} is provisioned by {1}, not by a Rook object store; no one would "
                              "answer the claim".format(name, provisioner or "nothing"))
