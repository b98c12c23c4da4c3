# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Run one per-cluster operation on many clusters concurrently.

Each cluster runs on its own thread (its work is mostly waiting on the API), so 100 clusters
cost 100 idle threads in one controller-side process instead of 100 module processes. A
cluster's exception becomes that cluster's failed result; it never reaches the others.

    def back_up(cluster, recorder):
        recorder.phase("Connecting")
        ...
        recorder.phase("InProgress")
        ...
        return {"verdict": "succeeded", "phase": "Completed", "object": {...}}

    results = run_fleet(clusters, back_up, deadline_s=900)
    report = build_report("backup", "nightly", results)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import threading
import time

from ansible_collections.fleetdr.kube.plugins.module_utils.client import HOSTVAR_AUTH, auth_from_hostvars
from ansible_collections.fleetdr.kube.plugins.module_utils.report import (
    build_report,
    normalize_cluster,
    to_timestamp,
    utcnow,
)

MAX_WORKERS_CAP = 128

# Every inventory host variable a fleet run reads from a cluster's host.
CLUSTER_HOSTVARS = tuple(var for var, _option in HOSTVAR_AUTH) + (
    "fleetdr_cluster_labels", "fleetdr_storage_class_map", "fleetdr_image_registry_map")


class SkipCluster(Exception):
    """Raised by an operation to mark its cluster skipped (with the message as reason)."""


class DeadlineExceeded(Exception):
    """Raised by Recorder.check() once the fleet deadline has passed."""


class Recorder:
    """Per-cluster handle given to the operation: phase timeline, deadline and cancellation."""

    def __init__(self, name, deadline=None, cancelled=None, clock=utcnow, monotonic=time.monotonic, on_phase=None):
        self.name = name
        self._on_phase = on_phase
        self.deadline = deadline  # monotonic seconds, or None
        self.cancelled = cancelled or threading.Event()
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._timeline = []
        self.started = None
        self.finished = None

    def phase(self, phase):
        """Record that the cluster entered ``phase`` now (a repeat of the current phase is ignored)."""
        with self._lock:
            if self._timeline and self._timeline[-1]["phase"] == phase:
                return
            self._timeline.append({"phase": str(phase), "at": to_timestamp(self._clock())})
        if self._on_phase is not None:
            self._on_phase(self.name, str(phase))

    @property
    def current_phase(self):
        with self._lock:
            return self._timeline[-1]["phase"] if self._timeline else None

    @property
    def timeline(self):
        with self._lock:
            return [dict(step) for step in self._timeline]

    def remaining(self):
        """Seconds left before the fleet deadline (None without one); use as a wait timeout."""
        if self.deadline is None:
            return None
        return max(self.deadline - self._monotonic(), 0.0)

    def check(self):
        """Raise DeadlineExceeded when the run was cancelled or its deadline passed."""
        if self.cancelled.is_set() or (self.deadline is not None and self._monotonic() >= self.deadline):
            raise DeadlineExceeded("deadline exceeded")


def cluster_from_hostvars(name, hostvars):
    """A cluster entry for run_fleet from one inventory host's variables.

    {name, labels, auth}: labels from ``fleetdr_cluster_labels``, auth holds the kubernetes.core
    auth options found among the host's ``fleetdr_*`` variables.
    """
    hostvars = hostvars or {}
    auth = auth_from_hostvars(hostvars)
    labels = hostvars.get("fleetdr_cluster_labels") or {}
    return {"name": str(name), "labels": dict((str(k), str(v)) for k, v in labels.items()), "auth": auth}


def _cluster_identity(cluster):
    if isinstance(cluster, str):
        return {"name": cluster, "labels": {}}
    if not isinstance(cluster, dict) or not cluster.get("name"):
        raise ValueError("each cluster must be a name or a dict with a name, got %r" % (cluster,))
    return {"name": str(cluster["name"]), "labels": dict(cluster.get("labels") or {})}


def _error_text(exc):
    text = str(exc).strip()
    kind = type(exc).__name__
    if not text:
        return kind
    return text if isinstance(exc, (SkipCluster, DeadlineExceeded)) else "%s: %s" % (kind, text)


def run_fleet(clusters, operation, deadline_s=None, max_workers=None, on_result=None, clock=utcnow,
              monotonic=time.monotonic, on_phase=None):
    """Run ``operation(cluster, recorder)`` on every cluster; returns normalised results in input order.

    ``clusters`` are names or dicts with ``name`` (and ``labels``, plus whatever the operation
    needs, e.g. auth options); the same object is passed to the operation. The operation returns
    a partial result (verdict, phase, reason, object, location, items, warnings, errors); name,
    labels, started, finished, duration_s and timeline are filled in here. Clusters that have not
    finished when ``deadline_s`` passes get a failed result naming the phase they were stuck in;
    their threads are told to stop through ``recorder.cancelled`` and their late results are
    ignored. Threads cannot be killed, and the process waits for them at exit, so operations
    must bound their waits by ``recorder.remaining()``. ``on_phase(name, phase)`` is called each
    time a cluster enters a phase, ``on_result(result)`` once per
    cluster as each one finishes.
    """
    clusters = list(clusters)
    identities = [_cluster_identity(cluster) for cluster in clusters]
    names = [identity["name"] for identity in identities]
    duplicates = sorted(set(name for name in names if names.count(name) > 1))
    if duplicates:
        raise ValueError("clusters listed more than once: %s" % ", ".join(duplicates))
    if not clusters:
        return []
    workers = max(1, min(max_workers or len(clusters), len(clusters), MAX_WORKERS_CAP))
    deadline = None if deadline_s is None else monotonic() + float(deadline_s)
    cancelled = threading.Event()
    recorders = [Recorder(identity["name"], deadline, cancelled, clock, monotonic, on_phase) for identity in identities]
    results = [None] * len(clusters)
    lock = threading.Lock()

    def finish(index, partial):
        """Store a cluster's result once; the first writer (operation or deadline) wins."""
        recorder = recorders[index]
        with lock:
            if results[index] is not None:
                return
            entry = dict(partial or {})
            entry.update(identities[index])
            entry.setdefault("started", recorder.started)
            entry["finished"] = to_timestamp(clock())
            entry["timeline"] = recorder.timeline
            if entry.get("started") is None:
                entry["started"] = entry["finished"]
            try:
                results[index] = normalize_cluster(entry)
            except ValueError as exc:  # an operation returned something malformed
                results[index] = normalize_cluster(dict(
                    identities[index], verdict="failed", reason="invalid result: %s" % exc,
                    started=entry["started"], finished=entry["finished"], timeline=entry["timeline"]))
            result = results[index]
        if on_result is not None:
            on_result(result)

    def work(index):
        recorder = recorders[index]
        started.wait()
        if cancelled.is_set():  # queued behind the worker cap and the deadline already passed
            return
        recorder.started = to_timestamp(clock())
        try:
            partial = operation(clusters[index], recorder)
            if partial is not None and not isinstance(partial, dict):
                raise TypeError("operation returned %s, expected a dict" % type(partial).__name__)
        except SkipCluster as exc:
            partial = {"verdict": "skipped", "reason": _error_text(exc), "phase": recorder.current_phase}
        except Exception as exc:  # one cluster's failure is its result, never the others'
            partial = {
                "verdict": "failed",
                "phase": recorder.current_phase,
                "reason": _error_text(exc),
                "errors": [_error_text(exc)],
            }
        partial = dict(partial or {})
        partial.setdefault("phase", recorder.current_phase)
        finish(index, partial)

    executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleetdr-cluster")
    # Threads start idle and are released together: each thread start waits for the new thread
    # to take the GIL, which takes a switch interval per thread once the earlier ones are busy.
    started = threading.Event()
    try:
        futures = dict((executor.submit(work, index), index) for index in range(len(clusters)))
    finally:
        started.set()
    try:
        timeout = None if deadline is None else max(deadline - monotonic(), 0.0)
        concurrent.futures.wait(futures, timeout=timeout)
    finally:
        cancelled.set()
        # Threads still running cannot be killed; do not wait for them, they see `cancelled`.
        try:
            executor.shutdown(wait=False, cancel_futures=True)
        except TypeError:  # Python < 3.9: queued work still sees `cancelled` and returns at once
            executor.shutdown(wait=False)
    for index in range(len(clusters)):
        if results[index] is None:
            recorder = recorders[index]
            stuck = recorder.current_phase
            if recorder.started is None:
                reason = "deadline of %ss passed before the cluster was started" % deadline_s
            elif stuck:
                reason = "deadline of %ss passed while in phase %s" % (deadline_s, stuck)
            else:
                reason = "deadline of %ss passed" % deadline_s
            finish(index, {"verdict": "failed", "phase": stuck, "reason": reason, "errors": [reason]})
    return list(results)


def wave_size(batch, total):
    """Clusters per wave from ``batch``: a count (``5``) or a share of the fleet (``"25%"``, at least 1);
    None or 0 means all at once."""
    if batch in (None, "", 0, "0"):
        return total
    text = str(batch).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, int(total * percent / 100.0))
        count = int(text)
        if count < 0:
            raise ValueError
        return min(count, total) or total
    except ValueError:
        raise ValueError("batch must be a number of clusters or a percentage such as 25%%, got %r" % (batch,))


def run_waves(clusters, operation, batch=None, max_fail_percentage=None, deadline_s=None, max_workers=None, on_result=None,
              monotonic=time.monotonic, on_phase=None):
    """run_fleet in waves of ``batch`` clusters, for changes that must not hit a whole fleet at once.

    As with Ansible's ``serial`` and ``max_fail_percentage``: when more than ``max_fail_percentage``
    percent of a wave's clusters failed, the rollout stops, and every cluster of the later waves is
    reported skipped with the reason. One deadline bounds all waves together.
    """
    clusters = list(clusters)
    size = wave_size(batch, len(clusters))
    if size >= len(clusters) or not clusters:
        return run_fleet(clusters, operation, deadline_s=deadline_s, max_workers=max_workers, on_result=on_result, on_phase=on_phase)
    end = None if deadline_s is None else monotonic() + float(deadline_s)
    results = []
    for start in range(0, len(clusters), size):
        wave = clusters[start:start + size]
        left = None if end is None else max(end - monotonic(), 0.0)
        done = run_fleet(wave, operation, deadline_s=left, max_workers=max_workers, on_result=on_result, on_phase=on_phase)
        results.extend(done)
        failed = [r for r in done if r["verdict"] in ("failed", "partially_failed")]
        if max_fail_percentage is not None and 100.0 * len(failed) / len(done) > max_fail_percentage:
            reason = "rollout stopped after wave {0} of {1}: {2} of {3} clusters failed ({4}), more than max_fail_percentage {5}%".format(
                start // size + 1, (len(clusters) + size - 1) // size, len(failed), len(done), ", ".join(r["name"] for r in failed),
                max_fail_percentage)
            for cluster in clusters[start + size:]:
                entry = normalize_cluster(dict(_cluster_identity(cluster), verdict="skipped", reason=reason, phase="NotStarted"))
                results.append(entry)
                if on_result is not None:
                    on_result(entry)
            break
    return results


def run_and_report(operation_name, run_name, clusters, operation, options=None, deadline_s=None,
                   max_workers=None, secret_values=(), on_result=None, batch=None, max_fail_percentage=None, on_phase=None):
    """run_fleet (in waves when ``batch`` is given), then the report document of the run (see report.build_report)."""
    started = utcnow()
    results = run_waves(clusters, operation, batch=batch, max_fail_percentage=max_fail_percentage, deadline_s=deadline_s,
                        max_workers=max_workers, on_result=on_result, on_phase=on_phase)
    return build_report(operation_name, run_name, results, options=options, started=started,
                        finished=utcnow(), secret_values=secret_values)
