"""The emulated Rook operator against Rook's semantics (Rook v1.20 pkg/operator/ceph/...): installed
the quickstart way (kubectl create -f crds.yaml -f common.yaml -f operator.yaml, from
`fleetdr-lab rook manifests`), a CephCluster's status sequence and objects, the failures Rook reports
and how, health, pools and Ceph-backed volumes, and teardown. One 1-cluster lab of 3 nodes with one
raw device each per module; tests build on each other in file order."""
from __future__ import annotations

import base64
import shutil
import subprocess
import time

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from labctl import LabHandle

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

GROUP, VERSION, NS = "ceph.rook.io", "v1", "rook-ceph"
IMAGE = "quay.io/ceph/ceph:v20.2.4"


@pytest.fixture(scope="module")
def rook_lab(tmp_path_factory):
    lab = LabHandle.up(tmp_path_factory.mktemp("rook"), clusters=1, nodes=3, extra=("--devices", "1"))
    try:
        lab.install_rook()
        yield lab
    finally:
        lab.down()


def kubectl(lab, *args, stdin=None):
    proc = subprocess.run(["kubectl", "--kubeconfig", str(lab.kubeconfig), "--context", "c1", "--cache-dir",
                           str(lab.dir / "kubectl-cache"), *args], input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def custom(rook_lab):
    api = rook_lab.api("c1")
    yield client.CustomObjectsApi(api), client.CoreV1Api(api), client.AppsV1Api(api)
    api.close()


def wait(fn, what, timeout=30):
    end = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < end, "timed out waiting for " + what
        time.sleep(0.1)


def cluster_body(name="rook-ceph", **spec):
    body = {"cephVersion": {"image": IMAGE}, "dataDirHostPath": "/var/lib/rook", "mon": {"count": 3},
            "mgr": {"count": 1}, "storage": {"useAllNodes": True, "useAllDevices": True}}
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CephCluster", "metadata": {"name": name, "namespace": NS}, "spec": body}


def get_cluster(custom, name="rook-ceph"):
    return custom[0].get_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", name)


def test_the_quickstart_manifests_start_the_operator_and_it_watches_all_namespaces(rook_lab, custom):
    deployment = wait(lambda: [d for d in custom[2].list_namespaced_deployment(NS).items
                               if d.metadata.name == "rook-ceph-operator" and d.status.available_replicas], "the operator")
    assert deployment[0].spec.template.spec.containers[0].image == "docker.io/rook/ceph:v1.20.6"
    assert "cephclusters" in kubectl(rook_lab, "api-resources", "--api-group=ceph.rook.io", "-o", "name")


def test_too_few_nodes_for_the_mons_fails_like_rook_before_anything_is_created(custom):
    custom[0].create_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", cluster_body("five", mon={"count": 5}))
    cc = wait(lambda: (lambda c: c if (c.get("status") or {}).get("state") == "Error" else None)(get_cluster(custom, "five")),
              "Error state")
    st = cc["status"]
    assert st["phase"] == "Progressing" and st["state"] == "Error"  # never Failure
    assert st["message"] == ("failed to perform validation before cluster creation: cannot start 5 mons on 3 node(s) when "
                             "allowMultiplePerNode is false")
    assert "ceph" not in st and "version" not in st
    assert "cephcluster.ceph.rook.io" in cc["metadata"]["finalizers"]
    custom[0].delete_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", "five")
    wait(lambda: not custom[0].list_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters")["items"], "five gone")


def test_a_cluster_reaches_ready_then_health_with_rooks_objects(custom):
    custom[0].create_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", cluster_body())
    cc = wait(lambda: (lambda c: c if (c.get("status") or {}).get("ceph") else None)(get_cluster(custom)), "status.ceph")
    st = cc["status"]
    assert (st["phase"], st["state"], st["message"]) == ("Ready", "Created", "Cluster created successfully")
    assert st["version"] == {"image": IMAGE, "version": "20.2.4-0"}
    assert st["ceph"]["health"] == "HEALTH_OK" and st["ceph"]["capacity"]["bytesTotal"] == 3 * 100 * 2 ** 30
    assert st["observedGeneration"] == cc["metadata"]["generation"]
    deployments = {d.metadata.name: d for d in custom[2].list_namespaced_deployment(NS).items}
    assert {"rook-ceph-mon-a", "rook-ceph-mon-b", "rook-ceph-mon-c", "rook-ceph-mgr-a", "rook-ceph-osd-0", "rook-ceph-osd-1",
            "rook-ceph-osd-2"} <= set(deployments)
    mons = [deployments["rook-ceph-mon-" + m] for m in "abc"]
    assert len({d.spec.template.spec.node_selector["kubernetes.io/hostname"] for d in mons}) == 3
    assert mons[0].metadata.labels["app"] == "rook-ceph-mon" and mons[0].metadata.labels["rook_cluster"] == NS
    secret = custom[1].read_namespaced_secret("rook-ceph-mon", NS)
    assert "ceph.rook.io/disaster-protection" in secret.metadata.finalizers
    assert base64.b64decode(secret.data["fsid"]).decode() == st["ceph"]["fsid"]
    endpoints = custom[1].read_namespaced_config_map("rook-ceph-mon-endpoints", NS)
    assert endpoints.data["data"].count(":6789") == 3


def test_injected_health_err_shows_in_status_ceph_but_not_in_the_phase(rook_lab, custom):
    rook_lab.cli("rook", "health", "c1", "HEALTH_ERR", "--message", "2 pgs inactive")
    cc = wait(lambda: (lambda c: c if c["status"]["ceph"]["health"] == "HEALTH_ERR" else None)(get_cluster(custom)), "HEALTH_ERR")
    assert cc["status"]["phase"] == "Ready"  # Rook never flips the phase on health
    assert any(d["message"] == "2 pgs inactive" for d in cc["status"]["ceph"]["details"].values())
    assert cc["status"]["ceph"]["previousHealth"] == "HEALTH_OK"
    rook_lab.cli("rook", "health", "c1", "HEALTH_OK")
    wait(lambda: get_cluster(custom)["status"]["ceph"]["health"] == "HEALTH_OK", "health back")


def test_an_image_change_rolls_the_daemons_with_health_warn_during_the_roll(custom):
    """Rook's upgrade: each daemon restarts on the new image in turn; Ceph says HEALTH_WARN while one is down."""
    from kubernetes import watch
    start = get_cluster(custom)["metadata"]["resourceVersion"]
    new_image = "quay.io/ceph/ceph:v20.2.5"
    custom[0].patch_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", "rook-ceph", {"spec": {"cephVersion": {"image": new_image}}})
    seen = []
    stream = watch.Watch()
    for event in stream.stream(custom[0].list_namespaced_custom_object, GROUP, VERSION, NS, "cephclusters",
                               resource_version=start, timeout_seconds=60):
        st = event["object"].get("status") or {}
        ceph = st.get("ceph") or {}
        seen.append((ceph.get("health"), tuple(sorted(ceph.get("details") or {}))))
        if st.get("version", {}).get("image") == new_image and ceph.get("health") == "HEALTH_OK" and \
                any(health == "HEALTH_WARN" for health, _details in seen):
            stream.stop()
    assert ("HEALTH_WARN", ("MON_DOWN",)) in seen and seen[-1] == ("HEALTH_OK", ()), seen
    cc = get_cluster(custom)
    assert cc["status"]["version"] == {"image": new_image, "version": "20.2.5-0"} and cc["status"]["phase"] == "Ready"
    assert all(d.spec.template.spec.containers[0].image == new_image for d in custom[2].list_namespaced_deployment(
        NS, label_selector="rook_cluster=%s" % NS).items if d.metadata.labels.get("app", "").startswith("rook-ceph-m"))


def test_a_pool_its_class_and_a_ceph_backed_volume(rook_lab, custom):
    custom[0].create_namespaced_custom_object(GROUP, VERSION, NS, "cephblockpools", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephBlockPool", "metadata": {"name": "replicapool", "namespace": NS},
        "spec": {"failureDomain": "host", "replicated": {"size": 3}}})
    pool = wait(lambda: (lambda p: p if (p.get("status") or {}).get("phase") == "Ready" else None)(
        custom[0].get_namespaced_custom_object(GROUP, VERSION, NS, "cephblockpools", "replicapool")), "pool Ready")
    assert pool["status"]["info"] == {"type": "Replicated", "failureDomain": "host"}
    storage = client.StorageV1Api(rook_lab.api("c1"))
    storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "rook-ceph-block"},
                                  "provisioner": "rook-ceph.rbd.csi.ceph.com", "reclaimPolicy": "Delete",
                                  "parameters": {"clusterID": NS, "pool": "replicapool", "imageFormat": "2",
                                                 "imageFeatures": "layering"}})
    custom[1].create_namespaced_persistent_volume_claim("default", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "rook-ceph-block", "resources": {"requests": {"storage": "2Gi"}}}})
    claim = wait(lambda: (lambda c: c if c.status.phase == "Bound" else None)(
        custom[1].read_namespaced_persistent_volume_claim("data", "default")), "claim Bound")
    pv = custom[1].read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.csi.driver == "rook-ceph.rbd.csi.ceph.com"
    assert pv.spec.csi.volume_attributes["clusterID"] == NS and pv.spec.csi.volume_attributes["pool"] == "replicapool"
    rook_lab.cli("volume", "put", "--cluster", "c1", "--namespace", "default", "--pvc", "data", "--text", "ceph bytes", "/hello.txt")
    assert "ceph bytes" in rook_lab.cli("volume", "get", "--cluster", "c1", "--namespace", "default", "--pvc", "data", "/hello.txt").stdout
    assert (rook_lab.dir / "volumes" / "c1" / pv.metadata.name / "hello.txt").read_text().startswith("ceph bytes")
    used = wait(lambda: get_cluster(custom)["status"]["ceph"]["capacity"]["bytesUsed"], "capacity used")
    assert used == 2 * 2 ** 30


def test_deleting_the_cluster_waits_for_dependents_and_volumes_then_cleans_up(rook_lab, custom):
    patch = {"spec": {"cleanupPolicy": {"confirmation": "yes-really-destroy-data"}}}
    custom[0].patch_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", "rook-ceph", patch)
    custom[0].delete_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", "rook-ceph")
    blocked = wait(lambda: (lambda c: c if any(x["type"] == "DeletionIsBlocked" and x["status"] == "True"
                                              for x in c["status"].get("conditions", [])) else None)(get_cluster(custom)), "blocked")
    message = next(x["message"] for x in blocked["status"]["conditions"] if x["type"] == "DeletionIsBlocked")
    assert message == ('CephCluster "rook-ceph/rook-ceph" will not be deleted until all dependents are removed: '
                       "CephBlockPool: [replicapool]")
    assert blocked["status"]["phase"] == "Deleting"
    custom[1].delete_namespaced_persistent_volume_claim("data", "default")
    wait(lambda: not [p for p in custom[1].list_persistent_volume().items if p.spec.csi], "Rook PV deleted")
    custom[0].delete_namespaced_custom_object(GROUP, VERSION, NS, "cephblockpools", "replicapool")
    wait(lambda: not custom[0].list_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters")["items"], "cluster gone")
    jobs = client.BatchV1Api(rook_lab.api("c1")).list_namespaced_job(NS).items
    assert sorted(j.metadata.name for j in jobs) == ["cluster-cleanup-job-c1-node-1", "cluster-cleanup-job-c1-node-2",
                                                     "cluster-cleanup-job-c1-node-3"]
    # Rook dropped its disaster-protection finalizers, so garbage collection takes the owned objects.
    wait(lambda: not _exists(lambda: custom[1].read_namespaced_secret("rook-ceph-mon", NS)), "rook-ceph-mon collected")
    wait(lambda: not [d for d in custom[2].list_namespaced_deployment(NS).items if d.metadata.name.startswith("rook-ceph-mon")],
         "mons collected")


def test_a_new_cluster_after_a_teardown_without_cleanup_fails_on_the_stale_data_dir(custom):
    # both clusters' mon on the same node (the scheduler picks a canary's node; placement pins it)
    node = sorted(n.metadata.name for n in custom[1].list_node().items)[0]
    on_node = {"mon": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}
    custom[0].create_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", cluster_body("second", mon={"count": 1},
                                                                                              placement=on_node))
    wait(lambda: (get_cluster(custom, "second").get("status") or {}).get("phase") == "Ready", "second Ready")
    custom[0].delete_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", "second")  # no cleanup policy
    wait(lambda: not custom[0].list_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters")["items"], "second gone")
    wait(lambda: not _exists(lambda: custom[1].read_namespaced_secret("rook-ceph-mon", NS)), "owned objects collected")
    custom[0].create_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", cluster_body("third", mon={"count": 1},
                                                                                              placement=on_node))
    seen = []
    try:
        cc = wait(lambda: (lambda c: seen.append(c.get("status")) or (c if (c.get("status") or {}).get("state") == "Error" else None))(
            get_cluster(custom, "third")), "quorum failure")
    except AssertionError as exc:
        raise AssertionError("%s; last status %s; mons %s; endpoints %s" % (exc, seen[-1:], [
            (d.metadata.name, d.spec.template.spec.node_selector) for d in custom[2].list_namespaced_deployment(NS).items
            if "mon" in d.metadata.name], [c.data for c in custom[1].list_namespaced_config_map(NS).items
                                           if c.metadata.name == "rook-ceph-mon-endpoints"])) from None
    assert cc["status"]["message"].endswith("exceeded max retry count waiting for monitors to reach quorum")


def _exists(read):
    try:
        read()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
