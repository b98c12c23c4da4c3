"""Workload controllers of an emulated cluster: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job,
plus the scheduler and a kubelet that "runs" pods.

One controller object serves all workload kinds of a cluster: it watches each kind once and keeps a
single de-duplicating work queue keyed by (kind, namespace, name), so a pod event costs one queue
entry per interested owner instead of one per controller.
"""
from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import ipaddress
import math
import random
import re
from typing import Callable

from ..selectors import selector_string
from .base import (Controller, controller_ref, is_deleting, meta, owned_by, owner_reference,
                   pod_is_active, pod_is_ready, pod_is_terminal, rfc3339, selector_matches,
                   set_condition, template_hash, timers, log)

POD_START_DELAY = (0.1, 0.25)      # seconds from binding to Running/Ready
JOB_RUN_DELAY = (0.2, 0.35)        # seconds a Job pod "works" before Succeeded
INIT_POLL_SECONDS = 0.25           # how often a blocking init container re-checks (restore-wait)
DS_TOLERATIONS = [  # what the DaemonSet controller adds to every daemon pod
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
OWNER_KINDS = {"ReplicaSet", "StatefulSet", "DaemonSet", "Job"}
RESOURCE = {  # kind -> (group, plural)
    "Deployment": ("apps", "deployments"), "ReplicaSet": ("apps", "replicasets"),
    "StatefulSet": ("apps", "statefulsets"), "DaemonSet": ("apps", "daemonsets"),
    "Job": ("batch", "jobs"), "Pod": ("", "pods"),
}


# ---------------------------------------------------------------------- small helpers
def int_or_percent(value, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        frac = total * int(text[:-1]) / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(text)


def omit_zero(status: dict) -> dict:
    """Workload status integers are `omitempty` in the real API: zeros are not serialized."""
    return {k: v for k, v in status.items() if v not in (0, None, "", [], {})}


def strip_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop("pod-template-hash", None)
    return t


def normalize_image(image: str) -> str:
    """What the kubelet reports in containerStatuses[].image: registry and tag spelled out."""
    name = image or ""
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        if "/" not in name:
            name = "library/" + name
        name = "docker.io/" + name
    return name


def image_id(image: str) -> str:
    repo = normalize_image(image).split("@")[0].rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(normalize_image(image).encode()).hexdigest()}"


def qos_class(spec: dict) -> str:
    requests = limits = False
    guaranteed = True
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        requests |= bool(req)
        limits |= bool(lim)
        if not lim or not all(k in lim for k in ("cpu", "memory")) or \
                any(req.get(k, lim[k]) != lim[k] for k in lim):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def node_is_ready(node: dict) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def tolerates(tolerations: list, taint: dict) -> bool:
    for t in tolerations or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expr_matches(expr: dict, value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            return value is not None and ((int(value) > int(values[0])) if op == "Gt"
                                          else (int(value) < int(values[0])))
        except (ValueError, IndexError):
            return False
    return False


def node_fits(pod_spec: dict, node: dict, ignore_taints: bool = False) -> bool:
    labels = meta(node).get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        fields = {"metadata.name": meta(node).get("name")}
        if not any(all(_expr_matches(e, labels.get(e.get("key"))) for e in t.get("matchExpressions") or [])
                   and all(_expr_matches(e, fields.get(e.get("key"))) for e in t.get("matchFields") or [])
                   for t in terms):
            return False
    if not ignore_taints:
        for taint in (node.get("spec") or {}).get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and \
                    not tolerates(pod_spec.get("tolerations"), taint):
                return False
    return True


def pod_claims(pod: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"]
            for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")]


def pod_from_template(template: dict, namespace: str, owner: dict, *, name: str | None = None,
                      generate_name: str | None = None, labels: dict | None = None) -> dict:
    tmeta = (template or {}).get("metadata") or {}
    md = {"namespace": namespace,
          "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
          "ownerReferences": [owner_reference(owner)]}
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        md["finalizers"] = list(tmeta["finalizers"])
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": copy.deepcopy((template or {}).get("spec") or {})}


# Init containers whose completion in-cluster software decides: name -> fn(store, pod) -> bool
# (True: the container has finished). Registered by that software (Velero's restore-wait).
INIT_CONTAINER_GATES: dict[str, Callable[[object, dict], bool]] = {}


def register_init_container_gate(name: str, done: Callable[[object, dict], bool]) -> None:
    """Let the kubelet emulation keep pods in Init while done(store, pod) is False for their
    init container `name`."""
    INIT_CONTAINER_GATES[name] = done


class WorkloadController(Controller):
    """Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, scheduling and the kubelet."""

    name = "workloads"
    watches = [("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
               ("apps", "daemonsets"), ("batch", "jobs"), ("", "pods"), ("", "nodes"),
               ("", "persistentvolumeclaims")]

    def __init__(self, cluster):
        super().__init__(cluster)
        self._node_signature: dict[str, tuple] = {}
        self._unschedulable: set[tuple] = set()     # pod keys waiting for a fitting node
        self._kubelet_timers: dict[tuple, object] = {}
        self._next_ip: dict[str, int] = {}
        self._node_pods: dict[str, set] = {}
        self._node_ips: dict[str, dict[str, tuple]] = {}

    # ------------------------------------------------------------------ events -> keys
    def keys_for(self, etype, obj):
        kind = obj.get("kind")
        m = meta(obj)
        ns, name = m.get("namespace"), m.get("name")
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            return [(kind, ns, name)]
        if kind == "ReplicaSet":
            keys = [("ReplicaSet", ns, name)]
            return keys + self._owner_keys(obj, "Deployment")
        if kind == "Pod":
            self._track_pod(etype, obj)
            keys = [] if etype == "DELETED" else [("Pod", ns, name)]
            if etype == "DELETED":
                self._unschedulable.discard(("Pod", ns, name))
                t = self._kubelet_timers.pop(("Pod", ns, name), None)
                if t:
                    t.cancel()
            return keys + self._owner_keys(obj, *OWNER_KINDS)
        if kind == "Node":
            return self._node_changed(etype, obj)
        if kind == "PersistentVolumeClaim":
            return [("Pod", ns, meta(p)["name"])
                    for p in self.store.list("", "pods", namespace=ns)["items"]
                    if not (p.get("spec") or {}).get("nodeName") and name in pod_claims(p)]
        return []

    def _track_pod(self, etype, pod):
        """Which pods (and pod IPs) each node has, from the pod stream: the scheduler's spread
        and the IPAM's free addresses without listing every pod of the cluster."""
        m = meta(pod)
        key = ("Pod", m.get("namespace"), m.get("name"))
        node = (pod.get("spec") or {}).get("nodeName")
        ip = (pod.get("status") or {}).get("podIP")
        gone = etype == "DELETED" or pod_is_terminal(pod)
        # events may be older than our own bookkeeping (bound/allocated since): an event without
        # a node or IP does not undo a reservation; only the pod's end or a different value does
        for n, keys in list(self._node_pods.items()):
            if key in keys and (gone or (node and n != node)):
                keys.discard(key)
        for n, ips in self._node_ips.items():
            for a, k in list(ips.items()):
                if k == key and (gone or (node and n != node) or (ip and a != ip)):
                    del ips[a]
        if gone or not node:
            return
        self._node_pods.setdefault(node, set()).add(key)
        if ip and not (pod.get("spec") or {}).get("hostNetwork"):
            self._node_ips.setdefault(node, {})[ip] = key

    def _owner_keys(self, obj, *kinds):
        """The controller owning obj, or - for an orphan - every owner kind that might adopt it."""
        ns = meta(obj).get("namespace")
        ref = controller_ref(obj)
        if ref:
            return [(ref["kind"], ns, ref["name"])] if ref.get("kind") in kinds else []
        keys = []
        labels = meta(obj).get("labels") or {}
        if not labels:
            return keys
        for kind in kinds:
            g, p = RESOURCE[kind]
            for owner in self.store.list(g, p, namespace=ns)["items"]:
                if selector_matches((owner.get("spec") or {}).get("selector"), labels):
                    keys.append((kind, ns, meta(owner)["name"]))
        return keys

    def _node_changed(self, etype, node):
        name = meta(node).get("name")
        if etype == "DELETED":
            self._node_signature.pop(name, None)
            sig = None
        else:
            spec = node.get("spec") or {}
            sig = (tuple(sorted((meta(node).get("labels") or {}).items())),
                   repr(spec.get("taints")), bool(spec.get("unschedulable")), node_is_ready(node))
            if self._node_signature.get(name) == sig:
                return []  # heartbeat-only change: nothing a workload cares about
            self._node_signature[name] = sig
        keys = [("DaemonSet", meta(ds)["namespace"], meta(ds)["name"])
                for ds in self.store.list("apps", "daemonsets")["items"]]
        keys += sorted(self._unschedulable)
        return keys

    # ------------------------------------------------------------------ dispatch
    def reconcile(self, key):
        kind, ns, name = key
        handler = getattr(self, "sync_" + kind.lower())
        return handler(ns, name)

    # ------------------------------------------------------------------ shared owner logic
    def _claim(self, owner: dict, group: str, plural: str, name_ok=None) -> list[dict]:
        """Objects of group/plural controlled by owner, adopting matching orphans (as real)."""
        ns = meta(owner)["namespace"]
        selector = (owner.get("spec") or {}).get("selector")
        # only what the selector selects: copies stay proportional to the owner's own objects
        label_selector = selector_string(selector) if selector and (
            selector.get("matchLabels") or selector.get("matchExpressions")) else None
        out = []
        for obj in self.store.list(group, plural, namespace=ns,
                                   label_selector=label_selector)["items"]:
            if owned_by(obj, owner):
                out.append(obj)
            elif (controller_ref(obj) is None and not is_deleting(obj)
                  and selector_matches(selector, meta(obj).get("labels"))
                  and (name_ok is None or name_ok(obj))):
                refs = list(meta(obj).get("ownerReferences") or []) + [owner_reference(owner)]
                out.append(self.store.patch(group, plural, ns, meta(obj)["name"],
                                            {"metadata": {"ownerReferences": refs}}, "merge"))
        return out

    def _write_status(self, group, plural, obj, status: dict):
        if (obj.get("status") or {}) == status:
            return obj
        body = copy.deepcopy(obj)
        body["status"] = status
        m = meta(obj)
        return self.store.update(group, plural, m.get("namespace"), m["name"], body,
                                 subresource="status")

    def _delete(self, group, plural, obj, **kw):
        m = meta(obj)
        try:
            self.store.delete(group, plural, m.get("namespace"), m["name"],
                              preconditions={"uid": m.get("uid")}, **kw)
        except Exception as e:
            if getattr(e, "code", None) not in (404, 409):
                raise

    # ------------------------------------------------------------------ Deployment
    def sync_deployment(self, ns, name):
        d = self.store.get_or_none("apps", "deployments", ns, name)
        if not d or is_deleting(d):
            return
        spec = d.get("spec") or {}
        want = spec.get("replicas", 1)
        template = spec.get("template") or {}
        paused = bool(spec.get("paused"))
        now = self.now()
        rss = self._claim(d, "apps", "replicasets")
        plain = strip_hash(template)
        new_rs = next((rs for rs in rss if not is_deleting(rs)
                       and strip_hash((rs.get("spec") or {}).get("template")) == plain), None)
        revisions = [int(meta(rs).get("annotations", {}).get("deployment.kubernetes.io/revision", "0") or 0)
                     for rs in rss]
        max_rev = max(revisions, default=0)
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            max_surge = int_or_percent(rolling.get("maxSurge", "25%"), want, True)
            max_unavailable = int_or_percent(rolling.get("maxUnavailable", "25%"), want, False)
            if max_surge == 0 and max_unavailable == 0:
                max_unavailable = 1
        else:
            max_surge = max_unavailable = 0
        created = False
        recreate = strategy.get("type") == "Recreate"
        old_pods_left = any((rs.get("status") or {}).get("replicas") for rs in rss
                            if rs is not new_rs)
        if recreate and not paused:
            # Recreate: every old pod goes first, the new ReplicaSet comes up afterwards
            for rs in rss:
                if rs is not new_rs and (rs.get("spec") or {}).get("replicas", 1) != 0:
                    self.store.patch("apps", "replicasets", ns, meta(rs)["name"],
                                     {"spec": {"replicas": 0}}, "merge")
        if new_rs is None and not paused and not (recreate and old_pods_left):
            collisions = (d.get("status") or {}).get("collisionCount", 0)
            h = template_hash(plain, collisions)
            rs_name = f"{name}-{h}"
            labels = {**((template.get("metadata") or {}).get("labels") or {}), "pod-template-hash": h}
            rs_template = copy.deepcopy(plain)
            rs_template.setdefault("metadata", {})["labels"] = labels
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = h
            body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "namespace": ns, "labels": labels,
                                 "annotations": {
                                     "deployment.kubernetes.io/revision": str(max_rev + 1),
                                     "deployment.kubernetes.io/desired-replicas": str(want),
                                     "deployment.kubernetes.io/max-replicas": str(want + max_surge)},
                                 "ownerReferences": [owner_reference(d)]},
                    "spec": {"replicas": want, "minReadySeconds": spec.get("minReadySeconds", 0),
                             "selector": selector, "template": rs_template}}
            try:
                new_rs = self.store.create("apps", "replicasets", ns, body)
            except Exception as e:
                if getattr(e, "code", None) != 409:
                    raise
                # a ReplicaSet of that name with another template: bump collisionCount, retry
                st = dict(d.get("status") or {})
                st["collisionCount"] = collisions + 1
                self._write_status("apps", "deployments", d, st)
                return
            rss.append(new_rs)
            created = True
            max_rev += 1
        if new_rs is not None:
            nm = meta(new_rs)
            rev = int((nm.get("annotations") or {}).get("deployment.kubernetes.io/revision", "0") or 0)
            patch_md = {}
            if not paused and rev < max_rev:  # a rollback makes an old ReplicaSet the newest
                rev = max_rev + 1
                patch_md["deployment.kubernetes.io/revision"] = str(rev)
            if (nm.get("annotations") or {}).get("deployment.kubernetes.io/desired-replicas") != str(want):
                patch_md["deployment.kubernetes.io/desired-replicas"] = str(want)
                patch_md["deployment.kubernetes.io/max-replicas"] = str(want + max_surge)
            rs_patch = {}
            if patch_md:
                rs_patch["metadata"] = {"annotations": patch_md}
            if (new_rs.get("spec") or {}).get("replicas", 1) != want and \
                    not (recreate and old_pods_left and not paused):
                rs_patch["spec"] = {"replicas": want}
            if rs_patch:
                new_rs = self.store.patch("apps", "replicasets", ns, nm["name"], rs_patch, "merge")
            if (meta(d).get("annotations") or {}).get("deployment.kubernetes.io/revision") != str(rev):
                d = self.store.patch("apps", "deployments", ns, name, {"metadata": {"annotations": {
                    "deployment.kubernetes.io/revision": str(rev)}}}, "merge")
        new_available = (new_rs is not None and ((new_rs.get("status") or {})
                                                 .get("availableReplicas", 0) >= want))
        if not paused and new_available:
            # a rolling update in one step: the new ReplicaSet comes up at full size, and the old
            # ones go to zero once it is available (so availability never drops)
            for rs in rss:
                if rs is not new_rs and (rs.get("spec") or {}).get("replicas", 1) != 0 \
                        and not is_deleting(rs):
                    self.store.patch("apps", "replicasets", ns, meta(rs)["name"],
                                     {"spec": {"replicas": 0}}, "merge")
            self._cleanup_history(d, rss, new_rs)
        rss = [self.store.get_or_none("apps", "replicasets", ns, meta(rs)["name"]) for rs in rss]
        rss = [rs for rs in rss if rs]
        self._deployment_status(d, rss, new_rs, want, max_unavailable, paused, created, now)

    def _cleanup_history(self, d, rss, new_rs):
        limit = (d.get("spec") or {}).get("revisionHistoryLimit", 10)
        old = [rs for rs in rss if rs is not new_rs and not is_deleting(rs)
               and (rs.get("spec") or {}).get("replicas", 1) == 0
               and not (rs.get("status") or {}).get("replicas")]
        old.sort(key=lambda rs: int((meta(rs).get("annotations") or {})
                                    .get("deployment.kubernetes.io/revision", "0") or 0))
        for rs in old[:max(0, len(old) - limit)]:
            self._delete("apps", "replicasets", rs)

    def _deployment_status(self, d, rss, new_rs, want, max_unavailable, paused, created, now):
        st_of = [(rs.get("status") or {}) for rs in rss]
        new_name = meta(new_rs)["name"] if new_rs else None
        new_status = next((rs.get("status") or {} for rs in rss if meta(rs)["name"] == new_name), {})
        replicas = sum(s.get("replicas", 0) for s in st_of)
        ready = sum(s.get("readyReplicas", 0) for s in st_of)
        available = sum(s.get("availableReplicas", 0) for s in st_of)
        updated = new_status.get("replicas", 0) if new_rs else 0
        old = d.get("status") or {}
        conditions = old.get("conditions") or []
        if available >= want - max_unavailable:
            conditions = set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                                       "Deployment has minimum availability.", now, True)
        else:
            conditions = set_condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                                       "Deployment does not have minimum availability.", now, True)
        if paused:
            conditions = set_condition(conditions, "Progressing", "Unknown", "DeploymentPaused",
                                       "Deployment is paused", now, True)
        elif new_rs is not None:
            complete = (updated == want and replicas == want and available == want
                        and new_status.get("availableReplicas", 0) == want)
            if complete:
                conditions = set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                           f'ReplicaSet "{new_name}" has successfully progressed.',
                                           now, True)
            elif created:
                conditions = set_condition(conditions, "Progressing", "True", "NewReplicaSetCreated",
                                           f'Created new replica set "{new_name}"', now, True)
            else:
                conditions = set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                                           f'ReplicaSet "{new_name}" is progressing.', now, True)
        # the real controller lists Available before Progressing
        order = {"Available": 0, "Progressing": 1}
        conditions.sort(key=lambda c: order.get(c.get("type"), 2))
        status = omit_zero({"observedGeneration": meta(d).get("generation", 1),
                            "replicas": replicas, "updatedReplicas": updated,
                            "readyReplicas": ready, "availableReplicas": available,
                            "unavailableReplicas": max(0, want - available),
                            "collisionCount": old.get("collisionCount")})
        status["conditions"] = conditions
        self._write_status("apps", "deployments", d, status)

    # ------------------------------------------------------------------ ReplicaSet
    def sync_replicaset(self, ns, name):
        rs = self.store.get_or_none("apps", "replicasets", ns, name)
        if not rs or is_deleting(rs):
            return
        spec = rs.get("spec") or {}
        want = spec.get("replicas", 1)
        pods = self._claim(rs, "", "pods", name_ok=lambda p: not pod_is_terminal(p))
        active = [p for p in pods if pod_is_active(p)]
        if len(active) < want:
            for _ in range(want - len(active)):
                active.append(self.store.create("", "pods", ns, pod_from_template(
                    spec.get("template"), ns, rs, generate_name=f"{name}-")))
        elif len(active) > want:
            # delete the least useful first: unscheduled, not ready, youngest
            active.sort(key=lambda p: (bool((p.get("spec") or {}).get("nodeName")), pod_is_ready(p),
                                       [-ord(c) for c in meta(p).get("creationTimestamp", "")]))
            for p in active[:len(active) - want]:
                self._delete("", "pods", p)
            active = active[len(active) - want:]
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        ready = sum(1 for p in active if pod_is_ready(p))
        status = omit_zero({
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if all(
                (meta(p).get("labels") or {}).get(k) == v for k, v in template_labels.items())),
            "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": meta(rs).get("generation", 1)})
        status.setdefault("replicas", 0)  # the one field the real API always writes
        self._write_status("apps", "replicasets", rs, status)

    # ------------------------------------------------------------------ StatefulSet
    def sync_statefulset(self, ns, name):
        sts = self.store.get_or_none("apps", "statefulsets", ns, name)
        if not sts or is_deleting(sts):
            return
        spec = sts.get("spec") or {}
        want = spec.get("replicas", 1)
        template = spec.get("template") or {}
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        revision = f"{name}-{template_hash(template)}"
        name_re = re.compile(re.escape(name) + r"-(\d+)$")
        pods = self._claim(sts, "", "pods", name_ok=lambda p: bool(name_re.match(meta(p)["name"])))
        by_ordinal = {}
        for p in pods:
            mt = name_re.match(meta(p)["name"])
            if mt:
                by_ordinal[int(mt.group(1))] = p
        # scale up / replace, lowest ordinal first
        for ordinal in range(want):
            pod = by_ordinal.get(ordinal)
            if pod is None:
                self._ensure_claims(sts, ordinal)
                by_ordinal[ordinal] = self.store.create("", "pods", ns,
                                                        self._sts_pod(sts, ordinal, revision))
                if ordered:
                    break
                continue
            if pod_is_terminal(pod) and not is_deleting(pod):
                self._delete("", "pods", pod)  # recreated on the next pass, same name
                if ordered:
                    break
            elif ordered and (is_deleting(pod) or not pod_is_ready(pod)):
                break
        else:
            all_ready = all(pod_is_ready(by_ordinal[i]) and not is_deleting(by_ordinal[i])
                            for i in range(want) if i in by_ordinal)
            condemned = sorted((o for o in by_ordinal if o >= want), reverse=True)
            if condemned:
                if not ordered:
                    for o in condemned:
                        if not is_deleting(by_ordinal[o]):
                            self._delete("", "pods", by_ordinal[o])
                elif all_ready and not any(is_deleting(by_ordinal[o]) for o in condemned):
                    self._delete("", "pods", by_ordinal[condemned[0]])
            elif all_ready and (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") \
                    == "RollingUpdate":
                stale = [o for o in sorted(by_ordinal, reverse=True)
                         if (meta(by_ordinal[o]).get("labels") or {}).get("controller-revision-hash")
                         != revision]
                if stale:
                    self._delete("", "pods", by_ordinal[stale[0]])
        live = [p for p in by_ordinal.values() if not pod_is_terminal(p)]
        ready = sum(1 for p in live if pod_is_ready(p))
        updated = sum(1 for p in live if (meta(p).get("labels") or {}).get("controller-revision-hash")
                      == revision)
        old = sts.get("status") or {}
        current_rev = revision if updated == len(live) else (old.get("currentRevision") or revision)
        current = sum(1 for p in live if (meta(p).get("labels") or {}).get("controller-revision-hash")
                      == current_rev)
        status = omit_zero({"observedGeneration": meta(sts).get("generation", 1),
                            "replicas": len(live), "readyReplicas": ready,
                            "currentReplicas": current, "updatedReplicas": updated,
                            "availableReplicas": ready})
        status.update({"replicas": len(live), "currentRevision": current_rev,
                       "updateRevision": revision, "collisionCount": 0})
        self._write_status("apps", "statefulsets", sts, status)

    def _ensure_claims(self, sts, ordinal):
        spec = sts.get("spec") or {}
        ns, name = meta(sts)["namespace"], meta(sts)["name"]
        policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for tmpl in spec.get("volumeClaimTemplates") or []:
            tm = tmpl.get("metadata") or {}
            claim_name = f"{tm.get('name')}-{name}-{ordinal}"
            if self.store.get_or_none("", "persistentvolumeclaims", ns, claim_name):
                continue
            labels = {**(tm.get("labels") or {}),
                      **((spec.get("selector") or {}).get("matchLabels") or {})}
            md = {"name": claim_name, "namespace": ns, "labels": labels}
            if tm.get("annotations"):
                md["annotations"] = dict(tm["annotations"])
            if policy.get("whenDeleted") == "Delete":
                md["ownerReferences"] = [owner_reference(sts)]
            body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md,
                    "spec": copy.deepcopy(tmpl.get("spec") or {})}
            try:
                self.store.create("", "persistentvolumeclaims", ns, body)
            except Exception as e:
                if getattr(e, "code", None) != 409:
                    raise

    def _sts_pod(self, sts, ordinal, revision):
        spec = sts.get("spec") or {}
        ns, name = meta(sts)["namespace"], meta(sts)["name"]
        pod_name = f"{name}-{ordinal}"
        pod = pod_from_template(spec.get("template"), ns, sts, name=pod_name, labels={
            "controller-revision-hash": revision,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(ordinal)})
        pspec = pod["spec"]
        pspec["hostname"] = pod_name
        if spec.get("serviceName"):
            pspec["subdomain"] = spec["serviceName"]
        volumes = pspec.setdefault("volumes", [])
        for tmpl in spec.get("volumeClaimTemplates") or []:
            vname = (tmpl.get("metadata") or {}).get("name")
            vol = {"name": vname, "persistentVolumeClaim": {"claimName": f"{vname}-{name}-{ordinal}"}}
            for i, v in enumerate(volumes):
                if v.get("name") == vname:
                    volumes[i] = vol
                    break
            else:
                volumes.append(vol)
        return pod

    # ------------------------------------------------------------------ DaemonSet
    def sync_daemonset(self, ns, name):
        ds = self.store.get_or_none("apps", "daemonsets", ns, name)
        if not ds or is_deleting(ds):
            return
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        tspec = dict(template.get("spec") or {})
        tspec["tolerations"] = list(tspec.get("tolerations") or []) + DS_TOLERATIONS
        revision = template_hash(template)
        generation = str(meta(ds).get("generation", 1))
        nodes = self.store.list("", "nodes")["items"]
        eligible = {meta(n)["name"] for n in nodes if node_fits(tspec, n)}
        pods = [p for p in self._claim(ds, "", "pods") if not is_deleting(p)]
        by_node: dict[str, list] = {}
        for p in pods:
            by_node.setdefault(self._daemon_pod_node(p), []).append(p)
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        for node_name in sorted(eligible):
            on_node = [p for p in by_node.get(node_name, []) if not pod_is_terminal(p)]
            stale = [p for p in on_node
                     if (meta(p).get("labels") or {}).get("controller-revision-hash") != revision]
            if rolling and stale:
                for p in stale:
                    self._delete("", "pods", p)
                on_node = [p for p in on_node if p not in stale]
            for p in by_node.get(node_name, []):
                if pod_is_terminal(p):
                    self._delete("", "pods", p)
            if not on_node:
                self.store.create("", "pods", ns, self._daemon_pod(ds, node_name, revision, generation))
            for extra in on_node[1:]:
                self._delete("", "pods", extra)
        for node_name, node_pods in by_node.items():
            if node_name not in eligible:
                for p in node_pods:
                    self._delete("", "pods", p)
        pods = [p for p in self._claim(ds, "", "pods") if not is_deleting(p) and not pod_is_terminal(p)]
        scheduled = {self._daemon_pod_node(p) for p in pods}
        ready_pods = [p for p in pods if pod_is_ready(p)]
        status = omit_zero({
            "currentNumberScheduled": len(scheduled & eligible),
            "numberMisscheduled": len(scheduled - eligible),
            "desiredNumberScheduled": len(eligible),
            "numberReady": len(ready_pods), "numberAvailable": len(ready_pods),
            "updatedNumberScheduled": sum(1 for p in pods if (meta(p).get("labels") or {})
                                          .get("controller-revision-hash") == revision),
            "numberUnavailable": max(0, len(eligible) - len(ready_pods)),
            "observedGeneration": meta(ds).get("generation", 1)})
        for k in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
                  "numberReady"):
            status.setdefault(k, 0)  # not omitempty in the real API
        self._write_status("apps", "daemonsets", ds, status)

    @staticmethod
    def _daemon_pod_node(pod):
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            return spec["nodeName"]
        terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
                  .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
                 .get("nodeSelectorTerms") or [])
        for t in terms:
            for f in t.get("matchFields") or []:
                if f.get("key") == "metadata.name" and f.get("values"):
                    return f["values"][0]
        return ""

    def _daemon_pod(self, ds, node_name, revision, generation):
        ns, name = meta(ds)["namespace"], meta(ds)["name"]
        pod = pod_from_template((ds.get("spec") or {}).get("template"), ns, ds,
                                generate_name=f"{name}-",
                                labels={"controller-revision-hash": revision,
                                        "pod-template-generation": generation})
        spec = pod["spec"]
        spec["tolerations"] = list(spec.get("tolerations") or []) + DS_TOLERATIONS
        # the real controller pins a daemon pod to its node through node affinity
        affinity = spec.setdefault("affinity", {})
        affinity["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}
        return pod

    # ------------------------------------------------------------------ Job
    def sync_job(self, ns, name):
        job = self.store.get_or_none("batch", "jobs", ns, name)
        if not job or is_deleting(job):
            return
        spec = job.get("spec") or {}
        old = job.get("status") or {}
        conds = old.get("conditions") or []
        finished = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                       for c in conds)
        pods = self._claim(job, "", "pods")
        active = [p for p in pods if pod_is_active(p)]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        completions = spec.get("completions")
        parallelism = spec.get("parallelism", 1)
        now = self.now()
        status = dict(old)
        if finished:
            for p in active:
                self._delete("", "pods", p)
            return
        if not status.get("startTime") and not spec.get("suspend"):
            status["startTime"] = now
        target = completions if completions is not None else 1
        if succeeded >= target:
            for p in active:
                self._delete("", "pods", p)
            active = []
            msg = "Reached expected number of succeeded pods"
            conds = set_condition(conds, "SuccessCriteriaMet", "True", "CompletionsReached", msg, now)
            conds = set_condition(conds, "Complete", "True", "CompletionsReached", msg, now)
            for c in conds:
                c.setdefault("lastProbeTime", now)
            status["completionTime"] = now
        elif failed > spec.get("backoffLimit", 6):
            for p in active:
                self._delete("", "pods", p)
            active = []
            msg = "Job has reached the specified backoff limit"
            conds = set_condition(conds, "FailureTarget", "True", "BackoffLimitExceeded", msg, now)
            conds = set_condition(conds, "Failed", "True", "BackoffLimitExceeded", msg, now)
            for c in conds:
                c.setdefault("lastProbeTime", now)
        elif not spec.get("suspend"):
            room = min(parallelism, target - succeeded) - len(active)
            uid = meta(job)["uid"]
            for _ in range(max(0, room)):
                active.append(self.store.create("", "pods", ns, pod_from_template(
                    spec.get("template"), ns, job, generate_name=f"{name}-", labels={
                        "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                        "batch.kubernetes.io/job-name": name, "job-name": name})))
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed,
                       "ready": sum(1 for p in active if pod_is_ready(p)), "terminating": 0})
        status = omit_zero(status)
        status["ready"] = status.get("ready", 0)
        status["terminating"] = 0
        if conds:
            status["conditions"] = conds
        status.setdefault("uncountedTerminatedPods", {})
        self._write_status("batch", "jobs", job, status)

    # ------------------------------------------------------------------ scheduler + kubelet
    def sync_pod(self, ns, name):
        key = ("Pod", ns, name)
        pod = self.store.get_or_none("", "pods", ns, name)
        if not pod:
            return
        if is_deleting(pod):
            self._stop_pod(pod)
            return
        if pod_is_terminal(pod):
            return
        spec = pod.get("spec") or {}
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if not spec.get("nodeName"):
            self._schedule(pod)
            return
        self._unschedulable.discard(key)
        if key in self._kubelet_timers:
            return
        if phase == "Pending":
            self._kubelet_timers[key] = timers().call_later(
                random.uniform(*POD_START_DELAY), self._kubelet_start, ns, name, meta(pod)["uid"])
        elif phase == "Running" and (controller_ref(pod) or {}).get("kind") == "Job":
            self._kubelet_timers[key] = timers().call_later(
                random.uniform(*JOB_RUN_DELAY), self._kubelet_finish, ns, name, meta(pod)["uid"])

    def _stop_pod(self, pod):
        """A pod being deleted: containers stop, then the kubelet confirms (grace period 0)."""
        m = meta(pod)
        if m.get("finalizers"):
            return
        key = ("Pod", m["namespace"], m["name"])
        t = self._kubelet_timers.pop(key, None)
        if t:
            t.cancel()
        self._delete("", "pods", pod, grace_period_seconds=0)

    def _schedule(self, pod):
        m = meta(pod)
        ns, name = m["namespace"], m["name"]
        key = ("Pod", ns, name)
        spec = pod.get("spec") or {}
        nodes = self.store.list("", "nodes")["items"]
        total = len(nodes)
        tail = f" preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
        for claim in pod_claims(pod):
            pvc = self.store.get_or_none("", "persistentvolumeclaims", ns, claim)
            if pvc is None:
                return self._unschedulable_status(pod, f'0/{total} nodes are available: '
                                                  f'persistentvolumeclaim "{claim}" not found.{tail}')
            if is_deleting(pvc):
                return self._unschedulable_status(pod, f'0/{total} nodes are available: '
                                                  f'persistentvolumeclaim "{claim}" is being deleted.{tail}')
            if (pvc.get("status") or {}).get("phase") != "Bound":
                return self._unschedulable_status(
                    pod, f"0/{total} nodes are available: pod has unbound immediate "
                         f"PersistentVolumeClaims.{tail}")
        fitting = [n for n in nodes if node_is_ready(n)
                   and not (n.get("spec") or {}).get("unschedulable") and node_fits(spec, n)]
        if not fitting:
            self._unschedulable.add(key)
            return self._unschedulable_status(
                pod, f"0/{total} nodes are available: {total} node(s) didn't match Pod's node "
                     f"affinity/selector.{tail}")
        load = {meta(n)["name"]: len(self._node_pods.get(meta(n)["name"], ())) for n in fitting}
        node_name = min(sorted(load), key=lambda n: load[n])
        self._node_pods.setdefault(node_name, set()).add(key)
        self._unschedulable.discard(key)
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name, "namespace": ns, "uid": m.get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        self.store.create("", "pods", ns, binding, subresource="binding")
        pod = self.store.get("", "pods", ns, name)
        status = copy.deepcopy(pod.get("status") or {})
        status["phase"] = "Pending"
        status["conditions"] = set_condition(status.get("conditions"), "PodScheduled", "True",
                                             now=self.now())
        for c in status["conditions"]:
            if c["type"] == "PodScheduled":
                c.pop("reason", None)
                c.pop("message", None)
                c.setdefault("lastProbeTime", None)
        status["qosClass"] = qos_class(spec)
        self._write_status("", "pods", pod, status)

    def _unschedulable_status(self, pod, message):
        status = copy.deepcopy(pod.get("status") or {})
        status["phase"] = "Pending"
        status["conditions"] = set_condition(status.get("conditions"), "PodScheduled", "False",
                                             "Unschedulable", message, self.now())
        for c in status["conditions"]:
            c.setdefault("lastProbeTime", None)
        status["qosClass"] = qos_class(pod.get("spec") or {})
        self._write_status("", "pods", pod, status)

    def _node_addresses(self, node_name):
        nodes = sorted(meta(n)["name"] for n in self.store.list("", "nodes")["items"])
        index = nodes.index(node_name) if node_name in nodes else len(nodes)
        node = self.store.get_or_none("", "nodes", None, node_name) or {}
        host_ip = next((a.get("address") for a in (node.get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"), None) or f"172.18.0.{index + 2}"
        cidr = (node.get("spec") or {}).get("podCIDR") or f"10.244.{index}.0/24"
        return host_ip, ipaddress.ip_network(cidr, strict=False)

    def _allocate_pod_ip(self, node_name, network, key) -> str:
        used = self._node_ips.setdefault(node_name, {})
        hosts = network.num_addresses - 2
        start = self._next_ip.get(node_name, 1)
        for i in range(hosts):
            offset = (start + i - 1) % hosts + 1   # host-local IPAM: next free after the last one
            if offset == 1:  # .1 is the node's bridge/gateway
                continue
            ip = str(network.network_address + offset)
            if ip not in used:
                self._next_ip[node_name] = offset + 1
                used[ip] = key
                return ip
        raise RuntimeError(f"pod CIDR {network} of node {node_name} is exhausted")

    def _kubelet_start(self, ns, name, uid):
        key = ("Pod", ns, name)
        self._kubelet_timers.pop(key, None)
        pod = self.store.get_or_none("", "pods", ns, name)
        if not pod or meta(pod).get("uid") != uid or is_deleting(pod) or pod_is_terminal(pod):
            return
        spec = pod.get("spec") or {}
        node_name = spec.get("nodeName")
        if not node_name or not self.store.get_or_none("", "nodes", None, node_name):
            return  # bound to a node that does not exist: stays Pending, as on a real cluster
        now = self.now()
        host_ip, network = self._node_addresses(node_name)
        status = copy.deepcopy(pod.get("status") or {})
        pod_ip = host_ip if spec.get("hostNetwork") else (status.get("podIP")
                                                           or self._allocate_pod_ip(node_name, network, key))
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        blocking = self._blocking_init_container(pod)
        if blocking:
            # an init container that has not exited yet: the pod stays in Init, re-checked the
            # way the container itself polls (only while such a pod exists)
            self._init_status(pod, status, blocking, host_ip, pod_ip, now, order)
            self._kubelet_timers[key] = timers().call_later(
                INIT_POLL_SECONDS, self._kubelet_start, ns, name, uid)
            return
        conds = status.get("conditions") or []
        for ctype in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                      "PodScheduled"):
            conds = set_condition(conds, ctype, "True", now=now)
        conds.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else 99)
        for c in conds:
            c.setdefault("lastProbeTime", None)
            if c.get("status") == "True":
                c.pop("reason", None)
                c.pop("message", None)
        status.update({
            "phase": "Running", "conditions": conds, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": status.get("startTime") or now,
            "qosClass": qos_class(spec),
            "containerStatuses": [self._container_status(c, now) for c in spec.get("containers") or []],
        })
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [
                self._container_status(c, now, terminated=True) for c in spec["initContainers"]]
        self._write_status("", "pods", pod, status)

    def _blocking_init_container(self, pod) -> str | None:
        """Name of an init container that would still be running, else None.

        Init containers with a registered gate (Velero's `restore-wait`, velero-restore-helper,
        exits only when every restored volume of the pod is done) run until the gate says done;
        the others finish at once."""
        for c in (pod.get("spec") or {}).get("initContainers") or []:
            done = INIT_CONTAINER_GATES.get(c.get("name"))
            if done is not None:
                try:
                    return None if done(self.store, pod) else c["name"]
                except Exception:  # its types not served (CRDs removed): nothing to wait for
                    log.debug("%s check failed", c.get("name"), exc_info=True)
                    return None
        return None

    def _init_status(self, pod, status, blocking, host_ip, pod_ip, now, order):
        spec = pod.get("spec") or {}
        inits = spec.get("initContainers") or []
        conds = status.get("conditions") or []
        pending = [c.get("name") for c in spec.get("containers") or []]
        conds = set_condition(conds, "PodReadyToStartContainers", "True", now=now)
        conds = set_condition(conds, "Initialized", "False", "ContainersNotInitialized",
                              f"containers with incomplete status: [{blocking}]", now)
        conds = set_condition(conds, "Ready", "False", "ContainersNotReady",
                              f"containers with unready status: [{' '.join(pending)}]", now)
        conds = set_condition(conds, "ContainersReady", "False", "ContainersNotReady",
                              f"containers with unready status: [{' '.join(pending)}]", now)
        conds = set_condition(conds, "PodScheduled", "True", now=now)
        conds.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else 99)
        for c in conds:
            c.setdefault("lastProbeTime", None)
        init_statuses = []
        reached = False
        for c in inits:
            if c.get("name") == blocking:
                reached = True
                cs = self._container_status(c, now)
                cs["ready"] = False
                init_statuses.append(cs)
            elif not reached:
                init_statuses.append(self._container_status(c, now, terminated=True))
            else:
                init_statuses.append(self._waiting_status(c, "PodInitializing"))
        status.update({
            "phase": "Pending", "conditions": conds, "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
            "startTime": status.get("startTime") or now, "qosClass": qos_class(spec),
            "initContainerStatuses": init_statuses,
            "containerStatuses": [self._waiting_status(c, "PodInitializing")
                                  for c in spec.get("containers") or []]})
        old = pod.get("status") or {}
        # keep the running init container's identity stable across re-checks
        if [c.get("name") for c in old.get("initContainerStatuses") or []] == \
                [c.get("name") for c in init_statuses] and old.get("phase") == "Pending" and \
                (next((c for c in old.get("conditions") or [] if c.get("type") == "Initialized"),
                      {}).get("status") == "False"):
            return
        self._write_status("", "pods", pod, status)

    @staticmethod
    def _waiting_status(container, reason):
        return {"name": container.get("name"), "image": normalize_image(container.get("image", "")),
                "imageID": "", "ready": False, "started": False, "restartCount": 0,
                "lastState": {}, "state": {"waiting": {"reason": reason}}}

    def _kubelet_finish(self, ns, name, uid):
        """A Job's pod runs to completion (exit code 0)."""
        self._kubelet_timers.pop(("Pod", ns, name), None)
        pod = self.store.get_or_none("", "pods", ns, name)
        if not pod or meta(pod).get("uid") != uid or is_deleting(pod) or pod_is_terminal(pod):
            return
        now = self.now()
        status = copy.deepcopy(pod.get("status") or {})
        conds = status.get("conditions") or []
        conds = set_condition(conds, "PodReadyToStartContainers", "False", now=now)
        conds = set_condition(conds, "Ready", "False", "PodCompleted", now=now)
        conds = set_condition(conds, "ContainersReady", "False", "PodCompleted", now=now)
        status["conditions"] = conds
        status["phase"] = "Succeeded"
        status["containerStatuses"] = [
            self._container_status(c, now, terminated=True,
                                   started_at=self._started_at(status, c.get("name")) or now)
            for c in (pod.get("spec") or {}).get("containers") or []]
        for cs in status["containerStatuses"]:
            cs["ready"] = False
        self._write_status("", "pods", pod, status)

    @staticmethod
    def _started_at(status, cname):
        for cs in status.get("containerStatuses") or []:
            if cs.get("name") == cname:
                return ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        return None

    @staticmethod
    def _container_status(container, now, terminated=False, started_at=None):
        image = container.get("image", "")
        cid = hashlib.sha256(f"{container.get('name')}{now}{random.random()}".encode()).hexdigest()
        cs = {"name": container.get("name"), "image": normalize_image(image),
              "imageID": image_id(image), "containerID": f"containerd://{cid}",
              "restartCount": 0, "lastState": {}}
        if terminated:
            cs.update({"ready": True, "started": False, "state": {"terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": started_at or now,
                "finishedAt": now, "containerID": f"containerd://{cid}"}}})
        else:
            cs.update({"ready": True, "started": True, "state": {"running": {"startedAt": now}}})
        return cs




class CronJobController(Controller):
    """CronJobs on the lab clock: `fleetdr-lab clock advance` makes schedules fire without sleeping.

    Like the real controller it creates at most one Job per pass, for the most recent missed
    schedule (`<cronjob>-<minutes since epoch>`), honours suspend, concurrencyPolicy and
    startingDeadlineSeconds, and trims finished Jobs to the history limits. One sleeper per
    cluster waits for the earliest next schedule (woken early by clock advances); none when a
    cluster has no CronJobs.
    """

    name = "cronjob"
    watches = [("batch", "cronjobs"), ("batch", "jobs")]

    def __init__(self, cluster):
        super().__init__(cluster)
        self._next: dict[tuple, float] = {}
        self._changed: asyncio.Event | None = None

    async def run(self):
        self._changed = asyncio.Event()
        sleeper = asyncio.create_task(self._sleeper(), name=f"{self.name}:sleeper")
        try:
            await super().run()
        finally:
            sleeper.cancel()

    def keys_for(self, etype, obj):
        m = meta(obj)
        if obj.get("kind") == "CronJob":
            return [(m.get("namespace"), m.get("name"))]
        ref = controller_ref(obj)
        if ref and ref.get("kind") == "CronJob":
            return [(m.get("namespace"), ref.get("name"))]
        return []

    def _clock_time(self) -> float:
        clock = self.store.clock
        return clock.time() if hasattr(clock, "time") else clock.now().timestamp()

    async def _sleeper(self):
        while True:
            self._changed.clear()
            if not self._next:
                await self._changed.wait()
                continue
            due_at = min(self._next.values())
            clock = self.store.clock
            if hasattr(clock, "sleep_until"):
                sleep = asyncio.ensure_future(clock.sleep_until(due_at))
            else:
                sleep = asyncio.ensure_future(asyncio.sleep(max(0.0, due_at - self._clock_time())))
            changed = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait({sleep, changed}, return_when=asyncio.FIRST_COMPLETED)
            sleep.cancel()
            changed.cancel()
            now = self._clock_time()
            for key, t in list(self._next.items()):
                if t <= now:
                    self._next.pop(key, None)
                    self.enqueue(key)

    def _set_next(self, key, t: float | None):
        if t is None:
            self._next.pop(key, None)
        else:
            self._next[key] = t
        if self._changed is not None:
            self._changed.set()

    def reconcile(self, key):
        from croniter import croniter
        ns, name = key
        cj = self.store.get_or_none("batch", "cronjobs", ns, name)
        if cj is None or is_deleting(cj):
            self._set_next(key, None)
            return
        spec = cj.get("spec") or {}
        old_status = cj.get("status") or {}
        status = dict(old_status)
        jobs = [j for j in self.store.list("batch", "jobs", namespace=ns)["items"] if owned_by(j, cj)]

        def finished(job, ctype):
            return any(c.get("type") == ctype and c.get("status") == "True"
                       for c in (job.get("status") or {}).get("conditions") or [])
        active = [j for j in jobs if not finished(j, "Complete") and not finished(j, "Failed")
                  and not is_deleting(j)]
        succeeded = sorted((j for j in jobs if finished(j, "Complete")),
                           key=lambda j: (j.get("status") or {}).get("completionTime") or "")
        failed = sorted((j for j in jobs if finished(j, "Failed")),
                        key=lambda j: meta(j).get("creationTimestamp") or "")
        for group, limit in ((succeeded, spec.get("successfulJobsHistoryLimit", 3)),
                             (failed, spec.get("failedJobsHistoryLimit", 1))):
            for j in group[:max(0, len(group) - limit)]:
                self._delete_job(j)
        if succeeded:
            status["lastSuccessfulTime"] = (succeeded[-1].get("status") or {}).get("completionTime")

        tz = None
        if spec.get("timeZone"):
            import zoneinfo
            try:
                tz = zoneinfo.ZoneInfo(spec["timeZone"])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                tz = None
        now = self._clock_time()
        last_text = old_status.get("lastScheduleTime") or meta(cj).get("creationTimestamp")
        last = dt.datetime.strptime(last_text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.timezone.utc).timestamp() if last_text else now
        schedule = spec.get("schedule", "")

        def at(t):
            return dt.datetime.fromtimestamp(t, tz or dt.timezone.utc)
        try:
            it = croniter(schedule, at(last))
            nxt = it.get_next(float)
        except (ValueError, KeyError):
            self._set_next(key, None)
            return  # an invalid schedule never fires (the API would have refused it)
        due = None
        if nxt <= now:
            due = croniter(schedule, at(now)).get_prev(float)  # the most recent missed time
            if due <= last:
                due = None
        if due is not None and not spec.get("suspend"):
            deadline = spec.get("startingDeadlineSeconds")
            too_late = deadline is not None and now - due > deadline
            policy = spec.get("concurrencyPolicy", "Allow")
            if not too_late and not (policy == "Forbid" and active):
                if policy == "Replace":
                    for j in active:
                        self._delete_job(j)
                    active = []
                job = self._create_job(cj, due)
                if job is not None:
                    active.append(job)
                status["lastScheduleTime"] = base_rfc3339(due)
            elif too_late:
                status["lastScheduleTime"] = base_rfc3339(due)  # missed for good
        if active:
            status["active"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": meta(j)["name"],
                                 "namespace": ns, "uid": meta(j)["uid"],
                                 "resourceVersion": meta(j).get("resourceVersion")}
                                for j in sorted(active, key=lambda j: meta(j)["name"])]
        else:
            status.pop("active", None)
        if status != old_status:
            body = copy.deepcopy(cj)
            body["status"] = status
            self.store.update("batch", "cronjobs", ns, name, body, subresource="status")
        if spec.get("suspend"):
            self._set_next(key, None)
        else:
            ref = float(max(now, last))
            self._set_next(key, croniter(schedule, at(ref)).get_next(float))

    def _create_job(self, cj, due: float):
        ns, name = meta(cj)["namespace"], meta(cj)["name"]
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        md = {"name": f"{name}-{int(due // 60)}", "namespace": ns,
              "labels": dict(tmeta.get("labels") or {}),
              "annotations": {**(tmeta.get("annotations") or {}),
                              "batch.kubernetes.io/cronjob-scheduled-timestamp":
                                  base_rfc3339(due)},
              "ownerReferences": [owner_reference(cj)]}
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": md,
                "spec": copy.deepcopy(template.get("spec") or {})}
        try:
            return self.store.create("batch", "jobs", ns, body)
        except Exception as e:
            if getattr(e, "code", None) == 409:
                return None  # created on an earlier pass
            raise

    def _delete_job(self, job):
        m = meta(job)
        try:
            self.store.delete("batch", "jobs", m["namespace"], m["name"],
                              propagation_policy="Background", preconditions={"uid": m.get("uid")})
        except Exception as e:
            if getattr(e, "code", None) not in (404, 409):
                raise


def base_rfc3339(t: float) -> str:
    return rfc3339(dt.datetime.fromtimestamp(t, dt.timezone.utc))
