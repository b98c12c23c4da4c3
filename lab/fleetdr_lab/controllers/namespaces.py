"""Namespace lifecycle: a deleted namespace goes Terminating, its contents (every namespaced type,
custom resources included) are deleted, and once nothing is left its `kubernetes` finalizer is
removed through the finalize subresource, which lets the store remove it."""
from __future__ import annotations

import copy

from .base import Controller, is_deleting, meta

FINALIZER = "kubernetes"
RETRY_SECONDS = 0.3


class NamespaceController(Controller):
    name = "namespace"
    watches = [("", "namespaces"), (None, None)]

    def __init__(self, cluster):
        super().__init__(cluster)
        self._terminating: set[str] = set()

    def keys_for(self, etype, obj):
        m = meta(obj)
        if obj.get("kind") == "Namespace":
            if etype != "DELETED" and is_deleting(obj):
                self._terminating.add(m["name"])
                return [m["name"]]
            self._terminating.discard(m.get("name"))
            return []
        # something left in a terminating namespace went away (or changed): look again
        ns = m.get("namespace")
        if ns in self._terminating:
            return [ns]
        return []

    def reconcile(self, name):
        ns = self.store.get_or_none("", "namespaces", None, name)
        if ns is None or not is_deleting(ns):
            self._terminating.discard(name)
            return
        self._terminating.add(name)
        remaining, with_finalizers = self._delete_contents(name)
        ns = self.store.get("", "namespaces", None, name)
        self._set_status(ns, remaining, with_finalizers)
        if remaining:
            self.enqueue_after(RETRY_SECONDS, name)
            return
        spec_finalizers = (ns.get("spec") or {}).get("finalizers") or []
        if FINALIZER in spec_finalizers:
            body = copy.deepcopy(ns)
            body["spec"]["finalizers"] = [f for f in spec_finalizers if f != FINALIZER]
            self.store.update("", "namespaces", None, name, body, subresource="finalize")

    def _delete_contents(self, namespace):
        """Delete everything namespaced; return ({resource: count} left, {finalizer: count})."""
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        for rt in list(self.store.registry.all()):
            if not rt.namespaced or "list" not in rt.verbs:
                continue
            try:
                items = self.store.list(rt.group, rt.plural, namespace=namespace)["items"]
            except Exception:
                continue  # type vanished meanwhile (CRD deleted)
            if not items:
                continue
            for obj in items:
                m = meta(obj)
                if not is_deleting(obj):
                    try:
                        self.store.delete(rt.group, rt.plural, namespace, m["name"],
                                          propagation_policy="Background")
                    except Exception as e:
                        if getattr(e, "code", None) not in (404, 409):
                            raise
            left = self.store.list(rt.group, rt.plural, namespace=namespace)["items"]
            if left:
                remaining[rt.group_resource] = len(left)
                for obj in left:
                    for f in meta(obj).get("finalizers") or []:
                        finalizers[f] = finalizers.get(f, 0) + 1
        return remaining, finalizers

    def _set_status(self, ns, remaining, with_finalizers):
        now = self.now()
        old = ns.get("status") or {}
        old_conds = {c.get("type"): c for c in old.get("conditions") or []}

        def cond(ctype, status, reason, message):
            prev = old_conds.get(ctype)
            if prev and prev.get("status") == status and prev.get("reason") == reason \
                    and prev.get("message") == message:
                return prev
            return {"type": ctype, "status": status, "lastTransitionTime": now,
                    "reason": reason, "message": message}

        conditions = [
            cond("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered",
                 "All resources successfully discovered"),
            cond("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions",
                 "All legacy kube types successfully parsed"),
            cond("NamespaceDeletionContentFailure", "False", "ContentDeleted",
                 "All content successfully deleted, may be waiting on finalization"),
        ]
        if remaining:
            conditions.append(cond("NamespaceContentRemaining", "True", "SomeResourcesRemain",
                                   "Some resources are remaining: " + ", ".join(
                                       f"{r} has {n} resource instances"
                                       for r, n in sorted(remaining.items()))))
        else:
            conditions.append(cond("NamespaceContentRemaining", "False", "ContentRemoved",
                                   "All content successfully removed"))
        if with_finalizers:
            conditions.append(cond("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain",
                                   "Some content in the namespace has finalizers remaining: " +
                                   ", ".join(f"{f} in {n} resource instances"
                                             for f, n in sorted(with_finalizers.items()))))
        else:
            conditions.append(cond("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers",
                                   "All content-preserving finalizers finished"))
        status = {"phase": "Terminating", "conditions": conditions}
        if old == status:
            return
        body = copy.deepcopy(ns)
        body["status"] = status
        self.store.update("", "namespaces", None, meta(ns)["name"], body, subresource="status")
