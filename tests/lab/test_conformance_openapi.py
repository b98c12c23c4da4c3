"""The lab's OpenAPI documents as kubectl and clients use them (kube-openapi pkg/handler,
pkg/handler3; apiextensions-apiserver pkg/controller/openapi/builder): `kubectl explain` of
built-in and custom resources, kubectl's validation and its fallback to /openapi/v2 (protobuf),
the v3 index's content hashes with ETag caching; served versions a current server still converts
(autoscaling/v1 HorizontalPodAutoscaler, pkg/apis/autoscaling/v1/conversion.go); and the
external-snapshotter CRDs (fixtures/external-snapshotter) installed and used with kubectl."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests
import yaml
from helpers import Kubectl, unique, wait_for
from kubernetes import client

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

CONTEXT = "c1"
FIXTURES = Path(__file__).parent / "fixtures" / "external-snapshotter"
PB_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


@pytest.fixture(scope="module")
def kubectl(lab, tmp_path_factory):
    return Kubectl(lab.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture
def ns(kubectl):
    name = unique("oa")
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def http(lab):
    """GET on c1's API with requests (to see status codes, headers and redirects as sent)."""
    info = lab.cluster_info(CONTEXT)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {info['token']}"
    base = f"https://127.0.0.1:{info['port']}"

    def get(path, **kw):
        kw.setdefault("allow_redirects", False)
        # verify per request: a session's own setting loses to REQUESTS_CA_BUNDLE
        return session.get(base + path, timeout=60, verify=str(lab.dir / "ca.crt"), **kw)
    yield get
    session.close()


def crd_manifest(group, plural, kind, spec_schema):
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object", "properties": {"spec": spec_schema}}}}]}}


@pytest.fixture(scope="module")
def gadgets(kubectl):
    """A CRD whose schema documents its fields."""
    group = "openapi.fleetdr.test"
    crd = crd_manifest(group, "gadgets", "Gadget", {
        "type": "object", "description": "GadgetSpec is what the user wants.",
        "properties": {"size": {"type": "integer", "description": "Size of the gadget in cubits."}}})
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd))
    kubectl("wait", "--for=condition=Established", f"crd/gadgets.{group}", "--timeout=30s")
    yield group
    kubectl("delete", "crd", f"gadgets.{group}", "--wait=true", check=False)


def deployment(ns, name="web", **spec_extra):
    spec = {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}
    spec.update(spec_extra)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def test_explain_builtin_and_custom_resource_fields(kubectl, gadgets):
    out = kubectl("explain", "deployment.spec.replicas").stdout
    assert "KIND:       Deployment" in out and "VERSION:    v1" in out
    assert "FIELD: replicas <integer>" in out
    assert "Number of desired pods." in out
    out = kubectl("explain", "pods.spec.containers.ports").stdout
    assert "containerPort\t<integer> -required-" in out
    out = kubectl("explain", "gadgets.spec.size").stdout
    assert f"GROUP:      {gadgets}" in out and "KIND:       Gadget" in out
    assert "FIELD: size <integer>" in out and "Size of the gadget in cubits." in out
    out = kubectl("explain", "gadgets").stdout
    assert "metadata\t<ObjectMeta>" in out and "spec\t<Object>" in out
    # the same from /openapi/v2 (kubectl decodes its protobuf form)
    out = kubectl("explain", "--output=plaintext-openapiv2", "deployment.spec.replicas").stdout
    assert "FIELD:    replicas <integer>" in out and "Number of desired pods." in out
    out = kubectl("explain", "--output=plaintext-openapiv2", "gadgets.spec.size").stdout
    assert "FIELD:    size <integer>" in out and "Size of the gadget in cubits." in out


def test_apply_of_an_unknown_kind_says_no_matches(kubectl, ns):
    thing = {"apiVersion": "nothere.fleetdr.test/v1", "kind": "Nothing",
             "metadata": {"name": "x", "namespace": ns}}
    for extra in ((), ("--validate=strict",), ("--server-side",)):
        proc = kubectl("apply", *extra, "-f", "-", stdin=yaml.safe_dump(thing), check=False)
        assert proc.returncode == 1, proc
        assert ('resource mapping not found for name: "x" namespace: "' + ns + '" from "STDIN": '
                'no matches for kind "Nothing" in version "nothere.fleetdr.test/v1"') in proc.stderr
        assert "ensure CRDs are installed first" in proc.stderr
        assert "openapi" not in proc.stderr and "error validating" not in proc.stderr


def test_strict_validation_and_client_side_apply(kubectl, ns, gadgets):
    bad = deployment(ns, "bad", replicaz=2)
    proc = kubectl("apply", "--validate=strict", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert proc.returncode == 1
    assert ('Error from server (BadRequest): error when creating "STDIN": Deployment in version '
            '"v1" cannot be handled as a Deployment: strict decoding error: unknown field '
            '"spec.replicaz"') in proc.stderr
    nested = deployment(ns, "bad2")
    nested["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "x"
    proc = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(nested), check=False)
    assert 'unknown field "spec.template.spec.containers[0].imagePolicy"' in proc.stderr
    # --validate=warn: stored without the field, the server warns; --validate=false: silently
    proc = kubectl("apply", "--validate=warn", "-f", "-", stdin=yaml.safe_dump(bad))
    assert "deployment.apps/bad created" in proc.stdout
    assert 'Warning: unknown field "spec.replicaz"' in proc.stderr
    bad["spec"]["replicas"] = 3
    proc = kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(bad))
    assert "deployment.apps/bad configured" in proc.stdout and "Warning" not in proc.stderr
    gadget = {"apiVersion": f"{gadgets}/v1", "kind": "Gadget",
              "metadata": {"name": "g", "namespace": ns}, "spec": {"size": 1, "colour": "red"}}
    proc = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(gadget), check=False)
    assert ('Gadget in version "v1" cannot be handled as a Gadget: strict decoding error: '
            'unknown field "spec.colour"') in proc.stderr
    proc = kubectl("apply", "--validate=warn", "-f", "-", stdin=yaml.safe_dump(gadget))
    assert 'Warning: unknown field "spec.colour"' in proc.stderr

    # client-side apply computes its patch from the published schema; a second apply is a no-op
    web = deployment(ns)
    assert "deployment.apps/web created" in kubectl("apply", "-f", "-",
                                                    stdin=yaml.safe_dump(web)).stdout
    assert "deployment.apps/web unchanged" in kubectl("apply", "-f", "-",
                                                      stdin=yaml.safe_dump(web)).stdout
    web["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    proc = kubectl("apply", "-v=8", "-f", "-", stdin=yaml.safe_dump(web))
    assert "deployment.apps/web configured" in proc.stdout
    assert "Content-Type: application/strategic-merge-patch+json" in proc.stderr
    assert "warning" not in proc.stderr.lower()
    assert "deployment.apps/web unchanged" in kubectl("apply", "-f", "-",
                                                      stdin=yaml.safe_dump(web)).stdout
    live = json.loads(kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    assert live["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    for _ in range(2):
        out = kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(web)).stdout
        assert "deployment.apps/web serverside-applied" in out


def test_openapi_v3_hashes_etags_and_v2_negotiation(http, kubectl, gadgets):
    index = http("/openapi/v3")
    assert index.status_code == 200 and index.headers["Etag"].startswith('"')
    paths = index.json()["paths"]
    assert {"api/v1", "apis/apps/v1", f"apis/{gadgets}/v1", "apis/autoscaling/v1"} <= set(paths)
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    digest = url.split("hash=", 1)[1]
    doc = http(url)
    assert doc.status_code == 200
    assert doc.headers["Etag"] == f'"{digest}"'
    assert doc.headers["Cache-Control"] == "public, immutable" and doc.headers["Expires"]
    schemas = doc.json()["components"]["schemas"]
    dep = schemas["io.k8s.api.apps.v1.Deployment"]
    assert dep["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "version": "v1", "kind": "Deployment"}]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert http(url, headers={"If-None-Match": doc.headers["Etag"]}).status_code == 304
    stale = http("/openapi/v3/apis/apps/v1?hash=0123")
    assert stale.status_code == 301 and stale.headers["Location"] == url
    plain = http("/openapi/v3/apis/apps/v1")
    assert plain.status_code == 200 and "Cache-Control" not in plain.headers or \
        plain.headers["Cache-Control"] != "public, immutable"

    cr = http(paths[f"apis/{gadgets}/v1"]["serverRelativeURL"]).json()["components"]["schemas"]
    name = ".".join(reversed(gadgets.split("."))) + ".v1.Gadget"
    assert cr[name]["x-kubernetes-group-version-kind"] == [
        {"group": gadgets, "version": "v1", "kind": "Gadget"}]
    assert cr[name]["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    assert cr[name + "List"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/" + name}

    v2 = http("/openapi/v2", headers={"Accept": "application/json"})
    assert v2.status_code == 200 and v2.headers["Content-Type"] == "application/json"
    assert "io.k8s.api.apps.v1.Deployment" in v2.json()["definitions"]
    pb = http("/openapi/v2", headers={"Accept": PB_V2})
    assert pb.status_code == 200
    assert pb.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    assert pb.headers["Etag"] == v2.headers["Etag"]
    assert http("/openapi/v2", headers={"Accept": "text/html"}).status_code == 406
    assert http("/openapi/v2", headers={"If-None-Match": v2.headers["Etag"],
                                        "Accept": "application/json"}).status_code == 304


def test_hpa_autoscaling_v1_and_v2_round_trip(lab, kubectl, ns):
    api = lab.api(CONTEXT)
    v1 = client.AutoscalingV1Api(api)
    v2 = client.AutoscalingV2Api(api)
    assert "autoscaling/v1" in kubectl("api-versions").stdout.split()
    v1.create_namespaced_horizontal_pod_autoscaler(ns, {
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60}})
    got = v2.read_namespaced_horizontal_pod_autoscaler("web", ns)
    assert [(m.type, m.resource.name, m.resource.target.type, m.resource.target.average_utilization)
            for m in got.spec.metrics] == [("Resource", "cpu", "Utilization", 60)]
    # a v2-only metric travels through v1 in the annotation, and survives a v1 read-modify-write
    v2.patch_namespaced_horizontal_pod_autoscaler("web", ns, {"spec": {"metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 60}}},
        {"type": "Pods", "pods": {"metric": {"name": "qps"},
                                  "target": {"type": "AverageValue", "averageValue": "10"}}}]}})
    old = v1.read_namespaced_horizontal_pod_autoscaler("web", ns)
    assert old.spec.target_cpu_utilization_percentage == 60
    assert json.loads(old.metadata.annotations["autoscaling.alpha.kubernetes.io/metrics"]) == [
        {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}}]
    old.spec.target_cpu_utilization_percentage = 75
    v1.replace_namespaced_horizontal_pod_autoscaler("web", ns, old)
    got = v2.read_namespaced_horizontal_pod_autoscaler("web", ns)
    metrics = api.sanitize_for_serialization(got.spec.metrics)
    assert {"type": "Pods", "pods": {"metric": {"name": "qps"},
                                     "target": {"type": "AverageValue", "averageValue": "10"}}} in metrics
    assert {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 75}}} in metrics
    assert "autoscaling.alpha.kubernetes.io/metrics" not in (got.metadata.annotations or {})
    # a merge patch written against v1
    v1.patch_namespaced_horizontal_pod_autoscaler("web", ns, {"spec": {"targetCPUUtilizationPercentage": 50}})
    got = api.sanitize_for_serialization(v2.read_namespaced_horizontal_pod_autoscaler("web", ns))
    assert {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 50}}} in got["spec"]["metrics"]
    listed = v1.list_namespaced_horizontal_pod_autoscaler(ns)
    assert [h.spec.target_cpu_utilization_percentage for h in listed.items] == [50]
    api.close()


def test_external_snapshotter_crds_install_and_work(kubectl, ns):
    names = [f"{p}.snapshot.storage.k8s.io"
             for p in ("volumesnapshotclasses", "volumesnapshotcontents", "volumesnapshots")]
    kubectl("create", "-f", str(FIXTURES))
    try:
        kubectl("wait", "--for=condition=Established", *[f"crd/{n}" for n in names],
                "--timeout=30s")
        out = kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([
            {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
             "metadata": {"name": f"{ns}-rbd"}, "driver": "rook-ceph.rbd.csi.ceph.com",
             "deletionPolicy": "Delete"},
            {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
             "metadata": {"name": "snap", "namespace": ns},
             "spec": {"volumeSnapshotClassName": f"{ns}-rbd",
                      "source": {"persistentVolumeClaimName": "data"}}}])).stdout
        assert "volumesnapshotclass.snapshot.storage.k8s.io" in out and "created" in out
        rows = kubectl("get", "volumesnapshot", "-n", ns).stdout.splitlines()
        assert rows[0].split() == ["NAME", "READYTOUSE", "SOURCEPVC", "SOURCESNAPSHOTCONTENT",
                                   "RESTORESIZE", "SNAPSHOTCLASS", "SNAPSHOTCONTENT",
                                   "CREATIONTIME", "AGE"]
        assert rows[1].split()[:3] == ["snap", "data", f"{ns}-rbd"]
        rows = kubectl("get", "volumesnapshotclass", f"{ns}-rbd").stdout.splitlines()
        assert rows[1].split()[:3] == [f"{ns}-rbd", "rook-ceph.rbd.csi.ceph.com", "Delete"]
        # CEL: exactly one source; the source is immutable
        both = {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": {"name": "both", "namespace": ns},
                "spec": {"source": {"persistentVolumeClaimName": "data",
                                    "volumeSnapshotContentName": "c"}}}
        proc = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(both), check=False)
        assert ('The VolumeSnapshot "both" is invalid: spec.source: Invalid value: "object": '
                'exactly one of volumeSnapshotContentName and persistentVolumeClaimName must '
                'be set') in proc.stderr
        proc = kubectl("patch", "volumesnapshot", "snap", "-n", ns, "--type=merge", "-p",
                       '{"spec":{"source":{"persistentVolumeClaimName":"other"}}}', check=False)
        assert "persistentVolumeClaimName is immutable" in proc.stderr
        out = kubectl("explain", "volumesnapshot.spec.source").stdout
        assert "KIND:       VolumeSnapshot" in out and "source specifies where a snapshot" in out
        wait_for(lambda: kubectl("get", "volumesnapshot", "snap", "-n", ns, "-o", "name").stdout.strip()
                 == "volumesnapshot.snapshot.storage.k8s.io/snap", "snapshot listed")
    finally:
        kubectl("delete", "--wait=true", *[f"crd/{n}" for n in names], check=False)
        kubectl("delete", "volumesnapshotclass", f"{ns}-rbd", check=False)


def test_crd_changes_are_republished(http, kubectl):
    group = "republish.fleetdr.test"
    crd = crd_manifest(group, "doohickeys", "Doohickey", {
        "type": "object", "properties": {"size": {"type": "integer"}}})
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd))
    try:
        kubectl("wait", "--for=condition=Established", f"crd/doohickeys.{group}", "--timeout=30s")
        before = http("/openapi/v3").json()["paths"]
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "properties"]["colour"] = {"type": "string", "description": "Colour of the doohickey."}
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(crd))
        after = http("/openapi/v3").json()["paths"]
        key = f"apis/{group}/v1"
        assert after[key] != before[key]  # a new hash: clients refetch
        assert after["apis/apps/v1"] == before["apis/apps/v1"]  # the others stay cached
        old = http(before[key]["serverRelativeURL"])
        assert old.status_code == 301 and old.headers["Location"] == after[key]["serverRelativeURL"]
        out = kubectl("explain", "doohickeys.spec.colour").stdout
        assert "Colour of the doohickey." in out
    finally:
        kubectl("delete", "crd", f"doohickeys.{group}", "--wait=true", check=False)
    assert f"apis/{group}/v1" not in http("/openapi/v3").json()["paths"]
