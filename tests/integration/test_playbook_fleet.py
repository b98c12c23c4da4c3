# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet playbooks (fleetdr.kube.install/backup/restore/migrate/schedule/status) against a lab.

One private 3-cluster lab for the module (the playbooks own namespace `velero` everywhere);
tests run in file order and build on each other: bad input -> install -> backup/restore round
trip (PVC data by sha256) -> migrate c1 -> c2,c3 with the source unchanged -> a down target
and a target without Velero fail alone -> schedule idempotence -> status -> secret scan of
everything the runs printed or wrote.
"""

import base64
import concurrent.futures
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from helpers import VeleroInstall  # noqa: E402
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner, namespace_state, recap  # noqa: E402


OUTPUTS = []  # every stdout/stderr of the module's runs, for the secret scan


@pytest.fixture(scope="module")
def fleet_lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("playbook-lab"), clusters=3)
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def with_velero(fleet_lab):
    install = VeleroInstall
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda c: install(fleet_lab, c, prefix=c, version="v1.18.1", node_agent=True).install(wait=True),
                      fleet_lab.clusters))
    return fleet_lab


class Runner(PlaybookRunner):
    """PlaybookRunner with the lab's S3 keys in a vars file (for the install playbook)."""

    def __init__(self, lab, collections, work):
        super().__init__(lab, collections, work, outputs=OUTPUTS)
        self.secrets = work / "secrets.yml"
        self.secrets.write_text(yaml.safe_dump({
            "velero_s3_access_key_id": lab.s3["access_key_id"],
            "velero_s3_secret_access_key": lab.s3["secret_access_key"],
        }))


@pytest.fixture(scope="module")
def play(fleet_lab, collections, tmp_path_factory):
    return Runner(fleet_lab, collections, tmp_path_factory.mktemp("playbook-work"))


def custom(lab, cluster):
    from kubernetes import client

    return client.CustomObjectsApi(lab.api(cluster))


def core(lab, cluster):
    from kubernetes import client

    return client.CoreV1Api(lab.api(cluster))


def velero_objects(lab, cluster, plural):
    return custom(lab, cluster).list_namespaced_custom_object("velero.io", "v1", "velero", plural)["items"]


def by_name(report):
    return dict((c["name"], c) for c in report["clusters"])


def pvc_sha(lab, cluster, namespace="busybox", pvc="busybox-data"):
    out = lab.cli("volume", "ls", "--cluster", cluster, "-n", namespace, "--pvc", pvc, "--sha256").stdout
    return dict((parts[2], parts[1]) for parts in (line.split() for line in out.splitlines()) if len(parts) == 3)


def wait_namespace_gone(lab, cluster, namespace):
    from kubernetes import watch

    api = core(lab, cluster)
    names = [ns.metadata.name for ns in api.list_namespace().items]
    if namespace not in names:
        return
    stream = watch.Watch().stream(api.list_namespace, field_selector="metadata.name=" + namespace, timeout_seconds=60)
    for event in stream:
        if event["type"] == "DELETED":
            return
    raise AssertionError("namespace %s was not deleted on %s" % (namespace, cluster))


# --------------------------------------------------------------------------------------------


def test_bad_input_fails_before_any_api_call(fleet_lab, play):
    # Velero is not even installed yet: a run that reached a cluster would fail differently.
    proc = play("backup", "-e", "backup_name=ok", "-e", "wait_timeout=soon", check_rc=2)
    assert "wait_timeout" in proc.stdout and "Validate the inputs" in proc.stdout
    assert "Back up every selected cluster" not in proc.stdout

    proc = play("backup", "-e", "backup_name=Not_A_Name", check_rc=2)
    assert "Invalid input, nothing was changed: backup_name: " in proc.stdout  # the variable the user typed

    proc = play("backup", "-e", "backup_name=ok", "-e", "ttl=forever", check_rc=2)
    assert "Invalid input" in proc.stdout and "ttl" in proc.stdout

    proc = play("schedule", "-e", "schedule_name=nightly", "-e", "schedule='61 * * * *'", check_rc=2)
    assert "Invalid input" in proc.stdout and "schedule" in proc.stdout

    # a misspelt option is refused, not ignored (ignored, this filter would back up every namespace)
    proc = play("backup", "-e", "backup_name=ok", "-e", "includd_namespaces=database", check_rc=2)
    assert "variable 'includd_namespaces' is not an option of this playbook; did you mean 'included_namespaces'?" in proc.stdout
    for option, value in (("wait_timeout", "-5"), ("fleet_deadline", "0")):
        proc = play("backup", "-e", "backup_name=ok", "-e", "%s=%s" % (option, value), check_rc=2)
        assert "Invalid input, nothing was changed: %s must be at least 1, got %s" % (option, value) in proc.stdout

    proc = play("backup", "-e", "backup_name=ok", "-e", "report_dir=/proc/nope", check_rc=2)
    assert "Invalid input, nothing was changed: report_dir: reports cannot be written under /proc/nope" in proc.stdout

    proc = play("migrate", "-e", "migrate_name=mv", "-e", "source_cluster=nowhere", check_rc=2)
    assert "source_cluster 'nowhere' is not among the selected clusters" in proc.stdout
    assert not (play.work / "fleetdr-reports").exists()  # nothing ran, nothing reported

    # a target pattern that selects no inventory host fails (Ansible alone would exit 0 with a warning)
    proc = play("status", "-e", "fleetdr_targets=no_such_group", check_rc=2)
    assert "no cluster selected: the inventory has no host matching 'no_such_group'" in proc.stdout

    # a selection that matches no cluster is a failed run with a report saying why
    proc = play("backup", "-e", "backup_name=nowhere", "-e", '{"fleetdr_cluster_selector": {"env": "nowhere"}}', check_rc=2)
    assert "no cluster selected" in proc.stdout
    directory, report = play.report("backup", "nowhere")
    assert report["verdict"] == "failed" and report["totals"]["clusters"] == 0
    assert "cluster_selector {'env': 'nowhere'}" in report["options"]["selection"]


def test_backup_restore_round_trip_with_volume_data(fleet_lab, with_velero, play):
    lab = fleet_lab
    lab.cli("seed", "--cluster", "c1", "busybox")
    lab.cli("seed", "--cluster", "c1", "database")
    lab.cli("volume", "put", "--cluster", "c1", "-n", "busybox", "--pvc", "busybox-data", "--text", "fleet data 1", "data/one.txt")
    before = pvc_sha(lab, "c1")
    assert "data/one.txt" in before

    # Only the prod cluster (c1) is selected by label.
    proc = play("backup", "-e", "backup_name=rt1", "-e", "included_namespaces=busybox,database",
                "-e", "default_volumes_to_fs_backup=true", "-e", '{"fleetdr_cluster_selector": {"env": "prod"}}', check_rc=0)
    assert "CLUSTER" in proc.stdout and "rt1" in proc.stdout  # the compact table
    directory, report = play.report("backup", "rt1")
    assert [c["name"] for c in report["clusters"]] == ["c1"]
    c1 = report["clusters"][0]
    assert c1["verdict"] == "succeeded" and c1["object"] == {"kind": "Backup", "namespace": "velero", "name": "rt1-c1"}
    backup = custom(lab, "c1").get_namespaced_custom_object("velero.io", "v1", "velero", "backups", "rt1-c1")
    assert backup["status"]["phase"] == "Completed"
    assert backup["metadata"]["labels"]["fleetdr.kube/operation-name"] == "rt1"
    assert c1["items"] == {"total": backup["status"]["progress"]["totalItems"], "done": backup["status"]["progress"]["itemsBackedUp"]}
    assert [step["phase"] for step in c1["timeline"]] == ["Preflight", "BackupInProgress", "Completed"]

    # The report validates against its schema and the junit file has one case per cluster.
    import jsonschema
    from ansible_collections.fleetdr.kube.plugins.module_utils.report_schema import REPORT_SCHEMA

    jsonschema.validate(report, REPORT_SCHEMA)
    junit = ET.parse(directory / "junit.xml").getroot()
    assert [case.get("name") for case in junit.iter("testcase")] == ["c1"]
    assert (directory / "report.html").read_text().count("<tr") >= 2

    core(lab, "c1").delete_namespace("busybox")
    wait_namespace_gone(lab, "c1", "busybox")
    play("restore", "-e", "backup_name=rt1", "-e", "restore_name=rt1-back", "-e", "included_namespaces=busybox", "--limit", "c1", check_rc=0)
    directory, report = play.report("restore", "rt1-back")
    assert by_name(report)["c1"]["verdict"] == "succeeded"
    restore = custom(lab, "c1").get_namespaced_custom_object("velero.io", "v1", "velero", "restores", "rt1-back-c1")
    assert restore["status"]["phase"] == "Completed" and restore["spec"]["backupName"] == "rt1-c1"
    assert pvc_sha(lab, "c1") == before


def test_backups_complete_under_injected_503s_and_429s(fleet_lab, with_velero, play):
    """20% of every cluster's API answers are 503 (then 429): every cluster's backup still completes, each once."""
    for round_number, code in ((1, "503"), (2, "429")):
        for cluster in fleet_lab.clusters:
            fleet_lab.cli("fault", cluster, "errors", "0.2", code)
        try:
            name = "flaky%d" % round_number
            play("backup", "-e", "backup_name=" + name, "-e", "included_namespaces=default", check_rc=0)
        finally:
            for cluster in fleet_lab.clusters:
                fleet_lab.cli("fault", cluster, "clear")
        report = play.report("backup", name)[1]
        assert [c["verdict"] for c in report["clusters"]] == ["succeeded"] * len(fleet_lab.clusters), report["clusters"]
        for cluster in fleet_lab.clusters:
            backups = custom(fleet_lab, cluster).list_namespaced_custom_object("velero.io", "v1", "velero", "backups")["items"]
            assert [b["metadata"]["name"] for b in backups if b["metadata"]["name"].startswith(name)] == ["%s-%s" % (name, cluster)]


def test_a_hung_api_server_costs_only_its_share_of_the_wait(fleet_lab, with_velero, play):
    """c2 accepts connections and never answers in time: its pre-flight gives up within wait_timeout (reads and
    retries bounded by it), c1 and c3 back up, the run ends long before the fleet deadline."""
    import time as clock
    fleet_lab.cli("fault", "c2", "latency", "600000")
    try:
        started = clock.monotonic()
        play("backup", "-e", "backup_name=hung", "-e", "included_namespaces=default", "-e", "wait_timeout=10",
             "-e", "fleet_deadline=600", check_rc=2)
        elapsed = clock.monotonic() - started
    finally:
        fleet_lab.cli("fault", "c2", "clear")
    clusters = dict((c["name"], c) for c in play.report("backup", "hung")[1]["clusters"])
    assert clusters["c1"]["verdict"] == clusters["c3"]["verdict"] == "succeeded"
    assert clusters["c2"]["verdict"] == "failed" and "timed out" in clusters["c2"]["reason"], clusters["c2"]
    assert [step["phase"] for step in clusters["c2"]["timeline"]] == ["Preflight", "Failed"]
    assert elapsed < 60, elapsed  # bounded by wait_timeout (10 s) and its retries, not by the 600 s fleet deadline


def test_migrate_to_two_targets_leaves_the_source_unchanged(fleet_lab, play):
    lab = fleet_lab
    source_before = namespace_state(core(lab, "c1"), "busybox")
    data = pvc_sha(lab, "c1")
    proc = play("migrate", "-e", "migrate_name=mv1", "-e", "source_cluster=c1", "-e", "included_namespaces=busybox",
                "-e", "default_volumes_to_fs_backup=true", check_rc=0)
    assert recap(proc)["c2"]["failed"] == 0
    directory, report = play.report("migrate", "mv1")
    clusters = by_name(report)
    assert report["verdict"] == "succeeded"
    assert [s["phase"] for s in clusters["c1"]["timeline"]] == ["Preflight", "sourceReady", "BackupInProgress", "Completed"]
    for target in ("c2", "c3"):
        entry = clusters[target]
        assert [s["phase"] for s in entry["timeline"]] == ["Preflight", "sourceReady", "BackupInProgress", "RestoreInProgress", "Completed"]
        assert entry["object"]["kind"] == "Restore" and entry["location"] == "fleetdr-from-c1"
        # the read-only location on the source's prefix served the restore and was removed after it
        locations = custom(lab, target).list_namespaced_custom_object("velero.io", "v1", "velero", "backupstoragelocations")["items"]
        assert [loc["metadata"]["name"] for loc in locations] == ["default"]
        volume = [v for v in entry["volumes"] if (v["namespace"], v["pvc"]) == ("busybox", "busybox-data")]
        assert len(volume) == 1 and volume[0]["moved"], entry
        assert pvc_sha(lab, target) == data
    assert namespace_state(core(lab, "c1"), "busybox") == source_before


def test_down_target_and_missing_velero_fail_alone(fleet_lab, play):
    lab = fleet_lab
    # c3 loses Velero, c2 goes down; c1 still backs up.
    apps_api = __import__("kubernetes").client.AppsV1Api(lab.api("c3"))
    apps_api.delete_namespaced_deployment("velero", "velero")
    lab.cli("fault", "c2", "down")
    try:
        proc = play("backup", "-e", "backup_name=partial1", "-e", "included_namespaces=busybox", check_rc=2)
    finally:
        lab.cli("fault", "c2", "clear")
    counts = recap(proc)
    assert counts["c1"]["failed"] == 0 and counts["c2"]["failed"] == 1 and counts["c3"]["failed"] == 1
    directory, report = play.report("backup", "partial1")
    clusters = by_name(report)
    assert report["verdict"] == "partially_failed"
    assert clusters["c1"]["verdict"] == "succeeded"
    assert clusters["c2"]["verdict"] == "failed" and clusters["c2"]["phase"] == "Failed" and clusters["c2"]["reason"]
    assert clusters["c3"]["verdict"] == "failed" and "Velero is not installed" in clusters["c3"]["reason"]
    cases = dict((case.get("name"), case) for case in ET.parse(directory / "junit.xml").getroot().iter("testcase"))
    assert sorted(cases) == ["c1", "c2", "c3"]
    assert cases["c1"].find("failure") is None and cases["c3"].find("failure") is not None

    # fail_on never: same truth in the report, exit 0; the play that fails clusters (imported by every
    # fleet playbook) has no host then, and says so without a warning.
    quiet = play("status", "-e", "fail_on=never", check_rc=0)
    assert "Could not match supplied host pattern" not in quiet.stdout + quiet.stderr
    assert re.search(r"PLAY \[Fail the clusters that did not succeed, as fail_on decides\] \*+\nskipping: no hosts matched", quiet.stdout)
    directory, report = play.report("status", "status")
    assert by_name(report)["c3"]["verdict"] == "failed"


def test_install_playbook_repairs_a_cluster_and_reports_it(fleet_lab, play):
    # c3 lost its Velero Deployment above: the install playbook (role fleetdr.kube.velero) puts it back.
    # Its other objects were made by the test helper, another field manager whose node-agent has a
    # different secret defaultMode: the server refuses to hand that field over unasked, and the
    # report names the conflict and the way out; force_conflicts takes it over.
    args = ("-e", "@%s" % play.secrets, "-e", "velero_node_agent=true", "-e", "velero_bsl_prefix=c3", "--limit", "c3")
    failed = play("install", *args, check_rc=2)
    reason = play.report("install", "velero")[1]["clusters"][0]["reason"]
    # The fail task reads the host's verdict, phase and reason from the fleet task's result.
    assert re.search(r"c3: failed in phase \w+: [^\"]*DaemonSet velero/node-agent has fields owned by another manager", failed.stdout)
    assert "DaemonSet velero/node-agent has fields owned by another manager (set force_conflicts to take them over)" in reason
    assert 'conflict with "OpenAPI-Generator"' in reason
    proc = play("install", *args, "-e", "force_conflicts=true", check_rc=0)
    assert recap(proc)["c3"]["failed"] == 0
    directory, report = play.report("install", "velero")
    assert [c["name"] for c in report["clusters"]] == ["c3"]
    c3 = report["clusters"][0]
    assert c3["verdict"] == "succeeded" and c3["phase"] == "Installed"
    assert c3["details"]["location_phase"] == "Available" and c3["details"]["velero_version"] == "v1.18.1"


def test_schedule_second_run_changes_nothing(fleet_lab, play):
    args = ("-e", "schedule_name=nightly", "-e", "schedule='0 2 * * *'", "-e", "included_namespaces=busybox")
    first = play("schedule", *args, check_rc=0)
    assert "changed: [c1]" in first.stdout
    second = play("schedule", *args, check_rc=0)
    directory, report = play.report("schedule", "nightly")
    assert all(c["details"]["changed"] is False for c in report["clusters"])
    assert "changed: [c1]" not in second.stdout
    for cluster in ("c1", "c2", "c3"):
        schedules = velero_objects(fleet_lab, cluster, "schedules")
        assert [s["metadata"]["name"] for s in schedules] == ["nightly-" + cluster]
    play("schedule", *args, "-e", "paused=true", check_rc=0)
    assert all(s["spec"]["paused"] for s in velero_objects(fleet_lab, "c2", "schedules"))
    play("schedule", "-e", "schedule_name=nightly", "-e", "state=absent", check_rc=0)
    assert velero_objects(fleet_lab, "c2", "schedules") == []

    # from_backup: the instant fleet backup rt1 (c1 only) becomes a schedule with its options.
    play("schedule", "-e", "schedule_name=from-rt1", "-e", "from_backup=rt1", "-e", "schedule='0 3 * * *'",
         "--limit", "c1", check_rc=0)
    schedule = custom(fleet_lab, "c1").get_namespaced_custom_object("velero.io", "v1", "velero", "schedules", "from-rt1-c1")
    assert schedule["spec"]["template"]["includedNamespaces"] == ["busybox", "database"]
    assert schedule["spec"]["template"]["defaultVolumesToFsBackup"] is True


def test_status_lists_the_fleet(fleet_lab, play, tmp_path):
    play("status", "-e", "fail_on=never", check_rc=0, env={"TMPDIR": str(tmp_path)})
    # nothing left in the temporary directory (the kubeconfig's CA was written there once per cluster per run)
    assert not [p.name for p in tmp_path.rglob("*") if p.is_file() and b"BEGIN CERTIFICATE" in p.read_bytes()]
    directory, report = play.report("status", "status")
    c1 = by_name(report)["c1"]
    names = [b["name"] for b in c1["details"]["backups"]]
    assert "rt1-c1" in names and "mv1-c1" in names
    assert c1["details"]["newest_good_backup_age_s"] is not None
    # the migration's read-only location is gone, and with it the source's backups synced through it
    c2 = by_name(report)["c2"]
    assert [loc["name"] for loc in c2["details"]["locations"]] == ["default"]
    assert "mv1-c1" not in [b["name"] for b in c2["details"]["backups"] + c2["details"]["synced_backups"]]


def test_no_secret_in_any_output(fleet_lab, play):
    play("backup", "-vvv", "-e", "backup_name=scan1", "-e", "included_namespaces=busybox", "--limit", "c1", check_rc=0)
    secrets = [fleet_lab.s3["secret_access_key"]] + [c["token"] for c in fleet_lab.state["clusters"]]
    secrets += [base64.b64encode(s.encode()).decode() for s in secrets]
    texts = list(OUTPUTS)
    for path in (play.work / "fleetdr-reports").rglob("*"):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    assert len(texts) > 10
    for secret in secrets:
        assert not any(secret in text for text in texts), "a secret leaked into an output"
