"""Garbage collection, namespace lifecycle, default ServiceAccount, Services and Endpoints,
driven through the kubernetes client against the shared lab."""
from __future__ import annotations

import ipaddress
import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException

from helpers import delete_namespace, deployment, deployment_ready, gone, make_namespace, pvc, unique, wait_for


def _ready_deployment(apis, ns, replicas=2):
    apis.apps.create_namespaced_deployment(ns, deployment("web", replicas=replicas))
    return wait_for(lambda: deployment_ready(apis.apps, ns, "web", replicas), "deployment ready")


# ---------------------------------------------------------------------- garbage collection
def test_background_deletion_removes_replicasets_and_pods(apis, ns):
    _ready_deployment(apis, ns)
    apis.apps.delete_namespaced_deployment("web", ns)  # default: Background
    wait_for(lambda: not apis.apps.list_namespaced_replica_set(ns).items
             and not apis.core.list_namespaced_pod(ns).items, "dependents collected")


def test_foreground_deletion_waits_for_blocking_dependents(apis, ns):
    d = _ready_deployment(apis, ns)
    # a blocking dependent that cannot go away until its own finalizer is removed
    apis.core.create_namespaced_config_map(ns, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"], "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
            "uid": d.metadata.uid, "blockOwnerDeletion": True}]}})
    apis.apps.delete_namespaced_deployment("web", ns, propagation_policy="Foreground")
    wait_for(lambda: apis.core.read_namespaced_config_map("held", ns).metadata.deletion_timestamp,
             "blocking dependent marked for deletion")
    wait_for(lambda: not apis.apps.list_namespaced_replica_set(ns).items
             and not apis.core.list_namespaced_pod(ns).items, "other dependents deleted")
    owner = apis.apps.read_namespaced_deployment("web", ns)
    assert owner.metadata.deletion_timestamp is not None
    assert owner.metadata.finalizers == ["foregroundDeletion"]
    apis.core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    wait_for(lambda: gone(lambda: apis.apps.read_namespaced_deployment("web", ns)),
             "owner deleted once its blocking dependents are gone")


def test_orphan_deletion_keeps_dependents_without_owner_reference(apis, ns):
    _ready_deployment(apis, ns)
    rs_name = apis.apps.list_namespaced_replica_set(ns).items[0].metadata.name
    apis.apps.delete_namespaced_deployment("web", ns, propagation_policy="Orphan")
    wait_for(lambda: gone(lambda: apis.apps.read_namespaced_deployment("web", ns)), "owner gone")
    rs = apis.apps.read_namespaced_replica_set(rs_name, ns)
    assert not rs.metadata.owner_references
    assert not rs.metadata.finalizers
    assert len(apis.core.list_namespaced_pod(ns).items) == 2


def test_dependents_of_a_custom_resource_are_collected(apis, ns):
    group = f"{unique('gc')}.example.fleetdr.io"
    crd_name = f"holders.{group}"
    apis.ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "holders", "singular": "holder", "kind": "Holder"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object",
                                         "x-kubernetes-preserve-unknown-fields": True}}}]}})
    try:
        wait_for(lambda: _crd_established(apis, crd_name), "CRD established")
        owner = apis.custom.create_namespaced_custom_object(group, "v1", ns, "holders", {
            "apiVersion": f"{group}/v1", "kind": "Holder", "metadata": {"name": "h"}})
        apis.core.create_namespaced_config_map(ns, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "owned", "ownerReferences": [{
                "apiVersion": f"{group}/v1", "kind": "Holder", "name": "h",
                "uid": owner["metadata"]["uid"]}]}, "data": {"k": "v"}})
        # a dependent whose owner uid never existed is collected too
        apis.core.create_namespaced_config_map(ns, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "dangling", "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
                "uid": "00000000-0000-0000-0000-000000000000"}]}})
        wait_for(lambda: gone(lambda: apis.core.read_namespaced_config_map("dangling", ns)),
                 "dangling dependent collected")
        assert apis.core.read_namespaced_config_map("owned", ns).data == {"k": "v"}
        apis.custom.delete_namespaced_custom_object(group, "v1", ns, "holders", "h")
        wait_for(lambda: gone(lambda: apis.core.read_namespaced_config_map("owned", ns)),
                 "dependent of the custom resource collected")
    finally:
        apis.ext.delete_custom_resource_definition(crd_name)


def _crd_established(apis, name):
    crd = apis.ext.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True"
               for c in (crd.status.conditions or []))


# ---------------------------------------------------------------------- namespaces
def test_namespace_deletion_removes_contents_then_the_namespace(lab, apis):
    name = unique("nsdel")
    make_namespace(apis.core, name)
    apis.apps.create_namespaced_deployment(name, deployment("web", replicas=1))
    apis.core.create_namespaced_persistent_volume_claim(name, pvc("data"))
    apis.core.create_namespaced_config_map(name, {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "cfg"}})
    wait_for(lambda: deployment_ready(apis.apps, name, "web", 1), "ready")
    claim = wait_for(lambda: (lambda c: c.status.phase == "Bound" and c)(
        apis.core.read_namespaced_persistent_volume_claim("data", name)), "claim bound")
    pv_name = claim.spec.volume_name
    data_dir = lab.dir / "volumes" / "c1" / pv_name
    assert data_dir.is_dir()

    start_rv = apis.core.list_namespace().metadata.resource_version
    apis.core.delete_namespace(name)
    phases = []
    w = watch.Watch()
    for ev in w.stream(apis.core.list_namespace, resource_version=start_rv,
                       field_selector=f"metadata.name={name}", timeout_seconds=30):
        phases.append((ev["type"], ev["object"].status.phase))
        if ev["type"] == "DELETED":
            w.stop()
    assert ("MODIFIED", "Terminating") in phases
    assert phases[-1][0] == "DELETED"
    assert gone(lambda: apis.core.read_namespace(name))
    # the PVC went with the namespace, and its Delete-policy volume and data with it
    wait_for(lambda: gone(lambda: apis.core.read_persistent_volume(pv_name)), "PV deleted")
    wait_for(lambda: not data_dir.exists(), "volume data removed")


def test_terminating_namespace_refuses_new_objects_and_waits_for_finalizers(apis):
    name = unique("nsfin")
    make_namespace(apis.core, name)
    apis.core.create_namespaced_config_map(name, {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    apis.core.delete_namespace(name)

    def terminating_with_finalizers():
        n = apis.core.read_namespace(name)
        conds = {c.type: c for c in n.status.conditions or []}
        c = conds.get("NamespaceFinalizersRemaining")
        return n.status.phase == "Terminating" and c is not None and c.status == "True" and n
    n = wait_for(terminating_with_finalizers, "namespace waiting on a finalizer")
    conds = {c.type: c for c in n.status.conditions}
    assert "example.com/hold in 1 resource instances" in conds["NamespaceFinalizersRemaining"].message
    assert conds["NamespaceContentRemaining"].reason == "SomeResourcesRemain"
    with pytest.raises(ApiException) as e:
        apis.core.create_namespaced_config_map(name, {"apiVersion": "v1", "kind": "ConfigMap",
                                                      "metadata": {"name": "late"}})
    assert e.value.status == 403
    assert "because it is being terminated" in e.value.body
    apis.core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})
    wait_for(lambda: gone(lambda: apis.core.read_namespace(name)), "namespace finalized")


def test_default_service_account_and_root_ca_in_every_namespace(apis, ns):
    sa = wait_for(lambda: apis.core.read_namespaced_service_account("default", ns),
                  "default ServiceAccount")
    assert sa.metadata.namespace == ns
    cm = wait_for(lambda: apis.core.read_namespaced_config_map("kube-root-ca.crt", ns),
                  "kube-root-ca.crt")
    assert cm.data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    apis.core.delete_namespaced_service_account("default", ns)
    recreated = wait_for(lambda: apis.core.read_namespaced_service_account("default", ns),
                         "default ServiceAccount re-created")
    assert recreated.metadata.uid != sa.metadata.uid


# ---------------------------------------------------------------------- services
def _service(name, stype="ClusterIP", ports=None, selector=None, cluster_ip=None):
    spec = {"type": stype, "ports": ports or [{"port": 80, "targetPort": 8080}]}
    if selector:
        spec["selector"] = selector
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def test_cluster_ip_allocation(apis, ns):
    a = apis.core.create_namespaced_service(ns, _service("a"))
    b = apis.core.create_namespaced_service(ns, _service("b"))
    headless = apis.core.create_namespaced_service(ns, _service("h", cluster_ip="None"))
    cidr = ipaddress.ip_network("10.96.0.0/12")
    assert ipaddress.ip_address(a.spec.cluster_ip) in cidr
    assert a.spec.cluster_ips == [a.spec.cluster_ip]
    assert a.spec.cluster_ip != b.spec.cluster_ip
    assert headless.spec.cluster_ip == "None"
    with pytest.raises(ApiException) as e:
        apis.core.create_namespaced_service(ns, _service("dup", cluster_ip=a.spec.cluster_ip))
    assert e.value.status == 422
    assert "provided IP is already allocated" in e.value.body
    # an update that leaves the IP out keeps it (allocated values are preserved)
    body = apis.core.read_namespaced_service("a", ns)
    body.spec.cluster_ip = None
    body.spec.cluster_ips = None
    assert apis.core.replace_namespaced_service("a", ns, body).spec.cluster_ip == a.spec.cluster_ip
    # a deleted service frees its IP
    apis.core.delete_namespaced_service("a", ns)
    again = apis.core.create_namespaced_service(ns, _service("a2", cluster_ip=a.spec.cluster_ip))
    assert again.spec.cluster_ip == a.spec.cluster_ip


def test_node_port_allocation_is_unique_per_cluster(apis, ns):
    other = unique("lc2")
    make_namespace(apis.core, other)
    try:
        auto = apis.core.create_namespaced_service(ns, _service("auto", "NodePort", ports=[
            {"name": "http", "port": 80}, {"name": "https", "port": 443}]))
        ports = [p.node_port for p in auto.spec.ports]
        assert all(30000 <= p <= 32767 for p in ports) and len(set(ports)) == 2
        fixed = apis.core.create_namespaced_service(ns, _service("fixed", "NodePort", ports=[
            {"port": 80, "nodePort": 31234}]))
        assert fixed.spec.ports[0].node_port == 31234
        # the same nodePort in another namespace of the same cluster is refused
        with pytest.raises(ApiException) as e:
            apis.core.create_namespaced_service(other, _service("clash", "NodePort", ports=[
                {"port": 80, "nodePort": 31234}]))
        assert e.value.status == 422
        assert "spec.ports[0].nodePort: Invalid value: 31234: provided port is already allocated" \
            in e.value.body
        with pytest.raises(ApiException) as e:
            apis.core.create_namespaced_service(other, _service("low", "NodePort", ports=[
                {"port": 80, "nodePort": 8080}]))
        assert e.value.status == 422 and "not in the valid range" in e.value.body
        lb = apis.core.create_namespaced_service(ns, _service("lb", "LoadBalancer"))
        assert lb.spec.ports[0].node_port not in ports + [31234]
        lb = wait_for(lambda: (lambda s: s.status.load_balancer.ingress and s)(
            apis.core.read_namespaced_service("lb", ns)), "load balancer ingress")
        assert lb.status.load_balancer.ingress[0].ip
        # freed on delete: the port can be requested again
        apis.core.delete_namespaced_service("fixed", ns)
        ok = apis.core.create_namespaced_service(other, _service("reuse", "NodePort", ports=[
            {"port": 80, "nodePort": 31234}]))
        assert ok.spec.ports[0].node_port == 31234
    finally:
        delete_namespace(apis.core, other)


def test_endpoints_track_ready_pods(apis, ns):
    apis.core.create_namespaced_service(ns, _service("web", selector={"app": "web"}, ports=[
        {"name": "http", "port": 80, "targetPort": "http"}]))
    _ready_deployment(apis, ns, replicas=2)
    pod_ips = sorted(p.status.pod_ip for p in apis.core.list_namespaced_pod(ns).items)

    def addresses():
        ep = apis.core.read_namespaced_endpoints("web", ns)
        ips = sorted(a.ip for s in ep.subsets or [] for a in s.addresses or [])
        return ips == pod_ips and ep
    ep = wait_for(addresses, "endpoints with both pod IPs")
    assert ep.subsets[0].ports[0].port == 8080 and ep.subsets[0].ports[0].name == "http"
    assert {a.target_ref.kind for a in ep.subsets[0].addresses} == {"Pod"}
    apis.apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 0}})
    wait_for(lambda: not apis.core.read_namespaced_endpoints("web", ns).subsets,
             "endpoints empty at 0 replicas")
    apis.core.delete_namespaced_service("web", ns)
    wait_for(lambda: gone(lambda: apis.core.read_namespaced_endpoints("web", ns)),
             "endpoints removed with the service")
