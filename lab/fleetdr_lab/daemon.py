"""The background lab process: N clusters (one HTTPS site each), moto S3, control channel.

Run by `fleetdr-lab up` as `python -m fleetdr_lab.daemon --dir DIR --clusters N --processes K ...`.
The clusters are shared out round-robin among K serving processes (cluster cI is served by process
I % K), each with its own asyncio loop. Process 0, the primary, is the one `up` starts: it also
owns the control channel, the lab clock's record in lab.json, the S3 child (moto) and the lab files,
and it starts processes 1..K-1 (`--process-index`) as its children. A control request naming a cluster
goes to the process serving it; lab-wide ones reach every process (see register_control_route).

Control channel (CLI -> lab): HTTP on 127.0.0.1:<control port>, `Authorization: Bearer <token>`,
JSON bodies and answers. The routes are registered at the end of this module with

    async def handler(lab, body):           # lab: Lab, body: parsed JSON (dict, {} if none)
        ...                                  # raise ControlError(404, "...") for errors
        return {"synced": 3}                 # any JSON-serialisable value
    register_control_route("POST", "/velero/sync", handler, per_cluster=True, lab_wide=True,
                           merge=merge_answers)

registering the same method+path again replaces the handler. Where it runs when the lab has several
serving processes: `per_cluster` - a body whose "cluster" names a cluster of the lab runs in the
process serving that cluster; `lab_wide` - otherwise in every process, the answers (primary's first)
combined by `merge` (default: the primary's answer); neither - in the primary only. Parts below the daemon (the Velero
emulator) never import it: the daemon wraps what they offer into routes.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime as dt
import errno
import gc
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from . import labdir, pki, seeds
from .clock import Clock
from .cluster import Cluster, Faults
from .controllers.rook import cluster as rook_cluster
from .controllers.velero import sync as velero_sync
from .controllers.workloads import images
from .s3_service import ObjectStore

log = logging.getLogger("fleetdr_lab.daemon")

MAX_ERRORS = 200
# Exit codes of the lab process, mirrored into lab.json so `up` can report them.
EXIT_FAILED = 1
EXIT_PORT_IN_USE = 3
# gc thresholds of the lab process (generation 0 allocations, then collections of the younger
# generation) - see main().
GC_THRESHOLDS = (50_000, 20, 20)

# The control token reaches serving processes through the environment, not their command line.
CONTROL_TOKEN_ENV = "FLEETDR_LAB_CONTROL_TOKEN"
# How long `down` gives a serving process to stop before it is killed.
SERVING_STOP_TIMEOUT = 15.0
STATUS_TIMEOUT = 30.0

ControlHandler = Callable[["Lab", dict], Awaitable[object]]


@dataclass
class ControlRoute:
    handler: ControlHandler
    per_cluster: bool = False
    lab_wide: bool = False
    merge: Callable[[list], object] | None = None


_CONTROL_ROUTES: dict[tuple[str, str], ControlRoute] = {}


class ControlError(Exception):
    def __init__(self, status: int, message: str, reason: str = "error"):
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


class PortInUse(Exception):
    def __init__(self, port: int, what: str):
        super().__init__(f"port {port} ({what}) is already in use")
        self.port, self.what = port, what


def register_control_route(method: str, path: str, handler: ControlHandler, *,
                           per_cluster: bool = False, lab_wide: bool = False,
                           merge: Callable[[list], object] | None = None) -> None:
    """Add (or replace) a control-channel route; see the module docstring."""
    _CONTROL_ROUTES[(method.upper(), path)] = ControlRoute(handler, per_cluster, lab_wide, merge)


def _die_with_parent() -> None:
    # Linux: a serving process gets SIGTERM if the primary dies without stopping it.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ServingProcess:
    """The primary's view of one other serving process: its child process, control port, clusters."""

    def __init__(self, lab: "Lab", index: int):
        self.lab = lab
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.control_port = 0
        self.clusters: list[dict] = []      # describe() of each cluster it serves
        self.exit_code: int | None = None
        self._watcher: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def spawn(self) -> None:
        lab = self.lab
        cmd = [sys.executable, "-m", "fleetdr_lab.daemon", "--dir", str(lab.dir),
               "--clusters", str(lab.n_clusters), "--nodes", str(lab.nodes),
               "--devices", str(lab.devices), "--processes", str(lab.n_processes),
               "--process-index", str(self.index)]
        if lab.base_port:
            cmd += ["--base-port", str(lab.base_port)]
        env = dict(os.environ)
        env[CONTROL_TOKEN_ENV] = lab.control_token
        with open(lab.paths.log, "ab") as logfile:
            # stdout carries one line, the hand-shake (a 500-cluster one is bigger than the default limit)
            self.process = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=logfile, env=env, cwd=str(lab.dir), preexec_fn=_die_with_parent,
                limit=1 << 26)

    async def handshake(self) -> None:
        """Wait for the process to serve its clusters: it prints one JSON line (or its failure)."""
        line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"serving process {self.index} exited with {code} during start-up")
        doc = json.loads(line)
        if doc.get("failed"):
            if doc.get("exit_code") == EXIT_PORT_IN_USE:
                raise PortInUse(doc["port"], doc["what"])
            raise RuntimeError(f"serving process {self.index}: {doc['failed']}")
        self.control_port, self.clusters = doc["control_port"], doc["clusters"]
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name=f"serving-{self.index}")

    async def _watch(self) -> None:
        self.exit_code = await self.process.wait()
        if not self.lab.stopping.is_set():
            # Never silent: status lists it, its clusters are DOWN, its routes answer 503.
            log.error("serving process %d (pid %d, clusters %s) exited with %s", self.index,
                      self.process.pid, ", ".join(c["name"] for c in self.clusters), self.exit_code)

    def died_error(self) -> "ControlError":
        return ControlError(503, f"serving process {self.index} (pid {self.pid}) of clusters "
                                 f"{', '.join(c['name'] for c in self.clusters)} has exited "
                                 f"with {self.exit_code if self.exit_code is not None else self.process.returncode}; "
                                 f"see {self.lab.paths.log}", "process_died")

    async def call(self, method: str, path: str, body: dict | None,
                   timeout: float | None = None) -> tuple[int, object]:
        """(HTTP status, JSON answer) of a control request run in this process (no timeout by
        default: a Velero sync of many clusters takes minutes; the CLI bounds its own wait)."""
        if not self.alive():
            error = self.died_error()
            return error.status, {"error": error.message, "reason": error.reason}
        try:
            async with self.lab.control_client.request(
                    method, f"http://127.0.0.1:{self.control_port}{path}", json=body,
                    headers={"Authorization": f"Bearer {self.lab.control_token}"},
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return resp.status, await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            if not self.alive():
                error = self.died_error()
                return error.status, {"error": error.message, "reason": error.reason}
            return 502, {"error": f"serving process {self.index} (pid {self.pid}) did not answer: "
                                  f"{type(exc).__name__}: {exc}", "reason": "process_unreachable"}

    def describe(self) -> dict:
        return {"index": self.index, "pid": self.pid, "control_port": self.control_port,
                "clusters": [c["name"] for c in self.clusters]}

    async def stop(self) -> None:
        if self.alive():
            self.process.terminate()  # SIGTERM: it stops its clusters and exits
            try:
                await asyncio.wait_for(self.process.wait(), SERVING_STOP_TIMEOUT)
            except asyncio.TimeoutError:
                log.error("serving process %d (pid %d) did not stop; killing it", self.index, self.pid)
                self.process.kill()
                await self.process.wait()
        if self._watcher is not None:
            await asyncio.gather(self._watcher, return_exceptions=True)


def merge_answers(answers: list) -> object:
    """Answers of a lab-wide route from each process: dicts are merged key by key, one level deep
    (`{"synced": {c1: ..}}` + `{"synced": {c2: ..}}`), cluster keys in name order as one process
    would list them."""
    merged: dict = {}
    for answer in answers:
        for key, value in (answer or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = dict(sorted({**merged[key], **value}.items()))
            else:
                merged.setdefault(key, value)
    return merged


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ErrorCollector(logging.Handler):
    """Every ERROR logged in the lab process also lands in `status` (nothing dies silently)."""

    def __init__(self, lab: "Lab"):
        super().__init__(level=logging.ERROR)
        self.lab = lab

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message = f"{message}: {type(exc).__name__}: {exc}"
            self.lab.record_error(self.lab._cluster_of(record), record.name, message)
        except Exception:  # a broken record must never break the caller
            self.handleError(record)


class Lab:
    """Everything running in the lab process; `cluster.lab` points here."""

    def __init__(self, directory: Path, clusters: int, nodes: int = 1,
                 base_port: int | None = None, devices: int = 0, processes: int = 1,
                 process_index: int = 0, control_token: str | None = None):
        self.paths = labdir.LabPaths.of(directory)
        self.dir = self.paths.dir
        self.n_clusters = clusters
        self.n_processes = processes
        self.process_index = process_index
        self.is_primary = process_index == 0
        # The primary's handles on serving processes 1..K-1 (empty in those processes).
        self.serving: list[ServingProcess] = []
        self.control_client: aiohttp.ClientSession | None = None
        self.nodes = nodes
        self.devices = devices
        self.base_port = base_port
        self.clock = Clock()
        self.clusters: dict[str, Cluster] = {}
        # "<load balancer ip>:<port>" -> the address serving it (controllers/services.py), seen
        # by every serving process
        self.external_addresses = labdir.ExternalAddresses(self.paths.load_balancers)
        self.errors: list[dict] = []
        self.control_token = control_token or secrets.token_urlsafe(32)
        self.control_port = 0
        self.started_at = time.time()
        # In a serving process: a handle on the primary's child, attached at /_lab/start.
        self.objectstore = ObjectStore(self.paths.dir / "moto.log",
                                       port=(base_port + clusters + 1) if base_port and self.is_primary else None)
        self.stopping = asyncio.Event()
        self._control_runner: web.AppRunner | None = None
        self.ready = False
        # Every cluster of the lab, whichever process serves it (the primary's, once started).
        self.cluster_descriptions: list[dict] | None = None

    # -- handles for controllers -----------------------------------------------------------
    @property
    def s3(self) -> dict:
        return self.objectstore.info()

    def cluster_names(self) -> list[str]:
        """Every cluster of the lab, whichever process serves it."""
        return [f"c{i + 1}" for i in range(self.n_clusters)]

    def owned_indices(self) -> range:
        """0-based indices of the clusters this process serves. Round-robin: the fleet playbooks
        work through the inventory in order, so neighbours go to different processes. c1 goes to
        process 1, so when N is not a multiple of K the primary, which also runs the control
        channel and the S3 child, has one cluster fewer."""
        return range((self.process_index - 1) % self.n_processes, self.n_clusters, self.n_processes)

    def process_of(self, name) -> int | None:
        """Index of the process serving cluster `name`, None if the lab has no such cluster."""
        if isinstance(name, str) and name[:1] == "c" and name[1:].isdigit() \
                and 1 <= int(name[1:]) <= self.n_clusters and name == f"c{int(name[1:])}":
            return int(name[1:]) % self.n_processes
        return None

    def _unknown_cluster(self, name) -> ControlError:
        return ControlError(404, f"unknown cluster {name!r} (known: "
                                 f"{', '.join(self.cluster_names())})", "unknown_cluster")

    def cluster(self, name: str) -> Cluster:
        try:
            return self.clusters[name]
        except KeyError:
            raise self._unknown_cluster(name) from None

    def check_cluster(self, name: str) -> None:
        """ControlError 404 unless the lab has cluster `name` (in any process)."""
        if self.process_of(name) is None:
            raise self._unknown_cluster(name)

    def _cluster_of(self, record: logging.LogRecord) -> str | None:
        cluster = getattr(record, "cluster", None)
        if cluster in self.clusters:
            return cluster
        for part in record.name.split("."):
            if part in self.clusters:
                return part
        args = record.args if isinstance(record.args, tuple) else ()
        if args and isinstance(args[0], str) and args[0] in self.clusters:
            return args[0]
        head = str(record.msg).split("/", 1)[0].split(":", 1)[0]
        return head if head in self.clusters else None

    def record_error(self, cluster: str | None, source: str, exc: BaseException | str) -> None:
        message = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.errors.append({"at": _iso(time.time()), "cluster": cluster, "source": source,
                            "error": message})
        del self.errors[:-MAX_ERRORS]

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        if not self.is_primary:
            await self._start_serving()
            return
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        self.paths.volumes.mkdir(exist_ok=True)
        shutil.rmtree(self.paths.load_balancers, ignore_errors=True)  # a previous lab's
        self._write_state("starting")

        if self.base_port:
            self._check_ports_free()
        # moto takes seconds to import and start: run it while the clusters come up.
        s3_task = loop.create_task(self.objectstore.start())
        try:
            ca = pki.load_or_create_ca(self.paths.ca_cert, self.paths.ca_key)
            serving = pki.make_serving_cert(ca)
            labdir.write_atomic(self.paths.serving_cert, serving.cert_pem)
            labdir.write_atomic(self.paths.serving_key, serving.key_pem, 0o600)
            # The other serving processes start now and bring up their clusters beside ours.
            if self.n_processes > 1:
                self.control_client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
            for index in range(1, self.n_processes):
                process = ServingProcess(self, index)
                self.serving.append(process)
                await process.spawn()
            await self._serve_clusters()
            await self._start_control()
            for process in self.serving:
                await process.handshake()
            await s3_task
        except BaseException:
            if not s3_task.done():
                s3_task.cancel()
            raise

        self.ca_pem = ca.cert_pem
        clusters = sorted([c.describe() for c in self.clusters.values()]
                          + [c for p in self.serving for c in p.clusters],
                          key=lambda c: int(c["name"][1:]))
        self.cluster_descriptions = clusters
        labdir.write_client_files(self.paths, clusters, ca.cert_pem, self.objectstore.info(),
                                  self.objectstore.credentials_file())
        for cluster in self.clusters.values():
            cluster.start_controllers()
        start = {"s3": self.objectstore.handle(), "clock_offset_seconds": self.clock.offset_seconds}
        for process in self.serving:
            status, answer = await process.call("POST", "/_lab/start", start)
            if status != 200:
                raise RuntimeError(f"serving process {process.index} did not start: {answer}")
        self.ready = True
        self._write_state("ready")
        log.info("lab ready: %d clusters in %d serving processes, control port %d, S3 %s",
                 len(clusters), self.n_processes, self.control_port, self.objectstore.endpoint)

    async def _start_serving(self) -> None:
        """A serving process other than the primary: its clusters' sites and a control channel,
        announced on stdout; controllers start when the primary sends /_lab/start (S3 is up)."""
        await self._serve_clusters()
        await self._start_control()
        handshake = {"control_port": self.control_port,
                     "clusters": [c.describe() for c in self.clusters.values()]}
        _announce(handshake)

    async def begin_serving(self, body: dict) -> None:
        """/_lab/start in a serving process: the primary's S3 child and clock, then controllers."""
        self.objectstore.attach(body["s3"])
        self.clock.offset_seconds = float(body.get("clock_offset_seconds") or 0.0)
        for cluster in self.clusters.values():
            cluster.start_controllers()
        self.ready = True
        log.info("serving process %d ready: %d clusters, control port %d", self.process_index,
                 len(self.clusters), self.control_port)

    async def _serve_clusters(self) -> None:
        """Bootstrap this process's clusters and open their HTTPS sites (controllers start later)."""
        ssl_ctx = pki.server_ssl_context(self.paths.serving_cert, self.paths.serving_key)
        for i in self.owned_indices():
            name = f"c{i + 1}"
            port = self.base_port + i if self.base_port else 0
            cluster = Cluster(self, name, i, nodes=self.nodes, port=port, devices=self.devices)
            cluster.bootstrap()
            self.clusters[name] = cluster
            cluster.install_controllers()
            await self._bind(cluster.start_site(ssl_ctx), port, f"cluster {name}")
            # Yield now and then so moto's start-up and the loop stay responsive.
            await asyncio.sleep(0)

    def _check_ports_free(self) -> None:
        import socket
        wanted = [(self.base_port + i, f"cluster c{i + 1}") for i in range(self.n_clusters)]
        wanted += [(self.base_port + self.n_clusters, "control channel"),
                   (self.base_port + self.n_clusters + 1, "S3")]
        for port, what in wanted:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise PortInUse(port, what) from None
                    raise

    async def _bind(self, coro, port: int, what: str) -> None:
        try:
            await coro
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(port, what) from None
            raise

    async def _start_control(self) -> None:
        app = web.Application(middlewares=[self._auth_middleware])
        app["lab"] = self
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._control_runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                             shutdown_timeout=1.0)
        await self._control_runner.setup()
        # --base-port fixes the primary's port; the others' are internal
        port = self.base_port + self.n_clusters if self.base_port and self.is_primary else 0
        site = web.TCPSite(self._control_runner, "127.0.0.1", port, reuse_address=True)
        await self._bind(site.start(), port, "control channel")
        self.control_port = site._server.sockets[0].getsockname()[1]

    async def shutdown(self) -> None:
        log.info("lab shutting down")

        async def stop(cluster: Cluster) -> None:
            try:
                await cluster.stop_controllers()
            except Exception:
                log.exception("stopping controllers of %s", cluster.name)
            try:
                await cluster.stop_site()
            except Exception:
                log.exception("stopping site of %s", cluster.name)

        self.stopping.set()  # a serving process exiting from here on is expected
        await asyncio.gather(*(stop(c) for c in self.clusters.values()),
                             *(p.stop() for p in self.serving))
        log.info("clusters stopped")
        if self.control_client is not None:
            await self.control_client.close()
        if not self.is_primary:
            if self._control_runner is not None:
                await self._control_runner.cleanup()
            log.info("serving process %d stopped", self.process_index)
            return
        await self.objectstore.stop()
        log.info("S3 stopped")
        if self._control_runner is not None:
            await self._control_runner.cleanup()
        self._write_state("stopped")
        try:
            self.paths.pid.unlink()
        except FileNotFoundError:
            pass
        log.info("lab stopped")

    def _loop_exception(self, loop, context) -> None:
        exc = context.get("exception")
        message = context.get("message", "")
        task = context.get("task") or context.get("future")
        name = task.get_name() if hasattr(task, "get_name") else None
        cluster = name.split(":", 1)[0] if name and ":" in name else None
        # Client disconnects during TLS shutdown are noise, not lab errors.
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return
        log.error("unhandled in loop (%s): %s", name, message, exc_info=exc,
                  extra={"cluster": cluster})

    def _write_state(self, state: str, **extra) -> None:
        if not self.is_primary:
            return  # lab.json is the primary's
        doc = {
            "state": state,
            "pid": os.getpid(),
            "started": _iso(self.started_at),
            "control": {"port": self.control_port, "token": self.control_token},
            "nodes": self.nodes,
            "devices": self.devices,
            "base_port": self.base_port,
            "clusters": self.cluster_descriptions
                        or [c.describe() for c in self.clusters.values()],
            "n_clusters": self.n_clusters,
            "processes": self.process_descriptions(),
            "clock_offset_seconds": self.clock.offset_seconds,
            "s3": self.objectstore.info() if self.objectstore.access_key_id else None,
            "s3_admin": ({"access_key_id": self.objectstore.admin_access_key_id,
                          "secret_access_key": self.objectstore.admin_secret_access_key}
                         if self.objectstore.admin_access_key_id else None),
            **extra,
        }
        labdir.write_json(self.paths.state, doc, 0o600)

    def write_failure(self, message: str, exit_code: int, **extra) -> None:
        if not self.is_primary:  # the primary reports it
            _announce({"failed": message, "exit_code": exit_code, **extra})
            return
        self._write_state("failed", error=message, exit_code=exit_code, **extra)

    def process_descriptions(self) -> list[dict]:
        """Every serving process (lab.json, status): index, pid, control port, its clusters."""
        own = {"index": self.process_index, "pid": os.getpid(), "control_port": self.control_port,
               "clusters": list(self.clusters)}
        return [own] + [p.describe() for p in self.serving]

    # -- control channel --------------------------------------------------------------------
    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler):
        if request.headers.get("Authorization") != f"Bearer {self.control_token}":
            return web.json_response({"error": "unauthorized", "reason": "unauthorized"},
                                     status=401)
        return await handler(request)

    async def _dispatch(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        route = _CONTROL_ROUTES.get(key)
        if route is None:
            if any(path == request.path for _, path in _CONTROL_ROUTES):
                return web.json_response({"error": f"{request.method} not allowed",
                                          "reason": "method_not_allowed"}, status=405)
            what = ("velero emulation is not installed in this lab"
                    if request.path.startswith("/velero/") else f"no route {request.path}")
            return web.json_response({"error": what, "reason": "not_implemented"},
                                     status=501 if request.path.startswith("/velero/") else 404)
        body: dict = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "body is not JSON", "reason": "bad_request"},
                                         status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "body must be a JSON object",
                                          "reason": "bad_request"}, status=400)
        status, answer = await self._route(route, request.method, request.path, body)
        return web.json_response(answer, status=status)

    async def _route(self, route: ControlRoute, method: str, path: str,
                     body: dict) -> tuple[int, object]:
        """Run a control request where it belongs: here, in the process serving the cluster it
        names, or (lab-wide) in every process. Only the primary has others to send it to."""
        if not self.serving:
            return await self._run_here(route, method, path, body)
        if route.per_cluster:
            owner = self.process_of(body.get("cluster"))
            if owner is not None:
                if owner == self.process_index:
                    return await self._run_here(route, method, path, body)
                return await self.serving[owner - 1].call(method, path, body)
        if not route.lab_wide:
            return await self._run_here(route, method, path, body)
        results = await asyncio.gather(self._run_here(route, method, path, body),
                                       *(p.call(method, path, body) for p in self.serving))
        for status, answer in results:
            if status != 200:  # the primary's error first, then the others' in order
                return status, answer
        answers = [answer for _, answer in results]
        return 200, route.merge(answers) if route.merge else answers[0]

    async def _run_here(self, route: ControlRoute, method: str, path: str,
                        body: dict) -> tuple[int, object]:
        try:
            result = await route.handler(self, body)
        except ControlError as exc:
            return exc.status, {"error": exc.message, "reason": exc.reason}
        except Exception as exc:
            log.exception("control %s %s failed", method, path,
                          extra={"cluster": body.get("cluster")})
            return 500, {"error": f"{type(exc).__name__}: {exc}", "reason": "internal",
                         "traceback": traceback.format_exc(limit=5)}
        return 200, result if result is not None else {}

    async def lab_status(self) -> dict:
        """status() of the whole lab: every serving process's clusters and errors; the clusters of
        a process that has died are listed DOWN and it is named in "processes" and "errors"."""
        doc = self.status()
        processes = [{**self.process_descriptions()[0], "alive": True, "exit_code": None}]
        doc["processes"] = processes
        if not self.serving:
            return doc
        clusters = {c["name"]: c for c in doc["clusters"]}
        errors = list(doc["errors"])
        # a hung process must not hang status: it is reported as not answering
        answers = await asyncio.gather(*(p.call("GET", "/status", None, STATUS_TIMEOUT)
                                         for p in self.serving))
        for process, (status, answer) in zip(self.serving, answers):
            entry = {**process.describe(), "alive": process.alive(), "exit_code": process.exit_code}
            if status == 200:
                clusters.update((c["name"], c) for c in answer["clusters"])
                errors += answer["errors"]
            else:
                entry["error"] = answer.get("error")
                errors.append({"at": _iso(time.time()), "cluster": None,
                               "source": f"serving process {process.index}", "error": answer.get("error")})
                for c in process.clusters:
                    clusters[c["name"]] = {
                        **{k: v for k, v in c.items() if k != "token"}, "process": process.index,
                        "up": False, "faults": Faults().as_dict(), "objects": None, "object_counts": {},
                        "controllers": {"installed": 0, "running": 0}, "rook": None,
                        "error_count": 1, "errors": [errors[-1]]}
            processes.append(entry)
        doc["clusters"] = [clusters[name] for name in self.cluster_names() if name in clusters]
        doc["errors"] = sorted(errors, key=lambda e: e["at"])[-20:]
        if not all(p["alive"] and not p.get("error") for p in processes):
            doc["state"] = "degraded"
        return doc

    def status(self) -> dict:
        return {
            "state": "ready" if self.ready else "starting",
            "pid": os.getpid(),
            "dir": str(self.dir),
            "started": _iso(self.started_at),
            "clock": {"now": self.clock.now().isoformat(), "offset_seconds":
                      self.clock.offset_seconds},
            "clusters": [{**c.status(), "process": self.process_index} for c in self.clusters.values()],
            "s3": {"endpoint": self.objectstore.endpoint, "bucket": self.objectstore.bucket,
                   "region": self.objectstore.region, "up": self.objectstore.running(),
                   "credentials_revoked": self.objectstore.revoked, "latency_ms": self.objectstore.latency_ms},
            "errors": self.errors[-20:],
        }


# -- built-in control routes --------------------------------------------------------------

async def _status(lab: Lab, body: dict):
    return await lab.lab_status()


async def _begin_serving(lab: Lab, body: dict):
    """`POST /_lab/start` (primary -> serving process): S3 is up, start the controllers."""
    if lab.is_primary:
        raise ControlError(404, "no route /_lab/start", "not_found")
    await lab.begin_serving(body)
    return {"ready": True}


async def _seed(lab: Lab, body: dict):
    app = body.get("app")
    cluster = lab.cluster(str(body.get("cluster")))
    try:
        applied = seeds.seed(cluster.store, app, body.get("namespace") or None, body.get("storage_class") or None)
    except seeds.UnknownApp as exc:
        raise ControlError(400, str(exc), "unknown_app") from None
    except Exception as exc:
        status = getattr(exc, "code", None)
        if isinstance(status, int) and 400 <= status < 500:
            raise ControlError(status, str(exc), "rejected") from None
        raise
    return {"cluster": cluster.name, "app": app, "applied": applied}


FAULT_ERROR_CODES = (429, 500, 503)


async def _fault(lab: Lab, body: dict):
    cluster = lab.cluster(str(body.get("cluster")))
    action = body.get("action")
    value = body.get("value")
    faults = cluster.faults
    if action == "down":
        await cluster.go_down()
    elif action == "up":
        try:
            await cluster.come_up()
        except OSError as exc:
            raise ControlError(409, f"cannot listen on port {cluster.port} again: {exc}",
                               "port_in_use") from None
    elif action == "latency":
        try:
            ms = int(value)
        except (TypeError, ValueError):
            raise ControlError(400, f"latency needs milliseconds, got {value!r}",
                               "bad_request") from None
        if ms < 0:
            raise ControlError(400, "latency must be >= 0", "bad_request")
        faults.latency_ms = ms
    elif action == "errors":
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise ControlError(400, f"error rate must be a number in 0..1, got {value!r}",
                               "bad_request") from None
        if not 0.0 <= rate <= 1.0:
            raise ControlError(400, f"error rate must be in 0..1, got {rate}", "bad_request")
        code = int(body.get("code") or 500)
        if code not in FAULT_ERROR_CODES:
            raise ControlError(400, f"error code must be one of {FAULT_ERROR_CODES}",
                               "bad_request")
        faults.error_rate, faults.error_code = rate, code
    elif action == "clear":
        faults.clear()
        if faults.down:
            await cluster.come_up()
    else:
        raise ControlError(400, f"unknown fault action {action!r}", "bad_request")
    log.info("fault %s on %s: %s", action, cluster.name, faults.as_dict())
    return {"cluster": cluster.name, "faults": faults.as_dict()}


async def _clock_show(lab: Lab, body: dict):
    return {"now": lab.clock.now().isoformat(), "offset_seconds": lab.clock.offset_seconds}


async def _clock_advance(lab: Lab, body: dict):
    try:
        seconds = float(body.get("seconds"))
    except (TypeError, ValueError):
        raise ControlError(400, "seconds must be a number", "bad_request") from None
    if seconds < 0:
        raise ControlError(400, "the lab clock only moves forward", "bad_request")
    lab.clock.advance(seconds)
    lab._write_state("ready")  # lab.json carries the offset for readers without the channel
    log.info("clock advanced by %ss", seconds)
    return await _clock_show(lab, body)


async def _s3_revoke(lab: Lab, body: dict):
    await lab.objectstore.arevoke_credentials()
    return {"credentials_revoked": True}


async def _s3_latency(lab: Lab, body: dict):
    ms = body.get("ms")
    if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
        raise ControlError(400, f"latency needs milliseconds >= 0, got {ms!r}", "bad_request")
    await lab.objectstore.aset_latency(ms)
    log.info("S3 latency %d ms", ms)
    return {"latency_ms": ms}


async def _s3_restore(lab: Lab, body: dict):
    await lab.objectstore.arestore_credentials()
    return {"credentials_revoked": False}


async def _shutdown(lab: Lab, body: dict):
    lab.stopping.set()
    return {"stopping": True}


async def _velero_sync(lab: Lab, body: dict):
    """`POST /velero/sync {"cluster": name|null}`: sync every BSL of that cluster (or all) now."""
    cluster = (body or {}).get("cluster")
    if cluster:
        lab.cluster(cluster)  # 404 for an unknown cluster
    try:
        return await velero_sync.sync_now(cluster)
    except velero_sync.VeleroNotRunning as exc:
        raise ControlError(409, f"velero is not running in cluster {str(exc)!r}",
                           "velero_not_running") from None


async def _rook_health(lab: Lab, body: dict):
    """`POST /rook/health {"cluster", "namespace", "health", "message", "down_osds"}`: what the
    emulated Ceph reports from now on (HEALTH_OK clears an injected state)."""
    body = body or {}
    cluster = lab.cluster(body.get("cluster"))
    try:
        rook_cluster.set_health(cluster, body.get("namespace") or "rook-ceph", body.get("health"), body.get("message"),
                                body.get("down_osds"))
    except LookupError:
        raise ControlError(409, f"the Rook operator is not running in cluster {cluster.name!r}", "rook_not_running") from None
    return {"cluster": cluster.name, "health": body.get("health"), "down_osds": body.get("down_osds")}


async def _images(lab: Lab, body: dict):
    """`POST /images {"action": "deny"|"allow", "pattern", "cluster"|null}`: a rule of the image
    catalogue, lab-wide or for one cluster (controllers/workloads/images.py); answers the rules."""
    body = body or {}
    cluster = body.get("cluster")
    if cluster:
        # 404 for an unknown cluster. Every process keeps every rule (the route is lab-wide),
        # so any process answers the whole rule set.
        lab.check_cluster(cluster)
    try:
        images.POLICY.set_rule(body.get("action"), body.get("pattern"), cluster or None)
    except ValueError as exc:
        raise ControlError(400, str(exc), "bad_request") from None
    log.info("image %s %s%s", body.get("action"), body.get("pattern"), f" on {cluster}" if cluster else "")
    return images.POLICY.rules()


async def _images_show(lab: Lab, body: dict):
    return images.POLICY.rules()


async def _rook_endpoint(lab: Lab, body: dict):
    """`POST /rook/endpoint {"cluster", "namespace", "store"}`: where clients on the lab host reach a Ready
    CephObjectStore's S3 API (what `http://rook-ceph-rgw-<store>.<ns>.svc` is inside the cluster)."""
    body = body or {}
    cluster = lab.cluster(body.get("cluster"))
    ns, store = body.get("namespace") or "rook-ceph", body.get("store") or ""
    endpoint = cluster.service_addresses.get((ns, f"rook-ceph-rgw-{store}"))
    if not endpoint:
        raise ControlError(404, f"no Ready CephObjectStore {ns}/{store} in cluster {cluster.name!r}", "not_found")
    return {"cluster": cluster.name, "namespace": ns, "store": store, "endpoint": endpoint}


# Primary only: the status gathering, the S3 child's credentials, the clock reading, shutdown (the
# primary stops the other serving processes). The lab clock is one offset kept equal in every process.
for _method, _path, _handler in (
        ("GET", "/images", _images_show), ("GET", "/status", _status),
        ("GET", "/clock", _clock_show), ("POST", "/s3/revoke", _s3_revoke),
        ("POST", "/s3/restore", _s3_restore), ("POST", "/s3/latency", _s3_latency), ("POST", "/shutdown", _shutdown),
        ("POST", "/_lab/start", _begin_serving)):
    register_control_route(_method, _path, _handler)
for _method, _path, _handler in (
        ("POST", "/rook/health", _rook_health), ("POST", "/rook/endpoint", _rook_endpoint),
        ("POST", "/seed", _seed), ("POST", "/fault", _fault)):
    register_control_route(_method, _path, _handler, per_cluster=True)
register_control_route("POST", "/clock/advance", _clock_advance, lab_wide=True)
register_control_route("POST", "/images", _images, lab_wide=True)
register_control_route("POST", "/velero/sync", _velero_sync, per_cluster=True, lab_wide=True,
                       merge=merge_answers)


# -- process entry point ------------------------------------------------------------------

async def run(lab: Lab) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lab.stopping.set)
    try:
        await lab.start()
    except PortInUse as exc:
        log.error("%s", exc)
        lab.write_failure(str(exc), EXIT_PORT_IN_USE, port=exc.port)
        await _quiet_shutdown(lab)
        return EXIT_PORT_IN_USE
    except Exception as exc:
        log.exception("lab failed to start")
        lab.write_failure(f"{type(exc).__name__}: {exc}", EXIT_FAILED)
        await _quiet_shutdown(lab)
        return EXIT_FAILED
    # The clusters' start-up state (stores, controllers, certificates, OpenAPI data) lives as long
    # as the lab: keep it out of the collector's full passes, which otherwise rescan it all
    # every few hundred milliseconds of API traffic. Objects that later die are still freed by
    # reference counting; only garbage cycles among them would be kept.
    gc.freeze()
    await lab.stopping.wait()
    await lab.shutdown()
    return 0


def _announce(doc: dict) -> None:
    """The hand-shake line of a serving process to the primary (its only output on stdout)."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    # Nothing else may reach the pipe: the primary stops reading it, and a full pipe would block.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


async def _quiet_shutdown(lab: Lab) -> None:
    if not lab.is_primary:
        try:
            await lab.shutdown()
        except Exception:
            log.exception("clean-up after failed start")
        return
    state = labdir.read_state(lab.paths)
    try:
        await lab.shutdown()
    except Exception:
        log.exception("clean-up after failed start")
    if state is not None:  # keep the failure, not "stopped", for `up` to report
        labdir.write_json(lab.paths.state, state, 0o600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetdr_lab.daemon")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--clusters", type=int, required=True)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--base-port", type=int, default=None)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--process-index", type=int, default=0,
                        help="0: the primary (what `up` starts); others are started by it")
    args = parser.parse_args(argv)
    # Every API request and watch event allocates thousands of short-lived containers (object
    # copies, JSON): at the default gen0 threshold of 700 the cyclic collector runs thousands of
    # times per fleet operation. Collect (much) less often; garbage cycles are rare here.
    gc.set_threshold(*GC_THRESHOLDS)
    paths = labdir.LabPaths.of(args.dir)
    paths.dir.mkdir(parents=True, exist_ok=True)
    # Every serving process appends to lab.log; the others' lines say which process wrote them.
    tag = f" [process {args.process_index}]" if args.process_index else ""
    logging.basicConfig(
        level=os.environ.get("FLEETDR_LAB_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s %(levelname)s{tag} %(name)s: %(message)s",
        handlers=[logging.FileHandler(paths.log)],
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.process_index == 0:
        labdir.write_atomic(paths.pid, f"{os.getpid()}\n")
    processes = max(1, min(args.processes, args.clusters))
    lab = Lab(paths.dir, args.clusters, args.nodes, args.base_port, args.devices, processes,
              args.process_index, os.environ.pop(CONTROL_TOKEN_ENV, None) if args.process_index else None)
    logging.getLogger().addHandler(ErrorCollector(lab))
    code = asyncio.run(run(lab))
    log.info("lab process exiting with %d", code)
    logging.shutdown()
    # Everything is stopped and flushed; skip interpreter teardown (seconds of module and
    # object finalisation) so `down` returns promptly.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
