"""The Rook facts that are easy to get wrong (Rook v1.20), each checked against the emulated operator:
mon/mgr count defaults and even counts (6), daemon labels and placement merging (7), storage node names
and zero OSDs (8), driver and provisioner names from the operator vs the cluster namespace (9), the
immutable dataDirHostPath (CEL) and the forbidden data dirs that leave no status (14), operator settings from the ConfigMap over the
Deployment's env and ROOK_CURRENT_NAMESPACE_ONLY (16), mgr modules that never fail a reconcile (18).
Facts 1-5, 10-13, 15 and 17 are in test_cluster.py, test_filesystem.py and test_objectstore.py."""
from __future__ import annotations

import json
import time

import pytest
from helpers import wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

GROUP, VERSION = "ceph.rook.io", "v1"
IMAGE = "quay.io/ceph/ceph:v20.2.4"


def cluster(namespace, data_dir, **spec):
    body = {"cephVersion": {"image": IMAGE}, "dataDirHostPath": data_dir, "storage": {"useAllNodes": False}}
    body.update(spec)
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CephCluster", "metadata": {"name": "rook-ceph", "namespace": namespace},
            "spec": body}


def create_in(core, custom, namespace, body):
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "cephclusters", body)


def status_of(custom, namespace):
    return custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "cephclusters", "rook-ceph").get("status") or {}


def ready(custom, namespace):
    return lambda: (lambda st: st if st.get("phase") == "Ready" and (st.get("ceph") or {}).get("health") else None)(
        status_of(custom, namespace))


def deployments(apps, namespace, selector):
    return {d.metadata.name: d for d in apps.list_namespaced_deployment(namespace, label_selector=selector).items}


@pytest.fixture(scope="module")
def facts(ceph_lab, ceph_apis):
    """A second CephCluster, in namespace rook-facts: counts 0, labels, placement, mgr modules, a storage
    node that does not exist."""
    custom, core, _storage = ceph_apis
    apps = client.AppsV1Api(core.api_client)
    nodes = [n.metadata.labels["kubernetes.io/hostname"] for n in core.list_node().items]
    all_affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}
    mon_affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}}
    create_in(core, custom, "rook-facts", cluster(
        "rook-facts", "/var/lib/rook-facts", mon={"count": 0}, mgr={"count": 0, "modules": [
            {"name": "pg_autoscaler", "enabled": True}, {"name": "no-such-module", "enabled": True}, {"name": "dashboard", "enabled": True}]},
        labels={"all": {"app": "not-rook", "tier": "storage"}, "mon": {"team": "ceph"}},
        placement={"all": {"nodeAffinity": all_affinity, "tolerations": [{"key": "storage", "operator": "Exists"}]},
                   "mon": {"nodeAffinity": mon_affinity, "tolerations": [{"key": "mons", "operator": "Exists"}]}},
        storage={"useAllNodes": False, "nodes": [{"name": "no-such-host", "devices": [{"name": "vdb"}]}]}))
    status = wait_for(ready(custom, "rook-facts"), "rook-facts Ready with health", timeout=60)
    return custom, core, apps, status, all_affinity, mon_affinity


def test_mon_and_mgr_count_zero_mean_three_and_one(facts):
    _custom, _core, apps, _status, _all, _mon = facts
    assert sorted(deployments(apps, "rook-facts", "app=rook-ceph-mon")) == ["rook-ceph-mon-a", "rook-ceph-mon-b", "rook-ceph-mon-c"]
    assert sorted(deployments(apps, "rook-facts", "app=rook-ceph-mgr")) == ["rook-ceph-mgr-a"]


def test_an_even_mon_count_is_accepted_silently(ceph_apis):
    custom, core, _storage = ceph_apis
    create_in(core, custom, "rook-even", cluster("rook-even", "/var/lib/rook-even", mon={"count": 2}, mgr={"count": 1}))
    status = wait_for(ready(custom, "rook-even"), "rook-even Ready", timeout=60)
    assert status["state"] == "Created" and not status.get("message", "").lower().startswith("failed")
    apps = client.AppsV1Api(core.api_client)
    assert sorted(deployments(apps, "rook-even", "app=rook-ceph-mon")) == ["rook-ceph-mon-a", "rook-ceph-mon-b"]


def test_spec_labels_label_the_pods_and_placement_merges_like_rook(facts):
    _custom, _core, apps, _status, _all, mon_affinity = facts
    mon = deployments(apps, "rook-facts", "app=rook-ceph-mon")["rook-ceph-mon-a"]
    labels = mon.spec.template.metadata.labels
    assert labels["team"] == "ceph" and labels["tier"] == "storage"
    assert labels["app"] == "rook-ceph-mon"  # spec.labels never overwrite Rook's own keys
    pod = client.ApiClient().sanitize_for_serialization(mon.spec.template.spec)
    # the mon's own nodeAffinity replaces placement.all's; tolerations add up
    assert pod["affinity"]["nodeAffinity"] == mon_affinity
    assert [t["key"] for t in pod["tolerations"]] == ["storage", "mons"]
    mgr = deployments(apps, "rook-facts", "app=rook-ceph-mgr")["rook-ceph-mgr-a"]
    assert "team" not in mgr.spec.template.metadata.labels and mgr.spec.template.metadata.labels["tier"] == "storage"
    assert [t["key"] for t in client.ApiClient().sanitize_for_serialization(mgr.spec.template.spec)["tolerations"]] == ["storage"]


def test_storage_nodes_are_matched_by_hostname_and_zero_osds_is_no_error(facts):
    _custom, _core, apps, status, _all, _mon = facts
    assert not deployments(apps, "rook-facts", "app=rook-ceph-osd")
    assert status["phase"] == "Ready" and status["state"] == "Created"
    assert status["ceph"]["health"] == "HEALTH_WARN" and "TOO_FEW_OSDS" in status["ceph"]["details"]


def test_mgr_modules_never_fail_a_reconcile(facts):
    _custom, core, _apps, status, _all, _mon = facts
    assert status["phase"] == "Ready"
    failures = [e for e in core.list_namespaced_event("rook-facts").items if e.type == "Warning" and "module" in (e.message or "")]
    assert not failures


def test_driver_names_come_from_the_operator_namespace_and_bucket_provisioners_from_the_cluster_namespace(facts):
    custom, core, _apps, _status, _all, _mon = facts
    storage = client.StorageV1Api(core.api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, "rook-facts", "cephblockpools", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephBlockPool", "metadata": {"name": "factpool", "namespace": "rook-facts"},
        "spec": {"replicated": {"size": 1, "requireSafeReplicaSize": False}}})
    wait_for(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, "rook-facts", "cephblockpools", "factpool").get("status")
                      or {}).get("phase") == "Ready", "factpool Ready")
    for name, provisioner in (("facts-block", "rook-ceph.rbd.csi.ceph.com"), ("facts-wrong-driver", "rook-facts.rbd.csi.ceph.com")):
        storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
                                      "provisioner": provisioner, "reclaimPolicy": "Delete",
                                      "parameters": {"clusterID": "rook-facts", "pool": "factpool"}})
        core.create_namespaced_persistent_volume_claim("rook-facts", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": name, "resources": {"requests": {"storage": "1Gi"}}}})
    claim = wait_for(lambda: (lambda c: c if c.status.phase == "Bound" else None)(
        core.read_namespaced_persistent_volume_claim("facts-block", "rook-facts")), "facts-block Bound")
    assert core.read_persistent_volume(claim.spec.volume_name).spec.csi.volume_attributes["clusterID"] == "rook-facts"
    # a driver named after the cluster namespace does not exist: nobody provisions, nobody reports
    assert core.read_namespaced_persistent_volume_claim("facts-wrong-driver", "rook-facts").status.phase == "Pending"
    assert not [e for e in core.list_namespaced_event("rook-facts").items if e.involved_object.name == "facts-wrong-driver"]
    # the bucket provisioner of this cluster is <cluster namespace>.ceph.rook.io/bucket
    custom.create_namespaced_custom_object(GROUP, VERSION, "rook-facts", "cephobjectstores", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "CephObjectStore", "metadata": {"name": "facts-store", "namespace": "rook-facts"},
        "spec": {"metadataPool": {"replicated": {"size": 1}}, "dataPool": {"replicated": {"size": 1}}, "gateway": {"port": 80}}})
    storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "facts-bucket"},
                                  "provisioner": "rook-facts.ceph.rook.io/bucket", "reclaimPolicy": "Delete",
                                  "parameters": {"objectStoreName": "facts-store", "objectStoreNamespace": "rook-facts"}})
    custom.create_namespaced_custom_object("objectbucket.io", "v1alpha1", "rook-facts", "objectbucketclaims", {
        "apiVersion": "objectbucket.io/v1alpha1", "kind": "ObjectBucketClaim", "metadata": {"name": "facts", "namespace": "rook-facts"},
        "spec": {"generateBucketName": "facts", "storageClassName": "facts-bucket"}})
    wait_for(lambda: (custom.get_namespaced_custom_object("objectbucket.io", "v1alpha1", "rook-facts", "objectbucketclaims", "facts")
                      .get("status") or {}).get("phase") == "Bound", "the claim Bound by rook-facts' provisioner", timeout=60)


def test_data_dir_host_path_is_immutable(facts):
    custom = facts[0]
    with pytest.raises(ApiException) as caught:
        custom.patch_namespaced_custom_object(GROUP, VERSION, "rook-facts", "cephclusters", "rook-ceph",
                                              {"spec": {"dataDirHostPath": "/var/lib/elsewhere"}})
    assert caught.value.status == 422
    assert 'spec.dataDirHostPath: Invalid value: "string": DataDirHostPath is immutable' in json.loads(caught.value.body)["message"]
    assert custom.get_namespaced_custom_object(GROUP, VERSION, "rook-facts", "cephclusters", "rook-ceph")["spec"][
        "dataDirHostPath"] == "/var/lib/rook-facts"


def test_a_forbidden_data_dir_leaves_no_status_at_all(ceph_apis):
    custom, core, _storage = ceph_apis
    create_in(core, custom, "rook-forbidden", cluster("rook-forbidden", "/rook", mon={"count": 1}))
    # a cluster created after it gets its status: by then the operator has looked at the forbidden one
    create_in(core, custom, "rook-after", cluster("rook-after", "/var/lib/rook-after", mon={"count": 1}))
    wait_for(lambda: status_of(custom, "rook-after").get("phase"), "a status on the later cluster")
    assert status_of(custom, "rook-forbidden") == {}


def test_operator_settings_come_from_the_configmap_over_the_env_and_current_namespace_only_defaults_true(lab_factory):
    lab = lab_factory(clusters=1, nodes=1, extra=("--devices", "1"))
    lab.install_rook()
    api = lab.api("c1")
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    env = apps.read_namespaced_deployment("rook-ceph-operator", "rook-ceph").spec.template.spec.containers[0].env
    assert {"ROOK_CURRENT_NAMESPACE_ONLY": "false"}.items() <= dict((e.name, e.value) for e in env).items()
    # the ConfigMap says "true": it wins over the Deployment's "false"
    core.patch_namespaced_config_map("rook-ceph-operator-config", "rook-ceph", {"data": {"ROOK_CURRENT_NAMESPACE_ONLY": "true"}})
    create_in(core, custom, "elsewhere", cluster("elsewhere", "/var/lib/rook-elsewhere", mon={"count": 1}, mgr={"count": 1}))
    custom.create_namespaced_custom_object(GROUP, VERSION, "rook-ceph", "cephclusters",
                                           cluster("rook-ceph", "/var/lib/rook", mon={"count": 1}, mgr={"count": 1}))
    wait_for(lambda: status_of(custom, "rook-ceph").get("phase"), "the operator's own namespace reconciled")
    assert status_of(custom, "elsewhere") == {}
    # no setting anywhere (the env goes first, so that "false" never applies): the code default is "true" as well
    apps.patch_namespaced_deployment("rook-ceph-operator", "rook-ceph", [
        {"op": "replace", "path": "/spec/template/spec/containers/0/env",
         "value": [client.ApiClient().sanitize_for_serialization(e) for e in env if e.name != "ROOK_CURRENT_NAMESPACE_ONLY"]}])
    core.patch_namespaced_config_map("rook-ceph-operator-config", "rook-ceph", {"data": {"ROOK_CURRENT_NAMESPACE_ONLY": None}})
    wait_for(lambda: all(p.metadata.deletion_timestamp is None and p.status.phase == "Running"
                         for p in core.list_namespaced_pod("rook-ceph", label_selector="app=rook-ceph-operator").items),
             "the operator rolled")
    assert status_of(custom, "elsewhere") == {}
    # the ConfigMap says "false": every namespace
    core.patch_namespaced_config_map("rook-ceph-operator-config", "rook-ceph", {"data": {"ROOK_CURRENT_NAMESPACE_ONLY": "false"}})
    wait_for(lambda: status_of(custom, "elsewhere").get("phase"), "the other namespace reconciled once the ConfigMap allows it")
    api.close()


def test_mons_a_placement_cannot_hold_wait_150_s_of_canaries_then_fail_to_schedule(ceph_lab, ceph_apis):
    """Rook cluster/mon/mon.go: a canary Deployment per new mon, anti-affine to other mons; the node
    count check passed (3 nodes for 3 mons) but the placement admits 2, so the third canary stays
    Pending and, 30 x 5 s later, the reconcile fails with "failed to schedule mons"."""
    custom, core, _storage = ceph_apis
    apps = client.AppsV1Api(core.api_client)
    hosts = sorted(n.metadata.labels["kubernetes.io/hostname"] for n in core.list_node().items)
    two = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": hosts[:2]}]}]}}
    create_in(core, custom, "rook-canary", cluster("rook-canary", "/var/lib/rook-canary", mon={"count": 3}, mgr={"count": 1},
                                                  placement={"mon": {"nodeAffinity": two}}))

    def canaries():
        # the third canary counts once the scheduler has tried it (its PodScheduled condition):
        # two bound pods can be listed before that attempt
        pods = core.list_namespaced_pod("rook-canary", label_selector="mon_canary=true").items
        tried = all(p.spec.node_name or p.status.conditions for p in pods)
        return pods if len(pods) == 3 and sum(1 for p in pods if p.spec.node_name) == 2 and tried else None

    pods = wait_for(canaries, "three canary pods, two scheduled, the third tried")
    assert sorted(deployments(apps, "rook-canary", "mon_canary=true")) == [
        "rook-ceph-mon-a-canary", "rook-ceph-mon-b-canary", "rook-ceph-mon-c-canary"]
    assert len({p.spec.node_name for p in pods if p.spec.node_name}) == 2  # anti-affine: one mon per node
    pending = next(p for p in pods if not p.spec.node_name)
    condition = next(c for c in pending.status.conditions if c.type == "PodScheduled")
    assert condition.reason == "Unschedulable" and "2 node(s) didn't match pod anti-affinity rules" in condition.message
    assert "1 node(s) didn't match Pod's node affinity/selector" in condition.message
    time.sleep(2)  # no failure before the canaries' time is up
    status = status_of(custom, "rook-canary")
    assert status["phase"] == "Progressing" and status["state"] == "Creating" and status["message"] == "Configuring Ceph Mons"
    assert not deployments(apps, "rook-canary", "app=rook-ceph-mon,!mon_canary")  # no mon before placement is known

    ceph_lab.cli("clock", "advance", "151s")
    status = wait_for(lambda: (lambda st: st if "failed to schedule mons" in st.get("message", "") else None)(
        status_of(custom, "rook-canary")), "failed to schedule mons")
    assert status["phase"] == "Progressing" and status["state"] == "Error"
    assert status["message"] == "failed to create cluster: failed to start ceph monitors: failed to assign pods to mons: failed to schedule mons"

    # the placement fixed: the retry's canaries get three nodes and the mons follow them
    custom.patch_namespaced_custom_object(GROUP, VERSION, "rook-canary", "cephclusters", "rook-ceph",
                                          {"spec": {"placement": {"mon": None}}})
    ceph_lab.cli("clock", "advance", "151s")  # canaries of a retry started before the fix time out once more
    wait_for(ready(custom, "rook-canary"), "rook-canary Ready", timeout=60)
    mons = deployments(apps, "rook-canary", "app=rook-ceph-mon")
    assert sorted(mons) == ["rook-ceph-mon-a", "rook-ceph-mon-b", "rook-ceph-mon-c"]  # canaries deleted
    placed = {name: d.spec.template.spec.node_selector["kubernetes.io/hostname"] for name, d in mons.items()}
    assert sorted(placed.values()) == hosts
    mapping = json.loads(core.read_namespaced_config_map("rook-ceph-mon-endpoints", "rook-canary").data["mapping"])
    assert {"rook-ceph-mon-" + mid: entry["Name"] for mid, entry in mapping["node"].items()} == placed
