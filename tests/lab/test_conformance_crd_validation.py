"""Custom resources validated as kube-apiserver does (apiextensions-apiserver pkg/apiserver/schema,
schema/cel/validation.go): bounds, lengths and patterns in the OpenAPI schema, and the CEL rules of
x-kubernetes-validations, including transition rules (oldSelf) that only run on updates, a rule's
reason and fieldPath. The 422 bodies carry the field and kube's wording."""
from __future__ import annotations

import json

import pytest
from helpers import unique, wait_for
from kubernetes.client.rest import ApiException

GROUP = "conformance.fleetdr.io"


@pytest.fixture(scope="module")
def widgets(apis):
    name = f"widgets.{GROUP}"
    spec_schema = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.minReplicas <= self.replicas", "message": "replicas must be at least minReplicas"},
            {"rule": "!has(oldSelf.storage) || has(self.storage)", "message": "storage cannot be removed", "reason": "FieldValueForbidden",
             "fieldPath": ".storage"}],
        "properties": {
            "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
            "minReplicas": {"type": "integer", "minimum": 0},
            "label": {"type": "string", "maxLength": 8, "pattern": "^[a-z]+$"},
            "storage": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "storage is immutable"}]},
            "zones": {"type": "array", "maxItems": 2, "items": {"type": "string"}}}}
    apis.ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
        "spec": {"group": GROUP, "scope": "Namespaced", "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": spec_schema}}}}]}})
    wait_for(lambda: any(c.type == "Established" and c.status == "True"
                         for c in apis.ext.read_custom_resource_definition(name).status.conditions or []), "Widget established")
    yield apis.custom
    apis.ext.delete_custom_resource_definition(name)


def widget(name, **spec):
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


def refused(call):
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 422, caught.value.body
    return dict((c["field"], c["message"]) for c in json.loads(caught.value.body)["details"]["causes"])


def test_bounds_lengths_patterns_and_items(widgets, ns):
    causes = refused(lambda: widgets.create_namespaced_custom_object(GROUP, "v1", ns, "widgets", widget(
        unique("w"), replicas=11, minReplicas=0, label="toolonglabel", zones=["a", "b", "c"])))
    assert causes["spec.replicas"] == "Invalid value: 11: spec.replicas in body should be less than or equal to 10"
    assert causes["spec.label"] == "Too long: may not be more than 8 bytes"
    assert causes["spec.zones"] == "Too many: 3: must have at most 2 items"
    causes = refused(lambda: widgets.create_namespaced_custom_object(GROUP, "v1", ns, "widgets", widget(
        unique("w"), replicas=1, minReplicas=0, label="Caps")))
    assert causes["spec.label"] == "Invalid value: \"Caps\": spec.label in body should match '^[a-z]+$'"


def test_cel_rules_and_transition_rules(widgets, ns):
    name = unique("w")
    causes = refused(lambda: widgets.create_namespaced_custom_object(GROUP, "v1", ns, "widgets", widget(name, replicas=1, minReplicas=2)))
    assert causes["spec"] == 'Invalid value: "object": replicas must be at least minReplicas'
    # transition rules do not run on create
    widgets.create_namespaced_custom_object(GROUP, "v1", ns, "widgets", widget(name, replicas=2, minReplicas=1, storage="ssd"))
    causes = refused(lambda: widgets.patch_namespaced_custom_object(GROUP, "v1", ns, "widgets", name, {"spec": {"storage": "hdd"}}))
    assert causes["spec.storage"] == 'Invalid value: "string": storage is immutable'
    causes = refused(lambda: widgets.patch_namespaced_custom_object(GROUP, "v1", ns, "widgets", name, {"spec": {"storage": None}}))
    assert causes["spec.storage"] == "Forbidden: storage cannot be removed"
    widgets.patch_namespaced_custom_object(GROUP, "v1", ns, "widgets", name, {"spec": {"replicas": 3}})
    assert widgets.get_namespaced_custom_object(GROUP, "v1", ns, "widgets", name)["spec"]["replicas"] == 3
