"""Backup resource filtering: what lands in the tarball for each filter rule.

Upstream source: Velero pkg/util/collections/includes_excludes.go.
"""
from __future__ import annotations

import io
import json
import tarfile

import pytest
from kubernetes.client.rest import ApiException


def ns_with(v, name, labels=None, configmaps=(), secrets=()):
    v.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": name, "labels": labels or {}}})
    for cm, lbl in configmaps:
        v.core.create_namespaced_config_map(name, {"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": cm, "labels": lbl}, "data": {"x": "1"}})
    for sec in secrets:
        v.core.create_namespaced_secret(name, {"apiVersion": "v1", "kind": "Secret",
                                               "metadata": {"name": sec}, "stringData": {"p": "w"}})
    return name


def contents(v, name, spec) -> list[str]:
    """Run a backup; return the plain (non-versioned) item paths of its tarball, in order."""
    b = v.backup(name, spec)
    assert b["status"]["phase"] in ("Completed", "PartiallyFailed"), b["status"]
    data = v.read_object(v.backup_prefix(name) + f"{name}.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        paths = [m.name for m in tar.getmembers()]
    return [p for p in paths if p.startswith("resources/") and "-preferredversion/" not in p]


def items(paths, resource) -> set[str]:
    out = set()
    for p in paths:
        parts = p.split("/")
        if parts[1] == resource:
            out.add("/".join(parts[2:])[: -len(".json")])
    return out


@pytest.fixture
def two_namespaces(velero):
    prefix = velero.unique("flt")
    a = ns_with(velero, f"{prefix}-a", labels={"team": "a"},
                configmaps=[("cm-web", {"app": "web"}), ("cm-db", {"app": "db"}), ("cm-other", {})],
                secrets=["s1"])
    b = ns_with(velero, f"{prefix}-b", configmaps=[("cm-web", {"app": "web"})])
    return prefix, a, b


def test_namespace_glob_include_and_exclude(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("glob"), {"includedNamespaces": [f"{prefix}-*"],
                                                     "excludedNamespaces": [b]})
    assert f"namespaces/{a}/cm-web" in items(paths, "configmaps")
    assert not any(f"/{b}/" in p or p.endswith(f"/{b}.json") for p in paths)
    assert items(paths, "namespaces") == {f"cluster/{a}"}


def test_unmatched_namespace_pattern_is_a_warning(velero):
    name = velero.unique("nomatch")
    b = velero.backup(name, {"includedNamespaces": ["zz-no-such-*"]})
    assert b["status"]["phase"] == "Completed"
    assert b["status"]["warnings"] == 1


def test_label_selector(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("sel"), {"includedNamespaces": [a, b],
                                                    "labelSelector": {"matchLabels": {"app": "web"}}})
    assert items(paths, "configmaps") == {f"namespaces/{a}/cm-web", f"namespaces/{b}/cm-web"}
    assert items(paths, "secrets") == set()
    # Namespace objects are kept because they are in the namespace filter / hold backed-up items
    assert items(paths, "namespaces") == {f"cluster/{a}", f"cluster/{b}"}


def test_label_selector_expressions(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("expr"), {"includedNamespaces": [a], "labelSelector": {
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]}})
    assert items(paths, "configmaps") == {f"namespaces/{a}/cm-web", f"namespaces/{a}/cm-db"}


def test_or_label_selectors_union(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("or"), {"includedNamespaces": [a], "orLabelSelectors": [
        {"matchLabels": {"app": "web"}}, {"matchLabels": {"app": "db"}}]})
    assert items(paths, "configmaps") == {f"namespaces/{a}/cm-web", f"namespaces/{a}/cm-db"}


def test_selector_over_all_namespaces_keeps_only_namespaces_with_items(velero, two_namespaces):
    prefix, a, b = two_namespaces
    velero.core.patch_namespaced_config_map("cm-db", a, {"metadata": {"labels": {"only": prefix}}})
    paths = contents(velero, velero.unique("selall"), {"labelSelector": {"matchLabels": {"only": prefix}}})
    assert items(paths, "configmaps") == {f"namespaces/{a}/cm-db"}
    nss = items(paths, "namespaces")
    assert f"cluster/{a}" in nss and f"cluster/{b}" not in nss and "cluster/default" not in nss


def test_old_style_included_resources(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("old"), {"includedNamespaces": [a], "includedResources": ["cm"]})
    assert {p.split("/")[1] for p in paths} == {"configmaps"}  # short name resolved; no namespaces either


def test_old_style_excluded_resources(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("oldx"), {"includedNamespaces": [a], "excludedResources": ["secrets"]})
    kinds = {p.split("/")[1] for p in paths}
    assert "secrets" not in kinds and "configmaps" in kinds and "namespaces" in kinds
    # includeClusterResources nil + a namespace subset: no bulk cluster-scoped types
    assert "storageclasses.storage.k8s.io" not in kinds


def test_old_style_include_cluster_resources(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("icr"), {"includedNamespaces": [a], "includeClusterResources": True})
    assert "cluster/standard" in items(paths, "storageclasses.storage.k8s.io")
    paths = contents(velero, velero.unique("icrf"), {"includedNamespaces": [a], "includeClusterResources": False})
    assert not any("/cluster/" in p for p in paths)  # not even the Namespace object


def test_new_style_scoped_filters(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("new"), {
        "includedNamespaces": [a], "includedNamespaceScopedResources": ["configmaps"],
        "includedClusterScopedResources": ["storageclasses"]})
    kinds = {p.split("/")[1] for p in paths}
    assert kinds == {"configmaps", "namespaces", "storageclasses.storage.k8s.io"}


def test_default_spec_takes_no_bulk_cluster_scoped_types(velero, two_namespaces):
    # 1.17+: auto-excludes make the cluster-scoped exclude list non-empty (Velero
    # ScopeIncludesExcludes, pkg/util/collections/includes_excludes.go)
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("dflt"), {})
    kinds = {p.split("/")[1] for p in paths}
    assert "namespaces" in kinds and "configmaps" in kinds
    assert "storageclasses.storage.k8s.io" not in kinds and "nodes" not in kinds


def test_exclude_label_on_item_and_namespace(velero, two_namespaces):
    prefix, a, b = two_namespaces
    velero.core.patch_namespaced_config_map("cm-db", a, {"metadata": {"labels": {
        "velero.io/exclude-from-backup": "true"}}})
    velero.core.patch_namespace(b, {"metadata": {"labels": {"velero.io/exclude-from-backup": "true"}}})
    name = velero.unique("exl")
    paths = contents(velero, name, {"includedNamespaces": [f"{prefix}-*"]})
    assert f"namespaces/{a}/cm-db" not in items(paths, "configmaps")
    assert f"namespaces/{a}/cm-web" in items(paths, "configmaps")
    assert not any(f"/{b}" in p for p in paths)
    assert b in velero.get("backups", name)["spec"]["excludedNamespaces"]


def test_object_being_deleted_is_skipped(velero, two_namespaces):
    prefix, a, b = two_namespaces
    velero.core.create_namespaced_config_map(a, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}})
    velero.core.delete_namespaced_config_map("held", a)
    paths = contents(velero, velero.unique("del"), {"includedNamespaces": [a]})
    assert f"namespaces/{a}/held" not in items(paths, "configmaps")
    velero.core.patch_namespaced_config_map("held", a, {"metadata": {"finalizers": None}})


def test_ordered_resources(velero, two_namespaces):
    prefix, a, b = two_namespaces
    paths = contents(velero, velero.unique("ord"), {
        "includedNamespaces": [a], "orderedResources": {"configmaps": f"{a}/cm-other,{a}/cm-web"}})
    cms = [p for p in paths if p.startswith("resources/configmaps/")]
    assert cms[0].endswith("/cm-other.json") and cms[1].endswith("/cm-web.json")


def test_related_items_pvc_pv_and_rbac_and_crd(velero):
    ns = ns_with(velero, velero.unique("rel"))
    velero.core.create_namespaced_persistent_volume_claim(ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    pvc = velero.wait_for(lambda: (lambda p: p if p.status.phase == "Bound" else None)(
        velero.core.read_namespaced_persistent_volume_claim("data", ns)), what="PVC bound")
    velero.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "labels": {"pick": "me"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                                 "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}})
    velero.core.create_namespaced_service_account(ns, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                        "metadata": {"name": "robot", "labels": {"pick": "me"}}})
    role = f"{ns}-reader"
    velero.rbac.create_cluster_role({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                                     "metadata": {"name": role},
                                     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    velero.rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": ns}]})
    paths = contents(velero, velero.unique("rel"), {"includedNamespaces": [ns],
                                                    "labelSelector": {"matchLabels": {"pick": "me"}}})
    assert items(paths, "pods") == {f"namespaces/{ns}/app"}
    # the selector does not apply to related items
    assert items(paths, "persistentvolumeclaims") == {f"namespaces/{ns}/data"}
    assert items(paths, "persistentvolumes") == {f"cluster/{pvc.spec.volume_name}"}
    assert f"cluster/{role}" in items(paths, "clusterrolebindings.rbac.authorization.k8s.io")
    assert f"cluster/{role}" in items(paths, "clusterroles.rbac.authorization.k8s.io")
    # related items come before the item that pulled them in
    assert paths.index(f"resources/persistentvolumeclaims/namespaces/{ns}/data.json") < \
        paths.index(f"resources/pods/namespaces/{ns}/app.json")
    # excluded cluster-scoped type: the PV is not taken
    paths = contents(velero, velero.unique("relx"), {"includedNamespaces": [ns],
                                                     "excludedClusterScopedResources": ["persistentvolumes"]})
    assert items(paths, "persistentvolumes") == set()
    velero.rbac.delete_cluster_role_binding(role)
    velero.rbac.delete_cluster_role(role)


def test_crd_of_backed_up_custom_resources(velero):
    ns = ns_with(velero, velero.unique("crd"))
    group = "fleetdr-test.example.com"
    crd_name = f"gadgets.{group}"
    try:
        velero.ext.create_custom_resource_definition({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    velero.wait_for(lambda: velero.custom.list_namespaced_custom_object(group, "v1", ns, "gadgets") is not None,
                    what="CRD served")
    velero.custom.create_namespaced_custom_object(group, "v1", ns, "gadgets", {
        "apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 3}})
    paths = contents(velero, velero.unique("crd"), {"includedNamespaces": [ns]})
    assert items(paths, f"gadgets.{group}") == {f"namespaces/{ns}/g1"}
    assert items(paths, "customresourcedefinitions.apiextensions.k8s.io") == {f"cluster/{crd_name}"}
    velero.ext.delete_custom_resource_definition(crd_name)


def policy_configmap(v, text):
    name = v.unique("policy")
    v.core.create_namespaced_config_map(v.namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                                      "metadata": {"name": name}, "data": {"policy.yaml": text}})
    return name


def test_resource_policy_include_exclude(velero, two_namespaces):
    prefix, a, b = two_namespaces
    cm = policy_configmap(velero, "version: v1\nincludeExcludePolicy:\n"
                                  "  excludedNamespaceScopedResources: [secrets, configmaps]\n")
    paths = contents(velero, velero.unique("pol"), {
        "includedNamespaces": [a], "resourcePolicy": {"kind": "configmap", "name": cm},
        "excludedNamespaceScopedResources": ["serviceaccounts"]})
    kinds = {p.split("/")[1] for p in paths}
    assert "secrets" not in kinds and "serviceaccounts" not in kinds
    assert "configmaps" not in kinds   # not mentioned by the spec -> the policy excludes them too
    # the spec mentions configmaps: the policy's exclusion does not apply to them
    paths = contents(velero, velero.unique("pol2"), {
        "includedNamespaces": [a], "resourcePolicy": {"kind": "configmap", "name": cm},
        "includedNamespaceScopedResources": ["configmaps"]})
    kinds = {p.split("/")[1] for p in paths}
    assert "configmaps" in kinds and "secrets" not in kinds


@pytest.mark.parametrize("text, spec_extra, message", [
    (None, {}, "failed to get resource policies velero/"),
    ("version: v2\n", {}, "incompatible version number v2 with supported version v1"),
    ("version: v1\nincludeExcludePolicy:\n  includedClusterScopedResources: ['*']\n", {},
     "cannot use '*' in includeExcludePolicy filters"),
    ("version: v1\nvolumePolicies:\n- conditions: {capacity: '0,10Gi'}\n  action: {type: explode}\n", {},
     "action type explode is not supported"),
    ("version: v1\nincludeExcludePolicy:\n  excludedClusterScopedResources: [nodes]\n",
     {"includedResources": ["pods"]}, "includeExcludePolicy"),
])
def test_resource_policy_validation(velero, text, spec_extra, message):
    cm = policy_configmap(velero, text) if text is not None else "absent-policy"
    name = velero.unique("polbad")
    b = velero.backup(name, {"resourcePolicy": {"kind": "configmap", "name": cm}, **spec_extra})
    assert b["status"]["phase"] == "FailedValidation"
    assert any(message in e for e in b["status"]["validationErrors"]), b["status"]["validationErrors"]


def test_volume_policy_selects_fs_backup_and_volume_info(velero):
    """A volumePolicies `fs-backup` action picks a pod volume without any pod annotation; the
    resulting PodVolumeBackup lands in -podvolumebackups.json.gz and -volumeinfo.json.gz."""
    import gzip
    ns = ns_with(velero, velero.unique("volpol"))
    for claim, labels in (("keep", {"backup": "fs"}), ("other", {})):
        velero.core.create_namespaced_persistent_volume_claim(ns, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    velero.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "infinity"],
                                 "volumeMounts": [{"name": "keep", "mountPath": "/keep"},
                                                  {"name": "other", "mountPath": "/other"}]}],
                 "volumes": [{"name": "keep", "persistentVolumeClaim": {"claimName": "keep"}},
                             {"name": "other", "persistentVolumeClaim": {"claimName": "other"}}]}})
    velero.wait_for(lambda: velero.core.read_namespaced_pod("app", ns).status.phase == "Running", what="pod Running")
    cm = policy_configmap(velero, "version: v1\nvolumePolicies:\n"
                                  "- conditions: {pvcLabels: {backup: fs}}\n  action: {type: fs-backup}\n")
    name = velero.unique("volpol")
    b = velero.backup(name, {"includedNamespaces": [ns], "resourcePolicy": {"kind": "configmap", "name": cm}})
    assert b["status"]["phase"] == "Completed", b["status"]
    root = velero.backup_prefix(name)
    pvbs = json.loads(gzip.decompress(velero.read_object(root + f"{name}-podvolumebackups.json.gz")))
    assert [p["spec"]["volume"] for p in pvbs] == ["keep"]
    infos = json.loads(gzip.decompress(velero.read_object(root + f"{name}-volumeinfo.json.gz")))
    assert len(infos) == 1
    info = infos[0]
    assert info["backupMethod"] == "PodVolumeBackup" and info["pvcName"] == "keep"
    assert info["pvcNamespace"] == ns and info["pvName"].startswith("pvc-")
    assert info["pvbInfo"]["podName"] == "app" and info["result"] == "succeeded"
