"""Restore: phases, files in the bucket, namespace mapping, item actions, counters.

Upstream source: Velero pkg/controller/restore_controller.go, pkg/restore/restore.go.
"""
from __future__ import annotations

import gzip

import pytest

from helpers import Apis, all_messages, create_restore, restore, restore_file, restore_prefix, run_backup, unique, wait_for


@pytest.fixture(scope="module")
def source(velero):
    """A namespace with a ConfigMap, Secret, ServiceAccount, NodePort Service and a labelled
    ConfigMap, backed up once for the whole module."""
    kube = Apis(velero.api_client)
    ns = unique("rsrc")
    kube.namespace(ns, {"team": "blue"})
    kube.configmap(ns, "settings", {"color": "blue"}, {"app": "web"})
    kube.configmap(ns, "other", {"x": "1"}, {"app": "db"})
    kube.core.create_namespaced_secret(ns, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                            "metadata": {"name": "creds", "labels": {"app": "web"}},
                                            "stringData": {"password": "s3cret"}})
    kube.core.create_namespaced_service(ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"type": "NodePort", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    service = kube.core.read_namespaced_service("web", ns)
    kube.core.create_namespaced_service_account(ns, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                     "metadata": {"name": "runner"},
                                                     "secrets": [{"name": "runner-token-abcde"},
                                                                 {"name": "runner-extra"}]})
    rbac = __import__("kubernetes").client.RbacAuthorizationV1Api(kube.api_client)
    rbac.create_namespaced_role_binding(ns, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "runner"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": ns}]})
    backup = unique("rbk")
    run_backup(velero, backup, {"includedNamespaces": [ns]})
    return {"ns": ns, "backup": backup, "kube": kube, "service": service}


def test_restore_with_namespace_mapping_creates_objects_and_files(velero, source):
    kube, target, name = source["kube"], unique("rdst"), unique("r")
    r = restore(velero, name, {"backupName": source["backup"], "namespaceMapping": {source["ns"]: target}})
    st = r["status"]
    assert st["phase"] == "Completed", st
    assert st["startTimestamp"] and st["completionTimestamp"]
    # spec is completed by the server: non-restorable resources excluded, defaults written
    assert "nodes" in r["spec"]["excludedResources"] and "events" in r["spec"]["excludedResources"]
    assert r["spec"]["itemOperationTimeout"] == "4h0m0s"
    assert "restores.velero.io/external-resources-finalizer" in r["metadata"]["finalizers"]

    cm = kube.read_configmap(target, "settings")
    assert cm["data"] == {"color": "blue"}
    labels = cm["metadata"]["labels"]
    assert labels["velero.io/backup-name"] == source["backup"]
    assert labels["velero.io/restore-name"] == name
    assert labels["app"] == "web"
    # the namespace was created from the backed-up one (its labels), without Velero labels
    ns = kube.core.read_namespace(target)
    assert ns.metadata.labels.get("team") == "blue"
    assert "velero.io/restore-name" not in (ns.metadata.labels or {})
    # Service: cluster IP and the auto-assigned node port were cleared and re-allocated
    svc = kube.core.read_namespaced_service("web", target)
    orig = source["service"]
    assert svc.spec.cluster_ip and svc.spec.cluster_ip != orig.spec.cluster_ip
    assert svc.spec.ports[0].node_port and svc.spec.ports[0].node_port != orig.spec.ports[0].node_port

    # RoleBinding subjects follow the namespace mapping
    rbac = __import__("kubernetes").client.RbacAuthorizationV1Api(kube.api_client)
    rb = rbac.read_namespaced_role_binding("runner", target)
    assert [(s.name, s.namespace) for s in rb.subjects] == [("runner", target)]
    sa = kube.core.read_namespaced_service_account("runner", target)
    assert [x.name for x in sa.secrets or []] == ["runner-extra"]   # the token secret is dropped

    # counters: every processed entry (items + the created namespace)
    resources = restore_file(velero, name, "resource-list.json.gz")
    assert f"{target}/settings(created)" in resources["v1/ConfigMap"]
    assert f"{target}(created)" in resources["v1/Namespace"]
    processed = sum(len(v) for v in resources.values())
    assert st["progress"] == {"totalItems": processed, "itemsRestored": processed}
    results = restore_file(velero, name, "results.gz")
    assert st.get("errors", 0) == len(all_messages(results["errors"]))
    assert st.get("warnings", 0) == len(all_messages(results["warnings"]))
    keys = velero.bucket_keys(restore_prefix(velero, name))
    for suffix in ("logs.gz", "results.gz", "resource-list.json.gz", "itemoperations.json.gz"):
        assert f"{restore_prefix(velero, name)}restore-{name}-{suffix}" in keys
    log = gzip.decompress(velero.read_object(f"{restore_prefix(velero, name)}restore-{name}-logs.gz")).decode()
    assert "restore completed" in log


def test_existing_objects_policy_none_untouched_and_warned(velero, source):
    """Restoring onto the source namespace itself: every object exists (and differs)."""
    kube, ns = source["kube"], source["ns"]
    kube.core.patch_namespaced_config_map("settings", ns, {"data": {"color": "green"}})
    before = kube.read_configmap(ns, "settings")
    name = unique("rnone")
    r = restore(velero, name, {"backupName": source["backup"], "existingResourcePolicy": "none",
                               "includedResources": ["configmaps"]})
    assert r["status"]["phase"] == "Completed"  # warnings never fail a restore
    after = kube.read_configmap(ns, "settings")
    assert after == before  # byte-identical: same resourceVersion, data, labels
    warnings = restore_file(velero, name, "results.gz")["warnings"]["namespaces"][ns]
    assert ('could not restore, ConfigMap "settings" already exists. Warning: the in-cluster version is '
            'different than the backed-up version.') in warnings
    assert r["status"]["warnings"] >= 1
    assert f"{ns}/settings(failed)" in restore_file(velero, name, "resource-list.json.gz")["v1/ConfigMap"]


def test_existing_objects_policy_update_patches(velero, source):
    kube, ns = source["kube"], source["ns"]
    kube.core.patch_namespaced_config_map("other", ns, {"data": {"x": "changed", "extra": "y"}})
    name = unique("rupd")
    r = restore(velero, name, {"backupName": source["backup"], "existingResourcePolicy": "update",
                               "includedResources": ["configmaps"], "labelSelector": {"matchLabels": {"app": "db"}}})
    assert r["status"]["phase"] == "Completed"
    cm = kube.read_configmap(ns, "other")
    assert cm["data"] == {"x": "1"}  # fields absent from the backup are removed
    assert cm["metadata"]["labels"]["velero.io/restore-name"] == name
    assert f"{ns}/other(updated)" in restore_file(velero, name, "resource-list.json.gz")["v1/ConfigMap"]


def test_filters_resources_and_labels(velero, source):
    kube = source["kube"]
    target, name = unique("rflt"), unique("rf")
    r = restore(velero, name, {"backupName": source["backup"], "namespaceMapping": {source["ns"]: target},
                               "includedResources": ["configmaps", "secrets"],
                               "orLabelSelectors": [{"matchLabels": {"app": "web"}}]})
    assert r["status"]["phase"] == "Completed"
    assert kube.exists(kube.core.read_namespaced_config_map, "settings", target)
    assert kube.exists(kube.core.read_namespaced_secret, "creds", target)
    assert not kube.exists(kube.core.read_namespaced_config_map, "other", target)   # label
    assert not kube.exists(kube.core.read_namespaced_service, "web", target)        # resource

    target2, name2 = unique("rflt"), unique("rf")
    r = restore(velero, name2, {"backupName": source["backup"], "namespaceMapping": {source["ns"]: target2},
                                "excludedResources": ["secrets", "services"]})
    assert r["status"]["phase"] == "Completed"
    assert kube.exists(kube.core.read_namespaced_config_map, "other", target2)
    assert not kube.exists(kube.core.read_namespaced_secret, "creds", target2)

    # a namespace filter that excludes the only namespace restores nothing
    r = restore(velero, unique("rf"), {"backupName": source["backup"], "excludedNamespaces": [source["ns"]]})
    assert r["status"]["phase"] == "Completed"
    assert r["status"]["progress"]["itemsRestored"] == 0


@pytest.mark.parametrize("spec,message", [
    ({"backupName": "no-such-backup"},
     "Error retrieving backup: can't find backup velero/no-such-backup"),
    ({}, "Either a backup or schedule must be specified as a source for the restore, but not both"),
    ({"backupName": "a", "scheduleName": "b"},
     "Either a backup or schedule must be specified as a source for the restore, but not both"),
    ({"scheduleName": "no-such-schedule"}, "No backups found for schedule"),
    ({"backupName": "{backup}", "existingResourcePolicy": "merge"}, "Invalid ExistingResourcePolicy: merge"),
    ({"backupName": "{backup}", "includedResources": ["nodes"]}, "nodes are non-restorable resources"),
    ({"backupName": "{backup}", "labelSelector": {"matchLabels": {"a": "b"}},
      "orLabelSelectors": [{"matchLabels": {"a": "c"}}]},
     "encountered labelSelector as well as orLabelSelectors in restore spec, only one can be specified"),
    ({"backupName": "{backup}", "includedNamespaces": ["*", "x"]},
     "Invalid included/excluded namespace lists: includes list must either contain '*' only, or a non-empty list of items"),
    ({"backupName": "{backup}", "resourceModifier": {"kind": "ConfigMap", "name": "missing-modifiers"}},
     "failed to get resource modifiers configmap velero/missing-modifiers"),
])
def test_validation_errors(velero, source, spec, message):
    spec = {k: (v.replace("{backup}", source["backup"]) if isinstance(v, str) else v) for k, v in spec.items()}
    r = restore(velero, unique("rval"), spec)
    st = r["status"]
    assert st["phase"] == "FailedValidation"
    assert any(e.startswith(message) for e in st["validationErrors"]), st["validationErrors"]
    assert "startTimestamp" not in st and "completionTimestamp" not in st


def test_schedule_name_resolves_newest_completed_backup(velero, source):
    schedule = unique("sched")
    older, newer = f"{schedule}-1", f"{schedule}-2"
    ns = source["ns"]
    run_backup(velero, older, {"includedNamespaces": [ns]})
    velero.create_backup(newer, {"includedNamespaces": [ns]})
    velero.wait_backup(newer)
    for b in (older, newer):
        velero.patch("backups", b, {"metadata": {"labels": {"velero.io/schedule-name": schedule}}})
    # startTimestamps have second precision: make the order unambiguous
    velero.patch("backups", older, {"status": {"startTimestamp": "2020-01-01T00:00:00Z"}})
    r = restore(velero, unique("rs"), {"scheduleName": schedule, "namespaceMapping": {ns: unique("rsn")}})
    assert r["status"]["phase"] == "Completed"
    assert r["spec"]["backupName"] == newer

    # only a PartiallyFailed/Failed backup for the schedule: not eligible
    lonely = unique("sched")
    velero.create_backup(f"{lonely}-1", {"includedNamespaces": ["no-such-namespace-" + lonely]})
    b = velero.wait_backup(f"{lonely}-1")
    assert b["status"]["phase"] == "PartiallyFailed"
    velero.patch("backups", f"{lonely}-1", {"metadata": {"labels": {"velero.io/schedule-name": lonely}}})
    r = restore(velero, unique("rs"), {"scheduleName": lonely})
    assert r["status"]["phase"] == "FailedValidation"
    assert "No completed backups found for schedule" in r["status"]["validationErrors"]


def test_deleting_restore_removes_its_files(velero, source):
    name = unique("rdel")
    restore(velero, name, {"backupName": source["backup"], "namespaceMapping": {source["ns"]: unique("rdn")}})
    assert velero.bucket_keys(restore_prefix(velero, name))
    velero.delete("restores", name)
    wait_for(lambda: velero.get_or_none("restores", name) is None, what="restore CR gone")
    assert velero.bucket_keys(restore_prefix(velero, name)) == []


def test_crd_restored_first_and_established_before_its_objects(velero, source):
    """The CRD comes with its custom resources in the backup; after CRD and CR are gone the restore
    brings back the CRD first, then the CR."""
    kube = source["kube"]
    group = f"{unique('g')}.example.test"
    crd_name = f"gadgets.{group}"
    ext = __import__("kubernetes").client.ApiextensionsV1Api(kube.api_client)
    ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
    wait_for(lambda: any(c.type == "Established" and c.status == "True"
                     for c in (ext.read_custom_resource_definition(crd_name).status.conditions or [])),
         what="CRD established")
    ns = unique("rcrd")
    kube.namespace(ns)
    kube.custom.create_namespaced_custom_object(group, "v1", ns, "gadgets", {
        "apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 3},
        "status": {"ready": True}})   # no status subresource: status travels with the create
    backup = unique("rcb")
    run_backup(velero, backup, {"includedNamespaces": [ns]})
    ext.delete_custom_resource_definition(crd_name)
    wait_for(lambda: not kube.exists(ext.read_custom_resource_definition, crd_name), what="CRD deleted")

    name = unique("rcr")
    target = unique("rcrt")
    r = restore(velero, name, {"backupName": backup, "namespaceMapping": {ns: target}})
    assert r["status"]["phase"] == "Completed", r["status"]
    crd = ext.read_custom_resource_definition(crd_name)
    assert crd.metadata.labels["velero.io/restore-name"] == name
    g = kube.custom.get_namespaced_custom_object(group, "v1", target, "gadgets", "g1")
    assert g["spec"] == {"size": 3}
    resources = restore_file(velero, name, "resource-list.json.gz")
    assert resources["apiextensions.k8s.io/v1/CustomResourceDefinition"] == [f"{crd_name}(created)"]
    assert resources[f"{group}/v1/Gadget"] == [f"{target}/g1(created)"]
    assert "status" not in g            # status is dropped unless asked for (6.9)

    target2 = unique("rcrt")
    r = restore(velero, unique("rcr"), {"backupName": backup, "namespaceMapping": {ns: target2},
                                     "restoreStatus": {"includedResources": [f"gadgets.{group}"]}})
    assert r["status"]["phase"] == "Completed", r["status"]
    g2 = kube.custom.get_namespaced_custom_object(group, "v1", target2, "gadgets", "g1")
    assert g2["status"] == {"ready": True}
    ext.delete_custom_resource_definition(crd_name)


def test_node_ports_preserved_when_asked_or_explicit(velero):
    """preserveNodePorts keeps every node port; without it only node ports the user set explicitly
    (kubectl last-applied-configuration) survive."""
    kube = Apis(velero.api_client)
    ns = unique("rnp")
    kube.namespace(ns)
    for name, explicit in (("auto", False), ("explicit", True)):
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"type": "NodePort", "selector": {"app": name},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
        svc = kube.core.create_namespaced_service(ns, body)
        if explicit:
            applied = dict(body, spec=dict(body["spec"], ports=[{"name": "http", "port": 80, "targetPort": 8080,
                                                                   "nodePort": svc.spec.ports[0].node_port}]))
            kube.core.patch_namespaced_service(name, ns, {"metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": __import__("json").dumps(applied)}}})
    ports = {s.metadata.name: s.spec.ports[0].node_port for s in kube.core.list_namespaced_service(ns).items}
    backup = unique("rnpb")
    run_backup(velero, backup, {"includedNamespaces": [ns]})

    def recreate(spec_extra):
        for name in ports:   # free the ports, then restore in place
            kube.core.delete_namespaced_service(name, ns)
        wait_for(lambda: not kube.core.list_namespaced_service(ns).items, what="services deleted")
        r = restore(velero, unique("rnpr"), {"backupName": backup, "includedNamespaces": [ns], **spec_extra})
        assert r["status"]["phase"] == "Completed", r["status"]
        return {s.metadata.name: s.spec.ports[0].node_port for s in kube.core.list_namespaced_service(ns).items}

    kept = recreate({})
    assert kept["explicit"] == ports["explicit"]
    assert kept["auto"]          # re-allocated (may or may not be the same number)
    assert recreate({"preserveNodePorts": True}) == ports   # exactly the backed-up ones


def test_completed_pods_and_jobs_are_not_restored(velero):
    kube = Apis(velero.api_client)
    batch = __import__("kubernetes").client.BatchV1Api(kube.api_client)
    ns = unique("rjob")
    kube.namespace(ns)
    batch.create_namespaced_job(ns, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox:1.36", "command": ["true"]}]}}}})
    wait_for(lambda: batch.read_namespaced_job("once", ns).status.completion_time, what="job complete")
    wait_for(lambda: all(p.status.phase == "Succeeded" for p in kube.core.list_namespaced_pod(ns).items)
         and kube.core.list_namespaced_pod(ns).items, what="job pod Succeeded")
    kube.configmap(ns, "keep", {"a": "b"})
    backup = unique("rjb")
    run_backup(velero, backup, {"includedNamespaces": [ns]})
    target = unique("rjt")
    r = restore(velero, unique("rjr"), {"backupName": backup, "namespaceMapping": {ns: target}})
    assert r["status"]["phase"] == "Completed", r["status"]
    assert kube.exists(kube.core.read_namespaced_config_map, "keep", target)
    assert batch.list_namespaced_job(target).items == []
    assert kube.core.list_namespaced_pod(target).items == []


def test_retained_pv_is_restored_with_claim_ref_remapped(velero):
    """No snapshot and reclaim policy Retain: the PV object itself is restored (6.7)."""
    kube = Apis(velero.api_client)
    sc = unique("retain")
    kube.storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                       "metadata": {"name": sc}, "provisioner": "fleetdr.lab/hostpath",
                                       "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"})
    ns = unique("rpv")
    kube.namespace(ns)
    kube.core.create_namespaced_persistent_volume_claim(ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "keep"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                 "resources": {"requests": {"storage": "1Gi"}}}})
    pvc = wait_for(lambda: (lambda c: c if c.status.phase == "Bound" else None)(
        kube.core.read_namespaced_persistent_volume_claim("keep", ns)), what="PVC bound")
    pv_name = pvc.spec.volume_name
    backup = unique("rpvb")
    run_backup(velero, backup, {"includedNamespaces": [ns]})
    # the PV goes away (Retain keeps the data, the object is deleted by hand)
    kube.core.delete_namespaced_persistent_volume_claim("keep", ns)
    wait_for(lambda: not kube.exists(kube.core.read_namespaced_persistent_volume_claim, "keep", ns), what="PVC gone")
    kube.core.delete_persistent_volume(pv_name)
    wait_for(lambda: not kube.exists(kube.core.read_persistent_volume, pv_name), what="PV gone")

    target, name = unique("rpvt"), unique("rpvr")
    r = restore(velero, name, {"backupName": backup, "namespaceMapping": {ns: target}})
    assert r["status"]["phase"] == "Completed", r["status"]
    pv = kube.core.read_persistent_volume(pv_name)
    assert pv.metadata.labels["velero.io/restore-name"] == name
    assert pv.spec.claim_ref.namespace == target and pv.spec.claim_ref.name == "keep"
    restored = wait_for(lambda: (lambda c: c if c.status.phase == "Bound" else None)(
        kube.core.read_namespaced_persistent_volume_claim("keep", target)), what="restored PVC bound")
    assert restored.spec.volume_name == pv_name


def test_include_cluster_resources_semantics(velero):
    """6.3: cluster-scoped items are restored with `true`, never with `false`, and with nil only
    when the namespace filter takes everything."""
    kube = Apis(velero.api_client)
    rbac = __import__("kubernetes").client.RbacAuthorizationV1Api(kube.api_client)
    ns = unique("ricr")
    kube.namespace(ns)
    kube.configmap(ns, "cm", {"a": "b"})
    role = unique("ricr-role")
    rbac.create_cluster_role({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                              "metadata": {"name": role, "labels": {"test": ns}},
                              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    backup = unique("ricrb")
    run_backup(velero, backup, {"includedNamespaces": [ns], "includeClusterResources": True,
                                "orLabelSelectors": [{"matchLabels": {"test": ns}},
                                                     {"matchLabels": {"kubernetes.io/metadata.name": ns}}]})
    rbac.delete_cluster_role(role)

    def restored(spec):
        name = unique("ricrr")
        r = restore(velero, name, {"backupName": backup, **spec})
        assert r["status"]["phase"] == "Completed", r["status"]
        found = kube.exists(rbac.read_cluster_role, role)
        if found:
            rbac.delete_cluster_role(role)
            wait_for(lambda: not kube.exists(rbac.read_cluster_role, role), what="cluster role deleted")
        return found

    assert restored({"includeClusterResources": False}) is False
    assert restored({"includedNamespaces": [ns], "namespaceMapping": {ns: unique("ricrt")}}) is False
    assert restored({"namespaceMapping": {ns: unique("ricrt")}}) is True
    assert restored({"includedNamespaces": [ns], "includeClusterResources": True,
                     "namespaceMapping": {ns: unique("ricrt")}}) is True


def test_existing_service_with_taken_node_port_is_a_warning(velero, source):
    """preserveNodePorts onto the live Service: the port clash counts as "already exists"."""
    ns, name = source["ns"], unique("rsvc")
    r = restore(velero, name, {"backupName": source["backup"], "includedResources": ["services"],
                               "preserveNodePorts": True})
    assert r["status"]["phase"] == "Completed", r["status"]
    assert r["status"].get("errors", 0) == 0
    warnings = restore_file(velero, name, "results.gz")["warnings"]["namespaces"][ns]
    assert any(w.startswith("could not restore, Service:web already exists") for w in warnings), warnings


def test_phases_seen_through_a_watch(velero, source):
    """InProgress -> Finalizing -> Completed, each written as its own update (watched from the
    creation's resourceVersion, so no update can be missed)."""
    from kubernetes import watch
    name = unique("rw")
    created = create_restore(velero, name, {"backupName": source["backup"],
                                            "namespaceMapping": {source["ns"]: unique("rwt")}})
    seen = []
    w = watch.Watch()
    for ev in w.stream(velero.custom.list_namespaced_custom_object, "velero.io", "v1", velero.namespace,
                       "restores", field_selector=f"metadata.name={name}",
                       resource_version=created["metadata"]["resourceVersion"], timeout_seconds=60):
        phase = (ev["object"].get("status") or {}).get("phase")
        if phase and (not seen or seen[-1] != phase):
            seen.append(phase)
        if phase in ("Completed", "PartiallyFailed", "Failed", "FailedValidation"):
            w.stop()
    assert seen == ["InProgress", "Finalizing", "Completed"], seen
