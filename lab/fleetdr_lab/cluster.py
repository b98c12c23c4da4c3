"""One emulated cluster: its Store, bootstrap objects, HTTPS site, faults and controllers."""
from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import ssl
import urllib.parse
from dataclasses import dataclass, asdict
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from .api import make_app
from .controllers import install_default_controllers
from .rbac import RbacEscalationCheck, bootstrap_policy
from .controllers.base import supervise
from .controllers.rook import install as install_rook, status as rook_status
from .controllers.velero import install as install_velero
from .strategies import new_store

if TYPE_CHECKING:  # pragma: no cover
    from .daemon import Lab

ENVS = ("prod", "staging", "dev")
REGIONS = ("eu-west", "us-east", "ap-south")
ZONE_SUFFIXES = ("a", "b", "c")
BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
KUBERNETES_SERVICE_IP = "10.96.0.1"
APISERVER_IP = "10.0.0.10"
CONTROLLER_RESTART_DELAY = 1.0
# What GET /version answers (and the Velero emulator records as the source cluster's version).
KUBE_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4-fleetdr",
    "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T16:02:27Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
SHUTDOWN_TIMEOUT = 1.0


def cluster_labels(index: int) -> dict:
    """Labels of the index-th cluster (0-based): env and region cycle."""
    return {"env": ENVS[index % len(ENVS)], "region": REGIONS[index % len(REGIONS)]}


@dataclass
class Faults:
    down: bool = False
    latency_ms: int = 0
    error_rate: float = 0.0
    error_code: int = 500

    def clear(self) -> None:
        self.latency_ms, self.error_rate, self.error_code = 0, 0.0, 500

    def as_dict(self) -> dict:
        return asdict(self)


class Cluster:
    def __init__(self, lab: "Lab", name: str, index: int, nodes: int = 1, port: int = 0,
                 token: str | None = None, devices: int = 0):
        self.lab = lab
        self.name = name
        self.index = index
        self.node_count = nodes
        self.devices_per_node = devices  # raw disks per node (Rook's OSDs consume them)
        # Cluster DNS for the lab's own in-cluster clients: (namespace, service) -> the lab address
        # that answers for it (e.g. a Rook object store's RGW Service -> the lab's S3 endpoint).
        self.service_addresses: dict[tuple[str, str], str] = {}
        self.port = port
        self.token = token or secrets.token_urlsafe(32)
        self.labels = cluster_labels(index)
        self.faults = Faults()
        self.data_dir: Path = lab.dir / "volumes" / name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = logging.getLogger(f"fleetdr_lab.cluster.{name}")
        self.kube_version = KUBE_VERSION
        self.store = new_store(clock=lab.clock)
        self.store.register(RbacEscalationCheck(self))
        self.controllers: list = []
        self._controller_tasks: list[asyncio.Task] = []
        self._started = False
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.site: web.TCPSite | None = None
        self._ssl_context: ssl.SSLContext | None = None

    # -- identity ----------------------------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def describe(self) -> dict:
        return {"name": self.name, "port": self.port, "server": self.server,
                "token": self.token, "labels": dict(self.labels)}

    def resolve_url(self, url: str) -> str:
        """`http://<service>.<namespace>.svc[.cluster.local][:port]/...` -> the address registered for
        that Service, and `http://<load balancer ip>:<port>/...` of any cluster's LoadBalancer Service
        -> what serves it (scheme, host and port replaced); any other URL as it is."""
        parts = urllib.parse.urlsplit(url)
        labels = (parts.hostname or "").split(".")
        target = None
        if len(labels) >= 3 and labels[2] == "svc" and (labels[0], labels[1]) != ("", ""):
            target = self.service_addresses.get((labels[1], labels[0]))
        elif parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            target = self.lab.external_addresses.get(f"{parts.hostname}:{port}")
        if target:
            base = urllib.parse.urlsplit(target)
            return urllib.parse.urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))
        return url

    # -- bootstrap ---------------------------------------------------------------------------
    def bootstrap(self) -> None:
        store = self.store
        for ns in BOOTSTRAP_NAMESPACES:
            store.apply_object({"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": ns}})
        for obj in bootstrap_policy():
            store.apply_object(obj)
        region = self.labels["region"]
        for i in range(1, self.node_count + 1):
            self._bootstrap_node(f"{self.name}-node-{i}", region,
                                 f"{region}-{ZONE_SUFFIXES[(i - 1) % len(ZONE_SUFFIXES)]}", i)
        store.apply_object({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "standard", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "fleetdr.lab/hostpath",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True,
        })
        store.apply_object({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP,
                     "clusterIPs": [KUBERNETES_SERVICE_IP],
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                "targetPort": 6443}],
                     "sessionAffinity": "None"},
        })
        # The apiserver's own endpoints (selector-less Service, maintained by the apiserver).
        store.apply_object({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": APISERVER_IP}],
                         "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}],
        })

    def _bootstrap_node(self, name: str, region: str, zone: str, index: int) -> None:
        now = self.lab.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": m,
                 "lastHeartbeatTime": now, "lastTransitionTime": now}
                for t, s, r, m in (
                    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
                     "kubelet has sufficient memory available"),
                    ("DiskPressure", "False", "KubeletHasNoDiskPressure",
                     "kubelet has no disk pressure"),
                    ("PIDPressure", "False", "KubeletHasSufficientPID",
                     "kubelet has sufficient PID available"),
                    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                )
            ],
            "addresses": [{"type": "InternalIP", "address": f"10.0.{self.index % 250}.{index + 1}"},
                          {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110",
                         "ephemeral-storage": "100Gi"},
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110",
                            "ephemeral-storage": "100Gi"},
            "nodeInfo": {"kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0",
                         "containerRuntimeVersion": "containerd://1.7.24",
                         "operatingSystem": "linux", "architecture": "amd64",
                         "osImage": "fleetdr-lab", "kernelVersion": "6.1.0",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        }
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/region": region,
                "topology.kubernetes.io/zone": zone,
            }},
            "spec": {"podCIDR": f"10.244.{index}.0/24"},
            "status": status,
        }
        created = self.store.apply_object(node)
        if not created.get("status", {}).get("conditions"):
            # The store drops status on the main resource: set it through the subresource
            # the way a kubelet does.
            created["status"] = status
            created = self.store.update("", "nodes", None, name, created, subresource="status")
        # The kubelet's heartbeat Lease, owned by its Node, as in every real cluster.
        self.store.apply_object({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": name,
                "uid": created["metadata"]["uid"]}]},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": self.lab.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        })

    # -- controllers -------------------------------------------------------------------------
    def add_controller(self, ctrl) -> None:
        self.controllers.append(ctrl)
        if self._started:
            self._controller_tasks.append(self._spawn(ctrl))

    def install_controllers(self) -> None:
        """The built-in control plane, then the in-cluster software (Velero's install watcher)."""
        install_default_controllers(self)
        install_velero(self)
        install_rook(self)

    def start_controllers(self) -> None:
        self._started = True
        for ctrl in self.controllers:
            self._controller_tasks.append(self._spawn(ctrl))

    def _spawn(self, ctrl) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(
            supervise(ctrl, self.log, "controller", CONTROLLER_RESTART_DELAY), name=f"{self.name}:{type(ctrl).__name__}")

    async def stop_controllers(self) -> None:
        tasks, self._controller_tasks = self._controller_tasks, []
        for task in tasks:
            task.cancel()
        for ctrl in self.controllers:
            close = getattr(ctrl, "close", None) or getattr(ctrl, "stop", None)
            if close is not None:
                try:
                    res = close()
                    if inspect.isawaitable(res):
                        await res
                except Exception:
                    self.log.exception("stopping controller failed")
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- HTTPS site --------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        return make_app(self)

    async def start_site(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        if self.runner is None:
            self.app = self.build_app()
            # Short shutdown: open watches would otherwise hold `down` for a minute.
            # Errors aiohttp logs for this site name the cluster (status attributes them).
            self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None,
                                        shutdown_timeout=SHUTDOWN_TIMEOUT,
                                        logger=logging.getLogger(f"{self.log.name}.http"))
            await self.runner.setup()
        await self._open_site()

    async def _open_site(self) -> None:
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self._ssl_context,
                           reuse_address=True, backlog=512)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]
        self.site = site

    async def go_down(self) -> None:
        """Stop listening and drop open connections: clients see connection refused/reset."""
        self.faults.down = True
        await self._drop_connections()

    async def _drop_connections(self) -> None:
        if self.site is not None:
            site, self.site = self.site, None
            await site.stop()
        if self.runner is not None and self.runner.server is not None:
            for handler in list(self.runner.server.connections):
                transport = handler.transport
                handler.force_close()
                if transport is not None:
                    transport.abort()

    async def come_up(self) -> None:
        """Listen again on the same port."""
        if self.site is None:
            await self._open_site()
        self.faults.down = False

    async def stop_site(self) -> None:
        if self.runner is not None:
            await self._drop_connections()
            await self.runner.cleanup()
            self.runner = None
            self.site = None

    # -- status ------------------------------------------------------------------------------
    def object_counts(self) -> dict[str, int]:
        """Objects per resource ("plural.group"), for `status`."""
        counter = getattr(self.store, "object_counts", None)
        if callable(counter):
            return dict(counter())
        # TODO(store): a public Store.object_counts() would avoid reading Store._data here.
        data = getattr(self.store, "_data", None) or {}
        counts = {}
        for (group, plural), by_namespace in data.items():
            n = sum(len(objs) for objs in by_namespace.values())
            if n:
                counts[f"{plural}.{group}" if group else plural] = n
        return counts

    def status(self) -> dict:
        running = sum(1 for t in self._controller_tasks if not t.done())
        counts = self.object_counts()
        errors = [e for e in self.lab.errors if e["cluster"] == self.name]
        return {**{k: v for k, v in self.describe().items() if k != "token"},
                "up": not self.faults.down and self.site is not None,
                "faults": self.faults.as_dict(),
                "objects": sum(counts.values()),
                "object_counts": counts,
                "controllers": {"installed": len(self.controllers), "running": running},
                "rook": rook_status(self),
                "error_count": len(errors),
                "errors": errors[-5:]}

