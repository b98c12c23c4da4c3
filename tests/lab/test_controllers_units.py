"""In-process checks of the controllers' building blocks (no lab process): hashing and naming,
image and quantity parsing, scheduling predicates, Service admission against a real Store, the
shared timer heap, and a whole-cluster run of the controllers over a Store."""
from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import pytest

from fleetdr_lab.clock import Clock, TimerHeap
from fleetdr_lab.controllers import install_default_controllers
from fleetdr_lab.controllers.base import SAFE_ALPHANUMS, set_condition, template_hash
from fleetdr_lab.controllers.storage import StorageProtection, quantity_bytes
from fleetdr_lab.controllers.workloads import int_or_percent, node_fits, normalize_image
from fleetdr_lab.store import ApiError
from fleetdr_lab.strategies import new_store


def test_template_hash_is_stable_safe_and_template_sensitive():
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c",
                                                                          "image": "nginx"}]}}
    h = template_hash(t)
    assert h == template_hash({"spec": t["spec"], "metadata": t["metadata"]})
    assert set(h) <= set(SAFE_ALPHANUMS) and 1 <= len(h) <= 10
    assert h != template_hash({**t, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}})
    assert template_hash(t, 1) != h  # collisionCount changes the hash


@pytest.mark.parametrize("image,expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("nginx:1.27", "docker.io/library/nginx:1.27"),
    ("velero/velero:v1.15.0", "docker.io/velero/velero:v1.15.0"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
])
def test_normalize_image(image, expected):
    assert normalize_image(image) == expected


def test_quantities_and_percentages():
    assert quantity_bytes("1Gi") == 1024 ** 3
    assert quantity_bytes("500M") == 500 * 1000 ** 2
    assert quantity_bytes("2") == 2
    assert int_or_percent("25%", 2, round_up=True) == 1
    assert int_or_percent("25%", 2, round_up=False) == 0
    assert int_or_percent(3, 10, round_up=False) == 3


def test_node_fits_selector_affinity_and_taints():
    node = {"metadata": {"name": "n1", "labels": {"disk": "ssd"}},
            "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}
    tolerate = [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]
    assert not node_fits({}, node)  # untolerated taint
    assert node_fits({"tolerations": tolerate}, node)
    assert not node_fits({"tolerations": tolerate, "nodeSelector": {"disk": "hdd"}}, node)
    by_name = {"tolerations": tolerate, "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}
    assert not node_fits(by_name, node)
    by_name["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchFields"][0]["values"] = ["n1"]
    assert node_fits(by_name, node)


def test_set_condition_keeps_times_when_unchanged():
    conds = set_condition([], "Ready", "True", "R", "m", now="t1", update_time=True)
    same = set_condition(conds, "Ready", "True", "R", "m", now="t2", update_time=True)
    assert same == conds
    flipped = set_condition(conds, "Ready", "False", "X", "y", now="t3", update_time=True)
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["status"] == "False"


@pytest.fixture
def store():
    s = new_store(clock=Clock())
    s.register(StorageProtection())
    for ns in ("default", "other"):
        s.create("", "namespaces", None, {"metadata": {"name": ns}})
    return s


def _svc(name, stype="ClusterIP", **port):
    return {"metadata": {"name": name},
            "spec": {"type": stype, "ports": [{"port": 80, **port}]}}


def test_service_admission_allocates_and_refuses_taken_values(store):
    a = store.create("", "services", "default", _svc("a", "NodePort"))
    np = a["spec"]["ports"][0]["nodePort"]
    assert 30000 <= np <= 32767
    with pytest.raises(ApiError) as e:
        store.create("", "services", "other", _svc("b", "NodePort", nodePort=np))
    assert e.value.code == 422 and "provided port is already allocated" in str(e.value.status())
    with pytest.raises(ApiError) as e:
        store.create("", "services", "other", {"metadata": {"name": "c"}, "spec": {
            "clusterIP": a["spec"]["clusterIP"], "ports": [{"port": 80}]}})
    assert e.value.code == 422
    with pytest.raises(ApiError) as e:
        store.create("", "services", "other", {"metadata": {"name": "d"}, "spec": {
            "clusterIP": "192.168.0.1", "ports": [{"port": 80}]}})
    assert "not in the valid range" in str(e.value.status())
    # dry-run allocates without reserving; updating keeps allocated values
    store.create("", "services", "other", _svc("dry", "NodePort", nodePort=31000), dry_run=True)
    store.create("", "services", "other", _svc("real", "NodePort", nodePort=31000))
    body = store.get("", "services", "default", "a")
    body["spec"]["ports"][0].pop("nodePort")
    assert store.update("", "services", "default", "a", body)["spec"]["ports"][0]["nodePort"] == np


def test_pvc_and_pv_get_protection_finalizers_at_creation(store):
    claim = store.create("", "persistentvolumeclaims", "default", {
        "metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}}})
    assert claim["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
    pv = store.create("", "persistentvolumes", None, {
        "metadata": {"name": "v"}, "spec": {"capacity": {"storage": "1Gi"},
                                            "accessModes": ["ReadWriteOnce"],
                                            "hostPath": {"path": "/tmp/x"}}})
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]


def test_timer_heap_fires_in_order_and_skips_cancelled():
    async def run():
        timers = TimerHeap()
        fired = []
        done = asyncio.Event()
        timers.call_later(0.03, fired.append, "b")
        cancelled = timers.call_later(0.01, fired.append, "x")
        timers.call_later(0.0, fired.append, "a")
        timers.call_later(0.05, done.set)
        cancelled.cancel()
        await asyncio.wait_for(done.wait(), timeout=5)
        return fired, timers.pending()
    fired, pending = asyncio.run(run())
    assert fired == ["a", "b"] and pending == 0


def test_lab_clock_callbacks_fire_at_their_lab_time_and_on_advances():
    async def run():
        clock = Clock()
        fired = []
        now = clock.time()
        clock.call_at(now + 0.05, fired.append, "soon")
        clock.call_later(100, fired.append, "in 100 s")
        clock.call_later(200, fired.append, "in 200 s")
        clock.call_later(150, fired.append, "cancelled").cancel()
        await asyncio.sleep(0.2)
        before = list(fired)
        clock.advance(100)
        await asyncio.sleep(0.05)
        after_100 = list(fired)
        clock.advance(150)
        await asyncio.sleep(0.05)
        return before, after_100, list(fired), clock.timers_pending()
    before, after_100, after_250, pending = asyncio.run(run())
    assert before == ["soon"]
    assert after_100 == ["soon", "in 100 s"]
    assert after_250 == ["soon", "in 100 s", "in 200 s"] and pending == 0


@pytest.mark.parametrize("command,runs,code,ignores_term", [
    (["/bin/false"], 0, 1, False), (["false"], 0, 1, False), (["sh", "-c", "exit 3"], 0, 3, False),
    (["true"], 0, 0, False), (["sleep", "600"], 600, 0, False), (["sleep", "1m"], 60, 0, False),
    (["sleep", "infinity"], None, 0, False), (["/bin/sh", "-c", "sleep 5; exit 1"], 5, 1, False),
    (["sh", "-c", "false || exit 0"], 0, 0, False), (["sh", "-c", "false && sleep 4"], 0, 1, False),
    (["sh", "-c", "trap '' TERM; sleep infinity"], None, 0, True), (["sh", "-c", 'trap "" SIGTERM\nsleep 9'], 9, 0, True),
    (["sh", "-c", "while true; do date >> /data/log; sleep 60; done"], None, 0, False), (["/velero", "server"], None, 0, False),
    ([], None, 0, False),
])
def test_what_a_container_command_amounts_to(command, runs, code, ignores_term):
    from fleetdr_lab.controllers.workloads.kubelet import program_of
    p = program_of({"command": command})
    assert (p.runs, p.code, p.ignores_term) == (runs, code, ignores_term)


def test_image_catalogue_rules():
    from fleetdr_lab.controllers.workloads.images import ImagePolicy
    policy = ImagePolicy()
    for image in ("busybox", "busybox:1.36", "nginx:1.28", "velero/velero:v1.17.1", "quay.io/ceph/ceph:v20.2.4",
                  "docker.io/rook/ceph:v1.20.6", "registry.k8s.io/pause:3.9", "ghcr.io/a/b:1", "public.ecr.aws/x/y:2",
                  "us-docker.pkg.dev/p/r/i:1", "eu.gcr.io/p/i:1"):
        assert policy.verdict(image) == (True, ""), image
    assert policy.verdict("registry.example.com/team/app:1") == (False, "registry")
    assert policy.verdict("localhost:5000/app") == (False, "registry")
    policy.set_rule("deny", "busybox:1.36")
    assert policy.verdict("docker.io/library/busybox:1.36") == (False, "image") and policy.verdict("busybox:1.37")[0]
    policy.set_rule("deny", "velero/*")
    assert not policy.verdict("velero/velero:v1")[0] and policy.verdict("velero:v1")[0]
    policy.set_rule("deny", "quay.io", cluster="c2")
    policy.set_rule("allow", "quay.io/ceph/*", cluster="c2")
    assert policy.verdict("quay.io/ceph/ceph:v1", "c2")[0] and policy.verdict("quay.io/other/x:1", "c2") == (False, "registry")
    assert policy.verdict("quay.io/other/x:1", "c1")[0]
    policy.set_rule("allow", "busybox:1.36", cluster="c1")
    assert policy.verdict("busybox:1.36", "c1")[0] and not policy.verdict("busybox:1.36", "c2")[0]


class _Lab:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.clock = Clock()


class _Cluster:
    """Just what controllers use of a Cluster: name, store, lab, data_dir, add_controller."""

    def __init__(self, directory):
        self.name = "unit"
        self.lab = _Lab(directory)
        self.store = new_store(clock=self.lab.clock)
        self.data_dir = Path(directory) / "volumes" / "unit"
        self.data_dir.mkdir(parents=True)
        self.controllers = []

    def add_controller(self, ctrl):
        self.controllers.append(ctrl)


def assert_stored_objects_unmodified(store):
    """Every stored object still equals what was written: the controllers read their watch
    events from shared (uncopied) stored objects, so one modifying an event would show here."""
    for obj, blob, managed in store._blobs.values():
        written = pickle.loads(blob)
        if managed:
            written["metadata"]["managedFields"] = managed
        now = dict(obj, metadata=dict(obj["metadata"]))
        assert now == written, obj["metadata"].get("name")


def test_controllers_over_a_store_in_process(tmp_path):
    """Deployment with a claim comes up; deleting its namespace removes everything."""
    async def run():
        cluster = _Cluster(tmp_path)
        s = cluster.store
        install_default_controllers(cluster)
        s.create("", "namespaces", None, {"metadata": {"name": "app"}})
        s.create("", "nodes", None, {"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.7.0/24"}})
        node = s.get("", "nodes", None, "n1")
        node["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
        s.update("", "nodes", None, "n1", node, subresource="status")
        s.create("storage.k8s.io", "storageclasses", None, {
            "metadata": {"name": "standard", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "fleetdr.lab/hostpath", "reclaimPolicy": "Delete"})
        tasks = [asyncio.create_task(c.run()) for c in cluster.controllers
                 if type(c).__module__.startswith("fleetdr_lab.controllers.") and
                 ".velero" not in type(c).__module__]
        try:
            s.create("", "persistentvolumeclaims", "app", {"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
            s.create("apps", "deployments", "app", {"metadata": {"name": "web"}, "spec": {
                "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                    "containers": [{"name": "c", "image": "nginx"}],
                    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}}})
            for _ in range(400):
                d = s.get("apps", "deployments", "app", "web")
                if d.get("status", {}).get("readyReplicas") == 1:
                    break
                await asyncio.sleep(0.02)
            (pod,) = s.list("", "pods", namespace="app")["items"]
            assert pod["status"]["phase"] == "Running"
            assert pod["status"]["podIP"].startswith("10.244.7.")
            pv_name = s.get("", "persistentvolumeclaims", "app", "data")["spec"]["volumeName"]
            assert (cluster.data_dir / pv_name).is_dir()
            assert_stored_objects_unmodified(s)
            s.delete("", "namespaces", None, "app")
            for _ in range(400):
                if s.get_or_none("", "namespaces", None, "app") is None and \
                        s.get_or_none("", "persistentvolumes", None, pv_name) is None:
                    break
                await asyncio.sleep(0.02)
            assert s.get_or_none("", "namespaces", None, "app") is None
            assert s.get_or_none("", "persistentvolumes", None, pv_name) is None
            assert_stored_objects_unmodified(s)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    asyncio.run(run())


def test_velero_parse_time_cache_answers_like_strptime():
    """parse_time remembers what it parsed (the due checks parse the same timestamps every
    second): a remembered answer equals a fresh strptime, and bad input still fails every time."""
    from datetime import datetime, timezone

    from fleetdr_lab.controllers.velero import server
    server._parsed_times.clear()
    for text in ("2026-12-04T14:15:00Z", "1999-01-31T00:00:59Z", "2026-12-04T14:15:00Z"):
        expected = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        first, again = server.parse_time(text), server.parse_time(text)
        assert first == again == expected and first.tzinfo is timezone.utc
    assert server.parse_time("") is None and server.parse_time(None) is None
    for bad in ("2026-12-04 14:15:00", "2026-12-04T14:15:00+00:00"):
        for _ in range(2):
            with pytest.raises(ValueError):
                server.parse_time(bad)
    assert "2026-12-04 14:15:00" not in server._parsed_times
