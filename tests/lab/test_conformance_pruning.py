"""Empty fields of built-in kinds vanish as the real server's typed structs encode them: Go's
`omitempty` drops empty lists and maps, false, 0 and "" (node taints, unschedulable,
metadata finalizers/labels/annotations, ConfigMap data, pod spec fields, Deployment
minReadySeconds and paused), while fields without the tag and pointer fields stay (containers,
replicas: 0). Custom resources keep what their schema allows. (k8s.io/api core/v1, apps/v1
types.go; apimachinery meta/v1 ObjectMeta)"""
from __future__ import annotations

import json

import pytest
from helpers import unique, wait_for
from kubernetes import client

GROUP = "pruning.fleetdr.io"


def raw(call, *args, **kwargs) -> dict:
    """The object as the server sent it (typed client models fill in absent fields)."""
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


def test_node_taints_and_unschedulable_are_omitted_when_empty(lab_factory):
    # a private lab: cordoning a node of the shared one would disturb other tests
    core = client.CoreV1Api(lab_factory(clusters=1, nodes=1).api("c1"))
    node = core.list_node().items[0].metadata.name
    taint = {"key": "dedicated", "value": "", "effect": "NoSchedule"}
    spec = raw(core.patch_node, node, {"spec": {"taints": [taint], "unschedulable": True}})["spec"]
    assert spec["taints"] == [{"key": "dedicated", "effect": "NoSchedule"}]
    assert spec["unschedulable"] is True
    spec = raw(core.patch_node, node, {"spec": {"taints": [], "unschedulable": False}})["spec"]
    assert "taints" not in spec and "unschedulable" not in spec
    spec = raw(core.read_node, node)["spec"]
    assert "taints" not in spec and "unschedulable" not in spec
    # a node written with them empty never has them
    name = unique("prune-node")
    core.create_node({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": name, "labels": {}, "annotations": {}},
                      "spec": {"taints": [], "unschedulable": False, "podCIDRs": [],
                               "providerID": ""}})
    got = raw(core.read_node, name)
    assert got["spec"] == {}
    assert "labels" not in got["metadata"] and "annotations" not in got["metadata"]


def test_metadata_finalizers_labels_annotations_and_configmap_data(apis, ns):
    apis.core.create_namespaced_config_map(ns, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {}, "annotations": {}, "finalizers": ["x.io/keep"]},
        "data": {}, "binaryData": {}})
    got = raw(apis.core.read_namespaced_config_map, "c", ns)
    assert "data" not in got and "binaryData" not in got
    assert "labels" not in got["metadata"] and "annotations" not in got["metadata"]
    assert got["metadata"]["finalizers"] == ["x.io/keep"]
    got = raw(apis.core.patch_namespaced_config_map, "c", ns,
              [{"op": "replace", "path": "/metadata/finalizers", "value": []}])
    assert "finalizers" not in got["metadata"]
    assert "finalizers" not in raw(apis.core.read_namespaced_config_map, "c", ns)["metadata"]


def test_pod_spec_empty_fields_go_required_lists_stay(apis, ns):
    apis.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "env": [], "ports": [],
                                 "command": [], "stdin": False, "tty": False,
                                 "resources": {"limits": {}, "requests": {}}}],
                 "initContainers": [], "volumes": [], "tolerations": [], "nodeSelector": {},
                 "hostNetwork": False, "hostPID": False, "imagePullSecrets": [],
                 "hostname": "", "terminationGracePeriodSeconds": 0,
                 # else ServiceAccount admission adds the token volume
                 "automountServiceAccountToken": False}})
    got = raw(apis.core.read_namespaced_pod, "p", ns)
    spec = got["spec"]
    for gone in ("initContainers", "volumes", "nodeSelector", "hostNetwork", "hostPID",
                 "imagePullSecrets", "hostname"):
        assert gone not in spec, gone
    # a pointer field keeps its zero value
    assert spec["terminationGracePeriodSeconds"] == 0
    [c] = spec["containers"]
    for gone in ("env", "ports", "command", "stdin", "tty"):
        assert gone not in c, gone
    assert c["resources"] == {}     # a struct: never omitted, its empty maps are


def test_deployment_zero_values_by_their_go_types(apis, ns):
    apis.apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 0, "minReadySeconds": 0, "paused": False,
                 "selector": {"matchLabels": {"app": "d"}, "matchExpressions": []},
                 "template": {"metadata": {"labels": {"app": "d"}, "annotations": {}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    spec = raw(apis.apps.read_namespaced_deployment, "d", ns)["spec"]
    assert spec["replicas"] == 0                        # *int32
    assert "minReadySeconds" not in spec and "paused" not in spec
    assert spec["selector"] == {"matchLabels": {"app": "d"}}
    assert "annotations" not in spec["template"]["metadata"]


@pytest.fixture(scope="module")
def gadgets(apis):
    name = f"gadgets.{GROUP}"
    apis.ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                         "type": "object", "properties": {
                             "taints": {"type": "array", "items": {"type": "string"}},
                             "unschedulable": {"type": "boolean"},
                             "count": {"type": "integer"}, "note": {"type": "string"},
                             "data": {"type": "object",
                                      "additionalProperties": {"type": "string"}}}}}}}}]}})
    wait_for(lambda: any(c.type == "Established" and c.status == "True" for c in
                         apis.ext.read_custom_resource_definition(name).status.conditions or []),
             "Gadget established")
    yield apis.custom
    apis.ext.delete_custom_resource_definition(name)


def test_custom_resources_keep_empty_fields_but_not_empty_metadata(gadgets, ns):
    spec = {"taints": [], "unschedulable": False, "count": 0, "note": "", "data": {}}
    gadgets.create_namespaced_custom_object(GROUP, "v1", ns, "gadgets", {
        "apiVersion": f"{GROUP}/v1", "kind": "Gadget",
        "metadata": {"name": "g", "labels": {}, "finalizers": []}, "spec": spec})
    got = gadgets.get_namespaced_custom_object(GROUP, "v1", ns, "gadgets", "g")
    assert got["spec"] == spec
    assert "labels" not in got["metadata"] and "finalizers" not in got["metadata"]
