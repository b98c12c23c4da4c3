"""List: selectors through the store, limit/continue paging, List shape, speed."""
import copy

import pytest

from fleetdr_lab.store import ApiError
from fleetdr_lab.strategies import new_store


@pytest.fixture
def store():
    s = new_store()
    for ns in ("a", "b"):
        s.create("", "namespaces", None, {"metadata": {"name": ns}})
    return s


def names(lst):
    return [i["metadata"]["name"] for i in lst["items"]]


def test_list_shape_and_order(store):
    store.create("", "configmaps", "b", {"metadata": {"name": "z"}})
    store.create("", "configmaps", "a", {"metadata": {"name": "y"}})
    store.create("", "configmaps", "a", {"metadata": {"name": "x"}})
    lst = store.list("", "configmaps")
    assert lst["kind"] == "ConfigMapList" and lst["apiVersion"] == "v1"
    assert lst["metadata"]["resourceVersion"] == store.current_resource_version()
    assert names(lst) == ["x", "y", "z"]       # by namespace, then name (etcd key order)
    assert "kind" not in lst["items"][0]        # built-in list items carry no kind
    assert names(store.list("", "configmaps", "a")) == ["x", "y"]


def test_label_selector_operators(store):
    for n, labels in [("p1", {"env": "prod", "tier": "web"}), ("p2", {"env": "prod"}),
                      ("s1", {"env": "staging", "tier": "db"}), ("n1", {})]:
        store.create("", "configmaps", "a", {"metadata": {"name": n, "labels": labels}})

    def sel(s):
        return sorted(names(store.list("", "configmaps", "a", label_selector=s)))
    assert sel("env=prod") == ["p1", "p2"]
    assert sel("env==prod") == ["p1", "p2"]
    assert sel("env!=prod") == ["n1", "s1"]
    assert sel("env in (prod, staging)") == ["p1", "p2", "s1"]
    assert sel("env notin (prod)") == ["n1", "s1"]
    assert sel("tier") == ["p1", "s1"]
    assert sel("!tier") == ["n1", "p2"]
    assert sel("env=prod,tier") == ["p1"]
    assert sel("") == ["n1", "p1", "p2", "s1"]


def test_bad_selectors_are_400(store):
    for bad in ("env in prod", "=x", "a b"):
        with pytest.raises(ApiError) as ei:
            store.list("", "configmaps", label_selector=bad)
        assert ei.value.code == 400
    with pytest.raises(ApiError) as ei:
        store.list("", "configmaps", field_selector="spec.nodeName=x")
    assert ei.value.code == 400
    assert ei.value.message == "field label not supported: spec.nodeName"


def test_field_selectors(store):
    for i, (phase, node) in enumerate([("Running", "n1"), ("Pending", ""), ("Running", "n2")]):
        store.create("", "pods", "a", {"metadata": {"name": f"p{i}"}, "spec": {
            "nodeName": node, "containers": [{"name": "c", "image": "x"}]}})
        if phase != "Pending":
            p = store.get("", "pods", "a", f"p{i}")
            p["status"]["phase"] = phase
            store.update("", "pods", "a", f"p{i}", p, subresource="status")
    assert names(store.list("", "pods", field_selector="status.phase=Running")) == ["p0", "p2"]
    assert names(store.list("", "pods", field_selector="spec.nodeName=n2")) == ["p2"]
    assert names(store.list("", "pods", field_selector="spec.nodeName!=n2,"
                                                       "metadata.namespace=a")) == ["p0", "p1"]
    assert names(store.list("", "pods", field_selector="metadata.name==p1")) == ["p1"]
    store.create("", "secrets", "a", {"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                                      "data": {"tls.crt": "", "tls.key": ""}})
    store.create("", "secrets", "a", {"metadata": {"name": "plain"}})
    assert names(store.list("", "secrets", field_selector="type=kubernetes.io/tls")) == ["tls"]
    store.create("", "events", "a", {"metadata": {"name": "e1"},
                                     "involvedObject": {"kind": "Pod", "name": "p0"}})
    assert names(store.list("", "events", field_selector="involvedObject.name=p0")) == ["e1"]


def test_limit_and_continue_visit_each_item_once(store):
    for i in range(23):
        store.create("", "configmaps", "a" if i % 2 else "b", {"metadata": {"name": f"c{i:02}"}})
    seen, token, pages = [], None, 0
    while True:
        page = store.list("", "configmaps", limit=5, continue_token=token)
        pages += 1
        seen += [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] == 23 - len(seen)
    assert pages == 5 and len(seen) == 23 and len(set(seen)) == 23
    assert seen == sorted(seen)


def test_continue_survives_deletion_of_the_last_seen_item(store):
    for i in range(6):
        store.create("", "configmaps", "a", {"metadata": {"name": f"c{i}"}})
    page = store.list("", "configmaps", "a", limit=3)
    store.delete("", "configmaps", "a", "c2")
    rest = store.list("", "configmaps", "a", continue_token=page["metadata"]["continue"])
    assert names(page) == ["c0", "c1", "c2"] and names(rest) == ["c3", "c4", "c5"]


def test_bad_continue_token_is_400(store):
    with pytest.raises(ApiError) as ei:
        store.list("", "configmaps", continue_token="garbage!")
    assert ei.value.code == 400


def test_list_copies_only_the_returned_items(store, monkeypatch):
    """Listing 1,000 objects stays cheap because only matches are copied (speed is measured by
    hand, not asserted: see the store report)."""
    for i in range(1000):
        store.create("", "configmaps", "a", {
            "metadata": {"name": f"cm-{i:04}", "labels": {"app": f"a{i % 10}", "tier": "x"}},
            "data": {f"k{j}": "v" * 20 for j in range(5)}})
    copies = []
    real_copy = store._copy
    monkeypatch.setattr(store, "_copy", lambda o: copies.append(1) or real_copy(o))
    lst = store.list("", "configmaps", "a", label_selector="app in (a1,a2),tier=x")
    assert len(lst["items"]) == 200 and len(copies) == 200
    copies.clear()
    page = store.list("", "configmaps", "a", label_selector="tier=x", limit=10)
    assert len(page["items"]) == 10 and len(copies) == 10


def _shared_list_store():
    from test_store_crd import widget, widget_crd
    s = new_store()
    for ns in ("app", "other"):
        s.create("", "namespaces", None, {"metadata": {"name": ns}})
        for name, team in (("a", "x"), ("b", "y"), ("c", "x")):
            s.create("", "configmaps", ns, {"metadata": {"name": name, "labels": {"team": team}},
                                            "data": {"k": name}})
    s.patch("", "configmaps", "app", "a", {"data": {"more": "1"}}, "merge", field_manager="tester")
    s.create("autoscaling", "horizontalpodautoscalers", "app", {
        "metadata": {"name": "h"}, "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 3}})
    s.create("apiextensions.k8s.io", "customresourcedefinitions", None, widget_crd())
    s.create("example.com", "widgets", "app", widget("w1", size=2))
    return s


@pytest.mark.parametrize("kw", [
    dict(group="", plural="configmaps"),
    dict(group="", plural="configmaps", namespace="app", label_selector="team=x"),
    dict(group="", plural="configmaps", limit=1),
    dict(group="autoscaling", plural="horizontalpodautoscalers", version="v1"),   # converted
    dict(group="example.com", plural="widgets"),                                 # custom resource
])
def test_shared_list_equals_copied_list(kw):
    """list(shared=True) (the periodic checks' read-only list) answers exactly what list() does,
    and what it handed out stays unchanged by later writes."""
    s = _shared_list_store()
    shared = s.list(**kw, shared=True)
    assert shared["items"] and shared == s.list(**kw)
    snapshot = copy.deepcopy(shared)
    for item in s.list(**kw)["items"]:
        m = item["metadata"]
        s.patch(kw["group"], kw["plural"], m.get("namespace"), m["name"],
                {"metadata": {"labels": {"later": "write"}}}, "merge")
    assert shared == snapshot
    assert s.list(**kw, shared=True) == s.list(**kw)
