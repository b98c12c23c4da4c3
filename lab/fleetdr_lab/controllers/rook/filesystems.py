"""CephFilesystem and CephFilesystemSubVolumeGroup (Rook pkg/operator/ceph/file/{controller,filesystem,dependent}.go,
file/mds/mds.go, file/subvolumegroup/controller.go).

A filesystem is Progressing until the CephCluster is usable, Failure when Rook's validation refuses
it (activeCount below 1, a bad metadata or data pool, duplicate data pool names), then Ready with
its MDS Deployments `rook-ceph-mds-<fs>-<letter>` (activeCount, doubled with activeStandby). Its
Ceph pools are `<fs>-metadata` and `<fs>-data<i>` / `<fs>-<name>` (the bare name with
preservePoolNames): CephFS StorageClasses name the data pool that way. Deletion waits while
subvolume groups of the filesystem exist or hold subvolumes (CephFS volumes).
"""
from __future__ import annotations

import string

from ..base import is_deleting, owner_reference
from .cluster import usable
from .operator import GROUP, RookController
from .pools import pool_errors

FS_FINALIZER = "cephfilesystem.ceph.rook.io"
SVG_FINALIZER = "cephfilesystemsubvolumegroup.ceph.rook.io"
CSI_GROUP = "csi"  # the subvolume group ceph-csi puts its volumes in


def data_pool_names(fs: dict) -> list[str]:
    """The Ceph data pool names of a filesystem (file/filesystem.go generateDataPoolNames)."""
    name, spec = fs["metadata"]["name"], fs.get("spec") or {}
    out = []
    for index, pool in enumerate(spec.get("dataPools") or []):
        if pool.get("name"):
            out.append(pool["name"] if spec.get("preservePoolNames") else f"{name}-{pool['name']}")
        else:
            out.append(f"{name}-data{index}")
    return out


def filesystem_errors(spec: dict) -> list[str]:
    errors = []
    if ((spec.get("metadataServer") or {}).get("activeCount") or 0) < 1:
        errors.append("MetadataServer.ActiveCount must be at least 1")
    errors += ["invalid metadata pool: " + e for e in pool_errors(spec.get("metadataPool") or {})]
    for pool in spec.get("dataPools") or []:
        errors += ["Invalid data pool: " + e for e in pool_errors(pool)]
    names = [p.get("name") for p in spec.get("dataPools") or [] if p.get("name")]
    if len(set(names)) != len(names):
        errors.append("duplicate data pool names in the filesystem spec: %s" % names)
    return errors


def subvolumes(store, namespace: str, fs_name: str) -> list[str]:
    """CephFS volumes (PVs of Rook's CephFS driver) of one filesystem: the subvolumes of group csi."""
    return sorted(pv["metadata"]["name"] for pv in store.list("", "persistentvolumes")["items"]
                  if ((pv.get("spec") or {}).get("csi") or {}).get("driver", "").endswith(".cephfs.csi.ceph.com")
                  and pv["spec"]["csi"].get("volumeAttributes", {}).get("clusterID") == namespace
                  and pv["spec"]["csi"]["volumeAttributes"].get("fsName") == fs_name)


class CephFilesystemController(RookController):
    plural = "cephfilesystems"
    watches = [(GROUP, "cephfilesystems"), (GROUP, "cephclusters"), (GROUP, "cephfilesystemsubvolumegroups"),
               ("", "persistentvolumes")]

    def reconcile(self, key):
        ns, name = key
        fs = self.store.get_or_none(GROUP, self.plural, ns, name)
        if fs is None:
            return
        if is_deleting(fs):
            return self._delete(fs)
        fs = self.with_finalizer(fs, FS_FINALIZER)
        if not fs.get("status"):
            fs = self.put_status(fs, {"phase": "Progressing"})
        if not usable(self.store, ns):
            self.enqueue_after(1.0, key)
            return
        errors = filesystem_errors(fs.get("spec") or {})
        if errors:
            message = 'failed to create filesystem "%s": %s' % (name, errors[0])
            self.event(fs, "Warning", "ReconcileFailed", message)
            if (fs.get("status") or {}).get("phase") != "Failure":
                self.put_status(fs, dict(fs.get("status") or {}, phase="Failure"))
            self.enqueue_after(5.0, key)
            return
        self._mds(fs)
        want = dict(fs.get("status") or {}, phase="Ready", observedGeneration=fs["metadata"].get("generation", 1))
        if want != fs.get("status"):
            self.put_status(fs, want)

    def _mds(self, fs):
        """One Deployment per MDS daemon (file/mds/mds.go): activeCount, x2 with activeStandby; extra ones removed."""
        ns, name = fs["metadata"]["namespace"], fs["metadata"]["name"]
        server = (fs.get("spec") or {}).get("metadataServer") or {}
        count = server["activeCount"] * (2 if server.get("activeStandby") else 1)
        image = (next(iter(self.store.list(GROUP, "cephclusters", ns)["items"]), {}).get("spec") or {}).get("cephVersion", {}).get("image")
        wanted = set()
        for letter in string.ascii_lowercase[:count]:
            daemon = f"{name}-{letter}"
            deployment = f"rook-ceph-mds-{daemon}"
            wanted.add(deployment)
            if self.store.get_or_none("apps", "deployments", ns, deployment) is not None:
                continue
            labels = {"app": "rook-ceph-mds", "app.kubernetes.io/name": "ceph-mds", "app.kubernetes.io/instance": daemon,
                      "app.kubernetes.io/part-of": ns, "app.kubernetes.io/managed-by": "rook-ceph-operator",
                      "rook_cluster": ns, "rook_file_system": name, "mds": daemon, "ceph_daemon_type": "mds", "ceph_daemon_id": daemon}
            placement = server.get("placement") or {}
            pod_spec = {"containers": [{"name": "mds", "image": image}]}
            if placement.get("tolerations"):
                pod_spec["tolerations"] = placement["tolerations"]
            if placement.get("nodeAffinity"):
                pod_spec["affinity"] = {"nodeAffinity": placement["nodeAffinity"]}
            if server.get("priorityClassName"):
                pod_spec["priorityClassName"] = server["priorityClassName"]
            self.store.create("apps", "deployments", ns, {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": deployment, "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(fs)]},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "rook-ceph-mds", "mds": daemon}},
                         "template": {"metadata": {"labels": labels}, "spec": pod_spec}}})
        for d in self.store.list("apps", "deployments", ns, label_selector=f"app=rook-ceph-mds,rook_file_system={name}")["items"]:
            if d["metadata"]["name"] not in wanted:
                self.store.delete("apps", "deployments", ns, d["metadata"]["name"])

    def _delete(self, fs):
        ns, name = fs["metadata"]["namespace"], fs["metadata"]["name"]
        groups = sorted(g["metadata"]["name"] for g in self.store.list(GROUP, "cephfilesystemsubvolumegroups", ns)["items"]
                        if (g.get("spec") or {}).get("filesystemName") == name)
        parts = ["CephFilesystemSubVolumeGroups: [%s]" % ", ".join(groups)] if groups else []
        if subvolumes(self.store, ns, name):
            parts.append("filesystem subvolume groups that contain subvolumes (could be from CephFilesystem PVCs or "
                         "CephNFS exports): [%s]" % CSI_GROUP)
        if parts and usable(self.store, ns):
            message = 'CephFilesystem "%s/%s" will not be deleted until all dependents are removed: %s' % (ns, name, ", ".join(parts))
            st = dict(fs.get("status") or {})
            st["conditions"] = [{"type": "DeletionIsBlocked", "status": "True", "reason": "ObjectHasDependents", "message": message,
                                 "lastTransitionTime": self.now()}]
            if st != fs.get("status"):
                self.put_status(fs, st)
                self.event(fs, "Warning", "ReconcileFailed", message)
            self.enqueue_after(2.0, (ns, name))
            return
        self.without_finalizer(fs, FS_FINALIZER)


class CephFilesystemSubVolumeGroupController(RookController):
    """Ready once its filesystem is Ready; deletion waits while the group holds subvolumes."""

    plural = "cephfilesystemsubvolumegroups"
    watches = [(GROUP, "cephfilesystemsubvolumegroups"), (GROUP, "cephfilesystems"), ("", "persistentvolumes")]

    def reconcile(self, key):
        ns, name = key
        group = self.store.get_or_none(GROUP, self.plural, ns, name)
        if group is None:
            return
        spec = group.get("spec") or {}
        fs = self.store.get_or_none(GROUP, "cephfilesystems", ns, spec.get("filesystemName") or "")
        if is_deleting(group):
            held = subvolumes(self.store, ns, spec.get("filesystemName")) if (spec.get("name") or name) == CSI_GROUP else []
            if held and usable(self.store, ns):
                message = 'CephFilesystemSubVolumeGroup "%s/%s" will not be deleted until all dependents are removed: ' \
                          'subvolumes: [%s]' % (ns, name, ", ".join(held))
                st = dict(group.get("status") or {}, conditions=[{
                    "type": "DeletionIsBlocked", "status": "True", "reason": "ObjectHasDependents", "message": message,
                    "lastTransitionTime": self.now()}])
                if st != group.get("status"):
                    self.put_status(group, st)
                self.enqueue_after(2.0, key)
                return
            self.without_finalizer(group, SVG_FINALIZER)
            return
        group = self.with_finalizer(group, SVG_FINALIZER)
        ready = usable(self.store, ns) and fs is not None and (fs.get("status") or {}).get("phase") == "Ready"
        want = dict(group.get("status") or {}, phase="Ready" if ready else "Progressing")
        if ready:
            want["info"] = {"clusterID": ns, "filesystemName": spec.get("filesystemName"), "name": spec.get("name") or name}
        if want != group.get("status"):
            self.put_status(group, want)
        if not ready:
            self.enqueue_after(1.0, key)
