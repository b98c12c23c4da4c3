# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fleet status (every Velero object per cluster, freshness of the cluster's own backups) and the
install report (version, server readiness, location phase)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.fleetdr.kube.plugins.module_utils.report import parse_timestamp
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, results
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import PreflightError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.objects import image_version, velero_deployment


def _age_seconds(timestamp, now):
    moment = parse_timestamp(timestamp)
    return None if moment is None else round(max((now - moment).total_seconds(), 0.0), 1)


def _brief(obj, kind, client):
    res = results.normalize(obj, kind, client)
    keep = ("name", "phase", "started", "completed", "warnings", "errors", "failure_reason", "storage_location",
            "schedule_name", "backup_name", "schedule", "paused", "last_backup", "access_mode", "default", "last_synced",
            "expiration")
    return dict((k, res[k]) for k in keep if k in res)


def own_backups(backups, locations, cluster_name):
    """(this cluster's own backups, backups visible here through other clusters' storage).

    A backup is another cluster's when it came in through a ReadOnly location (a migration's
    fleetdr-from-<source>, a DR drill) or carries another cluster's fleetdr.kube/cluster label
    (a shared bucket prefix): it says nothing about how fresh this cluster's backups are.
    """
    read_only = set(loc["metadata"]["name"] for loc in locations if (loc.get("spec") or {}).get("accessMode") == "ReadOnly")
    mine = names.label_value(cluster_name)
    own, synced = [], []
    for backup in backups:
        labels = backup["metadata"].get("labels") or {}
        location = (backup.get("spec") or {}).get("storageLocation") or labels.get("velero.io/storage-location")
        foreign = location in read_only or labels.get(names.LABEL_CLUSTER, mine) != mine
        (synced if foreign else own).append(backup)
    return own, synced


def operation(job):
    def operation(cluster, recorder):
        client = job.clients.connect(cluster)
        recorder.phase("Reading")
        deployment = velero_deployment(client)
        if deployment is None:
            raise PreflightError("Velero is not installed: Deployment velero not found in namespace {0}".format(client.namespace))
        locations = client.list("backupstoragelocations")
        backups = client.list("backups")
        restores = client.list("restores")
        schedules = client.list("schedules")
        now = datetime.datetime.now(datetime.timezone.utc)
        own, synced = own_backups(backups, locations, cluster["name"])
        good = [b for b in own if (b.get("status") or {}).get("phase") == "Completed"]
        newest = max(good, key=lambda b: (b.get("status") or {}).get("completionTimestamp") or "") if good else None
        newest_age = _age_seconds((newest.get("status") or {}).get("completionTimestamp"), now) if newest else None
        unavailable = [loc["metadata"]["name"] for loc in locations if (loc.get("status") or {}).get("phase") != "Available"]
        warnings = ["backup {0} ended {1}".format(b["metadata"]["name"], b["status"]["phase"]) for b in own
                    if (b.get("status") or {}).get("phase") in ("Failed", "PartiallyFailed", "FailedValidation")]
        errors = ["BackupStorageLocation {0} is not Available".format(n) for n in unavailable]
        max_age = job.params.get("max_backup_age_s")
        verdict = "succeeded"
        reason = None
        if unavailable:
            verdict, reason = "failed", errors[0]
        elif newest is None:
            verdict, reason = "partially_failed", "no Completed backup of this cluster{0}".format(
                " ({0} synced from other clusters' locations are not counted)".format(len(synced)) if synced else "")
        elif max_age and newest_age > max_age:
            verdict, reason = "partially_failed", "newest good backup is {0:.0f}s old (max {1}s)".format(newest_age, max_age)
        return {
            "verdict": verdict,
            "phase": "Healthy" if verdict == "succeeded" else "Degraded",
            "reason": reason,
            "object": {"kind": "Backup", "namespace": client.namespace, "name": newest["metadata"]["name"]} if newest else None,
            "location": ", ".join(sorted(loc["metadata"]["name"] for loc in locations)) or None,
            "items": {"total": len(own), "done": len(good)},
            "warnings": warnings,
            "errors": errors,
            "details": {
                "velero_version": image_version(deployment),
                "newest_good_backup": newest["metadata"]["name"] if newest else None,
                "newest_good_backup_age_s": newest_age,
                "backups": [_brief(b, "Backup", client) for b in own],
                "synced_backups": [_brief(b, "Backup", client) for b in synced],
                "restores": [_brief(r, "Restore", client) for r in restores],
                "schedules": [_brief(s, "Schedule", client) for s in schedules],
                "locations": [_brief(loc, "BackupStorageLocation", client) for loc in locations],
            },
        }
    return operation


def installed_entry(client, pre):
    """The report entry of a cluster where Velero is installed: version, server readiness, location phase."""
    bsl = pre["bsl"]
    storage = (bsl.get("spec") or {}).get("objectStorage") or {}
    return {"verdict": "succeeded", "phase": "Installed",
            "object": {"kind": "Deployment", "namespace": client.namespace, "name": "velero"},
            "location": pre["location"],
            "details": {"velero_version": pre["version"], "location_phase": (bsl.get("status") or {}).get("phase"),
                        "bucket": storage.get("bucket"), "prefix": storage.get("prefix")}}
