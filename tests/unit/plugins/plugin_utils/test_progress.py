# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress lines of a fleet run, driven by the real run_fleet hooks."""

import threading

from ansible_collections.fleetdr.kube.plugins.module_utils.fleet import run_fleet
from ansible_collections.fleetdr.kube.plugins.plugin_utils.progress import FleetProgress


def _operation(cluster, recorder):
    recorder.phase("Preflight")
    recorder.phase("InProgress")
    if cluster["name"] == "c2":
        raise RuntimeError("location default is Unavailable")
    return {"verdict": "succeeded", "phase": "Completed", "items": {"total": 34, "done": 34}}


def test_a_line_per_phase_and_result_and_a_final_summary():
    lines = []
    progress = FleetProgress("backup nightly", ["c1", "c2", "c3"], lines.append, interval=0).start()
    run_fleet([{"name": n} for n in ("c1", "c2", "c3")], _operation, on_result=progress.on_result, on_phase=progress.on_phase)
    progress.stop()
    for name in ("c1", "c2", "c3"):
        assert any(line.startswith(name + " Preflight ") for line in lines)
        assert any(line.startswith(name + " InProgress ") for line in lines)
    assert any(line.startswith("c1 Completed 34/34 ") for line in lines)
    failed = [line for line in lines if line.startswith("c2 ") and "failed" in line]
    assert failed and "location default is Unavailable" in failed[0]
    assert lines[-1] == "backup nightly: 2/3 done, 1 failed, 0 in progress"


def test_the_periodic_summary_counts_clusters_still_running():
    lines = []
    release = threading.Event()
    seen = threading.Event()

    def slow(cluster, recorder):
        recorder.phase("Waiting")
        if cluster["name"] == "c2":
            release.wait(10)
        return {"verdict": "succeeded", "phase": "Completed"}

    def emit(line):
        lines.append(line)
        if line.startswith("install: 1/2 done"):
            seen.set()

    progress = FleetProgress("install", ["c1", "c2"], emit, interval=0.05).start()
    worker = threading.Thread(target=lambda: run_fleet([{"name": "c1"}, {"name": "c2"}], slow,
                                                       on_result=progress.on_result, on_phase=progress.on_phase))
    worker.start()
    assert seen.wait(10), lines
    release.set()
    worker.join(10)
    progress.stop()
    assert "install: 1/2 done, 0 failed, 1 in progress" in lines
    assert lines[-1] == "install: 2/2 done, 0 failed, 0 in progress"


def test_phases_after_a_cluster_finished_are_not_printed():
    lines = []
    progress = FleetProgress("status", ["c1"], lines.append, interval=0)
    progress.on_result({"name": "c1", "verdict": "succeeded", "phase": "Installed", "duration_s": 0.4})
    progress.on_phase("c1", "Late")
    assert lines == ["c1 Installed 0.4s"]


def test_a_result_that_only_repeats_the_last_phase_line_is_not_printed_again():
    lines = []

    def install(cluster, recorder):
        recorder.phase("Applying")
        recorder.phase("Installed")
        return {"verdict": "succeeded", "phase": "Installed"}

    progress = FleetProgress("install", ["c1"], lines.append, interval=0, settle=60)
    run_fleet([{"name": "c1"}], install, on_result=progress.on_result, on_phase=progress.on_phase)
    assert [line.rsplit(" ", 1)[0] for line in lines] == ["c1 Applying", "c1 Installed"]


def test_a_phase_line_is_printed_once_it_has_settled_and_at_the_latest_when_progress_stops():
    lines = []
    clock = [0.0]
    progress = FleetProgress("backup", ["c1", "c2"], lines.append, interval=0, monotonic=lambda: clock[0], settle=0.5)
    progress.on_phase("c1", "InProgress")
    progress.on_phase("c2", "InProgress")
    progress._flush(0.5)
    assert lines == []  # not settled yet
    clock[0] = 1.0
    progress._flush(0.5)
    assert lines == ["c1 InProgress 0.0s", "c2 InProgress 0.0s"]
    progress.on_phase("c1", "Finalizing")
    progress.stop()
    assert lines[2:] == ["c1 Finalizing 1.0s", "backup: 0/2 done, 0 failed, 2 in progress"]
