"""Emulated Rook-Ceph operator: install watcher, CephCluster, CephBlockPool, the RBD CSI provisioner,
and the stand-in release manifests (`fleetdr-lab rook manifests`).

`install(cluster)` registers the watcher that runs a RookOperator while Rook is installed.
"""
from .operator import HOSTS, OPERATORS, install

__all__ = ["HOSTS", "OPERATORS", "install"]
