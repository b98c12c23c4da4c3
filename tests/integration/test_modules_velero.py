# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The five Velero modules through ansible-playbook against a lab cluster with Velero installed.

Each test runs one playbook from playbooks/modules/ (hosts = the lab inventory's c1) and checks
both the task results (ansible.posix.json callback) and the cluster / bucket state with the
kubernetes client and boto3. The lab is private to this module (FLEETDR_LAB_DIR reuses one).
"""

import base64
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "tests" / "integration" / "playbooks" / "modules"
sys.path.insert(0, str(REPO / "tests" / "lab"))
from helpers import VeleroInstall, unique  # noqa: E402
from labctl import LabHandle  # noqa: E402


ANSIBLE_PLAYBOOK = [str(Path(sys.executable).with_name("ansible-playbook"))]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reuse = os.environ.get("FLEETDR_LAB_DIR")
    if reuse:
        yield LabHandle(reuse, owned=False)
        return
    handle = LabHandle.up(tmp_path_factory.mktemp("modules-lab"), clusters=1)
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def velero(lab):
    install = VeleroInstall(lab, "c1")
    install.install()
    return install


class Play(object):
    """Runs a playbook against the lab's c1 and indexes task results by task name."""

    def __init__(self, lab, collections, workdir):
        self.lab = lab
        self.collections = collections
        self.workdir = workdir

    def run(self, playbook, extra_vars, verbose=False):
        vars_file = self.workdir / (unique("vars") + ".json")
        vars_file.write_text(json.dumps(extra_vars))  # secrets stay off the command line
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
            "ANSIBLE_STDOUT_CALLBACK": "default" if verbose else "ansible.posix.json",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(self.workdir / "tmp"),
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
        })
        cmd = ANSIBLE_PLAYBOOK + ["-i", str(self.lab.inventory), "-l", "c1", str(PLAYBOOKS / playbook), "-e", "@" + str(vars_file)]
        if verbose:
            cmd.append("-vvv")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=str(self.workdir), check=False)
        if verbose:
            return proc, None
        try:
            doc = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            raise AssertionError("ansible-playbook output is not JSON:\n{0}\n{1}".format(proc.stdout[-3000:], proc.stderr[-3000:]))
        tasks = {}
        for play in doc["plays"]:
            for task in play["tasks"]:
                tasks[task["task"]["name"]] = task["hosts"].get("c1", {})
        assert doc["stats"]["c1"]["failures"] == 0, json.dumps(tasks, indent=1)[-4000:]
        return proc, tasks


@pytest.fixture(scope="module")
def play(lab, velero, collections, tmp_path_factory):
    return Play(lab, collections, tmp_path_factory.mktemp("modules-play"))


@pytest.fixture()
def app(lab, velero):
    """A namespace with two ConfigMaps (app=web and app=api) to back up."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(velero.api_client)
    name = unique("app")
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "settings", "labels": {"app": "web"}}, "data": {"color": "blue"}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "api-settings", "labels": {"app": "api"}}, "data": {"port": "80"}})
    return name


def velero_state(velero):
    """Everything the modules could create in the Velero namespace, by kind and name."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(velero.api_client)
    state = {}
    for plural in ("backups", "restores", "schedules", "backupstoragelocations", "volumesnapshotlocations", "deletebackuprequests"):
        state[plural] = sorted(o["metadata"]["name"] for o in velero.list(plural))
    state["configmaps"] = sorted(c.metadata.name for c in core.list_namespaced_config_map(velero.namespace).items)
    state["secrets"] = sorted(s.metadata.name for s in core.list_namespaced_secret(velero.namespace).items)
    return state


# ------------------------------------------------------------------------------ velero_backup

def test_backup_create_wait_idempotence_check_mode_diff_delete(play, velero, app):
    name = unique("bk")
    dummy, t = play.run("backup_lifecycle.yml", {"backup_name": name, "app_namespace": app})

    assert t["Create in check mode"]["changed"] is True
    assert t["Look for the backup after check mode"]["resources"] == []

    created = t["Create and wait"]
    assert created["changed"] is True
    result = created["result"]
    assert result["phase"] == "Completed" and result["succeeded"] is True
    assert result["name"] == name and result["context"] == "c1"
    assert result["progress"]["items_done"] >= 2 and result["started"] and result["completed"] and result["expiration"]
    assert created["diff"]["after"]["spec"]["ttl"] == "24h0m0s"
    assert created["backup"]["metadata"]["labels"]["team"] == "shop"

    assert t["Same request again"]["changed"] is False
    conflict = t["Different spec under the same name"]
    assert conflict["failed"] is True
    assert "immutable" in conflict["msg"] and "includedNamespaces" in conflict["msg"] and "ttl" in conflict["msg"]

    assert t["Delete in check mode"]["changed"] is True
    assert len(t["Look for the backup after check-mode delete"]["resources"]) == 1
    assert t["Delete"]["changed"] is True
    assert t["Delete again"]["changed"] is False
    # DeleteBackupRequest semantics: the CR and the data in the bucket are gone.
    assert velero.get_or_none("backups", name) is None
    assert velero.bucket_keys(velero.backup_prefix(name)) == []


def test_backup_partial_failure_reports_why(play, velero):
    name = unique("partial")
    dummy, t = play.run("backup_partial.yml", {"backup_name": name})
    failed = t["Back up a namespace that does not exist"]
    assert failed["failed"] is True and "PartiallyFailed" in failed["msg"]
    messages = failed["result"]["messages"]["errors"]
    assert any("does-not-exist" in m for m in messages), messages
    accepted = t["Accept partial failure"]
    assert accepted.get("failed") is not True and accepted["changed"] is False
    info = t["Read the failed backups with details"]
    assert [b["name"] for b in info["backups"]] == [name]
    assert any("does-not-exist" in m for m in info["backups"][0]["messages"]["errors"])


# ------------------------------------------------------------------------------ velero_schedule

def test_schedule_lifecycle(play, velero, app):
    name = unique("sched")
    dummy, t = play.run("schedule_lifecycle.yml", {"schedule_name": name, "app_namespace": app})
    bad = t["Invalid cron"]
    assert bad["failed"] is True and bad["option"] == "schedule"
    assert t["Create in check mode"]["changed"] is True
    created = t["Create"]
    assert created["changed"] is True and created["schedule"]["spec"]["schedule"] == "0 2 * * *"
    assert created["schedule"]["spec"]["template"] == {"includedNamespaces": [app], "ttl": "168h0m0s"}
    assert len(created["result"]["next_runs"]) == 3
    assert t["Same again"]["changed"] is False
    paused = t["Pause, with diff"]
    assert paused["changed"] is True
    assert paused["diff"]["before"]["spec"]["paused"] is False and paused["diff"]["after"]["spec"]["paused"] is True
    copied = t["Schedule from that backup"]
    assert copied["schedule"]["spec"]["template"] == {"includedNamespaces": [app], "ttl": "12h0m0s", "snapshotVolumes": False}
    assert all(r["changed"] for r in t["Delete the schedules"]["results"])
    names = [s["metadata"]["name"] for s in velero.list("schedules")]
    assert name not in names and name + "-copy" not in names


# ------------------------------------------------------------------------------ velero_restore

def test_restore_with_mapping_modifiers_and_policies(play, velero, app):
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(velero.api_client)
    backup, restore, target = unique("rbk"), unique("rs"), unique("copy")
    dummy, t = play.run("restore.yml", {"backup_name": backup, "restore_name": restore, "app_namespace": app, "target_namespace": target})

    missing = t["Restore from a backup that does not exist"]
    assert missing["failed"] is True and "backup_name" in missing["msg"] and "no-such-backup" in missing["msg"]
    check = t["Restore into a mapped namespace (check mode)"]
    assert check["changed"] is True and len(check["config_changes"]) == 3

    restored = t["Restore into a mapped namespace"]
    assert restored["changed"] is True and restored["result"]["phase"] == "Completed"
    assert restored["result"]["backup_name"] == backup
    assert restored["restore"]["spec"]["namespaceMapping"] == {app: target}
    copy = core.read_namespaced_config_map("settings", target)
    assert copy.data["color"] == "blue" and copy.data["modified"] == "yes"  # resource modifier applied
    assert copy.metadata.labels["velero.io/restore-name"] == restore
    sc = t["Read the storage-class plugin ConfigMap the restore used"]["resources"][0]
    assert sc["data"] == {"fast": "standard"} and sc["metadata"]["labels"]["velero.io/change-storage-class"] == "RestoreItemAction"
    assert t["Same restore again"]["changed"] is False

    # Existing objects: "update" overwrites them, "none" leaves them and warns.
    updated = t["Restore over the existing objects, updating them"]
    assert updated["changed"] is True and updated["result"]["phase"] == "Completed"
    left = t["Restore over the existing objects, leaving them"]
    assert left["result"]["phase"] == "Completed"
    assert left["restore"]["spec"]["existingResourcePolicy"] == "none"
    # Restores without a mapping remove our plugin ConfigMap again (it would apply to every restore).
    assert "fleetdr-change-storage-class" not in velero_state(velero)["configmaps"]


def test_restore_from_schedule_uses_its_newest_completed_backup(play, lab, velero, app):
    from kubernetes import client as k8s

    from labctl import cli_command

    schedule, target = unique("rsched"), unique("fromsched")
    advance = " ".join(cli_command() + ["clock", "advance", "1h", "--dir", str(lab.dir)])
    dummy, t = play.run("schedule_restore.yml", {"schedule_name": schedule, "app_namespace": app, "target_namespace": target,
                                                 "clock_advance_command": advance})
    backups = t["Wait for the schedule's backup to complete"]["backups"]
    restored = t["Restore the newest Completed backup of the schedule"]
    assert restored["result"]["phase"] == "Completed"
    assert restored["result"]["backup_name"] == backups[0]["name"] and backups[0]["name"].startswith(schedule + "-")
    assert restored["restore"]["metadata"]["name"].startswith(schedule + "-restore-")
    settings = k8s.CoreV1Api(velero.api_client).read_namespaced_config_map("settings", target)
    assert settings.data == {"color": "blue"}


# ------------------------------------------------------------------------------ velero_location / velero_info

def _server_status_requests_created(velero, during):
    """Names of the ServerStatusRequests created in Velero's namespace while ``during()`` runs (a watch)."""
    from kubernetes import watch
    created, errors, stream, stopping = [], [], watch.Watch(), threading.Event()
    start = velero.custom.list_namespaced_custom_object("velero.io", "v1", velero.namespace, "serverstatusrequests")["metadata"][
        "resourceVersion"]

    def consume():
        try:
            for event in stream.stream(velero.custom.list_namespaced_custom_object, "velero.io", "v1", velero.namespace,
                                       "serverstatusrequests", resource_version=start, timeout_seconds=120):
                if event["type"] == "ADDED":
                    created.append(event["object"]["metadata"]["name"])
        except Exception as exc:  # the connection torn down while stopping is fine; anything before is not
            if not stopping.is_set():
                errors.append(exc)

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        result = during()
        assert not errors, errors
        return result, created
    finally:
        stopping.set()
        stream.stop()
        velero.custom.create_namespaced_custom_object("velero.io", "v1", velero.namespace, "serverstatusrequests", {
            "apiVersion": "velero.io/v1", "kind": "ServerStatusRequest", "metadata": {"generateName": "wake-the-watch-"}, "spec": {}})
        thread.join(30)


def test_location_available_unavailable_and_info(play, lab, velero):
    name = unique("loc")
    s3 = lab.s3
    extra = {"location_name": name, "location_prefix": "modules/" + name, "s3_access_key_id": s3["access_key_id"],
             "s3_secret_access_key": s3["secret_access_key"], "s3_bad_secret": "not-the-secret"}
    (dummy, t), created = _server_status_requests_created(velero, lambda: play.run("location.yml", extra))
    # one ServerStatusRequest for the real velero_info; none for the one in check mode
    assert len([n for n in created if n.startswith("fleetdr-status")]) == 1, created
    checked = t["Server status in check mode"]["server_status"]
    assert checked["available"] is True and checked["version"].startswith("v1.") and "check mode" in checked["reason"]
    assert t["Location with good credentials (check mode)"]["changed"] is True
    good = t["Location with good credentials"]
    assert good["changed"] is True and good["result"]["phase"] == "Available" and good["secret"] == "create"
    assert good["location"]["spec"]["accessMode"] == "ReadOnly"
    assert good["location"]["spec"]["credential"] == {"name": name + "-credentials", "key": "cloud"}
    again = t["Same again"]
    assert again["changed"] is False and again["secret"] is None
    bad = t["Location with a wrong secret key"]
    assert bad["failed"] is True and "Unavailable" in bad["msg"]
    assert bad["result"]["phase"] == "Unavailable" and bad["result"]["failure_reason"]
    assert t["Snapshot location"]["changed"] is True

    info = t["Everything Velero knows"]
    assert info["changed"] is False
    assert info["server_status"]["available"] is True and info["server_status"]["version"].startswith("v1.")
    assert {"name": "velero.io/aws", "kind": "ObjectStore"} in info["server_status"]["plugins"]
    phases = dict((loc["name"], loc["phase"]) for loc in info["backup_locations"])
    assert phases[name] == "Available" and phases[name + "-bad"] == "Unavailable" and phases["default"] == "Available"
    assert name + "-vsl" in [v["name"] for v in info["snapshot_locations"]]
    assert all(r["changed"] for r in t["Remove the locations"]["results"])
    state = velero_state(velero)
    assert name not in state["backupstoragelocations"] and name + "-vsl" not in state["volumesnapshotlocations"]


# ------------------------------------------------------------------------------ bad input

BAD_INPUT_OPTIONS = {
    "Invalid cron": "schedule",
    "Malformed selector": "label_selector",
    "Both selector kinds": "label_selector",
    "Unknown existing resource policy": "existing_resource_policy",
    "Bad duration": "ttl",
    "Over-long backup name": "name",
    "Missing backup": "backup_name",
    "Schedule without Completed backups": "schedule_name",
    "Old and new resource filters mixed": "included_cluster_scoped_resources",
}


def test_bad_input_fails_clearly_and_changes_nothing(play, velero):
    before = velero_state(velero)
    dummy, t = play.run("bad_input.yml", {})
    for task, option in BAD_INPUT_OPTIONS.items():
        result = t[task]
        assert result["failed"] is True, task
        assert option in result["msg"], (task, result["msg"])
        assert result.get("changed") is not True, task
    assert velero_state(velero) == before


# ------------------------------------------------------------------------------ secrets

def test_no_credential_in_verbose_output_or_results(play, lab, velero):
    name = unique("sec")
    s3 = lab.s3
    extra = {"location_name": name, "location_prefix": "modules/" + name, "backup_name": unique("secbk"),
             "s3_access_key_id": s3["access_key_id"], "s3_secret_access_key": s3["secret_access_key"]}
    proc, dummy = play.run("secret_scan.yml", extra, verbose=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Location with credentials" in output and "Info with details" in output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # the module arguments were logged, masked
    creds = open(os.path.join(str(lab.dir), "credentials-velero")).read()
    forbidden = [s3["secret_access_key"], s3["access_key_id"], base64.b64encode(creds.encode()).decode()[:40]]
    secret = velero.core.read_namespaced_secret(name + "-credentials", velero.namespace)
    forbidden.append(secret.data["cloud"][:40])
    for value in forbidden:
        assert value not in output
    # The results really were read with those credentials (so the scan was meaningful).
    assert "does-not-exist" in output
