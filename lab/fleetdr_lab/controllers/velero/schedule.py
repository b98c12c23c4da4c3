"""Schedule controller, driven by the lab clock.

Reconciles on every Schedule event and on a 1-minute tick of lab time; `fleetdr-lab clock
advance` wakes the tick early (Clock.sleep_until), so a schedule due after an advance fires
without anyone waiting for wall time.

Upstream source: Velero pkg/controller/schedule_controller.go,
pkg/apis/velero/v1/schedule_types.go.
"""
from __future__ import annotations

import asyncio
import copy

from ...store import ApiError
from .schedule_cron import validate_schedule
from .server import GROUP, VeleroController, label_safe, parse_time

SCHEDULE_NAME_LABEL = "velero.io/schedule-name"
TICK_SECONDS = 60.0
BLOCKING_PHASES = ("", "New", "InProgress")


def backup_name(schedule_name: str, now) -> str:
    return f"{schedule_name}-{now.strftime('%Y%m%d%H%M%S')}"


class ScheduleController(VeleroController):
    name = "schedule"
    watches = [(GROUP, "schedules")]

    def keys_for(self, etype, obj):
        if etype == "DELETED":
            return ()
        return super().keys_for(etype, obj)

    async def run(self):
        ticker = asyncio.create_task(self._tick_loop(), name=f"{self.name}:lab-clock")
        try:
            await super().run()
        finally:
            ticker.cancel()

    async def _tick_loop(self):
        """Every minute of lab time, and right after any clock advance: re-check every schedule."""
        while True:
            try:
                await self._wait_tick()
                for sched in self.list("schedules"):
                    self.enqueue(sched["metadata"]["name"])
            except asyncio.CancelledError:
                raise
            except Exception:  # keep ticking whatever happened
                self.log.exception("schedule tick failed")
                await asyncio.sleep(1.0)

    async def _wait_tick(self):
        if not hasattr(self.clock, "_event"):
            await self.clock.sleep(TICK_SECONDS)
            return
        deadline = self.clock.time() + TICK_SECONDS
        while self.clock.time() < deadline:
            # the clock's advance event wakes every waiter (TODO daemon owner: a public
            # `wait_advance()` would avoid reaching into Clock._event)
            event = self.clock._event()
            try:
                await asyncio.wait_for(event.wait(), timeout=max(0.0, deadline - self.clock.time()))
                return
            except asyncio.TimeoutError:
                pass

    def reconcile(self, name):
        sched = self.get("schedules", name)
        if sched is None or sched["metadata"].get("deletionTimestamp"):
            return
        spec = sched.get("spec") or {}
        if spec.get("paused"):
            return  # paused schedules are not reconciled at all
        status = sched.get("status") or {}
        now = self.clock.now()
        patch: dict = {}
        skip = spec.get("skipImmediately")
        if skip is None:
            skip = self.config.schedule_skip_immediately
        if skip:
            patch.setdefault("status", {})["lastSkipped"] = self.now()
        if spec.get("skipImmediately") is not False:
            patch.setdefault("spec", {})["skipImmediately"] = False
        cron, errors = validate_schedule(spec.get("schedule"))
        phase = "FailedValidation" if errors else "Enabled"
        if status.get("phase") != phase:
            patch.setdefault("status", {})["phase"] = phase
        if errors != (status.get("validationErrors") or []):
            patch.setdefault("status", {})["validationErrors"] = errors or None
        if patch:
            sched = self.patch("schedules", name, patch)
            status = sched.get("status") or {}
        if phase != "Enabled":
            return
        # a backup of this schedule still New/InProgress: this tick is simply missed
        for b in self.list("backups", label_selector=f"{SCHEDULE_NAME_LABEL}={label_safe(name)}"):
            if (b.get("status") or {}).get("phase", "") in BLOCKING_PHASES:
                return
        base = parse_time(status.get("lastBackup")) or parse_time(sched["metadata"].get("creationTimestamp"))
        skipped = parse_time(status.get("lastSkipped"))
        if skipped and skipped > base:
            base = skipped
        next_run = cron.next(base)
        if not now > next_run:
            return
        self._submit_backup(sched, now)

    def _submit_backup(self, sched: dict, now):
        meta = sched["metadata"]
        spec = sched["spec"]
        template = copy.deepcopy(spec.get("template") or {})
        template_labels = (template.get("metadata") or {}).get("labels")
        labels = dict(template_labels if template_labels is not None else (meta.get("labels") or {}))
        labels[SCHEDULE_NAME_LABEL] = label_safe(meta["name"])
        backup = {
            "apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": backup_name(meta["name"], now), "namespace": self.namespace, "labels": labels},
            "spec": template,
        }
        if meta.get("annotations"):
            backup["metadata"]["annotations"] = dict(meta["annotations"])
        if spec.get("useOwnerReferencesInBackup"):
            backup["metadata"]["ownerReferences"] = [{
                "apiVersion": "velero.io/v1", "kind": "Schedule", "name": meta["name"], "uid": meta["uid"],
                "controller": True}]
        try:
            self.store.create(GROUP, "backups", self.namespace, backup)
        except ApiError as exc:
            self.log.warning("schedule %s: creating backup %s failed: %s", meta["name"],
                             backup["metadata"]["name"], exc.message)
            return
        self.patch("schedules", meta["name"], {"status": {"lastBackup": self.now()}})
