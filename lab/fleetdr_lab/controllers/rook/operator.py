"""The emulated Rook operator of one cluster: when it runs, and what it reconciles.

The operator "runs" exactly as on a real cluster: Rook's CRDs exist and a Deployment named
`rook-ceph-operator` whose image is `[<registry>/]rook/ceph:<tag>` has a Ready pod (replicas 0
-> nothing reconciles). Its settings come from the Deployment's env, overridden by the
`rook-ceph-operator-config` ConfigMap of its namespace (Rook pkg/operator/k8sutil/configmap.go);
`ROOK_CURRENT_NAMESPACE_ONLY` (code default "true", pkg/operator/ceph/operator.go) limits it to
its own namespace.

Per-host state that outlives a cluster (the nodes' raw devices and what Ceph left in each node's
dataDirHostPath) lives in `HOSTS`, keyed by lab cluster, as a real host's disks would.
"""
from __future__ import annotations

import asyncio
import logging
import re

from ..base import Controller, pod_is_ready, selector_matches, supervise

log = logging.getLogger("fleetdr_lab.rook")

GROUP = "ceph.rook.io"
REQUIRED_CRDS = ("cephclusters", "cephblockpools")
IMAGE = re.compile(r"(?:^|/)rook/ceph:(v[0-9][^@\s]*)")
DEVICE_SIZE = 100 * 2 ** 30  # each emulated raw device: 100 GiB
OPERATORS: dict[str, "RookOperator"] = {}


class HostState:
    """One node's disks and what Ceph keeps on it across clusters."""

    def __init__(self, devices: int):
        self.devices = {f"sd{chr(ord('b') + i)}": DEVICE_SIZE for i in range(devices)}
        self.data_dirs: dict[str, str] = {}   # dataDirHostPath -> fsid of the cluster that wrote it
        self.consumed: dict[str, str] = {}    # device -> fsid of the cluster whose OSD has it


HOSTS: dict[str, dict[str, HostState]] = {}


def hosts(cluster) -> dict[str, HostState]:
    table = HOSTS.setdefault(cluster.name, {})
    for node in cluster.store.list("", "nodes")["items"]:
        name = node["metadata"]["name"]
        if name not in table:
            table[name] = HostState(getattr(cluster, "devices_per_node", 0))
    return table


def operator_settings(deployment: dict, config: dict | None) -> dict:
    env = {}
    for container in deployment["spec"]["template"]["spec"].get("containers") or []:
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = item["value"]
    env.update((config or {}).get("data") or {})
    return env


class RookOperator:
    """A running operator: its namespace, version, settings and sub-controllers."""

    def __init__(self, cluster, deployment: dict, settings: dict, controller_classes: list):
        self.cluster = cluster
        self.controller_classes = controller_classes
        self.namespace = deployment["metadata"]["namespace"]
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        self.version = IMAGE.search(image).group(1)
        self.settings = settings
        self.controllers: list[Controller] = []
        self.tasks: list[asyncio.Task] = []

    def watches_namespace(self, namespace: str) -> bool:
        only = str(self.settings.get("ROOK_CURRENT_NAMESPACE_ONLY", "true")).lower() == "true"
        return not only or namespace == self.namespace

    def start(self):
        for kind in self.controller_classes:
            ctrl = kind(self)
            self.controllers.append(ctrl)
            self.tasks.append(asyncio.create_task(supervise(ctrl, log, "rook controller"), name=f"{self.cluster.name}:{ctrl.name}"))
        OPERATORS[self.cluster.name] = self

    def controller(self, cls):
        return next((c for c in self.controllers if isinstance(c, cls)), None)

    async def stop(self):
        if OPERATORS.get(self.cluster.name) is self:
            del OPERATORS[self.cluster.name]
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.controllers = []


class RookInstallWatcher(Controller):
    """Starts a RookOperator while Rook is installed and its operator pod is Ready."""

    name = "rook-install"
    watches = [("apiextensions.k8s.io", "customresourcedefinitions"), ("apps", "deployments"), ("", "pods"),
               ("", "configmaps")]

    def __init__(self, cluster, controller_classes: list):
        super().__init__(cluster)
        self.controller_classes = controller_classes
        self.operator: RookOperator | None = None
        self._key = None

    def keys_for(self, etype, obj):
        m = obj.get("metadata") or {}
        kind = obj.get("kind")
        if kind == "CustomResourceDefinition":
            return ("rook",) if m.get("name", "").endswith("." + GROUP) else ()
        if kind == "Deployment":
            return ("rook",) if m.get("name") == "rook-ceph-operator" else ()
        if kind == "Pod":
            return ("rook",) if (m.get("labels") or {}).get("app") == "rook-ceph-operator" else ()
        if kind == "ConfigMap":
            return ("rook",) if m.get("name") == "rook-ceph-operator-config" else ()
        return ()

    def _desired(self):
        store = self.store
        for plural in REQUIRED_CRDS:
            if store.get_or_none("apiextensions.k8s.io", "customresourcedefinitions", None, f"{plural}.{GROUP}") is None:
                return None, None
        for dep in store.list("apps", "deployments", field_selector="metadata.name=rook-ceph-operator")["items"]:
            m = dep["metadata"]
            containers = dep["spec"]["template"]["spec"].get("containers") or []
            if m.get("deletionTimestamp") or not containers or not IMAGE.search(containers[0].get("image") or ""):
                continue
            if dep["spec"].get("replicas", 1) == 0:
                continue
            pods = store.list("", "pods", m["namespace"])["items"]
            if any(pod_is_ready(p) and not p["metadata"].get("deletionTimestamp")
                   and selector_matches(dep["spec"].get("selector"), p["metadata"].get("labels")) for p in pods):
                config = store.get_or_none("", "configmaps", m["namespace"], "rook-ceph-operator-config")
                return dep, operator_settings(dep, config)
        return None, None

    async def reconcile(self, key):
        dep, settings = self._desired()
        new_key = None
        if dep is not None:
            new_key = (dep["metadata"]["uid"], repr(dep["spec"]["template"]["spec"]["containers"][0].get("image")),
                       repr(sorted(settings.items())))
        if new_key == self._key:
            return
        if self.operator is not None:
            await self.operator.stop()
            self.operator = None
        self._key = new_key
        if dep is not None:
            self.operator = RookOperator(self.cluster, dep, settings, self.controller_classes)
            self.operator.start()
            log.info("%s: Rook operator %s running in %s", self.cluster.name, self.operator.version, self.operator.namespace)

    async def stop(self):
        if self.operator is not None:
            await self.operator.stop()
            self.operator = None
            self._key = None


class RookController(Controller):
    """Base of the operator's sub-controllers: keys are (namespace, name) of their kind."""

    plural = ""
    event_source = "rook-ceph-operator"

    def __init__(self, operator: RookOperator):
        super().__init__(operator.cluster)
        self.operator = operator
        self.name = f"rook-{self.plural or type(self).__name__}"

    def keys_for(self, etype, obj):
        """Its own kind: that object. Anything else it watches (its CephCluster, a store, a PV of its
        cluster): every object of its kind in that namespace (a PV's clusterID)."""
        m = obj.get("metadata") or {}
        if obj.get("kind", "").lower() + "s" == self.plural:
            return ((m.get("namespace"), m.get("name")),) if self.operator.watches_namespace(m.get("namespace")) else ()
        ns = m.get("namespace") or (((obj.get("spec") or {}).get("csi") or {}).get("volumeAttributes") or {}).get("clusterID")
        if not ns:
            return ()
        return [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in self.store.list(GROUP, self.plural, ns)["items"]]

    def with_finalizer(self, obj: dict, finalizer: str) -> dict:
        """obj carrying finalizer (Rook adds its own before anything else)."""
        if finalizer in (obj["metadata"].get("finalizers") or []):
            return obj
        obj["metadata"].setdefault("finalizers", []).append(finalizer)
        m = obj["metadata"]
        return self.store.update(GROUP, self.plural, m["namespace"], m["name"], obj)

    def without_finalizer(self, obj: dict, finalizer: str) -> dict:
        m = obj["metadata"]
        m["finalizers"] = [f for f in m.get("finalizers") or [] if f != finalizer]
        return self.store.update(GROUP, self.plural, m["namespace"], m["name"], obj)

    def put_status(self, obj: dict, status: dict) -> dict:
        """Write the status subresource of the current version of obj."""
        m = obj["metadata"]
        current = self.store.get(GROUP, self.plural, m["namespace"], m["name"])
        current["status"] = status
        return self.store.update(GROUP, self.plural, m["namespace"], m["name"], current, subresource="status")

