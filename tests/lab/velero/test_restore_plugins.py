"""Restore-time changes: plugin ConfigMaps for storage classes and
images, resource modifiers, and the PartiallyFailed / Failed phase paths.

Upstream source: Velero pkg/restore/actions/*.go, internal/resourcemodifiers/*.go,
pkg/plugin/framework/common/plugin_config.go.
"""
from __future__ import annotations

import pytest

from helpers import Apis, all_messages, restore, restore_file, run_backup, unique

PLUGIN_LABEL = "velero.io/plugin-config"


@pytest.fixture(scope="module")
def app(velero):
    kube = Apis(velero.api_client)
    ns = unique("plug")
    kube.namespace(ns)
    kube.configmap(ns, "settings", {"color": "blue", "size": "3"}, {"app": "web"})
    kube.configmap(ns, "untouched", {"color": "blue"}, {"app": "db"})
    kube.core.create_namespaced_persistent_volume_claim(ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    kube.apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "main", "image": "docker.io/library/busybox:1.36",
                                                       "command": ["sleep", "infinity"]},
                                                      {"name": "side", "image": "nginx:1.27"}]}}}})
    backup = unique("plugb")
    run_backup(velero, backup, {"includedNamespaces": [ns]})
    return {"kube": kube, "ns": ns, "backup": backup}


@pytest.fixture
def velero_configmaps(velero):
    """ConfigMaps created in the Velero namespace; removed after the test (they are global)."""
    kube = Apis(velero.api_client)
    made = []

    def create(name, data, labels=None):
        kube.core.create_namespaced_config_map(velero.namespace, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": data})
        made.append(name)
    yield create
    for name in made:
        kube.core.delete_namespaced_config_map(name, velero.namespace)


def test_change_storage_class_configmap(velero, app, velero_configmaps):
    kube = app["kube"]
    fast = unique("fast")
    kube.storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                       "metadata": {"name": fast}, "provisioner": "fleetdr.lab/hostpath",
                                       "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})
    velero_configmaps(unique("sc"), {"standard": fast},
                      {PLUGIN_LABEL: "", "velero.io/change-storage-class": "RestoreItemAction"})
    target = unique("plugt")
    r = restore(velero, unique("rsc"), {"backupName": app["backup"], "namespaceMapping": {app["ns"]: target},
                                     "includedResources": ["persistentvolumeclaims", "persistentvolumes"]})
    assert r["status"]["phase"] == "Completed", r["status"]
    pvc = kube.core.read_namespaced_persistent_volume_claim("data", target)
    assert pvc.spec.storage_class_name == fast


def test_change_storage_class_to_missing_class_fails_the_item(velero, app, velero_configmaps):
    velero_configmaps(unique("sc"), {"standard": "no-such-class"},
                      {PLUGIN_LABEL: "x", "velero.io/change-storage-class": "RestoreItemAction"})
    target, name = unique("plugt"), unique("rsc")
    r = restore(velero, name, {"backupName": app["backup"], "namespaceMapping": {app["ns"]: target},
                               "includedResources": ["persistentvolumeclaims"]})
    assert r["status"]["phase"] == "PartiallyFailed"
    assert r["status"]["errors"] == 1
    errors = restore_file(velero, name, "results.gz")["errors"]["namespaces"][target]
    assert "no-such-class" in errors[0]
    assert not app["kube"].exists(app["kube"].core.read_namespaced_persistent_volume_claim, "data", target)


def test_change_image_name_configmap(velero, app, velero_configmaps):
    velero_configmaps(unique("img"), {"mirror": "docker.io/library,registry.lab/mirror"},
                      {PLUGIN_LABEL: "", "velero.io/change-image-name": "RestoreItemAction"})
    target = unique("plugt")
    r = restore(velero, unique("rimg"), {"backupName": app["backup"], "namespaceMapping": {app["ns"]: target},
                                      "includedResources": ["deployments"]})
    assert r["status"]["phase"] == "Completed", r["status"]
    d = app["kube"].apps.read_namespaced_deployment("web", target)
    images = {c.name: c.image for c in d.spec.template.spec.containers}
    assert images == {"main": "registry.lab/mirror/busybox:1.36", "side": "nginx:1.27"}


MODIFIERS = """
version: v1
resourceModifierRules:
- conditions:
    groupResource: configmaps
    resourceNameRegex: "^settings$"
    namespaces: [{ns}]
    matches:
    - path: /data/size
      value: '"3"'
  patches:
  - operation: replace
    path: /data/color
    value: red
  - operation: add
    path: /data/added
    value: '"42"'
- conditions:
    groupResource: configmaps
    labelSelector: {{matchLabels: {{app: nope}}}}
  patches:
  - operation: remove
    path: /data
- conditions:
    groupResource: deployments.apps
  mergePatches:
  - patchData: |
      metadata:
        labels:
          patched: "yes"
      spec:
        replicas: 1
- conditions:
    groupResource: deployments.apps
  strategicPatches:
  - patchData: '{{"spec":{{"template":{{"spec":{{"containers":[{{"name":"side","image":"nginx:1.28"}}]}}}}}}}}'
"""


def test_resource_modifiers(velero, app, velero_configmaps):
    kube, ns = app["kube"], app["ns"]
    mods = unique("mods")
    velero_configmaps(mods, {"rules.yaml": MODIFIERS.format(ns=ns)})
    target = unique("plugt")
    r = restore(velero, unique("rmod"), {"backupName": app["backup"], "namespaceMapping": {ns: target},
                                      "includedResources": ["configmaps", "deployments"],
                                      "resourceModifier": {"kind": "ConfigMap", "name": mods}})
    assert r["status"]["phase"] == "Completed", r["status"]
    settings = kube.read_configmap(target, "settings")
    assert settings["data"] == {"color": "red", "size": "3", "added": "42"}
    assert kube.read_configmap(target, "untouched")["data"] == {"color": "blue"}
    d = kube.apps.read_namespaced_deployment("web", target)
    assert d.metadata.labels["patched"] == "yes" and d.spec.replicas == 1
    images = {c.name: c.image for c in d.spec.template.spec.containers}
    assert images == {"main": "docker.io/library/busybox:1.36", "side": "nginx:1.28"}  # merged by name


def test_failing_modifier_patch_is_an_error_and_item_still_created(velero, app, velero_configmaps):
    mods = unique("mods")
    velero_configmaps(mods, {"rules.yaml": """
version: v1
resourceModifierRules:
- conditions: {groupResource: configmaps, resourceNameRegex: "^untouched$"}
  patches:
  - {operation: remove, path: /data/does-not-exist}
"""})
    target, name = unique("plugt"), unique("rmod")
    r = restore(velero, name, {"backupName": app["backup"], "namespaceMapping": {app["ns"]: target},
                               "includedResources": ["configmaps"],
                               "resourceModifier": {"kind": "ConfigMap", "name": mods}})
    assert r["status"]["phase"] == "PartiallyFailed"
    assert r["status"]["errors"] == len(all_messages(restore_file(velero, name, "results.gz")["errors"])) == 1
    assert app["kube"].read_configmap(app["ns"], "untouched")["data"] == {"color": "blue"}
    assert app["kube"].exists(app["kube"].core.read_namespaced_config_map, "untouched", target)


@pytest.mark.parametrize("text,message", [
    ("version: v2\nresourceModifierRules: []\n", "unsupported resource modifier version v2"),
    ("version: v1\nresourceModifierRules:\n- conditions: {}\n  patches: []\n", "groupkResource cannot be empty"),
    ("version: v1\nbogus: 1\n", "unknown field"),
])
def test_invalid_resource_modifiers_fail_validation(velero, app, velero_configmaps, text, message):
    mods = unique("mods")
    velero_configmaps(mods, {"rules.yaml": text})
    r = restore(velero, unique("rmod"), {"backupName": app["backup"],
                                      "resourceModifier": {"kind": "configmap", "name": mods}})
    assert r["status"]["phase"] == "FailedValidation"
    err = r["status"]["validationErrors"][0]
    assert err.startswith(f"Error in parsing resource modifiers provided in configmap velero/{mods}")
    assert message in err


def test_missing_tarball_fails_the_restore(velero, app):
    name = unique("gone")
    run_backup(velero, name, {"includedNamespaces": [app["ns"]]})
    velero.s3().delete_object(Bucket=velero.bucket, Key=f"{velero.backup_prefix(name)}{name}.tar.gz")
    r = restore(velero, unique("rgone"), {"backupName": name})
    st = r["status"]
    assert st["phase"] == "Failed"
    assert st["failureReason"] and st["completionTimestamp"] and st["startTimestamp"]


def test_init_restore_hooks_from_spec_and_annotations(velero):
    kube = Apis(velero.api_client)
    ns = unique("hook")
    kube.namespace(ns)
    for name, pod_annotations in (("plain", {}), ("annotated", {
            "init.hook.restore.velero.io/container-image": "alpine:3.20",
            "init.hook.restore.velero.io/container-name": "prepare",
            "init.hook.restore.velero.io/command": '["/bin/sh", "-c", "echo ok"]'})):
        kube.core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "hooked"}, "annotations": pod_annotations},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "infinity"]}]}})
    backup = unique("hookb")
    run_backup(velero, backup, {"includedNamespaces": [ns]})
    target = unique("hookt")
    r = restore(velero, unique("hookr"), {
        "backupName": backup, "namespaceMapping": {ns: target},
        "hooks": {"resources": [{"name": "seed", "includedNamespaces": [ns], "includedResources": ["pods"],
                                 "labelSelector": {"matchLabels": {"app": "hooked"}},
                                 "postHooks": [{"init": {"initContainers": [
                                     {"name": "seed-data", "image": "busybox:1.36", "command": ["true"]}]}}]}]}})
    assert r["status"]["phase"] == "Completed", r["status"]
    plain = kube.core.read_namespaced_pod("plain", target)
    assert [(c.name, c.image) for c in plain.spec.init_containers] == [("seed-data", "busybox:1.36")]
    annotated = kube.core.read_namespaced_pod("annotated", target)   # annotations win over the spec
    assert [(c.name, c.image, c.command) for c in annotated.spec.init_containers] == \
        [("prepare", "alpine:3.20", ["/bin/sh", "-c", "echo ok"])]


def test_post_restore_exec_hooks_counted_and_failures_are_errors(velero):
    kube = Apis(velero.api_client)
    ns = unique("exec")
    kube.namespace(ns)
    for name, pod_annotations in (("ok", {"post.hook.restore.velero.io/command": '["/bin/sh", "-c", "date"]',
                                          "post.hook.restore.velero.io/wait-for-ready": "true"}),
                                  ("broken", {})):
        kube.core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": name}, "annotations": pod_annotations},
            "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "infinity"]}]}})
    backup = unique("execb")
    run_backup(velero, backup, {"includedNamespaces": [ns]})
    target, name = unique("exect"), unique("execr")
    r = restore(velero, name, {
        "backupName": backup, "namespaceMapping": {ns: target},
        "hooks": {"resources": [{"name": "migrate", "includedNamespaces": [ns],
                                 "labelSelector": {"matchLabels": {"app": "broken"}},
                                 "postHooks": [{"exec": {"container": "nope", "command": ["true"],
                                                         "onError": "Continue"}}]}]}})
    st = r["status"]
    assert st["hookStatus"] == {"hooksAttempted": 2, "hooksFailed": 1}
    assert st["phase"] == "PartiallyFailed" and st["errors"] == 1
    errors = restore_file(velero, name, "results.gz")["errors"]["namespaces"][target]
    assert errors == [f'hook migrate in container nope in pod {target}/broken not executed: '
                      f'no such container: "nope"']
