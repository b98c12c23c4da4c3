"""Label and field selector parsing and matching."""
import pytest

from fleetdr_lab.selectors import (FieldSelector, LabelSelector, SelectorError, object_fields,
                                   selector_string)

LABELS = {"env": "prod", "tier": "web", "n": "5"}


@pytest.mark.parametrize("sel,expected", [
    ("", True),
    ("env=prod", True), ("env==prod", True), ("env=dev", False),
    ("env!=dev", True), ("env!=prod", False), ("missing!=x", True),
    ("env in (dev,prod)", True), ("env in (dev)", False), ("missing in (x)", False),
    ("env notin (dev)", True), ("env notin (prod, dev)", False), ("missing notin (x)", True),
    ("tier", True), ("missing", False),
    ("!missing", True), ("!tier", False),
    ("env=prod,tier=web", True), ("env=prod,tier=db", False),
    (" env = prod , tier ", True),
    ("n>4", True), ("n<5", False),
    ("empty=", False),
])
def test_label_operators(sel, expected):
    assert LabelSelector.parse(sel).matches(LABELS) is expected


def test_empty_value_matches_empty_label():
    assert LabelSelector.parse("k=").matches({"k": ""})


@pytest.mark.parametrize("bad", ["env in prod", "env in (a", "a b", "=x", "env=prod,,x",
                                 "bad key=1", "k=" + "v" * 64, "n>x"])
def test_label_parse_errors(bad):
    with pytest.raises(SelectorError):
        LabelSelector.parse(bad)


def test_from_dict_and_string_round_trip():
    sel = {"matchLabels": {"app": "web"},
           "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]},
                                {"key": "old", "operator": "DoesNotExist"}]}
    ls = LabelSelector.from_dict(sel)
    assert ls.matches({"app": "web", "tier": "a"})
    assert not ls.matches({"app": "web", "tier": "a", "old": "1"})
    text = selector_string(sel)
    assert text == "app=web,tier in (a,b),!old"
    assert LabelSelector.parse(text).matches({"app": "web", "tier": "b"})
    with pytest.raises(SelectorError):
        LabelSelector.from_dict({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})


def test_field_selector_ops_and_escapes():
    fs = FieldSelector.parse("metadata.name=a\\,b,metadata.namespace!=kube-system")
    assert fs.matches({"metadata.name": "a,b", "metadata.namespace": "default"})
    assert not fs.matches({"metadata.name": "a,b", "metadata.namespace": "kube-system"})
    assert FieldSelector.parse("metadata.name==x").matches({"metadata.name": "x"})
    with pytest.raises(SelectorError):
        FieldSelector.parse("justaword")


def test_field_selector_supported_fields():
    fs = FieldSelector.parse("spec.nodeName=n1")
    fs.check_supported({"metadata.name", "spec.nodeName"})
    with pytest.raises(SelectorError, match="field label not supported: spec.nodeName"):
        fs.check_supported({"metadata.name"})


def test_object_fields():
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Running"}}
    f = object_fields(pod, {"spec.nodeName", "status.phase", "spec.hostNetwork"})
    assert f == {"metadata.name": "p", "metadata.namespace": "ns", "spec.nodeName": "n1",
                 "status.phase": "Running", "spec.hostNetwork": ""}
    ev = {"metadata": {"name": "e"}, "source": {"component": "kubelet"}}
    assert object_fields(ev, {"source"})["source"] == "kubelet"
