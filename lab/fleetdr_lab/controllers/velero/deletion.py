"""DeleteBackupRequest processing.

Upstream source: Velero pkg/controller/backup_deletion_controller.go, pkg/backup/delete_helpers.go.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta

from .backup_store import ObjectStoreError, run_blocking
from .server import GROUP, VeleroController, label_safe, parse_time

PLURAL = "deletebackuprequests"


class BackupDeletionController(VeleroController):
    name = "backup-deletion"
    watches = [(GROUP, PLURAL)]
    resync_seconds = 600.0   # real: hourly cleanup of processed requests older than 24h

    async def resync(self):
        now = self.clock.now()
        for dbr in self.list(PLURAL):
            st = dbr.get("status") or {}
            created = parse_time(dbr["metadata"].get("creationTimestamp"))
            if st.get("phase") in ("InProgress", "Processed") and created and now - created > timedelta(hours=24):
                self._delete_quietly(PLURAL, dbr["metadata"]["name"])

    def _delete_quietly(self, plural, name):
        try:
            self.store.delete(GROUP, plural, self.namespace, name)
        except Exception:
            pass

    def _processed(self, name, errors):
        self.patch(PLURAL, name, {"status": {"phase": "Processed", "errors": errors}})

    async def reconcile(self, key):
        dbr = self.get(PLURAL, key)
        if dbr is None:
            return
        phase = (dbr.get("status") or {}).get("phase", "")
        if phase in ("InProgress", "Processed"):
            return
        backup_name = (dbr.get("spec") or {}).get("backupName", "")
        if not backup_name:
            self._processed(key, ["spec.backupName is required"])
            return
        # other requests for the same backup are removed
        for other in self.list(PLURAL, label_selector=f"velero.io/backup-name={label_safe(backup_name)}"):
            if other["metadata"]["name"] != key:
                self._delete_quietly(PLURAL, other["metadata"]["name"])
        if backup_name in self.server.running_backups:
            self._processed(key, ["backup is still in progress"])
            return
        backup = self.get("backups", backup_name)
        if backup is None:
            self._processed(key, ["backup not found"])
            return
        bsl_name = (backup.get("spec") or {}).get("storageLocation", "")
        bsl = self.get("backupstoragelocations", bsl_name)
        if bsl is None:
            self._processed(key, [f'backup storage location {bsl_name} not found'])
            return
        if (bsl.get("spec") or {}).get("accessMode") == "ReadOnly":
            self._processed(key, [f"cannot delete backup because backup storage location {bsl_name} "
                                  "is currently in read-only mode"])
            return
        if (bsl.get("status") or {}).get("phase") != "Available":
            self._processed(key, [f"cannot delete backup because backup storage location {bsl_name} "
                                  "is currently unavailable"])
            return
        uid = backup["metadata"]["uid"]
        labels = dict(dbr["metadata"].get("labels") or {})
        labels.setdefault("velero.io/backup-name", label_safe(backup_name))
        labels.setdefault("velero.io/backup-uid", uid)
        self.patch(PLURAL, key, {"metadata": {"labels": labels}, "status": {"phase": "InProgress"}})
        self.patch("backups", backup_name, {"status": {"phase": "Deleting"}})
        errors: list[str] = []
        try:
            bs = self.server.backup_store(bsl)
            await run_blocking(bs.delete_backup, backup_name)
        except ObjectStoreError as exc:
            errors.append(str(exc))
        # Restores of this backup go too (their finalizer cleans restores/<name>/).
        restores = [r for r in self.list("restores") if (r.get("spec") or {}).get("backupName") == backup_name]
        for r in restores:
            self._delete_quietly("restores", r["metadata"]["name"])
        for _ in range(100):
            if not any(self.get("restores", r["metadata"]["name"]) for r in restores):
                break
            await asyncio.sleep(0.1)
        if not errors:
            self._delete_quietly("backups", backup_name)
        self._processed(key, errors or None)
        if not errors:
            for d in self.list(PLURAL, label_selector=f"velero.io/backup-name={label_safe(backup_name)},"
                                                      f"velero.io/backup-uid={uid}"):
                self._delete_quietly(PLURAL, d["metadata"]["name"])
