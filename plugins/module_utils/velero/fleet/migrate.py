# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Migrate: the source backs up once; every target gets a read-only location on the source's prefix,
waits for the backup and its PodVolumeBackups to sync, restores, and drops the location again."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import threading

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, volume_data
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.backup import run_backup
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.job import (
    PreflightError,
    TimedOut,
    cluster_result,
    minor_version,
    preflight,
    timeout_for,
)
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.objects import image_version, velero_deployment
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet.restore import restore_name_for, run_restore
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for

# Velero's sync ticker is 1m; a short per-BSL period makes the read-only location resync soon after.
READONLY_SYNC_PERIOD = "10s"


class Handoff(object):
    """What the source and the target threads of one migration tell each other, under one condition."""

    def __init__(self):
        self.cond = threading.Condition()
        self.preflight_done = {}  # target -> passed its pre-flight
        self.source = None  # the source's pre-flight: {version, location, bsl}
        self.source_location = None
        self.source_version = None
        self.source_backup = None  # (ok, backup name or reason)
        self.source_pvbs = []  # the source backup's PodVolumeBackups: what every target must receive
        self.source_credential = None  # {key: base64 value} the source's location reads its bucket with


# Velero's default credentials when a location names none: the Secret `velero install` mounts as
# AWS_SHARED_CREDENTIALS_FILE (pkg/install/resources.go, credentialsSecretName / key "cloud").
DEFAULT_CREDENTIAL = {"name": "cloud-credentials", "key": "cloud"}


def readonly_location_spec(source_bsl, credential):
    """A ReadOnly BSL on the source's bucket/prefix, reading it with ``credential`` ({name, key})."""
    source_spec = source_bsl.get("spec") or {}
    return specs.location_spec(
        source_spec.get("provider"), dict(source_spec.get("objectStorage") or {}), dict(source_spec.get("config") or {}),
        access_mode="ReadOnly", default=False, backup_sync_period=READONLY_SYNC_PERIOD, credential=credential)


def source_credential(client, source_bsl):
    """{key: base64 value} of what the source's location reads its bucket with, or None.

    A target's own keys may not reach the source's bucket (each cluster's bucket claim in a Rook
    vault: RGW answers AccessDenied for another user's bucket), so the target's read-only location
    carries the source's credentials, copied into a Secret of its own.
    """
    credential = (source_bsl.get("spec") or {}).get("credential") or DEFAULT_CREDENTIAL
    value = ((client.get_secret(credential["name"]) or {}).get("data") or {}).get(credential["key"])
    return {credential["key"]: value} if value else None


def _put_readonly_credential(client, name, data, labels):
    """The source's credentials as Secret ``name`` on the target (created or brought up to date)."""
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": client.namespace, "labels": labels}, "data": data}
    existing = client.get_secret(name)
    if existing is None:
        client.create_secret(body)
    elif existing.get("data") != data:
        body["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
        client.replace_secret(name, body)


def _target_namespaces(job):
    options = job.params["restore_options"]
    mapping = options.get("namespace_mapping") or {}
    included = options.get("included_namespaces") or job.params["backup_spec"].get("includedNamespaces") or []
    return [mapping.get(ns, ns) for ns in included if ns != "*" and "*" not in ns]


def _migrate_source(job, handoff, cluster, recorder, client, targets):
    """Back up the source once every target finished its pre-flight (and at least one passed)."""
    with handoff.cond:
        handoff.cond.wait_for(lambda: all(t in handoff.preflight_done for t in targets), timeout=timeout_for(job, recorder))
        passed = [t for t in targets if handoff.preflight_done.get(t) is True]
    if not passed:
        reason = "no target passed its pre-flight; nothing was backed up"
        with handoff.cond:
            handoff.source_backup = (False, reason)
            handoff.cond.notify_all()
        raise PreflightError(reason)
    try:
        result, changed = run_backup(client, job, recorder, cluster["name"], handoff.source_location)
        entry = cluster_result(result, handoff.source_location, job)
        # What each target must hold before its restore may start (see volume_data.wait_for_pvbs).
        source_pvbs = volume_data.backup_pvbs(client, result["name"]) if entry["verdict"] != "failed" else []
    except TimedOut as exc:
        with handoff.cond:
            handoff.source_backup = (False, "source backup failed: {0}".format(exc))
            handoff.cond.notify_all()
        job.mark_changed(cluster["name"], True)
        return exc.entry
    except Exception as exc:
        with handoff.cond:
            handoff.source_backup = (False, "source backup failed: {0}".format(exc))
            handoff.cond.notify_all()
        raise
    job.mark_changed(cluster["name"], changed)
    with handoff.cond:
        handoff.source_pvbs = source_pvbs
        ok = entry["verdict"] == "succeeded"
        handoff.source_backup = (ok, result["name"] if ok else "source backup {0} ended {1}: {2}".format(
            result["name"], result["phase"], entry["reason"]))
        handoff.cond.notify_all()
    if entry["verdict"] == "succeeded":
        entry["phase"] = "Completed"
    return entry


def existing_pvcs(client, job):
    """PVCs of the migrated namespaces that already exist on a target ("namespace/name")."""
    found = []
    for namespace in _target_namespaces(job):
        found.extend("{0}/{1}".format(namespace, pvc["metadata"]["name"]) for pvc in client.list_core("persistentvolumeclaims", namespace))
    return sorted(found)


def _target_preflight(job, handoff, client, recorder):
    """Velero ready, namespaces free (or a policy to restore over them), same Velero minor as the source."""
    preflight(client, job, recorder)
    if not job.params["restore_options"].get("existing_resource_policy"):
        taken = [ns for ns in _target_namespaces(job) if client.namespace_exists(ns)]
        if taken:
            raise PreflightError("target namespaces already exist: {0} (set existing_resource_policy to restore over them)".format(
                ", ".join(taken)))
    version = minor_version(preflight_version(client))
    want = minor_version(handoff.source_version)
    if version and want and version != want:
        raise PreflightError("Velero version {0} differs from the source's {1}".format(
            ".".join(map(str, version)), ".".join(map(str, want))))
    return existing_pvcs(client, job)


def _remove_source_location(client, job, location_name):
    """Take the read-only location off the target, with the Backup objects synced through it.

    Plain deletes, as ``velero backup-location delete`` does (pkg/cmd/cli/backuplocation/delete.go):
    a DeleteBackupRequest would remove the source's backup from storage. Their PodVolumeBackups
    go with them through ownerReferences; the copy of the source's credentials goes too. Returns
    True when something was deleted.
    """
    deleted = False
    for backup in client.list("backups", label_selector="velero.io/storage-location={0}".format(names.label_value(location_name))):
        deleted = client.delete("backups", backup["metadata"]["name"]) is not None or deleted
    deleted = client.delete("backupstoragelocations", location_name) is not None or deleted
    return client.delete_secret(location_name) is not None or deleted


def open_readonly_location(client, labels, location_name, source_bsl, source_credential, timeout):
    """The target's read-only location on the source's bucket, with the source's credentials, once
    Velero validated it. A location that cannot reach the bucket never syncs: it fails here, saying
    why, instead of waiting out the operation's time for a Backup that cannot appear."""
    if source_credential:
        _put_readonly_credential(client, location_name, source_credential, labels)
        credential = {"name": location_name, "key": list(source_credential)[0]}
    else:  # the source's Secret was not readable: try the target's own
        target_bsl = objects.check_storage_location(client, None)
        credential = ((target_bsl or {}).get("spec") or {}).get("credential")
    objects.ensure_location(client, "backupstoragelocations", "BackupStorageLocation", location_name,
                            readonly_location_spec(source_bsl, credential), labels)
    validated = objects.wait_location_validated(client, location_name, None, timeout)
    if (validated.get("status") or {}).get("phase") != "Available":
        raise FleetdrError("read-only location {0} on the source's bucket is Unavailable: {1}".format(
            location_name, validated["status"].get("message") or "no reason given"))
    return validated


def _migrate_target(job, handoff, cluster, recorder, client, source_bsl):
    name = cluster["name"]
    try:
        existing = _target_preflight(job, handoff, client, recorder)
    except Exception:
        with handoff.cond:
            handoff.preflight_done[name] = False
            handoff.cond.notify_all()
        raise
    with handoff.cond:
        handoff.preflight_done[name] = True
        handoff.cond.notify_all()
    recorder.phase("sourceReady")
    recorder.phase("BackupInProgress")
    with handoff.cond:
        handoff.cond.wait_for(lambda: handoff.source_backup is not None, timeout=timeout_for(job, recorder))
        outcome = handoff.source_backup
    if outcome is None:
        raise FleetdrError("the source backup did not finish in time")
    ok, detail = outcome
    if not ok:
        raise FleetdrError(detail)
    backup_name = detail
    restore_name = restore_name_for(job, name)
    recorder.phase("RestoreInProgress")
    location_name = names.make_name("fleetdr-from", job.params["source"])
    done_before = client.get("restores", restore_name)
    if done_before is None and not job.check_mode:
        open_readonly_location(client, names.ownership_labels(job.operation, job.name, name), location_name, source_bsl,
                               handoff.source_credential, timeout_for(job, recorder))
        # Velero syncs a location on its own ticker (create events do not trigger one), so the Backup
        # appears once the new read-only location was validated and synced; its PodVolumeBackups
        # come after it, and the Restore must not start before they are all here.
        wait_for(client.watch_source("backups", backup_name),
                 lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in specs.BACKUP_TERMINAL_PHASES,
                 timeout_for(job, recorder), "Backup {0} to be synced from {1}".format(backup_name, job.params["source"]))
        volume_data.wait_for_pvbs(client, backup_name, handoff.source_pvbs, timeout_for(job, recorder))
    entry, obj, changed = run_restore(client, job, recorder, cluster, backup_name, restore_name, location_name, handoff.source_pvbs)
    if not job.check_mode and not job.params.get("keep_source_location") and _remove_source_location(client, job, location_name):
        changed = True
    job.mark_changed(name, changed)
    if existing:
        note = "PVCs that already existed on this cluster kept their own data (Velero never overwrites volume data): {0}".format(
            ", ".join(existing))
        entry.setdefault("warnings", []).insert(0, note)
        entry["details"] = dict(entry.get("details") or {}, existing_pvcs=existing)
    if entry["verdict"] != "succeeded":
        return entry
    missing = [ns for ns in _target_namespaces(job) if not client.namespace_exists(ns)]
    items = entry.get("items") or {}
    if missing:
        entry.update(verdict="failed", reason="restored namespaces missing on the target: {0}".format(", ".join(missing)))
    elif items.get("total") is not None and items.get("done") != items.get("total"):
        entry.update(verdict="failed", reason="restore reported {0} of {1} items".format(items.get("done"), items.get("total")))
    else:
        entry["phase"] = "Completed"
    return entry


def preflight_version(client):
    deployment = velero_deployment(client)
    return image_version(deployment) if deployment else None


def operation(job, source_cluster, targets):
    """Source backs up once; every target gets a read-only location, a sync and its restore in parallel."""
    handoff = Handoff()

    def operation(cluster, recorder):
        try:
            client = job.clients.connect(cluster)
            if cluster["name"] == job.params["source"]:
                try:
                    pre = preflight(client, job, recorder, job.params["backup_spec"].get("storageLocation"))
                except Exception as exc:
                    with handoff.cond:
                        handoff.source_backup = (False, "source pre-flight failed: {0}".format(exc))
                        handoff.cond.notify_all()
                    raise
                try:
                    credential = source_credential(client, pre["bsl"])
                except Exception:  # unreadable (e.g. RBAC): the targets try their own keys
                    credential = None
                if credential:  # scrubbed from the report: the Secret's data and the secrets of its credentials file
                    value = list(credential.values())[0]
                    text = base64.b64decode(value).decode("utf-8", "replace")
                    pairs = [line.split("=", 1) for line in text.splitlines() if "=" in line]
                    with job.lock:
                        job.secret_values.update([value, text] + [v.strip() for k, v in pairs
                                                                  if ("secret" in k or "token" in k) and v.strip()])
                with handoff.cond:
                    handoff.source = pre
                    handoff.source_credential = credential
                    handoff.source_location = pre["location"]
                    handoff.source_version = pre["version"]
                    handoff.cond.notify_all()
                recorder.phase("sourceReady")
                return _migrate_source(job, handoff, cluster, recorder, client, targets)
            with handoff.cond:
                handoff.cond.wait_for(lambda: handoff.source is not None or handoff.source_backup is not None, timeout=timeout_for(job, recorder))
                source_bsl = (handoff.source or {}).get("bsl")
            if source_bsl is None:
                with handoff.cond:
                    handoff.preflight_done[cluster["name"]] = False
                    handoff.cond.notify_all()
                detail = (handoff.source_backup or (False, "source not ready in time"))[1]
                raise FleetdrError(detail)
            return _migrate_target(job, handoff, cluster, recorder, client, source_bsl)
        except Exception:
            recorder.phase("Failed")
            with handoff.cond:
                handoff.preflight_done.setdefault(cluster["name"], False)
                handoff.cond.notify_all()
            raise
    return operation
