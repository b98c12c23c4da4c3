#!/usr/bin/env python3
"""`make bench`: fleet install, storage (Rook), backup, migrate and drill, wall time and controller CPU for 1, 10, 50 and 100 lab clusters.

Install: on a lab without Velero, for each size N (clusters c1..cN, uninstalled again after each
shape) a fresh install and a second, no-change run, both ways:
  fleet  - playbooks/install.yml: one controller-side task (the apply engine), watch waits;
  naive  - tools/bench/naive_install.yml: role fleetdr.kube.velero per host, default 5 forks.
Backup:
one lab of 100 clusters (in a temporary directory, stopped at the end); Velero is installed on every
cluster through the API (the test helper) to keep set-up time sane. For each size N the same
backup (namespace default) runs twice with `--limit c1..cN`:
  fleet  - playbooks/backup.yml: one controller-side task, one thread per cluster, watch waits;
  naive  - tools/bench/naive_backup.yml: velero_backup per host, wait: true, default 5 forks.
Migrate and drill, on the same lab (bench-results/day2.json): migrate c1 -> c2..cN of a namespace
with a ConfigMap, each size into its own namespace; drill of a fresh backup on c1..cN.
Controller CPU = user+sys of the ansible-playbook process tree (resource.RUSAGE_CHILDREN delta).
Lab CPU = the same for the lab's serving processes (every emulated API server and Velero) and its S3 child
(moto), read from /proc: on this machine they share the cores with the controller, so a large
fleet's wall time is bounded by their work too, which a real fleet spreads over its clusters.
Writes bench-results/fleet.json (and install.json) and prints the tables.
"""

import argparse
import concurrent.futures
import datetime
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
from helpers import VeleroInstall  # noqa: E402
from labctl import LabHandle  # noqa: E402


def process_cpu(pid):
    """user+sys seconds of one process (Linux /proc), 0.0 when it is gone."""
    try:
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lab_pids(lab):
    """Every serving process of the lab (lab.json "processes": the daemon `up` started and the
    serving processes it started) and the S3 server (the daemon's other child)."""
    state = json.loads((lab.dir / "lab.json").read_text())
    pid = int(state["pid"])
    serving = [int(p["pid"]) for p in state.get("processes") or [{"pid": pid}]]
    try:
        children = [int(c) for c in Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()]
    except OSError:
        children = []
    return {"lab": serving, "s3": [c for c in children if c not in serving]}


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


def measured_row(label, cmd, env, cwd, pids, row):
    """``row`` with the wall time, controller, lab and S3 CPU of running ``cmd`` (printed as it goes)."""
    proc, wall, cpu, lab_cpu = measure(cmd, env, cwd, pids)
    row.update(wall_s=wall, controller_cpu_s=cpu, lab_cpu_s=lab_cpu["lab"], s3_cpu_s=lab_cpu["s3"], rc=proc.returncode)
    if proc.returncode != 0:
        row["error_tail"] = (proc.stdout + proc.stderr)[-1500:]
    print("%-12s %4d clusters: wall %7.2fs  controller CPU %7.2fs  lab CPU %6.2fs  S3 CPU %6.2fs  rc %d" % (
        label, row["clusters"], wall, cpu, lab_cpu["lab"], lab_cpu["s3"], proc.returncode), flush=True)
    return row


def bench_install(args, sizes, env):
    """Fresh install and no-change re-run per size, fleet path and per-host role; returns the rows."""
    lab_dir = tempfile.mkdtemp(prefix="fleetdr-bench-install-")
    lab = LabHandle.up(lab_dir, clusters=max(sizes), processes=args.processes)
    work = Path(lab_dir) / "work"
    work.mkdir(exist_ok=True)
    secrets = work / "s3.json"
    secrets.write_text(json.dumps({"velero_s3_access_key_id": lab.s3["access_key_id"],
                                   "velero_s3_secret_access_key": lab.s3["secret_access_key"]}))
    rows = []
    try:
        pids = lab_pids(lab)
        for size in sizes:
            limit = ",".join("c%d" % i for i in range(1, size + 1))
            for shape in ("fleet", "naive"):
                if shape == "naive" and args.skip_naive:
                    continue
                playbook = "fleetdr.kube.install" if shape == "fleet" else str(REPO / "tools" / "bench" / "naive_install.yml")
                cmd = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), playbook, "--limit", limit,
                       "-e", "@" + str(secrets), "-e", "report_dir=" + str(work / "reports")]
                for run in ("fresh", "no-change"):
                    proc, wall, cpu, lab_cpu = measure(cmd, env, work, pids)
                    row = {"what": "install", "shape": shape, "run": run, "clusters": size, "wall_s": wall, "controller_cpu_s": cpu,
                           "lab_cpu_s": lab_cpu["lab"], "s3_cpu_s": lab_cpu["s3"], "rc": proc.returncode}
                    if proc.returncode != 0:
                        row["error_tail"] = (proc.stdout + proc.stderr)[-1500:]
                    rows.append(row)
                    print("install %-6s %-9s %4d clusters: wall %7.2fs  controller CPU %7.2fs  lab CPU %6.2fs  rc %d" % (
                        shape, run, size, wall, cpu, lab_cpu["lab"], proc.returncode), flush=True)
                subprocess.run([str(BIN / "ansible-playbook"), "-i", str(lab.inventory), "fleetdr.kube.install", "--limit", limit,
                                "-e", "velero_state=absent", "-e", "report_dir=" + str(work / "reports")],
                               env=env, cwd=work, capture_output=True, check=True)
    finally:
        lab.down()
    return rows


def bench_storage(args, sizes, env):
    """Rook-Ceph fleet install (playbooks/storage.yml: the release manifests, the operator, each CephCluster
    to Ready and healthy) fresh and no-change per size, on a lab of one node with one raw device per cluster
    (one mon, one mgr); uninstalled with destroy_data after each size."""
    lab_dir = tempfile.mkdtemp(prefix="fleetdr-bench-storage-")
    lab = LabHandle.up(lab_dir, clusters=max(sizes), extra=("--devices", "1"), processes=args.processes)
    work = Path(lab_dir) / "work"
    work.mkdir(exist_ok=True)
    manifests = work / "rook"
    lab.cli("rook", "manifests", "--out", str(manifests))
    settings = work / "rook.json"
    settings.write_text(json.dumps({"rook_ceph_cluster": {"monitor": {"count": 1}, "manager": {"count": 1}},
                                    "rook_ceph_manifests_src": str(manifests), "report_dir": str(work / "reports")}))
    rows = []
    try:
        pids = lab_pids(lab)
        for size in sizes:
            limit = ",".join("c%d" % i for i in range(1, size + 1))
            for shape in ("fleet", "naive"):
                if shape == "naive" and args.skip_naive:
                    continue
                playbook = "fleetdr.kube.storage" if shape == "fleet" else str(REPO / "tools" / "bench" / "naive_storage.yml")
                cmd = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), playbook, "--limit", limit, "-e", "@" + str(settings)]
                for run in ("fresh", "no-change"):
                    proc, wall, cpu, lab_cpu = measure(cmd, env, work, pids)
                    row = {"what": "storage", "shape": shape, "run": run, "clusters": size, "wall_s": wall, "controller_cpu_s": cpu,
                           "lab_cpu_s": lab_cpu["lab"], "rc": proc.returncode}
                    if proc.returncode != 0:
                        row["error_tail"] = (proc.stdout + proc.stderr)[-1500:]
                    rows.append(row)
                    print("storage %-6s %-9s %4d clusters: wall %7.2fs  controller CPU %7.2fs  lab CPU %6.2fs  rc %d" % (
                        shape, run, size, wall, cpu, lab_cpu["lab"], proc.returncode), flush=True)
                subprocess.run([str(BIN / "ansible-playbook"), "-i", str(lab.inventory), "fleetdr.kube.storage_teardown", "--limit", limit,
                                "-e", "@" + str(settings), "-e", "rook_ceph_destroy_data=true"], env=env, cwd=work, capture_output=True, check=True)
    finally:
        lab.down()
    result = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host_cpus": os.cpu_count(), "rows": rows,
              "ms_per_cluster_fresh": per_cluster_cpu(rows, "fleet", "fresh"),
              "ms_per_cluster_no_change": per_cluster_cpu(rows, "fleet", "no-change"),
              "naive_ms_per_cluster_fresh": per_cluster_cpu(rows, "naive", "fresh"),
              "naive_ms_per_cluster_no_change": per_cluster_cpu(rows, "naive", "no-change")}
    out = Path(args.out).with_name("storage.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\nstorage: controller CPU per added cluster fleet %s ms (no-change %s ms), per-host role %s ms (no-change %s ms); "
          "written to %s" % (result["ms_per_cluster_fresh"], result["ms_per_cluster_no_change"],
                             result["naive_ms_per_cluster_fresh"], result["naive_ms_per_cluster_no_change"], out))


def bench_day2(args, sizes, env, lab, work, pids, stamp):
    """Migrate (c1 to c2..cN, each size into namespaces of its own) and drill (each cluster restores
    its own backup aside, checks it and removes it) per size, on the backup bench's lab; fleet path
    only (the per-host way has no migrate or drill of its own). Writes day2.json."""
    lab.kubectl("create", "namespace", "benchapp", context="c1")
    lab.kubectl("create", "configmap", "settings", "-n", "benchapp", "--from-literal=colour=blue", context="c1")
    rows = []
    for size in sizes:
        limit = ",".join("c%d" % i for i in range(1, size + 1))
        runs = []
        if "migrate" in args.what and size > 1:
            runs.append(("migrate", ["fleetdr.kube.migrate", "-e", "migrate_name=mv-%d-%s" % (size, stamp), "-e", "source_cluster=c1",
                                     "-e", "included_namespaces=benchapp",
                                     "-e", json.dumps({"namespace_mapping": {"benchapp": "benchapp-%d" % size}})]))
        if "drill" in args.what:
            name = "dr-%d-%s" % (size, stamp)
            runs.append(("drill-backup", ["fleetdr.kube.backup", "-e", "backup_name=" + name, "-e", "included_namespaces=default"]))
            runs.append(("drill", ["fleetdr.kube.drill", "-e", "drill_name=" + name, "-e", "backup_name=" + name,
                                   "-e", "included_namespaces=default"]))
        for what, playbook in runs:
            cmd = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory)] + playbook + [
                "--limit", limit, "-e", "report_dir=" + str(work / "reports")]
            rows.append(measured_row(what, cmd, env, work, pids, {"what": what, "shape": "fleet", "clusters": size}))
    result = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host_cpus": os.cpu_count(), "rows": rows}
    for what in ("migrate", "drill"):
        found = sorted((r["clusters"], r["controller_cpu_s"]) for r in rows if r["what"] == what and r["rc"] == 0)
        result["%s_ms_per_cluster" % what] = (round(1000 * (found[-1][1] - found[0][1]) / (found[-1][0] - found[0][0]), 1)
                                              if len(found) > 1 else None)
    out = Path(args.out).with_name("day2.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\nmigrate: controller CPU per added target %s ms; drill: %s ms per added cluster; written to %s" % (
        result["migrate_ms_per_cluster"], result["drill_ms_per_cluster"], out))


def per_cluster_cpu(rows, shape, run):
    """Controller CPU per additional cluster, from the smallest and the largest size measured."""
    found = sorted((r["clusters"], r["controller_cpu_s"]) for r in rows if r["shape"] == shape and r["run"] == run and r["rc"] == 0)
    if len(found) < 2 or found[-1][0] == found[0][0]:
        return None
    return round(1000 * (found[-1][1] - found[0][1]) / (found[-1][0] - found[0][0]), 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50,100")
    parser.add_argument("--what", default="install,storage,backup,migrate,drill",
                        help="any of install, storage, backup, migrate, drill (comma separated; migrate and drill run on the backup lab)")
    parser.add_argument("--lab-dir", default=None, help="default: a new temporary directory")
    parser.add_argument("--out", default=str(REPO / "bench-results" / "fleet.json"))
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--processes", type=int, default=None,
                        help="serving processes of the lab (fleetdr-lab up --processes; default: the lab chooses)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_NOCOLOR="1")
    if "install" in args.what:
        rows = bench_install(args, sizes, env)
        fleet = dict((r["clusters"], r) for r in rows if r["shape"] == "fleet" and r["run"] == "fresh")
        result = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host_cpus": os.cpu_count(), "rows": rows,
                  "fleet_ms_per_cluster_fresh": per_cluster_cpu(rows, "fleet", "fresh"),
                  "fleet_ms_per_cluster_no_change": per_cluster_cpu(rows, "fleet", "no-change"),
                  "naive_ms_per_cluster_fresh": per_cluster_cpu(rows, "naive", "fresh"),
                  "fleet_wall_ratio_max_over_1": round(fleet[max(sizes)]["wall_s"] / fleet[1]["wall_s"], 2)
                  if 1 in fleet and max(sizes) in fleet else None,
                  "targets": {"ms_per_cluster_fresh": 50, "ms_per_cluster_no_change": 20, "wall_ratio": 2}}
        out = Path(args.out).with_name("install.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print("\n%-6s %-9s %8s %10s %12s %11s" % ("shape", "run", "clusters", "wall_s", "ctrl_cpu_s", "lab_cpu_s"))
        for r in rows:
            print("%-6s %-9s %8d %10.2f %12.2f %11.2f" % (r["shape"], r["run"], r["clusters"], r["wall_s"], r["controller_cpu_s"],
                                                         r["lab_cpu_s"]))
        print("\ninstall: controller CPU per added cluster fleet %s ms (no-change %s ms), naive %s ms; fleet wall(%d)/wall(1) = %s; "
              "written to %s" % (result["fleet_ms_per_cluster_fresh"], result["fleet_ms_per_cluster_no_change"],
                                 result["naive_ms_per_cluster_fresh"], max(sizes), result["fleet_wall_ratio_max_over_1"], out))
    if "storage" in args.what:
        bench_storage(args, [n for n in sizes if n <= 50], env)
    if "backup" in args.what or "migrate" in args.what or "drill" in args.what:
        bench_backup(args, sizes, env)


def bench_backup(args, sizes, env):
    args.lab_dir = args.lab_dir or tempfile.mkdtemp(prefix="fleetdr-bench-")
    lab = LabHandle.up(args.lab_dir, clusters=max(sizes), processes=args.processes)
    work = Path(args.lab_dir) / "work"
    work.mkdir(exist_ok=True)
    rows = []
    try:
        install = VeleroInstall
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
                rows.append(measured_row(shape, cmd, env, work, pids, {"shape": shape, "clusters": size}))
        if "migrate" in args.what or "drill" in args.what:
            bench_day2(args, sizes, env, lab, work, pids, stamp)
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
