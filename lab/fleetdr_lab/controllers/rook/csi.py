"""Ceph RBD volumes through Rook's CSI driver (`<operator namespace>.rbd.csi.ceph.com`).

A claim of a StorageClass with that provisioner gets a PV only while its CephCluster (the class's
`clusterID`) is usable and its pool Ready; until then it stays Pending with a Warning
ProvisioningFailed event, as the external provisioner reports. The PV carries spec.csi {driver,
volumeHandle, volumeAttributes: clusterID, pool, imageName} (ceph-csi internal/rbd); its data
lives in the lab at <cluster data dir>/<pv name> (volumes.pv_data_dir), so `fleetdr-lab volume`
and Velero's file-system backup see it like any other volume. Released volumes with reclaim
policy Delete are deleted with their data.
"""
from __future__ import annotations

import asyncio
import shutil
import uuid

from ..base import is_deleting
from ...volumes import pv_data_dir
from .cluster import usable
from .operator import GROUP, RookController


class RbdProvisioner(RookController):
    plural = "persistentvolumeclaims"
    watches = [("", "persistentvolumeclaims"), ("", "persistentvolumes"), (GROUP, "cephblockpools"), (GROUP, "cephclusters")]

    @property
    def driver(self):
        return f"{self.operator.namespace}.rbd.csi.ceph.com"

    def keys_for(self, etype, obj):
        kind = obj.get("kind")
        m = obj.get("metadata") or {}
        if kind == "PersistentVolumeClaim":
            return (("pvc", m.get("namespace"), m.get("name")),)
        if kind == "PersistentVolume":
            return (("pv", None, m.get("name")),)
        # a pool or cluster became ready: look at every pending claim again
        return [("pvc", c["metadata"]["namespace"], c["metadata"]["name"])
                for c in self.store.list("", "persistentvolumeclaims")["items"] if (c.get("status") or {}).get("phase") == "Pending"]

    def reconcile(self, key):
        kind, ns, name = key
        if kind == "pv":
            return self._reclaim(name)
        claim = self.store.get_or_none("", "persistentvolumeclaims", ns, name)
        if claim is None or is_deleting(claim) or (claim.get("spec") or {}).get("volumeName"):
            return
        sc_name = (claim.get("spec") or {}).get("storageClassName")
        sc = self.store.get_or_none("storage.k8s.io", "storageclasses", None, sc_name) if sc_name else None
        if sc is None or sc.get("provisioner") != self.driver:
            return
        params = sc.get("parameters") or {}
        cluster_ns, pool_name = params.get("clusterID"), params.get("pool")
        pool = self.store.get_or_none(GROUP, "cephblockpools", cluster_ns, pool_name) if cluster_ns and pool_name else None
        why = None
        if not cluster_ns or not usable(self.store, cluster_ns):
            why = "rpc error: code = Internal desc = failed to get connection: the Ceph cluster %r is not usable" % cluster_ns
        elif pool is None or (pool.get("status") or {}).get("phase") != "Ready":
            why = "rpc error: code = NotFound desc = pool %s not found" % pool_name
        if why:
            self.event(claim, "Warning", "ProvisioningFailed", 'failed to provision volume with StorageClass "%s": %s' % (sc_name, why))
            return
        size = ((claim["spec"].get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        pv_name = "pvc-" + claim["metadata"]["uid"]
        handle = "0001-0009-%s-%016x-%s" % (cluster_ns, (pool.get("status") or {}).get("poolID", 1), uuid.uuid4())
        pv_data_dir(self.cluster.data_dir, {"metadata": {"name": pv_name}, "spec": {"csi": {"driver": self.driver}}}).mkdir(
            parents=True, exist_ok=True)
        self.store.create("", "persistentvolumes", None, {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": self.driver}},
            "spec": {"capacity": {"storage": size}, "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete", "storageClassName": sc_name,
                     "volumeMode": claim["spec"].get("volumeMode") or "Filesystem",
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name,
                                  "uid": claim["metadata"]["uid"]},
                     "csi": {"driver": self.driver, "volumeHandle": handle, "fsType": params.get("csi.storage.k8s.io/fstype", "ext4"),
                             "volumeAttributes": {"clusterID": cluster_ns, "pool": pool_name, "imageFormat": params.get("imageFormat", "2"),
                                                  "imageFeatures": params.get("imageFeatures", "layering"),
                                                  "imageName": "csi-vol-" + handle[-36:]}}}})

    def _reclaim(self, name):
        pv = self.store.get_or_none("", "persistentvolumes", None, name)
        if pv is None or ((pv.get("spec") or {}).get("csi") or {}).get("driver") != self.driver:
            return
        if (pv.get("status") or {}).get("phase") == "Released" and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            self.store.delete("", "persistentvolumes", None, name)
            path = pv_data_dir(self.cluster.data_dir, pv)
            asyncio.get_running_loop().run_in_executor(None, lambda: shutil.rmtree(path, ignore_errors=True))
