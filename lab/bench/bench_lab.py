"""fleetdr-lab benchmark (`make bench-lab`): start-up cost, list and watch figures.

Figures:
  - `fleetdr-lab up` with 3 and 100 clusters: wall time, RSS of the lab process (and of moto),
    idle CPU of the lab process over a few seconds after start-up;
  - LIST of 1,000 objects selected by a label selector (out of 2,000) over HTTPS with the
    kubernetes Python client;
  - watch event latency: create a ConfigMap -> its ADDED event arrives at a watching client.
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
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'fleetdr-lab benchmark':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
