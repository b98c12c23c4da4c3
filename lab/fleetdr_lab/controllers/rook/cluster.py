"""CephCluster: validation, the status sequence, the daemons, Ceph health, and teardown.

Follows Rook pkg/operator/ceph/cluster/{controller,cluster,version}.go, cluster/mon/mon.go,
cluster/mgr/mgr.go, cluster/osd/*.go, cluster/cephstatus.go and controller/conditions.go:
- a failed reconcile is phase Progressing + state Error + the error as message (never Failure),
  an earlier Ready/ClusterCreated condition stays in the list;
- the mon node-count check counts every Node; mons that no node can host fail with "failed to
  schedule mons"; mons on a node whose dataDirHostPath holds another cluster's data never reach
  quorum;
- mons are created one by one (a, b, c), each waited for, then the mgrs, then one OSD per
  consumed device; `status.ceph` appears only after the first successful reconcile;
- deletion is blocked by dependent CRs (DeletionIsBlocked) and by Rook-provisioned PVs; with the
  cleanup policy confirmed, cleanup Jobs wipe the hosts, otherwise their data stays.
Mons are placed as Rook does (cluster/mon/mon.go assignMons/scheduleMonitor): a canary Deployment
per new mon, with the mon placement and, unless allowMultiplePerNode, a required anti-affinity to
other mon pods; the node the scheduler picks for each canary is the mon's node (kept in the
rook-ceph-mon-endpoints ConfigMap's `mapping`), and canaries still unscheduled after 30 x 5 s of lab
clock fail the reconcile with "failed to schedule mons". Other steps go on as soon as the previous
one's pods are Ready.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid

from ..base import is_deleting, owner_reference, pod_is_ready, set_condition
from ..workloads import node_fits
from .operator import GROUP, HOSTS, OPERATORS, RookController, hosts, log

FINALIZER = "cephcluster.ceph.rook.io"
PROTECTION = "ceph.rook.io/disaster-protection"
DESTROY = "yes-really-destroy-data"
CANARY_TIMEOUT_S = 30 * 5  # cluster/mon/mon.go: canaryRetries x canaryRetryDelaySeconds
FORBIDDEN_DIRS = ("/etc/ceph", "/rook", "/var/log/ceph")
MIN_VERSION = (19, 2, 0)
SUPPORTED_MAJORS = (19, 20)
DEPENDENTS = (
    ("CephBlockPool", "cephblockpools"), ("CephBlockPoolRadosNamespace", "cephblockpoolradosnamespaces"),
    ("CephClient", "cephclients"), ("CephFilesystem", "cephfilesystems"),
    ("CephFilesystemSubVolumeGroup", "cephfilesystemsubvolumegroups"), ("CephNFS", "cephnfses"),
    ("CephObjectStore", "cephobjectstores"), ("CephObjectStoreUser", "cephobjectstoreusers"),
    ("CephRBDMirror", "cephrbdmirrors"),
)
# Health set from outside (`fleetdr-lab rook health`, `rook osd-down`): cluster -> {ns: (health, {code: message})}
HEALTH_FAULTS: dict[str, dict[str, tuple[str, dict]]] = {}
DOWN_OSDS: dict[str, set[str]] = {}


class ReconcileError(Exception):
    pass


def ceph_version(image: str) -> tuple[int, int, int] | None:
    match = re.search(r":v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", image.rsplit("/", 1)[-1])
    if not match:
        return None
    major, minor, patch = (int(x) if x else None for x in match.groups())
    # A bare major tag (quay.io/ceph/ceph:v20) runs the newest release of it.
    return major, minor if minor is not None else {19: 2, 20: 2}.get(major, 0), patch if patch is not None else 4


def _letters(index: int) -> str:
    """a..z, aa, ab, ... (Rook's mon IDs)."""
    out = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(ord("a") + rest) + out
    return out


class CephClusterController(RookController):
    plural = "cephclusters"
    watches = [(GROUP, "cephclusters"), ("", "pods"), ("", "nodes"), ("", "persistentvolumes")] + \
        [(GROUP, plural) for _kind, plural in DEPENDENTS]

    def __init__(self, operator):
        super().__init__(operator)
        self._canaries: dict[str, float] = {}  # CephCluster uid -> lab time its canaries were created
        self._wakers: dict[str, asyncio.Future] = {}
        self._seen: dict[str, tuple] = {}  # CephCluster uid -> (generation, deletionTimestamp, finalizers) last enqueued for  # CephCluster uid -> the task that enqueues it when they time out

    def keys_for(self, etype, obj):
        m = obj.get("metadata") or {}
        kind = obj.get("kind")
        if kind == "CephCluster":
            # Rook's controller predicate (pkg/operator/ceph/controller/predicate.go) drops updates that
            # change only the status: the operator's own status writes do not requeue the cluster.
            mark = (m.get("generation"), m.get("deletionTimestamp"), tuple(m.get("finalizers") or ()))
            if etype == "MODIFIED" and self._seen.get(m.get("uid")) == mark:
                return ()
            self._seen[m.get("uid")] = mark
            return super().keys_for(etype, obj)
        if kind == "Pod":
            if (m.get("labels") or {}).get("mon_canary") and (etype == "DELETED" or m.get("deletionTimestamp")):
                return ()  # canaries going away after a placement decision (or a failure) ask for nothing
            ns = (m.get("labels") or {}).get("rook_cluster")
            return self._clusters_in(ns) if ns else ()
        if kind in ("Node", "PersistentVolume"):
            return self._clusters_in(None)
        return self._clusters_in(m.get("namespace"))

    def _clusters_in(self, namespace):
        items = self.store.list(GROUP, "cephclusters", namespace)["items"]
        return [(c["metadata"]["namespace"], c["metadata"]["name"]) for c in items
                if self.operator.watches_namespace(c["metadata"]["namespace"])]

    def poke(self, namespace: str):
        for key in self._clusters_in(namespace):
            self.enqueue(key)

    # ------------------------------------------------------------------ status writing
    def _write_condition(self, cc, ctype, status, reason, message):
        """Rook controller/conditions.go UpdateClusterCondition."""
        st = dict(cc.get("status") or {})
        now = self.now()
        kept = [c for c in st.get("conditions") or []
                if c.get("reason") in ("ClusterCreated", "ClusterConnected") or c.get("type") in ("Deleting", "DeletionIsBlocked")
                or st.get("phase") == "Deleting"]
        previous = next((c for c in kept if c.get("type") == ctype), None)
        kept = [c for c in kept if c.get("type") != ctype]
        changed = previous is None or previous.get("status") != status or previous.get("message") != message
        kept.append({"type": ctype, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now,
                     "lastTransitionTime": now if changed else previous.get("lastTransitionTime", now)})
        st["conditions"] = kept
        if st.get("phase") != "Deleting":
            st["phase"] = ctype
            st["message"] = message
            st["state"] = "Error" if status == "False" else {"Progressing": "Creating", "Ready": "Created",
                                                             "Deleting": "Deleting"}.get(ctype, ctype)
        if ctype == "Ready":
            st["observedGeneration"] = cc["metadata"].get("generation", 1)
        return self._put_status(cc, st)

    def _put_status(self, cc, st):
        m = cc["metadata"]
        cc = self.store.get(GROUP, "cephclusters", m["namespace"], m["name"])
        cc["status"] = st
        return self.store.update(GROUP, "cephclusters", m["namespace"], m["name"], cc, subresource="status")

    def _progress(self, cc, message):
        st = cc.get("status") or {}
        if st.get("phase") == "Progressing" and st.get("message") == message and st.get("state") == "Creating":
            return cc
        if st.get("phase") == "Ready" and (st.get("observedGeneration") or 0) >= cc["metadata"].get("generation", 1):
            # Rook walks the steps again only when something asks for a reconcile (spec, nodes, an
            # operator restart); the lab re-checks on every daemon event without replaying them.
            return cc
        return self._write_condition(cc, "Progressing", "True", "ClusterProgressing", message)

    def _fail(self, cc, message, prefix="failed to create cluster: "):
        full = prefix + message
        cc = self._write_condition(cc, "Progressing", "False", "ClusterProgressing", full)
        self.event(cc, "Warning", "ReconcileFailed", 'failed to reconcile CephCluster "{0}/{1}". failed to reconcile cluster "{1}": '
                   'failed to configure local ceph cluster: {2}'.format(cc["metadata"]["namespace"], cc["metadata"]["name"], full))
        self.enqueue_after(2.0, (cc["metadata"]["namespace"], cc["metadata"]["name"]))
        raise ReconcileError(full)

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, key):
        ns, name = key
        cc = self.store.get_or_none(GROUP, "cephclusters", ns, name)
        if cc is None:
            return
        try:
            if is_deleting(cc):
                self._delete(cc)
            else:
                self._reconcile(cc)
        except ReconcileError:
            pass

    def _reconcile(self, cc):
        m = cc["metadata"]
        if FINALIZER not in (m.get("finalizers") or []):
            m.setdefault("finalizers", []).append(FINALIZER)
            cc = self.store.update(GROUP, "cephclusters", m["namespace"], m["name"], cc)
        spec = cc.get("spec") or {}
        if (spec.get("cleanupPolicy") or {}).get("confirmation") == DESTROY:
            return  # "skipping orchestration": nothing changes until the cluster is deleted
        path = (spec.get("dataDirHostPath") or "").rstrip("/") or "/"
        if path in FORBIDDEN_DIRS:
            self.operator_log("dataDirHostPath %s is not allowed" % path)  # only a log line, no status
            return
        nodes = self.store.list("", "nodes")["items"]
        mon = spec.get("mon") or {}
        mons = mon.get("count") or 3
        if not mon.get("allowMultiplePerNode") and len(nodes) < mons:
            self._fail(cc, "cannot start %d mons on %d node(s) when allowMultiplePerNode is false" % (mons, len(nodes)),
                       prefix="failed to perform validation before cluster creation: ")
        cc = self._progress(cc, "Detecting Ceph version")
        image = (spec.get("cephVersion") or {}).get("image") or ""
        version = ceph_version(image)
        if version is None or version < MIN_VERSION:
            self._fail(cc, 'the version does not meet the minimum version "19.2.0-0 squid"', prefix="failed the ceph version check: ")
        text = "%d.%d.%d-0" % version
        if version[0] not in SUPPORTED_MAJORS and not (spec.get("cephVersion") or {}).get("allowUnsupported"):
            self._fail(cc, 'allowUnsupported must be set to true to run with this version "%s"' % text,
                       prefix="failed the ceph version check: ")
        running = (cc.get("status") or {}).get("version") or {}
        health = ((cc.get("status") or {}).get("ceph") or {}).get("health")
        if running.get("image") and running["image"] != image and health != "HEALTH_OK" and not spec.get("skipUpgradeChecks"):
            # Rook cluster/version.go: an image change on an unhealthy cluster is refused
            self._fail(cc, "ceph status in namespace %s is not healthy, refusing to upgrade. Either fix the health issue or force "
                           "an update by setting skipUpgradeChecks to true in the cluster CR" % m["namespace"], prefix="")
        if running != {"image": image, "version": text}:
            st = dict(cc.get("status") or {})
            st["version"] = {"image": image, "version": text}
            cc = self._put_status(cc, st)
        cc = self._progress(cc, "Configuring Ceph Mons")
        fsid = self._cluster_secrets(cc)
        table = hosts(self.cluster)
        placement = self._placement(spec, "mon")
        assigned = self._assign_mons(cc, mons, placement)
        if assigned is None:
            return  # canaries still waiting to be scheduled
        ready_mons = 0
        for index in range(mons):
            mid = _letters(index)
            node = assigned[mid]
            state = table[node]
            holder = state.data_dirs.get(path)
            if holder not in (None, fsid):
                self._fail(cc, "failed to start ceph monitors: failed to start mon pods: failed to check mon quorum %s: failed to "
                               "wait for mon quorum: exceeded max retry count waiting for monitors to reach quorum" % mid)
            state.data_dirs[path] = fsid
            if not self._daemon(cc, "mon", mid, node, placement):
                self.rolling_health(cc, fsid, "MON_DOWN", "1/%d mons down, quorum %s" % (
                    mons, ",".join(_letters(i) for i in range(mons) if i != index)))
                return  # created or still starting: the next pod event brings us back
            ready_mons += 1
        self._endpoints(cc, mons)
        cc = self._progress(cc, "Configuring Ceph Mgr(s)")
        mgr = spec.get("mgr") or {}
        mgr_placement = self._placement(spec, "mgr")
        mgr_nodes = [n["metadata"]["name"] for n in nodes if node_fits(mgr_placement, n)]
        for index in range(mgr.get("count") or 1):
            if not mgr_nodes or (not mgr.get("allowMultiplePerNode") and index >= len(mgr_nodes)):
                self._fail(cc, 'failed to start ceph mgr: failed to wait for mgr "rook-ceph-mgr-%s" to start: gave up waiting for '
                               'deployment "rook-ceph-mgr-%s" to update' % (_letters(index), _letters(index)))
            if not self._daemon(cc, "mgr", _letters(index), mgr_nodes[index % len(mgr_nodes)], mgr_placement):
                self.rolling_health(cc, fsid, "MGR_DOWN", "no active mgr")
                return
        cc = self._progress(cc, "Configuring Ceph OSDs")
        osds = self._osds(cc, nodes, table, fsid)
        if osds is None:
            self.rolling_health(cc, fsid, "OSD_DOWN", "1 osds down")
            return
        st = dict(cc.get("status") or {})
        st["storage"] = {"deviceClasses": [{"name": "hdd"}] if osds else [], "osd": {"storeType": {"bluestore": len(osds)}}}
        cc = self._put_status(cc, st)
        if (cc.get("status") or {}).get("phase") != "Ready" or (cc["status"].get("observedGeneration") or 0) < m.get("generation", 1):
            cc = self._write_condition(cc, "Ready", "True", "ClusterCreated", "Cluster created successfully")
            self.event(cc, "Normal", "ReconcileSucceeded", 'successfully configured CephCluster "%s/%s"' % (m["namespace"], m["name"]))
        self.update_health(cc, fsid, osds, ready_mons, mons)

    def operator_log(self, message):
        log.error("%s: %s", self.cluster.name, message)

    # ------------------------------------------------------------------ pieces
    def _placement(self, spec, daemon):
        """The effective placement as a pod spec fragment (Rook pkg/apis/ceph.rook.io/v1/placement.go)."""
        placement = spec.get("placement") or {}
        common, own = placement.get("all") or {}, placement.get(daemon) or {}
        affinity = own.get("nodeAffinity") or common.get("nodeAffinity")
        out = {"tolerations": list(common.get("tolerations") or []) + list(own.get("tolerations") or [])}
        if affinity:
            out["affinity"] = {"nodeAffinity": affinity}
        return out

    def _labels(self, cc, daemon, did):
        ns = cc["metadata"]["namespace"]
        labels = {"app": f"rook-ceph-{daemon}", "rook_cluster": ns, "ceph_daemon_id": did, daemon: did,
                  "ceph_daemon_type": daemon, "app.kubernetes.io/name": f"ceph-{daemon}", "app.kubernetes.io/instance": did,
                  "app.kubernetes.io/component": "cephclusters.ceph.rook.io", "app.kubernetes.io/part-of": cc["metadata"]["name"],
                  "app.kubernetes.io/managed-by": "rook-ceph-operator", "app.kubernetes.io/created-by": "rook-ceph-operator",
                  "rook.io/operator-namespace": self.operator.namespace}
        extra = dict(((cc.get("spec") or {}).get("labels") or {}).get("all") or {})
        extra.update(((cc.get("spec") or {}).get("labels") or {}).get(daemon) or {})
        for key, value in extra.items():
            labels.setdefault(key, value)  # never over Rook's own keys (pkg/apis/ceph.rook.io/v1/labels.go)
        return labels

    def _daemon(self, cc, daemon, did, node, placement) -> bool:
        """Ensure Deployment rook-ceph-<daemon>-<id> on ``node``; True once its pod is Ready."""
        ns = cc["metadata"]["namespace"]
        name = f"rook-ceph-{daemon}-{did}"
        image = (cc["spec"].get("cephVersion") or {}).get("image")
        version = (cc.get("status") or {}).get("version", {}).get("version", "")
        dep = self.store.get_or_none("apps", "deployments", ns, name)
        labels = self._labels(cc, daemon, did)
        if dep is None:
            selector = {"app": labels["app"], "rook_cluster": ns, "ceph_daemon_id": did, daemon: did}
            pod_spec = {"nodeSelector": {"kubernetes.io/hostname": node}, "containers": [{"name": daemon, "image": image}]}
            pod_spec.update((k, v) for k, v in placement.items() if v)
            self.store.create("apps", "deployments", ns, {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": dict(labels, **{"ceph-version": version}),
                             "ownerReferences": [owner_reference(cc)]},
                "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": selector},
                         "template": {"metadata": {"labels": labels}, "spec": pod_spec}}})
            if daemon == "mon":
                self.store.create("", "services", ns, {
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": ns, "labels": {"app": "rook-ceph-mon", "mon": did, "rook_cluster": ns},
                                 "ownerReferences": [owner_reference(cc)]},
                    "spec": {"selector": selector, "ports": [{"name": "tcp-msgr1", "port": 6789, "targetPort": 6789},
                                                             {"name": "tcp-msgr2", "port": 3300, "targetPort": 3300}]}})
            return False
        containers = dep["spec"]["template"]["spec"]["containers"]
        if containers[0].get("image") != image:  # an upgrade rolls the daemon
            containers[0]["image"] = image
            dep["metadata"].setdefault("labels", {})["ceph-version"] = version
            self.store.update("apps", "deployments", ns, name, dep)
            return False
        pods = self.store.list("", "pods", ns, label_selector=f"app=rook-ceph-{daemon},ceph_daemon_id={did}")["items"]
        return any(pod_is_ready(p) and not is_deleting(p) and p["spec"]["containers"][0].get("image") == image for p in pods)

    def _assign_mons(self, cc, mons, placement) -> dict | None:
        """mon id -> node for mons a.. up to ``mons``: from the endpoints ConfigMap's mapping, new ones
        through canary Deployments; None while canaries wait to be scheduled."""
        ns = cc["metadata"]["namespace"]
        cm = self.store.get("", "configmaps", ns, "rook-ceph-mon-endpoints")
        mapping = json.loads(cm["data"].get("mapping") or "{}")
        nodes = mapping.setdefault("node", {})
        wanted = [_letters(i) for i in range(mons)]
        new = [mid for mid in wanted if mid not in nodes]
        if not new:
            return {mid: nodes[mid]["Name"] for mid in wanted}
        key = (ns, cc["metadata"]["name"])
        started = self._canaries.setdefault(cc["metadata"]["uid"], self.store.clock.time())
        for mid in new:
            self._canary(cc, mid, placement)
        pods = self.store.list("", "pods", ns, label_selector="app=rook-ceph-mon,mon_canary=true")["items"]
        placed = {p["metadata"]["labels"].get("mon"): p["spec"].get("nodeName") for p in pods
                  if (p.get("spec") or {}).get("nodeName") and not is_deleting(p)}
        if all(placed.get(mid) for mid in new):
            for mid in new:
                nodes[mid] = {"Name": placed[mid], "Hostname": placed[mid], "Address": self._node_address(placed[mid])}
            cm["data"]["mapping"] = json.dumps(mapping, sort_keys=True)
            self.store.update("", "configmaps", ns, "rook-ceph-mon-endpoints", cm)
            self._drop_canaries(cc)
            return {mid: nodes[mid]["Name"] for mid in wanted}
        waited = self.store.clock.time() - started
        if waited >= CANARY_TIMEOUT_S:
            self._drop_canaries(cc)
            self._fail(cc, "failed to start ceph monitors: failed to assign pods to mons: failed to schedule mons")
        uid = cc["metadata"]["uid"]
        if uid not in self._wakers:  # one wake-up per wait, held here (the loop keeps only weak references to tasks)
            self._wakers[uid] = asyncio.ensure_future(self._enqueue_at(started + CANARY_TIMEOUT_S, key, uid))
        return None

    async def _enqueue_at(self, when, key, uid):
        try:
            await self.store.clock.sleep_until(when)
        finally:
            self._wakers.pop(uid, None)
        self.enqueue(key)

    def _canary(self, cc, mid, placement):
        ns = cc["metadata"]["namespace"]
        name = f"rook-ceph-mon-{mid}-canary"
        if self.store.get_or_none("apps", "deployments", ns, name) is not None:
            return
        labels = {"app": "rook-ceph-mon", "mon": mid, "mon_canary": "true", "rook_cluster": ns}
        pod_spec = {"containers": [{"name": "mon", "image": (cc["spec"].get("cephVersion") or {}).get("image"),
                                    "command": ["/tmp/doesnotexist"]}]}
        pod_spec.update((k, v) for k, v in placement.items() if v)
        if not (cc["spec"].get("mon") or {}).get("allowMultiplePerNode"):
            affinity = dict(pod_spec.get("affinity") or {})
            affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "rook-ceph-mon"}}, "topologyKey": "kubernetes.io/hostname"}]}
            pod_spec["affinity"] = affinity
        self.store.create("apps", "deployments", ns, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(cc)]},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec}}})

    def _drop_canaries(self, cc):
        ns = cc["metadata"]["namespace"]
        self._canaries.pop(cc["metadata"]["uid"], None)
        for dep in self.store.list("apps", "deployments", ns, label_selector="mon_canary=true")["items"]:
            self.store.delete("apps", "deployments", ns, dep["metadata"]["name"], propagation_policy="Background")

    def _node_address(self, node_name):
        node = self.store.get_or_none("", "nodes", None, node_name) or {}
        return next((a.get("address") for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"), "")

    def _cluster_secrets(self, cc) -> str:
        ns = cc["metadata"]["namespace"]
        secret = self.store.get_or_none("", "secrets", ns, "rook-ceph-mon")
        if secret is not None:
            return base64.b64decode(secret["data"]["fsid"]).decode()
        fsid = str(uuid.uuid4())
        owner = [owner_reference(cc)]
        self.store.create("", "secrets", ns, {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/rook",
            "metadata": {"name": "rook-ceph-mon", "namespace": ns, "finalizers": [PROTECTION], "ownerReferences": owner},
            "stringData": {"fsid": fsid, "mon-secret": uuid.uuid4().hex, "ceph-username": "client.admin",
                           "ceph-secret": uuid.uuid4().hex}})
        for name in ("rook-ceph-admin-keyring", "rook-ceph-mons-keyring"):
            self.store.create("", "secrets", ns, {"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": name, "namespace": ns, "ownerReferences": owner}, "stringData": {"keyring": uuid.uuid4().hex}})
        for name in ("rook-csi-rbd-provisioner", "rook-csi-rbd-node", "rook-csi-cephfs-provisioner", "rook-csi-cephfs-node"):
            user = name.replace("rook-", "", 1)
            self.store.create("", "secrets", ns, {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/rook", "metadata": {
                "name": name, "namespace": ns, "ownerReferences": owner}, "stringData": {"userID": user, "userKey": uuid.uuid4().hex}})
        self.store.create("", "configmaps", ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "rook-ceph-mon-endpoints", "namespace": ns, "finalizers": [PROTECTION], "ownerReferences": owner},
            "data": {"data": "", "maxMonId": "-1", "mapping": "{}", "outOfQuorum": ""}})
        self.store.create("", "configmaps", ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "rook-config-override", "namespace": ns, "ownerReferences": owner}, "data": {"config": ""}})
        return fsid

    def _endpoints(self, cc, mons):
        ns = cc["metadata"]["namespace"]
        cm = self.store.get("", "configmaps", ns, "rook-ceph-mon-endpoints")
        addresses = []
        for index in range(mons):
            svc = self.store.get_or_none("", "services", ns, f"rook-ceph-mon-{_letters(index)}")
            if svc is not None:
                addresses.append("%s=%s:6789" % (_letters(index), svc["spec"].get("clusterIP")))
        data = {"data": ",".join(addresses), "maxMonId": str(mons - 1)}
        if any(cm["data"].get(k) != v for k, v in data.items()):
            cm["data"].update(data)
            self.store.update("", "configmaps", ns, "rook-ceph-mon-endpoints", cm)

    def _osds(self, cc, nodes, table, fsid):
        """One OSD per consumed device on each storage node; None while they are starting."""
        spec = cc.get("spec") or {}
        storage = spec.get("storage") or {}
        placement = self._placement(spec, "osd")
        by_host = {(n["metadata"].get("labels") or {}).get("kubernetes.io/hostname"): n for n in nodes}
        if storage.get("useAllNodes"):
            chosen = [(n, {}) for n in nodes if not (n.get("spec") or {}).get("unschedulable") and node_fits(placement, n)]
        else:
            chosen = [(by_host[e["name"]], e) for e in storage.get("nodes") or [] if e.get("name") in by_host]
        wanted = []
        for node, entry in chosen:
            state = table[node["metadata"]["name"]]
            names = [d.get("name") for d in entry.get("devices") or storage.get("devices") or []]
            pattern = entry.get("deviceFilter") or storage.get("deviceFilter")
            use_all = entry.get("useAllDevices", storage.get("useAllDevices"))
            for device in sorted(state.devices):
                if state.consumed.get(device) not in (None, fsid):
                    continue  # holds another cluster's OSD (not wiped)
                if device in names or (pattern and re.search(pattern, device)) or (use_all and not names and not pattern):
                    wanted.append((node["metadata"]["name"], device))
        ready = []
        pending = False
        for osd_id, (node, device) in enumerate(wanted):
            table[node].consumed[device] = fsid
            if self._daemon(cc, "osd", str(osd_id), node, placement):
                ready.append((node, device))
            else:
                pending = True
        return None if pending else ready

    def rolling_health(self, cc, fsid, code, message):
        """A daemon of a running cluster restarting (an upgrade rolls them one by one): Ceph reports
        HEALTH_WARN with what is down until it is back (a first deployment has no status.ceph yet)."""
        cc = self.store.get(GROUP, "cephclusters", cc["metadata"]["namespace"], cc["metadata"]["name"])
        st = dict(cc.get("status") or {})
        previous = st.get("ceph") or {}
        if not previous or previous.get("health") == "HEALTH_ERR" or code in (previous.get("details") or {}):
            return
        now = self.now()
        st["ceph"] = dict(previous, health="HEALTH_WARN", details={code: {"severity": "HEALTH_WARN", "message": message}},
                          lastChecked=now, previousHealth=previous.get("health"), lastChanged=now)
        self._put_status(cc, st)

    def update_health(self, cc, fsid=None, osds=None, ready_mons=None, mons=None):
        """status.ceph as the 60 s poller of cluster/cephstatus.go writes it (here: on every change)."""
        ns, name = cc["metadata"]["namespace"], cc["metadata"]["name"]
        if fsid is None:
            return
        details = {}
        down = DOWN_OSDS.get(self.cluster.name, set())
        up = [o for i, o in enumerate(osds or []) if str(i) not in down]
        if len(up) < len(osds or []):
            details["OSD_DOWN"] = {"severity": "HEALTH_WARN", "message": "%d osds down" % (len(osds) - len(up))}
        if len(osds or []) < 3:
            details["TOO_FEW_OSDS"] = {"severity": "HEALTH_WARN",
                                       "message": "OSD count %d < osd_pool_default_size 3" % len(osds or [])}
        if ready_mons is not None and mons and ready_mons < mons:
            details["MON_DOWN"] = {"severity": "HEALTH_WARN", "message": "%d/%d mons down" % (mons - ready_mons, mons)}
        health = "HEALTH_WARN" if details else "HEALTH_OK"
        fault = HEALTH_FAULTS.get(self.cluster.name, {}).get(ns)
        if fault:
            health, extra = fault
            details.update((code, {"severity": health, "message": text}) for code, text in extra.items())
        table = HOSTS.get(self.cluster.name, {})
        total = sum(table[node].devices[device] for node, device in (osds or []) if node in table)
        used = sum(self._rook_bytes(ns))
        cc = self.store.get(GROUP, "cephclusters", ns, name)
        st = dict(cc.get("status") or {})
        previous = st.get("ceph") or {}
        now = self.now()
        ceph = {"health": health, "details": details, "lastChecked": now, "fsid": fsid,
                "previousHealth": previous.get("previousHealth"), "lastChanged": previous.get("lastChanged"),
                "capacity": {"bytesTotal": total, "bytesUsed": used, "bytesAvailable": max(total - used, 0), "lastUpdated": now}
                if total else previous.get("capacity") or {},
                "versions": {"overall": {"ceph version %s" % st.get("version", {}).get("version", ""): len(osds or []) + (mons or 0)}}}
        if previous.get("health") and previous.get("health") != health:
            ceph["previousHealth"], ceph["lastChanged"] = previous["health"], now
        comparable = dict(ceph, lastChecked=None, capacity=dict(ceph["capacity"], lastUpdated=None) if ceph["capacity"] else {})
        before = dict(previous, lastChecked=None, capacity=dict(previous.get("capacity") or {}, lastUpdated=None)
                      if previous.get("capacity") else {})
        if comparable != before:
            st["ceph"] = ceph
            self._put_status(cc, st)

    def _rook_bytes(self, namespace):
        for pv in self.store.list("", "persistentvolumes")["items"]:
            csi = (pv.get("spec") or {}).get("csi") or {}
            if csi.get("driver", "").endswith(".csi.ceph.com") and (csi.get("volumeAttributes") or {}).get("clusterID") == namespace:
                yield _quantity((pv["spec"].get("capacity") or {}).get("storage"))

    # ------------------------------------------------------------------ deletion
    def _delete(self, cc):
        m = cc["metadata"]
        ns = m["namespace"]
        st = cc.get("status") or {}
        if st.get("phase") != "Deleting":
            cc = self._write_condition(cc, "Deleting", "True", "ClusterDeleting", "Deleting the CephCluster")
            st = cc["status"]
        found = {}
        for kind, plural in DEPENDENTS:
            names = sorted(o["metadata"]["name"] for o in self.store.list(GROUP, plural, ns)["items"])
            if names:
                found[kind] = names
        if found:
            message = 'CephCluster "%s/%s" will not be deleted until all dependents are removed: %s' % (
                ns, m["name"], ", ".join("%s: [%s]" % (k, ", ".join(v)) for k, v in sorted(found.items())))
            self._blocked(cc, "True", "ObjectHasDependents", message)
            self.event(cc, "Warning", "ReconcileFailed", message)
            return
        self._blocked(cc, "False", "ObjectHasNoDependents",
                      'CephCluster "%s/%s" has no dependent custom resources blocking deletion' % (ns, m["name"]))
        policy = ((cc.get("spec") or {}).get("cleanupPolicy") or {})
        if not policy.get("allowUninstallWithVolumes") and any(True for _ in self._rook_bytes(ns)):
            self.event(cc, "Warning", "ReconcileFailed", 'waiting for csi volume attachments in cluster "%s" to be cleaned up' % ns)
            return
        table = HOSTS.get(self.cluster.name, {})
        fsid = self._fsid(ns)
        ran = sorted(node for node, state in table.items() if fsid and fsid in state.data_dirs.values())
        if policy.get("confirmation") == DESTROY:
            for node in ran:  # Rook cluster/cleanup.go: one Job per host that ran Ceph daemons
                job = f"cluster-cleanup-job-{node}"
                if self.store.get_or_none("batch", "jobs", ns, job) is None:
                    self.store.create("batch", "jobs", ns, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
                        "name": job, "namespace": ns, "labels": {"app": "rook-ceph-cleanup", "rook-ceph-cleanup": "true"}},
                        "spec": {"template": {"metadata": {"labels": {"app": "rook-ceph-cleanup"}}, "spec": {
                            "restartPolicy": "OnFailure", "nodeSelector": {"kubernetes.io/hostname": node},
                            "containers": [{"name": "host-cleanup", "image": (cc["spec"].get("cephVersion") or {}).get("image")}]}}}})
                state = table[node]
                state.data_dirs = {p: f for p, f in state.data_dirs.items() if f != fsid}
                state.consumed = {d: f for d, f in state.consumed.items() if f != fsid}
        for plural, name in (("secrets", "rook-ceph-mon"), ("configmaps", "rook-ceph-mon-endpoints")):
            obj = self.store.get_or_none("", plural, ns, name)
            if obj and PROTECTION in (obj["metadata"].get("finalizers") or []):
                obj["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != PROTECTION]
                self.store.update("", plural, ns, name, obj)
        cc = self.store.get(GROUP, "cephclusters", ns, m["name"])
        cc["metadata"]["finalizers"] = [f for f in cc["metadata"].get("finalizers") or [] if f != FINALIZER]
        self.store.update(GROUP, "cephclusters", ns, m["name"], cc)

    def _blocked(self, cc, status, reason, message):
        st = dict(cc.get("status") or {})
        conditions = set_condition(st.get("conditions") or [], "DeletionIsBlocked", status, reason, message, self.now())
        if conditions != (st.get("conditions") or []):
            st["conditions"] = conditions
            self._put_status(cc, st)

    def _fsid(self, ns):
        secret = self.store.get_or_none("", "secrets", ns, "rook-ceph-mon")
        if secret is None:
            return None
        return base64.b64decode(secret["data"]["fsid"]).decode()


def _quantity(text) -> int:
    units = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12}
    match = re.fullmatch(r"(\d+)([KMGT]i?)?", str(text or "0"))
    if not match:
        return 0
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


def usable(store, namespace: str) -> bool:
    """Rook controller/controller_utils.go IsReadyToReconcile: a CephCluster in the namespace whose
    status.ceph.health is HEALTH_OK or HEALTH_WARN (and not being deleted with a cleanup policy)."""
    items = store.list(GROUP, "cephclusters", namespace)["items"]
    if not items:
        return False
    cc = items[0]
    if is_deleting(cc) and ((cc.get("spec") or {}).get("cleanupPolicy") or {}).get("confirmation") == DESTROY:
        return False
    return ((cc.get("status") or {}).get("ceph") or {}).get("health") in ("HEALTH_OK", "HEALTH_WARN")


def set_health(cluster, namespace: str, health: str | None, message: str | None = None, down_osds: int | None = None) -> None:
    """`fleetdr-lab rook health` / `rook osd-down`: what Ceph would report next, then a status poll."""
    faults = HEALTH_FAULTS.setdefault(cluster.name, {})
    if health in (None, "HEALTH_OK"):
        faults.pop(namespace, None)
    else:
        code = "LAB_INJECTED" if health == "HEALTH_WARN" else "LAB_INJECTED_ERR"
        faults[namespace] = (health, {code: message or f"injected {health}"})
    if down_osds is not None:
        DOWN_OSDS[cluster.name] = set(str(i) for i in range(down_osds))
    operator = OPERATORS.get(cluster.name)
    ctrl = operator.controller(CephClusterController) if operator else None
    if ctrl is None:
        raise LookupError(cluster.name)
    # The status poller (cluster/cephstatus.go) runs on its own, whatever the reconcile is doing:
    # the new health shows at once, and a reconcile waiting on it (an upgrade check) sees it.
    for cc in cluster.store.list(GROUP, "cephclusters", namespace)["items"]:
        ceph = dict((cc.get("status") or {}).get("ceph") or {})
        if not ceph:
            continue
        details = dict((code, d) for code, d in (ceph.get("details") or {}).items() if not code.startswith("LAB_INJECTED"))
        if health not in (None, "HEALTH_OK"):
            details.update((code, {"severity": health, "message": text}) for code, text in faults[namespace][1].items())
        new = health if health not in (None, "HEALTH_OK") else ("HEALTH_WARN" if details else "HEALTH_OK")
        if new != ceph.get("health"):
            ceph["previousHealth"], ceph["lastChanged"] = ceph.get("health"), ctrl.now()
        ceph.update(health=new, details=details, lastChecked=ctrl.now())
        cc["status"]["ceph"] = ceph
        cluster.store.update(GROUP, "cephclusters", namespace, cc["metadata"]["name"], cc, subresource="status")
    ctrl.poke(namespace)
