# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a CephCluster's status says, read the way Rook writes it.

Rook's status machine (pkg/operator/ceph/controller/conditions.go UpdateClusterCondition) never
uses phase ``Failure`` for a CephCluster: a failed reconcile is phase ``Progressing`` with state
``Error`` and the error as message, while an old ``Ready``/``ClusterCreated`` condition stays in
the list. ``status.ceph`` (pkg/operator/ceph/cluster/cephstatus.go) appears only after the first
successful reconcile, and ``phase: Ready`` says nothing about Ceph health. So "usable" is phase
Ready for the current generation **and** an acceptable ``status.ceph.health``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdr.kube.plugins.module_utils.report import parse_timestamp


def _condition(status, kind):
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def summary(obj):
    """The CephCluster's state as the result and the report show it."""
    status = (obj or {}).get("status") or {}
    ceph = status.get("ceph") or {}
    capacity = ceph.get("capacity") or {}
    details = ceph.get("details") or {}
    return {
        "phase": status.get("phase"),
        "state": status.get("state"),
        "message": status.get("message"),
        "health": ceph.get("health"),
        "health_checks": dict((code, (check or {}).get("message")) for code, check in sorted(details.items())),
        "capacity": {"total_bytes": capacity.get("bytesTotal"), "used_bytes": capacity.get("bytesUsed"),
                     "available_bytes": capacity.get("bytesAvailable")} if capacity else None,
        "ceph_version": (status.get("version") or {}).get("version"),
        "fsid": ceph.get("fsid"),
        "deleting": status.get("phase") == "Deleting",
        "deletion_blocked": _blocked_message(status),
    }


def _blocked_message(status):
    condition = _condition(status, "DeletionIsBlocked")
    if condition and condition.get("status") == "True":
        return condition.get("message")
    return None


def failed_since(obj, since=None):
    """Rook's error message when the cluster's last reconcile failed (after ``since``, a server
    timestamp of our write, when given); else None."""
    status = (obj or {}).get("status") or {}
    if status.get("state") != "Error":
        return None
    condition = _condition(status, status.get("phase") or "Progressing") or {}
    if since is not None:
        seen = parse_timestamp(condition.get("lastHeartbeatTime") or condition.get("lastTransitionTime"))
        if seen is None or seen < since:
            return None
    return status.get("message") or condition.get("message") or "reconcile failed"


def ready(obj, health_ok):
    """Phase Ready for the current generation and a health in ``health_ok``."""
    status = (obj or {}).get("status") or {}
    metadata = (obj or {}).get("metadata") or {}
    if status.get("phase") != "Ready":
        return False
    if (status.get("observedGeneration") or 0) < (metadata.get("generation") or 0):
        return False
    return ((status.get("ceph") or {}).get("health")) in health_ok


def not_ready_reason(obj, health_ok):
    """Why ``ready`` is False, in the words a user needs."""
    if not (obj or {}).get("status"):
        return "the operator has not reconciled the CephCluster (is rook-ceph-operator running?)"
    return summary_reason(summary(obj), health_ok)


def summary_reason(info, health_ok):
    """Why a CephCluster with this ``summary`` is not usable (None when it is)."""
    if info["state"] == "Error":
        return "Rook reports: {0}".format(info["message"] or "reconcile failed")
    if info["phase"] != "Ready":
        return "phase {0}: {1}".format(info["phase"], info["message"] or "no message")
    if not info["health"]:
        return "phase Ready but Ceph has not reported health yet"
    if info["health"] not in health_ok:
        checks = "; ".join("{0}: {1}".format(k, v) for k, v in info["health_checks"].items())
        return "Ceph health {0}{1}".format(info["health"], " ({0})".format(checks) if checks else "")
    return None


def write_time(obj, manager):
    """When ``manager`` last wrote ``obj``, by the server's clock (its managedFields entry)."""
    times = [parse_timestamp(entry.get("time")) for entry in ((obj or {}).get("metadata") or {}).get("managedFields") or []
             if entry.get("manager") == manager and entry.get("operation") in ("Apply", "Update")]
    times = [t for t in times if t is not None]
    return max(times) if times else None
