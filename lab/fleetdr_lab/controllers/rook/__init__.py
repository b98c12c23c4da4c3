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
from .objectstores import BucketClaimController, CephObjectStoreController, CephObjectStoreUserController
from .operator import HOSTS, OPERATORS, RookInstallWatcher
from .pools import CephBlockPoolController

CONTROLLERS = [CephClusterController, CephBlockPoolController, CephFilesystemController, CephFilesystemSubVolumeGroupController,
               CephCsiProvisioner, CephObjectStoreController,
               CephObjectStoreUserController, BucketClaimController]


def install(cluster) -> None:
    """Register the Rook install watcher on a cluster (the cluster calls this)."""
    cluster.add_controller(RookInstallWatcher(cluster, CONTROLLERS))


__all__ = ["CONTROLLERS", "HOSTS", "OPERATORS", "install"]
