"""Persistent volumes in the lab: dynamic provisioning of class `standard`, static and pre-bound
binding (how Velero restores volumes), reclaim policies and the protection finalizers."""
from __future__ import annotations

from helpers import gone, pvc, unique, wait_for


def _bound(apis, ns, name):
    return wait_for(lambda: (lambda c: c.status.phase == "Bound" and c)(
        apis.core.read_namespaced_persistent_volume_claim(name, ns)), f"PVC {name} Bound")


def _static_pv(lab, name, policy="Retain", claim_ref=None, storage_class="manual"):
    path = lab.dir / "volumes" / "c1" / name
    path.mkdir(parents=True, exist_ok=True)
    spec = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": policy, "storageClassName": storage_class,
            "hostPath": {"path": str(path)}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": spec}, path


def test_default_class_claim_is_provisioned_and_bound(lab, apis, ns):
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("data", size="2Gi"))
    claim = _bound(apis, ns, "data")
    assert claim.spec.storage_class_name == "standard"
    assert claim.spec.volume_name == f"pvc-{claim.metadata.uid}"
    assert claim.status.capacity == {"storage": "2Gi"}
    assert claim.status.access_modes == ["ReadWriteOnce"]
    ann = claim.metadata.annotations
    assert ann["pv.kubernetes.io/bind-completed"] == "yes"
    assert ann["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert ann["volume.kubernetes.io/storage-provisioner"] == "fleetdr.lab/hostpath"
    assert "kubernetes.io/pvc-protection" in claim.metadata.finalizers

    pv = apis.core.read_persistent_volume(claim.spec.volume_name)
    assert pv.status.phase == "Bound"
    assert pv.spec.claim_ref.uid == claim.metadata.uid
    assert (pv.spec.claim_ref.namespace, pv.spec.claim_ref.name) == (ns, "data")
    assert pv.spec.capacity == {"storage": "2Gi"}
    assert pv.spec.storage_class_name == "standard"
    assert pv.spec.persistent_volume_reclaim_policy == "Delete"
    assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == "fleetdr.lab/hostpath"
    assert "kubernetes.io/pv-protection" in pv.metadata.finalizers
    data_dir = lab.dir / "volumes" / "c1" / pv.metadata.name
    assert pv.spec.host_path.path == str(data_dir)
    assert data_dir.is_dir()

    # Delete policy: claim deleted -> volume and its data deleted
    apis.core.delete_namespaced_persistent_volume_claim("data", ns)
    wait_for(lambda: gone(lambda: apis.core.read_persistent_volume(pv.metadata.name)), "PV gone")
    wait_for(lambda: not data_dir.exists(), "data dir removed")


def test_claim_of_unknown_class_stays_pending(apis, ns):
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("odd", storage_class="gold"))
    # a second claim that binds proves the controller has looked at the namespace
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("ok"))
    _bound(apis, ns, "ok")
    claim = apis.core.read_namespaced_persistent_volume_claim("odd", ns)
    assert claim.status.phase == "Pending" and not claim.spec.volume_name


def test_claim_naming_an_available_volume_binds_to_it_statically(lab, apis, ns):
    pv_name = unique("static")
    body, path = _static_pv(lab, pv_name)
    apis.core.create_persistent_volume(body)
    wait_for(lambda: apis.core.read_persistent_volume(pv_name).status.phase == "Available",
             "PV Available")
    apis.core.create_namespaced_persistent_volume_claim(
        ns, pvc("pinned", storage_class="manual", volume_name=pv_name))
    claim = _bound(apis, ns, "pinned")
    assert claim.spec.volume_name == pv_name
    assert claim.metadata.annotations["pv.kubernetes.io/bind-completed"] == "yes"
    assert "pv.kubernetes.io/bound-by-controller" not in claim.metadata.annotations
    pv = apis.core.read_persistent_volume(pv_name)
    assert pv.status.phase == "Bound" and pv.spec.claim_ref.uid == claim.metadata.uid

    # Retain: the claim goes, the volume is Released and keeps its data
    (path / "keep.txt").write_text("still here")
    apis.core.delete_namespaced_persistent_volume_claim("pinned", ns)
    wait_for(lambda: apis.core.read_persistent_volume(pv_name).status.phase == "Released",
             "PV Released")
    assert (path / "keep.txt").read_text() == "still here"
    apis.core.delete_persistent_volume(pv_name)
    wait_for(lambda: gone(lambda: apis.core.read_persistent_volume(pv_name)), "PV deleted")
    assert (path / "keep.txt").exists()  # hostPath data outlives a Retain volume


def test_volume_pre_bound_by_claim_ref_without_uid(lab, apis, ns):
    """The shape Velero restores a Retain volume in: claimRef namespace/name, no uid."""
    pv_name = unique("restored")
    body, _ = _static_pv(lab, pv_name, claim_ref={"namespace": ns, "name": "app-data"},
                         storage_class="standard")
    apis.core.create_persistent_volume(body)
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("app-data"))
    claim = _bound(apis, ns, "app-data")
    assert claim.spec.volume_name == pv_name  # not a freshly provisioned volume
    pv = apis.core.read_persistent_volume(pv_name)
    assert pv.spec.claim_ref.uid == claim.metadata.uid
    apis.core.delete_namespaced_persistent_volume_claim("app-data", ns)
    wait_for(lambda: apis.core.read_persistent_volume(pv_name).status.phase == "Released",
             "released")
    apis.core.delete_persistent_volume(pv_name)


def test_claim_in_use_is_protected_until_its_pod_is_gone(lab, apis, ns):
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("used"))
    claim = _bound(apis, ns, "used")
    apis.core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "used"}}]}})
    wait_for(lambda: apis.core.read_namespaced_pod("user", ns).status.phase == "Running", "pod up")
    apis.core.delete_namespaced_persistent_volume_claim("used", ns)
    held = apis.core.read_namespaced_persistent_volume_claim("used", ns)
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["kubernetes.io/pvc-protection"]
    # the bound volume is protected as well
    with_pv = apis.core.read_persistent_volume(claim.spec.volume_name)
    assert "kubernetes.io/pv-protection" in with_pv.metadata.finalizers
    apis.core.delete_namespaced_pod("user", ns)
    wait_for(lambda: gone(lambda: apis.core.read_namespaced_persistent_volume_claim("used", ns)),
             "claim removed after its pod")
    wait_for(lambda: gone(lambda: apis.core.read_persistent_volume(claim.spec.volume_name)),
             "volume reclaimed")


def test_deleting_a_bound_volume_waits_for_its_claim(apis, ns):
    apis.core.create_namespaced_persistent_volume_claim(ns, pvc("keep"))
    claim = _bound(apis, ns, "keep")
    apis.core.delete_persistent_volume(claim.spec.volume_name)
    pv = apis.core.read_persistent_volume(claim.spec.volume_name)
    assert pv.metadata.deletion_timestamp is not None
    assert pv.status.phase == "Bound"
    assert apis.core.read_namespaced_persistent_volume_claim("keep", ns).status.phase == "Bound"
    apis.core.delete_namespaced_persistent_volume_claim("keep", ns)
    wait_for(lambda: gone(lambda: apis.core.read_persistent_volume(claim.spec.volume_name)),
             "volume gone with its claim")
