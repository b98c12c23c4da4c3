"""A lab served by several OS processes (`fleetdr-lab up --processes K`) looks like one lab.

Clusters are shared out round-robin (cI served by process I % K): in a 2-process lab c1 and c3 are
served by process 1, c2 and c4 by the primary (process 0). Everything is checked through the CLI,
lab.json, the kubernetes client and kubectl, as a user of the lab would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client

from helpers import unique
from labctl import LabHandle, cli_env

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _status(handle: LabHandle) -> dict:
    return json.loads(handle.cli("status", "--json").stdout)


def _owner(status: dict, cluster: str) -> int:
    return next(c["process"] for c in status["clusters"] if c["name"] == cluster)


def _wait(predicate, what: str, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def lab2(tmp_path_factory):
    """4 clusters in 2 serving processes."""
    directory = tmp_path_factory.mktemp("lab2")
    try:
        handle = LabHandle.up(directory, clusters=4, processes=2)
    except AssertionError:
        LabHandle(directory).down()
        raise
    try:
        yield handle
    finally:
        handle.down()


def test_clusters_are_shared_among_processes(lab2):
    state = lab2.state
    processes = state["processes"]
    assert [p["index"] for p in processes] == [0, 1]
    assert processes[0]["pid"] == state["pid"] != processes[1]["pid"]
    assert sorted(processes[0]["clusters"]) == ["c2", "c4"]
    assert sorted(processes[1]["clusters"]) == ["c1", "c3"]
    assert all(_alive(p["pid"]) for p in processes)
    # lab.json, kubeconfig and inventory list every cluster in order, whoever serves it
    assert lab2.clusters == ["c1", "c2", "c3", "c4"]
    status = _status(lab2)
    assert [c["name"] for c in status["clusters"]] == ["c1", "c2", "c3", "c4"]
    assert {c["name"]: c["process"] for c in status["clusters"]} == {"c1": 1, "c2": 0, "c3": 1, "c4": 0}
    assert all(c["up"] and c["objects"] > 0 for c in status["clusters"])
    assert [(p["index"], p["alive"]) for p in status["processes"]] == [(0, True), (1, True)]
    assert status["state"] == "ready"


def test_clusters_of_both_processes_serve_the_api(lab2):
    for cluster in ("c1", "c2"):
        ns = unique(f"proc-{cluster}")
        with lab2.api(cluster) as api:
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            core.create_namespaced_config_map(ns, client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="where"), data={"cluster": cluster}))
            assert core.read_namespaced_config_map("where", ns).data == {"cluster": cluster}
            # the controllers of that process run: the namespace gets its default ServiceAccount
            _wait(lambda: core.list_namespaced_service_account(ns).items, f"default SA in {cluster}")
        out = lab2.kubectl("get", "configmap", "where", "-n", ns, "-o", "json", context=cluster).stdout
        assert json.loads(out)["data"] == {"cluster": cluster}
        # each cluster is its own store: the other process's cluster has no such namespace
        other = "c2" if cluster == "c1" else "c1"
        assert lab2.kubectl("get", "namespace", ns, context=other, check=False).returncode != 0
        lab2.kubectl("delete", "namespace", ns, "--wait=false", context=cluster)


def test_per_cluster_routes_reach_the_serving_process(lab2):
    status = _status(lab2)
    assert _owner(status, "c1") == 1 and _owner(status, "c2") == 0
    lab2.cli("fault", "c1", "latency", "7")
    lab2.cli("fault", "c2", "errors", "0.5", "503")
    try:
        faults = {c["name"]: c["faults"] for c in _status(lab2)["clusters"]}
        assert faults["c1"]["latency_ms"] == 7 and faults["c1"]["error_rate"] == 0
        assert faults["c2"]["error_rate"] == 0.5 and faults["c2"]["error_code"] == 503
        assert faults["c3"]["latency_ms"] == 0 and faults["c4"]["error_rate"] == 0
    finally:
        lab2.cli("fault", "c1", "clear")
        lab2.cli("fault", "c2", "clear")
    ns = unique("seeded")
    out = lab2.cli("seed", "crd", "--cluster", "c3", "--namespace", ns).stdout
    assert out.startswith("c3: ")
    with lab2.api("c3") as api:
        assert client.CoreV1Api(api).read_namespace(ns)
    with lab2.api("c4") as api:
        with pytest.raises(client.ApiException) as err:
            client.CoreV1Api(api).read_namespace(ns)
        assert err.value.status == 404
    # a cluster no process serves: the same answer as a one-process lab gives
    unknown = lab2.cli("fault", "c9", "latency", "1", check=False)
    assert unknown.returncode == 5 and "known: c1, c2, c3, c4" in unknown.stderr
    # a per-cluster error from the serving process comes back as it is
    sync = lab2.cli("velero", "sync", "--cluster", "c1", check=False)
    assert sync.returncode == 1 and "velero is not running in cluster 'c1'" in sync.stderr


def test_lab_wide_routes_reach_every_process(lab2):
    before = lab2.cli("clock", "show").stdout
    lab2.cli("clock", "advance", "2h")
    # every process's clusters stamp objects with the advanced clock
    stamps = {}
    for cluster in ("c1", "c2"):
        ns = unique(f"clock-{cluster}")
        with lab2.api(cluster) as api:
            created = client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            stamps[cluster] = created.metadata.creation_timestamp
            client.CoreV1Api(api).delete_namespace(ns)
    now = time.time()
    for cluster, stamp in stamps.items():
        assert stamp.timestamp() > now + 3600, (cluster, stamp, before)
    assert lab2.state["clock_offset_seconds"] >= 7200
    # image rules: lab-wide and per cluster, answered whole whichever process serves the cluster
    lab2.cli("image", "deny", "quay.io")
    lab2.cli("image", "deny", "busybox:1.0", "--cluster", "c1")
    lab2.cli("image", "deny", "busybox:2.0", "--cluster", "c2")
    shown = lab2.cli("image", "show").stdout
    for line in ("lab-wide   deny   quay.io", "c1         deny   busybox:1.0",
                 "c2         deny   busybox:2.0"):
        assert line in shown
    # the lab-wide rule acts in both processes: a pod of that registry fails to pull in c1 and c2
    for cluster in ("c1", "c2"):
        ns = unique(f"img-{cluster}")
        with lab2.api(cluster) as api:
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            _wait(lambda: core.list_namespaced_service_account(ns).items, "default SA")
            core.create_namespaced_pod(ns, client.V1Pod(
                metadata=client.V1ObjectMeta(name="p"),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="c", image="quay.io/fleetdr/app:1")])))

            def waiting_reason():
                statuses = core.read_namespaced_pod("p", ns).status.container_statuses or []
                return next((s.state.waiting.reason for s in statuses
                             if s.state.waiting and s.state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")), None)
            _wait(waiting_reason, f"image pull failure in {cluster}")
            core.delete_namespace(ns)
    lab2.cli("image", "allow", "quay.io")
    # Velero sync of the whole lab asks every process (none runs Velero here)
    assert json.loads(lab2.cli("velero", "sync").stdout) == {"synced": {}}


def test_killed_serving_process_is_reported_and_down_leaves_none(lab_factory):
    handle = lab_factory(clusters=3, extra=("--processes", "2"))
    state = handle.state
    primary = state["pid"]
    serving = next(p for p in state["processes"] if p["index"] == 1)
    assert serving["clusters"] == ["c1", "c3"]
    os.kill(serving["pid"], 9)
    _wait(lambda: not _alive(serving["pid"]), "the serving process to die")

    status = _wait(lambda: (lambda s: s if s["state"] == "degraded" else None)(_status(handle)),
                   "status to show the dead process")
    dead = next(p for p in status["processes"] if p["index"] == 1)
    assert not dead["alive"] and dead["exit_code"] == -9
    up = {c["name"]: c["up"] for c in status["clusters"]}
    assert up == {"c1": False, "c2": True, "c3": False}
    assert any("serving process 1" in e["error"] and "exited with -9" in e["error"]
               for e in status["errors"])
    text = handle.cli("status").stdout
    assert "EXITED (-9)" in text
    assert [line.split()[2] for line in text.splitlines() if line.startswith(("c1 ", "c2 "))] == ["DOWN", "up"]
    # routes of its clusters and lab-wide ones fail loudly; the primary's clusters still answer
    fault = handle.cli("fault", "c1", "latency", "5", check=False)
    assert fault.returncode == 1 and "serving process 1" in fault.stderr and "has exited" in fault.stderr
    assert handle.cli("clock", "advance", "1m", check=False).returncode == 1
    with handle.api("c2") as api:
        assert client.CoreV1Api(api).list_namespace().items

    assert handle.cli("down").returncode == 0
    assert not _alive(primary)
    assert not _alive(serving["pid"])


def test_down_stops_every_serving_process(lab_factory):
    handle = lab_factory(clusters=3, extra=("--processes", "3"))
    pids = [p["pid"] for p in handle.state["processes"]]
    assert len(set(pids)) == 3 and all(_alive(p) for p in pids)
    s3_port = int(handle.s3["endpoint"].rsplit(":", 1)[1])
    ports = [c["port"] for c in handle.state["clusters"]]
    assert handle.cli("down").returncode == 0
    assert not any(_alive(p) for p in pids)
    import socket
    for port in ports + [s3_port]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(handle.dir) not in listing


def test_small_labs_stay_one_process(lab):
    """The default: the tests' 1-10 cluster labs are one process, as before."""
    assert len(lab.state["processes"]) == 1
    assert _status(lab)["processes"][0]["pid"] == lab.state["pid"]


def test_load_balancer_routes_are_seen_by_every_process(tmp_path):
    """Lab.external_addresses of two processes (two instances on one lab dir): an address one
    records is resolved by the other."""
    sys.path.insert(0, str(REPO / "lab"))
    from fleetdr_lab.labdir import ExternalAddresses
    first, second = ExternalAddresses(tmp_path / "lb"), ExternalAddresses(tmp_path / "lb")
    assert second.get("10.128.0.10:80") is None
    first["10.128.0.10:80"] = "http://127.0.0.1:4567"
    assert second.get("10.128.0.10:80") == "http://127.0.0.1:4567"
    first["10.128.0.10:80"] = "http://127.0.0.1:4568"
    assert second.get("10.128.0.10:80") == "http://127.0.0.1:4568"


def test_sample_of_the_lab_suite_on_two_processes(tmp_path):
    """Conformance modules run unchanged against a 3-cluster lab in 2 processes, through the
    conftest's FLEETDR_LAB_DIR (c1 and c3 are served by process 1, c2 by the primary)."""
    handle = LabHandle.up(tmp_path / "lab", clusters=3, processes=2)
    try:
        assert len(handle.state["processes"]) == 2
        env = cli_env()
        env["FLEETDR_LAB_DIR"] = str(handle.dir)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q",
             "tests/lab/test_conformance_kubectl.py", "tests/lab/test_conformance_watch_lifecycle.py",
             "tests/lab/test_conformance_auth.py"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert " passed" in proc.stdout
        assert all(p["alive"] for p in _status(handle)["processes"])
    finally:
        handle.down()
