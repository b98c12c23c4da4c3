# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Velero object that outlives its wait is named in the report with its last phase, and left or cancelled."""

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet import job
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import timed_out


class Client(object):
    namespace = "velero"

    def __init__(self, objects):
        self.objects = objects
        self.created, self.deleted = [], []

    def get(self, plural, name):
        return self.objects.get((plural, name))

    def create(self, plural, body):
        self.created.append((plural, body))
        return body

    def delete(self, plural, name):
        self.deleted.append((plural, name))


class Job(object):
    def __init__(self, **params):
        self.params = params


BACKUP = {"metadata": {"name": "nightly-c1", "uid": "0123456789abcdef"}, "status": {"phase": "InProgress"}}


def test_left_by_default_and_named_with_its_last_phase():
    client = Client({("backups", "nightly-c1"): BACKUP})
    entry = timed_out(client, Job(), "Backup", "backups", "nightly-c1", 20)
    assert entry["verdict"] == "failed" and entry["phase"] == "InProgress"
    assert entry["object"] == {"kind": "Backup", "namespace": "velero", "name": "nightly-c1"}
    assert entry["reason"] == ("Backup velero/nightly-c1 did not finish within 20s (last phase InProgress); "
                               "left on the cluster, where it may still finish (on_timeout=leave)")
    assert not client.created and not client.deleted


QUEUED = {"metadata": {"name": "nightly-c1", "uid": "0123456789abcdef"}, "status": {"phase": "Queued", "queuePosition": 1}}


def test_cancel_reports_a_backup_that_had_not_started_cancelled_only_once_velero_removed_it(monkeypatch):
    # What Velero makes of the DeleteBackupRequest (objects.delete_backup waits for it) decides the words.
    outcomes = {"removed": None,
                "refused": FleetdrError("Velero could not delete backup nightly-c1: backup storage location  not found"),
                "pending": WaitTimeout("DeleteBackupRequest still InProgress")}
    asked = []

    def delete_backup(client, name, timeout):
        asked.append((name, timeout))
        if outcomes[outcome] is not None:
            raise outcomes[outcome]
        return True, None, {}
    monkeypatch.setattr(job.objects, "delete_backup", delete_backup)
    client = Client({("backups", "nightly-c1"): QUEUED})
    reasons = {}
    for outcome in outcomes:
        reasons[outcome] = timed_out(client, Job(on_timeout="cancel"), "Backup", "backups", "nightly-c1", 20, cancel_timeout=7)["reason"]
    assert asked == [("nightly-c1", 7)] * 3
    assert reasons["removed"].endswith("(last phase Queued); cancelled before it started (on_timeout=cancel: Velero removed "
                                       "it through a DeleteBackupRequest)")
    assert reasons["refused"].endswith("not cancelled: Velero could not delete backup nightly-c1: backup storage location  not "
                                       "found (on_timeout=cancel); it is left on the cluster")
    assert "not yet cancelled: Velero had not removed it 7s after a DeleteBackupRequest" in reasons["pending"]
    assert all(" cancelled before" not in reasons[o] for o in ("refused", "pending"))


def test_cancel_deletes_a_restore():
    client = Client({("restores", "r-c1"): {"metadata": {"name": "r-c1"}, "status": {}}})
    entry = timed_out(client, Job(on_timeout="cancel"), "Restore", "restores", "r-c1", 5)
    assert client.deleted == [("restores", "r-c1")] and entry["phase"] == "New"
    assert "cancelled (on_timeout=cancel: the Restore was deleted" in entry["reason"]


def test_a_running_backup_is_not_cancelled_and_the_reason_says_why():
    # Velero answers a DeleteBackupRequest for a Backup it is running with "backup is still in progress"
    # and leaves the Backup: none is sent, and the report does not claim a cancel.
    for phase in ("InProgress", "WaitingForPluginOperations", "FinalizingPartiallyFailed"):
        client = Client({("backups", "nightly-c1"): dict(BACKUP, status={"phase": phase})})
        entry = timed_out(client, Job(on_timeout="cancel"), "Backup", "backups", "nightly-c1", 20)
        assert not client.created and not client.deleted
        assert "(last phase %s); not cancelled: Velero refuses to delete a Backup while it runs" % phase in entry["reason"]
        assert "cancelled (" not in entry["reason"]


def test_the_cancel_waits_a_minute_at_most_and_never_past_the_fleet_deadline():
    class Recorder(object):
        def __init__(self, remaining):
            self.remaining = lambda: remaining
    assert job.cancel_wait(Recorder(None)) == job.CANCEL_TIMEOUT == 60
    assert job.cancel_wait(Recorder(600.0)) == 60
    assert job.cancel_wait(Recorder(12.7)) == 12
    assert job.cancel_wait(Recorder(0.0)) == 1
