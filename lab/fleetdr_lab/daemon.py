"""The background lab process: N clusters (one HTTPS site each), moto S3, control channel.

Run by `fleetdr-lab up` as `python -m fleetdr_lab.daemon --dir DIR --clusters N ...`.
One asyncio loop serves every cluster; moto runs as a child process.

Control channel (CLI -> lab): HTTP on 127.0.0.1:<control port>, `Authorization: Bearer <token>`,
JSON bodies and answers. The routes are registered at the end of this module with

    async def handler(lab, body):           # lab: Lab, body: parsed JSON (dict, {} if none)
        ...                                  # raise ControlError(404, "...") for errors
        return {"synced": 3}                 # any JSON-serialisable value
    register_control_route("POST", "/velero/sync", handler)

registering the same method+path again replaces the handler. Parts below the daemon (the Velero
emulator) never import it: the daemon wraps what they offer into routes.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import errno
import gc
import logging
import os
import secrets
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from . import labdir, pki, seeds
from .clock import Clock
from .cluster import Cluster
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

ControlHandler = Callable[["Lab", dict], Awaitable[object]]
_CONTROL_ROUTES: dict[tuple[str, str], ControlHandler] = {}


class ControlError(Exception):
    def __init__(self, status: int, message: str, reason: str = "error"):
        super().__init__(message)
        self.status, self.message, self.reason = status, message, reason


class PortInUse(Exception):
    def __init__(self, port: int, what: str):
        super().__init__(f"port {port} ({what}) is already in use")
        self.port, self.what = port, what


def register_control_route(method: str, path: str, handler: ControlHandler) -> None:
    """Add (or replace) a control-channel route; see the module docstring."""
    _CONTROL_ROUTES[(method.upper(), path)] = handler


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
                 base_port: int | None = None, devices: int = 0):
        self.paths = labdir.LabPaths.of(directory)
        self.dir = self.paths.dir
        self.n_clusters = clusters
        self.nodes = nodes
        self.devices = devices
        self.base_port = base_port
        self.clock = Clock()
        self.clusters: dict[str, Cluster] = {}
        # "<load balancer ip>:<port>" -> the address serving it (controllers/services.py)
        self.external_addresses: dict[str, str] = {}
        self.errors: list[dict] = []
        self.control_token = secrets.token_urlsafe(32)
        self.control_port = 0
        self.started_at = time.time()
        self.objectstore = ObjectStore(self.paths.dir / "moto.log",
                                       port=(base_port + clusters + 1) if base_port else None)
        self.stopping = asyncio.Event()
        self._control_runner: web.AppRunner | None = None
        self.ready = False

    # -- handles for controllers -----------------------------------------------------------
    @property
    def s3(self) -> dict:
        return self.objectstore.info()

    def cluster(self, name: str) -> Cluster:
        try:
            return self.clusters[name]
        except KeyError:
            raise ControlError(404, f"unknown cluster {name!r} (known: "
                               f"{', '.join(self.clusters)})", "unknown_cluster") from None

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
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        self.paths.volumes.mkdir(exist_ok=True)
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
            ssl_ctx = pki.server_ssl_context(self.paths.serving_cert, self.paths.serving_key)

            for i in range(self.n_clusters):
                name = f"c{i + 1}"
                port = self.base_port + i if self.base_port else 0
                cluster = Cluster(self, name, i, nodes=self.nodes, port=port, devices=self.devices)
                cluster.bootstrap()
                self.clusters[name] = cluster
                cluster.install_controllers()
                await self._bind(cluster.start_site(ssl_ctx), port, f"cluster {name}")
                # Yield now and then so moto's start-up and the loop stay responsive.
                await asyncio.sleep(0)

            await self._start_control()
            await s3_task
        except BaseException:
            if not s3_task.done():
                s3_task.cancel()
            raise

        self.ca_pem = ca.cert_pem
        labdir.write_client_files(self.paths, [c.describe() for c in self.clusters.values()],
                                  ca.cert_pem, self.objectstore.info(),
                                  self.objectstore.credentials_file())
        for cluster in self.clusters.values():
            cluster.start_controllers()
        self.ready = True
        self._write_state("ready")
        log.info("lab ready: %d clusters, control port %d, S3 %s", len(self.clusters),
                 self.control_port, self.objectstore.endpoint)

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
        port = self.base_port + self.n_clusters if self.base_port else 0
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

        await asyncio.gather(*(stop(c) for c in self.clusters.values()))
        log.info("clusters stopped")
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
        doc = {
            "state": state,
            "pid": os.getpid(),
            "started": _iso(self.started_at),
            "control": {"port": self.control_port, "token": self.control_token},
            "nodes": self.nodes,
            "devices": self.devices,
            "base_port": self.base_port,
            "clusters": [c.describe() for c in self.clusters.values()],
            "n_clusters": self.n_clusters,
            "clock_offset_seconds": self.clock.offset_seconds,
            "s3": self.objectstore.info() if self.objectstore.access_key_id else None,
            "s3_admin": ({"access_key_id": self.objectstore.admin_access_key_id,
                          "secret_access_key": self.objectstore.admin_secret_access_key}
                         if self.objectstore.admin_access_key_id else None),
            **extra,
        }
        labdir.write_json(self.paths.state, doc, 0o600)

    def write_failure(self, message: str, exit_code: int, **extra) -> None:
        self._write_state("failed", error=message, exit_code=exit_code, **extra)

    # -- control channel --------------------------------------------------------------------
    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler):
        if request.headers.get("Authorization") != f"Bearer {self.control_token}":
            return web.json_response({"error": "unauthorized", "reason": "unauthorized"},
                                     status=401)
        return await handler(request)

    async def _dispatch(self, request: web.Request) -> web.Response:
        key = (request.method, request.path)
        handler = _CONTROL_ROUTES.get(key)
        if handler is None:
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
        try:
            result = await handler(self, body)
        except ControlError as exc:
            return web.json_response({"error": exc.message, "reason": exc.reason},
                                     status=exc.status)
        except Exception as exc:
            log.exception("control %s %s failed", request.method, request.path,
                          extra={"cluster": body.get("cluster")})
            return web.json_response({"error": f"{type(exc).__name__}: {exc}",
                                      "reason": "internal",
                                      "traceback": traceback.format_exc(limit=5)}, status=500)
        return web.json_response(result if result is not None else {})

    def status(self) -> dict:
        return {
            "state": "ready" if self.ready else "starting",
            "pid": os.getpid(),
            "dir": str(self.dir),
            "started": _iso(self.started_at),
            "clock": {"now": self.clock.now().isoformat(), "offset_seconds":
                      self.clock.offset_seconds},
            "clusters": [c.status() for c in self.clusters.values()],
            "s3": {"endpoint": self.objectstore.endpoint, "bucket": self.objectstore.bucket,
                   "region": self.objectstore.region, "up": self.objectstore.running(),
                   "credentials_revoked": self.objectstore.revoked},
            "errors": self.errors[-20:],
        }


# -- built-in control routes --------------------------------------------------------------

async def _status(lab: Lab, body: dict):
    return lab.status()


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
        lab.cluster(cluster)  # 404 for an unknown cluster
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


for _method, _path, _handler in (
        ("POST", "/images", _images), ("GET", "/images", _images_show),
        ("POST", "/rook/health", _rook_health), ("POST", "/rook/endpoint", _rook_endpoint),
        ("GET", "/status", _status), ("POST", "/seed", _seed), ("POST", "/fault", _fault),
        ("GET", "/clock", _clock_show), ("POST", "/clock/advance", _clock_advance),
        ("POST", "/s3/revoke", _s3_revoke), ("POST", "/s3/restore", _s3_restore),
        ("POST", "/shutdown", _shutdown), ("POST", "/velero/sync", _velero_sync)):
    register_control_route(_method, _path, _handler)


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


async def _quiet_shutdown(lab: Lab) -> None:
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
    args = parser.parse_args(argv)
    # Every API request and watch event allocates thousands of short-lived containers (object
    # copies, JSON): at the default gen0 threshold of 700 the cyclic collector runs thousands of
    # times per fleet operation. Collect (much) less often; garbage cycles are rare here.
    gc.set_threshold(*GC_THRESHOLDS)
    paths = labdir.LabPaths.of(args.dir)
    paths.dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=os.environ.get("FLEETDR_LAB_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.FileHandler(paths.log)],
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    labdir.write_atomic(paths.pid, f"{os.getpid()}\n")
    lab = Lab(paths.dir, args.clusters, args.nodes, args.base_port, args.devices)
    logging.getLogger().addHandler(ErrorCollector(lab))
    code = asyncio.run(run(lab))
    log.info("lab process exiting with %d", code)
    logging.shutdown()
    # Everything is stopped and flushed; skip interpreter teardown (seconds of module and
    # object finalisation) so `down` returns promptly.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
