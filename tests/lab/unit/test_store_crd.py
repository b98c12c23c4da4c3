"""CustomResourceDefinitions: registration, status, versions, scope, subresources, pruning,
defaults, schema validation, deletion."""
import pytest

from fleetdr_lab.store import ApiError
from fleetdr_lab.strategies import new_store

GROUP = "example.com"


def widget_crd(scope="Namespaced", status=True, scale=False, versions=("v1",), storage="v1",
               preserve=False):
    spec_schema = {"type": "object", "properties": {
        "size": {"type": "integer", "default": 3},
        "color": {"type": "string", "enum": ["red", "blue"]},
        "replicas": {"type": "integer"},
        "nested": {"type": "object", "properties": {"keep": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "object",
                                            "properties": {"k": {"type": "string"}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }}
    schema = {"type": "object", "properties": {
        "spec": spec_schema,
        "status": {"type": "object", "properties": {"phase": {"type": "string"},
                                                    "replicas": {"type": "integer"},
                                                    "selector": {"type": "string"}}}}}
    if preserve:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    subs = {}
    if status:
        subs["status"] = {}
    if scale:
        subs["scale"] = {"specReplicasPath": ".spec.replicas",
                         "statusReplicasPath": ".status.replicas",
                         "labelSelectorPath": ".status.selector"}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {"group": GROUP, "scope": scope,
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                           "shortNames": ["wd"], "categories": ["all"]},
                 "versions": [{"name": v, "served": True, "storage": v == storage,
                               "schema": {"openAPIV3Schema": schema},
                               "subresources": subs,
                               "additionalPrinterColumns": [
                                   {"name": "Size", "type": "integer",
                                    "jsonPath": ".spec.size"}]}
                              for v in versions]}}


def widget(name="w1", **spec):
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": spec}


@pytest.fixture
def store():
    s = new_store()
    s.create("", "namespaces", None, {"metadata": {"name": "app"}})
    return s


def test_crd_registers_type_and_sets_status(store):
    out = store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    conds = {c["type"]: c for c in out["status"]["conditions"]}
    assert conds["Established"]["status"] == "True"
    assert conds["NamesAccepted"]["status"] == "True"
    assert out["status"]["acceptedNames"]["kind"] == "Widget"
    assert out["status"]["acceptedNames"]["plural"] == "widgets"
    assert out["status"]["storedVersions"] == ["v1"]
    rt = store.registry.get(GROUP, "widgets")
    assert rt.kind == "Widget" and rt.namespaced and rt.short_names == ["wd"]
    assert rt.categories == ["all"] and "status" in rt.subresources
    assert rt.printer_columns["v1"][0]["jsonPath"] == ".spec.size"
    assert [r["name"] for r in rt.discovery()] == ["widgets", "widgets/status"]
    assert {"name": GROUP, "versions": ["v1"], "preferredVersion": "v1"} in store.registry.groups()
    created = store.create(GROUP, "widgets", "app", widget(size=1))
    assert created["metadata"]["generation"] == 1 and created["kind"] == "Widget"


def test_crd_name_must_match_names_and_group(store):
    crd = widget_crd()
    crd["metadata"]["name"] = "gadgets.example.com"
    with pytest.raises(ApiError) as ei:
        store.create("apiextensions.k8s.io", "customresourcedefinitions", None, crd)
    assert ei.value.code == 422
    assert 'must be spec.names.plural+"."+spec.group' in ei.value.message
    assert store.registry.get(GROUP, "widgets") is None


def test_crd_needs_one_storage_version_and_schemas(store):
    crd = widget_crd(versions=("v1", "v2"), storage="none")
    with pytest.raises(ApiError) as ei:
        store.create("apiextensions.k8s.io", "customresourcedefinitions", None, crd)
    assert "exactly one version marked as storage version" in ei.value.message
    crd = widget_crd()
    del crd["spec"]["versions"][0]["schema"]
    with pytest.raises(ApiError) as ei:
        store.create("apiextensions.k8s.io", "customresourcedefinitions", None, crd)
    assert "schemas are required" in ei.value.message


def test_unknown_fields_are_pruned_and_defaults_applied(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    out = store.create(GROUP, "widgets", "app", {
        **widget(color="red", bogus=1, nested={"keep": "x", "drop": "y"},
                 tags=[{"k": "a", "extra": 1}], free={"anything": {"goes": 1}},
                 labels={"a": "b"}),
        "topLevelJunk": True})
    spec = out["spec"]
    assert "bogus" not in spec and "topLevelJunk" not in out
    assert spec["nested"] == {"keep": "x"}
    assert spec["tags"] == [{"k": "a"}]
    assert spec["free"] == {"anything": {"goes": 1}}
    assert spec["labels"] == {"a": "b"}
    assert spec["size"] == 3                      # schema default
    assert out["metadata"]["name"] == "w1"        # metadata is never pruned


def test_preserve_unknown_fields_keeps_everything(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None,
                 widget_crd(preserve=True))
    out = store.create(GROUP, "widgets", "app", {**widget(), "extra": {"a": 1}})
    assert out["extra"] == {"a": 1}


def test_schema_type_and_enum_errors_are_422(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    with pytest.raises(ApiError) as ei:
        store.create(GROUP, "widgets", "app", widget(size="big"))
    assert ei.value.code == 422
    assert 'Widget.example.com "w1" is invalid: spec.size: Invalid value: "string": spec.size ' \
           'in body must be of type integer: "string"' == ei.value.message
    with pytest.raises(ApiError) as ei:
        store.create(GROUP, "widgets", "app", widget(color="green"))
    assert 'spec.color: Unsupported value: "green": supported values: "red", "blue"' \
        in ei.value.message


def test_cr_status_subresource(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    w = widget()
    w["status"] = {"phase": "Ignored"}
    out = store.create(GROUP, "widgets", "app", w)
    assert "status" not in out           # status is dropped on create with the subresource
    out["status"] = {"phase": "Ready"}
    out = store.update(GROUP, "widgets", "app", "w1", out, subresource="status")
    assert out["status"] == {"phase": "Ready"}
    out["spec"]["size"] = 9
    out["status"] = {"phase": "Changed"}
    out = store.update(GROUP, "widgets", "app", "w1", out)
    assert out["status"] == {"phase": "Ready"} and out["metadata"]["generation"] == 2


def test_cr_without_status_subresource_treats_status_as_a_field(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None,
                 widget_crd(status=False))
    w = widget()
    w["status"] = {"phase": "Set"}
    out = store.create(GROUP, "widgets", "app", w)
    assert out["status"] == {"phase": "Set"}
    with pytest.raises(ApiError) as ei:
        store.update(GROUP, "widgets", "app", "w1", out, subresource="status")
    assert ei.value.code == 404


def test_cr_scale_subresource(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None,
                 widget_crd(scale=True))
    store.create(GROUP, "widgets", "app", widget(replicas=2))
    scale = store.get(GROUP, "widgets", "app", "w1", subresource="scale")
    assert scale["spec"]["replicas"] == 2
    scale["spec"]["replicas"] = 5
    store.update(GROUP, "widgets", "app", "w1", scale, subresource="scale")
    assert store.get(GROUP, "widgets", "app", "w1")["spec"]["replicas"] == 5


def test_strategic_merge_on_custom_resource_is_415(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    store.create(GROUP, "widgets", "app", widget())
    with pytest.raises(ApiError) as ei:
        store.patch(GROUP, "widgets", "app", "w1", {"spec": {"size": 1}}, "strategic")
    assert (ei.value.code, ei.value.reason) == (415, "UnsupportedMediaType")
    out = store.patch(GROUP, "widgets", "app", "w1", {"spec": {"size": 1}}, "merge")
    assert out["spec"]["size"] == 1


def test_cluster_scoped_crd(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None,
                 widget_crd(scope="Cluster"))
    out = store.create(GROUP, "widgets", None, widget())
    assert "namespace" not in out["metadata"]
    assert store.list(GROUP, "widgets")["items"][0]["kind"] == "Widget"


def test_objects_read_through_another_served_version(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None,
                 widget_crd(versions=("v1", "v1beta1"), storage="v1"))
    store.create(GROUP, "widgets", "app", widget(size=4))
    rt = store.registry.get(GROUP, "widgets")
    assert rt.versions == ["v1", "v1beta1"]
    old = store.get(GROUP, "widgets", "app", "w1", version="v1beta1")
    assert old["apiVersion"] == f"{GROUP}/v1beta1" and old["spec"]["size"] == 4
    lst = store.list(GROUP, "widgets", "app", version="v1beta1")
    assert lst["apiVersion"] == f"{GROUP}/v1beta1"
    assert lst["items"][0]["apiVersion"] == f"{GROUP}/v1beta1"
    body = dict(widget("w2"), apiVersion=f"{GROUP}/v1beta1")
    assert store.create(GROUP, "widgets", "app", body)["apiVersion"] == f"{GROUP}/v1"


def test_deleting_crd_deletes_objects_with_events_and_type(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    store.create(GROUP, "widgets", "app", widget("a"))
    store.create(GROUP, "widgets", "app", widget("b"))
    w = store.watch(resource_version=store.current_resource_version())
    store.delete("apiextensions.k8s.io", "customresourcedefinitions", None, f"widgets.{GROUP}")
    events = []
    while (ev := w.get_nowait()) is not None:
        events.append((ev["type"], ev["object"]["kind"], ev["object"]["metadata"]["name"]))
    assert events == [("DELETED", "Widget", "a"), ("DELETED", "Widget", "b"),
                      ("DELETED", "CustomResourceDefinition", f"widgets.{GROUP}")]
    assert store.registry.get(GROUP, "widgets") is None
    with pytest.raises(ApiError) as ei:
        store.list(GROUP, "widgets")
    assert ei.value.code == 404
    # re-creating the CRD starts empty
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    assert store.list(GROUP, "widgets")["items"] == []


def test_crd_update_adds_a_version(store):
    crd = store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    v2 = dict(crd["spec"]["versions"][0], name="v2", storage=False)
    crd["spec"]["versions"].append(v2)
    out = store.update("apiextensions.k8s.io", "customresourcedefinitions", None,
                       f"widgets.{GROUP}", crd)
    assert out["metadata"]["generation"] == 2
    assert store.registry.get(GROUP, "widgets").versions == ["v2", "v1"]
    assert out["status"]["conditions"][1]["type"] == "Established"


def test_strict_field_validation_rejects_unknown_fields(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    with pytest.raises(ApiError) as ei:
        store.create(GROUP, "widgets", "app", widget(bogus=1, nested={"drop": 2}),
                     field_validation="Strict")
    assert ei.value.code == 400
    assert ei.value.message == ('Widget in version "v1" cannot be handled as a Widget: strict '
                                'decoding error: unknown field "spec.bogus", unknown field '
                                '"spec.nested.drop"')
    assert store.get_or_none(GROUP, "widgets", "app", "w1") is None
    store.create(GROUP, "widgets", "app", widget(), field_validation="Strict")
    with pytest.raises(ApiError):
        store.patch(GROUP, "widgets", "app", "w1", {"spec": {"bad": 1}}, "merge",
                    field_validation="Strict")
    out = store.patch(GROUP, "widgets", "app", "w1", {"spec": {"bad": 1}}, "merge",
                      field_validation="Ignore")
    assert "bad" not in out["spec"]


def test_status_change_bumps_generation_without_status_subresource(store):
    store.create("apiextensions.k8s.io", "customresourcedefinitions", None,
                 widget_crd(status=False))
    out = store.create(GROUP, "widgets", "app", widget())
    out["status"] = {"phase": "New"}
    assert store.update(GROUP, "widgets", "app", "w1", out)["metadata"]["generation"] == 2
