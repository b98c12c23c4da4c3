# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fleet operations for Rook-Ceph: storage (install or tear down) and storage_status.

Each cluster arrives with the release manifests (``rook_manifests``, shared by the fleet) and its
own CephCluster options (``rook``, from its inventory variables, already validated). Install:
the manifests through the apply engine (CRDs Established first), the operator Deployment
Available, then the CephCluster applied and waited for by watch until Ready with an acceptable
health. Teardown follows Rook's documented order (CephCluster, then the operator and its
manifests) and is refused while Rook would block it. A cluster's verdict follows the data:
HEALTH_ERR is never "succeeded".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.fleetdr.kube.plugins.module_utils import apply
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, ValidationError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import info, objects, status as statuses
from ansible_collections.fleetdr.kube.plugins.module_utils.rook.cluster import CLUSTER_ARG_SPEC, HEALTH_CHOICES, build, check_against_cluster, validate
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for

OPERATOR_WAIT_CAP = 300


def _available(deployment):
    state = (deployment or {}).get("status") or {}
    meta = (deployment or {}).get("metadata") or {}
    current = state.get("observedGeneration", 0) >= meta.get("generation", 0)
    return current and any(c.get("type") == "Available" and c.get("status") == "True" for c in state.get("conditions") or [])


def _changes(changes):
    return [{"object": c["object"], "action": c["action"]} for c in changes if c["action"] not in ("unchanged", "absent")]


def entry(picture, params, changes=None, verdict=None, reason=None, phase=None):
    """A report entry from info.gather(): the verdict follows Rook's phase and Ceph's health."""
    ceph = picture.get("cluster")
    health_ok = params.get("health_ok") or list(HEALTH_CHOICES)
    if verdict is None:
        if not picture["operator"]["installed"]:
            verdict, reason = "failed", "Rook is not installed: no Deployment rook-ceph-operator"
        elif ceph is None:
            verdict, reason = "failed", "no CephCluster in namespace {0}".format(params["namespace"])
        else:
            reason = statuses.summary_reason(ceph, health_ok)
            verdict = "failed" if reason else "succeeded"
    daemons = picture.get("daemons") or {}
    warnings = ["{0}: {1}".format(code, text) for code, text in sorted(((ceph or {}).get("health_checks") or {}).items())]
    for daemon in ("mon", "mgr"):
        counts = daemons.get(daemon)
        if counts and counts["wanted"] and counts["ready"] < counts["wanted"]:
            warnings.append("{0}s ready {1} of {2}".format(daemon, counts["ready"], counts["wanted"]))
    details = {
        "operator_version": picture["operator"].get("version"),
        "ceph_phase": (ceph or {}).get("phase"),
        "ceph_state": (ceph or {}).get("state"),
        "health": (ceph or {}).get("health"),
        "health_checks": (ceph or {}).get("health_checks") or {},
        "capacity": (ceph or {}).get("capacity"),
        "ceph_version": (ceph or {}).get("ceph_version"),
        "daemons": daemons,
        "block_pools": picture.get("block_pools"),
        "filesystems": picture.get("filesystems"),
        "object_stores": picture.get("object_stores"),
        "storage_classes": picture.get("storage_classes"),
        "bucket_claims": picture.get("bucket_claims"),
        "volumes": len(picture.get("volumes") or []),
    }
    if changes is not None:
        details["changes"] = _changes(changes)
    return {"verdict": verdict, "phase": phase or ("Ready" if verdict == "succeeded" else "Degraded"),
            "reason": reason,
            "object": {"kind": "CephCluster", "namespace": params["namespace"], "name": (ceph or {}).get("name") or params["name"]},
            "warnings": warnings, "errors": [reason] if verdict == "failed" and reason else [], "details": details}


def storage(job, timeout_for):
    """``timeout_for(job, recorder, cap)`` bounds each wait by the run's wait_timeout and deadline."""
    def run(cluster, recorder):
        client = job.clients.connect(cluster)
        params = dict(cluster["rook"], wait=False)
        manifests = cluster["rook_manifests"]
        if job.params["state"] == "absent":
            recorder.phase("Removing")
            change, _live = objects.remove_cluster(client, dict(params, wait=not job.check_mode, wait_timeout=timeout_for(job, recorder)),
                                                   params["operator_namespace"], job.params.get("destroy_data"), job.check_mode)
            changes = [change] + apply.remove(client, manifests, job.check_mode)
            changed = apply.changed(changes)
            job.mark_changed(cluster["name"], changed)
            job.record_diff(cluster["name"], changes)
            return {"verdict": "succeeded", "phase": ("WouldRemove" if job.check_mode else "Removed") if changed else "Absent",
                    "object": {"kind": "CephCluster", "namespace": params["namespace"], "name": params["name"]},
                    "details": {"changes": _changes(changes)}}
        recorder.phase("Checking")
        # What Rook would refuse (mons vs Nodes, placement, hostnames, dataDirHostPath) is refused
        # here, before anything is written to this cluster.
        check_against_cluster(build(params), objects.nodes(client), objects.read(client, params["namespace"], "cephclusters", params["name"]))
        recorder.phase("Applying")
        changes = apply.apply_phased(client, manifests, job.check_mode, job.params.get("force_conflicts"), timeout_for(job, recorder, 120))
        if not job.check_mode:
            recorder.phase("Operator")
            namespace = params["operator_namespace"]
            try:
                wait_for(client.watch_path("/apis/apps/v1/namespaces/{0}/deployments".format(namespace), info.OPERATOR), _available,
                         timeout_for(job, recorder, OPERATOR_WAIT_CAP), "Deployment {0}/{1} to be Available".format(namespace, info.OPERATOR))
            except WaitTimeout:
                raise FleetdrError("Deployment {0}/{1} was not Available within {2}s".format(
                    namespace, info.OPERATOR, timeout_for(job, recorder, OPERATOR_WAIT_CAP)))
        recorder.phase("CephCluster")
        if job.check_mode and any(c["action"] == "create" for c in changes):
            # The CRDs are not there yet: the CephCluster would be created with them.
            change = apply.Change(object="CephCluster {0}/{1}".format(params["namespace"], params["name"]), action="create")
        else:
            change, _live = objects.ensure_cluster(client, params, job.check_mode)
        changes.append(change)
        changed = apply.changed(changes)
        job.mark_changed(cluster["name"], changed)
        job.record_diff(cluster["name"], changes)
        if job.check_mode:
            return {"verdict": "succeeded", "phase": "WouldChange" if changed else "Installed",
                    "object": {"kind": "CephCluster", "namespace": params["namespace"], "name": params["name"]},
                    "details": {"changes": _changes(changes)}}
        recorder.phase("Health")
        try:
            objects.wait_cluster(client, build(params), params["health_ok"], timeout_for(job, recorder))
        except (FleetdrError, WaitTimeout) as exc:
            return entry(info.gather(client, params["namespace"], params["operator_namespace"]), params, changes,
                         verdict="failed", reason=exc.msg, phase="Degraded")
        return entry(info.gather(client, params["namespace"], params["operator_namespace"]), params, changes)
    return run


def storage_status(job):
    def run(cluster, recorder):
        client = job.clients.connect(cluster)
        recorder.phase("Reading")
        params = cluster["rook"]
        return entry(info.gather(client, params["namespace"], params["operator_namespace"]), params)
    return run


# Inventory variables (role fleetdr.kube.rook_ceph's) -> the CephCluster options of one cluster.
HOST_VARS = ("rook_ceph_cluster", "rook_ceph_namespace", "rook_ceph_operator_namespace", "rook_ceph_health_ok")
_RUN_WIDE = ("namespace", "state", "health_ok", "wait", "wait_timeout")
_PER_CLUSTER = dict((key, value) for key, value in CLUSTER_ARG_SPEC.items() if key not in _RUN_WIDE)


def cluster_params(host, values):
    """The validated rook_cluster options of ``host`` from its variables; ValidationError names the
    host and the option (``rook_ceph_cluster.monitor.count``) before any cluster is touched."""
    raw = values.get("rook_ceph_cluster") or {}
    if not isinstance(raw, dict):
        raise ValidationError("rook_ceph_cluster", "of {0} must be a dict of rook_cluster options, got {1}".format(host, type(raw).__name__))
    checked = ArgumentSpecValidator(_PER_CLUSTER).validate(dict(raw))
    if checked.error_messages:
        raise ValidationError("rook_ceph_cluster", "of {0}: {1}".format(host, "; ".join(checked.error_messages)))
    params = dict(checked.validated_parameters, state="present", wait=False, wait_timeout=0,
                  namespace=values.get("rook_ceph_namespace") or "rook-ceph",
                  operator_namespace=values.get("rook_ceph_operator_namespace") or "rook-ceph",
                  health_ok=list(values.get("rook_ceph_health_ok") or HEALTH_CHOICES))
    bad = [h for h in params["health_ok"] if h not in HEALTH_CHOICES]
    if bad:
        raise ValidationError("rook_ceph_health_ok", "of {0}: {1} never counts as healthy (choose from {2})".format(
            host, ", ".join(bad), ", ".join(HEALTH_CHOICES)))
    try:
        validate(params)
    except ValidationError as exc:
        raise ValidationError("rook_ceph_cluster." + exc.option, "of {0}: {1}".format(host, exc.msg.split(": ", 1)[-1]))
    return params
