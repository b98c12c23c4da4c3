"""`fleetdr-lab`: start, inspect, seed, break and stop an emulated Kubernetes fleet.

Sub-command modules of other lab parts (fleetdr_lab.volumes.add_cli) add their sub-commands to
the parser; a handler returns the process exit code and may raise `CliError(code, message)` (or
the module's own error with .code and .message, e.g. volumes.VolumeError).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import labdir, seeds, volumes
from .controllers.rook import manifests as rook_manifests
from .clock import format_duration, parse_duration

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PORT_IN_USE = 3
EXIT_NOT_RUNNING = 4
EXIT_UNKNOWN_CLUSTER = 5

EXIT_CODES_HELP = """\
exit codes:
  0  success (also: `up` when the same lab is already running)
  1  the lab failed (start-up error, lab-side error; see lab.log)
  2  bad input: usage error, N < 1, unknown app, bad fault/duration value,
     or `up` with a different --clusters/--nodes while a lab is running in --dir
  3  a port is in use (the message names it)
  4  no lab is running in --dir (down, status, seed, fault, clock, image, velero, s3)
  5  unknown cluster
"""

READY_TIMEOUT_BASE = 60.0
READY_TIMEOUT_PER_CLUSTER = 1.0
# From this many clusters a lab gets one serving process per CPU (one per CLUSTERS_PER_PROCESS
# clusters at most): one process serving a large lab is busy all through a fleet install while the
# other cores idle (see lab/CONTRACT.md, Process model, for the measurement).
CLUSTERS_PER_PROCESS = 100


def default_processes(clusters: int) -> int:
    """Serving processes for a lab of `clusters` when `up` is not told (--processes)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, clusters // CLUSTERS_PER_PROCESS))


class CliError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# -- lab discovery --------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _pid_is_lab(pid: int) -> bool:
    """True if pid is a live fleetdr-lab process (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    try:
        return b"fleetdr_lab.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust kill(0)


def running_state(lab_dir: str | Path) -> dict | None:
    """lab.json of a running lab in lab_dir, or None if no lab is running there."""
    paths = labdir.LabPaths.of(lab_dir)
    state = labdir.read_state(paths)
    if not state or state.get("state") not in ("ready", "starting"):
        return None
    if not _pid_is_lab(int(state.get("pid") or 0)):
        return None
    return state


def not_running_message(lab_dir: str | Path) -> str:
    paths = labdir.LabPaths.of(lab_dir)
    message = f"no lab is running in {paths.dir}"
    stale = labdir.read_state(paths)
    if stale and stale.get("state") in ("ready", "starting"):
        # lab.json says running but the process is gone: it died without shutting down.
        message += (f" (its process {stale.get('pid')} exited without `down`: "
                    f"see {paths.log})")
    return message + "; start one with `fleetdr-lab up`"


def require_running(lab_dir: str | Path) -> dict:
    state = running_state(lab_dir)
    if state is None or state.get("state") != "ready":
        raise CliError(EXIT_NOT_RUNNING, not_running_message(lab_dir))
    return state


def require_cluster(state: dict, name: str) -> dict:
    for c in state["clusters"]:
        if c["name"] == name:
            return c
    known = ", ".join(c["name"] for c in state["clusters"])
    raise CliError(EXIT_UNKNOWN_CLUSTER, f"unknown cluster {name!r} (known: {known})")


def control(state: dict, method: str, path: str, body: dict | None = None,
            timeout: float = 60.0) -> dict:
    """Call the lab's control channel; maps lab-side errors to CliError."""
    url = f"http://127.0.0.1:{state['control']['port']}{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {state['control']['token']}",
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            doc = json.loads(exc.read() or b"{}")
        except ValueError:
            doc = {}
        reason, message = doc.get("reason"), doc.get("error") or str(exc)
        if reason == "unknown_cluster":
            raise CliError(EXIT_UNKNOWN_CLUSTER, message) from None
        if exc.code == 400:
            raise CliError(EXIT_USAGE, message) from None
        raise CliError(EXIT_FAILED, f"lab error ({exc.code}): {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CliError(EXIT_NOT_RUNNING, f"lab control channel not answering: {exc}") from None


# -- up --------------------------------------------------------------------------------------

def _check_ports(base_port: int, n: int) -> None:
    import socket
    ports = [(base_port + i, f"cluster c{i + 1}") for i in range(n)]
    ports += [(base_port + n, "control channel"), (base_port + n + 1, "S3")]
    for port, what in ports:
        if not 0 < port < 65536:
            raise CliError(EXIT_USAGE, f"port {port} ({what}) is out of range")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise CliError(EXIT_PORT_IN_USE,
                               f"port {port} ({what}) is already in use") from None


def _readyz(server: str, token: str, ctx: ssl.SSLContext) -> str | None:
    host, port = server.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request("GET", "/readyz", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        return None if resp.status == 200 else f"/readyz answered {resp.status}"
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        return str(exc)
    finally:
        conn.close()


def verify_lab(paths: labdir.LabPaths, state: dict, deadline: float) -> None:
    """Every cluster answers /readyz over TLS (verified against the lab CA) and S3 is up."""
    ctx = ssl.create_default_context(cafile=str(paths.ca_cert))
    pending = list(state["clusters"])
    while True:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda c: _readyz(c["server"], c["token"], ctx), pending))
        failing = [(c, r) for c, r in zip(pending, results) if r is not None]
        if not failing:
            break
        if time.monotonic() > deadline:
            c, r = failing[0]
            raise CliError(EXIT_FAILED, f"cluster {c['name']} not ready at {c['server']}: {r}")
        pending = [c for c, _ in failing]
        time.sleep(0.2)
    endpoint = state["s3"]["endpoint"]
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10):
            pass
    except OSError as exc:
        raise CliError(EXIT_FAILED, f"S3 endpoint {endpoint} not answering: {exc}") from None


def _daemon_command(args) -> list[str]:
    cmd = [sys.executable, "-m", "fleetdr_lab.daemon", "--dir", str(args.paths.dir),
           "--clusters", str(args.clusters), "--nodes", str(args.nodes), "--devices", str(args.devices),
           "--processes", str(args.processes or default_processes(args.clusters))]
    if args.base_port:
        cmd += ["--base-port", str(args.base_port)]
    return cmd


def cmd_up(args) -> int:
    paths = args.paths
    state = running_state(paths.dir)
    if state is not None:
        running_processes = len(state.get("processes") or [None])
        if state.get("n_clusters") != args.clusters or state.get("nodes") != args.nodes or \
                state.get("devices", 0) != args.devices or \
                (args.processes and min(args.processes, args.clusters) != running_processes):
            raise CliError(EXIT_USAGE,
                           f"a lab with {state.get('n_clusters')} clusters x "
                           f"{state.get('nodes')} nodes is already running in {paths.dir}; "
                           f"run `fleetdr-lab down --dir {paths.dir}` before starting one with "
                           f"{args.clusters} clusters x {args.nodes} nodes"
                           + (f" in {args.processes} processes" if args.processes else ""))
        if state.get("state") == "ready":
            try:
                control(state, "GET", "/status", timeout=10)
            except CliError:
                raise CliError(EXIT_FAILED,
                               f"the lab process {state['pid']} in {paths.dir} is not answering; "
                               f"see {paths.log} or run `fleetdr-lab down --dir {paths.dir}`"
                               ) from None
            print(f"fleetdr-lab: lab already running in {paths.dir} "
                  f"({len(state['clusters'])} clusters, pid {state['pid']}); nothing changed")
            return EXIT_OK
        raise CliError(EXIT_FAILED, f"a lab is starting in {paths.dir} (pid {state['pid']})")
    if args.base_port:
        _check_ports(args.base_port, args.clusters)

    paths.dir.mkdir(parents=True, exist_ok=True)
    for stale in (paths.pid, paths.state):
        stale.unlink(missing_ok=True)
    started = time.monotonic()
    env = dict(os.environ)
    # The lab must find its own package even when run from a source checkout.
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    with open(paths.log, "ab") as logfile:
        proc = subprocess.Popen(_daemon_command(args), stdin=subprocess.DEVNULL,
                                stdout=logfile, stderr=logfile, start_new_session=True,
                                cwd=str(paths.dir), env=env)
    deadline = started + READY_TIMEOUT_BASE + READY_TIMEOUT_PER_CLUSTER * args.clusters
    while True:
        state = labdir.read_state(paths)
        if state and state.get("pid") == proc.pid:
            if state["state"] == "ready":
                break
            if state["state"] == "failed":
                proc.wait(timeout=30)
                raise CliError(int(state.get("exit_code") or EXIT_FAILED),
                               f"lab failed to start: {state.get('error')} (see {paths.log})")
        code = proc.poll()
        if code is not None:
            raise CliError(EXIT_PORT_IN_USE if code == EXIT_PORT_IN_USE else EXIT_FAILED,
                           f"lab process exited with {code} during start-up; "
                           f"see {paths.log}:\n{_log_tail(paths, 15)}")
        if time.monotonic() > deadline:
            _terminate(proc.pid)
            raise CliError(EXIT_FAILED, f"lab not ready after {deadline - started:.0f}s; "
                                        f"see {paths.log}")
        time.sleep(0.1)
    try:
        verify_lab(paths, state, deadline)
    except CliError:
        _terminate(proc.pid)
        raise
    elapsed = time.monotonic() - started
    processes = len(state.get("processes") or [None])
    print(f"fleetdr-lab: {len(state['clusters'])} clusters ready in {elapsed:.1f}s "
          f"(pid {proc.pid}" + (f", {processes} serving processes" if processes > 1 else "") + ")")
    _print_summary(paths, state)
    return EXIT_OK


def _print_summary(paths: labdir.LabPaths, state: dict, limit: int = 10) -> None:
    s3 = state["s3"]
    print(f"  dir         {paths.dir}")
    print(f"  kubeconfig  {paths.kubeconfig}  (contexts "
          f"{', '.join(c['name'] for c in state['clusters'][:3])}"
          f"{', ...' if len(state['clusters']) > 3 else ''})")
    print(f"  inventory   {paths.inventory}")
    print(f"  S3          {s3['endpoint']}  bucket {s3['bucket']}  (keys in {paths.s3})")
    for c in state["clusters"][:limit]:
        labels = " ".join(f"{k}={v}" for k, v in c["labels"].items())
        print(f"  {c['name']:<6} {c['server']:<26} {labels}")
    if len(state["clusters"]) > limit:
        print(f"  ... {len(state['clusters']) - limit} more (fleetdr-lab status)")


def _log_tail(paths: labdir.LabPaths, lines: int) -> str:
    try:
        return "\n".join(paths.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _terminate(pid: int, timeout: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not _pid_alive(pid):
                return
            time.sleep(0.1)


# -- other commands --------------------------------------------------------------------------

def cmd_down(args) -> int:
    paths = args.paths
    state = running_state(paths.dir)
    if state is None:
        message = not_running_message(paths.dir)
        paths.pid.unlink(missing_ok=True)
        raise CliError(EXIT_NOT_RUNNING, message)
    pid = int(state["pid"])
    try:
        control(state, "POST", "/shutdown", {}, timeout=10)
    except CliError:
        pass  # fall back to signals below
    end = time.monotonic() + 30
    while _pid_alive(pid) and time.monotonic() < end:
        time.sleep(0.1)
    if _pid_alive(pid):
        _terminate(pid)
    # The primary stops the other serving processes (and they die with it); one that is still
    # there - stuck, or the primary was killed - is stopped here.
    for process in state.get("processes") or []:
        other = int(process.get("pid") or 0)
        if other != pid and _pid_is_lab(other):
            _terminate(other)
    paths.pid.unlink(missing_ok=True)
    print(f"fleetdr-lab: lab in {paths.dir} stopped")
    return EXIT_OK


def cmd_status(args) -> int:
    state = require_running(args.paths.dir)
    status = control(state, "GET", "/status")
    if args.json:
        json.dump(status, sys.stdout, indent=2)
        print()
        return EXIT_OK
    print(f"lab {status['dir']}  pid {status['pid']}  started {status['started']}  "
          f"lab clock {status['clock']['now']} "
          f"(+{format_duration(status['clock']['offset_seconds'])})")
    s3 = status["s3"]
    processes = status.get("processes") or []
    if len(processes) > 1:
        print(f"serving processes {len(processes)}: " + ", ".join(
            f"{p['index']} pid {p['pid']} ({len(p['clusters'])} clusters)"
            + ("" if p["alive"] else f" EXITED ({p['exit_code']})") for p in processes))
    print(f"S3 {s3['endpoint']} bucket {s3['bucket']} region {s3['region']}  "
          f"{'up' if s3['up'] else 'DOWN'}"
          f"{'  credentials REVOKED' if s3['credentials_revoked'] else ''}"
          f"{'  latency %d ms' % s3['latency_ms'] if s3.get('latency_ms') else ''}")
    print(f"{'CLUSTER':<8} {'ENDPOINT':<26} {'STATE':<6} {'OBJECTS':>7} {'ERRORS':>6}  "
          f"{'LABELS':<26} {'FAULTS':<12} ROOK (phase health mon/mgr/osd, Ready pools fs stores, bound buckets)")
    for c in status["clusters"]:
        f = c["faults"]
        faults = []
        if f["latency_ms"]:
            faults.append(f"latency={f['latency_ms']}ms")
        if f["error_rate"]:
            faults.append(f"errors={f['error_rate']}x{f['error_code']}")
        labels = ",".join(f"{k}={v}" for k, v in c["labels"].items())
        objects = "-" if c["objects"] is None else str(c["objects"])
        print(f"{c['name']:<8} {c['server']:<26} {'up' if c['up'] else 'DOWN':<6} "
              f"{objects:>7} {c.get('error_count', 0):>6}  {labels:<26} "
              f"{' '.join(faults) or '-':<12} {_rook_column(c.get('rook'))}")
    if status["errors"]:
        print(f"errors ({len(status['errors'])} most recent):")
        for e in status["errors"]:
            print(f"  {e['at']} {e['cluster'] or '-'} {e['source']}: {e['error']}")
    return EXIT_OK


def _rook_column(rook) -> str:
    if not rook:
        return "-"
    if not rook["clusters"]:
        return f"operator {rook['version']}, no CephCluster"
    return "; ".join(f"{c['namespace']}/{c['name']} {c['phase'] or 'new'} {c['health'] or '-'} {c['mon']}/{c['mgr']}/{c['osd']} "
                     f"pools {c['pools']} fs {c['filesystems']} stores {c['object_stores']} buckets {c['buckets_bound']}"
                     for c in rook["clusters"])


def cmd_seed(args) -> int:
    state = require_running(args.paths.dir)
    require_cluster(state, args.cluster)
    result = control(state, "POST", "/seed", {"app": args.app, "cluster": args.cluster,
                                              "namespace": args.namespace, "storage_class": args.storage_class})
    for ref in result["applied"]:
        where = f"{ref['namespace']}/" if ref.get("namespace") else ""
        print(f"{args.cluster}: {ref['kind']} {where}{ref['name']} applied")
    return EXIT_OK


def _fault_body(parser, args) -> dict:
    values = args.values
    body = {"cluster": args.cluster, "action": args.action, "value": None, "code": None}
    need = {"down": (0, 0), "up": (0, 0), "clear": (0, 0), "latency": (1, 1), "errors": (1, 2)}
    lo, hi = need[args.action]
    if not lo <= len(values) <= hi:
        parser.error(f"fault {args.action} takes "
                     + {(0, 0): "no value", (1, 1): "one value (MS)",
                        (1, 2): "RATE [CODE]"}[(lo, hi)])
    if args.action == "latency":
        try:
            body["value"] = int(values[0])
        except ValueError:
            parser.error(f"latency MS must be an integer, got {values[0]!r}")
        if body["value"] < 0:
            parser.error("latency MS must be >= 0")
    elif args.action == "errors":
        try:
            rate = float(values[0])
        except ValueError:
            parser.error(f"errors RATE must be a number in 0..1, got {values[0]!r}")
        if not 0.0 <= rate <= 1.0:
            parser.error(f"errors RATE must be in 0..1, got {values[0]}")
        code = 500
        if len(values) == 2:
            if values[1] not in ("429", "500", "503"):
                parser.error(f"errors CODE must be 429, 500 or 503, got {values[1]!r}")
            code = int(values[1])
        body["value"], body["code"] = rate, code
    return body


def cmd_fault(args) -> int:
    body = _fault_body(args.subparser, args)
    state = require_running(args.paths.dir)
    require_cluster(state, args.cluster)
    result = control(state, "POST", "/fault", body)
    f = result["faults"]
    print(f"{args.cluster}: {'DOWN' if f['down'] else 'up'}, latency {f['latency_ms']}ms, "
          f"errors {f['error_rate']} x {f['error_code']}")
    return EXIT_OK


def cmd_clock(args) -> int:
    if args.clock_command == "advance":
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            args.subparser.error(str(exc))
        state = require_running(args.paths.dir)
        result = control(state, "POST", "/clock/advance", {"seconds": seconds})
    else:
        state = require_running(args.paths.dir)
        result = control(state, "GET", "/clock")
    print(f"lab clock {result['now']} (offset +{format_duration(result['offset_seconds'])})")
    return EXIT_OK


def cmd_velero_sync(args) -> int:
    state = require_running(args.paths.dir)
    if args.cluster:
        require_cluster(state, args.cluster)
    result = control(state, "POST", "/velero/sync", {"cluster": args.cluster}, timeout=300)
    print(json.dumps(result, indent=2))
    return EXIT_OK


def cmd_rook_manifests(args) -> int:
    for path in rook_manifests.write(Path(args.out), args.version):
        print(path)
    return EXIT_OK


def cmd_rook_endpoint(args) -> int:
    state = require_running(args.paths.dir)
    require_cluster(state, args.cluster)
    body = {"cluster": args.cluster, "namespace": args.namespace, "store": args.store}
    print(control(state, "POST", "/rook/endpoint", body)["endpoint"])
    return EXIT_OK


def cmd_rook_health(args) -> int:
    state = require_running(args.paths.dir)
    require_cluster(state, args.cluster)
    body = {"cluster": args.cluster, "namespace": args.namespace}
    if args.rook_command == "health":
        body.update(health=args.health, message=args.message)
    else:
        body.update(health="HEALTH_WARN" if args.count else None, message=f"{args.count} osds down" if args.count else None,
                    down_osds=args.count)
    print(json.dumps(control(state, "POST", "/rook/health", body), indent=2))
    return EXIT_OK


def cmd_image(args) -> int:
    state = require_running(args.paths.dir)
    if args.image_command == "show":
        result = control(state, "GET", "/images")
    else:
        if args.cluster:
            require_cluster(state, args.cluster)
        body = {"action": args.image_command, "pattern": args.pattern, "cluster": args.cluster}
        result = control(state, "POST", "/images", body)
    rules = [("lab-wide", r) for r in result["lab"]] + [
        (c, r) for c, rs in result["clusters"].items() for r in rs]
    for scope, rule in rules:
        print(f"{scope:<10} {rule['verdict']:<6} {rule['pattern']}")
    if not rules:
        print("no rules: the built-in catalogue (public registries pull, others do not)")
    return EXIT_OK


def cmd_s3(args) -> int:
    state = require_running(args.paths.dir)
    if args.s3_command == "latency":
        result = control(state, "POST", "/s3/latency", {"ms": args.ms})
        print(f"S3 latency {result['latency_ms']} ms")
        return EXIT_OK
    result = control(state, "POST", f"/s3/{args.s3_command}", {})
    print("S3 credentials " + ("revoked" if result["credentials_revoked"] else "restored"))
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------

def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: nested sub-parsers must not overwrite a --dir given before the sub-command.
    common.add_argument("--dir", default=argparse.SUPPRESS,
                        help="lab directory (default: $FLEETDR_LAB_DIR or .lab)")
    parser = argparse.ArgumentParser(
        prog="fleetdr-lab", description="An emulated Kubernetes fleet with S3 and Velero.",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_text, **kw):
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common],
                           epilog=EXIT_CODES_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter, **kw)
        p.set_defaults(func=func, subparser=p)
        return p

    p = add("up", cmd_up, "start a lab in the background and wait until it is ready")
    p.add_argument("--clusters", type=_positive_int, default=3, metavar="N",
                   help="number of clusters (default 3)")
    p.add_argument("--nodes", type=_positive_int, default=1, metavar="K",
                   help="nodes per cluster (default 1)")
    p.add_argument("--devices", type=_non_negative_int, default=0, metavar="D",
                   help="raw 100 GiB devices per node (sdb, sdc, ...) for Rook's OSDs (default 0)")
    p.add_argument("--processes", type=_positive_int, default=None, metavar="K",
                   help="serving processes the clusters are shared among (default: 1, or one per "
                        f"CPU from {CLUSTERS_PER_PROCESS * 2} clusters on)")
    p.add_argument("--base-port", type=_port, default=None, metavar="P",
                   help="cluster cI listens on P+I-1, control channel on P+N, S3 on P+N+1 "
                        "(default: free ports)")

    add("down", cmd_down, "stop the lab (the directory is kept)")
    p = add("status", cmd_status, "clusters, endpoints, object counts, faults, S3, errors")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("seed", cmd_seed, "apply a sample application to a cluster (idempotent)")
    p.add_argument("app", choices=seeds.APPS, metavar="APP",
                   help=f"one of: {', '.join(seeds.APPS)}")
    p.add_argument("--cluster", required=True, metavar="C")
    p.add_argument("--namespace", default=None, metavar="NS",
                   help="default: " + ", ".join(f"{k}: {v}"
                                                for k, v in seeds.DEFAULT_NAMESPACES.items()))
    p.add_argument("--storage-class", default=None, metavar="SC",
                   help="StorageClass of the app's volume claims (default: the lab's hostPath class standard), "
                        "e.g. a Rook class such as rook-ceph-block")

    p = add("fault", cmd_fault, "inject or clear a fault on one cluster: "
            "down | up | latency MS | errors RATE [CODE] | clear (removes every fault, "
            "brings a down cluster up)")
    p.add_argument("cluster", metavar="C")
    p.add_argument("action", choices=("down", "up", "latency", "errors", "clear"))
    p.add_argument("values", nargs="*", metavar="VALUE",
                   help="latency: MS; errors: RATE (0..1) [CODE 429|500|503, default 500]")

    p = add("clock", cmd_clock, "show or advance the lab clock")
    csub = p.add_subparsers(dest="clock_command", required=True, metavar="ACTION")
    cp = csub.add_parser("advance", help="move the lab clock forward (90s, 15m, 1h30m, 2h, 1d)",
                         parents=[common])
    cp.add_argument("duration", metavar="DURATION")
    cp.set_defaults(subparser=cp)
    csub.add_parser("show", help="print the lab clock", parents=[common])

    p = add("velero", None, "emulated Velero helpers")
    vsub = p.add_subparsers(dest="velero_command", required=True, metavar="ACTION")
    vp = vsub.add_parser("sync", help="run backup sync now (all clusters or --cluster C)",
                         parents=[common])
    vp.add_argument("--cluster", default=None, metavar="C")
    vp.set_defaults(func=cmd_velero_sync, subparser=vp)

    p = add("rook", None, "emulated Rook-Ceph helpers")
    rsub = p.add_subparsers(dest="rook_command", required=True, metavar="ACTION")
    rp = rsub.add_parser("manifests", help="write the lab's stand-ins for Rook's crds.yaml, common.yaml, operator.yaml",
                         parents=[common])
    rp.add_argument("--version", default="v1.20.6", metavar="V")
    rp.add_argument("--out", required=True, metavar="DIR")
    rp.set_defaults(func=cmd_rook_manifests, subparser=rp)
    rp = rsub.add_parser("health", help="make Ceph report HEALTH_WARN or HEALTH_ERR (HEALTH_OK clears it)", parents=[common])
    rp.add_argument("cluster", metavar="CLUSTER")
    rp.add_argument("health", choices=["HEALTH_OK", "HEALTH_WARN", "HEALTH_ERR"])
    rp.add_argument("--message", default=None)
    rp.add_argument("--namespace", default="rook-ceph")
    rp.set_defaults(func=cmd_rook_health, subparser=rp)
    rp = rsub.add_parser("endpoint", help="print the S3 endpoint of a Ready CephObjectStore on the lab host", parents=[common])
    rp.add_argument("cluster", metavar="CLUSTER")
    rp.add_argument("store", metavar="STORE")
    rp.add_argument("--namespace", default="rook-ceph")
    rp.set_defaults(func=cmd_rook_endpoint, subparser=rp)
    rp = rsub.add_parser("osd-down", help="take the first N OSDs down (0 brings them back)", parents=[common])
    rp.add_argument("cluster", metavar="CLUSTER")
    rp.add_argument("count", type=int)
    rp.add_argument("--namespace", default="rook-ceph")
    rp.set_defaults(func=cmd_rook_health, subparser=rp)

    p = add("image", None, "which images the kubelets can pull: public registries by default; "
            "deny or allow an image, repository or registry, lab-wide or for one cluster")
    isub = p.add_subparsers(dest="image_command", required=True, metavar="ACTION")
    for action, text in (("deny", "pulls of matching images fail (ErrImagePull, then ImagePullBackOff)"),
                         ("allow", "matching images pull (overrides a deny of a wider scope)")):
        ip = isub.add_parser(action, help=text, description=text, parents=[common])
        ip.add_argument("pattern", metavar="REGISTRY_OR_IMAGE",
                        help="a registry (quay.io, registry.example.com:5000), a repository (busybox, velero/*) "
                             "or an image (busybox:1.36)")
        ip.add_argument("--cluster", default=None, metavar="C", help="only on this cluster (default: the whole lab)")
        ip.set_defaults(func=cmd_image, subparser=ip)
    ip = isub.add_parser("show", help="print the rules", parents=[common])
    ip.set_defaults(func=cmd_image, subparser=ip)

    p = add("s3", None, "object-store faults")
    ssub = p.add_subparsers(dest="s3_command", required=True, metavar="ACTION")
    for action, text in (("revoke", "revoke velero's S3 credentials (requests get 403)"),
                         ("restore", "restore velero's S3 credentials")):
        sp = ssub.add_parser(action, help=text, parents=[common])
        sp.set_defaults(func=cmd_s3, subparser=sp)
    sp = ssub.add_parser("latency", help="every S3 request waits MS milliseconds before it is served (0: none)",
                         parents=[common])
    sp.add_argument("ms", type=_non_negative_int, metavar="MS")
    sp.set_defaults(func=cmd_s3, subparser=sp)

    volumes.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.dir = getattr(args, "dir", None) or os.environ.get("FLEETDR_LAB_DIR") \
        or labdir.DEFAULT_DIR
    args.paths = labdir.LabPaths.of(args.dir)
    try:
        return int(args.func(args) or 0)
    except (CliError, volumes.VolumeError) as exc:
        print(f"fleetdr-lab: error: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
