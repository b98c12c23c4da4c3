#!/usr/bin/env python3
"""`make bench`: fleet backup wall time and controller CPU for 1, 10, 50 and 100 lab clusters.

One lab of 100 clusters (in a temporary directory, stopped at the end); Velero is installed on every
cluster through the API (the test helper) to keep set-up time sane. For each size N the same
backup (namespace default) runs twice with `--limit c1..cN`:
  fleet  - playbooks/backup.yml: one controller-side task, one thread per cluster, watch waits;
  naive  - tools/bench/naive_backup.yml: velero_backup per host, wait: true, default 5 forks.
Controller CPU = user+sys of the ansible-playbook process tree (resource.RUSAGE_CHILDREN delta).
Lab CPU = the same for the lab daemon (every emulated API server and Velero) and its S3 child
(moto), read from /proc: on this machine they share the cores with the controller, so a large
fleet's wall time is bounded by their work too, which a real fleet spreads over its clusters.
Writes bench-results/fleet.json and prints a table.
"""

import argparse
import concurrent.futures
import datetime
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COLLECTIONS = Path(os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections")).split(os.pathsep)[0])
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402


def velero_helper():
    spec = importlib.util.spec_from_file_location("fleetdr_velero_helper", REPO / "tests" / "lab" / "velero" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.VeleroInstall


def process_cpu(pid):
    """user+sys seconds of one process (Linux /proc), 0.0 when it is gone."""
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lab_pids(lab):
    """The lab daemon and its direct children (the S3 server)."""
    pid = int((lab.dir / "lab.pid").read_text().split()[0])
    try:
        children = Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()
    except OSError:
        children = []
    return {"lab": [pid], "s3": [int(c) for c in children]}


def measure(cmd, env, cwd, pids):
    lab_before = dict((k, sum(process_cpu(p) for p in v)) for k, v in pids.items())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lab_cpu = dict((k, round(sum(process_cpu(p) for p in v) - lab_before[k], 2)) for k, v in pids.items())
    return proc, round(wall, 2), round(cpu, 2), lab_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50,100")
    parser.add_argument("--lab-dir", default=None, help="default: a new temporary directory")
    parser.add_argument("--out", default=str(REPO / "bench-results" / "fleet.json"))
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    args.lab_dir = args.lab_dir or tempfile.mkdtemp(prefix="fleetdr-bench-")
    lab = LabHandle.up(args.lab_dir, clusters=max(sizes))
    work = Path(args.lab_dir) / "work"
    work.mkdir(exist_ok=True)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_NOCOLOR="1")
    rows = []
    try:
        install = velero_helper()
        print("installing Velero on %d clusters through the API ..." % len(lab.clusters), flush=True)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: install(lab, c, prefix=c, version="v1.18.1").install(wait=True), lab.clusters))
        pids = lab_pids(lab)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H%M%S")
        for size in sizes:
            limit = ",".join("c%d" % i for i in range(1, size + 1))
            for shape in ("fleet", "naive"):
                if shape == "naive" and args.skip_naive:
                    continue
                name = "bench-%s-%d-%s" % (shape, size, stamp)
                if shape == "fleet":
                    cmd = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), "fleetdr.kube.backup", "--limit", limit,
                           "-e", "backup_name=" + name, "-e", "included_namespaces=default",
                           "-e", "report_dir=" + str(work / "reports")]
                else:
                    cmd = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), str(REPO / "tools" / "bench" / "naive_backup.yml"),
                           "--limit", limit, "-e", "backup_name=" + name]
                proc, wall, cpu, lab_cpu = measure(cmd, env, work, pids)
                row = {"shape": shape, "clusters": size, "wall_s": wall, "controller_cpu_s": cpu,
                       "lab_cpu_s": lab_cpu["lab"], "s3_cpu_s": lab_cpu["s3"], "rc": proc.returncode}
                if proc.returncode != 0:
                    row["error_tail"] = (proc.stdout + proc.stderr)[-1500:]
                rows.append(row)
                print("%-6s %4d clusters: wall %7.2fs  controller CPU %7.2fs  lab CPU %6.2fs  S3 CPU %6.2fs  rc %d" % (
                    shape, size, wall, cpu, lab_cpu["lab"], lab_cpu["s3"], proc.returncode), flush=True)
    finally:
        lab.down()
    fleet = dict((r["clusters"], r) for r in rows if r["shape"] == "fleet")
    ratio = None
    if 1 in fleet and max(sizes) in fleet:
        ratio = round(fleet[max(sizes)]["wall_s"] / fleet[1]["wall_s"], 2)
    result = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host_cpus": os.cpu_count(),
              "rows": rows, "fleet_wall_ratio_max_over_1": ratio, "target_ratio": 1.5}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n%-6s %8s %10s %12s %11s %10s" % ("shape", "clusters", "wall_s", "ctrl_cpu_s", "lab_cpu_s", "s3_cpu_s"))
    for r in rows:
        values = (r["shape"], r["clusters"], r["wall_s"], r["controller_cpu_s"], r["lab_cpu_s"], r["s3_cpu_s"])
        print("%-6s %8d %10.2f %12.2f %11.2f %10.2f" % values)
    print("\nfleet wall(%d)/wall(1) = %s (target <= 1.5); written to %s" % (max(sizes), ratio, out))


if __name__ == "__main__":
    main()
