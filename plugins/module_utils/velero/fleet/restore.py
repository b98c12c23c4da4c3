# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fleet restore: each cluster restores its part of a fleet backup (or a schedule's newest good one)
once every PodVolumeBackup of it is on the cluster."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, volume_data
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import PreflightError, cluster_result, preflight, timed_out, timeout_for


def _cluster_mappings(cluster, job):
    """Storage-class / image-registry maps: the job's options, overridden per cluster by inventory vars."""
    storage = dict(job.params.get("storage_class_mapping") or {})
    storage.update(cluster.get("storage_class_map") or {})
    image = dict(job.params.get("image_registry_mapping") or {})
    image.update(cluster.get("image_registry_map") or {})
    return {
        objects.STORAGE_CLASS_PLUGIN: ("fleetdr_storage_class_map", specs.validate_mapping(storage or None, "fleetdr_storage_class_map", "storage class")),
        objects.IMAGE_NAME_PLUGIN: ("fleetdr_image_registry_map", specs.validate_mapping(image or None, "fleetdr_image_registry_map", "image part")),
    }


def run_restore(client, job, recorder, cluster, backup_name, restore_name, location=None, pvbs=None, restore_options=None):
    """Create the Restore of ``backup_name`` and wait; returns (partial report entry, restore obj, changed).

    ``pvbs``: the backup's PodVolumeBackups, already present on this cluster; each volume they
    hold is accounted for in the entry's ``volumes``. ``restore_options``: this cluster's own, instead
    of the job's.
    """
    params = dict(job.params["restore_options"] if restore_options is None else restore_options)
    params["backup_name"] = backup_name
    spec = specs.build_restore_spec(params, backup_name)
    labels = dict(job.params.get("labels") or {})
    labels.update(names.ownership_labels(job.operation, job.name, cluster["name"]))
    mappings = _cluster_mappings(cluster, job)
    recorder.phase("RestoreInProgress")
    changed, obj, diff, config_changes = objects.ensure_restore(
        client, restore_name, spec, labels, mappings, job.params.get("resource_modifier_rules"), job.check_mode)
    del diff, config_changes
    if job.check_mode:
        return ({"verdict": "succeeded", "phase": "WouldCreate" if changed else "Exists",
                 "object": {"kind": "Restore", "namespace": client.namespace, "name": restore_name}}, obj, changed)
    timeout = timeout_for(job, recorder)
    try:
        obj = objects.wait_restore(client, restore_name, timeout)
    except WaitTimeout:
        return timed_out(client, job, "Restore", "restores", restore_name, timeout), None, changed
    result = results.normalize(obj, "Restore", client)
    results.attach_details(result, client, location, job.secret_values)
    if result["phase"] in specs.RESTORE_TERMINAL_PHASES:
        result["volumes"] = volume_data.restore_volumes(client, obj, pvbs if pvbs is not None else volume_data.backup_pvbs(client, backup_name))
    return cluster_result(result, location, job), obj, changed


def restore_name_for(job, cluster_name):
    return names.fleet_object_name(job.name, cluster_name)


def operation(job):
    def operation(cluster, recorder):
        client = job.clients.connect(cluster)
        preflight(client, job, recorder)
        if job.params.get("backup_name"):
            backup_name = names.fleet_object_name(job.params["backup_name"], cluster["name"])
            backup = client.get("backups", backup_name)
            if backup is None:
                # The user selected this cluster and it cannot run the restore: failed, not skipped
                # (skipped is for clusters a selector or a health gate left out on purpose).
                raise PreflightError("no Backup {0} on this cluster (fleet backup {1} did not include it)".format(
                    backup_name, job.params["backup_name"]))
        else:
            schedule = names.fleet_object_name(job.params["schedule_name"], cluster["name"], max_length=names.MAX_SCHEDULE_NAME)
            backup = objects.newest_completed_backup(client, schedule)
            backup_name = backup["metadata"]["name"]
        location = (backup.get("spec") or {}).get("storageLocation")
        pvbs = None if job.check_mode else results.synced_volume_backups(client, backup, timeout_for(job, recorder), job.secret_values)
        entry, obj, changed = run_restore(client, job, recorder, cluster, backup_name, restore_name_for(job, cluster["name"]),
                                          location, pvbs)
        job.mark_changed(cluster["name"], changed)
        return entry
    return operation
