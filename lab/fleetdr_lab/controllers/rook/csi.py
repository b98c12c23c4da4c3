"""Ceph volumes through Rook's CSI drivers: RBD images (`<operator namespace>.rbd.csi.ceph.com`) and
CephFS subvolumes (`<operator namespace>.cephfs.csi.ceph.com`).

A claim of a StorageClass with one of those provisioners gets a PV only while its CephCluster (the
class's `clusterID`) is usable and its pool (RBD) or filesystem (CephFS, whose `pool` must be one of
its Ceph data pools) is Ready; until then it stays Pending with a Warning ProvisioningFailed event,
as the external provisioner reports. The PV carries spec.csi {driver, volumeHandle,
volumeAttributes} as ceph-csi writes them (internal/rbd: clusterID, pool, imageName;
internal/cephfs: clusterID, fsName, pool, subvolumeName, subvolumePath); its data
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
from .filesystems import CSI_GROUP, data_pool_names
from .operator import GROUP, RookController


class CephCsiProvisioner(RookController):
    plural = "persistentvolumeclaims"
    watches = [("", "persistentvolumeclaims"), ("", "persistentvolumes"), (GROUP, "cephblockpools"), (GROUP, "cephfilesystems"),
               (GROUP, "cephclusters")]

    @property
    def drivers(self):
        return {f"{self.operator.namespace}.rbd.csi.ceph.com": "rbd", f"{self.operator.namespace}.cephfs.csi.ceph.com": "cephfs"}

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
        if sc is None or sc.get("provisioner") not in self.drivers:
            return
        driver = sc["provisioner"]
        params = sc.get("parameters") or {}
        cluster_ns = params.get("clusterID")
        if not cluster_ns or not usable(self.store, cluster_ns):
            why = "rpc error: code = Internal desc = failed to get connection: the Ceph cluster %r is not usable" % cluster_ns
            attributes = None
        elif self.drivers[driver] == "rbd":
            why, attributes = self._rbd(cluster_ns, params)
        else:
            why, attributes = self._cephfs(cluster_ns, params)
        if why:
            self.event(claim, "Warning", "ProvisioningFailed", 'failed to provision volume with StorageClass "%s": %s' % (sc_name, why))
            return
        size = ((claim["spec"].get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        pv_name = "pvc-" + claim["metadata"]["uid"]
        handle = attributes.pop("volumeHandle")
        pv_data_dir(self.cluster.data_dir, {"metadata": {"name": pv_name}, "spec": {"csi": {"driver": driver}}}).mkdir(
            parents=True, exist_ok=True)
        self.store.create("", "persistentvolumes", None, {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": driver}},
            "spec": {"capacity": {"storage": size}, "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete", "storageClassName": sc_name,
                     "volumeMode": claim["spec"].get("volumeMode") or "Filesystem",
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": name,
                                  "uid": claim["metadata"]["uid"]},
                     "csi": dict({"driver": driver, "volumeHandle": handle, "volumeAttributes": attributes},
                                 **({"fsType": params.get("csi.storage.k8s.io/fstype", "ext4")} if self.drivers[driver] == "rbd" else {}))}})

    def _rbd(self, cluster_ns, params):
        """(why not, volume attributes + handle) of an RBD image in the class's pool."""
        pool_name = params.get("pool")
        pool = self.store.get_or_none(GROUP, "cephblockpools", cluster_ns, pool_name) if pool_name else None
        if pool is None or (pool.get("status") or {}).get("phase") != "Ready":
            return "rpc error: code = NotFound desc = pool %s not found" % pool_name, None
        handle = "0001-0009-%s-%016x-%s" % (cluster_ns, (pool.get("status") or {}).get("poolID", 1), uuid.uuid4())
        return None, {"volumeHandle": handle, "clusterID": cluster_ns, "pool": pool_name,
                      "imageFormat": params.get("imageFormat", "2"), "imageFeatures": params.get("imageFeatures", "layering"),
                      "imageName": "csi-vol-" + handle[-36:]}

    def _cephfs(self, cluster_ns, params):
        """(why not, volume attributes + handle) of a CephFS subvolume in group csi of the class's filesystem."""
        fs_name = params.get("fsName")
        fs = self.store.get_or_none(GROUP, "cephfilesystems", cluster_ns, fs_name) if fs_name else None
        if fs is None or (fs.get("status") or {}).get("phase") != "Ready":
            return "rpc error: code = NotFound desc = volume not found: filesystem %s not found" % fs_name, None
        pool = params.get("pool")
        if pool and pool not in data_pool_names(fs):
            return ("rpc error: code = Internal desc = Error EINVAL: Invalid pool layout '%s'. It must be a valid data pool"
                    % pool), None
        volume_id = str(uuid.uuid4())
        handle = "0001-0009-%s-%016x-%s" % (cluster_ns, 1, volume_id)
        attributes = {"volumeHandle": handle, "clusterID": cluster_ns, "fsName": fs_name, "subvolumeName": "csi-vol-" + volume_id,
                      "subvolumePath": "/volumes/%s/csi-vol-%s/%s" % (CSI_GROUP, volume_id, uuid.uuid4())}
        if pool:
            attributes["pool"] = pool
        return None, attributes

    def _reclaim(self, name):
        pv = self.store.get_or_none("", "persistentvolumes", None, name)
        if pv is None or ((pv.get("spec") or {}).get("csi") or {}).get("driver") not in self.drivers:
            return
        if (pv.get("status") or {}).get("phase") == "Released" and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            self.store.delete("", "persistentvolumes", None, name)
            path = pv_data_dir(self.cluster.data_dir, pv)
            asyncio.get_running_loop().run_in_executor(None, lambda: shutil.rmtree(path, ignore_errors=True))
