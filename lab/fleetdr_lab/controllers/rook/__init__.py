"""Emulated Rook-Ceph operator: install watcher, CephCluster, CephBlockPool, CephFilesystem and its
subvolume groups, the RBD and CephFS CSI provisioner, object stores, object users and bucket claims,
and the stand-in release manifests
(`fleetdr-lab rook manifests`).

`install(cluster)` registers the watcher that runs a RookOperator (with the controllers below, in
start order) while Rook is installed.
"""
from .cluster import CephClusterController
from .csi import CephCsiProvisioner
from .filesystems import CephFilesystemController, CephFilesystemSubVolumeGroupController
from .objectstores import OBC_GROUP, BucketClaimController, CephObjectStoreController, CephObjectStoreUserController
from .operator import GROUP, HOSTS, OPERATORS, RookInstallWatcher
from .pools import CephBlockPoolController

CONTROLLERS = [CephClusterController, CephBlockPoolController, CephFilesystemController, CephFilesystemSubVolumeGroupController,
               CephCsiProvisioner, CephObjectStoreController,
               CephObjectStoreUserController, BucketClaimController]


def status(cluster) -> dict | None:
    """What `fleetdr-lab status` shows of Rook in one cluster (None while no operator runs): each
    CephCluster's phase, health and daemons, and how many pools, filesystems, object stores and
    bound bucket claims it serves."""
    operator = OPERATORS.get(cluster.name)
    if operator is None:
        return None
    store = cluster.store

    def ready(plural, ns):
        items = store.list(GROUP, plural, ns)["items"]
        return "%d/%d" % (sum(1 for i in items if (i.get("status") or {}).get("phase") == "Ready"), len(items))

    clusters = []
    for cc in store.list(GROUP, "cephclusters")["items"]:
        ns, st = cc["metadata"]["namespace"], cc.get("status") or {}
        daemons = dict((daemon, len(store.list("apps", "deployments", ns, label_selector="app=rook-ceph-" + daemon)["items"]))
                       for daemon in ("mon", "mgr", "osd"))
        buckets = [ob for ob in store.list(OBC_GROUP, "objectbuckets")["items"]
                   if ((ob.get("spec") or {}).get("additionalState") or {}).get("objectStoreNamespace") == ns
                   and (ob.get("status") or {}).get("phase") == "Bound"]
        clusters.append({"namespace": ns, "name": cc["metadata"]["name"], "phase": st.get("phase"),
                         "health": (st.get("ceph") or {}).get("health"), **daemons,
                         "pools": ready("cephblockpools", ns), "filesystems": ready("cephfilesystems", ns),
                         "object_stores": ready("cephobjectstores", ns), "buckets_bound": len(buckets)})
    return {"version": operator.version, "namespace": operator.namespace, "clusters": clusters}


def install(cluster) -> None:
    """Register the Rook install watcher on a cluster (the cluster calls this)."""
    cluster.add_controller(RookInstallWatcher(cluster, CONTROLLERS))


__all__ = ["CONTROLLERS", "HOSTS", "OPERATORS", "install", "status"]
