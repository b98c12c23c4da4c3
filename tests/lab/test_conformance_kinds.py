"""The built-in kinds a backup meets on a real cluster, served with kube-apiserver's defaults and
validation (Kubernetes pkg/apis/<group>/<version>/defaults.go and validation/validation.go), through
the typed kubernetes client and kubectl, as a restore of them would use them."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import unique

CLUSTER = "c1"

SERVED = {
    "networking.k8s.io/v1": {"networkpolicies", "ingressclasses", "ingresses"},
    "discovery.k8s.io/v1": {"endpointslices"},
    "autoscaling/v2": {"horizontalpodautoscalers", "horizontalpodautoscalers/status"},
    "scheduling.k8s.io/v1": {"priorityclasses"},
    "node.k8s.io/v1": {"runtimeclasses"},
    "admissionregistration.k8s.io/v1": {"mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                                        "validatingadmissionpolicies", "validatingadmissionpolicybindings"},
    "flowcontrol.apiserver.k8s.io/v1": {"flowschemas", "prioritylevelconfigurations"},
    "certificates.k8s.io/v1": {"certificatesigningrequests", "certificatesigningrequests/approval"},
    "storage.k8s.io/v1": {"storageclasses", "csidrivers", "csinodes", "volumeattachments", "csistoragecapacities"},
    "v1": {"podtemplates", "replicationcontrollers", "replicationcontrollers/scale"},
}


@pytest.fixture(scope="module")
def api(apis):
    return apis.client


def test_discovery_lists_the_groups_a_current_server_serves(api):
    resources = client.ApisApi(api).get_api_versions()
    names = {group.name for group in resources.groups}
    assert {"discovery.k8s.io", "autoscaling", "scheduling.k8s.io", "node.k8s.io", "admissionregistration.k8s.io",
            "flowcontrol.apiserver.k8s.io", "certificates.k8s.io"} <= names
    for group_version, expected in SERVED.items():
        path = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        listing = api.call_api(*api.param_serialize("GET", path, header_params={"Accept": "application/json"},
                                                    auth_settings=["BearerToken"]))
        listing.read()
        served = {r["name"] for r in json.loads(listing.data)["resources"]}
        assert expected <= served, (group_version, expected - served)


def test_priority_class_defaults_and_validation(api):
    scheduling = client.SchedulingV1Api(api)
    name = unique("pc")
    made = scheduling.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name=name), value=1000))
    assert made.preemption_policy == "PreemptLowerPriority" and made.value == 1000
    with pytest.raises(ApiException) as caught:
        scheduling.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name=unique("pc")), value=2000000000))
    assert caught.value.status == 422 and "maximum allowed value of a user defined priority" in caught.value.body
    scheduling.delete_priority_class(name, _preload_content=False)


def test_network_policy_defaults_its_policy_types_and_ports(api, ns):
    networking = client.NetworkingV1Api(api)
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "db"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"ports": [{"port": 5432}]}]}}
    made = networking.create_namespaced_network_policy(ns, body)
    assert made.spec.policy_types == ["Ingress"] and made.spec.ingress[0].ports[0].protocol == "TCP"
    with pytest.raises(ApiException) as caught:
        networking.create_namespaced_network_policy(ns, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                                         "metadata": {"name": "bad"}, "spec": {"policyTypes": ["Sideways"]}})
    assert caught.value.status == 422 and "spec.podSelector" in caught.value.body and "Sideways" in caught.value.body


def test_hpa_v2_defaults_cpu_target_and_checks_replicas(api, ns):
    autoscaling = client.AutoscalingV2Api(api)
    body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}}
    made = autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, body)
    assert made.spec.min_replicas == 1
    assert made.spec.metrics[0].resource.name == "cpu" and made.spec.metrics[0].resource.target.average_utilization == 80
    bad = dict(body, metadata={"name": "bad"}, spec=dict(body["spec"], minReplicas=9))
    with pytest.raises(ApiException) as caught:
        autoscaling.create_namespaced_horizontal_pod_autoscaler(ns, bad)
    assert caught.value.status == 422 and "spec.minReplicas" in caught.value.body


def test_webhook_configuration_defaults_and_rules(api):
    admission = client.AdmissionregistrationV1Api(api)
    name = unique("hooks")
    hook = {"name": "check.example.com", "clientConfig": {"service": {"name": "hook", "namespace": "default"}},
            "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]}
    made = admission.create_validating_webhook_configuration({"apiVersion": "admissionregistration.k8s.io/v1",
                                                              "kind": "ValidatingWebhookConfiguration",
                                                              "metadata": {"name": name}, "webhooks": [hook]})
    got = made.webhooks[0]
    assert (got.failure_policy, got.match_policy, got.timeout_seconds, got.rules[0].scope) == ("Fail", "Equivalent", 10, "*")
    assert got.client_config.service.port == 443
    with pytest.raises(ApiException) as caught:
        admission.create_validating_webhook_configuration({"apiVersion": "admissionregistration.k8s.io/v1",
                                                           "kind": "ValidatingWebhookConfiguration",
                                                           "metadata": {"name": unique("bad")},
                                                           "webhooks": [dict(hook, name="check", sideEffects="Some")]})
    assert caught.value.status == 422 and "webhooks[0].name" in caught.value.body and "webhooks[0].sideEffects" in caught.value.body
    admission.delete_validating_webhook_configuration(name, _preload_content=False)


def test_endpointslice_csidriver_runtimeclass_and_rc(api, ns):
    discovery = client.DiscoveryV1Api(api)
    made = discovery.create_namespaced_endpoint_slice(ns, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                                           "metadata": {"name": "web-1"}, "addressType": "IPv4",
                                                           "endpoints": [{"addresses": ["10.0.0.1"]}]})
    assert made.address_type == "IPv4"
    with pytest.raises(ApiException) as caught:
        discovery.create_namespaced_endpoint_slice(ns, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                                        "metadata": {"name": "bad"}, "addressType": "IPv5", "endpoints": []})
    assert caught.value.status == 422
    storage = client.StorageV1Api(api)
    driver = unique("csi.example.com")
    got = storage.create_csi_driver({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": driver}, "spec": {}})
    assert got.spec.attach_required is True and got.spec.volume_lifecycle_modes == ["Persistent"]
    assert got.spec.fs_group_policy == "ReadWriteOnceWithFSType"
    storage.delete_csi_driver(driver, _preload_content=False)
    # The typed client refuses a RuntimeClass without handler itself; the server must too.
    request = api.param_serialize("POST", "/apis/node.k8s.io/v1/runtimeclasses", auth_settings=["BearerToken"],
                                  header_params={"Accept": "application/json", "Content-Type": "application/json"},
                                  body={"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": unique("rc")}})
    response = api.call_api(*request)
    response.read()
    assert response.status == 422 and b"handler" in response.data
    rc = client.CoreV1Api(api).create_namespaced_replication_controller(ns, {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "old"},
        "spec": {"template": {"metadata": {"labels": {"app": "old"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    assert rc.spec.replicas == 1 and rc.spec.selector == {"app": "old"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_api_resources_shows_the_networking_kinds(lab, tmp_path):
    out = subprocess.run(["kubectl", "--kubeconfig", str(lab.kubeconfig), "--context", CLUSTER, "--cache-dir", str(tmp_path),
                          "api-resources", "--api-group=networking.k8s.io", "-o", "name"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert {"networkpolicies.networking.k8s.io", "ingressclasses.networking.k8s.io", "ingresses.networking.k8s.io"} <= set(out)
