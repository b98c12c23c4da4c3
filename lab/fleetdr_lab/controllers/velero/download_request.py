"""DownloadRequest controller: presigned URLs for backup/restore files.

`spec.target.kind` maps 1:1 onto the object-store keys of layout.py; the URL is presigned for 10
minutes, `status.expiration` = now + 10m, and the request is deleted once expired.

Upstream source: Velero pkg/controller/download_request_controller.go.
"""
from __future__ import annotations

from datetime import timedelta

from .backup_store import ObjectStoreError, run_blocking
from .server import GROUP, VeleroController, parse_time

PLURAL = "downloadrequests"
DOWNLOAD_URL_TTL = timedelta(minutes=10)

BACKUP_TARGETS = {
    "BackupLog": "backup_log_key", "BackupContents": "backup_contents_key",
    "BackupVolumeSnapshots": "backup_volume_snapshots_key",
    "BackupItemOperations": "backup_item_operations_key",
    "BackupResourceList": "backup_resource_list_key", "BackupResults": "backup_results_key",
    "CSIBackupVolumeSnapshots": "csi_volume_snapshots_key",
    "CSIBackupVolumeSnapshotContents": "csi_volume_snapshot_contents_key",
    "BackupVolumeInfos": "backup_volume_info_key",
}
RESTORE_TARGETS = {
    "RestoreLog": "restore_log_key", "RestoreResults": "restore_results_key",
    "RestoreResourceList": "restore_resource_list_key",
    "RestoreItemOperations": "restore_item_operations_key", "RestoreVolumeInfo": "restore_volume_info_key",
}


class DownloadRequestController(VeleroController):
    name = "download-request"
    watches = [(GROUP, PLURAL)]
    resync_seconds = 60.0

    async def reconcile(self, key):
        dr = self.get(PLURAL, key)
        if dr is None:
            return
        st = dr.get("status") or {}
        if st.get("phase") == "Processed":
            exp = parse_time(st.get("expiration"))
            if exp is not None and exp <= self.clock.now():
                try:
                    self.store.delete(GROUP, PLURAL, self.namespace, key)
                except Exception:
                    pass
            return
        target = (dr.get("spec") or {}).get("target") or {}
        kind, name = target.get("kind", ""), target.get("name", "")
        backup_name = name
        if kind in RESTORE_TARGETS:
            restore = self.get("restores", name)
            if restore is None:
                self.log.info("download request %s: restore %s not found", key, name)
                return   # real controller returns an error and retries; the request stays New
            backup_name = (restore.get("spec") or {}).get("backupName", "")
        elif kind not in BACKUP_TARGETS:
            self.log.info("download request %s: unsupported target kind %s", key, kind)
            return
        backup = self.get("backups", backup_name)
        if backup is None:
            self.log.info("download request %s: backup %s not found", key, backup_name)
            return
        bsl_name = (backup.get("spec") or {}).get("storageLocation", "")
        try:
            store = self.server.backup_store_for(bsl_name)
            method = BACKUP_TARGETS.get(kind) or RESTORE_TARGETS[kind]
            object_key = getattr(store.layout, method)(name)
            url = await run_blocking(store.presign, object_key, int(DOWNLOAD_URL_TTL.total_seconds()))
        except ObjectStoreError as exc:
            self.log.info("download request %s: %s", key, exc)
            return
        expiration = self.clock.now() + DOWNLOAD_URL_TTL
        self.patch(PLURAL, key, {"status": {"phase": "Processed", "downloadURL": url,
                                            "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}})

    async def resync(self):
        for dr in self.list(PLURAL):
            if (dr.get("status") or {}).get("phase") == "Processed":
                self.enqueue(dr["metadata"]["name"])
