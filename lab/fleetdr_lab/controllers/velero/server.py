"""The emulated Velero server of one cluster, and the watcher that starts/stops it.

Velero "runs" in a lab cluster exactly when a user installed it: every velero.io CRD exists, and a
Deployment named `velero` whose container image is `[<registry>/]velero/velero:<tag>` (or any
`.../velero:<tag>`) has a Ready pod (replicas 0 -> no pod -> nothing progresses). The server's
version comes from the tag and its flags from the container args (server_config.py).

Seams for the sub-controllers (backup, restore, schedule, node-agent, ...):
- `VeleroController`: base with handles `server`, `config`, `store`, `clock`, `s3` (see below);
  override `keys_for`/`reconcile` (level-triggered work queue, keys are object names in the Velero
  namespace by default) and/or `resync()` (called every `resync_seconds` of wall time).
- `CONTROLLERS`: the list of controller classes a server starts, in order.
- `VeleroServer.backup_store(bsl)` / `backup_store_for(bsl_name)` -> backup_store.BackupStore (blocking methods;
  call them through `backup_store.run_blocking`).
"""
from __future__ import annotations

import asyncio
import base64
import logging
from datetime import datetime, timezone

from ..base import Controller, pod_is_ready, rfc3339, selector_matches, supervise
from .server_config import ServerConfig, config_from_deployment, image_tag
from .backup_store import DEFAULT_CREDENTIALS_SECRET, BackupStore, make_backup_store

log = logging.getLogger("fleetdr_lab.velero")

GROUP = "velero.io"
# Every kind the real server requires in discovery before it starts (pkg/cmd/server/server.go).
REQUIRED_CRDS = (
    "backuprepositories", "backups", "backupstoragelocations", "deletebackuprequests",
    "downloadrequests", "podvolumebackups", "podvolumerestores", "restores", "schedules",
    "serverstatusrequests", "volumesnapshotlocations", "datauploads", "datadownloads",
)

# cluster name -> running VeleroServer (used by the control route and by tests in-process).
SERVERS: dict[str, "VeleroServer"] = {}


def now_rfc3339(clock) -> str:
    return rfc3339(clock.now())


# text -> parsed: the periodic due checks parse the same few status timestamps every second
# on every cluster, and strptime is slow. datetimes are immutable, so sharing them is safe.
_parsed_times: dict[str, datetime] = {}
_PARSED_TIMES_MAX = 20_000


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    if isinstance(text, str):
        found = _parsed_times.get(text)
        if found is not None:
            return found
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    if len(_parsed_times) >= _PARSED_TIMES_MAX:
        _parsed_times.clear()
    _parsed_times[text] = parsed
    return parsed


def label_safe(name: str) -> str:
    """pkg/label GetValidName: >63 chars -> first 57 + first 6 hex of sha256."""
    import hashlib
    if len(name) <= 63:
        return name
    return name[:57] + hashlib.sha256(name.encode()).hexdigest()[:6]


class VeleroController(Controller):
    """Base of every Velero sub-controller: watches velero.io objects in the server's namespace."""

    name = "velero"               # as in --disable-controllers
    watches: list[tuple[str, str]] = []
    resync_seconds: float | None = None   # wall-time periodic `resync()`

    def __init__(self, server: "VeleroServer"):
        super().__init__(server.cluster)
        self.server = server
        self.config: ServerConfig = server.config
        self.clock = server.clock
        self.namespace = server.namespace
        self.log = logging.getLogger(f"fleetdr_lab.velero.{server.cluster.name}.{self.name}")

    @property
    def s3(self):
        return self.server

    async def run(self):
        if self.resync_seconds:
            ticker = asyncio.create_task(self._resync_loop(), name=f"{self.name}:resync")
        else:
            ticker = None
        try:
            await super().run()
        finally:
            if ticker:
                ticker.cancel()

    async def _resync_loop(self):
        while True:
            await asyncio.sleep(self.resync_seconds)
            try:
                await self.resync()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("resync failed")

    async def resync(self):
        pass

    def keys_for(self, etype, obj):
        m = obj.get("metadata") or {}
        if m.get("namespace") != self.namespace:
            return ()
        return (m.get("name"),)

    # helpers
    def now(self) -> str:
        return now_rfc3339(self.clock)

    def get(self, plural: str, name: str) -> dict | None:
        return self.store.get_or_none(GROUP, plural, self.namespace, name)

    def list(self, plural: str, label_selector: str | None = None, shared: bool = False) -> list[dict]:
        """shared: read-only items (Store.list), for the once-a-second due checks."""
        return self.store.list(GROUP, plural, self.namespace, label_selector=label_selector,
                               shared=shared)["items"]

    def patch(self, plural: str, name: str, patch: dict) -> dict:
        """Velero writes status with JSON merge patches on the main resource (no /status)."""
        return self.store.patch(GROUP, plural, self.namespace, name, patch, "merge")


class VeleroServer:
    """One running Velero server (per cluster); owns its sub-controllers."""

    def __init__(self, cluster, deployment: dict):
        self.cluster = cluster
        self.store = cluster.store
        self.clock = cluster.store.clock
        self.deployment = deployment
        self.config = config_from_deployment(deployment)
        self.namespace = self.config.namespace
        self.default_secret = _default_credentials_secret(deployment)
        self.controllers: list[VeleroController] = []
        self.tasks: list[asyncio.Task] = []
        self.running_backups: set[str] = set()   # in-memory tracker (deletion checks it, 11.2)
        self.log = logging.getLogger(f"fleetdr_lab.velero.{cluster.name}")

    @property
    def version(self) -> str:
        return self.config.version

    def controller(self, cls):
        for c in self.controllers:
            if isinstance(c, cls):
                return c
        return None

    # -- object store ---------------------------------------------------------------------
    def object_store_plugins(self) -> set[str]:
        """ObjectStore plugins this server has: the AWS plugin comes from its init container."""
        found = set()
        for image in self.config.plugins:
            repo = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
            if repo == "velero-plugin-for-aws":
                found.add("velero.io/aws")
        return found

    def backup_store(self, bsl: dict) -> BackupStore:
        provider = (bsl.get("spec") or {}).get("provider", "")
        if "/" not in provider:
            provider = f"velero.io/{provider}"
        if provider not in self.object_store_plugins():
            from .backup_store import ObjectStoreError
            raise ObjectStoreError(f"unable to locate ObjectStore plugin named {provider}")
        return make_backup_store(self.store, self.namespace, bsl, self.default_secret, resolve=self.cluster.resolve_url)

    def get_bsl(self, name: str) -> dict | None:
        return self.store.get_or_none(GROUP, "backupstoragelocations", self.namespace, name)

    def backup_store_for(self, bsl_name: str) -> BackupStore:
        bsl = self.get_bsl(bsl_name)
        if bsl is None:
            from .backup_store import ObjectStoreError
            raise ObjectStoreError(f'backupstoragelocations.velero.io "{bsl_name}" not found')
        return self.backup_store(bsl)

    # -- cluster facts ---------------------------------------------------------------------
    def node_agent_pods(self) -> list[dict]:
        pods = self.store.list("", "pods", self.namespace, label_selector="name=node-agent")["items"]
        return [p for p in pods if pod_is_ready(p) and not p["metadata"].get("deletionTimestamp")]

    def k8s_version(self) -> dict:
        """What discovery's /version says (the source-cluster annotations of a backup)."""
        return {k: self.cluster.kube_version[k] for k in ("gitVersion", "major", "minor")}

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self):
        from .backup import version_tuple
        if version_tuple(self.version) >= (1, 17, 0) and self.config.uploader_type != "kopia":
            # the real binary exits at start-up (the pod crash-loops): nothing runs
            self.log.error('velero server %s refuses to start: invalid uploader type "%s", only "kopia" '
                           "is supported", self.version, self.config.uploader_type)
            return
        SERVERS[self.cluster.name] = self
        self.log.info("velero server %s starting in namespace %s", self.version, self.namespace)
        try:
            self._on_start()
        except Exception:
            self.log.exception("server start-up steps failed")
        for cls in CONTROLLERS:
            if not self.config.controller_enabled(getattr(cls, "name", "")):
                continue
            ctrl = cls(self)
            self.controllers.append(ctrl)
            self.tasks.append(asyncio.create_task(supervise(ctrl, self.log, "velero controller"),
                                                  name=f"{self.cluster.name}:velero:{ctrl.name}"))

    async def stop(self):
        if SERVERS.get(self.cluster.name) is self:
            del SERVERS[self.cluster.name]
        tasks, self.tasks = self.tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.controllers = []
        self.running_backups.clear()
        self.log.info("velero server stopped")

    def _on_start(self):
        """What the real server does before its controllers run (pkg/cmd/server/server.go)."""
        now = now_rfc3339(self.clock)
        for kind, plural in (("backup", "backups"), ("restore", "restores")):
            for obj in self.store.list(GROUP, plural, self.namespace)["items"]:
                if (obj.get("status") or {}).get("phase") == "InProgress":
                    self.store.patch(GROUP, plural, self.namespace, obj["metadata"]["name"], {"status": {
                        "phase": "Failed",
                        "failureReason": f'found a {kind} with status "InProgress" during the server '
                                         f'starting, mark it as "Failed"',
                        "completionTimestamp": now}}, "merge")
        # Repository password secret, created with the fixed upstream value when missing.
        if self.store.get_or_none("", "secrets", self.namespace, "velero-repo-credentials") is None:
            try:
                self.store.create("", "secrets", self.namespace, {
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "velero-repo-credentials", "namespace": self.namespace},
                    "type": "Opaque",
                    "data": {"repository-password": base64.b64encode(b"static-passw0rd").decode()}})
            except Exception as exc:  # AlreadyExists race
                self.log.debug("velero-repo-credentials: %s", exc)
        # The BSL named by --default-backup-storage-location becomes default if none is.
        bsls = self.store.list(GROUP, "backupstoragelocations", self.namespace)["items"]
        if bsls and not any((b.get("spec") or {}).get("default") for b in bsls):
            for b in bsls:
                if b["metadata"]["name"] == self.config.default_backup_storage_location:
                    self.store.patch(GROUP, "backupstoragelocations", self.namespace,
                                     b["metadata"]["name"], {"spec": {"default": True}}, "merge")


def _default_credentials_secret(deployment: dict) -> tuple[str, str]:
    """The Secret + key behind AWS_SHARED_CREDENTIALS_FILE of the velero container."""
    pod = deployment.get("spec", {}).get("template", {}).get("spec", {})
    containers = pod.get("containers") or []
    container = next((c for c in containers if c.get("name") == "velero"), containers[0] if containers else {})
    path = next((e.get("value") for e in container.get("env") or []
                 if e.get("name") == "AWS_SHARED_CREDENTIALS_FILE"), None)
    if not path:
        return DEFAULT_CREDENTIALS_SECRET
    for mount in container.get("volumeMounts") or []:
        mp = mount.get("mountPath", "").rstrip("/")
        if path.startswith(mp + "/"):
            vol = next((v for v in pod.get("volumes") or [] if v.get("name") == mount.get("name")), None)
            if vol and vol.get("secret"):
                return vol["secret"].get("secretName", DEFAULT_CREDENTIALS_SECRET[0]), path[len(mp) + 1:]
    return DEFAULT_CREDENTIALS_SECRET


class VeleroInstallWatcher(Controller):
    """Starts a VeleroServer when Velero is installed and running; stops it otherwise."""

    name = "velero-install"
    watches = [("apiextensions.k8s.io", "customresourcedefinitions"), ("apps", "deployments"),
               ("", "pods")]

    def __init__(self, cluster):
        super().__init__(cluster)
        self.server: VeleroServer | None = None
        self._server_key = None
        self._velero_namespaces: set[str] = set()

    def keys_for(self, etype, obj):
        m = obj.get("metadata") or {}
        kind = obj.get("kind")
        if kind == "CustomResourceDefinition":
            return ("velero",) if m.get("name", "").endswith("." + GROUP) else ()
        if kind == "Deployment":
            if m.get("name") == "velero":
                self._velero_namespaces.add(m.get("namespace"))
                return ("velero",)
            return ()
        if kind == "Pod":
            return ("velero",) if m.get("namespace") in self._velero_namespaces else ()
        return ()

    def _desired(self) -> dict | None:
        store = self.store
        for plural in REQUIRED_CRDS:
            if not store.exists("apiextensions.k8s.io", "customresourcedefinitions", None,
                                f"{plural}.{GROUP}"):
                return None
        for dep in store.list("apps", "deployments")["items"]:
            m = dep["metadata"]
            if m.get("name") != "velero" or m.get("deletionTimestamp"):
                continue
            containers = dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
            if not any(image_tag(c.get("image", "")) for c in containers):
                continue
            if dep.get("spec", {}).get("replicas", 1) == 0:
                continue
            ns = store.get_or_none("", "namespaces", None, m["namespace"])
            if ns is None or ns["metadata"].get("deletionTimestamp"):
                continue
            selector = dep.get("spec", {}).get("selector")
            pods = store.list("", "pods", m["namespace"])["items"]
            if any(pod_is_ready(p) and not p["metadata"].get("deletionTimestamp")
                   and selector_matches(selector, p["metadata"].get("labels")) for p in pods):
                return dep
        return None

    async def reconcile(self, key):
        dep = self._desired()
        new_key = None
        if dep is not None:
            c = dep["spec"]["template"]["spec"]
            new_key = (dep["metadata"]["namespace"], dep["metadata"]["uid"], repr(c.get("containers")),
                       repr(c.get("initContainers")), repr(c.get("volumes")))
        if new_key == self._server_key:
            return
        if self.server is not None:
            await self.server.stop()
            self.server = None
        self._server_key = new_key
        if dep is not None:
            self.server = VeleroServer(self.cluster, dep)
            await self.server.start()

    async def stop(self):
        if self.server is not None:
            await self.server.stop()
            self.server = None
            self._server_key = None


def install(cluster) -> None:
    """Register the Velero install watcher on a cluster (the cluster calls this), and the
    restore-wait init container's gate with the kubelet emulation."""
    register_init_container_gate("restore-wait", restore_wait_satisfied)
    cluster.add_controller(VeleroInstallWatcher(cluster))


# ---- the sub-controllers a server runs, in start order ----
from .status_request import ServerStatusRequestController  # noqa: E402
from .bsl import BackupStorageLocationController  # noqa: E402
from .backup import BackupQueueController, BackupController  # noqa: E402
from .sync import BackupSyncController  # noqa: E402
from .backup_gc import GCController  # noqa: E402
from .deletion import BackupDeletionController  # noqa: E402
from .download_request import DownloadRequestController  # noqa: E402
from .restore import RestoreController  # noqa: E402
from .schedule import ScheduleController  # noqa: E402
from .fsbackup import NodeAgentController, restore_wait_satisfied  # noqa: E402
from ..workloads import register_init_container_gate  # noqa: E402

CONTROLLERS: list[type[VeleroController]] = [
    ServerStatusRequestController,
    BackupStorageLocationController,
    BackupQueueController,
    BackupController,
    BackupSyncController,
    GCController,
    BackupDeletionController,
    DownloadRequestController,
    RestoreController,
    ScheduleController,
    NodeAgentController,
]
