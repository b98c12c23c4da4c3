# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fleet backup: one Backup per cluster, waited for, with its volume data accounted for."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, volume_data
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import TimedOut, cancel_wait, cluster_result, preflight, timed_out, timeout_for


def run_backup(client, job, recorder, cluster_name, location_name, labels=None):
    """Create this cluster's Backup of the fleet backup and wait for it; returns (normalised, changed)."""
    spec = job.params["backup_spec"]
    if location_name and not spec.get("storageLocation"):
        # The location the pre-flight found Available, named: Velero writes its default into a Backup only
        # when the Backup leaves its queue, and refuses a DeleteBackupRequest for one without a location
        # (on_timeout=cancel of a queued Backup).
        spec = dict(spec, storageLocation=location_name)
    name = names.fleet_object_name(job.name, cluster_name)
    all_labels = dict(job.params.get("labels") or {})
    all_labels.update(labels or names.ownership_labels(job.operation, job.name, cluster_name))
    recorder.phase("BackupInProgress")
    changed, obj, diff = objects.ensure_backup(client, name, spec, all_labels, job.check_mode, location_checked=True)
    del diff
    if not job.check_mode:
        timeout = timeout_for(job, recorder)
        try:
            obj = objects.wait_backup(client, name, timeout, initial=obj)
        except WaitTimeout:
            raise TimedOut(timed_out(client, job, "Backup", "backups", name, timeout, cancel_timeout=cancel_wait(recorder)))
    result = results.normalize(obj, "Backup", client)
    if not job.check_mode:
        results.attach_details(result, client, location_name, job.secret_values)
        if result["phase"] in specs.BACKUP_TERMINAL_PHASES:
            result["volumes"] = volume_data.backup_volumes(client, obj)
    return result, changed


def operation(job):
    def operation(cluster, recorder):
        client = job.clients.connect(cluster)
        pre = preflight(client, job, recorder, job.params["backup_spec"].get("storageLocation"))
        try:
            result, changed = run_backup(client, job, recorder, cluster["name"], pre["location"])
        except TimedOut as exc:
            job.mark_changed(cluster["name"], True)
            return dict(exc.entry, location=pre["location"])
        job.mark_changed(cluster["name"], changed)
        if job.check_mode:
            return {"verdict": "succeeded", "phase": "WouldCreate" if changed else "Exists",
                    "object": {"kind": "Backup", "namespace": client.namespace, "name": result["name"]},
                    "location": pre["location"]}
        return cluster_result(result, pre["location"], job)
    return operation
