"""Emulated Velero backups at fleet scale: CPU of the lab process and of its S3 child per backup.

Starts a private lab of N clusters (default 100) in a temporary directory (or reuses `--dir` of a
running one), installs Velero on every cluster through the Kubernetes API (the test fixture's
installer), then for each round creates one Backup per cluster at once (namespace velero,
includedNamespaces [default]) and waits on watches until all are terminal.

Figures per round: wall time, and CPU-seconds (utime+stime from /proc/<pid>/stat) of the lab daemon
and of the S3 child (moto) during the round, minus their idle CPU: the idle rate is measured over
`--idle` seconds right before the round and scaled to the round's wall time. Per-backup figures
divide by N. The machine may be shared: compare CPU-seconds, not wall. Not a test: nothing asserts.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402

from kubernetes import watch as kwatch  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
TERMINAL = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")


def load_installer():
    path = REPO / "tests" / "lab" / "velero" / "conftest.py"
    spec = importlib.util.spec_from_file_location("velero_install_fixture", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def s3_child(lab: LabHandle, daemon_pid: int) -> int:
    port = lab.s3["endpoint"].rsplit(":", 1)[1]
    for pid in children(daemon_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if port.encode() in cmd:
            return pid
    raise RuntimeError("no S3 child process found under the lab daemon")


def snapshot(pids: dict) -> dict:
    return {k: cpu_seconds(p) for k, p in pids.items()}


def backup_and_wait(v, name: str, timeout: float) -> str:
    """Create the Backup, then follow it on a watch until it is terminal; returns the phase."""
    created = v.create_backup(name, {"includedNamespaces": ["default"]})
    rv = created["metadata"]["resourceVersion"]
    phase = (created.get("status") or {}).get("phase", "")
    deadline = time.monotonic() + timeout
    while phase not in TERMINAL and time.monotonic() < deadline:
        w = kwatch.Watch()
        try:
            for ev in w.stream(v.custom.list_namespaced_custom_object, "velero.io", "v1", v.namespace, "backups",
                               field_selector=f"metadata.name={name}", resource_version=rv,
                               timeout_seconds=max(1, int(deadline - time.monotonic()))):
                obj = ev["object"]
                rv = obj["metadata"]["resourceVersion"]
                phase = (obj.get("status") or {}).get("phase", "")
                if phase in TERMINAL:
                    break
        finally:
            w.stop()
    return phase


def start_spy(pids: dict, spy_dir: str | None) -> list:
    """py-spy (next to this Python or on PATH) on both processes: raw stacks of the GIL holder."""
    if not spy_dir:
        return []
    import shutil
    import subprocess
    exe = Path(sys.executable).with_name("py-spy")
    exe = str(exe) if exe.exists() else shutil.which("py-spy")
    if not exe:
        print("py-spy not found: no profile", flush=True)
        return []
    Path(spy_dir).mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([exe, "record", "--gil", "-p", str(pid), "-f", "raw", "-r", "200", "--nonblocking",
                               "-o", str(Path(spy_dir) / f"{k}.raw")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k, pid in pids.items()]
    time.sleep(1.0)
    return procs


def stop_spy(procs: list) -> None:
    import signal
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        p.wait()


def install_all(lab: LabHandle, mod=None) -> dict:
    """Velero (v1.18.1, BSL prefix bench/<cluster>) in every cluster of the lab; cluster -> VeleroInstall."""
    mod = mod or load_installer()
    installs = {}
    lock = threading.Lock()

    def install(c):
        v = mod.VeleroInstall(lab, c, prefix=f"bench/{c}", version="v1.18.1").install(wait=True)
        with lock:
            installs[c] = v

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(install, lab.clusters))
    return installs


def lab_pids(lab: LabHandle) -> dict:
    daemon_pid = lab.state["pid"]
    return {"lab": daemon_pid, "s3": s3_child(lab, daemon_pid)}


def measure_round(installs: dict, pids: dict, idle_s: float, timeout: float, spy_dir: str | None = None) -> dict:
    """Idle CPU over `idle_s`, then one Backup per cluster at once until all are terminal."""
    clusters = sorted(installs, key=lambda c: int(c[1:]) if c[1:].isdigit() else 0)
    n = len(clusters)
    before = snapshot(pids)
    t0 = time.monotonic()
    time.sleep(idle_s)
    idle_wall = time.monotonic() - t0
    start = snapshot(pids)
    idle_rate = {k: (start[k] - before[k]) / idle_wall for k in pids}
    tag = uuid.uuid4().hex[:6]
    spies = start_spy(pids, spy_dir)
    t1 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        phases = list(pool.map(lambda c: backup_and_wait(installs[c], f"bench-{tag}-{c}", timeout), clusters))
    wall = time.monotonic() - t1
    end = snapshot(pids)
    stop_spy(spies)
    raw = {k: end[k] - start[k] for k in pids}
    net = {k: raw[k] - idle_rate[k] * wall for k in pids}
    row = {"backups": n, "wall_s": round(wall, 2),
           "completed": sum(1 for p in phases if p == "Completed"),
           "phases": sorted(set(phases)),
           "idle_cpu_per_s": {k: round(v, 4) for k, v in idle_rate.items()},
           "raw_cpu_s": {k: round(v, 3) for k, v in raw.items()},
           "net_cpu_s": {k: round(v, 3) for k, v in net.items()},
           "net_ms_per_backup": {k: round(1000 * v / n, 1) for k, v in net.items()},
           "loadavg": os.getloadavg()[0]}
    row["net_ms_per_backup"]["total"] = round(sum(row["net_ms_per_backup"].values()), 1)
    return row


def run(lab: LabHandle, rounds: int, idle_s: float, timeout: float, spy_dir: str | None = None) -> dict:
    pids = lab_pids(lab)
    print(f"lab pid {pids['lab']}, S3 child pid {pids['s3']}; installing Velero on {len(lab.clusters)} clusters ...",
          flush=True)
    t = time.monotonic()
    installs = install_all(lab)
    print(f"installed in {time.monotonic() - t:.1f}s", flush=True)
    time.sleep(3)   # let the first BSL validations settle
    results = []
    for r in range(rounds):
        # the profile (round 1 only) skews that round's CPU
        row = {"round": r + 1, **measure_round(installs, pids, idle_s, timeout, spy_dir if r == 0 else None)}
        results.append(row)
        m = row["net_ms_per_backup"]
        print(f"round {r + 1}: {row['completed']}/{row['backups']} Completed in {row['wall_s']:.2f}s; per backup "
              f"lab {m['lab']} ms + S3 {m['s3']} ms = {m['total']} ms (idle lab {row['idle_cpu_per_s']['lab']:.3f} "
              f"S3 {row['idle_cpu_per_s']['s3']:.3f} CPU-s/s, load {row['loadavg']:.2f})", flush=True)
    return {"clusters": len(lab.clusters), "rounds": results, "host_cpus": os.cpu_count()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=8.0, help="seconds of idle measurement before each round")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--dir", help="reuse a running lab in this directory (Velero is installed into it)")
    ap.add_argument("--spy", help="record py-spy profiles of round 1 into this directory")
    ap.add_argument("--out", default=str(REPO / "bench-results" / "backups.json"))
    args = ap.parse_args()
    if args.dir:
        figures = run(LabHandle(args.dir, owned=False), args.rounds, args.idle, args.timeout, args.spy)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-backups-") as tmp:
            t = time.monotonic()
            lab = LabHandle.up(Path(tmp) / "lab", clusters=args.clusters)
            print(f"lab of {args.clusters} clusters up in {time.monotonic() - t:.1f}s", flush=True)
            try:
                figures = run(lab, args.rounds, args.idle, args.timeout, args.spy)
            finally:
                lab.down()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{'round':>5} {'wall s':>7} {'ok':>5} {'lab ms/b':>9} {'S3 ms/b':>8} {'total':>7}")
    for r in figures["rounds"]:
        m = r["net_ms_per_backup"]
        print(f"{r['round']:>5} {r['wall_s']:>7.2f} {r['completed']:>5} {m['lab']:>9.1f} {m['s3']:>8.1f} {m['total']:>7.1f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
