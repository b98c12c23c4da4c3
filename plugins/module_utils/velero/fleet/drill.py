# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Restore drill: prove, per cluster, that its newest good backup restores.

Each cluster restores the newest Completed backup it holds (of a fleet schedule, of a fleet backup,
or any) into scratch namespaces (``<namespace>-<suffix>``), then checks that the workloads come up
and that every volume's restored bytes equal what the backup's PodVolumeBackup recorded. The report
carries the observed time to restore (RTO: from creating the Restore to the workloads being ready)
and the backup's age (RPO), and the scratch namespaces and the Restore are removed again unless
``keep`` is set. Nothing outside the scratch namespaces is written; a scratch namespace that already
exists fails the cluster before anything is created (a drill never overwrites).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.report import parse_timestamp, utcnow
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, volume_data
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import PreflightError, preflight, timeout_for
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.restore import run_restore
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for


def drill_backup(client, job, cluster_name):
    """The Backup to drill on this cluster: the newest Completed one of the fleet schedule or fleet
    backup named, or of all the cluster holds."""
    if job.params.get("schedule_name"):
        schedule = names.fleet_object_name(job.params["schedule_name"], cluster_name, max_length=names.MAX_SCHEDULE_NAME)
        return objects.newest_completed_backup(client, schedule)
    if job.params.get("backup_name"):
        name = names.fleet_object_name(job.params["backup_name"], cluster_name)
        backup = client.get("backups", name)
        if backup is None or (backup.get("status") or {}).get("phase") != "Completed":
            raise PreflightError("Backup {0} is {1} on this cluster; a drill needs a Completed backup".format(
                name, "missing" if backup is None else (backup.get("status") or {}).get("phase") or "unfinished"))
        return backup
    completed = [b for b in client.list("backups") if (b.get("status") or {}).get("phase") == "Completed"]
    if not completed:
        raise PreflightError("no Completed backup on this cluster to drill")
    return max(completed, key=lambda b: (b.get("status") or {}).get("completionTimestamp") or "")


def drill_namespaces(job, backup):
    """The backup's namespaces the drill restores: the ``included_namespaces`` option, else the
    backup's own explicit list."""
    own = (backup.get("spec") or {}).get("includedNamespaces") or []
    wanted = job.params.get("included_namespaces") or [namespace for namespace in own if namespace != "*"]
    if not wanted:
        raise PreflightError("Backup {0} covers every namespace; name the ones to drill with included_namespaces".format(
            backup["metadata"]["name"]))
    return list(wanted)


def _not_ready(items):
    """What of the restored Deployments/StatefulSets is not at its replicas yet."""
    out = []
    for item in items.values():
        want = (item.get("spec") or {}).get("replicas", 1)
        ready = (item.get("status") or {}).get("readyReplicas") or 0
        if ready < want:
            out.append("{0} {1}/{2} {3}/{4} ready".format(item.get("kind") or "workload", item["metadata"].get("namespace"),
                                                          item["metadata"]["name"], ready, want))
    return out


def wait_workloads(client, job, recorder, restore_name):
    """Wait by watch until every Deployment and StatefulSet the Restore created (Velero labels what it
    restores with velero.io/restore-name) is at its replicas; returns what is still not ready."""
    selector = "velero.io/restore-name={0}".format(names.label_value(restore_name))
    waiting = []
    for collection, kind in (("/apis/apps/v1/deployments", "Deployment"), ("/apis/apps/v1/statefulsets", "StatefulSet")):
        try:
            wait_for(client.watch_collection(collection, selector), lambda state: not _not_ready(state["items"]),
                     timeout_for(job, recorder, 300), "the drilled {0}s to be ready".format(kind))
        except WaitTimeout as exc:
            waiting += _not_ready(((exc.last or {}).get("items")) or {}) or ["{0}s not read".format(kind)]
    return waiting


def _remove(client, job, recorder, namespaces, restore_name):
    """Delete the scratch namespaces and the Restore, and wait until they are gone."""
    for namespace in namespaces:
        client.request("Deleting namespace {0}".format(namespace), "DELETE", "/api/v1/namespaces/{0}".format(namespace), missing_ok=True)
    objects.delete_plain(client, "restores", restore_name)
    for namespace in namespaces:
        try:
            wait_for(client.watch_path("/api/v1/namespaces", namespace), lambda obj: obj is None, timeout_for(job, recorder),
                     "namespace {0} to be deleted".format(namespace))
        except WaitTimeout:
            raise FleetdrError("scratch namespace {0} was not deleted within {1}s".format(namespace, timeout_for(job, recorder)))


def operation(job):
    suffix = job.params.get("scratch_suffix") or "drill"

    def operation(cluster, recorder):
        client = job.clients.connect(cluster)
        pre = preflight(client, job, recorder)
        backup = drill_backup(client, job, cluster["name"])
        backup_name = backup["metadata"]["name"]
        namespaces = drill_namespaces(job, backup)
        mapping = dict((namespace, names.make_name(namespace, suffix, max_length=63)) for namespace in namespaces)
        taken = [scratch for scratch in mapping.values()
                 if client.request("Reading namespace {0}".format(scratch), "GET", "/api/v1/namespaces/" + scratch, missing_ok=True)]
        if taken:
            raise PreflightError("scratch namespace {0} already exists; a drill never restores over existing objects "
                                 "(delete it, or choose another scratch_suffix)".format(", ".join(taken)))
        completed = parse_timestamp((backup.get("status") or {}).get("completionTimestamp"))
        rpo = (utcnow() - completed).total_seconds() if completed else None
        restore_name = names.fleet_object_name(job.name, cluster["name"])
        options = {"included_namespaces": namespaces, "namespace_mapping": mapping, "existing_resource_policy": "none",
                   "restore_pvs": True}
        if job.check_mode:
            entry, _obj, changed = run_restore(client, job, recorder, cluster, backup_name, restore_name, pre["location"],
                                               restore_options=options)
            job.mark_changed(cluster["name"], changed)
            entry["details"] = {"backup": backup_name, "rpo_s": rpo, "scratch_namespaces": sorted(mapping.values())}
            return entry
        started = utcnow()
        pvbs = results.synced_volume_backups(client, backup, timeout_for(job, recorder), job.secret_values)
        job.mark_changed(cluster["name"], True)
        try:
            entry, _obj, _changed = run_restore(client, job, recorder, cluster, backup_name, restore_name,
                                                (backup.get("spec") or {}).get("storageLocation"), pvbs, restore_options=options)
            problems = [] if entry["verdict"] == "succeeded" else [entry.get("reason") or "the restore did not succeed"]
            recorder.phase("CheckingWorkloads")
            waiting = wait_workloads(client, job, recorder, restore_name)
            if waiting:
                problems.append("workloads not ready: " + "; ".join(waiting))
            rto = (utcnow() - started).total_seconds()
            recorded = dict((volume_data.describe(p), volume_data.volume_bytes(p)) for p in pvbs)
            checked = []
            for volume in entry.get("volumes") or []:
                source = "{0}/{1}".format(next((n for n, s in mapping.items() if s == volume["namespace"]), volume["namespace"]),
                                          volume["pvc"])
                expected = recorded.get(source)
                same = volume.get("moved") and expected is not None and volume.get("bytes") == expected
                checked.append({"pvc": "{0}/{1}".format(volume["namespace"], volume["pvc"]), "backed_up_bytes": expected,
                                "restored_bytes": volume.get("bytes"), "matches": bool(same)})
                if not same:
                    problems.append("volume {0}: restored {1} bytes of {2} recorded ({3})".format(
                        source, volume.get("bytes"), expected, volume.get("reason") or "bytes differ"))
        finally:
            if not job.params.get("keep"):
                recorder.phase("CleaningUp")
                _remove(client, job, recorder, sorted(mapping.values()), restore_name)
        entry.update({"verdict": "failed" if problems else "succeeded", "reason": "; ".join(problems) or None,
                      "phase": "Drilled" if not problems else entry.get("phase"),
                      "details": {"backup": backup_name, "rpo_s": round(rpo, 1) if rpo is not None else None, "rto_s": round(rto, 1),
                                  "scratch_namespaces": sorted(mapping.values()), "kept": bool(job.params.get("keep")),
                                  "volumes_checked": checked}})
        return entry
    return operation
