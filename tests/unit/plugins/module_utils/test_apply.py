"""The apply engine (module_utils/apply.py) against an in-memory API: what it writes, in which order, and when not."""
import copy
import json

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils import apply
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ApiError, FleetdrError

CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.io"},
       "spec": {"group": "example.io", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [{"name": "v1", "served": True, "storage": True}]}}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "shop"}, "stringData": {"token": "s3cr3t"}}
WIDGET = {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "shop"}, "spec": {"size": 3}}


class FakeApi(object):
    """Paths -> stored objects; applies merge the body in (with server defaults added); records every write."""

    namespace = "velero"

    def __init__(self):
        self.objects = {}
        self.writes = []
        self.conflict_on = set()
        self.lists = []
        self.watched = []
        self.reads = []
        self.bodies = []
        self.answered = []  # (path, whether the answer of an apply was asked for)

    def request(self, action, method, path, body=None, query=None, missing_ok=False, content_type=None, answer=True):
        if method == "GET":
            if path == "/apis/example.io/v1":
                return {"resources": []}
            if path.endswith("/customresourcedefinitions"):  # a LIST, narrowed by labels
                self.lists.append((path, dict(query or {})))
                wanted = dict(pair.split("=") for pair in (query or {}).get("labelSelector", "").split(",") if pair)
                return {"items": [dict((k, v) for k, v in copy.deepcopy(o).items() if k not in ("apiVersion", "kind"))  # as a server lists
                                  for p, o in sorted(self.objects.items()) if p.rsplit("/", 1)[0] == path
                                  and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]}
            self.reads.append(path)
            return copy.deepcopy(self.objects.get(path))
        self.writes.append((method, path, content_type, dict(query or {})))
        self.bodies.append(body)
        if method == "PATCH":
            if path in self.conflict_on and (query or {}).get("force") != "true":
                raise ApiError("conflict", status=409, body="Apply failed with 1 conflict: conflict with \"kubectl\"")
            stored = json.loads(body) if isinstance(body, str) else copy.deepcopy(body)
            stored.setdefault("metadata", {})["uid"] = "u1"  # the server adds fields of its own
            if stored["kind"] == "CustomResourceDefinition":
                stored["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
            self.objects[path] = stored
            self.answered.append((path, answer))
            return copy.deepcopy(stored) if answer else None
        if method == "DELETE":
            return self.objects.pop(path, None)
        raise AssertionError(method)

    def watch_path(self, collection_path, name):
        api = self

        class Source(object):
            def get(self):
                return api.objects.get("{0}/{1}".format(collection_path, name)), "1"

            def stream(self, resource_version, timeout_seconds):
                return iter(())
        return Source()

    def watch_collection(self, collection_path, label_selector=None):
        api = self
        api.watched.append((collection_path, label_selector))

        class Source(object):
            def get(self):
                items = dict((p.rsplit("/", 1)[1], o) for p, o in api.objects.items() if p.rsplit("/", 1)[0] == collection_path)
                return {"metadata": {"resourceVersion": "1"}, "items": items}, "1"

            def stream(self, resource_version, timeout_seconds):
                return iter(())
        return Source()


def test_fresh_apply_goes_crds_first_then_namespaces_then_the_rest_as_server_side_apply():
    api = FakeApi()
    changes = apply.apply_phased(api, [WIDGET, SECRET, NAMESPACE, CRD])
    assert [c["action"] for c in changes] == ["create"] * 4
    paths = [w[1] for w in api.writes]
    assert paths == ["/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io", "/api/v1/namespaces/shop",
                     "/apis/example.io/v1/namespaces/shop/widgets/w", "/api/v1/namespaces/shop/secrets/keys"]
    assert all(w[2] == "application/apply-patch+yaml" and w[3] == {"fieldManager": "fleetdr"} for w in api.writes)


def test_a_second_apply_writes_nothing_and_says_so():
    api = FakeApi()
    apply.apply_phased(api, [CRD, NAMESPACE, SECRET, WIDGET])
    api.writes = []
    changes = apply.apply_phased(api, [CRD, NAMESPACE, SECRET, WIDGET])
    assert api.writes == [] and not apply.changed(changes)


def test_a_changed_field_is_an_update_with_a_diff_and_secrets_are_masked():
    api = FakeApi()
    apply.apply_phased(api, [CRD, NAMESPACE, SECRET, WIDGET])
    bigger = copy.deepcopy(WIDGET)
    bigger["spec"]["size"] = 5
    rotated = copy.deepcopy(SECRET)
    rotated["stringData"] = {"token": "n3w"}
    changes = dict((c["object"], c) for c in apply.apply_phased(api, [CRD, NAMESPACE, rotated, bigger]))
    assert changes["Widget shop/w"]["action"] == "update"
    assert changes["Widget shop/w"]["diff"] == {"before": dict(WIDGET, metadata={"name": "w", "namespace": "shop"}),
                                                "after": dict(bigger)}
    assert changes["Secret shop/keys"]["action"] == "update"
    assert "s3cr3t" not in repr(changes) and "n3w" not in repr(changes) and apply.MASK in repr(changes)


def test_check_mode_writes_nothing_and_plans_what_a_new_crd_or_namespace_would_hold():
    api = FakeApi()
    changes = apply.apply_phased(api, [CRD, NAMESPACE, SECRET, WIDGET], check_mode=True)
    assert api.writes == [] and [c["action"] for c in changes] == ["create"] * 4


def test_conflicts_are_reported_unless_forced():
    api = FakeApi()
    apply.apply_phased(api, [NAMESPACE, SECRET])
    api.conflict_on.add("/api/v1/namespaces/shop/secrets/keys")
    rotated = dict(SECRET, stringData={"token": "other"})
    with pytest.raises(FleetdrError) as info:
        apply.apply_phased(api, [NAMESPACE, rotated])
    assert "force_conflicts" in info.value.msg and "kubectl" in info.value.msg
    apply.apply_phased(api, [NAMESPACE, rotated], force=True)
    assert api.writes[-1][3] == {"fieldManager": "fleetdr", "force": "true"}


def test_remove_deletes_in_reverse_order_and_is_idempotent():
    api = FakeApi()
    objects = [CRD, NAMESPACE, SECRET, WIDGET]
    apply.apply_phased(api, objects)
    api.writes = []
    changes = apply.remove(api, objects)
    assert [c["action"] for c in changes] == ["delete"] * 4
    assert [w[1].rsplit("/", 1)[-1] for w in api.writes] == ["w", "keys", "shop", "widgets.example.io"]
    assert not apply.changed(apply.remove(api, objects))


@pytest.mark.parametrize("want,have,expected", [
    ({"a": 1}, {"a": 1, "b": 2}, True),
    ({"a": [1, {"x": 1}]}, {"a": [1, {"x": 1, "y": 2}]}, True),
    ({"a": [1]}, {"a": [1, 2]}, False),
    ({"a": True}, {"a": 1}, False),
    ({"a": "1"}, {"a": 1}, False),
    ({"a": {"b": None}}, {"a": {}}, True),  # null asks for no value: an absent field holds it
])
def test_holds(want, have, expected):
    assert apply.holds(want, have) is expected


def test_crds_are_read_with_one_list_narrowed_by_their_shared_labels():
    api = FakeApi()
    crds = []
    for kind in ("Widget", "Gadget"):
        crd = copy.deepcopy(CRD)
        crd["metadata"] = {"name": kind.lower() + "s.example.io", "labels": {"component": "shop", "kind": kind}}
        crd["spec"]["names"] = {"kind": kind, "plural": kind.lower() + "s"}
        crds.append(crd)
    apply.apply_phased(api, crds)
    api.writes, api.lists = [], []
    assert not apply.changed(apply.apply_phased(api, crds))
    assert api.writes == [] and api.lists == [("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {"labelSelector": "component=shop"})]


def test_new_crds_are_waited_for_with_one_watch_over_the_collection():
    api = FakeApi()
    other = dict(CRD, metadata={"name": "gadgets.example.io"}, spec=dict(CRD["spec"], names={"kind": "Gadget", "plural": "gadgets"}))
    apply.apply_phased(api, [CRD, other])
    assert api.watched == [("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", None)]


def test_objects_in_a_namespace_or_of_a_kind_created_by_the_same_run_are_not_read_first():
    api = FakeApi()
    changes = apply.apply_phased(api, [CRD, NAMESPACE, SECRET, WIDGET])
    assert [c["action"] for c in changes] == ["create"] * 4
    assert not [path for path in api.reads if "/namespaces/shop/" in path], api.reads
    api.reads[:] = []
    assert [c["action"] for c in apply.apply_phased(api, [CRD, NAMESPACE, SECRET, WIDGET])] == ["unchanged"] * 4
    assert sorted(path.rsplit("/", 1)[1] for path in api.reads if "/namespaces/shop/" in path) == ["keys", "w"]


@pytest.mark.parametrize("want,have", [
    ({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2]}, "status": {}}),
    ({"a": [{"x": True}]}, {"a": [{"x": True, "y": 0}]}),
])
def test_holds_compares_whole_subtrees_and_still_sees_extra_server_fields(want, have):
    assert apply.holds(want, have)
    assert not apply.holds({"a": {"b": [1, 3]}}, {"a": {"b": [1, 2]}})
    assert not apply.holds({"a": [True]}, {"a": [1]})  # == says equal; JSON types do not


def test_switched_off_objects_are_deleted_after_the_apply_and_not_read_in_a_new_namespace():
    old = dict(WIDGET, metadata={"name": "old", "namespace": "shop"})
    api = FakeApi()
    changes = apply.apply_phased(api, [CRD, NAMESPACE, SECRET], absent=[old])
    assert changes[-1] == {"object": "Widget shop/old", "action": "absent"}
    assert not [path for path in api.reads if path.endswith("/widgets/old") or path == "/apis/example.io/v1"], api.reads
    api.objects["/apis/example.io/v1/namespaces/shop/widgets/old"] = copy.deepcopy(old)
    changes = apply.apply_phased(api, [CRD, NAMESPACE, SECRET], absent=[old])
    assert changes[-1]["object"] == "Widget shop/old" and changes[-1]["action"] == "delete"
    assert ("DELETE", "/apis/example.io/v1/namespaces/shop/widgets/old") in [(m, p) for m, p, _c, _q in api.writes]
    assert "/apis/example.io/v1/namespaces/shop/widgets/old" not in api.objects


def test_a_crd_shared_by_the_clusters_of_a_run_is_serialised_once_and_sent_whole():
    crd = copy.deepcopy(CRD)
    first, second = FakeApi(), FakeApi()
    apply.apply_phased(first, [crd, NAMESPACE])
    apply.apply_phased(second, [crd, NAMESPACE])
    sent = [api.bodies[0] for api in (first, second)]
    assert sent[0] is sent[1] and json.loads(sent[0]) == crd  # one text for both clusters
    assert second.objects["/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io"]["spec"] == crd["spec"]
    other = copy.deepcopy(crd)
    other["spec"]["versions"][0]["served"] = False
    third = FakeApi()
    apply.apply_phased(third, [other])
    assert json.loads(third.bodies[0])["spec"]["versions"][0]["served"] is False  # another CRD object, its own text


def test_an_applied_object_carries_the_answer_as_live_and_a_crd_answer_is_not_decoded():
    """The installer starts its Deployment watch from the applied object instead of listing first."""
    api = FakeApi()
    changes = apply.apply_phased(api, [CRD, NAMESPACE, WIDGET])
    by_object = dict((change["object"], change) for change in changes)
    widget = by_object[apply.describe(WIDGET)]
    assert widget["action"] == "create" and widget.live["metadata"]["uid"] == "u1" and widget.live["spec"] == {"size": 3}
    assert by_object[apply.describe(CRD)].live is None
    assert dict(api.answered) == {"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.io": False,
                                  "/api/v1/namespaces/shop": True, "/apis/example.io/v1/namespaces/shop/widgets/w": True}
