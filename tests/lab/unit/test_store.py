"""Store verbs: CRUD, metadata lifecycle, conflicts, preconditions, finalizers, dry-run,
validation and per-kind defaulting."""
import base64
import ipaddress
import re
from datetime import datetime, timezone

import pytest

from fleetdr_lab.store import ApiError
from fleetdr_lab.strategies import SERVICE_CIDR, new_store


class FixedClock:
    def __init__(self):
        self.t = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)

    def now(self):
        return self.t


def make_store():
    s = new_store(clock=FixedClock())
    for ns in ("default", "app"):
        s.create("", "namespaces", None, {"metadata": {"name": ns}})
    return s


@pytest.fixture
def store():
    return make_store()


def deployment(name="web", labels=None, image="nginx:1.25"):
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def cm(name, data=None, labels=None):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, **({"labels": labels} if labels else {})},
            "data": data or {"k": "v"}}


def err(fn, *a, **kw) -> ApiError:
    with pytest.raises(ApiError) as ei:
        fn(*a, **kw)
    return ei.value


# ---- create / get / metadata ------------------------------------------------------------

def test_create_sets_server_metadata(store):
    out = store.create("", "configmaps", "app", cm("a"))
    m = out["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", m["uid"])
    assert m["creationTimestamp"] == "2030-01-02T03:04:05Z"
    assert m["namespace"] == "app"
    assert int(m["resourceVersion"]) > 0
    assert "generation" not in m          # configmaps have no generation, like the real server
    got = store.get("", "configmaps", "app", "a")
    assert got == out and got["apiVersion"] == "v1" and got["kind"] == "ConfigMap"


def test_resource_versions_are_monotonic_per_store(store):
    a = int(store.create("", "configmaps", "app", cm("a"))["metadata"]["resourceVersion"])
    b = int(store.create("", "configmaps", "app", cm("b"))["metadata"]["resourceVersion"])
    assert b > a and store.current_resource_version() == str(b)


def test_returned_objects_are_copies(store):
    out = store.create("", "configmaps", "app", cm("a"))
    out["data"]["k"] = "changed"
    store.get("", "configmaps", "app", "a")["data"]["k"] = "changed too"
    assert store.get("", "configmaps", "app", "a")["data"] == {"k": "v"}


def test_get_missing_is_not_found_with_real_message(store):
    e = err(store.get, "apps", "deployments", "app", "web")
    assert (e.code, e.reason) == (404, "NotFound")
    assert e.message == 'deployments.apps "web" not found'
    assert e.status()["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    e = err(store.get, "", "configmaps", "app", "x")
    assert e.message == 'configmaps "x" not found'


def test_unknown_resource_is_404(store):
    e = err(store.list, "example.com", "widgets")
    assert e.code == 404 and "could not find the requested resource" in e.message


def test_create_twice_is_already_exists(store):
    store.create("apps", "deployments", "app", deployment())
    e = err(store.create, "apps", "deployments", "app", deployment())
    assert (e.code, e.reason) == (409, "AlreadyExists")
    assert e.message == 'deployments.apps "web" already exists'


def test_generate_name(store):
    out = store.create("", "configmaps", "app",
                       {"metadata": {"generateName": "job-"}, "data": {}})
    assert re.fullmatch(r"job-[a-z0-9]{5}", out["metadata"]["name"])
    assert store.get("", "configmaps", "app", out["metadata"]["name"])


def test_namespace_must_exist(store):
    e = err(store.create, "", "configmaps", "nope", cm("a"))
    assert e.code == 404 and e.message == 'namespaces "nope" not found'


def test_namespace_in_body_must_match_url(store):
    body = cm("a")
    body["metadata"]["namespace"] = "default"
    e = err(store.create, "", "configmaps", "app", body)
    assert e.code == 400
    assert "the namespace of the provided object does not match" in e.message


def test_terminating_namespace_forbids_creates(store):
    store.delete("", "namespaces", None, "app")
    ns = store.get("", "namespaces", None, "app")
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    e = err(store.create, "", "configmaps", "app", cm("a"))
    assert (e.code, e.reason) == (403, "Forbidden")
    assert e.message == ('configmaps "a" is forbidden: unable to create new content in namespace'
                         ' app because it is being terminated')


def test_namespace_defaults_and_finalize(store):
    ns = store.get("", "namespaces", None, "app")
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "app"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert ns["status"]["phase"] == "Active"
    store.delete("", "namespaces", None, "app")
    # a second delete of a terminating namespace is the real Conflict
    assert err(store.delete, "", "namespaces", None, "app").code == 409
    # the namespace controller empties spec.finalizers through /finalize: then it is gone
    ns = store.get("", "namespaces", None, "app")
    ns["spec"]["finalizers"] = []
    store.update("", "namespaces", None, "app", ns, subresource="finalize")
    assert store.get_or_none("", "namespaces", None, "app") is None


def test_cluster_scoped_objects_ignore_namespace(store):
    out = store.create("storage.k8s.io", "storageclasses", None,
                       {"metadata": {"name": "fast"}, "provisioner": "x"})
    assert "namespace" not in out["metadata"]
    assert out["reclaimPolicy"] == "Delete" and out["volumeBindingMode"] == "Immediate"


def test_kind_or_apiversion_mismatch_is_bad_request(store):
    body = cm("a")
    body["apiVersion"] = "apps/v1"
    assert err(store.create, "", "configmaps", "app", body).code == 400
    body = cm("a")
    body["kind"] = "Secret"
    assert err(store.create, "", "configmaps", "app", body).code == 400


def test_resource_version_on_create_is_rejected(store):
    body = cm("a")
    body["metadata"]["resourceVersion"] = "5"
    e = err(store.create, "", "configmaps", "app", body)
    assert e.code == 400 and "resourceVersion should not be set" in e.message


# ---- validation -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Web", "web_1", "-web", "a" * 254, ""])
def test_invalid_names_are_422(store, name):
    e = err(store.create, "", "configmaps", "app", cm(name))
    assert (e.code, e.reason) == (422, "Invalid")
    causes = e.status()["details"]["causes"]
    assert causes and causes[0]["field"] == "metadata.name"


def test_invalid_name_message_shape(store):
    e = err(store.create, "apps", "deployments", "app", deployment("Web"))
    assert e.message.startswith('Deployment.apps "Web" is invalid: metadata.name: Invalid value: '
                                '"Web": a lowercase RFC 1123 subdomain must consist of')
    assert e.status()["details"]["kind"] == "Deployment"
    assert e.status()["details"]["group"] == "apps"


def test_namespace_and_service_names_are_dns_labels(store):
    assert err(store.create, "", "namespaces", None,
               {"metadata": {"name": "a.b"}}).code == 422
    svc = {"metadata": {"name": "a.b"}, "spec": {"ports": [{"port": 80}]}}
    assert err(store.create, "", "services", "app", svc).code == 422
    assert store.create("", "configmaps", "app", cm("a.b"))  # subdomain is fine for others


def test_rbac_names_allow_colons(store):
    store.create("rbac.authorization.k8s.io", "clusterroles", None,
                 {"metadata": {"name": "system:aggregate-to-view"}, "rules": []})


@pytest.mark.parametrize("labels", [
    {"bad key": "v"}, {"a/b/c": "v"}, {"k": "x" * 64}, {"k": "-v"}, {"Prefix.com/k": "v"},
    {("a" * 64): "v"},
])
def test_invalid_labels_are_422(store, labels):
    e = err(store.create, "", "configmaps", "app", cm("a", labels=labels))
    assert e.code == 422
    assert all(c["field"] == "metadata.labels" for c in e.status()["details"]["causes"])


def test_valid_labels_accepted(store):
    store.create("", "configmaps", "app",
                 cm("a", labels={"app.kubernetes.io/name": "x", "k": "", "a_b.c-d": "V_1.2"}))


def test_pod_without_containers_is_422(store):
    e = err(store.create, "", "pods", "app", {"metadata": {"name": "p"}, "spec": {}})
    assert e.code == 422 and "spec.containers: Required value" in e.message
    d = deployment()
    d["spec"]["template"]["spec"]["containers"] = []
    e = err(store.create, "apps", "deployments", "app", d)
    assert "spec.template.spec.containers: Required value" in e.message


def test_deployment_selector_must_match_template(store):
    d = deployment()
    d["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    e = err(store.create, "apps", "deployments", "app", d)
    assert "`selector` does not match template `labels`" in e.message


def test_deployment_selector_is_immutable(store):
    store.create("apps", "deployments", "app", deployment())
    d = store.get("apps", "deployments", "app", "web")
    d["spec"]["selector"] = {"matchLabels": {"app": "web", "x": "y"}}
    d["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    e = err(store.update, "apps", "deployments", "app", "web", d)
    assert "spec.selector" in e.message and "field is immutable" in e.message


# ---- defaulting -------------------------------------------------------------------------

def test_deployment_and_pod_template_defaults(store):
    out = store.create("apps", "deployments", "app", deployment(image="nginx"))
    spec = out["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and pod["dnsPolicy"] == "ClusterFirst"
    assert pod["terminationGracePeriodSeconds"] == 30
    c = pod["containers"][0]
    assert c["imagePullPolicy"] == "Always"   # no tag means :latest
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert out["metadata"]["generation"] == 1


@pytest.mark.parametrize("image,policy", [("nginx:1.25", "IfNotPresent"),
                                          ("nginx:latest", "Always"),
                                          ("reg:5000/nginx", "Always"),
                                          ("reg:5000/nginx:2", "IfNotPresent"),
                                          ("nginx@sha256:abc", "IfNotPresent")])
def test_image_pull_policy_default(store, image, policy):
    out = store.create("", "pods", "app", {"metadata": {"name": "p"},
                                           "spec": {"containers": [{"name": "c", "image": image}]}})
    assert out["spec"]["containers"][0]["imagePullPolicy"] == policy
    assert out["spec"]["serviceAccountName"] == "default"
    assert out["status"]["phase"] == "Pending"


def test_statefulset_service_pvc_defaults(store):
    sts = deployment("db")
    sts["kind"] = "StatefulSet"
    out = store.create("apps", "statefulsets", "app", sts)
    assert out["spec"]["podManagementPolicy"] == "OrderedReady"
    assert out["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    svc = store.create("", "services", "app", {"metadata": {"name": "s"},
                                               "spec": {"ports": [{"port": 80}]}})
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["sessionAffinity"] == "None"
    assert svc["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in SERVICE_CIDR   # 10.96.0.0/12
    svc2 = store.create("", "services", "app", {"metadata": {"name": "t"},
                                                "spec": {"ports": [{"port": 80}]}})
    assert svc2["spec"]["clusterIP"] != svc["spec"]["clusterIP"]


def test_pvc_gets_default_storage_class(store):
    store.create("storage.k8s.io", "storageclasses", None, {
        "metadata": {"name": "standard", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "p"})
    pvc = {"metadata": {"name": "data"},
           "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}
    out = store.create("", "persistentvolumeclaims", "app", pvc)
    assert out["spec"]["storageClassName"] == "standard"
    assert out["spec"]["volumeMode"] == "Filesystem"
    assert out["status"] == {"phase": "Pending"}
    pvc["metadata"]["name"] = "explicit"
    pvc["spec"]["storageClassName"] = ""
    assert store.create("", "persistentvolumeclaims", "app", pvc)["spec"]["storageClassName"] == ""


def test_secret_string_data_is_merged_into_data(store):
    out = store.create("", "secrets", "app", {"metadata": {"name": "s"},
                                              "data": {"a": base64.b64encode(b"1").decode()},
                                              "stringData": {"b": "two"}})
    assert "stringData" not in out
    assert out["type"] == "Opaque"
    assert base64.b64decode(out["data"]["b"]) == b"two"
    assert base64.b64decode(out["data"]["a"]) == b"1"


# ---- update, conflicts, generation -------------------------------------------------------

def test_update_with_stale_resource_version_conflicts(store):
    first = store.create("apps", "deployments", "app", deployment())
    second = dict(first, spec=dict(first["spec"], replicas=3))
    store.update("apps", "deployments", "app", "web", second)
    e = err(store.update, "apps", "deployments", "app", "web", first)
    assert (e.code, e.reason) == (409, "Conflict")
    assert e.message == ('Operation cannot be fulfilled on deployments.apps "web": the object has '
                         'been modified; please apply your changes to the latest version and try '
                         'again')


def test_update_without_resource_version_is_unconditional(store):
    first = store.create("", "configmaps", "app", cm("a"))
    store.update("", "configmaps", "app", "a", cm("a", {"k": "2"}))
    out = store.update("", "configmaps", "app", "a", cm("a", {"k": "3"}))
    assert out["data"] == {"k": "3"}
    assert out["metadata"]["uid"] == first["metadata"]["uid"]
    assert out["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]


def test_update_missing_is_not_found_but_creates_where_the_server_does(store):
    assert err(store.update, "", "configmaps", "app", "zz", cm("zz")).code == 404
    lease = {"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}
    assert store.update("coordination.k8s.io", "leases", "app", "l", lease)["spec"]


def test_update_name_mismatch_is_bad_request(store):
    store.create("", "configmaps", "app", cm("a"))
    e = err(store.update, "", "configmaps", "app", "a", cm("b"))
    assert e.code == 400 and "does not match the name on the URL" in e.message


def test_generation_bumps_only_on_spec_change(store):
    d = store.create("apps", "deployments", "app", deployment())
    d["metadata"]["labels"]["extra"] = "1"
    d = store.update("apps", "deployments", "app", "web", d)
    assert d["metadata"]["generation"] == 1
    d["spec"]["replicas"] = 5
    d = store.update("apps", "deployments", "app", "web", d)
    assert d["metadata"]["generation"] == 2


def test_noop_update_keeps_resource_version(store):
    d = store.create("", "configmaps", "app", cm("a"))
    again = store.update("", "configmaps", "app", "a", d)
    assert again["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]


# ---- status and scale subresources -------------------------------------------------------

def test_main_resource_write_ignores_status(store):
    d = store.create("apps", "deployments", "app", deployment())
    d["status"] = {"replicas": 9}
    d["spec"]["replicas"] = 2
    out = store.update("apps", "deployments", "app", "web", d)
    assert out["status"] == {} and out["spec"]["replicas"] == 2


def test_status_write_ignores_everything_but_status(store):
    d = store.create("apps", "deployments", "app", deployment())
    d["status"] = {"replicas": 1, "readyReplicas": 1}
    d["spec"]["replicas"] = 7
    d["metadata"]["labels"]["sneaky"] = "yes"
    out = store.update("apps", "deployments", "app", "web", d, subresource="status")
    assert out["status"] == {"replicas": 1, "readyReplicas": 1}
    assert out["spec"]["replicas"] == 1 and "sneaky" not in out["metadata"]["labels"]
    assert out["metadata"]["generation"] == 1


def test_status_on_create_is_reset(store):
    d = deployment()
    d["status"] = {"replicas": 3}
    assert store.create("apps", "deployments", "app", d)["status"] == {}


def test_scale_subresource(store):
    store.create("apps", "deployments", "app", deployment())
    scale = store.get("apps", "deployments", "app", "web", subresource="scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 4
    out = store.update("apps", "deployments", "app", "web", scale, subresource="scale")
    assert out["spec"]["replicas"] == 4
    assert store.get("apps", "deployments", "app", "web")["spec"]["replicas"] == 4
    out = store.patch("apps", "deployments", "app", "web", {"spec": {"replicas": 0}}, "merge",
                      subresource="scale")
    assert out["spec"]["replicas"] == 0
    assert store.get("apps", "deployments", "app", "web")["metadata"]["generation"] == 3
    scale["spec"]["replicas"] = -1
    scale["metadata"].pop("resourceVersion")
    assert err(store.update, "apps", "deployments", "app", "web", scale,
               subresource="scale").code == 422


def test_verbs_a_type_lacks_are_method_not_allowed(store):
    e = err(store.delete_collection, "", "namespaces", None)
    assert (e.code, e.reason) == (405, "MethodNotAllowed")


# ---- delete, finalizers, propagation, preconditions -------------------------------------

def test_delete_returns_status_or_object_like_the_real_server(store):
    store.create("", "configmaps", "app", cm("a"))
    out, deleted = store.delete_with_status("", "configmaps", "app", "a")
    assert deleted and out["kind"] == "Status" and out["status"] == "Success"
    assert out["details"]["name"] == "a" and out["details"]["kind"] == "configmaps"
    assert store.get_or_none("", "configmaps", "app", "a") is None
    store.create("", "pods", "app", {"metadata": {"name": "p"},
                                     "spec": {"containers": [{"name": "c", "image": "x"}]}})
    assert store.delete("", "pods", "app", "p")["kind"] == "Pod"


def test_finalizers_keep_the_object_until_removed(store):
    body = cm("a")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    store.create("", "configmaps", "app", body)
    out, deleted = store.delete_with_status("", "configmaps", "app", "a")
    assert not deleted
    assert out["metadata"]["deletionTimestamp"] == "2030-01-02T03:04:05Z"
    assert out["metadata"]["deletionGracePeriodSeconds"] == 0
    live = store.get("", "configmaps", "app", "a")
    assert live["metadata"]["deletionTimestamp"]
    # no new finalizers once deleting
    live["metadata"]["finalizers"].append("example.com/other")
    assert err(store.update, "", "configmaps", "app", "a", live).code == 422
    live = store.get("", "configmaps", "app", "a")
    live["metadata"]["finalizers"] = []
    store.update("", "configmaps", "app", "a", live)
    assert store.get_or_none("", "configmaps", "app", "a") is None


def test_propagation_policies_add_gc_finalizers(store):
    store.create("apps", "deployments", "app", deployment("fg"))
    store.create("apps", "deployments", "app", deployment("orph"))
    store.create("apps", "deployments", "app", deployment("bg"))
    fg = store.delete("apps", "deployments", "app", "fg", propagation_policy="Foreground")
    assert fg["metadata"]["finalizers"] == ["foregroundDeletion"]
    orph = store.delete("apps", "deployments", "app", "orph", propagation_policy="Orphan")
    assert orph["metadata"]["finalizers"] == ["orphan"]
    store.delete("apps", "deployments", "app", "bg", propagation_policy="Background")
    assert store.get_or_none("apps", "deployments", "app", "bg") is None
    assert store.get_or_none("apps", "deployments", "app", "fg") is not None


def test_delete_preconditions(store):
    obj = store.create("", "configmaps", "app", cm("a"))
    e = err(store.delete, "", "configmaps", "app", "a", preconditions={"uid": "other"})
    assert e.code == 409 and "Precondition failed: UID in precondition: other" in e.message
    e = err(store.delete, "", "configmaps", "app", "a", preconditions={"resourceVersion": "1"})
    assert e.code == 409 and "ResourceVersion in precondition: 1" in e.message
    store.delete("", "configmaps", "app", "a",
                 preconditions={"uid": obj["metadata"]["uid"],
                                "resourceVersion": obj["metadata"]["resourceVersion"]})
    assert store.get_or_none("", "configmaps", "app", "a") is None


def test_delete_collection_by_label(store):
    store.create("", "configmaps", "app", cm("a", labels={"t": "x"}))
    store.create("", "configmaps", "app", cm("b", labels={"t": "y"}))
    out = store.delete_collection("", "configmaps", "app", label_selector="t=x")
    assert [i["metadata"]["name"] for i in out["items"]] == ["a"]
    assert [i["metadata"]["name"] for i in store.list("", "configmaps", "app")["items"]] == ["b"]


# ---- dry run ----------------------------------------------------------------------------

def test_dry_run_stores_nothing(store):
    rv = store.current_resource_version()
    out = store.create("", "configmaps", "app", cm("a"), dry_run=True)
    assert out["metadata"]["name"] == "a" and out["metadata"]["uid"]
    assert store.get_or_none("", "configmaps", "app", "a") is None
    assert store.current_resource_version() == rv
    # invalid objects still fail in dry run
    assert err(store.create, "", "configmaps", "app", cm("A"), dry_run=True).code == 422
    store.create("", "configmaps", "app", cm("b"))
    rv = store.current_resource_version()
    out = store.patch("", "configmaps", "app", "b", {"data": {"k": "new"}}, "merge", dry_run=True)
    assert out["data"] == {"k": "new"}
    assert store.get("", "configmaps", "app", "b")["data"] == {"k": "v"}
    store.delete("", "configmaps", "app", "b", dry_run=True)
    assert store.get_or_none("", "configmaps", "app", "b") is not None
    assert store.current_resource_version() == rv


# ---- patch through the store --------------------------------------------------------------

def test_patch_types_through_store(store):
    store.create("apps", "deployments", "app", deployment())
    out = store.patch("apps", "deployments", "app", "web",
                      [{"op": "replace", "path": "/spec/replicas", "value": 3}], "json")
    assert out["spec"]["replicas"] == 3
    out = store.patch("apps", "deployments", "app", "web",
                      '{"metadata": {"labels": {"x": "1"}}}', "merge")
    assert out["metadata"]["labels"] == {"app": "web", "x": "1"}
    out = store.patch("apps", "deployments", "app", "web", {"spec": {"template": {"spec": {
        "containers": [{"name": "side", "image": "busybox"}]}}}}, "strategic")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["c", "side"]
    e = err(store.patch, "apps", "deployments", "app", "web",
            [{"op": "test", "path": "/spec/replicas", "value": 99}], "json")
    assert e.code == 422


def test_patch_with_stale_resource_version_conflicts(store):
    store.create("", "configmaps", "app", cm("a"))
    e = err(store.patch, "", "configmaps", "app", "a",
            {"metadata": {"resourceVersion": "1"}, "data": {"k": "x"}}, "merge")
    assert e.code == 409


def test_patch_missing_object_is_not_found(store):
    assert err(store.patch, "", "configmaps", "app", "nope", {}, "merge").code == 404


def apply(store, data, manager, force=False, labels=None):
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "applied", **({"labels": labels} if labels else {})},
            "data": data}
    return store.patch("", "configmaps", "app", "applied", body, "apply",
                       field_manager=manager, force=force)


def test_server_side_apply_creates_and_records_ownership(store):
    out = apply(store, {"a": "1"}, "me", labels={"x": "1"})
    assert out["data"] == {"a": "1"}
    [entry] = out["metadata"]["managedFields"]
    assert entry["manager"] == "me" and entry["operation"] == "Apply"
    assert entry["fieldsV1"] == {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:x": {}}}}


def test_server_side_apply_removes_fields_the_manager_stops_applying(store):
    apply(store, {"a": "1", "b": "2"}, "me", labels={"x": "1"})
    out = apply(store, {"b": "3"}, "me")
    assert out["data"] == {"b": "3"}
    assert "x" not in (out["metadata"].get("labels") or {})


def test_server_side_apply_keeps_fields_of_other_managers_and_plain_writes(store):
    apply(store, {"a": "1"}, "me")
    store.patch("", "configmaps", "app", "applied", {"data": {"byhand": "y"}}, "merge")
    apply(store, {"b": "2"}, "other")
    out = apply(store, {"a": "1"}, "me")
    assert out["data"] == {"a": "1", "b": "2", "byhand": "y"}
    assert {e["manager"] for e in out["metadata"]["managedFields"]} == {"me", "other"}


def test_server_side_apply_conflicts_are_credited_to_each_manager(store):
    """Several conflicts: grouped under each manager, managers sorted (the message used to credit every
    field to the first manager, with an apiVersion that real servers print for Update managers only)."""
    apply(store, {"a": "1"}, "zeta")
    apply(store, {"a": "1", "b": "1"}, "alpha")
    e = err(apply, store, {"a": "2", "b": "2"}, "other")
    assert e.message == ('Apply failed with 3 conflicts: conflicts with "alpha":\n- .data.a\n- .data.b\n'
                         'conflicts with "zeta":\n- .data.a')
    assert sorted((c["message"], c["field"]) for c in e.status()["details"]["causes"]) == [
        ('conflict with "alpha"', ".data.a"), ('conflict with "alpha"', ".data.b"), ('conflict with "zeta"', ".data.a")]


def test_server_side_apply_conflict_and_force(store):
    apply(store, {"a": "1"}, "me")
    apply(store, {"a": "1"}, "other")          # same value: shared ownership, no conflict
    e = err(apply, store, {"a": "2"}, "other")
    assert (e.code, e.reason) == (409, "Conflict")
    # an Apply manager is named alone; "using <apiVersion>" is only for Update managers (printManager)
    assert e.message == 'Apply failed with 1 conflict: conflict with "me": .data.a'
    assert e.status()["details"]["causes"][0]["message"] == 'conflict with "me"'
    assert e.status()["details"]["causes"][0]["field"] == ".data.a"
    out = apply(store, {"a": "2"}, "other", force=True)
    assert out["data"] == {"a": "2"}
    mine = next(m for m in out["metadata"]["managedFields"] if m["manager"] == "me"
                ) if any(m["manager"] == "me" for m in out["metadata"]["managedFields"]) else None
    assert mine is None                        # "me" lost its only field to the forced apply


def test_server_side_apply_removes_keyed_list_items(store):
    d = deployment()
    d["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    store.patch("apps", "deployments", "app", "web", d, "apply", field_manager="me")
    d["spec"]["template"]["spec"]["containers"].pop()
    out = store.patch("apps", "deployments", "app", "web", d, "apply", field_manager="me")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["c"]
    assert out["metadata"]["generation"] == 2
    again = store.patch("apps", "deployments", "app", "web", d, "apply", field_manager="me")
    assert again["metadata"]["resourceVersion"] == out["metadata"]["resourceVersion"]


def test_apply_object_creates_updates_and_sets_status(store):
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "d", "namespace": "app"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
           "status": {"phase": "Bound"}}
    out = store.apply_object(pvc)
    assert out["status"] == {"phase": "Bound"}
    pvc["metadata"]["labels"] = {"x": "y"}
    assert store.apply_object(pvc)["metadata"]["labels"] == {"x": "y"}


def test_pod_binding_subresource(store):
    store.create("", "pods", "app", {"metadata": {"name": "p"},
                                     "spec": {"containers": [{"name": "c", "image": "x"}]}})
    store.create("", "pods", "app", {"metadata": {"name": "p"}, "target": {"name": "n1"}},
                 subresource="binding")
    assert store.get("", "pods", "app", "p")["spec"]["nodeName"] == "n1"
    e = err(store.create, "", "pods", "app", {"metadata": {"name": "p"},
                                               "target": {"name": "n2"}}, subresource="binding")
    assert e.code == 409


def test_secret_data_must_be_base64(store):
    e = err(store.create, "", "secrets", "app", {"metadata": {"name": "s"},
                                                 "data": {"pw": "not base64!"}})
    assert e.code == 400
    assert e.message == ('Secret in version "v1" cannot be handled as a Secret: illegal base64 '
                         'data at input byte 3')
    # configmap data is plain text; only binaryData is base64
    store.create("", "configmaps", "app", cm("plain", {"k": "not base64!"}))


def test_config_keys_are_validated(store):
    e = err(store.create, "", "configmaps", "app", cm("a", {"bad key": "v"}))
    assert e.code == 422 and e.status()["details"]["causes"][0]["field"] == "data[bad key]"


def test_pod_qos_class(store):
    def pod(name, resources):
        return {"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "x", "resources": resources}]}}
    lim = {"cpu": "1", "memory": "1Gi"}
    assert store.create("", "pods", "app", pod("g", {"limits": lim}))["status"]["qosClass"] \
        == "Guaranteed"
    assert store.create("", "pods", "app", pod("b", {"requests": {"cpu": "1"}}))["status"][
        "qosClass"] == "Burstable"
    assert store.create("", "pods", "app", pod("e", {}))["status"]["qosClass"] == "BestEffort"


def test_owner_references_are_validated(store):
    body = cm("a")
    body["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap",
                                            "name": "o", "uid": ""}]
    e = err(store.create, "", "configmaps", "app", body)
    assert e.code == 422 and "uid must not be empty" in e.message
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u", "controller": True}
    body["metadata"]["ownerReferences"] = [ref, dict(ref, name="p", uid="v")]
    e = err(store.create, "", "configmaps", "app", body)
    assert "Only one reference can have Controller set to true" in e.message


def test_graceful_pod_deletion(store):
    def pod(name, node=None):
        spec = {"containers": [{"name": "c", "image": "x"}], "terminationGracePeriodSeconds": 10}
        if node:
            spec["nodeName"] = node
        return {"metadata": {"name": name}, "spec": spec}
    # an unscheduled pod goes at once
    store.create("", "pods", "app", pod("pending"))
    assert store.delete_with_status("", "pods", "app", "pending")[1] is True
    # a pod on a node waits for the kubelet: deletionTimestamp = now + grace
    store.create("", "pods", "app", pod("running", "n1"))
    out, deleted = store.delete_with_status("", "pods", "app", "running")
    assert not deleted
    assert out["metadata"]["deletionTimestamp"] == "2030-01-02T03:04:15Z"
    assert out["metadata"]["deletionGracePeriodSeconds"] == 10
    assert "finalizers" not in out["metadata"]
    # deleting again with a longer grace changes nothing; grace 0 (the kubelet) removes it
    rv = out["metadata"]["resourceVersion"]
    again, _ = store.delete_with_status("", "pods", "app", "running", grace_period_seconds=60)
    assert again["metadata"]["resourceVersion"] == rv
    assert store.delete_with_status("", "pods", "app", "running",
                                    grace_period_seconds=0)[1] is True
    assert store.get_or_none("", "pods", "app", "running") is None
    # an explicit grace of 0 deletes a running pod at once (force delete)
    store.create("", "pods", "app", pod("forced", "n1"))
    assert store.delete_with_status("", "pods", "app", "forced", grace_period_seconds=0)[1]


def test_pvc_spec_is_immutable_except_binding_and_requests(store):
    pvc = store.create("", "persistentvolumeclaims", "app", {
        "metadata": {"name": "d"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}}})
    pvc["spec"]["volumeName"] = "pv-1"          # the binder sets it once
    pvc["spec"]["resources"]["requests"]["storage"] = "2Gi"
    pvc = store.update("", "persistentvolumeclaims", "app", "d", pvc)
    pvc["spec"]["accessModes"] = ["ReadWriteMany"]
    e = err(store.update, "", "persistentvolumeclaims", "app", "d", pvc)
    assert e.code == 422 and "spec: Forbidden: spec is immutable after creation" in e.message
    e = err(store.patch, "", "persistentvolumeclaims", "app", "d",
            {"spec": {"volumeName": "pv-2"}}, "merge")
    assert e.code == 422


def test_statefulset_and_pod_and_job_immutability(store):
    sts = deployment("db")
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "db"
    store.create("apps", "statefulsets", "app", sts)
    store.patch("apps", "statefulsets", "app", "db", {"spec": {"replicas": 3}}, "merge")
    e = err(store.patch, "apps", "statefulsets", "app", "db", {"spec": {"serviceName": "x"}},
            "merge")
    assert "updates to statefulset spec for fields other than" in e.message
    store.create("", "pods", "app", {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "x:1"}]}})
    out = store.patch("", "pods", "app", "p", {"spec": {"containers": [
        {"name": "c", "image": "x:2"}]}}, "strategic")
    assert out["spec"]["containers"][0]["image"] == "x:2"
    e = err(store.patch, "", "pods", "app", "p", {"spec": {"containers": [
        {"name": "c", "command": ["sh"]}]}}, "strategic")
    assert "pod updates may not change fields other than" in e.message
    job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}}
    out = store.create("batch", "jobs", "app", job)
    uid = out["metadata"]["uid"]
    assert out["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert out["spec"]["template"]["metadata"]["labels"]["job-name"] == "j"
    e = err(store.patch, "batch", "jobs", "app", "j", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "y"}]}}}}, "strategic")
    assert "spec.template: Invalid value" in e.message and "field is immutable" in e.message


def test_apply_object_merges_into_live_objects(store):
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "d", "namespace": "app"},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    store.apply_object(pvc)
    store.patch("", "persistentvolumeclaims", "app", "d", {"spec": {"volumeName": "pv-1"}}, "merge")
    out = store.apply_object(pvc)           # re-applying keeps what the binder set
    assert out["spec"]["volumeName"] == "pv-1"


def test_system_namespaces_may_not_be_deleted(store):
    e = err(store.delete, "", "namespaces", None, "default")
    assert (e.code, e.message) == (403, 'namespaces "default" is forbidden: this namespace may '
                                        'not be deleted')


def test_generate_name_prefix_is_truncated(store):
    out = store.create("", "configmaps", "app", {"metadata": {"generateName": "x" * 70}})
    assert len(out["metadata"]["name"]) == 63


def test_exists_answers_like_get_or_none(store):
    """exists() is get_or_none() is not None without the copy: before, after create, after
    delete, cluster-scoped, and for a type the store does not serve."""
    def both(group, plural, ns, name):
        found = store.exists(group, plural, ns, name)
        assert found == (store.get_or_none(group, plural, ns, name) is not None)
        return found
    assert not both("", "configmaps", "app", "a")
    store.create("", "configmaps", "app", cm("a"))
    assert both("", "configmaps", "app", "a")
    assert not both("", "configmaps", "other", "a")
    assert both("", "namespaces", None, "app")
    assert not both("example.com", "widgets", "app", "a")
    store.delete("", "configmaps", "app", "a")
    assert not both("", "configmaps", "app", "a")
