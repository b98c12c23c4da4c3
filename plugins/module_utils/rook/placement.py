# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Which Nodes a Rook placement allows, the way the scheduler decides it.

Rook merges ``placement.all`` with the daemon's own entry (the daemon's nodeAffinity replaces
``all``'s, tolerations add up: Rook pkg/apis/ceph.rook.io/v1/placement.go), then the scheduler
keeps the Nodes that satisfy the required node affinity and whose NoSchedule/NoExecute taints are
all tolerated (Kubernetes pkg/scheduler/framework/plugins/nodeaffinity and tainttoleration).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

HOSTNAME_LABEL = "kubernetes.io/hostname"


def merged(placement, daemon):
    """The effective placement of ``daemon`` (mon, mgr, osd, ...) from a CephCluster's ``spec.placement``."""
    placement = placement or {}
    common = dict(placement.get("all") or {})
    own = placement.get(daemon) or {}
    out = dict(common)
    for key in ("nodeAffinity", "podAffinity", "podAntiAffinity", "topologySpreadConstraints"):
        if own.get(key) is not None:
            out[key] = own[key]
    tolerations = list(common.get("tolerations") or []) + list(own.get("tolerations") or [])
    if tolerations:
        out["tolerations"] = tolerations
    return out


def _number(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _expression_matches(expression, values):
    key, operator = expression.get("key"), expression.get("operator")
    wanted = expression.get("values") or []
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        have, limit = _number(values.get(key)), _number(wanted[0] if wanted else None)
        if have is None or limit is None:
            return False
        return have > limit if operator == "Gt" else have < limit
    return False


def _term_matches(term, node):
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    fields = {"metadata.name": metadata.get("name")}
    expressions = term.get("matchExpressions") or []
    field_expressions = term.get("matchFields") or []
    if not expressions and not field_expressions:
        return False  # an empty term matches nothing (Kubernetes core/v1 NodeSelectorTerm)
    return (all(_expression_matches(e, labels) for e in expressions)
            and all(_expression_matches(e, fields) for e in field_expressions))


def affinity_allows(placement, node):
    required = ((placement.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    return any(_term_matches(term, node) for term in terms)


def _tolerates(toleration, taint):
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration.get("key") == taint.get("key")
    return toleration.get("key") == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def taints_allow(placement, node):
    tolerations = placement.get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(_tolerates(toleration, taint) for toleration in tolerations):
            return False
    return True


def schedulable(node):
    return not (node.get("spec") or {}).get("unschedulable")


def allowed_nodes(placement, nodes):
    """Names of the Nodes a pod with ``placement`` may run on."""
    return [n["metadata"]["name"] for n in nodes
            if schedulable(n) and affinity_allows(placement, n) and taints_allow(placement, n)]


def hostname(node):
    return ((node.get("metadata") or {}).get("labels") or {}).get(HOSTNAME_LABEL)
