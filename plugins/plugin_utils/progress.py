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
    """A cluster's phase line is held back for ``settle`` seconds: a cluster that finishes meanwhile
    prints one line for its result instead of the same phase twice (``c8 Completed`` then
    ``c8 Completed 29/29``)."""

    def __init__(self, label, cluster_names, emit, interval=30.0, monotonic=time.monotonic, settle=0.5):
        self.label = label
        self.total = len(cluster_names)
        self._emit = emit
        self._interval = float(interval)
        self._settle = float(settle)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._started = monotonic()
        self._finished = {}  # cluster -> verdict
        self._held = {}  # cluster -> (phase, its line, when it was entered): not printed yet
        self._stop = threading.Event()
        self._ticker = None

    def _elapsed(self):
        return "%.1fs" % (self._monotonic() - self._started)

    def on_phase(self, cluster, phase):
        """run_fleet hook: a cluster entered ``phase``."""
        with self._lock:
            if cluster in self._finished:
                return
            previous = self._held.pop(cluster, None)
            if previous is not None:
                self._emit(previous[1])
            self._held[cluster] = (phase, "%s %s %s" % (cluster, phase, self._elapsed()), self._monotonic())

    def on_result(self, result):
        """run_fleet hook: a cluster finished (its normalised result)."""
        words = [result["name"], result.get("phase") or result["verdict"]]
        items = result.get("items") or {}
        if items.get("total"):
            words.append("%s/%s" % (items.get("done") or 0, items["total"]))
        duration = result.get("duration_s")
        words.append("%.1fs" % duration if duration is not None else self._elapsed())
        if result["verdict"] != "succeeded":
            words.append(result["verdict"] + (": " + result["reason"] if result.get("reason") else ""))
        with self._lock:
            self._finished[result["name"]] = result["verdict"]
            held = self._held.pop(result["name"], None)
            if held is not None and held[0] != result.get("phase"):
                self._emit(held[1])
            self._emit(" ".join(words))

    def _flush(self, older_than):
        with self._lock:
            now = self._monotonic()
            for cluster, (_phase, line, since) in sorted(self._held.items(), key=lambda item: item[1][2]):
                if now - since >= older_than:
                    del self._held[cluster]
                    self._emit(line)

    def summary(self):
        with self._lock:
            verdicts = list(self._finished.values())
        failed = sum(1 for verdict in verdicts if verdict in FAILED_VERDICTS)
        done = len(verdicts) - failed
        return "%s: %d/%d done, %d failed, %d in progress" % (
            self.label, done, self.total, failed, self.total - len(verdicts))

    def _tick(self):
        last_summary = self._monotonic()
        step = min(self._settle, self._interval) if self._interval > 0 else self._settle
        while not self._stop.wait(step):
            self._flush(self._settle)
            if self._interval > 0 and self._monotonic() - last_summary >= self._interval:
                last_summary = self._monotonic()
                line = self.summary()
                with self._lock:
                    self._emit(line)

    def start(self):
        self._ticker = threading.Thread(target=self._tick, name="fleetdr-progress", daemon=True)
        self._ticker.start()
        return self

    def stop(self):
        """End the periodic lines, print what is held and the final summary."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._flush(0)
        line = self.summary()
        with self._lock:
            self._emit(line)
