"""Workload controllers of the lab, driven through the kubernetes client like a user would:
Deployment -> ReplicaSet -> Pods, StatefulSet, DaemonSet, Job, bare pods, scheduling."""
from __future__ import annotations

import ipaddress
import threading

from kubernetes import watch
from kubernetes.client.rest import ApiException

from helpers import Apis, cond, delete_namespace, deployment, deployment_ready, gone, make_namespace, pvc, unique, wait_for


# ---------------------------------------------------------------------- Deployment
def test_deployment_creates_replicaset_and_running_ready_pods(apis, ns):
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    d = wait_for(lambda: deployment_ready(apis.apps, ns, "web", 2), "deployment web ready")

    rs_list = apis.apps.list_namespaced_replica_set(ns).items
    assert len(rs_list) == 1
    rs = rs_list[0]
    pth = rs.metadata.labels["pod-template-hash"]
    assert rs.metadata.name == f"web-{pth}"
    assert rs.spec.selector.match_labels == {"app": "web", "pod-template-hash": pth}
    ref = rs.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller, ref.block_owner_deletion) == \
        ("Deployment", "web", d.metadata.uid, True, True)
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"

    available = cond(d, "Available")
    progressing = cond(d, "Progressing")
    assert (available.status, available.reason) == ("True", "MinimumReplicasAvailable")
    assert (progressing.status, progressing.reason) == ("True", "NewReplicaSetAvailable")
    assert progressing.message == f'ReplicaSet "{rs.metadata.name}" has successfully progressed.'

    pods = apis.core.list_namespaced_pod(ns).items
    assert len(pods) == 2
    for pod in pods:
        assert pod.metadata.name.startswith(f"{rs.metadata.name}-")
        assert len(pod.metadata.name) == len(rs.metadata.name) + 6
        assert pod.metadata.labels["pod-template-hash"] == pth
        pref = pod.metadata.owner_references[0]
        assert (pref.kind, pref.uid, pref.controller) == ("ReplicaSet", rs.metadata.uid, True)
        assert pod.spec.node_name == "c1-node-1"
        assert pod.status.phase == "Running"
        assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network("10.244.0.0/16")
        assert pod.status.host_ip and pod.status.start_time
        types = {c.type: c.status for c in pod.status.conditions}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            assert types[t] == "True"
        (cs,) = pod.status.container_statuses
        assert cs.ready and cs.started and cs.restart_count == 0
        assert cs.state.running.started_at is not None
        assert cs.image_id and cs.container_id.startswith("containerd://")
    assert len({p.status.pod_ip for p in pods}) == 2


def test_template_change_rolls_out_a_new_replicaset(apis, ns):
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    wait_for(lambda: deployment_ready(apis.apps, ns, "web", 2), "first rollout")
    old_rs = apis.apps.list_namespaced_replica_set(ns).items[0]
    apis.apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "nginx:1.28"}]}}}})

    def rolled():
        d = deployment_ready(apis.apps, ns, "web", 2)
        pods = apis.core.list_namespaced_pod(ns).items
        return d and len(pods) == 2 and all(
            p.spec.containers[0].image == "nginx:1.28" and p.status.phase == "Running"
            for p in pods) and d
    d = wait_for(rolled, "rollout of nginx:1.28")
    rs_by_name = {rs.metadata.name: rs for rs in apis.apps.list_namespaced_replica_set(ns).items}
    assert len(rs_by_name) == 2
    assert rs_by_name[old_rs.metadata.name].spec.replicas == 0
    (new_rs,) = [rs for n, rs in rs_by_name.items() if n != old_rs.metadata.name]
    assert new_rs.spec.replicas == 2
    assert new_rs.metadata.labels["pod-template-hash"] != old_rs.metadata.labels["pod-template-hash"]
    assert new_rs.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert cond(d, "Available").status == "True"


def test_scale_to_zero_leaves_no_pods_and_back(apis, ns):
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=1))
    wait_for(lambda: deployment_ready(apis.apps, ns, "web", 1), "ready")
    apis.apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 0}})
    wait_for(lambda: not apis.core.list_namespaced_pod(ns).items, "pods gone at 0 replicas")
    d = wait_for(lambda: deployment_ready(apis.apps, ns, "web", 0), "status at 0")
    assert not d.status.ready_replicas
    apis.apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
    wait_for(lambda: deployment_ready(apis.apps, ns, "web", 3), "scaled to 3")
    assert len(apis.core.list_namespaced_pod(ns).items) == 3


def test_paused_deployment_does_not_roll_out(apis, ns):
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=1))
    wait_for(lambda: deployment_ready(apis.apps, ns, "web", 1), "ready")
    apis.apps.patch_namespaced_deployment("web", ns, {"spec": {"paused": True}})
    apis.apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "nginx:1.28"}]}}}})
    d = wait_for(lambda: (lambda d: cond(d, "Progressing").reason == "DeploymentPaused" and d)(
        apis.apps.read_namespaced_deployment("web", ns)), "Progressing=DeploymentPaused")
    assert cond(d, "Progressing").status == "Unknown"
    assert len(apis.apps.list_namespaced_replica_set(ns).items) == 1
    apis.apps.patch_namespaced_deployment("web", ns, {"spec": {"paused": False}})
    wait_for(lambda: len(apis.apps.list_namespaced_replica_set(ns).items) == 2
             and deployment_ready(apis.apps, ns, "web", 1), "rollout after resume")


def test_replicaset_replaces_a_deleted_pod(apis, ns):
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    wait_for(lambda: deployment_ready(apis.apps, ns, "web", 2), "ready")
    victim = apis.core.list_namespaced_pod(ns).items[0].metadata.name
    apis.core.delete_namespaced_pod(victim, ns)
    wait_for(lambda: (lambda pods: len(pods) == 2 and victim not in
                      [p.metadata.name for p in pods] and
                      all(p.status.phase == "Running" for p in pods))(
        apis.core.list_namespaced_pod(ns).items), "replacement pod")


# ---------------------------------------------------------------------- StatefulSet
def _statefulset(name, replicas, policy="OrderedReady"):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": policy,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "containers": [{"name": "db", "image": "postgres:16",
                                         "volumeMounts": [{"name": "data",
                                                           "mountPath": "/var/lib/data"}]}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}]}}


def test_statefulset_creates_ordered_pods_and_claims(lab, apis, ns):
    events = []
    w = watch.Watch()
    ready_seen = threading.Event()

    start_rv = apis.core.list_namespaced_pod(ns).metadata.resource_version

    def record():
        for ev in w.stream(apis.core.list_namespaced_pod, ns, resource_version=start_rv,
                           timeout_seconds=60):
            pod = ev["object"]
            ready = bool(pod.status and pod.status.conditions and
                         any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions))
            events.append((ev["type"], pod.metadata.name, ready))
            if ev["type"] == "MODIFIED" and pod.metadata.name == "db-2" and ready:
                ready_seen.set()
                w.stop()
    t = threading.Thread(target=record, daemon=True)
    t.start()
    apis.apps.create_namespaced_stateful_set(ns, _statefulset("db", 3))
    assert ready_seen.wait(30), f"db-2 never became Ready: {events}"
    w.stop()
    t.join(5)

    # OrderedReady: db-<n> is created only after db-<n-1> was reported Ready
    for n in (1, 2):
        created_at = next(i for i, e in enumerate(events) if e[:2] == ("ADDED", f"db-{n}"))
        assert any(e[1] == f"db-{n - 1}" and e[2] for e in events[:created_at]), events

    sts = wait_for(lambda: (lambda s: s.status.ready_replicas == 3 and s)(
        apis.apps.read_namespaced_stateful_set("db", ns)), "sts status")
    assert (sts.status.replicas, sts.status.current_replicas, sts.status.updated_replicas,
            sts.status.available_replicas) == (3, 3, 3, 3)
    assert sts.status.observed_generation == sts.metadata.generation
    assert sts.status.update_revision.startswith("db-")
    for n in range(3):
        pod = apis.core.read_namespaced_pod(f"db-{n}", ns)
        assert pod.spec.hostname == f"db-{n}" and pod.spec.subdomain == "db"
        assert pod.metadata.labels["statefulset.kubernetes.io/pod-name"] == f"db-{n}"
        assert pod.metadata.labels["controller-revision-hash"] == sts.status.update_revision
        claim = apis.core.read_namespaced_persistent_volume_claim(f"data-db-{n}", ns)
        assert claim.status.phase == "Bound"
        assert claim.metadata.labels["app"] == "db"
        vol = next(v for v in pod.spec.volumes if v.name == "data")
        assert vol.persistent_volume_claim.claim_name == f"data-db-{n}"

    # scale down removes the highest ordinal; the claims stay (as real)
    apis.apps.patch_namespaced_stateful_set_scale("db", ns, {"spec": {"replicas": 1}})
    wait_for(lambda: sorted(p.metadata.name for p in apis.core.list_namespaced_pod(ns).items)
             == ["db-0"], "scale down to db-0")
    apis.apps.delete_namespaced_stateful_set("db", ns)
    wait_for(lambda: not apis.core.list_namespaced_pod(ns).items, "sts pods deleted")
    claims = sorted(c.metadata.name for c in
                    apis.core.list_namespaced_persistent_volume_claim(ns).items)
    assert claims == ["data-db-0", "data-db-1", "data-db-2"]


# ---------------------------------------------------------------------- DaemonSet
def _daemonset(name, node_selector=None):
    spec = {"containers": [{"name": "agent", "image": "busybox:1.36"}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def test_daemonset_pod_per_matching_node(apis, ns):
    apis.apps.create_namespaced_daemon_set(ns, _daemonset("agent"))
    apis.apps.create_namespaced_daemon_set(ns, _daemonset("gpu", {"accelerator": "gpu"}))
    ds = wait_for(lambda: (lambda d: d.status.number_ready == 1 and d)(
        apis.apps.read_namespaced_daemon_set("agent", ns)), "agent ready on the node")
    assert ds.status.desired_number_scheduled == 1 and ds.status.current_number_scheduled == 1
    (pod,) = apis.core.list_namespaced_pod(ns, label_selector="app=agent").items
    assert pod.spec.node_name == "c1-node-1"
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    assert terms.node_selector_terms[0].match_fields[0].values == ["c1-node-1"]
    gpu = wait_for(lambda: (lambda d: d.status.observed_generation and d)(
        apis.apps.read_namespaced_daemon_set("gpu", ns)), "gpu status")
    assert gpu.status.desired_number_scheduled == 0
    assert not apis.core.list_namespaced_pod(ns, label_selector="app=gpu").items


# ---------------------------------------------------------------------- Job, bare pods
def test_job_pod_succeeds_and_job_completes(apis, ns):
    apis.batch.create_namespaced_job(ns, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "work", "image": "busybox:1.36", "command": ["true"]}]}}}})
    job = wait_for(lambda: (lambda j: cond(j, "Complete") and j)(
        apis.batch.read_namespaced_job("once", ns)), "job Complete")
    assert cond(job, "Complete").status == "True"
    assert job.status.succeeded == 1 and not job.status.active
    assert job.status.completion_time and job.status.start_time
    (pod,) = apis.core.list_namespaced_pod(ns, label_selector="job-name=once").items
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert pod.metadata.owner_references[0].kind == "Job"


def test_bare_pod_is_scheduled_and_runs(apis, ns):
    apis.core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod",
                                         "metadata": {"name": "solo"},
                                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    pod = wait_for(lambda: (lambda p: p.status.phase == "Running" and p)(
        apis.core.read_namespaced_pod("solo", ns)), "bare pod running")
    assert pod.spec.node_name == "c1-node-1"
    assert pod.status.container_statuses[0].image == "docker.io/library/busybox:latest"


def test_required_pod_anti_affinity_keeps_a_pod_out_until_the_other_pod_goes(apis, ns):
    """kube-scheduler's InterPodAffinity filter, and its retry of unschedulable pods when an assigned pod
    is deleted. Every node of the shared lab gets a pod labelled tier=db first."""
    nodes = [n.metadata.name for n in apis.core.list_node().items]
    for i, node in enumerate(nodes):
        apis.core.create_namespaced_pod(ns, {"metadata": {"name": "db-%d" % i, "labels": {"tier": "db"}},
                                             "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.36"}]}})
    apis.core.create_namespaced_pod(ns, {"metadata": {"name": "apart"}, "spec": {
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"tier": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}},
        "containers": [{"name": "c", "image": "busybox:1.36"}]}})
    pending = wait_for(lambda: cond(apis.core.read_namespaced_pod("apart", ns), "PodScheduled"), "a scheduling verdict")
    assert pending.status == "False" and pending.reason == "Unschedulable"
    assert "%d node(s) didn't match pod anti-affinity rules" % len(nodes) in pending.message
    apis.core.delete_namespaced_pod("db-0", ns, grace_period_seconds=0)
    placed = wait_for(lambda: apis.core.read_namespaced_pod("apart", ns).spec.node_name, "placed once db-0 is gone")
    assert placed == nodes[0]


def test_pod_stays_pending_until_its_claim_is_bound(apis, ns):
    apis.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waiter"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "later"}}]}})

    def unschedulable():
        p = apis.core.read_namespaced_pod("waiter", ns)
        c = cond(p, "PodScheduled")
        return c is not None and c.status == "False" and p
    pod = wait_for(unschedulable, "PodScheduled=False")
    c = cond(pod, "PodScheduled")
    assert c.reason == "Unschedulable" and 'persistentvolumeclaim "later" not found' in c.message
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("later"))
    wait_for(lambda: apis.core.read_namespaced_pod("waiter", ns).status.phase == "Running",
             "pod runs once the claim is bound")


def test_pod_with_claim_of_unknown_class_stays_pending(apis, ns):
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("nowhere", storage_class="nope"))
    apis.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "nowhere"}}]}})
    pod = wait_for(lambda: (lambda p: cond(p, "PodScheduled") and p)(
        apis.core.read_namespaced_pod("stuck", ns)), "scheduling attempt")
    c = cond(pod, "PodScheduled")
    assert (c.status, c.reason) == ("False", "Unschedulable")
    assert "unbound immediate PersistentVolumeClaims" in c.message
    assert apis.core.read_namespaced_persistent_volume_claim("nowhere", ns).status.phase == "Pending"


def test_orphan_pods_are_adopted_by_a_matching_replicaset(apis, ns):
    """A restore brings pods back without ownerReferences; the controller adopts them."""
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=1))
    wait_for(lambda: deployment_ready(apis.apps, ns, "web", 1), "ready")
    rs = apis.apps.list_namespaced_replica_set(ns).items[0]
    apis.apps.delete_namespaced_deployment("web", ns, propagation_policy="Orphan")
    wait_for(lambda: gone(lambda: apis.apps.read_namespaced_deployment("web", ns)), "deploy gone")
    wait_for(lambda: not apis.apps.read_namespaced_replica_set(
        rs.metadata.name, ns).metadata.owner_references, "rs orphaned")
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=1))
    d = wait_for(lambda: deployment_ready(apis.apps, ns, "web", 1), "ready again")
    rs_list = apis.apps.list_namespaced_replica_set(ns).items
    assert [r.metadata.name for r in rs_list] == [rs.metadata.name]
    assert rs_list[0].metadata.owner_references[0].uid == d.metadata.uid


def test_spread_over_nodes_and_daemonset_per_node(lab_factory):
    lab3 = lab_factory(clusters=1, nodes=3)
    apis = Apis(lab3.api("c1"))
    try:
        ns = "spread"
        make_namespace(apis.core, ns)
        apis.core.patch_node("c1-node-2", {"metadata": {"labels": {"disk": "ssd"}}})
        apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=3))
        apis.apps.create_namespaced_daemon_set(ns, _daemonset("agent"))
        apis.apps.create_namespaced_daemon_set(ns, _daemonset("ssd", {"disk": "ssd"}))
        wait_for(lambda: deployment_ready(apis.apps, ns, "web", 3), "web ready")
        nodes = sorted(p.spec.node_name for p in
                       apis.core.list_namespaced_pod(ns, label_selector="app=web").items)
        assert nodes == ["c1-node-1", "c1-node-2", "c1-node-3"]
        wait_for(lambda: apis.apps.read_namespaced_daemon_set("agent", ns).status.number_ready == 3,
                 "agent on 3 nodes")
        agent_nodes = sorted(p.spec.node_name for p in
                             apis.core.list_namespaced_pod(ns, label_selector="app=agent").items)
        assert agent_nodes == ["c1-node-1", "c1-node-2", "c1-node-3"]
        ssd = wait_for(lambda: (lambda d: d.status.number_ready == 1 and d)(
            apis.apps.read_namespaced_daemon_set("ssd", ns)), "ssd on one node")
        assert ssd.status.desired_number_scheduled == 1
        (pod,) = apis.core.list_namespaced_pod(ns, label_selector="app=ssd").items
        assert pod.spec.node_name == "c1-node-2"
        # a node that starts matching gets a daemon pod
        apis.core.patch_node("c1-node-3", {"metadata": {"labels": {"disk": "ssd"}}})
        wait_for(lambda: apis.apps.read_namespaced_daemon_set("ssd", ns).status.number_ready == 2,
                 "ssd pod on the newly labelled node")
        # pods spread over ready nodes: pod IPs come from each node's pod CIDR
        for p in apis.core.list_namespaced_pod(ns, label_selector="app=web").items:
            node = apis.core.read_node(p.spec.node_name)
            assert ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network(node.spec.pod_cidr)
    finally:
        apis.close()



def test_statefulset_rolling_update_replaces_pods_in_reverse_order(apis, ns):
    apis.apps.create_namespaced_stateful_set(ns, _statefulset("db", 2, policy="Parallel"))
    first = wait_for(lambda: (lambda s: s.status.ready_replicas == 2 and s)(
        apis.apps.read_namespaced_stateful_set("db", ns)), "sts ready")
    old_uids = {p.metadata.name: p.metadata.uid for p in apis.core.list_namespaced_pod(ns).items}
    apis.apps.patch_namespaced_stateful_set("db", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "db", "image": "postgres:17"}]}}}})

    def updated():
        s = apis.apps.read_namespaced_stateful_set("db", ns)
        return (s.status.updated_replicas == 2 and s.status.ready_replicas == 2
                and s.status.current_revision == s.status.update_revision and s)
    sts = wait_for(updated, "rolling update done")
    assert sts.status.update_revision != first.status.update_revision
    for p in apis.core.list_namespaced_pod(ns).items:
        assert p.spec.containers[0].image == "postgres:17"
        assert p.metadata.uid != old_uids[p.metadata.name]  # same name, new pod
        assert p.metadata.labels["controller-revision-hash"] == sts.status.update_revision


def test_daemonset_template_change_replaces_its_pods(apis, ns):
    apis.apps.create_namespaced_daemon_set(ns, _daemonset("agent"))
    wait_for(lambda: apis.apps.read_namespaced_daemon_set("agent", ns).status.number_ready == 1,
             "agent ready")
    (old,) = apis.core.list_namespaced_pod(ns).items
    apis.apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "agent", "image": "busybox:1.37"}]}}}})

    def replaced():
        ds = apis.apps.read_namespaced_daemon_set("agent", ns)
        pods = apis.core.list_namespaced_pod(ns).items
        return (ds.status.updated_number_scheduled == 1 and ds.status.number_ready == 1
                and len(pods) == 1 and pods[0].metadata.uid != old.metadata.uid
                and pods[0].status.phase == "Running" and pods[0])
    pod = wait_for(replaced, "daemon pod replaced")
    assert pod.spec.containers[0].image == "busybox:1.37"
    assert pod.metadata.labels["pod-template-generation"] == "2"


def _restorable(api_client, obj):
    """What a Velero restore creates: metadata stripped, no owners, no status, no nodeName."""
    d = api_client.sanitize_for_serialization(obj)
    md = d["metadata"]
    d["metadata"] = {k: md[k] for k in ("name", "labels", "annotations") if md.get(k)}
    d.pop("status", None)
    d.get("spec", {}).pop("nodeName", None)
    return d


def test_velero_style_restore_is_adopted_without_duplicates(apis, ns):
    """Restore order is pods, then ReplicaSets, then Deployments, all without ownerReferences:
    the controllers adopt them instead of creating extra pods."""
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    wait_for(lambda: deployment_ready(apis.apps, ns, "web", 2), "source ready")
    pods = apis.core.list_namespaced_pod(ns).items
    (rs,) = apis.apps.list_namespaced_replica_set(ns).items
    dep = apis.apps.read_namespaced_deployment("web", ns)
    target = unique("restored")
    make_namespace(apis.core, target)
    try:
        for p in pods:
            apis.core.create_namespaced_pod(target, _restorable(apis.client, p))
        apis.apps.create_namespaced_replica_set(target, _restorable(apis.client, rs))
        apis.apps.create_namespaced_deployment(target, _restorable(apis.client, dep))
        d = wait_for(lambda: deployment_ready(apis.apps, target, "web", 2), "restored ready")
        restored_pods = apis.core.list_namespaced_pod(target).items
        assert sorted(p.metadata.name for p in restored_pods) == \
            sorted(p.metadata.name for p in pods)
        (restored_rs,) = apis.apps.list_namespaced_replica_set(target).items
        assert restored_rs.metadata.name == rs.metadata.name
        assert restored_rs.metadata.owner_references[0].uid == d.metadata.uid
        assert all(p.metadata.owner_references[0].uid == restored_rs.metadata.uid
                   for p in restored_pods)
    finally:
        delete_namespace(apis.core, target)


def test_restore_wait_init_container_holds_the_pod_until_its_volumes_are_restored(lab, apis, ns):
    """Velero's restore-wait init container exits only when every PodVolumeRestore of the pod
    is done: until then the pod stays in Init (Pending, Initialized=False)."""
    import yaml
    from pathlib import Path
    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "roles/velero/files/crds/"
                          "velero.io_podvolumerestores.yaml").read_text())
    try:
        apis.ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:
            raise
    pod = apis.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "restored"},
        "spec": {"initContainers": [{"name": "restore-wait", "image": "velero/velero:v1.15.0",
                                     "command": ["/velero-restore-helper"], "args": ["uid-1"]}],
                 "containers": [{"name": "app", "image": "busybox"}]}})
    pvr = apis.custom.create_namespaced_custom_object("velero.io", "v1", ns, "podvolumerestores", {
        "apiVersion": "velero.io/v1", "kind": "PodVolumeRestore",
        "metadata": {"name": "restored-pvr", "labels": {"velero.io/pod-uid": pod.metadata.uid}},
        "spec": {"pod": {"kind": "Pod", "namespace": ns, "name": "restored",
                         "uid": pod.metadata.uid}, "volume": "data",
                 "backupStorageLocation": "default", "repoIdentifier": "", "snapshotID": "s1",
                 "sourceNamespace": ns},
        "status": {"phase": "InProgress"}})

    def in_init():
        p = apis.core.read_namespaced_pod("restored", ns)
        c = cond(p, "Initialized")
        return c is not None and c.status == "False" and p
    p = wait_for(in_init, "pod held in Init")
    assert p.status.phase == "Pending" and p.spec.node_name
    assert "restore-wait" in cond(p, "Initialized").message
    assert p.status.init_container_statuses[0].state.running is not None
    assert p.status.container_statuses[0].state.waiting.reason == "PodInitializing"
    pvr["status"] = {"phase": "Completed"}
    apis.custom.replace_namespaced_custom_object("velero.io", "v1", ns, "podvolumerestores",
                                                 "restored-pvr", pvr)
    p = wait_for(lambda: (lambda p: p.status.phase == "Running" and p)(
        apis.core.read_namespaced_pod("restored", ns)), "pod runs once restored")
    assert p.status.init_container_statuses[0].state.terminated.reason == "Completed"


def test_cronjob_fires_on_the_lab_clock(lab_factory):
    """Schedules follow `fleetdr-lab clock advance`: nothing runs before the first tick, one Job
    (for the most recent missed tick) after it, which then completes."""
    private = lab_factory(clusters=1)
    apis = Apis(private.api("c1"))
    try:
        ns = "cron"
        make_namespace(apis.core, ns)
        apis.batch.create_namespaced_cron_job(ns, {
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {
                "metadata": {"labels": {"app": "tick"}},
                "spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [
                    {"name": "t", "image": "busybox", "command": ["date"]}]}}}}}})
        apis.batch.create_namespaced_cron_job(ns, {
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "paused"},
            "spec": {"schedule": "* * * * *", "suspend": True, "jobTemplate": {"spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "t", "image": "busybox"}]}}}}}})
        assert not apis.batch.list_namespaced_job(ns).items
        private.cli("clock", "advance", "11m")
        (job,) = wait_for(lambda: apis.batch.list_namespaced_job(ns).items, "a scheduled job")
        assert job.metadata.owner_references[0].kind == "CronJob"
        assert job.metadata.owner_references[0].name == "tick"
        assert job.metadata.labels["app"] == "tick"
        scheduled = job.metadata.annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        minute = int(scheduled[14:16])
        assert minute % 5 == 0 and scheduled.endswith(":00Z")
        assert job.metadata.name.startswith("tick-")
        cj = wait_for(lambda: (lambda c: c.status.last_successful_time and c)(
            apis.batch.read_namespaced_cron_job("tick", ns)), "job done, recorded on the cronjob")
        assert cj.status.last_schedule_time.strftime("%Y-%m-%dT%H:%M:%SZ") == scheduled
        assert not cj.status.active
        assert not apis.batch.read_namespaced_cron_job("paused", ns).status.last_schedule_time
    finally:
        apis.close()
