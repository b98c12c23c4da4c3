#!/usr/bin/env python3
"""`make bench-scale`: one run on one controller for a 1,000-cluster lab - install, backup, status, report.

For each concurrency in --workers (default 128, the fan-out cap; "64,128,256" compares them, each on
a fresh lab so that earlier runs' backups do not slow later ones): a new lab of --clusters clusters
(start-up wall time and the lab daemon's RSS), then the fleet playbooks against all of them, one
after the other, with `-e max_workers=N`:
  install         - playbooks/install.yml on a fresh fleet (the apply engine, watch waits);
  status-all-fail - playbooks/status.yml before any backup: every cluster Degraded and failed as a host;
  backup          - playbooks/backup.yml (every namespace, each cluster once);
  status          - playbooks/status.yml;
  status-one-down - playbooks/status.yml with one cluster's API server down (one host failed);
and, from the backup's report.json, the time to validate it and render every format (table, Markdown,
JUnit, HTML) and the sizes written. Per operation: wall, controller CPU (the ansible-playbook process
tree), controller peak RSS (largest process of that tree), lab CPU (daemon + S3 child, which share
the cores here). Writes bench-results/scale.json and prints the table with the issue's targets.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "tests" / "lab"))
from bench_fleet import COLLECTIONS, lab_pids, process_cpu  # noqa: E402
from labctl import LabHandle  # noqa: E402

TARGETS = {"install_backup_report_wall_s": 180, "controller_ms_per_cluster_per_operation": 20, "controller_peak_rss_mb": 1024,
           "report_render_s": 1.0, "report_html_mb": 2.0}


def run_measured(cmd, env, cwd, pids):
    """(returncode, output tail, wall s, CPU s and peak RSS MB of the process tree, lab CPU s)."""
    lab_before = sum(process_cpu(p) for group in pids.values() for p in group)
    start = time.monotonic()
    with open(cwd / "last-run.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        # wait4: this child's rusage, its waited-for descendants included (ru_maxrss: the largest of them, in KiB)
        _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    lab_cpu = sum(process_cpu(p) for group in pids.values() for p in group) - lab_before
    tail = (cwd / "last-run.log").read_text()[-1500:]
    return proc.returncode, tail, round(wall, 2), round(usage.ru_utime + usage.ru_stime, 2), round(usage.ru_maxrss / 1024, 1), round(lab_cpu, 2)


def report_figures(report_dir):
    """Validate and render every format of one report.json, timed; the sizes the run wrote."""
    sys.path.insert(0, str(COLLECTIONS))
    from ansible_collections.fleetdr.kube.plugins.module_utils import report as reports
    report = json.loads((report_dir / "report.json").read_text())
    start = time.process_time()
    reports.validate_report(report)
    rendered = [reports.render_table(report), reports.render_markdown(report), reports.render_junit(report), reports.render_html(report),
                reports.render_json(report)]
    cpu = time.process_time() - start
    sizes = dict((path.name, path.stat().st_size) for path in report_dir.iterdir() if path.is_file())
    return {"render_cpu_s": round(cpu, 3), "rendered_bytes": sum(len(text) for text in rendered), "files_bytes": sizes}


def one_round(clusters, workers, env, processes=None):
    lab_dir = Path(tempfile.mkdtemp(prefix="fleetdr-bench-scale-"))
    start = time.monotonic()
    lab = LabHandle.up(lab_dir, clusters=clusters, processes=processes)
    round_ = {"workers": workers, "clusters": clusters, "lab_up_wall_s": round(time.monotonic() - start, 2), "operations": []}
    work = lab_dir / "work"
    work.mkdir()
    secrets = work / "s3.json"
    secrets.write_text(json.dumps({"velero_s3_access_key_id": lab.s3["access_key_id"],
                                   "velero_s3_secret_access_key": lab.s3["secret_access_key"]}))
    try:
        pids = lab_pids(lab)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H%M%S")
        common = ["-e", "report_dir=" + str(work / "reports"), "-e", "max_workers=%d" % workers, "-e", "progress_interval=30"]
        down = "c%d" % min(7, clusters)
        # (row, playbook, extra arguments, the exit code it must end with, lab fault during the run)
        operations = (("install", "install", ["-e", "@" + str(secrets)], 0, None),
                      # the failure paths: every cluster Degraded (no backup yet), then one cluster down
                      ("status-all-fail", "status", [], 2, None),
                      ("backup", "backup", ["-e", "backup_name=scale-" + stamp], 0, None),
                      ("status", "status", [], 0, None),
                      ("status-one-down", "status", [], 2, down))
        for operation, playbook, extra, expected_rc, fault in operations:
            cmd = [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), "fleetdr.kube." + playbook] + extra + common
            if fault:
                lab.cli("fault", fault, "down")
            try:
                rc, tail, wall, cpu, rss, lab_cpu = run_measured(cmd, env, work, pids)
            finally:
                if fault:
                    lab.cli("fault", fault, "clear")
            row = {"operation": operation, "rc": rc, "expected_rc": expected_rc, "wall_s": wall, "controller_cpu_s": cpu,
                   "controller_ms_per_cluster": round(1000 * cpu / clusters, 1), "controller_peak_rss_mb": rss, "lab_cpu_s": lab_cpu}
            if rc != expected_rc:
                row["error_tail"] = tail
            round_["operations"].append(row)
            print("workers %4d  %-15s wall %7.2fs  controller CPU %7.2fs (%5.1f ms/cluster)  peak RSS %6.1f MB  lab CPU %7.2fs  rc %d" % (
                workers, operation, wall, cpu, row["controller_ms_per_cluster"], rss, lab_cpu, rc), flush=True)
        found = sorted((work / "reports").glob("backup-scale-*"))
        if found:
            round_["backup_report"] = report_figures(found[-1])
        # peak RSS summed over the lab's serving processes
        round_["lab_rss_mb"] = round(sum(int(next(line.split()[1] for line in Path("/proc/%d/status" % pid).read_text().splitlines()
                                                  if line.startswith("VmHWM:"))) for pid in pids["lab"]) / 1024, 1)
        round_["lab_processes"] = len(pids["lab"])
    finally:
        lab.down()
    return round_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--workers", default="128", help="fan-out concurrency to measure, comma separated (each on a fresh lab)")
    parser.add_argument("--internal-poll-interval", type=float,
                        help="ansible.cfg [defaults] internal_poll_interval for the runs (Ansible's default: 0.001 s; the README's "
                             "advice for large fleets: 0.01)")
    parser.add_argument("--out", default=str(REPO / "bench-results" / "scale.json"))
    parser.add_argument("--processes", type=int, default=None,
                        help="serving processes of the lab (fleetdr-lab up --processes; default: the lab chooses)")
    args = parser.parse_args()
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1")
    if args.internal_poll_interval is not None:
        # While the one fleet task runs, ansible-playbook's main process polls for its result every
        # internal_poll_interval seconds (~27 ms of CPU per second of run at the default 0.001 s).
        config = Path(tempfile.mkdtemp(prefix="fleetdr-bench-cfg-")) / "ansible.cfg"
        config.write_text("[defaults]\ninternal_poll_interval = %s\n" % args.internal_poll_interval)
        env["ANSIBLE_CONFIG"] = str(config)
    rounds = [one_round(args.clusters, int(n), env, args.processes) for n in args.workers.split(",")]
    for round_ in rounds:
        ops = dict((row["operation"], row) for row in round_["operations"])
        round_["install_backup_report_wall_s"] = round(sum(ops[name]["wall_s"] for name in ("install", "backup") if name in ops)
                                                       + (round_.get("backup_report") or {}).get("render_cpu_s", 0), 2)
    result = {"generated": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host_cpus": os.cpu_count(), "targets": TARGETS,
              "internal_poll_interval": args.internal_poll_interval or "ansible default (0.001)", "rounds": rounds}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n%7s %-15s %9s %13s %12s %12s %10s" % ("workers", "op", "wall_s", "ctrl_cpu_s", "ms/cluster", "peak_rss_mb", "lab_cpu_s"))
    for round_ in rounds:
        for row in round_["operations"]:
            print("%7d %-15s %9.2f %13.2f %12.1f %12.1f %10.2f" % (
                round_["workers"], row["operation"], row["wall_s"], row["controller_cpu_s"], row["controller_ms_per_cluster"],
                row["controller_peak_rss_mb"], row["lab_cpu_s"]))
        report = round_.get("backup_report") or {}
        print("workers %d: lab up %.1fs (lab peak RSS %.0f MB); install+backup+report %.1fs; report render %.3fs CPU, report.html %.0f KB" % (
            round_["workers"], round_["lab_up_wall_s"], round_["lab_rss_mb"], round_["install_backup_report_wall_s"],
            report.get("render_cpu_s", 0), report.get("files_bytes", {}).get("report.html", 0) / 1024))
    print("targets: %s; written to %s" % (json.dumps(TARGETS), out))
    if any(row["rc"] != row["expected_rc"] for round_ in rounds for row in round_["operations"]):
        sys.exit("some operations failed (see error_tail in %s)" % out)


if __name__ == "__main__":
    main()
