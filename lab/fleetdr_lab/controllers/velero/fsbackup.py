"""File-system backup: volume selection, PodVolumeBackup/PodVolumeRestore objects
and the node-agent that moves the data between PV directories and the kopia-shaped repository
(fs_repository.py) under `<bsl root>/kopia/<volume-namespace>/`.

Seams:
`ctx` is anything with `.server` (VeleroServer) and `.store`: backup.py's BackupRequest, a controller.
- `backup_pod_volumes(ctx, backup, pod, volume_names=None) -> list[dict]` (called by backup.py
  for each pod): creates the pod's PVBs, waits until the node-agent finished them, returns the final
  PVB objects. Errors that leave no PVB (no node-agent on the node, ...) raise PodVolumeBackupError;
  Failed PVBs come back with phase Failed and a message (the caller logs both as errors).
- `create_pod_volume_restores(ctx, restore, pod, pvbs)` / `wait_pod_volume_restores(...)` for restore.py.
- `NodeAgentController`: processes New PVBs/PVRs on nodes that run a Ready node-agent pod.

Upstream source: Velero pkg/podvolume/backupper.go, restorer.go,
pkg/controller/pod_volume_backup_controller.go.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import shutil
from pathlib import Path

from ...volumes import pv_data_dir
from .fs_repository import RESTORE_MARKER_DIR, FsRepository, Progress, RepositoryError
from .backup_store import ObjectStoreError, run_blocking
from .server import GROUP, VeleroController, label_safe, now_rfc3339

log = logging.getLogger("fleetdr_lab.velero.fs")

BACKUP_VOLUMES_ANNOTATION = "backup.velero.io/backup-volumes"
BACKUP_VOLUMES_EXCLUDES_ANNOTATION = "backup.velero.io/backup-volumes-excludes"
NEVER_BACKED_UP = ("hostPath", "secret", "configMap", "projected", "downwardAPI")
TERMINAL = ("Completed", "Failed", "Canceled")
PROGRESS_PATCH_SECONDS = 0.2   # the real node-agent patches progress every few seconds; lab is faster
REPO_PASSWORD_SECRET = ("velero-repo-credentials", "repository-password")
DEFAULT_REPO_PASSWORD = "static-passw0rd"


class PodVolumeBackupError(Exception):
    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


# ---- which volumes ---------------------------------------------------------------------

def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def select_fs_backup_volumes(backup: dict, pod: dict, pvcs_excluded: bool = False) -> list[str]:
    """13.1: opt-in via the backup-volumes annotation, opt-out via defaultVolumesToFsBackup."""
    spec = pod.get("spec") or {}
    if (pod.get("status") or {}).get("phase") != "Running":
        return []
    annotations = pod["metadata"].get("annotations") or {}
    mounted = {m.get("name") for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
               for m in c.get("volumeMounts") or []}
    eligible = []
    for vol in spec.get("volumes") or []:
        name = vol.get("name", "")
        if any(k in vol for k in NEVER_BACKED_UP) or name.startswith("default-token"):
            continue
        if "persistentVolumeClaim" in vol and pvcs_excluded:
            continue
        if name not in mounted:
            continue
        eligible.append(name)
    if (backup.get("spec") or {}).get("defaultVolumesToFsBackup"):
        excluded = set(_csv(annotations.get(BACKUP_VOLUMES_EXCLUDES_ANNOTATION)))
        return [v for v in eligible if v not in excluded]
    wanted = _csv(annotations.get(BACKUP_VOLUMES_ANNOTATION))
    return [v for v in eligible if v in wanted]


def volume_directory(cluster, pod: dict, volume_name: str) -> Path | None:
    """Where the volume's data lives on the lab host: the bound PV's hostPath/local path for PVC
    volumes (found through the API, as the node-agent finds /host_pods/<uid>/volumes/...)."""
    store = cluster.store
    ns = pod["metadata"]["namespace"]
    vol = next((v for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("name") == volume_name), None)
    if vol is None:
        return None
    if vol.get("persistentVolumeClaim"):
        pvc = store.get_or_none("", "persistentvolumeclaims", ns, vol["persistentVolumeClaim"]["claimName"])
        if pvc is None or not (pvc.get("spec") or {}).get("volumeName"):
            return None
        pv = store.get_or_none("", "persistentvolumes", None, pvc["spec"]["volumeName"])
        if pv is None:
            return None
        return pv_data_dir(cluster.data_dir, pv)
    if "emptyDir" in vol:
        try:
            from fleetdr_lab import volumes
        except ImportError:
            return None
        finder = getattr(volumes, "empty_dir_path", None)
        return Path(finder(cluster, pod, volume_name)) if finder else None
    return None


def repository_password(store, namespace: str) -> str:
    secret = store.get_or_none("", "secrets", namespace, REPO_PASSWORD_SECRET[0])
    data = (secret or {}).get("data") or {}
    if REPO_PASSWORD_SECRET[1] in data:
        return base64.b64decode(data[REPO_PASSWORD_SECRET[1]]).decode()
    return DEFAULT_REPO_PASSWORD


def ensure_backup_repository(ctx, volume_namespace: str, bsl_name: str) -> dict:
    """BackupRepository `<ns>-<bsl>-kopia` (13.3), Ready once the repository was opened."""
    name = f"{volume_namespace}-{bsl_name}-kopia"
    existing = ctx.store.get_or_none(GROUP, "backuprepositories", ctx.server.namespace, name)
    if existing is not None:
        return existing
    return ctx.store.create(GROUP, "backuprepositories", ctx.server.namespace, {
        "apiVersion": "velero.io/v1", "kind": "BackupRepository",
        "metadata": {"name": name, "namespace": ctx.server.namespace, "labels": {
            "velero.io/volume-namespace": label_safe(volume_namespace),
            "velero.io/storage-location": label_safe(bsl_name),
            "velero.io/repository-type": "kopia"}},
        "spec": {"volumeNamespace": volume_namespace, "backupStorageLocation": bsl_name,
                 "repositoryType": "kopia", "resticIdentifier": "", "maintenanceFrequency": "168h0m0s"},
        "status": {"phase": "Ready", "lastMaintenanceTime": now_rfc3339(ctx.server.clock)},
    })


def node_agent_on(ctx, node: str | None) -> bool:
    return bool(node) and any((p.get("spec") or {}).get("nodeName") == node for p in ctx.server.node_agent_pods())


async def _wait_terminal(ctx, plural: str, names: list[str], timeout_seconds: float) -> list[dict]:
    """Wait (lab clock) until every named PVB/PVR is terminal; cancel those still running at timeout."""
    deadline = ctx.server.clock.time() + timeout_seconds
    while True:
        objs = [ctx.store.get_or_none(GROUP, plural, ctx.server.namespace, n) for n in names]
        objs = [o for o in objs if o is not None]
        if all((o.get("status") or {}).get("phase") in TERMINAL for o in objs):
            return objs
        if ctx.server.clock.time() >= deadline:
            for o in objs:
                if (o.get("status") or {}).get("phase") not in TERMINAL:
                    ctx.store.patch(GROUP, plural, ctx.server.namespace, o["metadata"]["name"],
                                    {"spec": {"cancel": True}, "status": {
                                        "phase": "Canceled", "message": "timed out waiting for all PodVolume operations to complete",
                                        "completionTimestamp": now_rfc3339(ctx.server.clock)}}, "merge")
            return [ctx.store.get_or_none(GROUP, plural, ctx.server.namespace, n) for n in names]
        await asyncio.sleep(0.05)


def _timeout_seconds(ctx, obj: dict) -> float:
    from .server_config import parse_duration
    text = (obj["metadata"].get("annotations") or {}).get("velero.io/pod-volume-timeout")
    if text:
        try:
            return parse_duration(text).total_seconds()
        except ValueError:
            pass
    return ctx.server.config.fs_backup_timeout.total_seconds()


# ---- backup -----------------------------------------------------------------------------

async def backup_pod_volumes(ctx, backup: dict, pod: dict, volume_names: list[str] | None = None) -> list[dict]:
    if volume_names is None:
        volume_names = select_fs_backup_volumes(backup, pod)
    if not volume_names:
        return []
    pm = pod["metadata"]
    node = (pod.get("spec") or {}).get("nodeName")
    if not node_agent_on(ctx, node):
        raise PodVolumeBackupError([f"daemonset pod not found in running state in node {node}"])
    bsl = backup["spec"].get("storageLocation") or "default"
    ensure_backup_repository(ctx, pm["namespace"], bsl)
    bm = backup["metadata"]
    names = []
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    seen_claims = set()
    for vol_name in volume_names:
        vol = volumes.get(vol_name, {})
        labels = {"velero.io/backup-name": label_safe(bm["name"]), "velero.io/backup-uid": bm["uid"]}
        annotations = {}
        tags = {"backup": bm["name"], "backup-uid": bm["uid"], "pod": pm["name"], "pod-uid": pm["uid"],
                "ns": pm["namespace"], "volume": vol_name}
        claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            if claim in seen_claims:  # a PVC mounted twice is backed up once
                continue
            seen_claims.add(claim)
            pvc = ctx.store.get_or_none("", "persistentvolumeclaims", pm["namespace"], claim)
            if pvc is not None:
                labels["velero.io/pvc-uid"] = pvc["metadata"]["uid"]
                tags["pvc-uid"] = pvc["metadata"]["uid"]
            annotations["velero.io/pvc-name"] = claim
        pvb = ctx.store.create(GROUP, "podvolumebackups", ctx.server.namespace, {
            "apiVersion": "velero.io/v1", "kind": "PodVolumeBackup",
            "metadata": {"generateName": f"{bm['name']}-", "namespace": ctx.server.namespace, "labels": labels,
                         "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "velero.io/v1", "kind": "Backup", "name": bm["name"],
                                              "uid": bm["uid"], "controller": True}]},
            "spec": {"node": node, "pod": {"kind": "Pod", "namespace": pm["namespace"], "name": pm["name"],
                                           "uid": pm["uid"]},
                     "volume": vol_name, "backupStorageLocation": bsl, "repoIdentifier": "",
                     "uploaderType": "kopia", "tags": tags},
            "status": {"phase": "New", "progress": {}},
        })
        names.append(pvb["metadata"]["name"])
    return await _wait_terminal(ctx, "podvolumebackups", names, _timeout_seconds(ctx, backup))


# ---- restore ----------------------------------------------------------------------------

def pod_volume_backups_for(store, namespace: str, backup_name: str, pod_namespace: str, pod_name: str) -> list[dict]:
    """PVBs of a backup for one (source) pod that hold a snapshot (restores find them by label)."""
    pvbs = store.list(GROUP, "podvolumebackups", namespace,
                      label_selector=f"velero.io/backup-name={label_safe(backup_name)}")["items"]
    return [p for p in pvbs
            if (p["spec"].get("pod") or {}).get("namespace") == pod_namespace
            and (p["spec"].get("pod") or {}).get("name") == pod_name
            and (p.get("status") or {}).get("snapshotID")]


def create_pod_volume_restores(ctx, restore: dict, pod: dict, pvbs: list[dict], source_namespace: str) -> list[str]:
    """One PVR per PVB with a snapshot, for the restored `pod` (target namespace)."""
    rm, pm = restore["metadata"], pod["metadata"]
    names = []
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    for pvb in pvbs:
        vol = pvb["spec"]["volume"]
        labels = {"velero.io/restore-name": label_safe(rm["name"]), "velero.io/restore-uid": rm["uid"],
                  "velero.io/pod-uid": pm["uid"]}
        claim = ((volumes.get(vol) or {}).get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            pvc = ctx.store.get_or_none("", "persistentvolumeclaims", pm["namespace"], claim)
            if pvc is not None:
                labels["velero.io/pvc-uid"] = pvc["metadata"]["uid"]
        pvr = ctx.store.create(GROUP, "podvolumerestores", ctx.server.namespace, {
            "apiVersion": "velero.io/v1", "kind": "PodVolumeRestore",
            "metadata": {"generateName": f"{rm['name']}-", "namespace": ctx.server.namespace, "labels": labels,
                         "ownerReferences": [{"apiVersion": "velero.io/v1", "kind": "Restore", "name": rm["name"],
                                              "uid": rm["uid"], "controller": True}]},
            "spec": {"pod": {"kind": "Pod", "namespace": pm["namespace"], "name": pm["name"], "uid": pm["uid"]},
                     "volume": vol, "snapshotID": pvb["status"]["snapshotID"],
                     "snapshotSize": int(((pvb["status"].get("progress") or {}).get("totalBytes")) or 0),
                     "backupStorageLocation": pvb["spec"].get("backupStorageLocation", "default"),
                     "repoIdentifier": "", "uploaderType": "kopia", "sourceNamespace": source_namespace},
            "status": {"phase": "New", "progress": {}},
        })
        names.append(pvr["metadata"]["name"])
    return names


async def wait_pod_volume_restores(ctx, restore: dict, names: list[str]) -> list[dict]:
    return await _wait_terminal(ctx, "podvolumerestores", names, _timeout_seconds(ctx, restore))


# ---- the node-agent ---------------------------------------------------------------------

class NodeAgentController(VeleroController):
    """The node-agent DaemonSet's data path: PVBs and PVRs in phase New on a node with a Ready
    node-agent pod go Accepted -> Prepared -> InProgress (byte progress) -> Completed/Failed."""

    name = "node-agent"
    watches = [(GROUP, "podvolumebackups"), (GROUP, "podvolumerestores"), ("", "pods"),
               ("", "persistentvolumeclaims")]

    def keys_for(self, etype, obj):
        m = obj.get("metadata") or {}
        kind = obj.get("kind")
        if kind == "PersistentVolumeClaim":
            # a restored PVC getting bound: waiting PVRs of pods in its namespace can go on
            return [("podvolumerestores", p["metadata"]["name"]) for p in self.list("podvolumerestores")
                    if (p["spec"].get("pod") or {}).get("namespace") == m.get("namespace")
                    and (p.get("status") or {}).get("phase") in (None, "", "New")]
        if kind == "Pod":
            # a node-agent pod becoming Ready, or a restored pod getting scheduled/bound
            if m.get("namespace") == self.namespace and (m.get("labels") or {}).get("name") == "node-agent":
                return [("podvolumebackups", p["metadata"]["name"]) for p in self.list("podvolumebackups")] + \
                       [("podvolumerestores", p["metadata"]["name"]) for p in self.list("podvolumerestores")]
            return [("podvolumerestores", p["metadata"]["name"]) for p in self.list("podvolumerestores")
                    if (p["spec"].get("pod") or {}).get("name") == m.get("name")
                    and (p["spec"].get("pod") or {}).get("namespace") == m.get("namespace")]
        if m.get("namespace") != self.namespace or etype == "DELETED":
            return ()
        if (obj.get("status") or {}).get("phase") not in (None, "", "New"):
            return ()
        return [("podvolumebackups" if kind == "PodVolumeBackup" else "podvolumerestores", m["name"])]

    async def reconcile(self, key):
        plural, name = key
        obj = self.get(plural, name)
        if obj is None or (obj.get("status") or {}).get("phase") not in (None, "", "New"):
            return
        if obj["spec"].get("cancel"):
            self.patch(plural, name, {"status": {"phase": "Canceled", "completionTimestamp": self.now()}})
            return
        if plural == "podvolumebackups":
            await self._run_backup(obj)
        else:
            await self._run_restore(obj)

    def _repository(self, bsl_name: str, volume_namespace: str) -> FsRepository:
        bs = self.server.backup_store_for(bsl_name)
        return FsRepository(bs, volume_namespace, repository_password(self.store, self.namespace))

    async def _track(self, plural: str, name: str, work, progress: Progress):
        """Run blocking `work` in a thread, patching status.progress while it runs."""
        task = asyncio.ensure_future(run_blocking(work))
        last = None
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_PATCH_SECONDS)
            current = (progress.total_bytes, progress.bytes_done)
            if current != last and not task.done():
                last = current
                self.patch(plural, name, {"status": {"progress": {
                    "totalBytes": progress.total_bytes, "bytesDone": progress.bytes_done}}})
        return task.result()

    def _accept(self, plural: str, name: str):
        self.patch(plural, name, {"status": {"phase": "Accepted", "acceptedTimestamp": self.now()}})
        self.patch(plural, name, {"status": {"phase": "Prepared"}})
        self.patch(plural, name, {"status": {"phase": "InProgress", "startTimestamp": self.now()}})

    def _fail(self, plural: str, name: str, message: str):
        self.patch(plural, name, {"status": {"phase": "Failed", "message": message,
                                             "completionTimestamp": self.now()}})

    async def _run_backup(self, pvb: dict):
        name, spec = pvb["metadata"]["name"], pvb["spec"]
        if not node_agent_on(self, spec.get("node")):
            return  # no node-agent there: nobody picks it up (the backup times out)
        pod_ref = spec.get("pod") or {}
        pod = self.store.get_or_none("", "pods", pod_ref.get("namespace"), pod_ref.get("name"))
        self._accept("podvolumebackups", name)
        if pod is None:
            self._fail("podvolumebackups", name, f"error getting pod {pod_ref.get('namespace')}/{pod_ref.get('name')}: "
                                                 f"pods \"{pod_ref.get('name')}\" not found")
            return
        directory = volume_directory(self.cluster, pod, spec["volume"])
        if directory is None or not directory.is_dir():
            self._fail("podvolumebackups", name,
                       f"error exposing host path for pod volume: no volume directory found for volume {spec['volume']}")
            return
        progress = Progress()
        repo = self._repository(spec.get("backupStorageLocation", "default"), pod_ref["namespace"])
        started = self.now()
        source = {"host": pod_ref["namespace"], "userName": "default", "path": f"/host_pods/{pod_ref.get('uid')}/volumes/{spec['volume']}"}

        def work():
            repo.open_or_create()
            return repo.snapshot(directory, dict(spec.get("tags") or {}), source, started,
                                 lambda: now_rfc3339(self.clock), progress)
        try:
            snapshot_id, total = await self._track("podvolumebackups", name, work, progress)
        except (RepositoryError, ObjectStoreError, OSError) as exc:
            self._fail("podvolumebackups", name, f"error running kopia backup: {exc}")
            return
        status = {"phase": "Completed", "completionTimestamp": self.now(), "path": source["path"],
                  "progress": {"totalBytes": total, "bytesDone": total},
                  "incrementalBytes": progress.incremental_bytes}
        if snapshot_id is None:
            status["message"] = "volume was empty so no snapshot was taken"
        else:
            status["snapshotID"] = snapshot_id
        self.patch("podvolumebackups", name, {"status": status})

    async def _run_restore(self, pvr: dict):
        name, spec = pvr["metadata"]["name"], pvr["spec"]
        pod_ref = spec.get("pod") or {}
        pod = self.store.get_or_none("", "pods", pod_ref.get("namespace"), pod_ref.get("name"))
        if pod is None:
            return  # re-queued by the pod's events
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or not node_agent_on(self, node):
            return  # not scheduled yet / no node-agent there: wait
        directory = volume_directory(self.cluster, pod, spec["volume"])
        if directory is None:
            return  # PVC not bound yet
        self._accept("podvolumerestores", name)
        self.patch("podvolumerestores", name, {"status": {"node": node}})
        progress = Progress()
        repo = self._repository(spec.get("backupStorageLocation", "default"), spec["sourceNamespace"])
        restore_uid = (pvr["metadata"].get("labels") or {}).get("velero.io/restore-uid", "")

        def work():
            repo.open_or_create()
            total = repo.restore(spec["snapshotID"], directory, progress)
            # restore-wait reads this marker; the helper removes .velero when all volumes are done
            marker = directory / RESTORE_MARKER_DIR
            marker.mkdir(exist_ok=True)
            (marker / restore_uid).write_text("")
            return total
        try:
            total = await self._track("podvolumerestores", name, work, progress)
        except (RepositoryError, ObjectStoreError, OSError) as exc:
            self._fail("podvolumerestores", name, f"error running kopia restore: {exc}")
            return
        self.patch("podvolumerestores", name, {"status": {
            "phase": "Completed", "completionTimestamp": self.now(),
            "progress": {"totalBytes": total, "bytesDone": total}}})
        await self._finish_restore_wait(pod)

    async def _finish_restore_wait(self, pod: dict):
        """The restore-wait helper's last step: once every volume of the pod is restored,
        remove the `.velero` markers."""
        if not restore_wait_satisfied(self.store, pod):
            return
        dirs = [volume_directory(self.cluster, pod, p["spec"]["volume"]) for p in self.list(
            "podvolumerestores", label_selector=f"velero.io/pod-uid={pod['metadata']['uid']}")]
        for d in dirs:
            if d is not None:
                await run_blocking(shutil.rmtree, d / RESTORE_MARKER_DIR, True)


def restore_wait_satisfied(store, pod: dict) -> bool:
    """What the `restore-wait` init container (velero-restore-helper) waits for: every pod volume
    restore of this pod finished (the node-agent also writes `.velero/<restore-uid>` into each
    volume, and removes it once all are done, as the helper does). For the workloads' kubelet
    emulation: keep the pod in Init while this is False."""
    init = next((c for c in (pod.get("spec") or {}).get("initContainers") or [] if c.get("name") == "restore-wait"), None)
    if init is None:
        return True
    pvrs = store.list(GROUP, "podvolumerestores", None,
                      label_selector=f"velero.io/pod-uid={pod['metadata'].get('uid', '')}")["items"]
    return all((p.get("status") or {}).get("phase") in TERMINAL for p in pvrs)
