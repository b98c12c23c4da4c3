# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet playbook paths test_playbook_fleet.py does not cover, run for real against a private lab.

One 3-cluster lab for the module, Velero at three versions: c1 v1.18.1, c2 v1.18.0 (same minor
as c1: compatible for a migration), c3 v1.17.2 (other minor: incompatible). Tests run in file
order:

1. restore -e schedule_name=...: the schedule playbook creates a fleet schedule, the lab clock
   fires it four times (Completed, Completed, PartiallyFailed through the lab fault annotation
   fleetdr.lab/fail-backup, FailedValidation with the S3 credentials revoked); the restore must
   pick the newest *Completed* backup per cluster.
2. migrate c1 -> c2 (v1.18.0), c3 (v1.17.2): c3 fails its version pre-flight and gets nothing,
   c2 completes, the source is unchanged.
3. restore with per-cluster transforms from inventory host variables (a second inventory source
   gives c2 an image-registry and a storage-class map): c2's restored objects are rewritten, c1's
   are not.
4. fail_on any / all / never with one failing cluster (c3 without Velero) and with every
   cluster failing: exit status, recap and report verdicts.
5. on_timeout=cancel with a slow object store (fleetdr-lab s3 latency): a Backup still running at
   the end of its wait is left (Velero refuses to delete it) and the report says so; one queued
   behind it is cancelled through a DeleteBackupRequest.
"""

import concurrent.futures
import datetime
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from helpers import VeleroInstall, wait_for  # noqa: E402
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner, namespace_state, recap  # noqa: E402


VERSIONS = {"c1": "v1.18.1", "c2": "v1.18.0", "c3": "v1.17.2"}
SCHEDULE = "daily"  # fleet schedule name; its Schedule on cluster X is daily-X
SHOP = "shop"  # namespace on every cluster, backed up by the schedule
APP = "app"  # namespace on c1 only, migrated
TERMINAL = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("paths-lab"), clusters=3)
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda c: VeleroInstall(handle, c, prefix="paths/" + c, version=VERSIONS[c]).install(wait=True),
                          handle.clusters))
        for cluster in handle.clusters:  # the installer's image tag is what fleet_ops reads as the version
            deployment = _apps(handle, cluster).read_namespaced_deployment("velero", "velero")
            assert deployment.spec.template.spec.containers[0].image == "velero/velero:" + VERSIONS[cluster]
        for cluster in handle.clusters:
            _make_namespace(handle, cluster, SHOP, {"marker": {"gen": "0"}, "other": {"keep": "yes"}})
        _make_namespace(handle, "c1", APP, {"settings": {"color": "blue", "size": "3"}}, secret=True, service=True)
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def play(lab, collections, tmp_path_factory):
    return PlaybookRunner(lab, collections, tmp_path_factory.mktemp("paths-work"))


def out(proc):
    return "rc=%s\n%s\n%s" % (proc.returncode, proc.stdout[-8000:], proc.stderr[-3000:])


def by_name(report):
    return dict((c["name"], c) for c in report["clusters"])


_API_CLIENTS = {}


def _api(lab_handle, cluster):
    key = (str(lab_handle.dir), cluster)
    if key not in _API_CLIENTS:
        _API_CLIENTS[key] = lab_handle.api(cluster)
    return _API_CLIENTS[key]


def _core(lab_handle, cluster):
    from kubernetes import client

    return client.CoreV1Api(_api(lab_handle, cluster))


def _custom(lab_handle, cluster):
    from kubernetes import client

    return client.CustomObjectsApi(_api(lab_handle, cluster))


def _make_namespace(lab_handle, cluster, namespace, configmaps, secret=False, service=False):
    api = _core(lab_handle, cluster)
    api.create_namespace({"metadata": {"name": namespace}})
    for name, data in configmaps.items():
        api.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"app": namespace}}, "data": data})
    if secret:
        api.create_namespaced_secret(namespace, {"metadata": {"name": namespace + "-secret"}, "stringData": {"token": "not-a-real-one"}})
    if service:
        api.create_namespaced_service(namespace, {"metadata": {"name": namespace + "-svc"},
                                                  "spec": {"selector": {"app": namespace}, "ports": [{"port": 80}]}})


def _apps(lab_handle, cluster):
    from kubernetes import client

    return client.AppsV1Api(_api(lab_handle, cluster))


def _velero_list(lab_handle, cluster, plural, label_selector=None):
    kwargs = {"label_selector": label_selector} if label_selector else {}
    return _custom(lab_handle, cluster).list_namespaced_custom_object("velero.io", "v1", "velero", plural, **kwargs)["items"]


def _velero_get(lab_handle, cluster, plural, name):
    from kubernetes.client.rest import ApiException

    try:
        return _custom(lab_handle, cluster).get_namespaced_custom_object("velero.io", "v1", "velero", plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _schedule_backups(lab_handle, cluster):
    """name -> phase of the Backups the fleet schedule's Schedule made on that cluster."""
    items = _velero_list(lab_handle, cluster, "backups", "velero.io/schedule-name=%s-%s" % (SCHEDULE, cluster))
    return dict((b["metadata"]["name"], (b.get("status") or {}).get("phase", "")) for b in items)


def _fire_schedule(lab_handle):
    """Advance the lab clock one day; wait (bounded) for each cluster's new scheduled Backup to end.

    Returns cluster -> (backup name, phase). Exactly one new Backup per cluster is expected
    (the schedule is daily and the clock moves by one day)."""
    before = dict((c, set(_schedule_backups(lab_handle, c))) for c in lab_handle.clusters)
    lab_handle.cli("clock", "advance", "1d")
    fired = {}
    for cluster in lab_handle.clusters:
        def ended(cluster=cluster):
            new = dict((n, p) for n, p in _schedule_backups(lab_handle, cluster).items() if n not in before[cluster])
            return new if new and all(p in TERMINAL for p in new.values()) else None

        new = wait_for(ended, timeout=180, interval=0.3, what="a scheduled backup to end on %s" % cluster)
        assert len(new) == 1, "one advance of a day should fire the daily schedule once on %s: %s" % (cluster, new)
        fired[cluster] = next(iter(new.items()))
    return fired


def _daily_cron_far_from_now(lab_handle):
    """A daily cron 12 hours away from the lab clock's time of day: only the one-day advances
    fire it, never the wall time that passes during the test."""
    text = lab_handle.cli("clock", "show").stdout
    now = datetime.datetime.fromisoformat(re.search(r"lab clock (\S+)", text).group(1))
    return "0 %d * * *" % ((now.hour + 12) % 24)


def _advance_until_locations(lab_handle, phase):
    """Move the lab clock past the locations' validation period; wait until every default location is `phase`."""
    lab_handle.cli("clock", "advance", "2m")
    for cluster in lab_handle.clusters:
        wait_for(lambda cluster=cluster: ((_velero_get(lab_handle, cluster, "backupstoragelocations", "default") or {})
                                          .get("status") or {}).get("phase") == phase,
                 timeout=120, interval=0.3, what="location default %s on %s" % (phase, cluster))


def _set_marker(lab_handle, gen, poison=None):
    for cluster in lab_handle.clusters:
        body = {"data": {"gen": gen}}
        if poison is not None:
            body["metadata"] = {"annotations": {"fleetdr.lab/fail-backup": poison}}
        _core(lab_handle, cluster).patch_namespaced_config_map("marker", SHOP, body)


# --------------------------------------------------------------------------------------------
# 1. restore from a fleet schedule's newest Completed backup


def test_restore_from_schedule_picks_the_newest_completed_backup(lab, play):
    proc = play("schedule", "-e", "schedule_name=%s" % SCHEDULE, "-e", "schedule='%s'" % _daily_cron_far_from_now(lab),
                "-e", "included_namespaces=%s" % SHOP)
    assert proc.returncode == 0, out(proc)
    for cluster in lab.clusters:
        schedule = _velero_get(lab, cluster, "schedules", "%s-%s" % (SCHEDULE, cluster))
        assert schedule is not None and schedule["spec"]["template"]["includedNamespaces"] == [SHOP]

    # Day 1: gen 1, Completed. Day 2: gen 2, Completed (the one to restore). Day 3: gen 3 but
    # the marker ConfigMap carries the lab's fault annotation: PartiallyFailed (newest, skipped).
    _set_marker(lab, "1")
    day1 = _fire_schedule(lab)
    _set_marker(lab, "2")
    day2 = _fire_schedule(lab)
    _set_marker(lab, "3", poison="true")
    day3 = _fire_schedule(lab)
    # Day 4: the S3 credentials are revoked, the locations go Unavailable and the scheduled
    # Backup ends FailedValidation (never started). Then the credentials come back.
    lab.cli("s3", "revoke")
    try:
        _advance_until_locations(lab, "Unavailable")
        day4 = _fire_schedule(lab)
    finally:
        lab.cli("s3", "restore")
    _advance_until_locations(lab, "Available")
    for cluster in lab.clusters:
        assert day1[cluster][1] == "Completed", day1
        assert day2[cluster][1] == "Completed", day2
        assert day3[cluster][1] == "PartiallyFailed", day3
        assert day4[cluster][1] == "FailedValidation", day4
        starts = [(_velero_get(lab, cluster, "backups", day[cluster][0]) or {})["status"]["startTimestamp"]
                  for day in (day1, day2, day3)]
        assert starts == sorted(starts) and len(set(starts)) == 3, starts  # day3 started after day2
        # Scheduled backups are named <schedule>-<lab time>: day4 is the newest of all.
        assert sorted(day[cluster][0] for day in (day1, day2, day3, day4)) == [day[cluster][0] for day in (day1, day2, day3, day4)]

    # Lose the object everywhere, then restore from the schedule.
    for cluster in lab.clusters:
        _core(lab, cluster).delete_namespaced_config_map("marker", SHOP)
    proc = play("restore", "-e", "schedule_name=%s" % SCHEDULE, "-e", "restore_name=from-daily",
                "-e", "included_namespaces=%s" % SHOP)
    assert proc.returncode == 0, out(proc)
    assert all(counts["failed"] == 0 for counts in recap(proc).values()), out(proc)

    report = play.report("restore", "from-daily")[1]
    assert report["verdict"] == "succeeded"
    clusters = by_name(report)
    assert sorted(clusters) == ["c1", "c2", "c3"]
    for cluster in lab.clusters:
        restore = _velero_get(lab, cluster, "restores", "from-daily-" + cluster)
        assert restore is not None, "no Restore from-daily-%s" % cluster
        assert restore["spec"]["backupName"] == day2[cluster][0], (cluster, restore["spec"]["backupName"], day1, day2, day3)
        assert restore["status"]["phase"] == "Completed"
        assert clusters[cluster]["verdict"] == "succeeded"
        assert clusters[cluster]["object"]["name"] == "from-daily-" + cluster
        marker = _core(lab, cluster).read_namespaced_config_map("marker", SHOP)
        assert marker.data == {"gen": "2"}  # the content of day 2's backup, not day 1's or day 3's


def test_restore_from_schedule_without_a_completed_backup_fails_that_cluster(lab, play):
    # A (paused) schedule that never fired has no Backup at all: the cluster fails with the
    # reason and nothing is restored (fail_on=never: the run exits 0 and only the report tells).
    proc = play("schedule", "-e", "schedule_name=never-fired", "-e", "schedule='0 3 * * *'", "-e", "paused=true",
                "-e", "included_namespaces=%s" % SHOP, "--limit", "c1")
    assert proc.returncode == 0, out(proc)
    proc = play("restore", "-e", "schedule_name=never-fired", "-e", "restore_name=from-never",
                "-e", "fail_on=never", "--limit", "c1")
    assert proc.returncode == 0, out(proc)
    entry = by_name(play.report("restore", "from-never")[1])["c1"]
    assert entry["verdict"] == "failed" and "never-fired-c1" in entry["reason"], entry
    assert _velero_get(lab, "c1", "restores", "from-never-c1") is None


# --------------------------------------------------------------------------------------------
# 2. migrate: the target's Velero version must match the source's minor version


def test_migrate_fails_only_the_target_with_another_velero_minor(lab, play):
    source_before = namespace_state(_core(lab, "c1"), APP, kinds=("cm", "secret", "svc", "sa"))
    assert ("cm", "settings") in source_before
    proc = play("migrate", "-e", "migrate_name=mvv", "-e", "source_cluster=c1", "-e", "included_namespaces=%s" % APP)
    assert proc.returncode != 0, out(proc)  # fail_on defaults to any
    counts = recap(proc)
    assert counts["c1"]["failed"] == 0 and counts["c2"]["failed"] == 0 and counts["c3"]["failed"] == 1, out(proc)

    report = play.report("migrate", "mvv")[1]
    clusters = by_name(report)
    assert report["verdict"] == "partially_failed"
    assert clusters["c1"]["verdict"] == "succeeded" and clusters["c1"]["phase"] == "Completed"

    # c2 runs v1.18.0 against the source's v1.18.1: same minor, compatible, migrated.
    c2 = clusters["c2"]
    assert c2["verdict"] == "succeeded" and c2["phase"] == "Completed", c2
    assert c2["object"] == {"kind": "Restore", "namespace": "velero", "name": "mvv-c2"}
    restored = _core(lab, "c2").read_namespaced_config_map("settings", APP)
    assert restored.data == {"color": "blue", "size": "3"}

    # c3 runs v1.17.2: Failed in its pre-flight, with both versions in the reason, and untouched.
    c3 = clusters["c3"]
    assert c3["verdict"] == "failed" and c3["phase"] == "Failed", c3
    assert "1.17" in c3["reason"] and "1.18" in c3["reason"] and "version" in c3["reason"].lower(), c3["reason"]
    assert "RestoreInProgress" not in [step["phase"] for step in c3["timeline"]]
    assert _velero_get(lab, "c3", "backupstoragelocations", "fleetdr-from-c1") is None
    assert _velero_get(lab, "c3", "restores", "mvv-c3") is None
    assert APP not in [ns.metadata.name for ns in _core(lab, "c3").list_namespace().items]

    # The source was only read: one Backup there, and every object in the namespace unchanged.
    backup = _velero_get(lab, "c1", "backups", "mvv-c1")
    assert backup is not None and backup["status"]["phase"] == "Completed"
    assert namespace_state(_core(lab, "c1"), APP, kinds=("cm", "secret", "svc", "sa")) == source_before


# --------------------------------------------------------------------------------------------
# 3. per-cluster transforms from inventory host variables


def _make_web(lab_handle, cluster):
    _core(lab_handle, cluster).create_namespace({"metadata": {"name": "web"}})
    _core(lab_handle, cluster).create_namespaced_persistent_volume_claim("web", {
        "metadata": {"name": "web-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}})
    _apps(lab_handle, cluster).create_namespaced_deployment("web", {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "docker.io/library/nginx:1.27"}]}}}})


def test_restore_applies_each_clusters_transforms_from_inventory_vars(lab, play):
    for cluster in ("c1", "c2"):
        _make_web(lab, cluster)
    play("backup", "-e", "backup_name=xf", "-e", "included_namespaces=web", "--limit", "c1,c2", check_rc=0)
    for cluster in ("c1", "c2"):
        _core(lab, cluster).delete_namespace("web")
    for cluster in ("c1", "c2"):
        wait_for(lambda cluster=cluster: not _core(lab, cluster).list_namespace(field_selector="metadata.name=web").items,
                 timeout=120, what="namespace web to be deleted on " + cluster)

    # Velero's change-storage-class action fails an item whose new class does not exist.
    from kubernetes import client as k8s_client

    k8s_client.StorageV1Api(_api(lab, "c2")).create_storage_class({
        "metadata": {"name": "fast"}, "provisioner": "fleetdr.lab/hostpath", "volumeBindingMode": "WaitForFirstConsumer"})

    # Host variables of c2 only, from a second inventory source merged with the lab's.
    extra_inventory = play.work / "transforms.yml"
    extra_inventory.write_text(json.dumps({"all": {"hosts": {"c2": {
        "fleetdr_image_registry_map": {"docker.io": "mirror.example.com"},
        "fleetdr_storage_class_map": {"standard": "fast"}}}}}))
    proc = play("restore", "-i", str(extra_inventory), "-e", "backup_name=xf", "-e", "restore_name=xf-back",
                "--limit", "c1,c2", check_rc=0)
    report = play.report("restore", "xf-back")[1]
    assert [c["verdict"] for c in report["clusters"]] == ["succeeded", "succeeded"], out(proc)

    def image(cluster):
        return _apps(lab, cluster).read_namespaced_deployment("web", "web").spec.template.spec.containers[0].image

    def storage_class(cluster):
        return _core(lab, cluster).read_namespaced_persistent_volume_claim("web-data", "web").spec.storage_class_name

    assert image("c2") == "mirror.example.com/library/nginx:1.27" and storage_class("c2") == "fast"
    assert image("c1") == "docker.io/library/nginx:1.27" and storage_class("c1") == "standard"
    # the mappings travel as Velero's plugin ConfigMaps, on c2 only
    assert _core(lab, "c1").list_namespaced_config_map("velero", label_selector="velero.io/change-image-name=RestoreItemAction").items == []
    maps = _core(lab, "c2").list_namespaced_config_map("velero", label_selector="velero.io/change-image-name=RestoreItemAction").items
    assert len(maps) == 1 and "mirror.example.com" in "".join(maps[0].data.values())


# --------------------------------------------------------------------------------------------
# 4. fail_on decides the exit status; the report tells the same truth every time


def _backup(play, name, fail_on, *extra):
    proc = play("backup", "-e", "backup_name=%s" % name, "-e", "included_namespaces=%s" % SHOP, "-e", "fail_on=%s" % fail_on, *extra)
    return proc, by_name(play.report("backup", name)[1])


def test_fail_on_with_one_failing_cluster_and_with_all_failing(lab, play):
    # c3 loses its Velero server; c1 and c2 keep working.
    _apps(lab, "c3").delete_namespaced_deployment("velero", "velero")

    expected_rc_zero = {"any": False, "all": True, "never": True}
    for fail_on, rc_zero in expected_rc_zero.items():
        name = "fo-%s" % fail_on
        proc, clusters = _backup(play, name, fail_on)
        assert (proc.returncode == 0) is rc_zero, "fail_on=%s\n%s" % (fail_on, out(proc))
        assert clusters["c1"]["verdict"] == "succeeded" and clusters["c2"]["verdict"] == "succeeded", clusters
        assert clusters["c3"]["verdict"] == "failed" and "Velero is not installed" in clusters["c3"]["reason"], clusters["c3"]
        assert play.report("backup", name)[1]["verdict"] == "partially_failed"
        counts = recap(proc)
        assert counts["c1"]["failed"] == 0 and counts["c2"]["failed"] == 0, out(proc)
        assert counts["c3"]["failed"] == (0 if rc_zero else 1), out(proc)
        for cluster in ("c1", "c2"):
            backup = _velero_get(lab, cluster, "backups", "%s-%s" % (name, cluster))
            assert backup is not None and backup["status"]["phase"] == "Completed"

    # Every cluster fails (c3 has no Velero, c1 and c2 are asked for a location they lack).
    proc, clusters = _backup(play, "fo-all-failed", "all", "-e", "storage_location=nowhere")
    assert proc.returncode != 0, out(proc)
    assert play.report("backup", "fo-all-failed")[1]["verdict"] == "failed"
    assert all(entry["verdict"] == "failed" for entry in clusters.values()) and len(clusters) == 3, clusters
    assert "nowhere" in clusters["c1"]["reason"] and "nowhere" in clusters["c2"]["reason"]
    assert all(recap(proc)[cluster]["failed"] == 1 for cluster in clusters), out(proc)  # the localhost selection check passed
    for cluster in ("c1", "c2"):
        assert _velero_get(lab, cluster, "backups", "fo-all-failed-" + cluster) is None

    # The same all-failed run with fail_on=never still exits 0; the report still says failed.
    proc, clusters = _backup(play, "fo-never-all-failed", "never", "-e", "storage_location=nowhere")
    assert proc.returncode == 0, out(proc)
    assert play.report("backup", "fo-never-all-failed")[1]["verdict"] == "failed"
    assert all(entry["verdict"] == "failed" for entry in clusters.values())


def _deletion_requests(lab_handle, backup):
    return [r for r in _velero_list(lab_handle, "c1", "deletebackuprequests") if r["spec"].get("backupName") == backup]


def test_on_timeout_cancel_leaves_a_running_backup_and_cancels_a_queued_one(lab, play):
    # A slow object store (each S3 request waits 1.5 s) keeps c1's Backup InProgress past a 2 s wait.
    # Velero refuses a DeleteBackupRequest for a running Backup: the report must not claim a cancel.
    args = ("--limit", "c1", "-e", "wait_timeout=2", "-e", "on_timeout=cancel")
    lab.cli("s3", "latency", "1500")
    try:
        _proc, clusters = _backup(play, "slow", "never", *args)
        entry = clusters["c1"]
        assert entry["verdict"] == "failed" and entry["phase"] == "InProgress", entry
        assert "not cancelled: Velero refuses to delete a Backup while it runs" in entry["reason"], entry
        assert _deletion_requests(lab, "slow-c1") == []
        # A second backup of the same namespace waits in Velero's queue behind the running one: it
        # has not started, so on_timeout=cancel removes it through a DeleteBackupRequest, and the run
        # reports it cancelled once Velero has removed it. (It names its location: Velero refuses a
        # DeleteBackupRequest for a queued Backup without one.)
        _proc, clusters = _backup(play, "queued", "never", *args)
        entry = clusters["c1"]
        assert entry["verdict"] == "failed" and entry["phase"] == "Queued", entry
        assert "cancelled before it started (on_timeout=cancel: Velero removed it through a DeleteBackupRequest)" in entry["reason"], entry
        assert _velero_get(lab, "c1", "backups", "queued-c1") is None
        assert _deletion_requests(lab, "queued-c1") == []  # Velero drops a request that succeeded
    finally:
        lab.cli("s3", "latency", "0")
    # The running one was left alone and finishes.
    wait_for(lambda: ((_velero_get(lab, "c1", "backups", "slow-c1") or {}).get("status") or {}).get("phase") == "Completed",
             "slow-c1 Completed", timeout=120)
