"""Garbage collector: ownerReferences across every resource type, custom resources included.

Like the real one it keeps a graph (owner uid -> dependents) fed by a watch of all types, and
decides with the Store's current state:
- a dependent whose owners are all gone (by uid) is deleted in the background; dangling
  references next to a live owner are removed;
- an owner deleted with propagationPolicy Foreground (finalizer foregroundDeletion) has its
  dependents deleted first (in the foreground as well), and the finalizer is removed once no
  blocking dependent (blockOwnerDeletion) remains;
- an owner deleted with propagationPolicy Orphan (finalizer orphan) has its references removed
  from the dependents, then the finalizer is removed.
"""
from __future__ import annotations

from .base import Controller, is_deleting, meta

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


class GarbageCollector(Controller):
    name = "garbage-collector"
    watches = [(None, None)]   # every type, CRDs included

    def __init__(self, cluster):
        super().__init__(cluster)
        # owner uid -> {dependent uid: (group, plural, namespace, name)}
        self._dependents: dict[str, dict[str, tuple]] = {}
        # uid -> (owner uids) as last seen, to unlink on change
        self._owners_of: dict[str, tuple] = {}
        self._where: dict[str, tuple] = {}

    def _address(self, obj):
        rt = self.store.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            return None
        m = meta(obj)
        return (rt.group, rt.plural, m.get("namespace") if rt.namespaced else None, m.get("name"))

    def keys_for(self, etype, obj):
        m = meta(obj)
        uid = m.get("uid")
        if not uid:
            return []
        keys = []
        addr = self._address(obj)
        refs = m.get("ownerReferences") or []
        if etype == "MODIFIED" and not is_deleting(obj) and uid in self._where and \
                self._owners_of.get(uid, ()) == tuple(r.get("uid") for r in refs):
            return []  # status churn etc.: owners unchanged, nothing to re-check
        for owner_uid in self._owners_of.pop(uid, ()):
            deps = self._dependents.get(owner_uid)
            if deps:
                deps.pop(uid, None)
                if not deps:
                    del self._dependents[owner_uid]
        if etype == "DELETED":
            self._where.pop(uid, None)
            # its dependents may now be orphans; its owners may be waiting for it (foreground)
            keys += [("check", d) for d in (self._dependents.get(uid) or {}).values()]
            keys += [("owner", self._where[o]) for o in {r.get("uid") for r in
                                                         m.get("ownerReferences") or []}
                     if o in self._where]
            return keys
        if addr is None:
            return []
        self._where[uid] = addr
        refs = m.get("ownerReferences") or []
        if refs:
            owner_uids = tuple(r.get("uid") for r in refs)
            self._owners_of[uid] = owner_uids
            for o in owner_uids:
                self._dependents.setdefault(o, {})[uid] = addr
            keys.append(("check", addr))
        if is_deleting(obj) and {FOREGROUND, ORPHAN} & set(m.get("finalizers") or []):
            keys.append(("owner", addr))
        return keys

    def reconcile(self, key):
        what, addr = key
        if what == "check":
            return self._check_dependent(addr)
        return self._process_owner(addr)

    def _owner_alive(self, dependent_ns, ref) -> bool:
        rt = self.store.registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rt is None:
            return False  # an owner of a kind the server doesn't know is treated as absent
        owner = self.store.get_or_none(rt.group, rt.plural, dependent_ns if rt.namespaced else None,
                                       ref.get("name"))
        return owner is not None and meta(owner).get("uid") == ref.get("uid")

    def _check_dependent(self, addr):
        group, plural, ns, name = addr
        obj = self.store.get_or_none(group, plural, ns, name)
        if obj is None:
            return
        refs = meta(obj).get("ownerReferences") or []
        if not refs:
            return
        alive = [r for r in refs if self._owner_alive(ns, r)]
        if not alive:
            if is_deleting(obj):
                return
            try:
                self.store.delete(group, plural, ns, name, propagation_policy="Background",
                                  preconditions={"uid": meta(obj).get("uid")})
            except Exception as e:
                if getattr(e, "code", None) not in (404, 409):
                    raise
        elif len(alive) < len(refs):
            self.store.patch(group, plural, ns, name, {"metadata": {
                "ownerReferences": alive, "resourceVersion": meta(obj).get("resourceVersion")}},
                "merge")

    def _process_owner(self, addr):
        group, plural, ns, name = addr
        owner = self.store.get_or_none(group, plural, ns, name)
        if owner is None or not is_deleting(owner):
            return
        m = meta(owner)
        uid = m.get("uid")
        finalizers = list(m.get("finalizers") or [])
        dependents = []
        for dep_addr in list((self._dependents.get(uid) or {}).values()):
            dep = self.store.get_or_none(*dep_addr)
            if dep is None:
                continue
            refs = [r for r in meta(dep).get("ownerReferences") or [] if r.get("uid") == uid]
            if refs:
                dependents.append((dep_addr, dep, refs))
        if ORPHAN in finalizers:
            for (g, p, dns, dname), dep, _ in dependents:
                keep = [r for r in meta(dep).get("ownerReferences") or [] if r.get("uid") != uid]
                self.store.patch(g, p, dns, dname, {"metadata": {"ownerReferences": keep or None}},
                                 "merge")
            self._drop_finalizer(group, plural, ns, name, ORPHAN)
            return
        if FOREGROUND in finalizers:
            blocking = False
            for (g, p, dns, dname), dep, refs in dependents:
                if any(r.get("blockOwnerDeletion") for r in refs):
                    blocking = True
                if not is_deleting(dep):
                    try:
                        self.store.delete(g, p, dns, dname, propagation_policy="Foreground",
                                          preconditions={"uid": meta(dep).get("uid")})
                    except Exception as e:
                        if getattr(e, "code", None) not in (404, 409):
                            raise
            if not blocking:
                self._drop_finalizer(group, plural, ns, name, FOREGROUND)

    def _drop_finalizer(self, group, plural, ns, name, finalizer):
        obj = self.store.get_or_none(group, plural, ns, name)
        if obj is None:
            return
        m = meta(obj)
        remaining = [f for f in m.get("finalizers") or [] if f != finalizer]
        self.store.patch(group, plural, ns, name, {"metadata": {
            "finalizers": remaining or None, "resourceVersion": m.get("resourceVersion")}}, "merge")
