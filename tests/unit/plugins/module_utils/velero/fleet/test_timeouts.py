# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Velero object that outlives its wait is named in the report with its last phase, and left or cancelled."""

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


def test_cancel_asks_velero_to_delete_a_backup_that_has_not_started_and_deletes_a_restore():
    queued = {"metadata": {"name": "nightly-c1", "uid": "0123456789abcdef"}, "status": {"phase": "Queued", "queuePosition": 1}}
    client = Client({("backups", "nightly-c1"): queued, ("restores", "r-c1"): {"metadata": {"name": "r-c1"}, "status": {}}})
    entry = timed_out(client, Job(on_timeout="cancel"), "Backup", "backups", "nightly-c1", 20)
    assert [(plural, body["spec"]) for plural, body in client.created] == [("deletebackuprequests", {"backupName": "nightly-c1"})]
    assert entry["reason"].endswith("(last phase Queued); cancelled before it started (on_timeout=cancel: a DeleteBackupRequest "
                                    "removes it)")
    entry = timed_out(client, Job(on_timeout="cancel"), "Restore", "restores", "r-c1", 5)
    assert client.deleted == [("restores", "r-c1")] and entry["phase"] == "New"


def test_a_running_backup_is_not_cancelled_and_the_reason_says_why():
    # Velero answers a DeleteBackupRequest for a Backup it is running with "backup is still in progress"
    # and leaves the Backup: none is sent, and the report does not claim a cancel.
    for phase in ("InProgress", "WaitingForPluginOperations", "FinalizingPartiallyFailed"):
        client = Client({("backups", "nightly-c1"): dict(BACKUP, status={"phase": phase})})
        entry = timed_out(client, Job(on_timeout="cancel"), "Backup", "backups", "nightly-c1", 20)
        assert not client.created and not client.deleted
        assert "(last phase %s); not cancelled: Velero refuses to delete a Backup while it runs" % phase in entry["reason"]
        assert "cancelled (" not in entry["reason"]
