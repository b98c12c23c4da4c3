"""Garbage collection of expired backups, driven by the lab clock.

Runs on every Backup create event and every --garbage-collection-frequency of lab time (so
`fleetdr-lab clock advance 721h` wakes it and expires 30-day backups at once).

Upstream source: Velero pkg/controller/gc_controller.go.
"""
from __future__ import annotations

import asyncio

from .server import GROUP, VeleroController, label_safe, parse_time

GC_LABEL = "velero.io/gc-failure"


class GCController(VeleroController):
    name = "gc"
    watches = [(GROUP, "backups")]

    def __init__(self, server):
        super().__init__(server)
        self._seen: set[str] = set()

    async def run(self):
        ticker = asyncio.create_task(self._lab_clock_loop(), name="gc:ticker")
        try:
            await super().run()
        finally:
            ticker.cancel()

    async def _lab_clock_loop(self):
        freq = self.config.garbage_collection_frequency.total_seconds()
        while True:
            await self.clock.sleep(freq)
            for b in self.list("backups"):
                self.enqueue(b["metadata"]["name"])

    def keys_for(self, etype, obj):
        m = obj.get("metadata") or {}
        if m.get("namespace") != self.namespace:
            return ()
        uid = m.get("uid")
        if etype == "ADDED" and uid not in self._seen:  # create events only
            self._seen.add(uid)
            return (m.get("name"),)
        if etype == "DELETED":
            self._seen.discard(uid)
        return ()

    def reconcile(self, key):
        b = self.get("backups", key)
        if b is None:
            return
        exp = parse_time((b.get("status") or {}).get("expiration"))
        if exp is None or exp > self.clock.now():
            return
        labels = dict(b["metadata"].get("labels") or {})
        bsl_name = (b.get("spec") or {}).get("storageLocation", "")
        bsl = self.get("backupstoragelocations", bsl_name) if bsl_name else None
        if bsl is None:
            self._label(key, labels, "BSLNotFound")
            return
        if (bsl.get("spec") or {}).get("accessMode") == "ReadOnly":
            self._label(key, labels, "BSLReadOnly")
            return
        if (bsl.get("status") or {}).get("phase") != "Available":
            self.enqueue_after(5.0, key)   # error, retried
            return
        if GC_LABEL in labels:
            self.patch("backups", key, {"metadata": {"labels": {GC_LABEL: None}}})
        uid = b["metadata"]["uid"]
        selector = f"velero.io/backup-name={label_safe(key)},velero.io/backup-uid={uid}"
        for dbr in self.list("deletebackuprequests", label_selector=selector):
            if (dbr.get("status") or {}).get("phase", "") in ("", "New", "InProgress"):
                return
        self.store.create(GROUP, "deletebackuprequests", self.namespace, {
            "apiVersion": "velero.io/v1", "kind": "DeleteBackupRequest",
            "metadata": {"generateName": f"{key}-", "namespace": self.namespace,
                         "labels": {"velero.io/backup-name": label_safe(key), "velero.io/backup-uid": uid}},
            "spec": {"backupName": key}})

    def _label(self, key, labels, value):
        if labels.get(GC_LABEL) != value:
            self.patch("backups", key, {"metadata": {"labels": {GC_LABEL: value}}})
