# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Fleet install and uninstall of Velero through the apply engine.

Each cluster arrives with the objects role fleetdr.kube.velero renders for it (``objects``, CRDs
first) and the optional ones switched off (``switched_off``). Install: apply in phases, remove
what is switched off, wait by watch for the Deployment and the location to be Available, then
report what is installed. Uninstall: delete in reverse order; the bucket is never touched.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdr.kube.plugins.module_utils import apply
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import vault as rook_vault
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import preflight, timeout_for
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.status import installed_entry
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for


def _available(deployment):
    status = (deployment or {}).get("status") or {}
    meta = (deployment or {}).get("metadata") or {}
    current = status.get("observedGeneration", 0) >= meta.get("generation", 0)
    return current and any(c.get("type") == "Available" and c.get("status") == "True" for c in status.get("conditions") or [])


def _summary(changes):
    return [{"object": c["object"], "action": c["action"]} for c in changes if c["action"] not in ("unchanged", "absent")]


def operation(job):
    def install(cluster, recorder):
        client = job.clients.connect(cluster)
        namespace = job.velero_namespace
        if job.params["state"] == "absent":
            recorder.phase("Removing")
            changes = apply.remove(client, cluster["objects"], job.check_mode)
            changed = apply.changed(changes)
            job.mark_changed(cluster["name"], changed)
            job.record_diff(cluster["name"], changes)
            return {"verdict": "succeeded", "phase": ("WouldRemove" if job.check_mode else "Removed") if changed else "Absent",
                    "object": {"kind": "Namespace", "namespace": None, "name": namespace},
                    "details": {"changes": _summary(changes)}}
        vault = job.params.get("vault")
        vault_changed = False
        if vault:
            recorder.phase("ClaimingVaultBucket")
            vault_changed, bucket, access_key, secret_key = rook_vault.ensure_bucket(
                job.clients.connect(vault["target"]), vault, cluster["name"], timeout_for(job, recorder, 300), job.check_mode)
            if bucket:
                with job.lock:
                    job.secret_values.update((access_key, secret_key))
                rook_vault.point_at_vault(cluster["objects"], vault, bucket, access_key, secret_key)
            if cluster["name"] == vault["cluster"]:
                job.warn(cluster["name"], "this is the vault cluster: its own backups are kept in its own object store and do not "
                                          "survive its loss")
        recorder.phase("Applying")
        changes = apply.apply_phased(client, cluster["objects"], job.check_mode, job.params.get("force_conflicts"),
                                     timeout_for(job, recorder, 120), absent=cluster.get("switched_off") or [])
        changed = apply.changed(changes) or vault_changed
        job.mark_changed(cluster["name"], changed)
        job.record_diff(cluster["name"], changes)
        if job.check_mode:
            return {"verdict": "succeeded", "phase": "WouldChange" if changed else "Installed",
                    "object": {"kind": "Deployment", "namespace": namespace, "name": "velero"},
                    "details": {"changes": _summary(changes)}}
        # The Deployment as the engine read or applied it: already Available needs no watch, and the
        # watch starts from it (no list first).
        deployment = next((c.live for c in changes if c["object"] == "Deployment {0}/velero".format(namespace)), None)
        if not _available(deployment):
            recorder.phase("Waiting")
            try:
                deployment = wait_for(client.watch_path("/apis/apps/v1/namespaces/{0}/deployments".format(namespace), "velero"),
                                      _available, timeout_for(job, recorder), "Deployment {0}/velero to be Available".format(namespace),
                                      initial=deployment)
            except WaitTimeout as exc:
                raise FleetdrError("Deployment {0}/velero was not Available within {1}s: {2}".format(
                    namespace, timeout_for(job, recorder), _conditions(exc.last)))
        entry = installed_entry(client, preflight(client, job, recorder, deployment=deployment))
        entry["details"]["changes"] = _summary(changes)
        return entry
    return install


def _conditions(deployment):
    conditions = ((deployment or {}).get("status") or {}).get("conditions") or []
    return ", ".join("{0}={1}{2}".format(c.get("type"), c.get("status"), " ({0})".format(c["message"]) if c.get("message") else "")
                     for c in conditions) or ("missing" if deployment is None else "no status conditions")
