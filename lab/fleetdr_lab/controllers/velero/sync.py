"""Backup sync controller: bucket -> Backup CRs in every cluster sharing a BSL root.

Periodic (1m wall-time ticker gated per BSL by lastSyncedTime + period) plus the lab control route
`POST /velero/sync {"cluster": name|null}` that syncs now, regardless of the period.

Upstream source: Velero pkg/controller/backup_sync_controller.go.
"""
from __future__ import annotations

import asyncio

from ...store import fast_copy
from .server_config import parse_duration
from .backup_store import ObjectStoreError, run_blocking
from .server import GROUP, SERVERS, VeleroController, label_safe, parse_time

IN_FLIGHT_PREFIXES = ("WaitingForPluginOperations", "Finalizing")


class BackupSyncController(VeleroController):
    name = "backup-sync"
    watches: list = []        # BSL create/update events do not trigger a sync (10.1)
    # Real ticker: 1m, each BSL synced when its own period has passed. A 1s ticker keeps the
    # same per-BSL gate but lets short periods (tests) take effect quickly.
    resync_seconds = 1.0

    def __init__(self, server):
        super().__init__(server)
        self._lock = asyncio.Lock()

    def _period(self, bsl: dict):
        value = (bsl.get("spec") or {}).get("backupSyncPeriod")
        if value is None:
            return self.config.backup_sync_period
        try:
            d = parse_duration(value)
        except ValueError:
            return self.config.backup_sync_period
        if d.total_seconds() < 0:
            return self.config.backup_sync_period
        return d

    async def resync(self):
        await self.sync_all(force=False)

    async def sync_all(self, force: bool = False) -> dict:
        """Sync every BSL (default first); returns {bsl: number of Backup CRs created}."""
        result = {}
        async with self._lock:
            # read-only: checked every second, synced (on a copy) only when due
            bsls = sorted(self.list("backupstoragelocations", shared=True),
                          key=lambda b: (not (b.get("spec") or {}).get("default"), b["metadata"]["name"]))
            now = self.clock.now()
            for bsl in bsls:
                period = self._period(bsl)
                if period.total_seconds() == 0:
                    continue   # backupSyncPeriod 0 disables sync of this BSL, also on demand
                last = parse_time((bsl.get("status") or {}).get("lastSyncedTime"))
                if not force and last is not None and now < last + period:
                    continue
                try:
                    result[bsl["metadata"]["name"]] = await self.sync_bsl(fast_copy(bsl))
                except Exception as exc:
                    self.log.warning("sync of BSL %s failed: %s", bsl["metadata"]["name"], exc)
                    result[bsl["metadata"]["name"]] = f"error: {exc}"
        return result

    async def sync_bsl(self, bsl: dict) -> int | str:
        name = bsl["metadata"]["name"]
        if (bsl.get("status") or {}).get("phase") != "Available":
            return "skipped: BSL not Available"
        # Only CRs already terminal *before* listing storage can be orphans; a backup
        # finishing while the listing runs is in storage but not in `in_storage`.
        terminal_before = {b["metadata"]["name"] for b in self.list("backups")
                           if (b.get("status") or {}).get("phase") in ("Completed", "PartiallyFailed")}
        try:
            bs = self.server.backup_store(bsl)
            in_storage = set(await run_blocking(bs.list_backups))
        except ObjectStoreError as exc:
            return f"error: {exc}"
        in_cluster = {b["metadata"]["name"]: b for b in self.list("backups")}
        created = 0
        for backup_name in sorted(in_storage - set(in_cluster)):
            try:
                if not await run_blocking(bs.backup_exists, backup_name):
                    continue
                meta = await run_blocking(bs.get_backup_metadata, backup_name)
            except ObjectStoreError as exc:
                self.log.warning("sync: reading %s failed: %s", backup_name, exc)
                continue
            status = meta.get("status") or {}
            phase = status.get("phase", "")
            if phase.startswith(IN_FLIGHT_PREFIXES):
                exp = parse_time(status.get("expiration"))
                if exp is None or exp > self.clock.now():
                    continue
                status["phase"] = "PartiallyFailed"
            m = meta.get("metadata") or {}
            labels = dict(m.get("labels") or {})
            labels["velero.io/storage-location"] = label_safe(name)
            owners = []
            for ref in m.get("ownerReferences") or []:
                if ref.get("kind") == "Schedule":
                    sched = self.get("schedules", ref.get("name", ""))
                    if sched is None or sched["metadata"].get("uid") != ref.get("uid"):
                        continue
                owners.append(ref)
            new_meta = {"name": backup_name, "namespace": self.namespace, "labels": labels}
            if m.get("annotations"):
                new_meta["annotations"] = m["annotations"]
            if owners:
                new_meta["ownerReferences"] = owners
            spec = dict(meta.get("spec") or {})
            spec["storageLocation"] = name
            obj = {"apiVersion": "velero.io/v1", "kind": "Backup", "metadata": new_meta,
                   "spec": spec, "status": status}
            try:
                new = self.store.create(GROUP, "backups", self.namespace, obj)
            except Exception as exc:
                if getattr(exc, "code", None) == 409:
                    continue
                self.log.warning("sync: creating Backup %s failed: %s", backup_name, exc)
                continue
            created += 1
            await self._sync_pod_volume_backups(bs, bsl, new)
        # Orphans: Completed/PartiallyFailed backups of this BSL whose directory vanished.
        for b in self.list("backups", label_selector=f"velero.io/storage-location={label_safe(name)}"):
            if b["metadata"]["name"] in in_storage or b["metadata"]["name"] not in terminal_before:
                continue
            if (b.get("status") or {}).get("phase") not in ("Completed", "PartiallyFailed"):
                continue
            try:
                self.store.delete(GROUP, "backups", self.namespace, b["metadata"]["name"])
            except Exception as exc:
                self.log.debug("sync: deleting orphan %s: %s", b["metadata"]["name"], exc)
        if self.get("backupstoragelocations", name) is not None:
            self.patch("backupstoragelocations", name, {"status": {"lastSyncedTime": self.now()}})
        return created

    async def _sync_pod_volume_backups(self, bs, bsl: dict, backup: dict):
        try:
            pvbs = await run_blocking(bs.get_pod_volume_backups, backup["metadata"]["name"])
        except ObjectStoreError:
            return
        uid = backup["metadata"]["uid"]
        for pvb in pvbs or []:
            m = dict(pvb.get("metadata") or {})
            labels = dict(m.get("labels") or {})
            labels["velero.io/backup-uid"] = uid
            refs = []
            for ref in m.get("ownerReferences") or []:
                ref = dict(ref)
                if ref.get("kind") == "Backup":
                    ref["uid"] = uid
                refs.append(ref)
            new_meta = {"name": m.get("name"), "namespace": self.namespace, "labels": labels,
                        "ownerReferences": refs}
            if m.get("annotations"):
                new_meta["annotations"] = m["annotations"]
            spec = dict(pvb.get("spec") or {})
            spec["backupStorageLocation"] = bsl["metadata"]["name"]
            obj = {"apiVersion": "velero.io/v1", "kind": "PodVolumeBackup", "metadata": new_meta,
                   "spec": spec, "status": pvb.get("status") or {}}
            try:
                self.store.create(GROUP, "podvolumebackups", self.namespace, obj)
            except Exception as exc:
                self.log.debug("sync: PVB %s: %s", m.get("name"), exc)


class VeleroNotRunning(Exception):
    """sync_now was asked for a cluster that runs no Velero server."""


async def sync_now(cluster: str | None = None) -> dict:
    """Sync every BSL of that cluster's Velero (or of every running Velero) now, regardless of
    the period (the lab control route `POST /velero/sync` of the daemon)."""
    names = [cluster] if cluster else sorted(SERVERS)
    out = {}
    for cname in names:
        server = SERVERS.get(cname)
        if server is None:
            if cluster:
                raise VeleroNotRunning(cname)
            continue
        ctrl = server.controller(BackupSyncController)
        if ctrl is None:
            out[cname] = "backup-sync controller disabled"
            continue
        out[cname] = await ctrl.sync_all(force=True)
    return {"synced": out}
