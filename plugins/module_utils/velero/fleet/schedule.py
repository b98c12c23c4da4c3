# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fleet schedule: create, update, pause or delete one Schedule per cluster."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import preflight


def operation(job):
    params = job.params

    def operation(cluster, recorder):
        client = job.clients.connect(cluster)
        name = names.fleet_object_name(job.name, cluster["name"], max_length=names.MAX_SCHEDULE_NAME)
        obj_ref = {"kind": "Schedule", "namespace": client.namespace, "name": name}
        if params["state"] == "absent":
            recorder.phase("Deleting")
            changed, _existing = objects.delete_plain(client, "schedules", name, job.check_mode)
            job.mark_changed(cluster["name"], changed)
            return {"verdict": "succeeded", "phase": "Deleted" if changed else "Absent", "object": obj_ref}
        pre = preflight(client, job, recorder, (params.get("backup_spec") or {}).get("storageLocation"))
        if params.get("from_backup"):
            template = objects.template_from_backup(client, names.fleet_object_name(params["from_backup"], cluster["name"]))
        else:
            template = params["backup_spec"]
        labels = dict(params.get("labels") or {})
        labels.update(names.ownership_labels("schedule", job.name, cluster["name"]))
        template = dict(template)
        template["metadata"] = {"labels": dict(labels)}
        spec = objects.schedule_spec(params["schedule"], template, params.get("paused", False),
                                     skip_immediately=params.get("skip_immediately"))
        recorder.phase("Applying")
        changed, obj, diff = objects.ensure_schedule(client, name, spec, labels, job.check_mode)
        del diff
        job.mark_changed(cluster["name"], changed)
        status = (obj or {}).get("status") or {}
        phase = "Paused" if spec["paused"] else (status.get("phase") or "New")
        verdict = "failed" if status.get("phase") == "FailedValidation" else "succeeded"
        return {"verdict": verdict, "phase": phase, "object": obj_ref, "location": pre["location"],
                "reason": "; ".join(status.get("validationErrors") or []) or None,
                "details": {"schedule": spec["schedule"], "paused": spec["paused"], "changed": changed,
                            "last_backup": status.get("lastBackup")}}
    return operation
