"""CronJobs (Kubernetes pkg/controller/cronjob) on the lab clock."""
from __future__ import annotations

import asyncio
import copy
import datetime as dt

from ..base import Controller, controller_ref, is_deleting, meta, owned_by, owner_reference, rfc3339


class CronJobController(Controller):
    """CronJobs on the lab clock: `fleetdr-lab clock advance` makes schedules fire without sleeping.

    Like the real controller it creates at most one Job per pass, for the most recent missed
    schedule (`<cronjob>-<minutes since epoch>`), honours suspend, concurrencyPolicy and
    startingDeadlineSeconds, and trims finished Jobs to the history limits. One sleeper per
    cluster waits for the earliest next schedule (woken early by clock advances); none when a
    cluster has no CronJobs.
    """

    name = "cronjob"
    watches = [("batch", "cronjobs"), ("batch", "jobs")]

    def __init__(self, cluster):
        super().__init__(cluster)
        self._next: dict[tuple, float] = {}
        self._changed: asyncio.Event | None = None

    async def run(self):
        self._changed = asyncio.Event()
        sleeper = asyncio.create_task(self._sleeper(), name=f"{self.name}:sleeper")
        try:
            await super().run()
        finally:
            sleeper.cancel()

    def keys_for(self, etype, obj):
        m = meta(obj)
        if obj.get("kind") == "CronJob":
            return [(m.get("namespace"), m.get("name"))]
        ref = controller_ref(obj)
        if ref and ref.get("kind") == "CronJob":
            return [(m.get("namespace"), ref.get("name"))]
        return []

    def _clock_time(self) -> float:
        clock = self.store.clock
        return clock.time() if hasattr(clock, "time") else clock.now().timestamp()

    async def _sleeper(self):
        while True:
            self._changed.clear()
            if not self._next:
                await self._changed.wait()
                continue
            due_at = min(self._next.values())
            clock = self.store.clock
            if hasattr(clock, "sleep_until"):
                sleep = asyncio.ensure_future(clock.sleep_until(due_at))
            else:
                sleep = asyncio.ensure_future(asyncio.sleep(max(0.0, due_at - self._clock_time())))
            changed = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait({sleep, changed}, return_when=asyncio.FIRST_COMPLETED)
            sleep.cancel()
            changed.cancel()
            now = self._clock_time()
            for key, t in list(self._next.items()):
                if t <= now:
                    self._next.pop(key, None)
                    self.enqueue(key)

    def _set_next(self, key, t: float | None):
        if t is None:
            self._next.pop(key, None)
        else:
            self._next[key] = t
        if self._changed is not None:
            self._changed.set()

    def reconcile(self, key):
        from croniter import croniter
        ns, name = key
        cj = self.store.get_or_none("batch", "cronjobs", ns, name)
        if cj is None or is_deleting(cj):
            self._set_next(key, None)
            return
        spec = cj.get("spec") or {}
        old_status = cj.get("status") or {}
        status = dict(old_status)
        jobs = [j for j in self.store.list("batch", "jobs", namespace=ns)["items"] if owned_by(j, cj)]

        def finished(job, ctype):
            return any(c.get("type") == ctype and c.get("status") == "True"
                       for c in (job.get("status") or {}).get("conditions") or [])
        active = [j for j in jobs if not finished(j, "Complete") and not finished(j, "Failed")
                  and not is_deleting(j)]
        succeeded = sorted((j for j in jobs if finished(j, "Complete")),
                           key=lambda j: (j.get("status") or {}).get("completionTime") or "")
        failed = sorted((j for j in jobs if finished(j, "Failed")),
                        key=lambda j: meta(j).get("creationTimestamp") or "")
        for group, limit in ((succeeded, spec.get("successfulJobsHistoryLimit", 3)),
                             (failed, spec.get("failedJobsHistoryLimit", 1))):
            for j in group[:max(0, len(group) - limit)]:
                self._delete_job(j)
        if succeeded:
            status["lastSuccessfulTime"] = (succeeded[-1].get("status") or {}).get("completionTime")

        tz = None
        if spec.get("timeZone"):
            import zoneinfo
            try:
                tz = zoneinfo.ZoneInfo(spec["timeZone"])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                tz = None
        now = self._clock_time()
        last_text = old_status.get("lastScheduleTime") or meta(cj).get("creationTimestamp")
        last = dt.datetime.strptime(last_text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.timezone.utc).timestamp() if last_text else now
        schedule = spec.get("schedule", "")

        def at(t):
            return dt.datetime.fromtimestamp(t, tz or dt.timezone.utc)
        try:
            it = croniter(schedule, at(last))
            nxt = it.get_next(float)
        except (ValueError, KeyError):
            self._set_next(key, None)
            return  # an invalid schedule never fires (the API would have refused it)
        due = None
        if nxt <= now:
            due = croniter(schedule, at(now)).get_prev(float)  # the most recent missed time
            if due <= last:
                due = None
        if due is not None and not spec.get("suspend"):
            deadline = spec.get("startingDeadlineSeconds")
            too_late = deadline is not None and now - due > deadline
            policy = spec.get("concurrencyPolicy", "Allow")
            if not too_late and not (policy == "Forbid" and active):
                if policy == "Replace":
                    for j in active:
                        self._delete_job(j)
                    active = []
                job = self._create_job(cj, due)
                if job is not None:
                    active.append(job)
                status["lastScheduleTime"] = base_rfc3339(due)
            elif too_late:
                status["lastScheduleTime"] = base_rfc3339(due)  # missed for good
        if active:
            status["active"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": meta(j)["name"],
                                 "namespace": ns, "uid": meta(j)["uid"],
                                 "resourceVersion": meta(j).get("resourceVersion")}
                                for j in sorted(active, key=lambda j: meta(j)["name"])]
        else:
            status.pop("active", None)
        if status != old_status:
            body = copy.deepcopy(cj)
            body["status"] = status
            self.store.update("batch", "cronjobs", ns, name, body, subresource="status")
        if spec.get("suspend"):
            self._set_next(key, None)
        else:
            ref = float(max(now, last))
            self._set_next(key, croniter(schedule, at(ref)).get_next(float))

    def _create_job(self, cj, due: float):
        ns, name = meta(cj)["namespace"], meta(cj)["name"]
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        md = {"name": f"{name}-{int(due // 60)}", "namespace": ns,
              "labels": dict(tmeta.get("labels") or {}),
              "annotations": {**(tmeta.get("annotations") or {}),
                              "batch.kubernetes.io/cronjob-scheduled-timestamp":
                                  base_rfc3339(due)},
              "ownerReferences": [owner_reference(cj)]}
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": md,
                "spec": copy.deepcopy(template.get("spec") or {})}
        try:
            return self.store.create("batch", "jobs", ns, body)
        except Exception as e:
            if getattr(e, "code", None) == 409:
                return None  # created on an earlier pass
            raise

    def _delete_job(self, job):
        m = meta(job)
        try:
            self.store.delete("batch", "jobs", m["namespace"], m["name"],
                              propagation_policy="Background", preconditions={"uid": m.get("uid")})
        except Exception as e:
            if getattr(e, "code", None) not in (404, 409):
                raise


def base_rfc3339(t: float) -> str:
    return rfc3339(dt.datetime.fromtimestamp(t, dt.timezone.utc))
