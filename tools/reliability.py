#!/usr/bin/env python3
"""`make reliability`: the fault and bad-input suite (tests/integration/fault_suite.py) on a private
5-cluster lab with Velero everywhere, ten rounds of fleet backups and ten of migrations (c1 to the
others) under 20% HTTP 429 and under 20% HTTP 503 on every cluster, then one broken cluster at a time (down, hung, Velero at 0, location
Unavailable, another CA), 300 ms latency everywhere, every bad input, and a secret scan of all
output and reports. Prints the figures and writes them to bench-results/reliability.json.
Exit status 1 when any figure falls short (an operation that should have completed did not, a
duplicate Velero object, a bad input not refused before any write or not naming its option, a
secret found).
"""

import argparse
import concurrent.futures
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lab"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
from helpers import VeleroInstall  # noqa: E402
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner  # noqa: E402
import fault_suite  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default=str(REPO / "bench-results" / "reliability.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fleetdr-reliability-"))
    collections = work / "collections"
    subprocess.run([sys.executable, str(REPO / "tools" / "collections_tree.py"), str(collections)], check=True)
    lab = LabHandle.up(work / "lab", clusters=args.clusters)
    started = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(args.clusters) as pool:
            list(pool.map(lambda c: VeleroInstall(lab, c, prefix=c, version="v1.18.1").install(wait=True), lab.clusters))
        (work / "play").mkdir()
        play = PlaybookRunner(lab, collections, work / "play")
        faults = []
        for label, fault in (("429 x20%", ["errors", "0.2", "429"]), ("503 x20%", ["errors", "0.2", "503"])):
            faults.append(fault_suite.backup_rounds(lab, play, fault, args.rounds, label.split()[0]))
            faults[-1]["fault"] = "%s, %d rounds" % (label, args.rounds)
            print_fault(faults[-1])
            faults.append(fault_suite.migrate_rounds(lab, play, fault, args.rounds, "r" + label.split()[0]))
            faults[-1]["fault"] = "%s, %d migrate rounds" % (label, args.rounds)
            print_fault(faults[-1])
        faults.append(fault_suite.latency(lab, play))
        print_fault(faults[-1])
        for scenario in (fault_suite.cluster_down, fault_suite.hung_api_server, fault_suite.velero_at_zero,
                         fault_suite.location_unavailable):
            faults.append(scenario(lab, play))
            print_fault(faults[-1])
        faults.append(fault_suite.wrong_ca(lab, play, work))
        print_fault(faults[-1])
        bad = [fault_suite.try_bad_input(lab, play, case) for case in fault_suite.BAD_INPUTS]
        secrets = fault_suite.secret_occurrences(lab, play)
    finally:
        lab.down()

    inputs = {"tried": len(bad), "refused": sum(r["refused"] for r in bad),
              "refused_before_any_write": sum(r["refused"] and r["before_any_write"] for r in bad),
              "message_names_option": sum(r["names_option"] for r in bad)}
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "clusters": args.clusters, "rounds": args.rounds, "wall_s": round(time.monotonic() - started, 1),
              "faults": faults, "bad_inputs": inputs, "bad_input_rows": bad, "secrets": secrets}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print("\n%-32s %9s %9s %10s  %s" % ("fault", "attempted", "completed", "duplicates", "broken cluster"))
    for row in faults:
        broken = ""
        if "broken_failed" in row:
            broken = "failed, reason named" if row["broken_failed"] and row["reason_named"] else "NOT AS EXPECTED: " + row["reason"]
        print("%-32s %9d %9d %10d  %s" % (row["fault"], row["attempted"], row["completed"], row["duplicates"], broken))
    print("\nbad inputs: %(tried)d tried, %(refused)d refused, %(refused_before_any_write)d before any write, "
          "%(message_names_option)d messages naming the option" % inputs)
    print("secrets: %(secret_occurrences)d occurrences in %(texts_scanned)d outputs and report files" % secrets)
    print("written: %s" % args.out)
    for row in bad:
        if not (row["refused"] and row["before_any_write"] and row["names_option"]):
            print("BAD INPUT NOT HANDLED: %s" % row)
    ok = all(bad_row["refused"] and bad_row["before_any_write"] and bad_row["names_option"] for bad_row in bad)
    ok = ok and secrets["secret_occurrences"] == 0 and all(row["duplicates"] == 0 for row in faults)
    ok = ok and all(row["completed"] == row["attempted"] for row in faults if "broken_failed" not in row)
    ok = ok and all(row["healthy_completed"] and row["broken_failed"] and row["reason_named"] for row in faults if "broken_failed" in row)
    return 0 if ok else 1


def print_fault(row):
    broken = (", c2: " + row["reason"][:100]) if "reason" in row else ""
    print("%-32s completed %d/%d, duplicates %d%s" % (row["fault"], row["completed"], row["attempted"], row["duplicates"], broken),
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
