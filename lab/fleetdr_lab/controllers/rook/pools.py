"""CephBlockPool (Rook pkg/operator/ceph/pool/{controller,validate,status}.go).

Phase Progressing until the CephCluster is usable (health OK/WARN), then Ready with info and a
poolID; a spec Rook refuses keeps the pool Progressing with a Warning ReconcileFailed event (never
Failure); deletion waits while RBD images (Rook PVs of the pool) exist.
"""
from __future__ import annotations

from ..base import is_deleting, set_condition
from .cluster import usable
from .operator import GROUP, RookController

FINALIZER = "cephblockpool.ceph.rook.io"


def pool_errors(spec: dict) -> list[str]:
    replicated, coded = spec.get("replicated"), spec.get("erasureCoded")
    if not replicated and not coded:
        return ["invalid pool spec: either of erasurecoded or replicated fields should be set"]
    if replicated and coded and (replicated.get("size") or 0) > 0 and (coded.get("dataChunks") or 0) > 0:
        return ["invalid pool spec: both erasurecoded and replicated fields cannot be set at the same time"]
    if replicated:
        size = replicated.get("size") or 0
        if size == 1 and replicated.get("requireSafeReplicaSize"):
            return ["error pool size is 1 and requireSafeReplicaSize is true, must be false"]
    if coded and ((coded.get("dataChunks") or 0) < 2 or (coded.get("codingChunks") or 0) < 1):
        return ["invalid pool spec: erasure code data chunks must be at least 2 and coding chunks at least 1"]
    return []


class CephBlockPoolController(RookController):
    plural = "cephblockpools"
    watches = [(GROUP, "cephblockpools"), (GROUP, "cephclusters"), ("", "persistentvolumes")]

    def reconcile(self, key):
        ns, name = key
        pool = self.store.get_or_none(GROUP, "cephblockpools", ns, name)
        if pool is None:
            return
        if is_deleting(pool):
            return self._delete(pool)
        pool = self.with_finalizer(pool, FINALIZER)
        if not pool.get("status"):
            pool = self.put_status(pool, {"phase": "Progressing"})
        if not usable(self.store, ns):
            self.enqueue_after(1.0, key)  # Rook requeues every 10 s until the cluster is usable
            return
        errors = pool_errors(pool.get("spec") or {})
        if errors:
            self.event(pool, "Warning", "ReconcileFailed", 'invalid pool CR "%s" spec: %s' % (name, errors[0]))
            self.enqueue_after(2.0, key)
            return
        spec = pool.get("spec") or {}
        info = {"type": "Erasure Coded" if spec.get("erasureCoded") else "Replicated",
                "failureDomain": spec.get("failureDomain") or "host"}
        st = dict(pool.get("status") or {})
        want = dict(st, phase="Ready", info=info, observedGeneration=pool["metadata"].get("generation", 1))
        if "poolID" not in want:
            want["poolID"] = 1 + sum(1 for p in self.store.list(GROUP, "cephblockpools")["items"] if (p.get("status") or {}).get("poolID"))
        if want != st:
            self.put_status(pool, want)

    def _images(self, pool):
        ns, name = pool["metadata"]["namespace"], pool["metadata"]["name"]
        return [pv["metadata"]["name"] for pv in self.store.list("", "persistentvolumes")["items"]
                if (((pv.get("spec") or {}).get("csi") or {}).get("volumeAttributes") or {}).get("clusterID") == ns
                and pv["spec"]["csi"]["volumeAttributes"].get("pool") == name]

    def _delete(self, pool):
        ns, name = pool["metadata"]["namespace"], pool["metadata"]["name"]
        if self._images(pool) and usable(self.store, ns):
            st = dict(pool.get("status") or {})
            conditions = set_condition(st.get("conditions") or [], "PoolDeletionIsBlocked", "True", "PoolNotEmpty",
                                       "pool %r cannot be deleted because it is not empty or has dependents" % name, self.now())
            if conditions != st.get("conditions"):
                self.put_status(pool, dict(st, conditions=conditions))
            self.enqueue_after(2.0, (ns, name))
            return
        self.without_finalizer(pool, FINALIZER)
