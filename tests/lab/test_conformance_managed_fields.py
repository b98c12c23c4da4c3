"""metadata.managedFields on every write, as kube-apiserver records them (through the
kubernetes Python client and kubectl): creates, updates and patches are "Update" operations of
the request's fieldManager, else of its User-Agent up to the first "/" (the Python client sends
"OpenAPI-Generator/<version>/python"); status writes get their own entry with
subresource "status"; fields an update takes leave their previous owner, and an entry left
with no field goes; an apply conflicting with a field an update set names that Update manager.
(apiserver pkg/endpoints/handlers/create.go managerOrUserAgent; apimachinery
pkg/util/managedfields/internal/managedfieldsupdater.go, structured-merge-diff merge/update.go)
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

CONTEXT = "c1"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def raw(call, *args, **kwargs) -> dict:
    """The object as the server sent it (typed client models rename fields)."""
    return json.loads(call(*args, _preload_content=False, **kwargs).data)


def entries(obj: dict) -> list[dict]:
    """managedFields without their times (checked for their format)."""
    out = []
    for e in obj["metadata"].get("managedFields") or []:
        e = dict(e)
        assert TIME.match(e.pop("time")), e
        out.append(e)
    return out


def configmap(name, data=None, labels=None):
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


@pytest.fixture(scope="module")
def dynamic(apis):
    return DynamicClient(apis.client)


def ssa(dynamic, ns, body, manager, force=False):
    cms = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    return cms.server_side_apply(body=body, namespace=ns, field_manager=manager,
                                 force_conflicts=force).to_dict()


def test_create_by_the_python_client_is_an_update_by_its_user_agent(apis, ns):
    apis.core.create_namespaced_config_map(ns, configmap("c", {"a": "1"}, {"x": "1"}))
    got = raw(apis.core.read_namespaced_config_map, "c", ns)
    assert entries(got) == [{
        "manager": "OpenAPI-Generator", "operation": "Update", "apiVersion": "v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {".": {}, "f:a": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}}}]


def test_field_manager_parameter_names_the_manager_and_updates_merge_per_manager(apis, ns):
    apis.core.create_namespaced_config_map(ns, configmap("c", {"a": "1"}), field_manager="my-tool")
    apis.core.patch_namespaced_config_map("c", ns, {"metadata": {"labels": {"p": "1"}}},
                                          field_manager="patcher")
    apis.core.patch_namespaced_config_map("c", ns, {"metadata": {"labels": {"q": "1"}}},
                                          field_manager="patcher")
    got = raw(apis.core.read_namespaced_config_map, "c", ns)
    assert [(e["manager"], e["operation"], e["fieldsV1"]) for e in entries(got)] == [
        ("my-tool", "Update", {"f:data": {".": {}, "f:a": {}}}),
        ("patcher", "Update", {"f:metadata": {"f:labels": {".": {}, "f:p": {}, "f:q": {}}}})]
    # a write that changes nothing records nothing (and is no write at all)
    before = got["metadata"]["resourceVersion"]
    again = raw(apis.core.patch_namespaced_config_map, "c", ns,
                {"metadata": {"labels": {"q": "1"}}}, field_manager="someone-else")
    assert again["metadata"]["resourceVersion"] == before
    assert [e["manager"] for e in entries(again)] == ["my-tool", "patcher"]


def test_status_write_gets_a_subresource_entry_and_allocations_are_nobodys(apis, ns):
    apis.core.create_namespaced_service(ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
        "spec": {"type": "NodePort", "ports": [{"port": 80}], "selector": {"app": "x"}}})
    condition = {"type": "Probed", "status": "True", "reason": "Probe", "message": "ok",
                 "lastTransitionTime": "2024-01-01T00:00:00Z"}
    apis.core.patch_namespaced_service_status("svc", ns, {"status": {"conditions": [condition]}})
    got = raw(apis.core.read_namespaced_service, "svc", ns)
    status_entries = [e for e in entries(got) if e.get("subresource")]
    assert status_entries == [{
        "manager": "OpenAPI-Generator", "operation": "Update", "apiVersion": "v1",
        "fieldsType": "FieldsV1", "subresource": "status",
        "fieldsV1": {"f:status": {"f:conditions": {".": {}, 'k:{"type":"Probed"}': {
            ".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {},
            "f:type": {}}}}}}]
    # the create's entry owns what the client sent and defaulting set, not status nor what the
    # server allocated (cluster IP, node port: after the field manager ran)
    [create] = [e for e in entries(got) if not e.get("subresource")]
    spec = create["fieldsV1"]["f:spec"]
    assert "f:status" not in create["fieldsV1"]
    assert spec["f:ports"] == {".": {}, 'k:{"port":80,"protocol":"TCP"}': {
        ".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}}
    assert "f:clusterIP" not in spec and got["spec"]["clusterIP"]
    assert "f:ipFamilies" not in spec and got["spec"]["ipFamilies"] == ["IPv4"]
    assert spec["f:sessionAffinity"] == {} and spec["f:type"] == {}   # scheme defaults are the writer's
    assert got["spec"]["ports"][0]["nodePort"]


def test_update_takes_fields_from_an_apply_manager_and_apply_then_conflicts_with_it(apis, dynamic, ns):
    ssa(dynamic, ns, configmap("c", {"a": "1", "b": "1"}), "applier")
    cm = apis.core.read_namespaced_config_map("c", ns)
    cm.data["a"] = "2"
    apis.core.replace_namespaced_config_map("c", ns, cm)      # a PUT by the Python client
    got = raw(apis.core.read_namespaced_config_map, "c", ns)
    assert [(e["manager"], e["operation"], e["fieldsV1"]) for e in entries(got)] == [
        ("applier", "Apply", {"f:data": {"f:b": {}}}),
        ("OpenAPI-Generator", "Update", {"f:data": {"f:a": {}}})]
    with pytest.raises(ApiException) as caught:
        ssa(dynamic, ns, configmap("c", {"a": "1", "b": "1"}), "applier")
    body = json.loads(caught.value.body)
    assert caught.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Apply failed with 1 conflict: conflict with "OpenAPI-Generator" '
                               'using v1: .data.a')
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict", "field": ".data.a",
                                          "message": 'conflict with "OpenAPI-Generator" using v1'}]
    # forcing takes the field back: the Update entry is left with nothing and goes
    ssa(dynamic, ns, configmap("c", {"a": "1", "b": "1"}), "applier", force=True)
    got = raw(apis.core.read_namespaced_config_map, "c", ns)
    assert [(e["manager"], e["operation"]) for e in entries(got)] == [("applier", "Apply")]


def test_removed_fields_leave_their_owner_and_empty_entries_go(apis, dynamic, ns):
    ssa(dynamic, ns, configmap("c", {"a": "1"}), "applier")
    out = raw(apis.core.patch_namespaced_config_map, "c", ns,
              [{"op": "remove", "path": "/data/a"}], field_manager="remover")
    assert "managedFields" not in out["metadata"]   # the remover set nothing; the applier lost all


def test_managed_fields_can_be_replaced_or_cleared_explicitly(apis, ns):
    apis.core.create_namespaced_config_map(ns, configmap("c", {"a": "1"}))
    # a list with one empty entry clears them (fieldmanager.go: managedFields sent in an update
    # replace the live ones; an empty list keeps them, for clients that drop the field)
    out = raw(apis.core.patch_namespaced_config_map, "c", ns,
              {"metadata": {"managedFields": []}})
    assert [e["manager"] for e in entries(out)] == ["OpenAPI-Generator"]
    out = raw(apis.core.patch_namespaced_config_map, "c", ns,
              {"metadata": {"managedFields": [{}]}})
    assert "managedFields" not in out["metadata"]


def test_more_than_ten_update_managers_merge_the_oldest_into_ancient_changes(apis, ns):
    """capmanagers.go: at most ten Update entries; the oldest go into "ancient-changes"."""
    apis.core.create_namespaced_config_map(ns, configmap("c", {"a": "1"}), field_manager="creator")
    for i in range(11):
        apis.core.patch_namespaced_config_map("c", ns, {"data": {f"k{i:02d}": "v"}},
                                              field_manager=f"m{i:02d}")
    got = entries(raw(apis.core.read_namespaced_config_map, "c", ns))
    assert len(got) == 10
    [ancient] = [e for e in got if e["manager"] == "ancient-changes"]
    assert ancient["operation"] == "Update" and ancient["apiVersion"] == "v1"
    merged = set(ancient["fieldsV1"]["f:data"]) - {"."}
    kept = {m for e in got if e["manager"] != "ancient-changes" for m in e["fieldsV1"]["f:data"]}
    assert "f:a" in merged and merged | kept == {"f:a"} | {f"f:k{i:02d}" for i in range(11)}
    assert not merged & kept


@pytest.fixture(scope="module")
def kubectl(lab, tmp_path_factory):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    base = ["kubectl", "--kubeconfig", str(lab.kubeconfig), "--context", CONTEXT,
            "--cache-dir", str(tmp_path_factory.mktemp("kubectl-cache"))]

    def run(*args, stdin=None, check=True):
        proc = subprocess.run(base + list(args), input=stdin, capture_output=True, text=True,
                              timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.returncode}\n{proc.stderr}")
        return proc
    return run


def test_kubectl_writes_and_an_apply_conflict_with_an_update_manager(kubectl, ns):
    kubectl("-n", ns, "create", "deployment", "web", "--image=nginx:1.27", "--replicas=1")
    # what `kubectl edit` sends: a patch with its own field manager
    kubectl("-n", ns, "patch", "deployment", "web", "--field-manager=kubectl-edit",
            "-p", '{"spec":{"replicas":2}}')
    kubectl("-n", ns, "label", "deployment", "web", "tier=front")
    got = json.loads(kubectl("-n", ns, "get", "deployment", "web", "-o", "json",
                             "--show-managed-fields").stdout)
    owners = {e["manager"]: e for e in got["metadata"]["managedFields"]}
    assert {m: (e["operation"], e["apiVersion"]) for m, e in owners.items()} == {
        "kubectl-create": ("Update", "apps/v1"), "kubectl-edit": ("Update", "apps/v1"),
        "kubectl-label": ("Update", "apps/v1")}
    assert owners["kubectl-edit"]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners["kubectl-create"]["fieldsV1"]["f:spec"]
    assert owners["kubectl-label"]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:tier": {}}}}
    assert owners["kubectl-create"]["fieldsV1"]["f:spec"]["f:selector"] == {}  # atomic
    manifest = yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}})
    proc = kubectl("apply", "--server-side", "-f", "-", stdin=manifest, check=False)
    assert proc.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: ' \
           '.spec.replicas' in proc.stderr, proc.stderr
