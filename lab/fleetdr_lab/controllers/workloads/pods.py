"""The scheduler and the kubelet of an emulated cluster: binding pods to nodes, pod IPs, init
containers (with gates that in-cluster software decides) and container states."""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import ipaddress
import random
import time
from typing import Callable

from ..base import controller_ref, is_deleting, meta, pod_is_terminal, rfc3339, set_condition, timers, log
from .kubelet import PodRun, program_of
from .podspec import (INIT_POLL_SECONDS, JOB_RUN_DELAY, POD_START_DELAY, anti_affinity_excludes, image_id, node_fits,
                      node_is_ready, normalize_image, pod_claims, qos_class, tolerates)
from .reconciler import Reconciler


# Init containers whose completion in-cluster software decides: name -> fn(store, pod) -> bool
# (True: the container has finished). Registered by that software (Velero's restore-wait).
INIT_CONTAINER_GATES: dict[str, Callable[[object, dict], bool]] = {}


def register_init_container_gate(name: str, done: Callable[[object, dict], bool]) -> None:
    """Let the kubelet emulation keep pods in Init while done(store, pod) is False for their
    init container `name`."""
    INIT_CONTAINER_GATES[name] = done


class PodReconciler(Reconciler):
    """Scheduling and the kubelet, per pod."""

    def __init__(self, controller):
        super().__init__(controller)
        self._unschedulable: set[tuple] = set()     # pod keys waiting for a fitting node
        self._kubelet_timers: dict[tuple, object] = {}
        self._next_ip: dict[str, int] = {}
        self._node_pods: dict[str, set] = {}
        self._node_ips: dict[str, dict[str, tuple]] = {}
        self._taint_seen: dict[tuple, float] = {}  # pod key -> when a NoExecute taint it tolerates for a while was first seen
        self._runs: dict[tuple, PodRun] = {}       # started pods: their containers (kubelet.py)
        self._confirm: dict[tuple, tuple] = {}     # pod key -> (lab deadline, timer): deletions waiting out the grace period

    def forget(self, key):
        """A pod was deleted: stop waiting for a node and cancel its kubelet timer."""
        self._unschedulable.discard(key)
        self._runs.pop(key, None)
        for timer in (self._kubelet_timers.pop(key, None), (self._confirm.pop(key, None) or (None, None))[1]):
            if timer:
                timer.cancel()

    def waiting_for_a_node(self):
        return sorted(self._unschedulable)

    def track(self, etype, pod):
        """Which pods (and pod IPs) each node has, from the pod stream: the scheduler's spread
        and the IPAM's free addresses without listing every pod of the cluster."""
        m = meta(pod)
        key = ("Pod", m.get("namespace"), m.get("name"))
        node = (pod.get("spec") or {}).get("nodeName")
        ip = (pod.get("status") or {}).get("podIP")
        gone = etype == "DELETED" or pod_is_terminal(pod)
        # events may be older than our own bookkeeping (bound/allocated since): an event without
        # a node or IP does not undo a reservation; only the pod's end or a different value does
        for n, keys in list(self._node_pods.items()):
            if key in keys and (gone or (node and n != node)):
                keys.discard(key)
        for n, ips in self._node_ips.items():
            for a, k in list(ips.items()):
                if k == key and (gone or (node and n != node) or (ip and a != ip)):
                    del ips[a]
        if gone or not node:
            return
        self._node_pods.setdefault(node, set()).add(key)
        if ip and not (pod.get("spec") or {}).get("hostNetwork"):
            self._node_ips.setdefault(node, {})[ip] = key

    def sync(self, ns, name):
        key = ("Pod", ns, name)
        pod = self.store.get_or_none("", "pods", ns, name)
        if not pod:
            return
        if is_deleting(pod):
            self._stop_pod(pod)
            return
        run = self._runs.get(key)
        if run is not None and run.uid != meta(pod).get("uid"):  # a new pod of the same name
            self.forget(key)
        if pod_is_terminal(pod):
            return
        spec = pod.get("spec") or {}
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if not spec.get("nodeName"):
            self._schedule(pod)
            return
        self._unschedulable.discard(key)
        if self._evicted_for_taints(pod):
            return
        if key in self._kubelet_timers or key in self._runs:
            return
        if phase == "Pending":
            self._kubelet_timers[key] = timers().call_later(
                random.uniform(*POD_START_DELAY), self._kubelet_start, ns, name, meta(pod)["uid"])
        elif phase == "Running" and (controller_ref(pod) or {}).get("kind") == "Job":
            self._kubelet_timers[key] = timers().call_later(
                random.uniform(*JOB_RUN_DELAY), self._kubelet_finish, ns, name, meta(pod)["uid"])

    def pods_on(self, node_name):
        return sorted(self._node_pods.get(node_name, ()))

    def _evicted_for_taints(self, pod) -> bool:
        """kube-controller-manager's TaintEvictionController (pkg/controller/tainteviction): a pod on a
        node with a NoExecute taint it does not tolerate is deleted now, one that tolerates it for
        tolerationSeconds when they have passed (counted from when the lab saw the taint); it is first
        marked with the DisruptionTarget condition and a TaintManagerEviction event."""
        m = meta(pod)
        key = ("Pod", m["namespace"], m["name"])
        taints = self.controller.no_execute.get(pod["spec"]["nodeName"])
        if not taints:
            self._taint_seen.pop(key, None)
            return False
        tolerations = [t for t in pod["spec"].get("tolerations") or [] if t.get("effect") in (None, "", "NoExecute")]
        wait = 0.0 if any(not tolerates(tolerations, t) for t in taints) else min(
            (min((tol.get("tolerationSeconds") if tol.get("tolerationSeconds") is not None else float("inf"))
                 for tol in tolerations if tolerates([tol], t)) for t in taints), default=float("inf"))
        if wait == float("inf"):
            self._taint_seen.pop(key, None)
            return False
        seen = self._taint_seen.setdefault(key, time.monotonic())
        left = seen + max(0.0, wait) - time.monotonic()
        if left > 0:
            timers().call_later(left, self.controller.enqueue, key)
            return False
        self._taint_seen.pop(key, None)
        status = copy.deepcopy(pod.get("status") or {})
        status["conditions"] = set_condition(status.get("conditions"), "DisruptionTarget", "True", "DeletionByTaintManager",
                                             "Taint manager: deleting due to NoExecute taint", self.now())
        pod = self._write_status("", "pods", pod, status)
        self.controller.event(pod, "Normal", "TaintManagerEviction", "Marking for deletion Pod %s/%s" % (m["namespace"], m["name"]),
                              source="taint-eviction-controller")
        self._delete("", "pods", pod)
        return True

    def _stop_pod(self, pod):
        """A pod being deleted: containers stop, then the kubelet confirms (grace period 0).

        The kubelet sends SIGTERM and waits up to the grace period for the containers to exit
        (pkg/kubelet/kuberuntime/kuberuntime_container.go killContainer): ordinary commands exit at
        once; a container that ignores SIGTERM (`trap '' TERM`) is killed when deletionTimestamp has
        passed in lab time, and only then is the pod removed."""
        m = meta(pod)
        if m.get("finalizers"):
            return
        key = ("Pod", m["namespace"], m["name"])
        t = self._kubelet_timers.pop(key, None)
        if t:
            t.cancel()
        run = self._runs.get(key)
        if run is not None and run.uid == m.get("uid"):
            ignores = run.ignores_term()
        else:  # not started by this kubelet's runtime (e.g. before the lab knew commands): read the spec
            ignores = (pod.get("status") or {}).get("phase") == "Running" and any(
                program_of(c).ignores_term for c in (pod.get("spec") or {}).get("containers") or [])
        if ignores and m.get("deletionTimestamp"):
            deadline = dt.datetime.fromisoformat(m["deletionTimestamp"].replace("Z", "+00:00")).timestamp()
            if self._lab_time() < deadline:
                current = self._confirm.get(key)
                if current and current[0] == deadline:
                    return
                if current:
                    current[1].cancel()
                self._confirm[key] = (deadline, self._lab_call_at(deadline, self._grace_over, m["namespace"], m["name"], m.get("uid")))
                return
        current = self._confirm.pop(key, None)
        if current:
            current[1].cancel()
        self._runs.pop(key, None)
        self._delete("", "pods", pod, grace_period_seconds=0)

    def _grace_over(self, ns, name, uid):
        self._confirm.pop(("Pod", ns, name), None)
        pod = self.store.get_or_none("", "pods", ns, name)
        if pod and meta(pod).get("uid") == uid and is_deleting(pod):
            self._stop_pod(pod)

    # -- lab clock -----------------------------------------------------------------------------
    def _lab_time(self) -> float:
        clock = self.store.clock
        return clock.time() if hasattr(clock, "time") else clock.now().timestamp()

    def _lab_call_at(self, when: float, fn, *args):
        clock = self.store.clock
        if hasattr(clock, "call_at"):
            return clock.call_at(when, fn, *args)
        return timers().call_later(max(0.0, when - self._lab_time()), fn, *args)

    @staticmethod
    def _ts(t: float) -> str:
        return rfc3339(dt.datetime.fromtimestamp(t, dt.timezone.utc))

    def _schedule(self, pod):
        m = meta(pod)
        ns, name = m["namespace"], m["name"]
        key = ("Pod", ns, name)
        spec = pod.get("spec") or {}
        nodes = self.store.list("", "nodes")["items"]
        total = len(nodes)
        tail = f" preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
        for claim in pod_claims(pod):
            pvc = self.store.get_or_none("", "persistentvolumeclaims", ns, claim)
            if pvc is None:
                return self._unschedulable_status(pod, f'0/{total} nodes are available: '
                                                  f'persistentvolumeclaim "{claim}" not found.{tail}')
            if is_deleting(pvc):
                return self._unschedulable_status(pod, f'0/{total} nodes are available: '
                                                  f'persistentvolumeclaim "{claim}" is being deleted.{tail}')
            if (pvc.get("status") or {}).get("phase") != "Bound":
                return self._unschedulable_status(
                    pod, f"0/{total} nodes are available: pod has unbound immediate "
                         f"PersistentVolumeClaims.{tail}")
        fitting = [n for n in nodes if node_is_ready(n)
                   and not (n.get("spec") or {}).get("unschedulable") and node_fits(spec, n)]
        # every pod of the cluster is read only for a pod that asks for anti-affinity
        wants_apart = ((spec.get("affinity") or {}).get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        excluded = anti_affinity_excludes(pod, fitting, self.store.list("", "pods")["items"]) if fitting and wants_apart else set()
        if len(excluded) == len(fitting):
            self._unschedulable.add(key)
            # kube-scheduler lists each reason with its node count, sorted (framework.Diagnosis)
            reasons = [f"{total - len(fitting)} node(s) didn't match Pod's node affinity/selector"] if total > len(fitting) else []
            reasons += [f"{len(excluded)} node(s) didn't match pod anti-affinity rules"] if excluded else []
            return self._unschedulable_status(pod, f"0/{total} nodes are available: {', '.join(sorted(reasons))}.{tail}")
        fitting = [n for n in fitting if meta(n)["name"] not in excluded]
        load = {meta(n)["name"]: len(self._node_pods.get(meta(n)["name"], ())) for n in fitting}
        node_name = min(sorted(load), key=lambda n: load[n])
        self._node_pods.setdefault(node_name, set()).add(key)
        self._unschedulable.discard(key)
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name, "namespace": ns, "uid": m.get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}
        self.store.create("", "pods", ns, binding, subresource="binding")
        pod = self.store.get("", "pods", ns, name)
        status = copy.deepcopy(pod.get("status") or {})
        status["phase"] = "Pending"
        status["conditions"] = set_condition(status.get("conditions"), "PodScheduled", "True",
                                             now=self.now())
        for c in status["conditions"]:
            if c["type"] == "PodScheduled":
                c.pop("reason", None)
                c.pop("message", None)
                c.setdefault("lastProbeTime", None)
        status["qosClass"] = qos_class(spec)
        self._write_status("", "pods", pod, status)

    def _unschedulable_status(self, pod, message):
        status = copy.deepcopy(pod.get("status") or {})
        status["phase"] = "Pending"
        status["conditions"] = set_condition(status.get("conditions"), "PodScheduled", "False",
                                             "Unschedulable", message, self.now())
        for c in status["conditions"]:
            c.setdefault("lastProbeTime", None)
        status["qosClass"] = qos_class(pod.get("spec") or {})
        self._write_status("", "pods", pod, status)

    def _node_addresses(self, node_name):
        nodes = sorted(meta(n)["name"] for n in self.store.list("", "nodes")["items"])
        index = nodes.index(node_name) if node_name in nodes else len(nodes)
        node = self.store.get_or_none("", "nodes", None, node_name) or {}
        host_ip = next((a.get("address") for a in (node.get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"), None) or f"172.18.0.{index + 2}"
        cidr = (node.get("spec") or {}).get("podCIDR") or f"10.244.{index}.0/24"
        return host_ip, ipaddress.ip_network(cidr, strict=False)

    def _allocate_pod_ip(self, node_name, network, key) -> str:
        used = self._node_ips.setdefault(node_name, {})
        hosts = network.num_addresses - 2
        start = self._next_ip.get(node_name, 1)
        for i in range(hosts):
            offset = (start + i - 1) % hosts + 1   # host-local IPAM: next free after the last one
            if offset == 1:  # .1 is the node's bridge/gateway
                continue
            ip = str(network.network_address + offset)
            if ip not in used:
                self._next_ip[node_name] = offset + 1
                used[ip] = key
                return ip
        raise RuntimeError(f"pod CIDR {network} of node {node_name} is exhausted")

    def _kubelet_start(self, ns, name, uid):
        key = ("Pod", ns, name)
        self._kubelet_timers.pop(key, None)
        pod = self.store.get_or_none("", "pods", ns, name)
        if not pod or meta(pod).get("uid") != uid or is_deleting(pod) or pod_is_terminal(pod):
            return
        spec = pod.get("spec") or {}
        node_name = spec.get("nodeName")
        if not node_name or not self.store.get_or_none("", "nodes", None, node_name):
            return  # bound to a node that does not exist: stays Pending, as on a real cluster
        now = self.now()
        host_ip, network = self._node_addresses(node_name)
        status = copy.deepcopy(pod.get("status") or {})
        pod_ip = host_ip if spec.get("hostNetwork") else (status.get("podIP") or self._allocate_pod_ip(node_name, network, key))
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        blocking = self._blocking_init_container(pod)
        if blocking:
            # an init container that has not exited yet: the pod stays in Init, re-checked the
            # way the container itself polls (only while such a pod exists)
            self._init_status(pod, status, blocking, host_ip, pod_ip, now, order)
            self._kubelet_timers[key] = timers().call_later(
                INIT_POLL_SECONDS, self._kubelet_start, ns, name, uid)
            return
        status.update({
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": status.get("startTime") or now,
            "qosClass": qos_class(spec)})
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [
                self._container_status(c, now, terminated=True) for c in spec["initContainers"]]
        cluster = getattr(self.controller, "cluster", None)
        run = PodRun(pod, getattr(cluster, "name", None), (controller_ref(pod) or {}).get("kind") == "Job")
        self._runs[key] = run
        run.begin(self._lab_time())
        self._publish(key, pod, run, status)

    def _kubelet_step(self, ns, name, uid):
        """A container's transition is due (lab clock): apply it and publish the pod's status."""
        key = ("Pod", ns, name)
        self._kubelet_timers.pop(key, None)
        run = self._runs.get(key)
        pod = self.store.get_or_none("", "pods", ns, name)
        if run is None or run.uid != uid or not pod or meta(pod).get("uid") != uid or is_deleting(pod) \
                or pod_is_terminal(pod):
            return
        run.run_until(self._lab_time())
        self._publish(key, pod, run, copy.deepcopy(pod.get("status") or {}))

    def _publish(self, key, pod, run: PodRun, status: dict):
        """Write the pod status the containers make (kubelet status manager) and wait for the next
        transition on the lab clock."""
        now = self.now()
        phase = run.phase()
        terminal = phase in ("Succeeded", "Failed")
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        conds = set_condition(status.get("conditions") or [], "PodReadyToStartContainers",
                              "False" if terminal else "True", now=now)
        conds = set_condition(conds, "Initialized", "True", now=now)
        unready = run.unready()
        for ctype in ("Ready", "ContainersReady"):
            if not unready:
                conds = set_condition(conds, ctype, "True", now=now)
            elif phase == "Succeeded":
                conds = set_condition(conds, ctype, "False", "PodCompleted", now=now)
            else:  # pkg/kubelet/status/generate.go
                conds = set_condition(conds, ctype, "False", "ContainersNotReady",
                                      f"containers with unready status: [{' '.join(unready)}]", now)
        conds = set_condition(conds, "PodScheduled", "True", now=now)
        conds.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else 99)
        for c in conds:
            c.setdefault("lastProbeTime", None)
            if c.get("status") == "True" or c.get("type") == "PodReadyToStartContainers":
                c.pop("reason", None)
                c.pop("message", None)
            elif c.get("reason") == "PodCompleted":
                c.pop("message", None)
        status.update({"phase": phase, "conditions": conds, "containerStatuses": run.container_statuses(self._ts)})
        pod = self._write_status("", "pods", pod, status)
        events, run.events = run.events[-20:], []
        for etype, reason, message in events:
            self.controller.event(pod, etype, reason, message, source="kubelet")
        if terminal:
            self._runs.pop(key, None)
            return
        when = run.next_at()
        if when is not None:
            m = meta(pod)
            self._kubelet_timers[key] = self._lab_call_at(when, self._kubelet_step, m["namespace"], m["name"], m.get("uid"))

    def _blocking_init_container(self, pod) -> str | None:
        """Name of an init container that would still be running, else None.

        Init containers with a registered gate (Velero's `restore-wait`, velero-restore-helper,
        exits only when every restored volume of the pod is done) run until the gate says done;
        the others finish at once."""
        for c in (pod.get("spec") or {}).get("initContainers") or []:
            done = INIT_CONTAINER_GATES.get(c.get("name"))
            if done is not None:
                try:
                    return None if done(self.store, pod) else c["name"]
                except Exception:  # its types not served (CRDs removed): nothing to wait for
                    log.debug("%s check failed", c.get("name"), exc_info=True)
                    return None
        return None

    def _init_status(self, pod, status, blocking, host_ip, pod_ip, now, order):
        spec = pod.get("spec") or {}
        inits = spec.get("initContainers") or []
        conds = status.get("conditions") or []
        pending = [c.get("name") for c in spec.get("containers") or []]
        conds = set_condition(conds, "PodReadyToStartContainers", "True", now=now)
        conds = set_condition(conds, "Initialized", "False", "ContainersNotInitialized",
                              f"containers with incomplete status: [{blocking}]", now)
        conds = set_condition(conds, "Ready", "False", "ContainersNotReady",
                              f"containers with unready status: [{' '.join(pending)}]", now)
        conds = set_condition(conds, "ContainersReady", "False", "ContainersNotReady",
                              f"containers with unready status: [{' '.join(pending)}]", now)
        conds = set_condition(conds, "PodScheduled", "True", now=now)
        conds.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else 99)
        for c in conds:
            c.setdefault("lastProbeTime", None)
        init_statuses = []
        reached = False
        for c in inits:
            if c.get("name") == blocking:
                reached = True
                cs = self._container_status(c, now)
                cs["ready"] = False
                init_statuses.append(cs)
            elif not reached:
                init_statuses.append(self._container_status(c, now, terminated=True))
            else:
                init_statuses.append(self._waiting_status(c, "PodInitializing"))
        status.update({
            "phase": "Pending", "conditions": conds, "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
            "startTime": status.get("startTime") or now, "qosClass": qos_class(spec),
            "initContainerStatuses": init_statuses,
            "containerStatuses": [self._waiting_status(c, "PodInitializing")
                                  for c in spec.get("containers") or []]})
        old = pod.get("status") or {}
        # keep the running init container's identity stable across re-checks
        if [c.get("name") for c in old.get("initContainerStatuses") or []] == \
                [c.get("name") for c in init_statuses] and old.get("phase") == "Pending" and \
                (next((c for c in old.get("conditions") or [] if c.get("type") == "Initialized"),
                      {}).get("status") == "False"):
            return
        self._write_status("", "pods", pod, status)

    @staticmethod
    def _waiting_status(container, reason):
        return {"name": container.get("name"), "image": normalize_image(container.get("image", "")),
                "imageID": "", "ready": False, "started": False, "restartCount": 0,
                "lastState": {}, "state": {"waiting": {"reason": reason}}}

    def _kubelet_finish(self, ns, name, uid):
        """A Job's pod runs to completion (exit code 0)."""
        self._kubelet_timers.pop(("Pod", ns, name), None)
        pod = self.store.get_or_none("", "pods", ns, name)
        if not pod or meta(pod).get("uid") != uid or is_deleting(pod) or pod_is_terminal(pod):
            return
        now = self.now()
        status = copy.deepcopy(pod.get("status") or {})
        conds = status.get("conditions") or []
        conds = set_condition(conds, "PodReadyToStartContainers", "False", now=now)
        conds = set_condition(conds, "Ready", "False", "PodCompleted", now=now)
        conds = set_condition(conds, "ContainersReady", "False", "PodCompleted", now=now)
        status["conditions"] = conds
        status["phase"] = "Succeeded"
        status["containerStatuses"] = [
            self._container_status(c, now, terminated=True,
                                   started_at=self._started_at(status, c.get("name")) or now)
            for c in (pod.get("spec") or {}).get("containers") or []]
        for cs in status["containerStatuses"]:
            cs["ready"] = False
        self._write_status("", "pods", pod, status)

    @staticmethod
    def _started_at(status, cname):
        for cs in status.get("containerStatuses") or []:
            if cs.get("name") == cname:
                return ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        return None

    @staticmethod
    def _container_status(container, now, terminated=False, started_at=None):
        image = container.get("image", "")
        cid = hashlib.sha256(f"{container.get('name')}{now}{random.random()}".encode()).hexdigest()
        cs = {"name": container.get("name"), "image": normalize_image(image),
              "imageID": image_id(image), "containerID": f"containerd://{cid}",
              "restartCount": 0, "lastState": {}}
        if terminated:
            cs.update({"ready": True, "started": False, "state": {"terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": started_at or now,
                "finishedAt": now, "containerID": f"containerd://{cid}"}}})
        else:
            cs.update({"ready": True, "started": True, "state": {"running": {"startedAt": now}}})
        return cs
