"""Namespace lifecycle: a deleted namespace goes Terminating, its contents (every namespaced type,
custom resources included) are deleted, and once nothing is left its `kubernetes` finalizer is
removed through the finalize subresource, which lets the store remove it."""
from __future__ import annotations

import copy

from .base import Controller, is_deleting, meta

FINALIZER = "kubernetes"
RESWEEP_SECONDS = 1.0   # safety net while content remains (e.g. an event missed on a relist)


class NamespaceController(Controller):
    """Sweeps a terminating namespace once, then follows what is left of it through the watch
    stream (an object leaving = one set removal), so emptying a namespace of N objects costs
    O(N), and the finalize step runs the moment the last one is gone."""

    name = "namespace"
    watches = [("", "namespaces"), (None, None)]

    def __init__(self, cluster):
        super().__init__(cluster)
        # terminating namespace -> {(group, plural, name): finalizers} of what is still there
        self._left: dict[str, dict[tuple, tuple]] = {}
        self._terminating: set[str] = set()

    def keys_for(self, etype, obj):
        m = meta(obj)
        if obj.get("kind") == "Namespace":
            if etype != "DELETED" and is_deleting(obj):
                self._terminating.add(m["name"])
                # swept already: what is left is followed below (our own status writes land here)
                return [] if m["name"] in self._left else [m["name"]]
            self._terminating.discard(m.get("name"))
            self._left.pop(m.get("name"), None)
            return []
        ns = m.get("namespace")
        left = self._left.get(ns)
        if left is None:
            return []
        rt = self.store.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            return []
        key = (rt.group, rt.plural, m.get("name"))
        if etype == "DELETED":
            if left.pop(key, None) is not None and not left:
                return [ns]  # the last one went: finalize now
        elif key in left:
            left[key] = tuple(m.get("finalizers") or ())
        return []

    def reconcile(self, key):
        resweep = isinstance(key, tuple)
        name = key[1] if resweep else key
        ns = self.store.get_or_none("", "namespaces", None, name)
        if ns is None or not is_deleting(ns):
            self._terminating.discard(name)
            self._left.pop(name, None)
            return
        self._terminating.add(name)
        left = self._left.get(name)
        if left is None or (resweep and left):
            # first pass, or the periodic safety net: delete what is there, note what stays
            left = self._left[name] = self._delete_contents(name)
        ns = self.store.get("", "namespaces", None, name)
        remaining: dict[str, int] = {}
        with_finalizers: dict[str, int] = {}
        for (group, plural, _), finalizers in left.items():
            rt = self.store.registry.get(group, plural)
            gr = rt.group_resource if rt else plural
            remaining[gr] = remaining.get(gr, 0) + 1
            for f in finalizers:
                with_finalizers[f] = with_finalizers.get(f, 0) + 1
        ns = self._set_status(ns, remaining, with_finalizers)
        if left:
            self.enqueue_soon(("resweep", name), RESWEEP_SECONDS)
            return
        spec_finalizers = (ns.get("spec") or {}).get("finalizers") or []
        if FINALIZER in spec_finalizers:
            body = copy.deepcopy(ns)
            body["spec"]["finalizers"] = [f for f in spec_finalizers if f != FINALIZER]
            self.store.update("", "namespaces", None, name, body, subresource="finalize")

    def _delete_contents(self, namespace) -> dict[tuple, tuple]:
        """Delete everything namespaced; return what is still there: {(g, p, name): finalizers}."""
        left: dict[tuple, tuple] = {}
        for rt in list(self.store.registry.all()):
            if not rt.namespaced or "list" not in rt.verbs:
                continue
            try:
                items = self.store.list(rt.group, rt.plural, namespace=namespace)["items"]
            except Exception:
                continue  # type vanished meanwhile (CRD deleted)
            for obj in items:
                m = meta(obj)
                if not is_deleting(obj):
                    try:
                        obj, gone = self.store.delete_with_status(
                            rt.group, rt.plural, namespace, m["name"],
                            propagation_policy="Background")
                    except Exception as e:
                        if getattr(e, "code", None) == 404:
                            continue
                        if getattr(e, "code", None) != 409:
                            raise
                        gone = False
                    if gone:
                        continue
                left[(rt.group, rt.plural, m["name"])] = tuple(meta(obj).get("finalizers") or ())
        return left

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
            return ns
        body = copy.deepcopy(ns)
        body["status"] = status
        return self.store.update("", "namespaces", None, meta(ns)["name"], body,
                                 subresource="status")
