"""Persistent volumes: the PV binder, the lab's hostPath provisioner and the protection finalizers.

Provisioned volumes are directories under the cluster's data dir (<lab>/volumes/<cluster>/<pv>),
named by the PV's spec.hostPath.path, so tools read and write volume data the way a node would.
"""
from __future__ import annotations

import asyncio
import copy
import shutil
from pathlib import Path

from ..store import Admission
from .base import Controller, is_deleting, meta, log, pod_is_terminal

PROVISIONER = "fleetdr.lab/hostpath"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
DEFAULT_CLASS_ANN = "storageclass.kubernetes.io/is-default-class"
SELECTED_NODE_ANN = "volume.kubernetes.io/selected-node"

UNITS = {"": 1, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4, "P": 1000 ** 5,
         "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4, "Pi": 1024 ** 5,
         "m": 0.001}


def quantity_bytes(q) -> float:
    """A resource.Quantity as a number ("1Gi" -> 1073741824)."""
    if q is None:
        return 0
    text = str(q).strip()
    for suffix in sorted(UNITS, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            try:
                return float(text[:-len(suffix)]) * UNITS[suffix]
            except ValueError:
                return 0
    try:
        return float(text)
    except ValueError:
        return 0


def claim_key(pvc: dict) -> tuple:
    return (meta(pvc).get("namespace"), meta(pvc).get("name"))


def pv_claims(pv: dict, pvc: dict) -> bool:
    """pv.spec.claimRef points at this claim (uid checked when the claimRef carries one)."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    if (ref.get("namespace"), ref.get("name")) != claim_key(pvc):
        return False
    return not ref.get("uid") or ref.get("uid") == meta(pvc).get("uid")


class StorageController(Controller):
    """PVC/PV binding, dynamic provisioning for class provisioner fleetdr.lab/hostpath, reclaim,
    and the pvc-/pv-protection finalizers."""

    name = "storage"
    watches = [("", "persistentvolumeclaims"), ("", "persistentvolumes"), ("", "pods"),
               ("storage.k8s.io", "storageclasses")]

    def keys_for(self, etype, obj):
        kind = obj.get("kind")
        m = meta(obj)
        if kind == "PersistentVolumeClaim":
            keys = [("PVC", m.get("namespace"), m.get("name"))]
            if etype == "DELETED":
                # its volume is now released
                keys += [("PV", None, meta(pv)["name"]) for pv in self._pvs()
                         if ((pv.get("spec") or {}).get("claimRef") or {}).get("uid") == m.get("uid")]
            return keys
        if kind == "PersistentVolume":
            keys = [] if etype == "DELETED" else [("PV", None, m.get("name"))]
            ref = (obj.get("spec") or {}).get("claimRef") or {}
            if ref.get("name"):
                keys.append(("PVC", ref.get("namespace"), ref.get("name")))
            if etype != "DELETED" and (obj.get("status") or {}).get("phase") == "Available":
                keys += self._pending_claims()  # a new Available volume may satisfy a claim
            elif etype == "DELETED":
                keys += [("PVC", meta(c)["namespace"], meta(c)["name"])
                         for c in self.store.list("", "persistentvolumeclaims")["items"]
                         if (c.get("spec") or {}).get("volumeName") == m.get("name")]
            return keys
        if kind == "Pod":
            # claims in use gate pvc-protection; a pod gone or finished may release a claim
            if etype == "DELETED" or pod_is_terminal(obj) or is_deleting(obj):
                return [("PVC", m.get("namespace"), c) for c in self._pod_claims(obj)]
            # WaitForFirstConsumer claims are provisioned once a pod wants them
            return [("PVC", m.get("namespace"), c) for c in self._pod_claims(obj)]
        if kind == "StorageClass":
            return self._pending_claims()
        return []

    @staticmethod
    def _pod_claims(pod):
        return [v["persistentVolumeClaim"]["claimName"]
                for v in (pod.get("spec") or {}).get("volumes") or []
                if (v.get("persistentVolumeClaim") or {}).get("claimName")]

    def _pvs(self):
        return self.store.list("", "persistentvolumes")["items"]

    def _pending_claims(self):
        return [("PVC", meta(c)["namespace"], meta(c)["name"])
                for c in self.store.list("", "persistentvolumeclaims")["items"]
                if (c.get("status") or {}).get("phase", "Pending") == "Pending"]

    def reconcile(self, key):
        kind, ns, name = key
        if kind == "PVC":
            return self.sync_claim(ns, name)
        return self.sync_volume(name)

    # ------------------------------------------------------------------ claims
    def sync_claim(self, ns, name):
        pvc = self.store.get_or_none("", "persistentvolumeclaims", ns, name)
        if pvc is None:
            return
        m = meta(pvc)
        if is_deleting(pvc):
            if PVC_PROTECTION in (m.get("finalizers") or []) and not self._claim_in_use(pvc):
                self._remove_finalizer("persistentvolumeclaims", pvc, PVC_PROTECTION)
            return
        if PVC_PROTECTION not in (m.get("finalizers") or []):
            pvc = self.store.patch("", "persistentvolumeclaims", ns, name, {"metadata": {
                "finalizers": list(m.get("finalizers") or []) + [PVC_PROTECTION]}}, "merge")
            m = meta(pvc)
        spec = pvc.get("spec") or {}
        phase = (pvc.get("status") or {}).get("phase", "Pending")
        volume_name = spec.get("volumeName")
        if volume_name:
            pv = self.store.get_or_none("", "persistentvolumes", None, volume_name)
            if pv is None:
                if phase == "Bound":
                    self._claim_status(pvc, {"phase": "Lost"})
                return  # waits (Pending) for the named volume to appear, as the real binder does
            if phase == "Bound" and pv_claims(pv, pvc):
                return
            ref = (pv.get("spec") or {}).get("claimRef")
            if ref and not pv_claims(pv, pvc):
                return  # promised to another claim
            self._bind(pv, pvc, claim_set_by_controller=False)
            return
        if phase != "Pending":
            return
        # a volume pre-bound to this claim (e.g. a Retain volume restored by Velero)?
        pvs = self._pvs()
        for pv in pvs:
            if pv_claims(pv, pvc) and not is_deleting(pv) and \
                    (pv.get("status") or {}).get("phase") in (None, "Pending", "Available"):
                self._bind(pv, pvc, claim_set_by_controller=True)
                return
        class_name = spec.get("storageClassName")
        if class_name is None:
            default = self._default_class()
            class_name = meta(default)["name"] if default else ""
        match = self._best_match(pvc, pvs, class_name)
        if match is not None:
            self._bind(match, pvc, claim_set_by_controller=True)
            return
        if not class_name:
            return  # static provisioning only
        sc = self.store.get_or_none("storage.k8s.io", "storageclasses", None, class_name)
        if sc is None or sc.get("provisioner") != PROVISIONER:
            return  # not ours (or unknown class): stays Pending, as real
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not self._claim_in_use(pvc):
            return
        self._provision(pvc, sc)

    def _default_class(self):
        for sc in self.store.list("storage.k8s.io", "storageclasses")["items"]:
            if (meta(sc).get("annotations") or {}).get(DEFAULT_CLASS_ANN) == "true":
                return sc
        return None

    def _best_match(self, pvc, pvs, class_name):
        """The binder's findBestMatch: smallest Available unclaimed volume that satisfies the claim."""
        spec = pvc.get("spec") or {}
        want = quantity_bytes(((spec.get("resources") or {}).get("requests") or {}).get("storage"))
        modes = set(spec.get("accessModes") or [])
        mode = spec.get("volumeMode", "Filesystem")
        candidates = []
        for pv in pvs:
            pspec = pv.get("spec") or {}
            if is_deleting(pv) or pspec.get("claimRef") or \
                    (pv.get("status") or {}).get("phase") != "Available":
                continue
            if (pspec.get("storageClassName") or "") != class_name:
                continue
            if pspec.get("volumeMode", "Filesystem") != mode or not modes <= set(pspec.get("accessModes") or []):
                continue
            size = quantity_bytes((pspec.get("capacity") or {}).get("storage"))
            if size >= want:
                candidates.append((size, meta(pv)["name"], pv))
        return min(candidates)[2] if candidates else None

    def _claim_in_use(self, pvc) -> bool:
        ns, name = claim_key(pvc)
        for pod in self.store.list("", "pods", namespace=ns)["items"]:
            if not pod_is_terminal(pod) and name in self._pod_claims(pod):
                return True
        return False

    def _provision(self, pvc, sc):
        ns, name = claim_key(pvc)
        m = meta(pvc)
        anns = m.get("annotations") or {}
        if anns.get("volume.kubernetes.io/storage-provisioner") != PROVISIONER:
            pvc = self.store.patch("", "persistentvolumeclaims", ns, name, {"metadata": {"annotations": {
                "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER,
                "volume.kubernetes.io/storage-provisioner": PROVISIONER}}}, "merge")
        pv_name = f"pvc-{m['uid']}"
        if self.store.get_or_none("", "persistentvolumes", None, pv_name):
            return
        spec = pvc.get("spec") or {}
        path = Path(self.cluster.data_dir) / pv_name
        path.mkdir(parents=True, exist_ok=True)
        pv = {"apiVersion": "v1", "kind": "PersistentVolume",
              "metadata": {"name": pv_name,
                           "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                           "finalizers": [PV_PROTECTION]},
              "spec": {"capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {})
                                    .get("storage", "1Gi")},
                       "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                       "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                    "namespace": ns, "name": name, "uid": m["uid"],
                                    "resourceVersion": m.get("resourceVersion")},
                       "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                       "storageClassName": meta(sc)["name"],
                       "volumeMode": spec.get("volumeMode", "Filesystem"),
                       "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}}
        if sc.get("mountOptions"):
            pv["spec"]["mountOptions"] = list(sc["mountOptions"])
        created = self.store.create("", "persistentvolumes", None, pv)
        self._volume_status(created, "Available")

    def _bind(self, pv, pvc, claim_set_by_controller: bool):
        """Bind both sides: PV claimRef + Bound, then PVC volumeName + annotations + Bound."""
        ns, name = claim_key(pvc)
        pm = meta(pvc)
        pv_name = meta(pv)["name"]
        pspec = pv.get("spec") or {}
        ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns, "name": name,
               "uid": pm["uid"], "resourceVersion": pm.get("resourceVersion")}
        pv_patch = {}
        if (pspec.get("claimRef") or {}).get("uid") != pm["uid"]:
            pv_patch["spec"] = {"claimRef": ref}
            if not pspec.get("claimRef"):
                pv_patch["metadata"] = {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}}
        if pv_patch:
            pv = self.store.patch("", "persistentvolumes", None, pv_name, pv_patch, "merge")
        self._volume_status(pv, "Bound")
        anns = {"pv.kubernetes.io/bind-completed": "yes"}
        if claim_set_by_controller:
            anns["pv.kubernetes.io/bound-by-controller"] = "yes"
        claim_patch = {"metadata": {"annotations": anns}}
        if (pvc.get("spec") or {}).get("volumeName") != pv_name:
            claim_patch["spec"] = {"volumeName": pv_name}
        pvc = self.store.patch("", "persistentvolumeclaims", ns, name, claim_patch, "merge")
        self._claim_status(pvc, {"phase": "Bound",
                                 "accessModes": list(pspec.get("accessModes") or []),
                                 "capacity": dict(pspec.get("capacity") or {})})

    def _claim_status(self, pvc, status):
        if (pvc.get("status") or {}) == status:
            return
        body = copy.deepcopy(pvc)
        body["status"] = status
        ns, name = claim_key(pvc)
        self.store.update("", "persistentvolumeclaims", ns, name, body, subresource="status")

    def _volume_status(self, pv, phase, message=None):
        st = pv.get("status") or {}
        if st.get("phase") == phase and st.get("message") == message:
            return pv
        body = copy.deepcopy(pv)
        body["status"] = {"phase": phase, "lastPhaseTransitionTime": self.now()}
        if message:
            body["status"]["message"] = message
        return self.store.update("", "persistentvolumes", None, meta(pv)["name"], body,
                                 subresource="status")

    # ------------------------------------------------------------------ volumes
    def sync_volume(self, name):
        pv = self.store.get_or_none("", "persistentvolumes", None, name)
        if pv is None:
            return
        m = meta(pv)
        spec = pv.get("spec") or {}
        phase = (pv.get("status") or {}).get("phase")
        ref = spec.get("claimRef") or {}
        claim = None
        if ref.get("name"):
            claim = self.store.get_or_none("", "persistentvolumeclaims", ref.get("namespace"),
                                           ref["name"])
        if is_deleting(pv):
            bound = claim is not None and pv_claims(pv, claim) and phase == "Bound"
            if PV_PROTECTION in (m.get("finalizers") or []) and not bound:
                self._remove_finalizer("persistentvolumes", pv, PV_PROTECTION)
            return
        if PV_PROTECTION not in (m.get("finalizers") or []):
            pv = self.store.patch("", "persistentvolumes", None, name, {"metadata": {
                "finalizers": list(m.get("finalizers") or []) + [PV_PROTECTION]}}, "merge")
        if not ref.get("name"):
            if phase != "Available":
                self._volume_status(pv, "Available")
            return
        if not ref.get("uid"):
            # pre-bound to a claim by name: Available until that claim binds
            if phase not in ("Available", "Bound"):
                self._volume_status(pv, "Available")
            if claim is not None:
                self.enqueue(("PVC", ref.get("namespace"), ref["name"]))
            return
        if claim is not None and meta(claim).get("uid") == ref.get("uid"):
            if phase not in ("Bound",) and (claim.get("spec") or {}).get("volumeName") == name:
                self._volume_status(pv, "Bound")
            elif phase is None:
                self._volume_status(pv, "Available")
            return
        # the claim this volume was bound to is gone: Released, then reclaim
        if phase != "Released" and phase != "Failed":
            pv = self._volume_status(pv, "Released")
        policy = spec.get("persistentVolumeReclaimPolicy", "Retain")
        if policy == "Delete":
            if (m.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER:
                self._delete_volume(pv)
            elif spec.get("csi") and (m.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by"):
                pass  # an external CSI provisioner deletes its own volumes (kube pv_controller)
            else:
                self._volume_status(pv, "Failed", "error getting deleter volume plugin for volume "
                                                  f'"{name}": no deletable volume plugin matched')

    def _delete_volume(self, pv):
        name = meta(pv)["name"]
        path = Path(((pv.get("spec") or {}).get("hostPath") or {}).get("path") or "")
        root = Path(self.cluster.data_dir).resolve()
        try:
            self.store.delete("", "persistentvolumes", None, name)
        except Exception as e:
            if getattr(e, "code", None) != 404:
                raise
        # only ever remove what the provisioner created, under this cluster's data dir
        if path.name == name and path.resolve().parent == root:
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, lambda: shutil.rmtree(path, ignore_errors=True))
        else:
            log.warning("%s: not removing data of %s outside %s", self.cluster.name, name, root)

    def _remove_finalizer(self, plural, obj, finalizer):
        m = meta(obj)
        remaining = [f for f in m.get("finalizers") or [] if f != finalizer]
        try:
            self.store.patch("", plural, m.get("namespace"), m["name"],
                             {"metadata": {"finalizers": remaining or None,
                                           "resourceVersion": m.get("resourceVersion")}}, "merge")
        except Exception as e:
            if getattr(e, "code", None) not in (404, 409):
                raise
            if getattr(e, "code", None) == 409:
                self.enqueue_after(0.05, ("PVC" if plural == "persistentvolumeclaims" else "PV",
                                          m.get("namespace"), m["name"]))


class StorageProtection(Admission):
    """The StorageObjectInUseProtection admission plugin: new PVCs and PVs get their protection
    finalizer at creation, so deleting one in use never loses data (this controller removes it
    once the object is unused)."""

    FINALIZERS = {("", "persistentvolumeclaims"): PVC_PROTECTION,
                  ("", "persistentvolumes"): PV_PROTECTION}

    def admit(self, store, rt, obj: dict, old: dict | None) -> None:
        finalizer = self.FINALIZERS.get((rt.group, rt.plural))
        if old is not None or finalizer is None:
            return
        md = obj.setdefault("metadata", {})
        finalizers = list(md.get("finalizers") or [])
        if finalizer not in finalizers:
            md["finalizers"] = finalizers + [finalizer]
