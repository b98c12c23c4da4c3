# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Volume data that really moved: the fleet playbooks against a private 6-cluster lab.

c1 is the source of every migration, c2..c6 the five targets; Velero with the node-agent on all
six. The lab serves them from two processes, as it serves a fleet of 200 clusters or more (c1, c3
and c5 in one, c2, c4 and c6 in the other), so a migration's data also crosses between serving
processes through the lab's shared S3 store. Tests run in file order:

1. migrate busybox (a file in its PVC, file-system backup) c1 -> c2..c6, three times: every target
   holds the file (sha256), every target's report entry says the PVC's data moved, the read-only
   location is gone afterwards and the source is unchanged. Velero's backup sync creates a Backup
   before its PodVolumeBackups; a restore started in between restores no data and still
   completes, which is what the collection must wait out.
2. a backup whose pod is not Running (Pending: no node matches its nodeSelector) with
   default_volumes_to_fs_backup: partially_failed with the PVC and the reason named; accepted
   with allow_missing_volume_data, the PVC still listed as not moved.
3. migrate into a target whose PVC already exists (existing_resource_policy=update): that target is
   partially_failed, its PVC named as already existing with its data kept, and the bytes on it
   are still its own.
4. status with max_backup_age_s after a migration that kept its read-only location: the backups
   synced from c1 are listed apart and do not make a target fresh.
"""

import concurrent.futures
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from helpers import VeleroInstall, wait_for  # noqa: E402
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner, namespace_state  # noqa: E402

TARGETS = ("c2", "c3", "c4", "c5", "c6")
FILE = "data/payload.txt"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("volume-lab"), clusters=6, processes=2)
    try:
        serving = dict((cluster, p["index"]) for p in handle.state["processes"] for cluster in p["clusters"])
        assert serving["c1"] == serving["c3"] != serving["c2"] == serving["c4"], serving
        install = VeleroInstall
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda c: install(handle, c, prefix="vol/" + c, version="v1.18.1", node_agent=True).install(wait=True),
                          handle.clusters))
        handle.cli("seed", "busybox", "--cluster", "c1")
        wait_for(lambda: _core(handle, "c1").read_namespaced_persistent_volume_claim("busybox-data", "busybox").status.phase == "Bound",
                 "busybox-data to be Bound")
        handle.cli("volume", "put", "--cluster", "c1", "-n", "busybox", "--pvc", "busybox-data", "--text", "sixteen bytes!!\n", FILE)
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def play(lab, collections, tmp_path_factory):
    return PlaybookRunner(lab, collections, tmp_path_factory.mktemp("volume-work"))


_APIS = {}


def _api(lab, cluster):
    if (str(lab.dir), cluster) not in _APIS:
        _APIS[(str(lab.dir), cluster)] = lab.api(cluster)
    return _APIS[(str(lab.dir), cluster)]


def _core(lab, cluster):
    from kubernetes import client

    return client.CoreV1Api(_api(lab, cluster))


def _custom(lab, cluster):
    from kubernetes import client

    return client.CustomObjectsApi(_api(lab, cluster))


def _sha(lab, cluster, namespace="busybox", pvc="busybox-data"):
    out = lab.cli("volume", "ls", "--cluster", cluster, "-n", namespace, "--pvc", pvc, "--sha256").stdout
    return dict((parts[2], parts[1]) for parts in (line.split() for line in out.splitlines()) if len(parts) == 3).get(FILE)


def _drop_namespace(lab, cluster, namespace):
    api = _core(lab, cluster)
    if any(ns.metadata.name == namespace for ns in api.list_namespace().items):
        api.delete_namespace(namespace)
        wait_for(lambda: all(ns.metadata.name != namespace for ns in api.list_namespace().items), namespace + " deleted on " + cluster)


def _velero_names(lab, cluster, plural):
    items = _custom(lab, cluster).list_namespaced_custom_object("velero.io", "v1", "velero", plural)["items"]
    return sorted(item["metadata"]["name"] for item in items)


def _by_name(report):
    return dict((c["name"], c) for c in report["clusters"])


def _volume(entry, namespace, pvc):
    found = [v for v in entry.get("volumes") or [] if (v["namespace"], v["pvc"]) == (namespace, pvc)]
    assert len(found) == 1, entry
    return found[0]


def test_migrate_moves_the_volume_data_to_every_target_every_time(lab, play):
    source_data = _sha(lab, "c1")
    assert source_data
    source_before = namespace_state(_core(lab, "c1"), "busybox")
    for run in range(3):
        for target in TARGETS:
            _drop_namespace(lab, target, "busybox")
        name = "mv%d" % run
        play("migrate", "-e", "migrate_name=" + name, "-e", "source_cluster=c1", "-e", "included_namespaces=busybox",
             "-e", "default_volumes_to_fs_backup=true", check_rc=0)
        directory, report = play.report("migrate", name)
        clusters = _by_name(report)
        assert report["verdict"] == "succeeded", report
        source_volume = _volume(clusters["c1"], "busybox", "busybox-data")
        assert source_volume["moved"] and source_volume["object"]["kind"] == "PodVolumeBackup" and source_volume["snapshot_id"]
        for target in TARGETS:
            volume = _volume(clusters[target], "busybox", "busybox-data")
            assert volume["moved"] and volume["object"]["kind"] == "PodVolumeRestore", (target, volume)
            assert volume["bytes"] == source_volume["bytes"] == 16
            assert _sha(lab, target) == source_data, "run %d: %s has no data" % (run, target)
            # the read-only location and the backup synced through it are gone; the Restore stays
            assert "fleetdr-from-c1" not in _velero_names(lab, target, "backupstoragelocations")
            assert _velero_names(lab, target, "backups") == []
            assert "%s-%s" % (name, target) in _velero_names(lab, target, "restores")
        table = (directory / "report.md").read_text()
        assert "## Volume data" in table and table.count("| busybox/busybox-data | moved |") == 1 + len(TARGETS)
    assert namespace_state(_core(lab, "c1"), "busybox") == source_before
    assert _sha(lab, "c1") == source_data


def _pending_app(lab, cluster, namespace):
    """A PVC mounted only by a pod that never runs (no node matches its nodeSelector)."""
    api = _core(lab, cluster)
    api.create_namespace({"metadata": {"name": namespace}})
    api.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "stuck-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}})
    api.create_namespaced_pod(namespace, {
        "metadata": {"name": "stuck"},
        "spec": {"nodeSelector": {"fleetdr.test/no-such-node": "true"},
                 "containers": [{"name": "main", "image": "busybox:1.36", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "stuck-data"}}]}})
    assert api.read_namespaced_pod("stuck", namespace).status.phase == "Pending"


def test_backup_of_a_pod_that_is_not_running_is_partially_failed_and_names_the_volume(lab, play):
    _pending_app(lab, "c1", "stuck")
    proc = play("backup", "-e", "backup_name=stuck1", "-e", "included_namespaces=stuck", "-e", "default_volumes_to_fs_backup=true",
                "--limit", "c1", check_rc=2)
    assert "partially_failed" in proc.stdout
    directory, report = play.report("backup", "stuck1")
    c1 = _by_name(report)["c1"]
    assert c1["verdict"] == "partially_failed" and c1["phase"] == "Completed"
    assert "stuck/stuck-data" in c1["reason"] and "not Running" in c1["reason"]
    volume = _volume(c1, "stuck", "stuck-data")
    assert volume["requested"] and not volume["moved"] and "pod stuck is not Running (phase Pending)" in volume["reason"]
    assert "NOT MOVED" in (directory / "report.html").read_text()
    assert "stuck/stuck-data" in (directory / "junit.xml").read_text()

    # Accepted on request: succeeded, and the volume is still named as not moved.
    play("backup", "-e", "backup_name=stuck2", "-e", "included_namespaces=stuck", "-e", "default_volumes_to_fs_backup=true",
         "-e", "allow_missing_volume_data=true", "--limit", "c1", check_rc=0)
    c1 = _by_name(play.report("backup", "stuck2")[1])["c1"]
    assert c1["verdict"] == "succeeded" and not _volume(c1, "stuck", "stuck-data")["moved"]


def test_migrate_into_an_existing_pvc_says_the_target_kept_its_data(lab, play):
    # c2 holds busybox from the first test; give its PVC different bytes.
    lab.cli("volume", "put", "--cluster", "c2", "-n", "busybox", "--pvc", "busybox-data", "--text", "c2 keeps this\n", FILE)
    own = _sha(lab, "c2")
    for target in TARGETS[1:]:
        _drop_namespace(lab, target, "busybox")
    play("migrate", "-e", "migrate_name=mvover", "-e", "source_cluster=c1", "-e", "included_namespaces=busybox",
         "-e", "default_volumes_to_fs_backup=true", "-e", "existing_resource_policy=update", check_rc=2)
    report = play.report("migrate", "mvover")[1]
    clusters = _by_name(report)
    c2 = clusters["c2"]
    assert c2["verdict"] == "partially_failed"
    assert c2["details"]["existing_pvcs"] == ["busybox/busybox-data"]
    assert any("busybox/busybox-data" in text and "kept their own data" in text for text in c2["warnings"])
    volume = _volume(c2, "busybox", "busybox-data")
    assert not volume["moved"] and "already existed" in volume["reason"] and "busybox/busybox-data" in c2["reason"]
    assert _sha(lab, "c2") == own != _sha(lab, "c1")
    for target in TARGETS[1:]:
        assert clusters[target]["verdict"] == "succeeded" and _volume(clusters[target], "busybox", "busybox-data")["moved"]
        assert _sha(lab, target) == _sha(lab, "c1")


def test_status_does_not_count_backups_synced_from_another_cluster(lab, play):
    for target in TARGETS:
        _drop_namespace(lab, target, "busybox")
    play("migrate", "-e", "migrate_name=mvkeep", "-e", "source_cluster=c1", "-e", "included_namespaces=busybox",
         "-e", "default_volumes_to_fs_backup=true", "-e", "keep_source_location=true", "--limit", "c1,c2", check_rc=0)
    assert "fleetdr-from-c1" in _velero_names(lab, "c2", "backupstoragelocations")
    synced = _velero_names(lab, "c2", "backups")
    assert "mvkeep-c1" in synced
    play("status", "-e", "max_backup_age_s=3600", "--limit", "c1,c2", check_rc=2)
    report = play.report("status", "status")[1]
    clusters = _by_name(report)
    assert clusters["c1"]["verdict"] == "succeeded"
    c2 = clusters["c2"]
    assert c2["verdict"] == "partially_failed" and "no Completed backup of this cluster" in c2["reason"]
    assert "mvkeep-c1" in [b["name"] for b in c2["details"]["synced_backups"]]
    assert all(b["name"] != "mvkeep-c1" for b in c2["details"]["backups"])


def test_a_drill_restores_the_newest_good_backup_aside_checks_it_and_leaves_nothing(lab, play):
    """playbook drill on c1: the fleet backup of busybox restored into busybox-drill, its workload up and its volume bytes
    equal to the backup's record, RTO and RPO reported, nothing left behind; keep leaves it for inspection; an existing
    scratch namespace fails the cluster before anything is written."""
    play("backup", "-e", "backup_name=drillsrc", "-e", "included_namespaces=busybox", "-e", "default_volumes_to_fs_backup=true",
         "--limit", "c1", check_rc=0)
    restores_before = _velero_names(lab, "c1", "restores")
    proc = play("drill", "-e", "drill_name=weekly", "-e", "backup_name=drillsrc", "--limit", "c1", check_rc=0)
    assert "c1 CheckingWorkloads" in proc.stdout  # progress lines
    c1 = _by_name(play.report("drill", "weekly")[1])["c1"]
    assert c1["verdict"] == "succeeded" and c1["phase"] == "Drilled", c1
    details = c1["details"]
    assert details["backup"] == "drillsrc-c1" and details["scratch_namespaces"] == ["busybox-drill"] and not details["kept"]
    assert details["rto_s"] > 0 and details["rpo_s"] >= 0
    assert details["volumes_checked"] == [{"pvc": "busybox-drill/busybox-data", "backed_up_bytes": 16, "restored_bytes": 16,
                                           "matches": True}]
    assert all(ns.metadata.name != "busybox-drill" for ns in _core(lab, "c1").list_namespace().items)
    assert _velero_names(lab, "c1", "restores") == restores_before
    assert _sha(lab, "c1") is not None  # the source namespace untouched

    play("drill", "-e", "drill_name=keep", "-e", "backup_name=drillsrc", "-e", "keep=true", "--limit", "c1", check_rc=0)
    assert _sha(lab, "c1", namespace="busybox-drill") == _sha(lab, "c1")
    proc = play("drill", "-e", "drill_name=again", "--limit", "c1", check_rc=2)
    c1 = _by_name(play.report("drill", "again")[1])["c1"]
    assert c1["verdict"] == "failed" and "scratch namespace busybox-drill already exists" in c1["reason"]
    assert _velero_names(lab, "c1", "restores") == sorted(restores_before + ["keep-c1"])
    _drop_namespace(lab, "c1", "busybox-drill")
