"""Per-cluster Rook options from inventory variables, the verdict of a cluster, and the release manifests."""
import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import fleet, manifests

OPERATOR = """apiVersion: v1
kind: ConfigMap
metadata:
  name: rook-ceph-operator-config
  namespace: rook-ceph # namespace:operator
---
apiVersion: csi.ceph.io/v1
kind: Driver
metadata:
  name: rook-ceph.rbd.csi.ceph.com # csi-provisioner-name
  namespace: rook-ceph # namespace:operator
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: rook-ceph-operator
  namespace: rook-ceph # namespace:operator
spec:
  template:
    spec:
      containers:
        - name: rook-ceph-operator
          image: docker.io/rook/ceph:v1.20.6
"""


def test_host_options_are_validated_and_named_by_host():
    params = fleet.cluster_params("c1", {"rook_ceph_cluster": {"monitor": {"count": 1}, "manager": {"count": 1}}})
    assert params["monitor"]["count"] == 1 and params["namespace"] == "rook-ceph" and params["health_ok"] == ["HEALTH_OK", "HEALTH_WARN"]
    with pytest.raises(ValidationError) as caught:
        fleet.cluster_params("c2", {"rook_ceph_cluster": {"monitor": {"count": 2}}})
    assert caught.value.option == "rook_ceph_cluster.monitor.count"
    assert "of c2" in caught.value.msg and "odd" in caught.value.msg
    with pytest.raises(ValidationError) as caught:
        fleet.cluster_params("c3", {"rook_ceph_cluster": {"monitr": {"count": 3}}})
    assert "monitr" in caught.value.msg and "of c3" in caught.value.msg
    with pytest.raises(ValidationError) as caught:
        fleet.cluster_params("c4", {"rook_ceph_health_ok": ["HEALTH_ERR"]})
    assert caught.value.option == "rook_ceph_health_ok"


def picture(phase="Ready", state="Created", message="Cluster created successfully", health="HEALTH_OK", checks=None, installed=True):
    return {"operator": {"installed": installed, "version": "v1.20.6"},
            "cluster": {"name": "rook-ceph", "phase": phase, "state": state, "message": message, "health": health,
                        "health_checks": checks or {}, "capacity": None, "ceph_version": "20.2.4-0"},
            "daemons": {"mon": {"wanted": 3, "ready": 3, "nodes": ["n1", "n2", "n3"]}, "mgr": {"wanted": 2, "ready": 1, "nodes": ["n1"]}},
            "block_pools": [], "filesystems": [], "object_stores": [], "storage_classes": [], "bucket_claims": [], "volumes": []}


PARAMS = {"namespace": "rook-ceph", "name": "rook-ceph", "health_ok": ["HEALTH_OK", "HEALTH_WARN"]}


def test_health_err_is_never_succeeded_and_names_the_checks():
    out = fleet.entry(picture(health="HEALTH_ERR", checks={"OSD_DOWN": "2 osds down"}), PARAMS)
    assert out["verdict"] == "failed"
    assert "HEALTH_ERR" in out["reason"] and "OSD_DOWN: 2 osds down" in out["reason"]
    assert "OSD_DOWN: 2 osds down" in out["warnings"]


def test_rooks_error_state_is_failed_with_rooks_message():
    out = fleet.entry(picture(phase="Progressing", state="Error", message="failed to perform validation before cluster creation: "
                              "cannot start 3 mons on 2 node(s) when allowMultiplePerNode is false", health=None), PARAMS)
    assert out["verdict"] == "failed" and out["reason"].startswith("Rook reports: failed to perform validation")


def test_healthy_cluster_succeeds_and_reports_daemons_short():
    out = fleet.entry(picture(health="HEALTH_WARN"), PARAMS)
    assert out["verdict"] == "succeeded" and out["phase"] == "Ready"
    assert "mgrs ready 1 of 2" in out["warnings"]
    assert out["details"]["daemons"]["mon"]["ready"] == 3


def test_no_operator_is_failed():
    out = fleet.entry(dict(picture(), operator={"installed": False}), PARAMS)
    assert out["verdict"] == "failed" and "not installed" in out["reason"]


def test_manifests_read_in_order_with_namespaces_rewritten_on_rooks_markers(tmp_path):
    (tmp_path / "crds.yaml").write_text("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: cephclusters.ceph.rook.io\n")
    (tmp_path / "common.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: rook-ceph # namespace:cluster\n")
    (tmp_path / "operator.yaml").write_text(OPERATOR)
    objs = manifests.load(str(tmp_path), "v1.20.6", "rook-system", "storage")
    assert [o["kind"] for o in objs] == ["CustomResourceDefinition", "Namespace", "ConfigMap", "Driver", "Deployment"]
    assert objs[1]["metadata"]["name"] == "storage"
    assert objs[2]["metadata"]["namespace"] == "rook-system"
    assert objs[3]["metadata"]["name"] == "rook-system.rbd.csi.ceph.com"
    assert manifests.operator_image(objs) == "docker.io/rook/ceph:v1.20.6"
    default = manifests.load(str(tmp_path), "v1.20.6")
    assert default[1]["metadata"]["name"] == "rook-ceph"


def test_manifests_without_the_operator_are_refused(tmp_path):
    (tmp_path / "crds.yaml").write_text("{}\n")
    (tmp_path / "common.yaml").write_text("{}\n")
    (tmp_path / "operator.yaml").write_text("{}\n")
    with pytest.raises(ValidationError) as caught:
        manifests.load(str(tmp_path), "v1.20.6")
    assert caught.value.option == "rook_ceph_manifests_src"
    with pytest.raises(ValidationError):
        manifests.load(str(tmp_path / "nope"), "v1.20.6")
