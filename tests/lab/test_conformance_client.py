"""Conformance of the lab's API through the kubernetes Python client (typed, custom, dynamic).

Each test uses its own namespace on the shared session lab (cluster c1).
"""
from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from helpers import unique

CLUSTER = "c1"
TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")


@pytest.fixture(scope="module")
def api(lab):
    api_client = lab.api(CLUSTER)
    yield api_client
    api_client.close()


@pytest.fixture
def ns(api):
    name = unique("conf")
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException:
        pass


def raw(api, method, path, body=None, headers=None, query=None):
    """A request on the client's own connection pool and credentials, bypassing its body
    encoding (so tests can send broken or YAML bodies); returns (status, JSON or text)."""
    cfg = api.configuration
    hdrs = {"Authorization": cfg.auth_settings()["BearerToken"]["value"], **(headers or {})}
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    url = cfg.host + path + ("?" + urlencode(query) if query else "")
    resp = api.rest_client.pool_manager.request(method, url, body=body, headers=hdrs,
                                                timeout=30)
    text = resp.data.decode()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


def cm(name, labels=None, data=None, finalizers=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels,
                                                           finalizers=finalizers),
                              data=data or {"k": "v"})


def deployment(name, replicas=1, image="nginx:1.27"):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="main", image=image)]))))


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.conformance.fleetdr.test"},
    "spec": {
        "group": "conformance.fleetdr.test", "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wdg"], "categories": ["fleetdr"]},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Ready", "type": "string",
                 "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
            "schema": {"openAPIV3Schema": {"type": "object",
                                           "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


# ---- discovery --------------------------------------------------------------------------

def test_version_and_discovery(api):
    version = client.VersionApi(api).get_code()
    assert version.major == "1" and version.minor == "32"
    assert version.git_version.startswith("v1.32.")

    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert groups["apps"].preferred_version.group_version == "apps/v1"
    assert "apiextensions.k8s.io" in groups and "" not in groups

    apps = client.AppsV1Api(api).get_api_resources()
    by_name = {r.name: r for r in apps.resources}
    assert by_name["deployments"].kind == "Deployment"
    assert by_name["deployments"].namespaced is True
    assert "deploy" in by_name["deployments"].short_names
    assert "all" in by_name["deployments"].categories
    assert set(by_name["deployments"].verbs) >= {"create", "get", "list", "watch", "patch"}
    assert by_name["deployments/scale"].kind == "Scale"
    assert "deployments/status" in by_name

    core = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert core["namespaces"].namespaced is False
    assert "deletecollection" not in core["namespaces"].verbs


def test_health_endpoints(api):
    for path in ("/healthz", "/livez", "/readyz"):
        assert raw(api, "GET", path) == (200, "ok")


# ---- CRUD and errors --------------------------------------------------------------------

def test_configmap_crud(api, ns):
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(ns, cm("one", data={"a": "1"}))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.metadata.namespace == ns

    got = core.read_namespaced_config_map("one", ns)
    assert got.data == {"a": "1"}

    got.data["b"] = "2"
    replaced = core.replace_namespaced_config_map("one", ns, got)
    assert replaced.data == {"a": "1", "b": "2"}
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    names = [c.metadata.name for c in core.list_namespaced_config_map(ns).items]
    assert "one" in names

    core.delete_namespaced_config_map("one", ns)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("one", ns)
    assert exc.value.status == 404
    status = json.loads(exc.value.body)
    assert status["kind"] == "Status" and status["reason"] == "NotFound"
    assert status["message"] == 'configmaps "one" not found'
    assert status["details"] == {"name": "one", "kind": "configmaps"}


def test_create_twice_is_already_exists(api, ns):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, cm("dup"))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(ns, cm("dup"))
    assert exc.value.status == 409
    assert json.loads(exc.value.body)["reason"] == "AlreadyExists"


def test_stale_update_conflicts(api, ns):
    core = client.CoreV1Api(api)
    first = core.create_namespaced_config_map(ns, cm("c"))
    core.patch_namespaced_config_map("c", ns, {"data": {"k": "changed"}})
    first.data = {"k": "stale"}
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("c", ns, first)
    assert exc.value.status == 409
    body = json.loads(exc.value.body)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


def test_unknown_resource_and_disallowed_verb(api, ns):
    status, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/gizmos")
    assert status == 404
    assert body["message"] == "the server could not find the requested resource"
    status, body = raw(api, "GET", "/apis/nosuch.example.com/v1")
    assert status == 404
    # namespaces have no deletecollection; a named POST is no verb at all
    status, body = raw(api, "DELETE", "/api/v1/namespaces")
    assert (status, body["reason"]) == (405, "MethodNotAllowed")
    status, body = raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps/x",
                             body={"metadata": {"name": "x"}})
    assert status == 405
    # the all-namespaces path of a namespaced resource only lists and watches
    status, body = raw(api, "POST", "/api/v1/configmaps", body={"metadata": {"name": "x"}})
    assert status == 405
    status, body = raw(api, "DELETE", "/api/v1/configmaps")
    assert status == 405


def test_bad_bodies_are_400(api, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps"
    status, body = raw(api, "POST", path, body="{not json",
                             headers={"Content-Type": "application/json"})
    assert (status, body["kind"], body["reason"]) == (400, "Status", "BadRequest")
    status, body = raw(api, "POST", path, body={"apiVersion": "v1", "kind": "Secret",
                                                      "metadata": {"name": "s"}})
    assert status == 400 and "ConfigMap" in body["message"]
    status, body = raw(api, "POST", path, body={"apiVersion": "apps/v1",
                                                      "kind": "ConfigMap",
                                                      "metadata": {"name": "s"}})
    assert status == 400 and "apps/v1" in body["message"]
    status, body = raw(api, "POST", path, body={"apiVersion": "v1", "kind": "ConfigMap",
                                                      "metadata": {"name": "s",
                                                                   "namespace": "other"}})
    assert status == 400 and "does not match the namespace" in body["message"]
    status, body = raw(api, "PUT", f"{path}/a", body={"metadata": {"name": "b"}})
    assert status == 400 and "does not match the name on the URL" in body["message"]


def test_invalid_object_is_422(api, ns):
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api).create_namespaced_config_map(ns, cm("Not_A_Valid_Name"))
    assert exc.value.status == 422
    assert json.loads(exc.value.body)["reason"] == "Invalid"


# ---- selectors, paging, all-namespaces --------------------------------------------------

def test_every_label_selector_operator(api, ns):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, cm("a", labels={"tier": "web", "env": "prod"}))
    core.create_namespaced_config_map(ns, cm("b", labels={"tier": "db", "env": "dev"}))
    core.create_namespaced_config_map(ns, cm("c", labels={"tier": "cache"}))

    def names(selector):
        return sorted(c.metadata.name for c in
                      core.list_namespaced_config_map(ns, label_selector=selector).items
                      if c.metadata.name in ("a", "b", "c"))

    assert names("tier=web") == ["a"]
    assert names("tier==db") == ["b"]
    assert names("tier!=web") == ["b", "c"]
    assert names("tier in (web,db)") == ["a", "b"]
    assert names("tier notin (web,db)") == ["c"]
    assert names("env") == ["a", "b"]
    assert names("!env") == ["c"]
    assert names("tier,env=dev") == ["b"]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map(ns, label_selector="tier in web")
    assert exc.value.status == 400


def test_field_selectors(api, ns):
    core = client.CoreV1Api(api)
    for name in ("f1", "f2"):
        core.create_namespaced_config_map(ns, cm(name))
    items = core.list_namespaced_config_map(ns, field_selector="metadata.name=f2").items
    assert [c.metadata.name for c in items] == ["f2"]
    items = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={ns},metadata.name!=f2").items
    assert "f2" not in [c.metadata.name for c in items] and "f1" in [c.metadata.name for c in items]
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_config_map(ns, field_selector="data.k=v")
    assert exc.value.status == 400


def test_limit_and_continue(api, ns):
    core = client.CoreV1Api(api)
    for i in range(5):
        core.create_namespaced_config_map(ns, cm(f"p{i}", labels={"page": "yes"}))
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map(ns, label_selector="page", limit=2,
                                               _continue=token)
        pages += 1
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 5 - len(seen)
    assert seen == [f"p{i}" for i in range(5)] and pages == 3


def test_list_across_namespaces(api, ns):
    core = client.CoreV1Api(api)
    other = f"{ns}-b"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    try:
        marker = {"xns": ns}
        core.create_namespaced_config_map(ns, cm("same", labels=marker))
        core.create_namespaced_config_map(other, cm("same", labels=marker))
        items = core.list_config_map_for_all_namespaces(label_selector=f"xns={ns}").items
        assert sorted(c.metadata.namespace for c in items) == sorted([ns, other])
    finally:
        core.delete_namespace(other)


# ---- watch ------------------------------------------------------------------------------

def test_watch_from_resource_version(api, ns):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, cm("before"))
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("w"))
    core.patch_namespaced_config_map("w", ns, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("w", ns)

    events = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, ns, resource_version=rv,
                          timeout_seconds=5):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 3:
            w.stop()
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_without_resource_version_lists_current_objects_first(api, ns):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, cm("exists", labels={"w": "1"}))
    w = watch.Watch()
    first = next(iter(w.stream(core.list_namespaced_config_map, ns, label_selector="w=1",
                               timeout_seconds=5)))
    w.stop()
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "exists")


def test_watch_times_out_and_sends_bookmark(api, ns):
    # The server ends the stream itself after timeoutSeconds, sending a bookmark before.
    status, text = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                       query=[("watch", "true"), ("timeoutSeconds", "1"),
                              ("allowWatchBookmarks", "true"),
                              ("resourceVersion", client.CoreV1Api(api)
                               .list_namespaced_config_map(ns).metadata.resource_version)])
    assert status == 200
    lines = [json.loads(line) for line in (text if isinstance(text, str)
                                            else json.dumps(text)).splitlines() if line]
    assert lines and lines[-1]["type"] == "BOOKMARK"
    bookmark = lines[-1]["object"]
    assert bookmark["kind"] == "ConfigMap" and int(bookmark["metadata"]["resourceVersion"]) > 0


def test_watch_without_bookmarks_gets_none(api, ns):
    rv = client.CoreV1Api(api).list_namespaced_config_map(ns).metadata.resource_version
    status, text = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                       query=[("watch", "1"), ("timeoutSeconds", "1"), ("resourceVersion", rv)])
    assert status == 200 and "BOOKMARK" not in str(text)


def test_watch_too_old_resource_version_is_410_in_stream(api, ns):
    status, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                       query=[("watch", "true"), ("resourceVersion", "1"),
                              ("timeoutSeconds", "5")])
    assert status == 200  # the real server reports it as an ERROR event
    assert body["type"] == "ERROR"
    assert body["object"]["code"] == 410 and body["object"]["reason"] == "Expired"
    # the python client's watch turns that event into an exception
    w = watch.Watch()
    with pytest.raises(ApiException) as exc:
        for _ in w.stream(client.CoreV1Api(api).list_namespaced_config_map, ns,
                          resource_version="1", timeout_seconds=5):
            pass
    assert exc.value.status == 410


def test_watch_single_object_by_legacy_path(api, ns):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, cm("target"))
    core.create_namespaced_config_map(ns, cm("other"))
    status, text = raw(api, "GET", f"/api/v1/watch/namespaces/{ns}/configmaps/target",
                       query=[("timeoutSeconds", "1")])
    events = [json.loads(line) for line in (text if isinstance(text, str)
                                             else json.dumps(text)).splitlines() if line]
    assert [e["object"]["metadata"]["name"] for e in events] == ["target"]


def test_bad_continue_token_is_400_and_continue_with_rv_rejected(api, ns):
    status, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                             query=[("limit", "1"), ("continue", "garbage!")])
    assert status == 400
    status, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                             query=[("continue", "x"), ("resourceVersion", "5")])
    assert status == 400


# ---- deletion semantics -----------------------------------------------------------------

def test_finalizers_hold_deletion(api, ns):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, cm("held", finalizers=["fleetdr.test/hold"]))
    core.delete_namespaced_config_map("held", ns)
    held = core.read_namespaced_config_map("held", ns)
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["fleetdr.test/hold"]
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("held", ns)
    assert exc.value.status == 404


def test_delete_options_propagation_and_preconditions(api, ns):
    core = client.CoreV1Api(api)
    created = core.create_namespaced_config_map(ns, cm("pre", finalizers=["fleetdr.test/hold"]))
    with pytest.raises(ApiException) as exc:
        core.delete_namespaced_config_map(
            "pre", ns, body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(uid="00000000-0000-0000-0000-000000000000")))
    assert exc.value.status == 409
    status, body = raw(api, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/pre",
                       body={"kind": "DeleteOptions", "apiVersion": "v1",
                             "propagationPolicy": "Foreground",
                             "preconditions": {"uid": created.metadata.uid}})
    assert status == 200
    assert "foregroundDeletion" in body["metadata"]["finalizers"]
    assert body["metadata"]["deletionTimestamp"]
    status, body = raw(api, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/pre",
                             query=[("propagationPolicy", "Sideways")])
    assert status == 422


def test_delete_collection(api, ns):
    core = client.CoreV1Api(api)
    for name, tier in (("d1", "x"), ("d2", "x"), ("d3", "y")):
        core.create_namespaced_config_map(ns, cm(name, labels={"tier": tier}))
    core.delete_collection_namespaced_config_map(ns, label_selector="tier=x")
    left = [c.metadata.name for c in core.list_namespaced_config_map(ns, label_selector="tier").items]
    assert left == ["d3"]


# ---- dry run ----------------------------------------------------------------------------

def test_dry_run_changes_nothing(api, ns):
    core = client.CoreV1Api(api)
    preview = core.create_namespaced_config_map(ns, cm("dry"), dry_run="All")
    assert preview.metadata.name == "dry"
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", ns)

    core.create_namespaced_config_map(ns, cm("real", data={"k": "v"}))
    patched = core.patch_namespaced_config_map("real", ns, {"data": {"k": "new"}}, dry_run="All")
    assert patched.data["k"] == "new"
    assert core.read_namespaced_config_map("real", ns).data["k"] == "v"
    core.delete_namespaced_config_map("real", ns, dry_run="All")
    assert core.read_namespaced_config_map("real", ns).metadata.name == "real"
    with pytest.raises(ApiException) as exc:
        core.delete_namespaced_config_map("real", ns, dry_run="Some")
    assert exc.value.status == 400


# ---- patches ----------------------------------------------------------------------------

def test_every_patch_type(api, ns):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("p"))
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/p"

    # strategic merge: containers merge by name, so a sidecar is added, not a replacement
    apps.patch_namespaced_deployment("p", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "busybox"}]}}}})
    names = [c.name for c in apps.read_namespaced_deployment("p", ns).spec.template.spec.containers]
    assert sorted(names) == ["main", "sidecar"]

    # merge patch: lists are replaced wholesale
    status, body = raw(api, "PATCH", path,
                       body={"spec": {"template": {"spec": {"containers": [
                           {"name": "only", "image": "busybox"}]}}}},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert status == 200
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["only"]

    # json patch, including a failing test op
    status, body = raw(api, "PATCH", path,
                       body=[{"op": "replace", "path": "/spec/replicas", "value": 3}],
                       headers={"Content-Type": "application/json-patch+json"})
    assert body["spec"]["replicas"] == 3
    status, _ = raw(api, "PATCH", path,
                          body=[{"op": "test", "path": "/spec/replicas", "value": 9}],
                          headers={"Content-Type": "application/json-patch+json"})
    assert status in (409, 422)

    # server-side apply: needs fieldManager, accepts YAML
    status, body = raw(api, "PATCH", path, body="spec:\n  replicas: 2\n",
                             headers={"Content-Type": "application/apply-patch+yaml"})
    assert status == 400 and "fieldManager" in body["message"]
    apply_yaml = ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: p\n"
                  "spec:\n  replicas: 2\n")
    status, body = raw(api, "PATCH", path, body=apply_yaml,
                       headers={"Content-Type": "application/apply-patch+yaml"},
                       query=[("fieldManager", "conformance"), ("force", "true")])
    assert status == 200 and body["spec"]["replicas"] == 2

    # apply creates a missing object (201)
    status, body = raw(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/applied",
                       body='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"applied"},'
                            '"data":{"a":"b"}}',
                       headers={"Content-Type": "application/apply-patch+yaml"},
                       query=[("fieldManager", "conformance")])
    assert status == 201 and body["data"] == {"a": "b"}

    status, body = raw(api, "PATCH", path, body={"spec": {}},
                             headers={"Content-Type": "text/plain"})
    assert status == 415


def test_dynamic_client_patch_and_server_side_apply(api, ns):
    dyn = DynamicClient(api)
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    cms.create(body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn"},
                     "data": {"a": "1"}}, namespace=ns)
    out = cms.patch(name="dyn", namespace=ns, body={"data": {"b": "2"}},
                    content_type="application/merge-patch+json")
    assert out.data.a == "1" and out.data.b == "2"
    out = cms.server_side_apply(body={"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "dyn", "namespace": ns},
                                      "data": {"c": "3"}},
                                field_manager="conformance", force_conflicts=True)
    assert out.data.c == "3"
    got = cms.get(namespace=ns, label_selector="")
    assert "dyn" in [i.metadata.name for i in got.items]


# ---- status and scale subresources ------------------------------------------------------

def test_status_subresource_of_deployment(api, ns):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("s", replicas=0))
    dep = apps.read_namespaced_deployment("s", ns)
    generation = dep.metadata.generation
    # a status write through the main resource is ignored ...
    status, body = raw(api, "PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/s",
                       body={"status": {"observedGeneration": 99}},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert body["status"].get("observedGeneration") != 99
    # ... and a spec write through /status is ignored too
    status, body = raw(api, "PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/s/status",
                       body={"spec": {"replicas": 7}, "status": {"observedGeneration": 99}},
                       headers={"Content-Type": "application/merge-patch+json"})
    assert body["status"]["observedGeneration"] == 99 and body["spec"]["replicas"] == 0
    assert body["metadata"]["generation"] == generation


def test_scale_subresource(api, ns):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("sc", replicas=1))
    scale = apps.read_namespaced_deployment_scale("sc", ns)
    assert scale.kind == "Scale" and scale.spec.replicas == 1
    assert scale.status.selector == "app=sc"
    apps.patch_namespaced_deployment_scale("sc", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("sc", ns).spec.replicas == 4


# ---- custom resources -------------------------------------------------------------------

def test_crd_lifecycle(api, ns):
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    group, version, plural = "conformance.fleetdr.test", "v1", "widgets"
    try:
        ext.delete_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
    except ApiException:
        pass
    ext.create_custom_resource_definition(WIDGET_CRD)
    try:
        crd = ext.read_custom_resource_definition(WIDGET_CRD["metadata"]["name"])
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"

        groups = [g.name for g in client.ApisApi(api).get_api_versions().groups]
        assert group in groups
        status, listing = raw(api, "GET", f"/apis/{group}/{version}")
        widget = next(r for r in listing["resources"] if r["name"] == "widgets")
        assert widget["shortNames"] == ["wdg"] and widget["categories"] == ["fleetdr"]
        assert any(r["name"] == "widgets/status" for r in listing["resources"])

        body = {"apiVersion": f"{group}/{version}", "kind": "Widget",
                "metadata": {"name": "w1", "labels": {"color": "blue"}},
                "spec": {"size": 3}, "status": {"phase": "ignored"}}
        created = custom.create_namespaced_custom_object(group, version, ns, plural, body)
        assert created["metadata"]["generation"] == 1
        assert "status" not in created or created["status"].get("phase") != "ignored"

        custom.patch_namespaced_custom_object_status(
            group, version, ns, plural, "w1",
            {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
        got = custom.get_namespaced_custom_object(group, version, ns, plural, "w1")
        assert got["status"]["phase"] == "Running" and got["metadata"]["generation"] == 1

        custom.patch_namespaced_custom_object(group, version, ns, plural, "w1",
                                              {"spec": {"size": 5}})
        got = custom.get_namespaced_custom_object(group, version, ns, plural, "w1")
        assert got["spec"]["size"] == 5 and got["metadata"]["generation"] == 2

        listed = custom.list_namespaced_custom_object(group, version, ns, plural,
                                                      label_selector="color=blue")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]
        assert listed["items"][0]["kind"] == "Widget"

        # strategic merge has no meaning for custom resources
        status, body = raw(api, "PATCH",
                                 f"/apis/{group}/{version}/namespaces/{ns}/{plural}/w1",
                                 body={"spec": {"size": 1}},
                                 headers={"Content-Type": "application/strategic-merge-patch+json"})
        assert status == 415

        # printer columns through the Table kubectl asks for
        status, table = raw(api, "GET", f"/apis/{group}/{version}/namespaces/{ns}/{plural}",
                            headers={"Accept": TABLE_ACCEPT})
        assert [c["name"] for c in table["columnDefinitions"]] == [
            "Name", "Phase", "Size", "Ready", "Age"]
        assert table["rows"][0]["cells"][:4] == ["w1", "Running", 5, "True"]
    finally:
        ext.delete_custom_resource_definition(WIDGET_CRD["metadata"]["name"])

    with pytest.raises(ApiException) as exc:
        custom.get_namespaced_custom_object(group, version, ns, plural, "w1")
    assert exc.value.status == 404
    assert group not in [g.name for g in client.ApisApi(api).get_api_versions().groups]


def test_dynamic_client_discovers_and_lists(api, ns):
    dyn = DynamicClient(api)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.namespaced and deployments.name == "deployments"
    client.AppsV1Api(api).create_namespaced_deployment(ns, deployment("dy"))
    listed = deployments.get(namespace=ns)
    assert [i.metadata.name for i in listed.items] == ["dy"]
    nodes = dyn.resources.get(api_version="v1", kind="Node").get()
    assert len(nodes.items) >= 1


# ---- Table and metadata-only representations --------------------------------------------

def test_tables_for_kubectl(api, ns):
    client.CoreV1Api(api).create_namespaced_config_map(ns, cm("t", data={"a": "1", "b": "2"}))
    status, table = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps/t",
                        headers={"Accept": TABLE_ACCEPT})
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    row = table["rows"][0]
    assert row["cells"][:2] == ["t", 2]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "t"

    status, table = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                        headers={"Accept": TABLE_ACCEPT}, query=[("includeObject", "Object")])
    row = next(r for r in table["rows"] if r["cells"][0] == "t")
    assert row["object"]["kind"] == "ConfigMap" and row["object"]["data"] == {"a": "1", "b": "2"}

    status, table = raw(api, "GET", "/api/v1/nodes", headers={"Accept": TABLE_ACCEPT})
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name", "Status", "Roles", "Age", "Version"]
    assert table["rows"][0]["cells"][1] == "Ready"

    client.AppsV1Api(api).create_namespaced_deployment(ns, deployment("td", replicas=0))
    status, table = raw(api, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments",
                        headers={"Accept": TABLE_ACCEPT})
    assert [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0] == [
        "Name", "Ready", "Up-to-date", "Available", "Age"]

    status, table = raw(api, "GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
                        headers={"Accept": TABLE_ACCEPT})
    assert [c["name"] for c in table["columnDefinitions"]][:5] == [
        "Name", "Status", "Volume", "Capacity", "Access Modes"]


def test_partial_object_metadata_list(api, ns):
    client.CoreV1Api(api).create_namespaced_config_map(ns, cm("pm"))
    status, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps", headers={
        "Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"})
    assert body["kind"] == "PartialObjectMetadataList"
    assert {i["kind"] for i in body["items"]} == {"PartialObjectMetadata"}
    assert "pm" in [i["metadata"]["name"] for i in body["items"]]
    assert not any("data" in i for i in body["items"])


def test_protobuf_accept_falls_back_to_json(api, ns):
    status, body = raw(api, "GET", f"/api/v1/namespaces/{ns}",
                       headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert status == 200 and body["kind"] == "Namespace"


def test_resource_version_match_needs_resource_version(api, ns):
    status, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                       query=[("resourceVersionMatch", "NotOlderThan")])
    assert status == 422 and body["reason"] == "Invalid"
    status, body = raw(api, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                       query=[("resourceVersionMatch", "NotOlderThan"), ("resourceVersion", "0")])
    assert status == 200 and body["kind"] == "ConfigMapList"


def test_oversized_body_is_413_status(api, ns):
    big = json.dumps({"metadata": {"name": "big"}, "data": {"k": "x" * (9 * 1024 * 1024)}})
    status, body = raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps", body=big,
                       headers={"Content-Type": "application/json"})
    assert status == 413 and body["kind"] == "Status" and body["code"] == 413


def test_event_table_has_no_name_column(api, ns):
    client.CoreV1Api(api).create_namespaced_event(ns, client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="ev1"), type="Warning", reason="BackOff",
        message="something went wrong", count=3,
        involved_object=client.V1ObjectReference(kind="Pod", name="p1", namespace=ns)))
    status, table = raw(api, "GET", f"/api/v1/namespaces/{ns}/events",
                        headers={"Accept": TABLE_ACCEPT})
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Last Seen", "Type", "Reason", "Object", "Message"]
    cells = dict(zip([c["name"] for c in table["columnDefinitions"]], table["rows"][0]["cells"]))
    assert (cells["Type"], cells["Reason"], cells["Object"], cells["Count"]) == (
        "Warning", "BackOff", "pod/p1", "3")


def test_aggregated_discovery(api):
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json")
    status, body = raw(api, "GET", "/apis", headers={"Accept": accept})
    assert body["kind"] == "APIGroupDiscoveryList"
    assert body["apiVersion"] == "apidiscovery.k8s.io/v2"
    apps = next(i for i in body["items"] if i["metadata"].get("name") == "apps")
    deployments = next(r for r in apps["versions"][0]["resources"]
                       if r["resource"] == "deployments")
    assert deployments["scope"] == "Namespaced" and deployments["shortNames"] == ["deploy"]
    assert {"subresource": "scale", "verbs": ["get", "patch", "update"],
            "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}} in \
        deployments["subresources"]
    status, body = raw(api, "GET", "/api", headers={"Accept": accept})
    core = body["items"][0]
    assert "name" not in core["metadata"] and core["versions"][0]["version"] == "v1"
    # legacy discovery is still what a plain JSON Accept gets
    status, body = raw(api, "GET", "/apis", headers={"Accept": "application/json"})
    assert body["kind"] == "APIGroupList"


def test_field_validation_values(api, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps"
    status, body = raw(api, "POST", path, body={"metadata": {"name": "fv"}},
                       query=[("fieldValidation", "Sometimes")])
    assert status == 422 and "fieldValidation" in body["message"]
    status, _ = raw(api, "POST", path, body={"metadata": {"name": "fv"}},
                    query=[("fieldValidation", "Strict")])
    assert status == 201
