"""Jobs (Kubernetes pkg/controller/job): pods to completions, backoff, conditions."""
from __future__ import annotations

import datetime as dt

from ..base import is_deleting, meta, pod_is_active, pod_is_ready, set_condition
from .podspec import omit_zero, pod_from_template
from .reconciler import Reconciler


class JobReconciler(Reconciler):
    """Pods until completions succeed or the backoff limit is reached."""

    def sync(self, ns, name):
        job = self.store.get_or_none("batch", "jobs", ns, name)
        if not job or is_deleting(job):
            return
        spec = job.get("spec") or {}
        old = job.get("status") or {}
        conds = old.get("conditions") or []
        finished = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                       for c in conds)
        pods = self._claim(job, "", "pods")
        active = [p for p in pods if pod_is_active(p)]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        completions = spec.get("completions")
        parallelism = spec.get("parallelism", 1)
        now = self.now()
        status = dict(old)
        if finished:
            for p in active:
                self._delete("", "pods", p)
            return
        if not status.get("startTime") and not spec.get("suspend"):
            status["startTime"] = now
        target = completions if completions is not None else 1
        if succeeded >= target:
            for p in active:
                self._delete("", "pods", p)
            active = []
            msg = "Reached expected number of succeeded pods"
            conds = set_condition(conds, "SuccessCriteriaMet", "True", "CompletionsReached", msg, now)
            conds = set_condition(conds, "Complete", "True", "CompletionsReached", msg, now)
            for c in conds:
                c.setdefault("lastProbeTime", now)
            status["completionTime"] = now
        elif failed > spec.get("backoffLimit", 6) or self._past_backoff_limit_on_failure(spec, active):
            for p in active:  # the active pods are terminated and count as failed
                self._delete("", "pods", p)
                failed += 1
            active = []
            msg = "Job has reached the specified backoff limit"
            conds = set_condition(conds, "FailureTarget", "True", "BackoffLimitExceeded", msg, now)
            conds = set_condition(conds, "Failed", "True", "BackoffLimitExceeded", msg, now)
            for c in conds:
                c.setdefault("lastProbeTime", now)
        elif not spec.get("suspend"):
            room = min(parallelism, target - succeeded) - len(active)
            uid = meta(job)["uid"]
            wait = self._pod_failure_backoff(pods) if room > 0 else 0.0
            if wait > 0:  # job_controller.go manageJob: enqueueSyncJobWithDelay(remainingTime)
                self._enqueue_after_lab(wait, ("Job", ns, name))
                room = 0
            for _ in range(max(0, room)):
                pod = self._create_pod(job, pod_from_template(
                    spec.get("template"), ns, job, generate_name=f"{name}-", labels={
                        "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                        "batch.kubernetes.io/job-name": name, "job-name": name}))
                if pod is None:
                    break
                active.append(pod)
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed,
                       "ready": sum(1 for p in active if pod_is_ready(p)), "terminating": 0})
        status = omit_zero(status)
        status["ready"] = status.get("ready", 0)
        status["terminating"] = 0
        if conds:
            status["conditions"] = conds
        status.setdefault("uncountedTerminatedPods", {})
        self._write_status("batch", "jobs", job, status)

    @staticmethod
    def _past_backoff_limit_on_failure(spec, active) -> bool:
        """pkg/controller/job/job_controller.go pastBackoffLimitOnFailure: with restartPolicy OnFailure
        the kubelet restarts failed containers in place, and their restarts count toward backoffLimit."""
        if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
            return False
        restarts = sum(int(cs.get("restartCount") or 0) for p in active
                       if (p.get("status") or {}).get("phase") in ("Running", "Pending")
                       for cs in ((p.get("status") or {}).get("initContainerStatuses") or [])
                       + ((p.get("status") or {}).get("containerStatuses") or []))
        limit = spec.get("backoffLimit", 6)
        return restarts > 0 if limit == 0 else restarts >= limit

    def _pod_failure_backoff(self, pods) -> float:
        """Lab seconds before the Job may create a pod again after failures (pkg/controller/job
        backoff_utils.go getRemainingTimeForFailuresCount): 10 s x 2^(failures-1) up to 10 min from
        the last failure, failures counted after the last success."""
        def finished(p):
            times = [((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
                     for cs in (p.get("status") or {}).get("containerStatuses") or []]
            times = [t for t in times if t]
            return max(times) if times else ""
        last_success = max((finished(p) for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"), default="")
        failures = sorted(finished(p) for p in pods if (p.get("status") or {}).get("phase") == "Failed" and finished(p) >= last_success)
        if not failures or not failures[-1]:
            return 0.0
        delay = min(10.0 * 2 ** (len(failures) - 1), 600.0)
        last = dt.datetime.fromisoformat(failures[-1].replace("Z", "+00:00")).timestamp()
        return max(0.0, last + delay - self._lab_time())
