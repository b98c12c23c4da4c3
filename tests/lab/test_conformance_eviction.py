"""NoExecute taints evict what runs on the node (kube-controller-manager's TaintEvictionController,
pkg/controller/tainteviction): a pod that does not tolerate the taint goes at once, one that tolerates
it for tolerationSeconds goes when they have passed, one that tolerates it without a limit stays;
each evicted pod is first marked DisruptionTarget and gets a TaintManagerEviction event. NoSchedule
taints evict nothing. A private lab of one cluster with two nodes: tainting a node would disturb the
shared one."""
from __future__ import annotations

import time

from kubernetes import client

from helpers import gone, wait_for

NS = "default"


def _pod(name, node, tolerations=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "tolerations": tolerations or [],
                     "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}


def _running(core, name):
    return (core.read_namespaced_pod(name, NS).status.phase or "") == "Running"


def test_no_execute_taints_evict_untolerated_pods_now_and_tolerated_ones_after_their_seconds(lab_factory):
    lab = lab_factory(clusters=1, nodes=2)
    api = lab.api("c1")
    core = client.CoreV1Api(api)
    node = sorted(n.metadata.name for n in core.list_node().items)[0]
    forever = [{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}]
    briefly = [{"key": "maintenance", "operator": "Equal", "value": "now", "effect": "NoExecute", "tolerationSeconds": 2}]
    for name, tolerations in (("plain", None), ("brief", briefly), ("stays", forever)):
        core.create_namespaced_pod(NS, _pod(name, node, tolerations))
    for name in ("plain", "brief", "stays"):
        wait_for(lambda name=name: _running(core, name), name + " running")

    core.patch_node(node, {"spec": {"taints": [{"key": "other", "value": "x", "effect": "NoSchedule"}]}})
    time.sleep(1)
    assert all(_running(core, name) for name in ("plain", "brief", "stays"))  # NoSchedule evicts nothing

    tainted = time.monotonic()
    core.patch_node(node, {"spec": {"taints": [{"key": "maintenance", "value": "now", "effect": "NoExecute"}]}})
    wait_for(lambda: gone(lambda: core.read_namespaced_pod("plain", NS)), "the untolerating pod evicted", timeout=10)
    assert not gone(lambda: core.read_namespaced_pod("brief", NS))  # tolerated for 2 s
    events = [e for e in core.list_namespaced_event(NS).items if e.involved_object.name == "plain"]
    assert [(e.type, e.reason, e.message, e.source.component) for e in events if e.reason == "TaintManagerEviction"] == [
        ("Normal", "TaintManagerEviction", "Marking for deletion Pod default/plain", "taint-eviction-controller")]
    wait_for(lambda: gone(lambda: core.read_namespaced_pod("brief", NS)), "the briefly tolerating pod evicted", timeout=10)
    assert time.monotonic() - tainted >= 2
    time.sleep(1)
    stays = core.read_namespaced_pod("stays", NS)
    assert stays.metadata.deletion_timestamp is None and stays.status.phase == "Running"


def test_an_evicted_pod_is_marked_disruption_target_before_it_goes(lab_factory):
    lab = lab_factory(clusters=1, nodes=1)
    core = client.CoreV1Api(lab.api("c1"))
    node = core.list_node().items[0].metadata.name
    # a finalizer keeps the evicted pod readable after the delete
    body = _pod("held", node)
    body["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_pod(NS, body)
    wait_for(lambda: _running(core, "held"), "held running")
    core.patch_node(node, {"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}})
    pod = wait_for(lambda: (lambda p: p if p.metadata.deletion_timestamp else None)(core.read_namespaced_pod("held", NS)),
                   "held marked for deletion", timeout=10)
    condition = next(c for c in pod.status.conditions if c.type == "DisruptionTarget")
    assert (condition.status, condition.reason, condition.message) == (
        "True", "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint")
    core.patch_namespaced_pod("held", NS, {"metadata": {"finalizers": None}})
