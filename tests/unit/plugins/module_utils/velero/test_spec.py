import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import spec


def fails(option, fn, *args):
    with pytest.raises(ValidationError) as err:
        fn(*args)
    assert err.value.option == option, err.value.msg
    return err.value.msg


# ---------------------------------------------------------------- durations

@pytest.mark.parametrize("text,go", [("720h", "720h0m0s"), ("90m", "1h30m0s"), ("45s", "45s"), ("1.5s", "1.5s"),
                                     ("500ms", "500ms"), ("0", "0s"), ("1h0m0s", "1h0m0s"), ("2h30m", "2h30m0s")])
def test_durations_are_normalised_like_go(text, go):
    assert spec.normalize_duration(text, "ttl") == go


@pytest.mark.parametrize("bad", ["30d", "abc", "", "h", "10", "-5m", "1h 30m", True])
def test_bad_durations_name_the_option(bad):
    msg = fails("ttl", spec.normalize_duration, bad, "ttl")
    assert "ttl" in msg


# ---------------------------------------------------------------- selectors

def test_selector_string_parses_all_operators():
    sel = spec.build_label_selector("app=web,tier in (a, b),env!=dev,has,!legacy,x==y")
    assert sel["matchLabels"] == {"app": "web", "x": "y"}
    assert {"key": "tier", "operator": "In", "values": ["a", "b"]} in sel["matchExpressions"]
    assert {"key": "env", "operator": "NotIn", "values": ["dev"]} in sel["matchExpressions"]
    assert {"key": "has", "operator": "Exists"} in sel["matchExpressions"]
    assert {"key": "legacy", "operator": "DoesNotExist"} in sel["matchExpressions"]


def test_plain_dict_becomes_match_labels():
    assert spec.build_label_selector({"app": "web"}) == {"matchLabels": {"app": "web"}}


def test_label_selector_dict_form_is_validated():
    sel = spec.build_label_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]})
    assert sel == {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}
    fails("label_selector", spec.build_label_selector, {"matchExpressions": [{"key": "a", "operator": "Near"}]})
    fails("label_selector", spec.build_label_selector, {"matchExpressions": [{"key": "a", "operator": "In"}]})
    fails("label_selector", spec.build_label_selector, {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})


@pytest.mark.parametrize("bad", ["app in (a", "app=we b", "=x", "app==", "a,,b", "app in ()", "in (x)x", "app=%%"])
def test_malformed_selectors_fail(bad):
    if bad == "app==":
        # "app==" means app equals the empty value, which is valid.
        assert spec.build_label_selector(bad) == {"matchLabels": {"app": ""}}
        return
    fails("label_selector", spec.build_label_selector, bad)


def test_selector_round_trip_to_string():
    sel = spec.build_label_selector("app=web,tier notin (a),!legacy")
    assert spec.build_label_selector(spec.selector_to_string(sel)) == sel


# ---------------------------------------------------------------- backup spec

def test_backup_spec_only_carries_given_options():
    out = spec.build_backup_spec({"included_namespaces": ["shop"], "snapshot_volumes": False, "ttl": "24h",
                                  "storage_location": "central", "labels": {"a": "b"}})
    assert out == {"includedNamespaces": ["shop"], "snapshotVolumes": False, "ttl": "24h0m0s", "storageLocation": "central"}


def test_backup_spec_all_options():
    out = spec.build_backup_spec({
        "excluded_namespaces": ["kube-system"], "included_cluster_scoped_resources": ["*"],
        "excluded_namespace_scoped_resources": ["secrets"], "or_label_selectors": ["app=a", {"app": "b"}],
        "default_volumes_to_fs_backup": True,
        "hooks": {"resources": [{"name": "h", "included_namespaces": ["db"],
                                 "pre": [{"exec": {"command": ["true"], "on_error": "Fail", "timeout": "1m"}}]}]},
        "ordered_resources": {"pods": ["ns/a", "ns/b"]}, "resource_policy": "vol-policy",
    })
    assert out["orLabelSelectors"] == [{"matchLabels": {"app": "a"}}, {"matchLabels": {"app": "b"}}]
    hook = out["hooks"]["resources"][0]
    assert hook["includedNamespaces"] == ["db"]
    assert hook["pre"][0]["exec"] == {"command": ["true"], "onError": "Fail", "timeout": "1m0s"}
    assert out["orderedResources"] == {"pods": "ns/a,ns/b"}
    assert out["resourcePolicy"] == {"kind": "configmap", "name": "vol-policy"}


def test_both_selector_kinds_fail():
    fails("label_selector", spec.build_backup_spec, {"label_selector": "a=b", "or_label_selectors": ["c=d"]})


def test_old_and_new_filters_cannot_mix():
    msg = fails("included_cluster_scoped_resources", spec.build_backup_spec,
                {"included_resources": ["pods"], "included_cluster_scoped_resources": ["*"]})
    assert "included_resources" in msg


@pytest.mark.parametrize("params,option", [
    ({"included_resources": ["*", "pods"]}, "included_resources"),
    ({"excluded_resources": ["*"]}, "excluded_resources"),
    ({"included_resources": ["pods"], "excluded_resources": ["pods"]}, "excluded_resources"),
    ({"excluded_cluster_scoped_resources": ["*"], "included_cluster_scoped_resources": ["nodes"]}, "excluded_cluster_scoped_resources"),
    ({"excluded_namespace_scoped_resources": ["*", "pods"]}, "excluded_namespace_scoped_resources"),
    ({"included_namespaces": ["*", "a"]}, "included_namespaces"),
    ({"excluded_namespaces": ["*"]}, "excluded_namespaces"),
    ({"included_namespaces": ["a"], "excluded_namespaces": ["a"]}, "excluded_namespaces"),
    ({"included_namespaces": ["a{b,c}"]}, "included_namespaces"),
    ({"included_namespaces": ["a**"]}, "included_namespaces"),
    ({"included_namespaces": ["a[b"]}, "included_namespaces"),
    ({"included_namespaces": ["Not_Valid"]}, "included_namespaces"),
    ({"ttl": "3 days"}, "ttl"),
    ({"hooks": {"resources": [{"name": "x", "pre": [{"exec": {"command": []}}]}]}}, "hooks"),
    ({"hooks": {"resources": [{"name": "x"}]}}, "hooks"),
    ({"hooks": {"resources": [{"name": "x", "post": [{"exec": {"command": ["a"], "on_error": "Maybe"}}]}]}}, "hooks"),
    ({"ordered_resources": {"pods": []}}, "ordered_resources"),
    ({"storage_location": "Bad Name"}, "storage_location"),
])
def test_backup_spec_rejects(params, option):
    fails(option, spec.build_backup_spec, params)


def test_namespace_globs_are_accepted():
    assert spec.build_backup_spec({"included_namespaces": ["app-*", "db-?", "x[0-9]"]})["includedNamespaces"] == ["app-*", "db-?", "x[0-9]"]


# ---------------------------------------------------------------- restore spec

def test_restore_spec():
    out = spec.build_restore_spec({"included_namespaces": ["shop"], "namespace_mapping": {"shop": "shop-copy"},
                                   "existing_resource_policy": "update", "restore_pvs": False, "preserve_node_ports": True,
                                   "label_selector": {"app": "web"}}, "b1")
    assert out == {"backupName": "b1", "includedNamespaces": ["shop"], "namespaceMapping": {"shop": "shop-copy"},
                   "existingResourcePolicy": "update", "restorePVs": False, "preserveNodePorts": True,
                   "labelSelector": {"matchLabels": {"app": "web"}}}


@pytest.mark.parametrize("params,option", [
    ({"existing_resource_policy": "overwrite"}, "existing_resource_policy"),
    ({"included_resources": ["nodes"]}, "included_resources"),
    ({"namespace_mapping": {"shop": "Shop Copy"}}, "namespace_mapping"),
    ({"label_selector": "a=b", "or_label_selectors": ["c=d"]}, "label_selector"),
    ({"excluded_namespaces": ["*"]}, "excluded_namespaces"),
    ({"item_operation_timeout": "soon"}, "item_operation_timeout"),
])
def test_restore_spec_rejects(params, option):
    fails(option, spec.build_restore_spec, params, "b1")


def test_mappings_and_modifier_rules():
    assert spec.validate_mapping({"gp2": "standard"}, "storage_class_mapping", "storage class") == {"gp2": "standard"}
    fails("storage_class_mapping", spec.validate_mapping, {"gp2": ""}, "storage_class_mapping", "storage class")
    rules = spec.validate_resource_modifier_rules([{"conditions": {"group_resource": "deployments.apps", "label_selector": "app=web"},
                                                    "patches": [{"operation": "replace", "path": "/spec/replicas", "value": "1"}]}])
    assert rules[0]["conditions"] == {"groupResource": "deployments.apps", "labelSelector": {"matchLabels": {"app": "web"}}}
    fails("resource_modifier_rules", spec.validate_resource_modifier_rules, [{"conditions": {}, "patches": []}])
    fails("resource_modifier_rules", spec.validate_resource_modifier_rules,
          [{"conditions": {"group_resource": "pods"}, "patches": [{"operation": "x", "path": "/a"}]}])
    fails("resource_modifier_rules", spec.validate_resource_modifier_rules,
          [{"conditions": {"group_resource": "pods"}, "patches": [{"operation": "add", "path": "/a"}],
            "merge_patches": [{"patch_data": "{}"}]}])
    fails("resource_modifier_rules", spec.validate_resource_modifier_rules,
          [{"conditions": {"group_resource": "pods", "resource_name_regex": "("}, "merge_patches": [{"patch_data": "{}"}]}])


# ---------------------------------------------------------------- cron

@pytest.mark.parametrize("good", ["0 2 * * *", "*/15 * * * 1-5", "@daily", "@every 6h", "CRON_TZ=Europe/Paris 30 1 * * *", "TZ=UTC @hourly"])
def test_valid_cron(good):
    assert spec.validate_cron(good) == good


@pytest.mark.parametrize("bad", ["", "0 2 * *", "0 0 2 * * *", "61 * * * *", "@fortnightly", "@every", "@every soon",
                                 "CRON_TZ=Mars/Base 0 * * * *", "a b c d e"])
def test_invalid_cron_names_schedule_option(bad):
    fails("schedule", spec.validate_cron, bad)


def test_default_restore_name_is_deterministic_and_short():
    params = {"backup_name": "b" * 70, "namespace_mapping": {"a": "b"}}
    first = spec.default_restore_name(params["backup_name"], params)
    assert first == spec.default_restore_name(params["backup_name"], dict(params, labels={"x": "y"}, wait=False))
    assert len(first) <= 63
    assert spec.default_restore_name(params["backup_name"], dict(params, namespace_mapping={"a": "c"})) != first
