# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role fleetdr.kube.rook_ceph used per host in a user's own play (hosts = clusters), against a lab of
2 clusters (3 nodes, one raw device each): c1 through the role, c2 through the fleet playbook
fleetdr.kube.storage with the same variables. Both give the same objects; the role's second run
changes nothing; its teardown is refused while a Rook volume exists and done with destroy_data."""
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner, api_get as _get, recap  # noqa: E402

SETTINGS = {"rook_ceph_cluster": {"monitor": {"count": 3, "labels": {"team": "storage"}}, "manager": {"count": 2}}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("role-rook-lab"), clusters=2, nodes=3, extra=("--devices", "1"))
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def play(lab, collections, tmp_path_factory):
    work = tmp_path_factory.mktemp("role-rook-work")
    runner = PlaybookRunner(lab, collections, work)
    manifests = lab.dir / "rook-manifests"
    lab.cli("rook", "manifests", "--out", str(manifests))
    runner.settings = work / "settings.yml"
    runner.settings.write_text(yaml.safe_dump(dict(SETTINGS, rook_ceph_manifests_src=str(manifests))))
    runner.role_play = work / "rook.yml"
    runner.role_play.write_text(textwrap.dedent("""\
        - name: Rook-Ceph, one cluster per host
          hosts: fleet
          gather_facts: false
          roles:
            - role: fleetdr.kube.rook_ceph
        """))
    return runner


def _shape(obj):
    """What the collection decides of an object: its spec, labels and annotations (not its status or identity)."""
    meta = obj["metadata"]
    return {"labels": meta.get("labels"), "annotations": meta.get("annotations"), "spec": obj.get("spec")}


CLUSTER = "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephclusters/rook-ceph"


def test_role_per_host_and_fleet_playbook_give_the_same_objects(lab, play):
    proc = play(str(play.role_play), "--limit", "c1", "-e", "@%s" % play.settings, check_rc=0)
    assert recap(proc)["c1"]["failed"] == 0 and recap(proc)["c1"]["changed"] > 0
    play("storage", "--limit", "c2", "-e", "@%s" % play.settings, check_rc=0)

    by_role, by_fleet = _get(lab, "c1", CLUSTER), _get(lab, "c2", CLUSTER)
    assert by_role["status"]["phase"] == "Ready" and by_role["status"]["ceph"]["health"] == "HEALTH_OK"
    assert by_role["spec"]["mon"]["count"] == 3 and by_role["spec"]["mgr"]["count"] == 2
    assert by_role["spec"]["labels"]["mon"] == {"team": "storage"}
    assert _shape(by_role) == _shape(by_fleet)
    operator = "/apis/apps/v1/namespaces/rook-ceph/deployments/rook-ceph-operator"
    assert _shape(_get(lab, "c1", operator)) == _shape(_get(lab, "c2", operator))
    crds = dict((cluster, sorted(c["metadata"]["name"] for c in _get(lab, cluster, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
                                 if c["spec"]["group"].endswith("rook.io")))
                for cluster in ("c1", "c2"))
    assert crds["c1"] == crds["c2"] and "cephclusters.ceph.rook.io" in crds["c1"]


def test_role_second_run_changes_nothing(lab, play):
    before = _get(lab, "c1", CLUSTER)["metadata"]["resourceVersion"]
    proc = play(str(play.role_play), "--limit", "c1", "-e", "@%s" % play.settings, check_rc=0)
    assert recap(proc)["c1"]["changed"] == 0, proc.stdout[-3000:]
    assert _get(lab, "c1", CLUSTER)["metadata"]["resourceVersion"] == before


def test_role_teardown_refused_while_a_volume_exists_then_done_with_destroy_data(lab, play):
    pool = {"apiVersion": "ceph.rook.io/v1", "kind": "CephBlockPool", "metadata": {"name": "replicapool", "namespace": "rook-ceph"},
            "spec": {"replicated": {"size": 1}}}
    storage_class = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "rook-ceph-block"},
                     "provisioner": "rook-ceph.rbd.csi.ceph.com", "reclaimPolicy": "Delete",
                     "parameters": {"clusterID": "rook-ceph", "pool": "replicapool"}}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
             "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "rook-ceph-block",
                      "resources": {"requests": {"storage": "1Gi"}}}}
    manifest = lab.dir / "volume.yml"
    manifest.write_text(yaml.safe_dump_all([pool, storage_class, claim]))
    lab.kubectl("apply", "-f", str(manifest), context="c1")
    lab.kubectl("wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data", "-n", "default", "--timeout=60s", context="c1")

    proc = play(str(play.role_play), "--limit", "c1", "-e", "@%s" % play.settings, "-e", "rook_ceph_state=absent", check_rc=2)
    assert "CephBlockPool: [replicapool]" in proc.stdout, proc.stdout[-3000:]  # Rook's dependents, named
    assert _get(lab, "c1", CLUSTER)["metadata"].get("deletionTimestamp") is None  # refused: nothing deleted

    lab.kubectl("delete", "pvc/data", "-n", "default", "--wait=true", context="c1")
    lab.kubectl("wait", "--for=delete", "pv", "--all", "--timeout=60s", context="c1", check=False)  # none left is fine
    lab.kubectl("delete", "cephblockpool/replicapool", "-n", "rook-ceph", "--wait=true", "--timeout=60s", context="c1")
    play(str(play.role_play), "--limit", "c1", "-e", "@%s" % play.settings, "-e", "rook_ceph_state=absent",
         "-e", "rook_ceph_destroy_data=true", check_rc=0)
    assert _get(lab, "c1", CLUSTER) is None
    assert _get(lab, "c1", "/apis/apps/v1/namespaces/rook-ceph/deployments/rook-ceph-operator") is None
    assert _get(lab, "c2", CLUSTER) is not None  # the other cluster untouched
