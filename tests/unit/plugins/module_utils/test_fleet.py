# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import threading

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils import fleet
from ansible_collections.fleetdr.kube.plugins.module_utils.report import build_report


def test_results_in_input_order_with_identity_timeline_and_times():
    def operation(cluster, recorder):
        recorder.phase("Connecting")
        recorder.phase("Connecting")  # repeats are not new transitions
        recorder.phase("InProgress")
        return {"phase": "Completed", "items": {"total": 3, "done": 3}, "location": cluster["bsl"]}

    clusters = [{"name": "c%d" % i, "labels": {"env": "dev"}, "bsl": "b%d" % i} for i in range(5)]
    results = fleet.run_fleet(clusters, operation)
    assert [r["name"] for r in results] == ["c0", "c1", "c2", "c3", "c4"]
    first = results[0]
    assert first["verdict"] == "succeeded" and first["labels"] == {"env": "dev"} and first["location"] == "b0"
    assert [step["phase"] for step in first["timeline"]] == ["Connecting", "InProgress"]
    assert first["started"] <= first["timeline"][0]["at"] <= first["finished"]
    assert first["duration_s"] is not None
    build_report("backup", "x", results)  # the results are valid report entries


def test_clusters_run_concurrently():
    # every operation waits until all five have started: only possible if they run in parallel
    barrier = threading.Barrier(5, timeout=30)

    def operation(cluster, recorder):
        barrier.wait()
        return {"verdict": "succeeded"}

    results = fleet.run_fleet(["a", "b", "c", "d", "e"], operation)
    assert [r["verdict"] for r in results] == ["succeeded"] * 5


def test_worker_count_is_capped(monkeypatch):
    seen = {}
    real = fleet.concurrent.futures.ThreadPoolExecutor

    def spy(max_workers, **kwargs):
        seen["workers"] = max_workers
        return real(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(fleet.concurrent.futures, "ThreadPoolExecutor", spy)
    fleet.run_fleet(["c%d" % i for i in range(200)], lambda cluster, recorder: None)
    assert seen["workers"] == fleet.MAX_WORKERS_CAP
    fleet.run_fleet(["a", "b"], lambda cluster, recorder: None, max_workers=50)
    assert seen["workers"] == 2


def test_one_clusters_exception_is_only_its_failure():
    def operation(cluster, recorder):
        recorder.phase("Creating")
        if cluster == "bad":
            raise RuntimeError("409 Conflict: backup exists")
        if cluster == "skip":
            raise fleet.SkipCluster("Velero is not installed")
        return {"phase": "Completed"}

    results = {r["name"]: r for r in fleet.run_fleet(["good", "bad", "skip"], operation)}
    assert results["good"]["verdict"] == "succeeded"
    assert results["bad"]["verdict"] == "failed"
    assert results["bad"]["reason"] == "RuntimeError: 409 Conflict: backup exists"
    assert results["bad"]["errors"] == ["RuntimeError: 409 Conflict: backup exists"]
    assert results["bad"]["phase"] == "Creating"  # where it failed
    assert results["skip"]["verdict"] == "skipped" and results["skip"]["reason"] == "Velero is not installed"


def test_malformed_operation_result_fails_that_cluster():
    results = fleet.run_fleet(["a", "b"], lambda cluster, recorder: {"verdict": "great"} if cluster == "a" else "x")
    assert results[0]["verdict"] == "failed" and "verdict" in results[0]["reason"]
    assert results[1]["verdict"] == "failed" and "expected a dict" in results[1]["reason"]


def test_deadline_fails_stuck_clusters_and_cancels_them():
    release = threading.Event()
    observed = {}

    def operation(cluster, recorder):
        if cluster == "slow":
            recorder.phase("WaitingForCompletion")
            observed["cancelled"] = recorder.cancelled.wait(30)  # set by the engine at the deadline
            release.wait(30)
            return {"verdict": "succeeded"}  # too late: ignored
        return {"verdict": "succeeded"}

    results = fleet.run_fleet(["fast", "slow"], operation, deadline_s=1)
    release.set()
    assert results[0]["verdict"] == "succeeded"
    assert results[1]["verdict"] == "failed"
    assert results[1]["reason"] == "deadline of 1s passed while in phase WaitingForCompletion"


def test_deadline_marks_clusters_never_started():
    gate = threading.Event()

    def operation(cluster, recorder):
        gate.wait(30)
        return None

    try:
        results = fleet.run_fleet(["a", "b", "c"], operation, deadline_s=0.2, max_workers=1)
    finally:
        gate.set()
    assert [r["verdict"] for r in results] == ["failed"] * 3
    assert "before the cluster was started" in results[2]["reason"]


def test_recorder_remaining_and_check():
    now = [100.0]
    recorder = fleet.Recorder("c1", deadline=110.0, monotonic=lambda: now[0])
    assert recorder.remaining() == 10.0
    recorder.check()
    now[0] = 111.0
    assert recorder.remaining() == 0.0
    with pytest.raises(fleet.DeadlineExceeded):
        recorder.check()
    assert fleet.Recorder("c2").remaining() is None


def test_on_result_called_once_per_cluster():
    seen = []
    fleet.run_fleet(["a", "b", "c"], lambda cluster, recorder: None, on_result=lambda r: seen.append(r["name"]))
    assert sorted(seen) == ["a", "b", "c"]


def test_duplicate_and_bad_cluster_entries_are_rejected():
    with pytest.raises(ValueError, match="more than once"):
        fleet.run_fleet(["a", "a"], lambda cluster, recorder: None)
    with pytest.raises(ValueError):
        fleet.run_fleet([{"labels": {}}], lambda cluster, recorder: None)
    assert fleet.run_fleet([], lambda cluster, recorder: None) == []


def test_cluster_from_hostvars_maps_auth_and_labels():
    entry = fleet.cluster_from_hostvars("c1", {
        "fleetdr_kubeconfig": "/lab/kubeconfig", "fleetdr_context": "c1", "fleetdr_host": "",
        "fleetdr_cluster_labels": {"env": "prod", "tier": 1}, "ansible_connection": "local",
    })
    assert entry == {"name": "c1", "labels": {"env": "prod", "tier": "1"},
                     "auth": {"kubeconfig": "/lab/kubeconfig", "context": "c1"}}


def test_run_and_report_builds_the_document():
    def operation(cluster, recorder):
        if cluster["name"] == "c2":
            raise RuntimeError("boom TOPSECRET")
        return {"phase": "Completed"}

    report = fleet.run_and_report("backup", "nightly", [{"name": "c1"}, {"name": "c2"}], operation,
                                  options={"ttl": "720h", "token": "x"}, secret_values=["TOPSECRET"])
    assert report["verdict"] == "partially_failed"
    assert report["totals"]["failed"] == 1 and report["options"] == {"ttl": "720h"}
    assert report["clusters"][1]["reason"] == "RuntimeError: boom ********"
    assert report["started"] <= report["clusters"][0]["started"]


@pytest.mark.parametrize("batch, total, size", [(None, 10, 10), ("", 10, 10), (3, 10, 3), ("3", 10, 3), ("25%", 10, 2),
                                                ("1%", 10, 1), ("100%", 7, 7), (20, 7, 7)])
def test_wave_size_takes_a_count_or_a_share(batch, total, size):
    assert fleet.wave_size(batch, total) == size


@pytest.mark.parametrize("batch", ["-1", "abc", "0%", "150%"])
def test_wave_size_refuses_nonsense(batch):
    with pytest.raises(ValueError):
        fleet.wave_size(batch, 10)


def test_waves_run_one_after_another_and_stop_past_the_failure_budget():
    started = []

    def operation(cluster, recorder):
        started.append(cluster)
        if cluster == "c3":
            raise RuntimeError("API down")
        return {"phase": "Installed"}

    results = fleet.run_waves(["c1", "c2", "c3", "c4", "c5", "c6"], operation, batch=2, max_fail_percentage=0)
    assert started == ["c1", "c2", "c3", "c4"] or sorted(started) == ["c1", "c2", "c3", "c4"]
    verdicts = dict((r["name"], r["verdict"]) for r in results)
    assert verdicts == {"c1": "succeeded", "c2": "succeeded", "c3": "failed", "c4": "succeeded", "c5": "skipped", "c6": "skipped"}
    skipped = [r for r in results if r["verdict"] == "skipped"]
    assert all("rollout stopped after wave 2 of 3: 1 of 2 clusters failed (c3)" in r["reason"] for r in skipped)
    build_report("install", "velero", results)


def test_waves_within_the_budget_go_on():
    def operation(cluster, recorder):
        if cluster == "c1":
            raise RuntimeError("down")
        return {"phase": "Installed"}

    results = fleet.run_waves(["c1", "c2", "c3", "c4"], operation, batch="50%", max_fail_percentage=50)
    assert [r["verdict"] for r in results] == ["failed", "succeeded", "succeeded", "succeeded"]
