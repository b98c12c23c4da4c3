"""JSON patch, JSON merge patch, strategic merge patch (lists by key, directives), apply."""
import pytest

from fleetdr_lab.patching import (PatchError, apply_merge, json_patch, list_strategy,
                                  merge_patch, strategic_merge)


def deploy():
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "old": "x"},
                         "finalizers": ["a/one"]},
            "spec": {"replicas": 1, "template": {"spec": {
                "containers": [
                    {"name": "app", "image": "app:1",
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "name": "http"}],
                     "volumeMounts": [{"name": "d", "mountPath": "/data"}],
                     "args": ["--a", "--b"]},
                    {"name": "side", "image": "side:1"}],
                "volumes": [{"name": "d", "emptyDir": {}}],
                "tolerations": [{"key": "t1"}]}}}}


def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]


# ---- JSON patch / merge patch ------------------------------------------------------------

def test_json_patch_ops():
    out = json_patch(deploy(), [{"op": "replace", "path": "/spec/replicas", "value": 3},
                                {"op": "add", "path": "/metadata/labels/new", "value": "y"},
                                {"op": "remove", "path": "/metadata/labels/old"}])
    assert out["spec"]["replicas"] == 3
    assert out["metadata"]["labels"] == {"app": "web", "new": "y"}


def test_json_patch_errors():
    with pytest.raises(PatchError) as ei:
        json_patch(deploy(), [{"op": "remove", "path": "/spec/nope"}])
    assert ei.value.code == 422
    with pytest.raises(PatchError):
        json_patch(deploy(), [{"op": "test", "path": "/spec/replicas", "value": 2}])
    with pytest.raises(PatchError) as ei:
        json_patch(deploy(), {"op": "add"})
    assert ei.value.code == 400


def test_merge_patch_rfc7386():
    doc = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    out = merge_patch(doc, {"a": "z", "c": {"f": None}, "l": [3], "n": {"x": None, "y": 1}})
    assert out == {"a": "z", "c": {"d": "e"}, "l": [3], "n": {"y": 1}}
    assert doc["c"] == {"d": "e", "f": "g"}          # input untouched


# ---- strategic merge ---------------------------------------------------------------------

def test_smp_merges_containers_by_name_and_nested_lists_by_key():
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:2",
         "env": [{"name": "B", "value": "22"}, {"name": "C", "value": "3"}],
         "ports": [{"containerPort": 443, "name": "https"}],
         "volumeMounts": [{"name": "d", "mountPath": "/data", "readOnly": True}]},
        {"name": "new", "image": "new:1"}]}}}}
    out = strategic_merge(deploy(), patch, "Deployment")
    cs = containers(out)
    assert [c["name"] for c in cs] == ["app", "side", "new"]
    app = cs[0]
    assert app["image"] == "app:2"
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "22"},
                          {"name": "C", "value": "3"}]
    assert [p["containerPort"] for p in app["ports"]] == [80, 443]
    assert app["volumeMounts"] == [{"name": "d", "mountPath": "/data", "readOnly": True}]
    assert app["args"] == ["--a", "--b"]


def test_smp_replaces_lists_without_merge_key():
    patch = {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "args": ["--c"]}],
        "tolerations": [{"key": "t2"}]}}}}
    out = strategic_merge(deploy(), patch, "Deployment")
    assert containers(out)[0]["args"] == ["--c"]
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "t2"}]


def test_smp_null_deletes_and_finalizers_are_a_set():
    out = strategic_merge(deploy(), {"metadata": {"labels": {"old": None},
                                                  "finalizers": ["a/two", "a/one"]}},
                          "Deployment")
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["finalizers"] == ["a/one", "a/two"]


def test_smp_patch_delete_directive_in_list():
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}],
                                            "volumes": [{"name": "d", "$patch": "delete"}]}}}}
    out = strategic_merge(deploy(), patch, "Deployment")
    assert [c["name"] for c in containers(out)] == ["app"]
    assert out["spec"]["template"]["spec"]["volumes"] == []


def test_smp_patch_replace_directive():
    out = strategic_merge(deploy(), {"metadata": {"labels": {"$patch": "replace", "only": "1"}}},
                          "Deployment")
    assert out["metadata"]["labels"] == {"only": "1"}
    patch = {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "solo", "image": "s:1"}]}}}}
    out = strategic_merge(deploy(), patch, "Deployment")
    assert containers(out) == [{"name": "solo", "image": "s:1"}]


def test_smp_patch_delete_directive_on_map():
    out = strategic_merge(deploy(), {"spec": {"template": {"$patch": "delete"}}}, "Deployment")
    assert "template" not in out["spec"]


def test_smp_delete_from_primitive_list():
    out = strategic_merge(deploy(), {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                                  ["a/one"]}}, "Deployment")
    assert out["metadata"]["finalizers"] == []


def test_smp_set_element_order():
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
        "containers": [{"name": "app", "image": "app:3"}]}}}}
    out = strategic_merge(deploy(), patch, "Deployment")
    assert [c["name"] for c in containers(out)] == ["side", "app"]
    assert containers(out)[1]["image"] == "app:3"


def test_smp_retain_keys():
    doc = {"spec": {"strategy": {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge(doc, patch, "Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_service_ports_merge_by_port():
    svc = {"kind": "Service", "spec": {"ports": [{"port": 80, "name": "http"},
                                                 {"port": 443, "name": "https"}]}}
    out = strategic_merge(svc, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}},
                          "Service")
    assert out["spec"]["ports"] == [{"port": 80, "name": "http"},
                                    {"port": 443, "name": "https", "targetPort": 8443}]


def test_smp_conditions_merge_by_type():
    doc = {"status": {"conditions": [{"type": "Ready", "status": "False"},
                                     {"type": "Progressing", "status": "True"}]}}
    out = strategic_merge(doc, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                          "Deployment")
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                           {"type": "Progressing", "status": "True"}]


def test_smp_missing_merge_key_is_an_error():
    with pytest.raises(PatchError):
        strategic_merge(deploy(), {"spec": {"template": {"spec": {"containers": [
            {"image": "x"}]}}}}, "Deployment")


def test_list_strategy_table():
    assert list_strategy(("spec", "template", "spec", "containers"), "Deployment") == \
        ("merge", "name")
    assert list_strategy(("spec", "containers", "ports"), "Pod") == ("merge", "containerPort")
    assert list_strategy(("spec", "ports"), "Service") == ("merge", "port")
    assert list_strategy(("metadata", "finalizers"), "Pod") == ("set", None)
    assert list_strategy(("spec", "finalizers"), "Namespace") == ("replace", None)
    assert list_strategy(("metadata", "ownerReferences"), "Pod") == ("merge", "uid")


# ---- apply ------------------------------------------------------------------------------

def test_apply_merge_builtin_and_custom():
    out = apply_merge(deploy(), {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "app:9"}]}}}}, "Deployment", builtin=True)
    assert [c["name"] for c in containers(out)] == ["app", "side"]
    assert containers(out)[0]["image"] == "app:9"
    cr = {"spec": {"items": [1, 2], "keep": "x"}}
    out = apply_merge(cr, {"spec": {"items": [3]}}, "Widget", builtin=False)
    assert out == {"spec": {"items": [3], "keep": "x"}}
