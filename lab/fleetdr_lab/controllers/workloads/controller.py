"""Workload controllers of an emulated cluster: Deployment, ReplicaSet, StatefulSet, DaemonSet, Job,
plus the scheduler and a kubelet that "runs" pods.

One controller object serves all workload kinds of a cluster: it watches each kind once and keeps a
single de-duplicating work queue keyed by (kind, namespace, name), so a pod event costs one queue
entry per interested owner instead of one per controller.

Each kind's rules live in its own reconciler (deployments, statefulsets, daemonsets, jobs, pods);
this module only turns watch events into keys and dispatches them."""
from __future__ import annotations

from ..base import Controller, controller_ref, meta, selector_matches
from .podspec import OWNER_KINDS, RESOURCE, node_is_ready, pod_claims
from .daemonsets import DaemonSetReconciler
from .deployments import DeploymentReconciler, ReplicaSetReconciler
from .jobs import JobReconciler
from .pods import PodReconciler
from .statefulsets import StatefulSetReconciler


class WorkloadController(Controller):
    """Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, scheduling and the kubelet."""

    name = "workloads"
    watches = [("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
               ("apps", "daemonsets"), ("batch", "jobs"), ("", "pods"), ("", "nodes"),
               ("", "persistentvolumeclaims")]

    def __init__(self, cluster):
        super().__init__(cluster)
        self._node_signature: dict[str, tuple] = {}
        self.no_execute: dict[str, list] = {}  # node -> its NoExecute taints, from the node stream (no read per pod)
        self.pods = PodReconciler(self)
        self.reconcilers = {"Deployment": DeploymentReconciler(self), "ReplicaSet": ReplicaSetReconciler(self),
                            "StatefulSet": StatefulSetReconciler(self), "DaemonSet": DaemonSetReconciler(self),
                            "Job": JobReconciler(self), "Pod": self.pods}

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
            self.pods.track(etype, obj)
            keys = [] if etype == "DELETED" else [("Pod", ns, name)]
            if etype == "DELETED":
                self.pods.forget(("Pod", ns, name))
                if (obj.get("spec") or {}).get("nodeName"):
                    # kube-scheduler retries pods it could not place when an assigned pod goes
                    # (its anti-affinity or its room may have been what kept them out)
                    keys += self.pods.waiting_for_a_node()
            return keys + self._owner_keys(obj, *OWNER_KINDS)
        if kind == "Node":
            return self._node_changed(etype, obj)
        if kind == "PersistentVolumeClaim":
            return [("Pod", ns, meta(p)["name"])
                    for p in self.store.list("", "pods", namespace=ns)["items"]
                    if not (p.get("spec") or {}).get("nodeName") and name in pod_claims(p)]
        return []

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
            self.no_execute.pop(name, None)
            sig = None
        else:
            spec = node.get("spec") or {}
            self.no_execute[name] = [t for t in spec.get("taints") or [] if t.get("effect") == "NoExecute"]
            sig = (tuple(sorted((meta(node).get("labels") or {}).items())),
                   repr(spec.get("taints")), bool(spec.get("unschedulable")), node_is_ready(node))
            if self._node_signature.get(name) == sig:
                return []  # heartbeat-only change: nothing a workload cares about
            self._node_signature[name] = sig
        keys = [("DaemonSet", meta(ds)["namespace"], meta(ds)["name"])
                for ds in self.store.list("apps", "daemonsets")["items"]]
        keys += self.pods.waiting_for_a_node()
        keys += self.pods.pods_on(name)  # NoExecute taints evict what runs there
        return keys

    def reconcile(self, key):
        kind, ns, name = key
        return self.reconcilers[kind].sync(ns, name)
