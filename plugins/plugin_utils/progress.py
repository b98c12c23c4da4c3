# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Progress lines of a running fleet operation, for the normal (non -v) output.

One line per cluster when it enters a phase or finishes (``c17 Completed 34/34 2.1s``) and a
one-line summary every ``interval`` seconds (``backup nightly: 61/100 done, 2 failed, 37 in
progress``). Hooks are called from the per-cluster threads; ``emit`` is called under a lock.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

FAILED_VERDICTS = ("failed", "partially_failed")


class FleetProgress:
    def __init__(self, label, cluster_names, emit, interval=30.0, monotonic=time.monotonic):
        self.label = label
        self.total = len(cluster_names)
        self._emit = emit
        self._interval = float(interval)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._started = monotonic()
        self._finished = {}  # cluster -> verdict
        self._phase = {}  # cluster -> the last phase printed for it
        self._stop = threading.Event()
        self._ticker = None

    def _say(self, line):
        with self._lock:
            self._emit(line)

    def _elapsed(self):
        return "%.1fs" % (self._monotonic() - self._started)

    def on_phase(self, cluster, phase):
        """run_fleet hook: a cluster entered ``phase``."""
        with self._lock:
            if cluster in self._finished:
                return
            self._phase[cluster] = phase
        self._say("%s %s %s" % (cluster, phase, self._elapsed()))

    def on_result(self, result):
        """run_fleet hook: a cluster finished (its normalised result)."""
        with self._lock:
            self._finished[result["name"]] = result["verdict"]
            announced = self._phase.get(result["name"])
        items = result.get("items") or {}
        if result["verdict"] == "succeeded" and not items.get("total") and result.get("phase") == announced:
            return  # the phase line just said it (install: "c8 Installed 6.2s")
        words = [result["name"], result.get("phase") or result["verdict"]]
        if items.get("total"):
            words.append("%s/%s" % (items.get("done") or 0, items["total"]))
        duration = result.get("duration_s")
        words.append("%.1fs" % duration if duration is not None else self._elapsed())
        if result["verdict"] != "succeeded":
            words.append(result["verdict"] + (": " + result["reason"] if result.get("reason") else ""))
        self._say(" ".join(words))

    def summary(self):
        with self._lock:
            verdicts = list(self._finished.values())
        failed = sum(1 for verdict in verdicts if verdict in FAILED_VERDICTS)
        done = len(verdicts) - failed
        return "%s: %d/%d done, %d failed, %d in progress" % (
            self.label, done, self.total, failed, self.total - len(verdicts))

    def _tick(self):
        while not self._stop.wait(self._interval):
            self._say(self.summary())

    def start(self):
        if self._interval > 0:
            self._ticker = threading.Thread(target=self._tick, name="fleetdr-progress", daemon=True)
            self._ticker.start()
        return self

    def stop(self):
        """End the periodic summary and print the final one."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._say(self.summary())
