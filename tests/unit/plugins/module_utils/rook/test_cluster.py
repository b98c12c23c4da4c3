"""The CephCluster the rook_cluster options make, and the checks that run before any write."""
import copy

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import cluster, placement

BASE = {"name": "rook-ceph", "namespace": "rook-ceph", "state": "present", "data_dir_host_path": "/var/lib/rook",
        "monitor": {}, "manager": {}, "storage": {}, "ceph_image": cluster.DEFAULT_CEPH_IMAGE, "allow_unsupported": False,
        "cleanup_policy": None, "dashboard": False, "extra_spec": {}, "health_ok": ["HEALTH_OK", "HEALTH_WARN"]}


def params(**overrides):
    out = copy.deepcopy(BASE)
    out.update(overrides)
    return out


def node(name, labels=None, taints=None, unschedulable=False, hostname=None):
    metadata = {"name": name, "labels": dict({placement.HOSTNAME_LABEL: hostname or name}, **(labels or {}))}
    spec = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": metadata, "spec": spec}


STORAGE_ONLY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "role", "operator": "In", "values": ["storage"]}]}]}}}


def test_defaults_make_rooks_example_cluster():
    obj = cluster.build(params())
    assert obj["apiVersion"] == "ceph.rook.io/v1" and obj["kind"] == "CephCluster"
    spec = obj["spec"]
    assert spec["mon"] == {"count": 3, "allowMultiplePerNode": False}
    assert spec["mgr"] == {"count": 2, "allowMultiplePerNode": False}
    assert spec["storage"] == {"useAllNodes": True, "useAllDevices": True}
    assert spec["dataDirHostPath"] == "/var/lib/rook"
    assert spec["cephVersion"]["image"] == cluster.DEFAULT_CEPH_IMAGE


def test_kurator_style_labels_and_placement_map_like_kurator():
    obj = cluster.build(params(monitor={"count": 5, "labels": {"team": "storage"}, "placement": STORAGE_ONLY},
                               manager={"count": 1, "annotations": {"a": "b"}}))
    spec = obj["spec"]
    assert spec["labels"] == {"mon": {"team": "storage"}}
    assert spec["placement"] == {"mon": STORAGE_ONLY}
    assert spec["annotations"] == {"mgr": {"a": "b"}}
    assert spec["mon"]["count"] == 5 and spec["mgr"]["count"] == 1


def test_storage_nodes_turn_use_all_nodes_off_and_map_devices():
    obj = cluster.build(params(storage={"nodes": [{"name": "n1", "devices": ["sdb", "sdc"]}, {"name": "n2", "device_filter": "^sd"}]}))
    assert obj["spec"]["storage"]["useAllNodes"] is False
    assert obj["spec"]["storage"]["nodes"] == [{"name": "n1", "devices": [{"name": "sdb"}, {"name": "sdc"}]},
                                               {"name": "n2", "deviceFilter": "^sd"}]


def test_extra_spec_merges_deep():
    obj = cluster.build(params(extra_spec={"mon": {"failureDomainLabel": "zone"}, "network": {"provider": "host"}}))
    assert obj["spec"]["mon"] == {"count": 3, "allowMultiplePerNode": False, "failureDomainLabel": "zone"}
    assert obj["spec"]["network"] == {"provider": "host"}


def test_cleanup_policy_fields_use_rooks_names():
    sanitize = {"method": "quick", "data_source": "zero", "iteration": 1}
    obj = cluster.build(params(cleanup_policy={"confirmation": "", "sanitize_disks": sanitize, "allow_uninstall_with_volumes": False}))
    assert obj["spec"]["cleanupPolicy"] == {"confirmation": "", "sanitizeDisks": {"method": "quick", "dataSource": "zero", "iteration": 1},
                                            "allowUninstallWithVolumes": False}


@pytest.mark.parametrize("overrides, option, text", [
    ({"monitor": {"count": 4}}, "monitor.count", "odd"),
    ({"monitor": {"count": 11}}, "monitor.count", "between 1 and 9"),
    ({"monitor": {"count": 0}}, "monitor.count", "between 1 and 9"),
    ({"manager": {"count": 6}}, "manager.count", "between 1 and 5"),
    ({"data_dir_host_path": "var/lib/rook"}, "data_dir_host_path", "absolute"),
    ({"data_dir_host_path": "/etc/ceph/"}, "data_dir_host_path", "reserved"),
    ({"storage": {"device_filter": "sd[b"}}, "storage.device_filter", "regular expression"),
    ({"storage": {"nodes": [{"name": "a"}, {"name": "a"}]}}, "storage.nodes", "more than once"),
    ({"storage": {"use_all_nodes": True, "nodes": [{"name": "a"}]}}, "storage.use_all_nodes", "ignore"),
])
def test_bad_options_are_refused_naming_the_option(overrides, option, text):
    with pytest.raises(ValidationError) as caught:
        cluster.build(params(**overrides))
    assert caught.value.option == option
    assert text in caught.value.msg


def test_too_few_nodes_for_the_mons_uses_rooks_words():
    obj = cluster.build(params())
    with pytest.raises(ValidationError) as caught:
        cluster.check_against_cluster(obj, [node("n1"), node("n2")])
    assert caught.value.option == "monitor.count"
    assert "cannot start 3 mons on 2 node(s) when allow_multiple_per_node is false" in caught.value.msg


def test_allow_multiple_per_node_lifts_the_node_count():
    obj = cluster.build(params(monitor={"count": 3, "allow_multiple_per_node": True}, manager={"count": 2, "allow_multiple_per_node": True}))
    cluster.check_against_cluster(obj, [node("n1")])


def test_mgrs_need_their_own_nodes_too():
    obj = cluster.build(params(monitor={"count": 1}, manager={"count": 2}))
    with pytest.raises(ValidationError) as caught:
        cluster.check_against_cluster(obj, [node("n1")])
    assert caught.value.option == "manager.count"
    assert "only 1 of 1 node(s)" in caught.value.msg


def test_placement_that_no_node_satisfies_is_refused():
    obj = cluster.build(params(monitor={"count": 1, "placement": STORAGE_ONLY}, manager={"count": 1}))
    with pytest.raises(ValidationError) as caught:
        cluster.check_against_cluster(obj, [node("n1"), node("n2")])
    assert caught.value.option == "monitor.placement"


def test_placement_that_too_few_nodes_satisfy_names_them():
    obj = cluster.build(params(monitor={"count": 3, "placement": STORAGE_ONLY}, manager={"count": 1}))
    nodes = [node("n1", {"role": "storage"}), node("n2", {"role": "storage"}), node("n3"), node("n4")]
    with pytest.raises(ValidationError) as caught:
        cluster.check_against_cluster(obj, nodes)
    assert "only 2 of 4 node(s) do (n1, n2)" in caught.value.msg


def test_taints_count_unless_tolerated_and_all_tolerations_add_up():
    taint = [{"key": "storage-only", "value": "true", "effect": "NoSchedule"}]
    nodes = [node("n1", taints=taint), node("n2", taints=taint), node("n3", taints=taint)]
    obj = cluster.build(params(manager={"count": 1}))
    with pytest.raises(ValidationError):
        cluster.check_against_cluster(obj, nodes)
    tolerated = cluster.build(params(manager={"count": 1},
                                     extra_spec={"placement": {"all": {"tolerations": [{"key": "storage-only", "operator": "Exists"}]}}}))
    cluster.check_against_cluster(tolerated, nodes)


def test_cordoned_nodes_do_not_host_daemons():
    obj = cluster.build(params(monitor={"count": 1}, manager={"count": 1}))
    with pytest.raises(ValidationError):
        cluster.check_against_cluster(obj, [node("n1", unschedulable=True)])


def test_storage_nodes_must_be_hostnames():
    obj = cluster.build(params(monitor={"count": 1}, manager={"count": 1}, storage={"nodes": [{"name": "node-1"}]}))
    with pytest.raises(ValidationError) as caught:
        cluster.check_against_cluster(obj, [node("node-1", hostname="node-1.example.com")])
    assert caught.value.option == "storage.nodes"
    assert "node-1.example.com" in caught.value.msg


def test_data_dir_host_path_is_immutable():
    obj = cluster.build(params(data_dir_host_path="/data/rook", monitor={"count": 1}, manager={"count": 1}))
    existing = {"spec": {"dataDirHostPath": "/var/lib/rook"}}
    with pytest.raises(ValidationError) as caught:
        cluster.check_against_cluster(obj, [node("n1")], existing)
    assert caught.value.option == "data_dir_host_path"
    assert "immutable" in caught.value.msg


def test_destroy_confirmation_on_a_new_cluster_is_refused():
    obj = cluster.build(params(monitor={"count": 1}, manager={"count": 1}, cleanup_policy={"confirmation": cluster.DESTROY_DATA}))
    with pytest.raises(ValidationError) as caught:
        cluster.check_against_cluster(obj, [node("n1")])
    assert caught.value.option == "cleanup_policy.confirmation"


def test_daemon_nodeaffinity_replaces_alls_and_tolerations_add_up():
    merged = placement.merged({"all": {"nodeAffinity": {"x": 1}, "tolerations": [{"key": "a"}]},
                               "mon": {"nodeAffinity": {"y": 2}, "tolerations": [{"key": "b"}]}}, "mon")
    assert merged["nodeAffinity"] == {"y": 2}
    assert merged["tolerations"] == [{"key": "a"}, {"key": "b"}]


@pytest.mark.parametrize("expression, allowed", [
    ({"key": "zone", "operator": "In", "values": ["a"]}, ["n1"]),
    ({"key": "zone", "operator": "NotIn", "values": ["a"]}, ["n2", "n3"]),
    ({"key": "zone", "operator": "Exists"}, ["n1", "n2"]),
    ({"key": "zone", "operator": "DoesNotExist"}, ["n3"]),
    ({"key": "disks", "operator": "Gt", "values": ["2"]}, ["n2"]),
    ({"key": "disks", "operator": "Lt", "values": ["2"]}, ["n1"]),
])
def test_node_affinity_operators(expression, allowed):
    nodes = [node("n1", {"zone": "a", "disks": "1"}), node("n2", {"zone": "b", "disks": "4"}), node("n3")]
    rule = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}}}
    assert placement.allowed_nodes(rule, nodes) == allowed
