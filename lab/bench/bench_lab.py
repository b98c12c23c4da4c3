"""fleetdr-lab benchmark (`make bench-lab`): start-up cost, list and watch figures.

Figures:
  - `fleetdr-lab up` with 3 and 100 clusters: wall time, RSS of the lab process (and of moto),
    idle CPU of the lab process over a few seconds after start-up;
  - LIST of 1,000 objects selected by a label selector (out of 2,000) over HTTPS with the
    kubernetes Python client;
  - watch event latency: create a ConfigMap -> its ADDED event arrives at a watching client;
  - Rook: on a lab of N clusters (one node, one raw device each), Rook's stand-in release manifests
    applied with kubectl, then per cluster a CephCluster (1 mon), a CephBlockPool, a CephObjectStore
    and a bucket claim, all to Ready/Bound: wall time and the lab's CPU per cluster.
Writes bench-results/lab.json and prints a table. Not a test: nothing here asserts.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402

from kubernetes import client as kclient, watch as kwatch  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def bench_up(base: Path, clusters: int, idle_seconds: float) -> tuple[dict, LabHandle]:
    handle = LabHandle(base / f"up{clusters}")
    started = time.monotonic()
    handle.cli("up", "--clusters", str(clusters))
    wall = time.monotonic() - started
    pid = handle.state["pid"]
    cpu0 = cpu_seconds(pid)
    time.sleep(idle_seconds)
    idle_cpu = (cpu_seconds(pid) - cpu0) / idle_seconds
    moto = [rss_mib(c) for c in children(pid)]
    return {"clusters": clusters, "wall_s": round(wall, 2), "lab_rss_mib": round(rss_mib(pid), 1),
            "moto_rss_mib": round(sum(moto), 1),
            "idle_cpu_fraction": round(idle_cpu, 3)}, handle


def bench_list(handle: LabHandle, total: int = 2000, selected: int = 1000,
               rounds: int = 5) -> dict:
    api = handle.api("c1")
    core = kclient.CoreV1Api(api)
    ns = "bench-list"
    core.create_namespace({"metadata": {"name": ns}})

    def make(i: int):
        tier = "a" if i < selected else "b"
        core.create_namespaced_config_map(ns, {
            "metadata": {"name": f"cm-{i:05d}", "labels": {"bench": "list", "tier": tier}},
            "data": {"index": str(i)}})

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(make, range(total)))
    create_s = time.monotonic() - started
    timings = []
    for _ in range(rounds):
        t0 = time.monotonic()
        items = core.list_namespaced_config_map(ns, label_selector="tier=a").items
        timings.append(time.monotonic() - t0)
        assert len(items) == selected, len(items)
    api.close()
    return {"objects_total": total, "objects_selected": selected,
            "create_total_s": round(create_s, 2),
            "create_per_object_ms": round(1000 * create_s / total, 2),
            "list_selected_median_ms": round(1000 * statistics.median(timings), 1),
            "list_selected_min_ms": round(1000 * min(timings), 1)}


def bench_watch(handle: LabHandle, events: int = 100) -> dict:
    api = handle.api("c1")
    core = kclient.CoreV1Api(api)
    ns = "bench-watch"
    core.create_namespace({"metadata": {"name": ns}})
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    seen: dict[str, float] = {}
    ready = threading.Event()
    done = threading.Event()

    def watcher():
        w_api = handle.api("c1")
        w = kwatch.Watch()
        ready.set()
        for ev in w.stream(kclient.CoreV1Api(w_api).list_namespaced_config_map, ns,
                           resource_version=rv, timeout_seconds=120):
            if ev["type"] == "ADDED":
                seen[ev["object"].metadata.name] = time.monotonic()
                if len(seen) >= events:
                    break
        w.stop()
        w_api.close()
        done.set()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.5)  # let the watch request reach the server
    sent: dict[str, float] = {}
    for i in range(events):
        name = f"w-{i:04d}"
        sent[name] = time.monotonic()
        core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
        time.sleep(0.01)
    done.wait(timeout=60)
    api.close()
    lat = sorted(1000 * (seen[n] - sent[n]) for n in sent if n in seen)
    if not lat:
        return {"events": 0}
    return {"events": len(lat),
            "latency_median_ms": round(statistics.median(lat), 2),
            "latency_p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 2),
            "latency_max_ms": round(lat[-1], 2)}


ROOK_GROUP = "ceph.rook.io"


def _created(create, *args):
    """Create, counting AlreadyExists as done (a retry after the CRDs became served)."""
    try:
        create(*args)
    except kclient.ApiException as exc:
        if exc.status != 409:
            raise


def _rook_objects(api) -> None:
    custom = kclient.CustomObjectsApi(api)
    body = lambda kind, name, spec: {"apiVersion": f"{ROOK_GROUP}/v1", "kind": kind,  # noqa: E731
                                     "metadata": {"name": name, "namespace": "rook-ceph"}, "spec": spec}
    _created(custom.create_namespaced_custom_object, ROOK_GROUP, "v1", "rook-ceph", "cephclusters", body("CephCluster", "rook-ceph", {
        "cephVersion": {"image": "quay.io/ceph/ceph:v20.2.4"}, "dataDirHostPath": "/var/lib/rook", "mon": {"count": 1},
        "mgr": {"count": 1}, "storage": {"useAllNodes": True, "useAllDevices": True}}))
    _created(custom.create_namespaced_custom_object, ROOK_GROUP, "v1", "rook-ceph", "cephblockpools", body(
        "CephBlockPool", "replicapool", {"replicated": {"size": 1, "requireSafeReplicaSize": False}}))
    _created(custom.create_namespaced_custom_object, ROOK_GROUP, "v1", "rook-ceph", "cephobjectstores", body("CephObjectStore", "store", {
        "metadataPool": {"replicated": {"size": 1}}, "dataPool": {"replicated": {"size": 1}}, "gateway": {"port": 80}}))
    _created(kclient.StorageV1Api(api).create_storage_class, {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "bucket"},
        "provisioner": "rook-ceph.ceph.rook.io/bucket", "parameters": {"objectStoreName": "store", "objectStoreNamespace": "rook-ceph"}})
    _created(custom.create_namespaced_custom_object, "objectbucket.io", "v1alpha1", "default", "objectbucketclaims", {
        "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim", "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"generateBucketName": "bench", "storageClassName": "bucket"}})


def _rook_ready(api) -> bool:
    custom = kclient.CustomObjectsApi(api)
    phase = lambda group, ns, plural, name: ((custom.get_namespaced_custom_object(  # noqa: E731
        group, "v1" if group == ROOK_GROUP else "v1alpha1", ns, plural, name).get("status") or {}).get("phase"))
    try:
        return (phase(ROOK_GROUP, "rook-ceph", "cephclusters", "rook-ceph") == "Ready"
                and phase(ROOK_GROUP, "rook-ceph", "cephblockpools", "replicapool") == "Ready"
                and phase("objectbucket.io", "default", "objectbucketclaims", "bench") == "Bound")
    except kclient.ApiException:
        return False


def bench_rook(base: Path, clusters: int) -> dict:
    """Rook on every cluster of a fresh lab: lab CPU and wall from the operator start to everything Ready."""
    handle = LabHandle(base / f"rook{clusters}")
    handle.cli("up", "--clusters", str(clusters), "--devices", "1")
    try:
        manifests = handle.dir / "rook-manifests"
        handle.cli("rook", "manifests", "--out", str(manifests))
        pid = handle.state["pid"]
        cpu0, started = cpu_seconds(pid), time.monotonic()

        def one(cluster):
            import subprocess
            subprocess.run(["kubectl", "--kubeconfig", str(handle.kubeconfig), "--context", cluster, "create",
                            "-f", str(manifests / "crds.yaml"), "-f", str(manifests / "common.yaml"), "-f", str(manifests / "operator.yaml")],
                           check=True, capture_output=True)
            api = handle.api(cluster)
            try:
                deadline = time.monotonic() + 300
                while True:  # the operator must be running before its CRs are reconciled
                    try:
                        _rook_objects(api)
                        break
                    except kclient.ApiException:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
                while not _rook_ready(api):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Rook objects of {cluster} not Ready within 300 s")
                    time.sleep(0.5)
            finally:
                api.close()

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, handle.clusters))
        wall, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu0
        return {"clusters": clusters, "wall_s": round(wall, 2), "lab_cpu_s": round(cpu, 2),
                "lab_cpu_ms_per_cluster": round(1000 * cpu / clusters, 1)}
    finally:
        handle.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench-results" / "lab.json"))
    parser.add_argument("--big", type=int, default=100, help="clusters of the large lab")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args()
    results: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="fleetdr-bench-lab-") as tmp:
        base = Path(tmp)
        small, handle = bench_up(base, 3, args.idle_seconds)
        try:
            results["up_3"] = small
            results["list"] = bench_list(handle)
            results["watch"] = bench_watch(handle)
        finally:
            handle.down()
        big, handle = bench_up(base, args.big, args.idle_seconds)
        handle.down()
        results[f"up_{args.big}"] = big
        results["rook"] = bench_rook(base, args.big)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    rows = [
        ("up 3 clusters: wall", f"{small['wall_s']} s"),
        ("up 3 clusters: lab RSS / moto RSS",
         f"{small['lab_rss_mib']} MiB / {small['moto_rss_mib']} MiB"),
        ("up 3 clusters: idle CPU", f"{100 * small['idle_cpu_fraction']:.1f} %"),
        (f"up {args.big} clusters: wall", f"{big['wall_s']} s"),
        (f"up {args.big} clusters: lab RSS / moto RSS",
         f"{big['lab_rss_mib']} MiB / {big['moto_rss_mib']} MiB"),
        (f"up {args.big} clusters: idle CPU", f"{100 * big['idle_cpu_fraction']:.1f} %"),
        ("create 2,000 ConfigMaps (8 threads)",
         f"{results['list']['create_total_s']} s ({results['list']['create_per_object_ms']} ms each)"),
        ("LIST 1,000 of 2,000 by label (median)",
         f"{results['list']['list_selected_median_ms']} ms"),
        ("watch latency create->ADDED median / p95",
         f"{results['watch'].get('latency_median_ms')} ms / "
         f"{results['watch'].get('latency_p95_ms')} ms"),
        (f"Rook on {args.big} clusters (CephCluster, pool, object store, bucket claim): wall",
         f"{results['rook']['wall_s']} s"),
        (f"Rook on {args.big} clusters: lab CPU", f"{results['rook']['lab_cpu_s']} s "
                                                  f"({results['rook']['lab_cpu_ms_per_cluster']} ms per cluster)"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'fleetdr-lab benchmark':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
