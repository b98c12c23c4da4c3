"""Conformance of the lab's API through kubectl 1.32 (discovery, apply, get, label, patch,
delete, wait, watch, Table output, CRD printer columns)."""
from __future__ import annotations

import json
import shutil
import threading

import pytest
import yaml
from helpers import Kubectl, unique

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@pytest.fixture(scope="module")
def kubectl(lab, tmp_path_factory):
    # a private discovery cache, so CRDs made here are never hidden by a stale one
    return Kubectl(lab.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture
def ns(kubectl):
    name = unique("kc")
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def manifest(ns, image="nginx:1.27", data="1"):
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": ns},
         "data": {"a": data}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"containers": [{"name": "nginx", "image": image}]}}}},
    ])


def test_version_and_api_resources(kubectl):
    out = json.loads(kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.32.")
    lines = kubectl("api-resources").stdout.splitlines()
    assert lines[0].split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert rows["namespaces"] == ["namespaces", "ns", "v1", "false", "Namespace"]
    names = kubectl("api-resources", "--api-group=apps", "-o", "name").stdout.split()
    assert "deployments.apps" in names and "statefulsets.apps" in names


def test_apply_create_unchanged_configured(kubectl, ns):
    out = kubectl("apply", "-f", "-", stdin=manifest(ns)).stdout
    assert "configmap/cfg created" in out and "deployment.apps/web created" in out
    out = kubectl("apply", "-f", "-", stdin=manifest(ns)).stdout
    assert "configmap/cfg unchanged" in out and "deployment.apps/web unchanged" in out
    out = kubectl("apply", "-f", "-", stdin=manifest(ns, image="nginx:1.28", data="2")).stdout
    assert "configmap/cfg configured" in out and "deployment.apps/web configured" in out

    dep = json.loads(kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    got = yaml.safe_load(kubectl("get", "configmap", "cfg", "-n", ns, "-o", "yaml").stdout)
    assert got["data"] == {"a": "2"} and got["kind"] == "ConfigMap"


def test_server_side_apply(kubectl, ns):
    out = kubectl("apply", "--server-side", "-f", "-", stdin=manifest(ns)).stdout
    assert "configmap/cfg serverside-applied" in out
    got = json.loads(kubectl("get", "cm", "cfg", "-n", ns, "-o", "json").stdout)
    assert got["data"] == {"a": "1"}


def test_get_table_name_and_jsonpath_output(kubectl, ns):
    kubectl("apply", "-f", "-", stdin=manifest(ns))
    lines = kubectl("get", "configmaps", "-n", ns).stdout.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]
    assert any(line.split()[:2] == ["cfg", "1"] for line in lines[1:])
    header = kubectl("get", "deploy", "-n", ns, "-o", "wide").stdout.splitlines()[0].split()
    assert header[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert "IMAGES" in header
    assert kubectl("get", "cm", "cfg", "-n", ns, "-o", "name").stdout.strip() == "configmap/cfg"
    assert kubectl("get", "cm", "cfg", "-n", ns, "-o",
                   "jsonpath={.data.a}").stdout == "1"
    nodes = kubectl("get", "nodes").stdout.splitlines()
    assert nodes[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes[1].split()[1] == "Ready"
    assert "No resources found" in kubectl("get", "secrets", "-n", ns, "-l", "nothing=here").stderr


def test_label_patch_and_selectors(kubectl, ns):
    kubectl("apply", "-f", "-", stdin=manifest(ns))
    assert "labeled" in kubectl("label", "cm", "cfg", "-n", ns, "tier=gold").stdout
    assert kubectl("get", "cm", "-n", ns, "-l", "tier in (gold,silver)", "-o",
                   "name").stdout.split() == ["configmap/cfg"]
    out = kubectl("label", "cm", "cfg", "-n", ns, "tier=silver", check=False)
    assert out.returncode != 0 and "already has a value" in out.stderr
    kubectl("label", "cm", "cfg", "-n", ns, "tier=silver", "--overwrite")

    kubectl("patch", "cm", "cfg", "-n", ns, "-p", '{"data":{"b":"2"}}')
    kubectl("patch", "cm", "cfg", "-n", ns, "--type=merge", "-p", '{"data":{"a":null}}')
    kubectl("patch", "cm", "cfg", "-n", ns, "--type=json",
            "-p", '[{"op":"add","path":"/data/c","value":"3"}]')
    got = json.loads(kubectl("get", "cm", "cfg", "-n", ns, "-o", "json").stdout)
    assert got["data"] == {"b": "2", "c": "3"}
    assert got["metadata"]["labels"] == {"tier": "silver"}

    kubectl("patch", "deploy", "web", "-n", ns, "-p",
            '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}')
    dep = json.loads(kubectl("get", "deploy", "web", "-n", ns, "-o", "json").stdout)
    assert sorted(c["name"] for c in dep["spec"]["template"]["spec"]["containers"]) == [
        "nginx", "sidecar"]


def test_delete_and_wait_for_delete(kubectl, ns):
    kubectl("apply", "-f", "-", stdin=manifest(ns))
    # `kubectl wait --for=delete` lists then watches; the delete must reach its watch
    waiter = kubectl.popen("wait", "--for=delete", "configmap/cfg", "-n", ns, "--timeout=60s")
    try:
        assert "deleted" in kubectl("delete", "configmap", "cfg", "-n", ns).stdout
        out, err = waiter.communicate(timeout=90)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 0, err
    missing = kubectl("get", "configmap", "cfg", "-n", ns, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_wait_for_condition_on_deployment(kubectl, ns):
    kubectl("apply", "-f", "-", stdin=manifest(ns))
    out = kubectl("wait", "--for=condition=Available", "deployment/web", "-n", ns,
                  "--timeout=60s").stdout
    assert "condition met" in out


def test_crd_wait_printer_columns_and_removal(kubectl, ns):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.kubectl.fleetdr.test"},
        "spec": {"group": "kubectl.fleetdr.test", "scope": "Namespaced",
                 "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget",
                           "shortNames": ["gdg"]},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "additionalPrinterColumns": [
                                   {"name": "Phase", "type": "string",
                                    "jsonPath": ".status.phase"},
                                   {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                               "schema": {"openAPIV3Schema": {
                                   "type": "object",
                                   "x-kubernetes-preserve-unknown-fields": True}}}]}}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd))
    try:
        kubectl("wait", "--for=condition=Established", "crd/gadgets.kubectl.fleetdr.test",
                "--timeout=30s")
        gadget = {"apiVersion": "kubectl.fleetdr.test/v1", "kind": "Gadget",
                  "metadata": {"name": "g1", "namespace": ns}, "spec": {"size": 2}}
        assert "gadget.kubectl.fleetdr.test/g1 created" in kubectl(
            "apply", "-f", "-", stdin=yaml.safe_dump(gadget)).stdout
        kubectl("patch", "gadget", "g1", "-n", ns, "--subresource=status", "--type=merge",
                "-p", '{"status":{"phase":"Ready","conditions":[{"type":"Ready","status":"True"}]}}')
        lines = kubectl("get", "gdg", "-n", ns).stdout.splitlines()
        assert lines[0].split() == ["NAME", "PHASE", "SIZE"]
        assert lines[1].split() == ["g1", "Ready", "2"]
        kubectl("wait", "--for=condition=Ready", "gadget/g1", "-n", ns, "--timeout=30s")
        # strategic merge is not allowed for custom resources: kubectl apply uses merge patch
        gadget["spec"]["size"] = 3
        assert "configured" in kubectl("apply", "-f", "-", stdin=yaml.safe_dump(gadget)).stdout
        assert kubectl("get", "gadget", "g1", "-n", ns, "-o",
                       "jsonpath={.spec.size}").stdout == "3"
    finally:
        kubectl("delete", "crd", "gadgets.kubectl.fleetdr.test", "--wait=true")
    gone = kubectl("get", "--raw", f"/apis/kubectl.fleetdr.test/v1/namespaces/{ns}/gadgets",
                   check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_get_raw_watch_stream(kubectl, ns):
    kubectl("apply", "-f", "-", stdin=manifest(ns))
    out = kubectl("get", "--raw",
                  f"/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1"
                  "&fieldSelector=metadata.name%3Dcfg").stdout
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "cfg")]


def test_create_commands_send_protobuf_and_are_understood(kubectl, ns):
    # kubectl's generators post built-in objects as Kubernetes protobuf, not JSON
    kubectl("create", "configmap", "pc", "-n", ns, "--from-literal=a=b")
    kubectl("create", "secret", "generic", "ps", "-n", ns, "--from-literal=p=q")
    kubectl("create", "serviceaccount", "robot", "-n", ns)
    kubectl("create", "deployment", "pd", "-n", ns, "--image=nginx:1.27", "--port=80",
            "--replicas=0")
    kubectl("create", "service", "clusterip", "psvc", "-n", ns, "--tcp=80:8080")
    kubectl("create", "cronjob", "pcj", "-n", ns, "--image=busybox",
            "--schedule=*/5 * * * *", "--", "date")
    kubectl("create", "role", "reader", "-n", ns, "--verb=get,list",
            "--resource=pods,deployments.apps")
    kubectl("create", "rolebinding", "reader", "-n", ns, "--role=reader",
            f"--serviceaccount={ns}:robot")

    assert json.loads(kubectl("get", "cm", "pc", "-n", ns, "-o", "json").stdout)["data"] == {
        "a": "b"}
    secret = json.loads(kubectl("get", "secret", "ps", "-n", ns, "-o", "json").stdout)
    assert secret["data"] == {"p": "cQ=="} and secret["type"] == "Opaque"
    dep = json.loads(kubectl("get", "deploy", "pd", "-n", ns, "-o", "json").stdout)
    assert dep["spec"]["replicas"] == 0  # a pointer field: zero survives decoding
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "pd"}}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["ports"][0]["containerPort"]) == ("nginx:1.27", 80)
    svc = json.loads(kubectl("get", "svc", "psvc", "-n", ns, "-o", "json").stdout)
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 8080
    cron = json.loads(kubectl("get", "cronjob", "pcj", "-n", ns, "-o", "json").stdout)
    assert cron["spec"]["schedule"] == "*/5 * * * *"
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
        "command"] == ["date"]
    header = kubectl("get", "cronjobs", "-n", ns).stdout.splitlines()[0].split()
    assert header[:2] == ["NAME", "SCHEDULE"]
    assert "robot" in kubectl("get", "sa", "-n", ns, "-o", "name").stdout
    role = json.loads(kubectl("get", "role", "reader", "-n", ns, "-o", "json").stdout)
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                             {"apiGroups": ["apps"], "resources": ["deployments"],
                              "verbs": ["get", "list"]}]
    binding = kubectl("get", "rolebinding", "reader", "-n", ns, "-o", "wide").stdout
    assert binding.splitlines()[1].split()[1:2] == ["Role/reader"]
    assert f"{ns}/robot" in binding


def test_get_watch_streams_table_rows(kubectl, ns):
    kubectl("create", "configmap", "first", "-n", ns, "--from-literal=a=b")
    watcher = kubectl.popen("get", "configmaps", "-n", ns, "--watch", "--output-watch-events",
                            "--field-selector=metadata.name!=kube-root-ca.crt")
    watchdog = threading.Timer(60, watcher.kill)  # a missing event must fail, not hang
    watchdog.start()
    try:
        header = watcher.stdout.readline().split()
        assert header == ["EVENT", "NAME", "DATA", "AGE"]
        first = watcher.stdout.readline().split()
        assert first[:3] == ["ADDED", "first", "1"]
        # the watch is established once the initial list has been printed
        kubectl("create", "configmap", "second", "-n", ns, "--from-literal=a=b",
                "--from-literal=c=d")
        second = watcher.stdout.readline().split()
        assert second[:3] == ["ADDED", "second", "2"]
        assert second[3].endswith("s")  # an age, never "<invalid>"
        kubectl("delete", "configmap", "first", "-n", ns, "--wait=false")
        assert watcher.stdout.readline().split()[:2] == ["DELETED", "first"]
    finally:
        watchdog.cancel()
        watcher.kill()
        watcher.communicate()


def test_strict_field_validation_of_custom_resources(kubectl, ns):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "strictthings.kubectl.fleetdr.test"},
        "spec": {"group": "kubectl.fleetdr.test", "scope": "Namespaced",
                 "names": {"plural": "strictthings", "singular": "strictthing",
                           "kind": "StrictThing"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                   "spec": {"type": "object",
                                            "properties": {"size": {"type": "integer"}}}}}}}]}}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd))
    try:
        kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}",
                "--timeout=30s")
        thing = {"apiVersion": "kubectl.fleetdr.test/v1", "kind": "StrictThing",
                 "metadata": {"name": "t1", "namespace": ns}, "spec": {"size": 1, "sise": 2}}
        # kubectl's default --validate=strict leaves the check to the server
        refused = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(thing), check=False)
        assert refused.returncode != 0 and 'unknown field "spec.sise"' in refused.stderr
        kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(thing))
        stored = json.loads(kubectl("get", "strictthing", "t1", "-n", ns, "-o", "json").stdout)
        assert stored["spec"] == {"size": 1}  # pruned
    finally:
        kubectl("delete", "crd", crd["metadata"]["name"], "--wait=true")
