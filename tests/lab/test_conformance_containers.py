"""Containers that can fail, as a real kubelet runs them (pkg/kubelet): images that cannot be pulled
(ErrImagePull, then ImagePullBackOff; the catalogue set with `fleetdr-lab image deny|allow`), commands
that exit (lastState.terminated, restartCount, CrashLoopBackOff back-off of 10 s, 20 s, 40 s ... in
lab-clock time), `sleep N` running N seconds of lab clock, probes' initialDelaySeconds, and the grace
period of a container that ignores SIGTERM. These tests move the lab clock and change the image
catalogue: they use a lab of their own (two clusters, shared by this module only)."""
from __future__ import annotations

import time

import pytest
from kubernetes import client

from helpers import cond, gone, unique, wait_for
from labctl import LabHandle


@pytest.fixture(scope="module")
def lab2(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("containers-lab") / "lab", clusters=2)
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def kube(lab2):
    apis = {}
    for name in ("c1", "c2"):
        api = lab2.api(name)
        apis[name] = (api, client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api))
    yield apis
    for api, *_ in apis.values():
        api.close()


@pytest.fixture
def ns(kube):
    name = unique("containers")
    for _, core, _, _ in kube.values():
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _pod(name, command=None, image="busybox:1.36", restart_policy=None, grace=None, **container):
    spec = {"containers": [{"name": "c", "image": image, **({"command": command} if command else {}), **container}]}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _status(core, ns, name):
    return core.read_namespaced_pod(name, ns).status.container_statuses[0]


def _waiting(core, ns, name):
    statuses = core.read_namespaced_pod(name, ns).status.container_statuses or []
    return statuses[0].state.waiting if statuses and statuses[0].state.waiting else None


def _ready(core, ns, name):
    c = cond(core.read_namespaced_pod(name, ns), "Ready")
    return c is not None and c.status == "True"


def _advance(lab2, duration):
    lab2.cli("clock", "advance", duration)


def test_an_image_that_cannot_be_pulled_is_err_image_pull_then_image_pull_back_off(lab2, kube, ns):
    _, core, apps, _ = kube["c1"]
    image = "registry.example.com/team/app:1.0"
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}},
                              "spec": {"containers": [{"name": "app", "image": image}]}}}})
    pod = wait_for(lambda: [p.metadata.name for p in core.list_namespaced_pod(ns).items
                            if p.status.container_statuses], "the pod's container status")[0]
    seen = set()

    def reasons():
        waiting = _waiting(core, ns, pod)
        if waiting:
            seen.add((waiting.reason, waiting.message))
        return {r for r, _ in seen} >= {"ErrImagePull", "ImagePullBackOff"}
    wait_for(reasons, "ErrImagePull then ImagePullBackOff", timeout=15)
    messages = dict(seen)
    assert messages["ImagePullBackOff"] == f'Back-off pulling image "{image}"'
    assert messages["ErrImagePull"].startswith('rpc error: code = Unknown desc = failed to pull and unpack image '
                                               f'"{image}"')
    assert "no such host" in messages["ErrImagePull"]
    p = core.read_namespaced_pod(pod, ns)
    assert p.status.phase == "Pending" and not _ready(core, ns, pod)
    cs = p.status.container_statuses[0]
    assert (cs.ready, cs.started, cs.restart_count, cs.image_id) == (False, False, 0, "")
    d = apps.read_namespaced_deployment("app", ns)
    available = cond(d, "Available")
    assert (available.status, available.reason) == ("False", "MinimumReplicasUnavailable")
    assert not d.status.available_replicas
    events = {(e.type, e.reason, e.message, e.source.component) for e in core.list_namespaced_event(ns).items
              if e.involved_object.name == pod}
    assert ("Warning", "Failed", f'Failed to pull image "{image}": {messages["ErrImagePull"]}', "kubelet") in events
    assert ("Normal", "BackOff", f'Back-off pulling image "{image}"', "kubelet") in events
    assert ("Warning", "Failed", "Error: ImagePullBackOff", "kubelet") in events
    # kubectl's STATUS column
    out = lab2.kubectl("get", "pod", pod, "-n", ns, "--no-headers").stdout.split()
    assert out[1:3] == ["0/1", "ImagePullBackOff"] or out[1:3] == ["0/1", "ErrImagePull"]


def test_a_rollout_stuck_on_an_unpullable_image_exceeds_its_progress_deadline(lab2, kube, ns):
    _, core, apps, _ = kube["c1"]
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck"},
        "spec": {"replicas": 1, "progressDeadlineSeconds": 60, "selector": {"matchLabels": {"app": "stuck"}},
                 "template": {"metadata": {"labels": {"app": "stuck"}},
                              "spec": {"containers": [{"name": "app", "image": "registry.example.com/team/app:2.0"}]}}}})
    wait_for(lambda: (cond(apps.read_namespaced_deployment("stuck", ns), "Progressing") or client.V1DeploymentCondition(
        type="x", status="x")).reason == "ReplicaSetUpdated", "the rollout progressing")
    time.sleep(1)
    assert cond(apps.read_namespaced_deployment("stuck", ns), "Progressing").status == "True"
    _advance(lab2, "61s")
    progressing = wait_for(lambda: (c := cond(apps.read_namespaced_deployment("stuck", ns), "Progressing")).status == "False" and c,
                           "the progress deadline exceeded", timeout=10)
    rs = apps.list_namespaced_replica_set(ns, label_selector="app=stuck").items[0].metadata.name
    assert (progressing.reason, progressing.message) == ("ProgressDeadlineExceeded", f'ReplicaSet "{rs}" has timed out progressing.')
    proc = lab2.kubectl("rollout", "status", "deployment/stuck", "-n", ns, "--timeout=20s", check=False)
    assert proc.returncode != 0 and 'deployment "stuck" exceeded its progress deadline' in proc.stderr


def test_image_deny_and_allow_per_cluster_and_lab_wide(lab2, kube, ns):
    _, core1, _, _ = kube["c1"]
    _, core2, _, _ = kube["c2"]
    lab2.cli("image", "deny", "nginx:1.28", "--cluster", "c2")
    for core in (core1, core2):
        core.create_namespaced_pod(ns, _pod("web", image="nginx:1.28"))
    wait_for(lambda: _ready(core1, ns, "web"), "nginx:1.28 running on c1")
    waiting = wait_for(lambda: _waiting(core2, ns, "web"), "nginx:1.28 failing on c2")
    assert waiting.reason in ("ErrImagePull", "ImagePullBackOff")
    wait_for(lambda: _waiting(core2, ns, "web").reason == "ErrImagePull" and _waiting(core2, ns, "web").message, "ErrImagePull")
    assert _waiting(core2, ns, "web").message == (
        'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/nginx:1.28": '
        'failed to resolve reference "docker.io/library/nginx:1.28": docker.io/library/nginx:1.28: not found')
    # allowed again: the next pull (after the back-off, lab clock) succeeds
    lab2.cli("image", "allow", "nginx:1.28", "--cluster", "c2")
    time.sleep(0.5)
    assert not _ready(core2, ns, "web")
    _advance(lab2, "5m")
    wait_for(lambda: _ready(core2, ns, "web"), "nginx:1.28 running on c2 once allowed")

    # a whole registry denied lab-wide, allowed again for one cluster
    lab2.cli("image", "deny", "quay.io")
    lab2.cli("image", "allow", "quay.io", "--cluster", "c1")
    for core in (core1, core2):
        core.create_namespaced_pod(ns, _pod("ceph", image="quay.io/ceph/ceph:v20.2.4", command=["sleep", "infinity"]))
    wait_for(lambda: _ready(core1, ns, "ceph"), "quay.io allowed on c1")
    waiting = wait_for(lambda: _waiting(core2, ns, "ceph"), "quay.io denied on c2")
    assert "lookup quay.io: no such host" in (waiting.message or "") or waiting.reason == "ImagePullBackOff"
    shown = lab2.cli("image", "show").stdout
    assert "lab-wide   deny   quay.io" in shown and "c1         allow  quay.io" in shown
    lab2.cli("image", "allow", "quay.io")
    assert lab2.cli("image", "deny", "x", "--cluster", "c9", check=False).returncode == 5


def test_bin_false_crash_loops_with_back_off_on_the_lab_clock(lab2, kube, ns):
    _, core, _, _ = kube["c1"]
    created = core.create_namespaced_pod(ns, _pod("crash", ["/bin/false"]))
    uid = created.metadata.uid

    def crash_loop(restarts, backoff):
        cs = (core.read_namespaced_pod("crash", ns).status.container_statuses or [None])[0]
        waiting = cs and cs.state.waiting
        return (waiting and waiting.reason == "CrashLoopBackOff" and cs.restart_count == restarts
                and waiting.message == f"back-off {backoff} restarting failed container=c pod=crash_{ns}({uid})") and cs
    # the first restart is immediate, then the back-off doubles: 10s, 20s, 40s ...
    cs = wait_for(lambda: crash_loop(1, "10s"), "CrashLoopBackOff after the first restart", timeout=10)
    last = cs.last_state.terminated
    assert (last.exit_code, last.reason) == (1, "Error") and cs.ready is False and cs.started is False
    p = core.read_namespaced_pod("crash", ns)
    assert p.status.phase == "Running" and not _ready(core, ns, "crash")
    assert cond(p, "Ready").message == "containers with unready status: [c]"
    time.sleep(1.5)
    assert crash_loop(1, "10s"), "the back-off waits on the lab clock"
    _advance(lab2, "10s")
    wait_for(lambda: crash_loop(2, "20s"), "second restart after 10 s of lab clock", timeout=10)
    _advance(lab2, "20s")
    wait_for(lambda: crash_loop(3, "40s"), "third restart after 20 s more", timeout=10)
    _advance(lab2, "40s")
    wait_for(lambda: crash_loop(4, "1m20s"), "fourth restart after 40 s more", timeout=10)
    out = lab2.kubectl("get", "pod", "crash", "-n", ns, "--no-headers").stdout.split()
    assert out[1:4] == ["0/1", "CrashLoopBackOff", "4"]
    backoffs = [e for e in core.list_namespaced_event(ns).items if e.involved_object.name == "crash" and e.reason == "BackOff"]
    assert [(e.type, e.message, e.source.component) for e in backoffs] == [
        ("Warning", f"Back-off restarting failed container c in pod crash_{ns}({uid})", "kubelet")]
    assert backoffs[0].count >= 3

    # exit N with restartPolicy Never: the pod fails with that exit code; exit 0: Succeeded
    core.create_namespaced_pod(ns, _pod("three", ["sh", "-c", "exit 3"], restart_policy="Never"))
    core.create_namespaced_pod(ns, _pod("zero", ["sh", "-c", "exit 0"], restart_policy="Never"))
    wait_for(lambda: core.read_namespaced_pod("three", ns).status.phase == "Failed", "exit 3 fails the pod")
    term = _status(core, ns, "three").state.terminated
    assert (term.exit_code, term.reason) == (3, "Error") and _status(core, ns, "three").restart_count == 0
    wait_for(lambda: core.read_namespaced_pod("zero", ns).status.phase == "Succeeded", "exit 0 completes the pod")
    assert _status(core, ns, "zero").state.terminated.reason == "Completed"
    # restartPolicy Always restarts a container that completed, too
    core.create_namespaced_pod(ns, _pod("done", ["true"]))
    cs = wait_for(lambda: (s := (core.read_namespaced_pod("done", ns).status.container_statuses or [None])[0])
                  and s.restart_count >= 1 and s.last_state.terminated and s, "true restarted")
    assert (cs.last_state.terminated.exit_code, cs.last_state.terminated.reason) == (0, "Completed")
    assert core.read_namespaced_pod("done", ns).status.phase == "Running"


def test_a_job_pod_sleeping_600_seconds_completes_only_when_the_lab_clock_has_passed_them(lab2, kube, ns):
    _, core, _, batch = kube["c1"]
    batch.create_namespaced_job(ns, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "nap"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox:1.36", "command": ["sleep", "600"]}]}}}})
    wait_for(lambda: (batch.read_namespaced_job("nap", ns).status.ready or 0) == 1, "the job's pod running")
    time.sleep(2)
    job = batch.read_namespaced_job("nap", ns)
    assert (job.status.active, job.status.succeeded, job.status.completion_time) == (1, None, None)
    _advance(lab2, "601s")
    wait_for(lambda: cond(batch.read_namespaced_job("nap", ns), "Complete"), "the job complete", timeout=10)
    pod = core.list_namespaced_pod(ns, label_selector="job-name=nap").items[0]
    term = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Succeeded" and (term.exit_code, term.reason) == (0, "Completed")
    assert (term.finished_at - term.started_at).total_seconds() >= 600

    # failing pods count toward backoffLimit: Never (each pod fails), OnFailure (each restart)
    for name, policy in (("never", "Never"), ("onfailure", "OnFailure")):
        batch.create_namespaced_job(ns, {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": policy, "containers": [
                {"name": "c", "image": "busybox:1.36", "command": ["/bin/false"]}]}}}})
    # OnFailure: the first restart is immediate and reaches backoffLimit 1
    failed = wait_for(lambda: cond(batch.read_namespaced_job("onfailure", ns), "Failed"), "OnFailure job failed", timeout=10)
    assert (failed.reason, failed.message) == ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    # Never: the failed pod is replaced after the Job's pod failure back-off (10 s of lab clock)
    wait_for(lambda: batch.read_namespaced_job("never", ns).status.failed == 1, "the first pod failed")
    time.sleep(1.5)
    job = batch.read_namespaced_job("never", ns)
    assert (job.status.failed, job.status.active, cond(job, "Failed")) == (1, None, None)
    assert len(core.list_namespaced_pod(ns, label_selector="job-name=never").items) == 1
    _advance(lab2, "10s")
    failed = wait_for(lambda: cond(batch.read_namespaced_job("never", ns), "Failed"), "Never job failed", timeout=10)
    assert (failed.reason, failed.message) == ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert batch.read_namespaced_job("never", ns).status.failed == 2


def test_readiness_waits_for_the_probe_initial_delay_on_the_lab_clock(lab2, kube, ns):
    _, core, apps, _ = kube["c1"]
    probe = {"exec": {"command": ["true"]}, "initialDelaySeconds": 120, "periodSeconds": 10}
    core.create_namespaced_pod(ns, _pod("slow", ["sleep", "infinity"], readinessProbe=probe))
    core.create_namespaced_pod(ns, _pod("quick", ["sleep", "infinity"], livenessProbe=probe))
    wait_for(lambda: _ready(core, ns, "quick"), "the pod without a readiness delay ready")
    wait_for(lambda: core.read_namespaced_pod("slow", ns).status.phase == "Running", "slow running")
    time.sleep(2)
    cs = _status(core, ns, "slow")
    assert cs.state.running and cs.started is True and cs.ready is False and not _ready(core, ns, "slow")
    _advance(lab2, "2m")
    wait_for(lambda: _ready(core, ns, "slow"), "ready once initialDelaySeconds passed", timeout=10)
    assert _status(core, ns, "slow").ready is True


def test_a_container_ignoring_sigterm_keeps_its_pod_for_the_grace_period(lab2, kube, ns):
    _, core, _, _ = kube["c1"]
    core.create_namespaced_pod(ns, _pod("stubborn", ["sh", "-c", "trap '' TERM; sleep infinity"]))
    core.create_namespaced_pod(ns, _pod("plain", ["sleep", "infinity"]))
    core.create_namespaced_pod(ns, _pod("short", ["sh", "-c", 'trap "" TERM; sleep infinity'], grace=5))
    for name in ("stubborn", "plain", "short"):
        wait_for(lambda name=name: _ready(core, ns, name), f"{name} running")
    for name in ("stubborn", "plain", "short"):
        core.delete_namespaced_pod(name, ns)
    wait_for(lambda: gone(lambda: core.read_namespaced_pod("plain", ns)), "the ordinary pod gone promptly", timeout=5)
    time.sleep(2)
    stubborn = core.read_namespaced_pod("stubborn", ns)
    assert stubborn.metadata.deletion_timestamp and stubborn.metadata.deletion_grace_period_seconds == 30
    assert core.read_namespaced_pod("short", ns).metadata.deletion_grace_period_seconds == 5
    assert lab2.kubectl("get", "pod", "stubborn", "-n", ns, "--no-headers").stdout.split()[2] == "Terminating"
    _advance(lab2, "6s")
    wait_for(lambda: gone(lambda: core.read_namespaced_pod("short", ns)), "the 5 s grace period over", timeout=5)
    assert not gone(lambda: core.read_namespaced_pod("stubborn", ns))
    _advance(lab2, "25s")
    wait_for(lambda: gone(lambda: core.read_namespaced_pod("stubborn", ns)), "the 30 s grace period over", timeout=5)
