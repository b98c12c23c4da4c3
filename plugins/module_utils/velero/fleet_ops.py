# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Per-cluster steps of the fleet operations (backup, restore, migrate, schedule, status, installed).

Each ``op_*`` function has the signature fleet.run_fleet wants: ``(cluster, recorder) -> partial
result``; the run-wide inputs travel in a ``FleetRun`` (validated once, before any API call).
A cluster's failure raises (or returns verdict failed) and stays that cluster's result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import threading

from ansible_collections.fleetdr.kube.plugins.module_utils.client import ClusterClients
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.fleet import SkipCluster
from ansible_collections.fleetdr.kube.plugins.module_utils.report import parse_timestamp
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, volume_data
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for

PREFLIGHT_TIMEOUT = 30
# Velero's sync ticker is 1m; a short per-BSL period makes the read-only location resync soon after.
READONLY_SYNC_PERIOD = "10s"


class PreflightError(FleetdrError):
    """A cluster is not ready for the operation (the message says why)."""


class FleetRun(object):
    """Run-wide inputs of one fleet operation, shared (read-only) by the cluster threads."""

    def __init__(self, operation, name, params, velero_namespace="velero", wait_timeout=600, check_mode=False):
        self.operation = operation
        self.name = name
        self.params = params
        self.velero_namespace = velero_namespace
        self.wait_timeout = wait_timeout
        self.check_mode = check_mode
        self.secret_values = set()  # credentials read while working; scrubbed from the report
        self.changed = {}  # cluster -> bool
        self.lock = threading.Lock()
        self.clients = ClusterClients(velero_namespace)
        # migrate coordination
        self.preflight_done = {}
        self.source_backup = None  # (ok, backup object or reason)
        self.source_pvbs = []  # the source backup's PodVolumeBackups: what every target must receive
        self.cond = threading.Condition(self.lock)

    def mark_changed(self, cluster, changed):
        with self.lock:
            self.changed[cluster] = bool(self.changed.get(cluster)) or bool(changed)


def timeout_for(run, recorder, cap=None):
    """A wait timeout bounded by the operation's wait_timeout and the fleet deadline."""
    values = [run.wait_timeout]
    if cap is not None:
        values.append(cap)
    remaining = recorder.remaining()
    if remaining is not None:
        values.append(remaining)
    return max(int(min(values)), 1)


def with_final_phase(operation):
    """Close each cluster's timeline with its final phase (Failed when the operation raised)."""
    def wrapped(cluster, recorder):
        try:
            partial = operation(cluster, recorder)
        except SkipCluster:
            raise
        except Exception:
            recorder.phase("Failed")
            raise
        if partial and partial.get("phase"):
            recorder.phase("Failed" if partial.get("verdict") == "failed" else partial["phase"])
        return partial
    return wrapped


# --------------------------------------------------------------------------- pre-flight

def _image_version(deployment):
    for container in ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
        if container.get("name") == "velero" or "velero/velero" in (container.get("image") or ""):
            image = container.get("image") or ""
            tail = image.rsplit("/", 1)[-1]
            return tail.split(":", 1)[1].split("@")[0] if ":" in tail else None
    return None


def velero_deployment(client):
    """The Velero server Deployment, or None when Velero is not installed; raises when unreachable."""
    # One retry and a short timeout: an unreachable cluster should fail its pre-flight quickly.
    return client.get_raw("/apis/apps/v1/namespaces/{0}/deployments/velero".format(client.namespace),
                          "Reading Deployment {0}/velero".format(client.namespace), retries=1, timeout=15)


def minor_version(version):
    """'v1.18.1' -> (1, 18); None when it cannot be read."""
    if not version:
        return None
    parts = version.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return None


def preflight(client, run, recorder, location_name=None):
    """Velero Deployment ready and the location Available; returns {version, location, bsl}."""
    recorder.phase("Preflight")
    deployment = velero_deployment(client)
    if deployment is None:
        raise PreflightError("Velero is not installed: Deployment velero not found in namespace {0}".format(client.namespace))
    status = deployment.get("status") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    if not status.get("availableReplicas"):
        raise PreflightError("Velero server is not ready: {0}/{1} replicas available in namespace {2}".format(
            status.get("availableReplicas") or 0, wanted, client.namespace))
    try:
        location = objects.check_storage_location(client, location_name)
    except FleetdrError as exc:
        raise PreflightError(exc.msg)
    name = location["metadata"]["name"]
    if (location.get("status") or {}).get("phase") != "Available":
        try:
            location = wait_for(client.watch_source("backupstoragelocations", name),
                                lambda obj: (obj or {}).get("status", {}).get("phase") in ("Available", "Unavailable"),
                                timeout_for(run, recorder, PREFLIGHT_TIMEOUT), "BackupStorageLocation {0} to be validated".format(name))
        except WaitTimeout:
            raise PreflightError("BackupStorageLocation {0} was not validated within {1}s".format(name, PREFLIGHT_TIMEOUT))
        if location["status"]["phase"] != "Available":
            raise PreflightError("BackupStorageLocation {0} is Unavailable: {1}".format(
                name, location["status"].get("message") or "no reason given"))
    return {"version": _image_version(deployment), "location": name, "bsl": location}


# --------------------------------------------------------------------------- result shaping

def cluster_result(result, location=None, run=None, phase=None):
    """A report entry (partial) from a results.normalize() dict of a Backup or Restore (with its volumes)."""
    params = run.params if run is not None else {}
    messages = result.get("messages") or {}
    warnings = list(messages.get("warnings") or [])
    errors = list(messages.get("errors") or [])
    if not warnings and result.get("warnings"):
        warnings = ["{0} warnings (texts unavailable: {1})".format(result["warnings"], result.get("messages_error") or "none written")]
    if not errors and result.get("errors"):
        errors = ["{0} errors (texts unavailable: {1})".format(result["errors"], result.get("messages_error") or "none written")]
    errors.extend(result.get("validation_errors") or [])
    verdict, reason = results.verdict(result, params.get("allow_partially_failed"), params.get("allow_missing_volume_data"))
    progress = result.get("progress") or {}
    entry = {
        "verdict": verdict,
        "phase": phase or result.get("phase"),
        "reason": reason,
        "object": {"kind": result.get("kind"), "namespace": result.get("namespace"), "name": result.get("name")},
        "location": location or result.get("storage_location"),
        "items": {"total": progress.get("total_items"), "done": progress.get("items_done")},
        "warnings": warnings,
        "errors": errors,
    }
    if result.get("volumes") is not None:
        entry["volumes"] = result["volumes"]
    return entry


# --------------------------------------------------------------------------- backup

def run_backup(client, run, recorder, cluster_name, location_name, labels=None):
    """Create this cluster's Backup of the fleet backup and wait for it; returns (normalised, changed)."""
    spec = run.params["backup_spec"]
    name = names.fleet_object_name(run.name, cluster_name)
    all_labels = dict(run.params.get("labels") or {})
    all_labels.update(labels or names.ownership_labels(run.operation, run.name, cluster_name))
    recorder.phase("BackupInProgress")
    changed, obj, diff = objects.ensure_backup(client, name, spec, all_labels, run.check_mode, location_checked=True)
    del diff
    if not run.check_mode:
        obj = objects.wait_backup(client, name, timeout_for(run, recorder), initial=obj)
    result = results.normalize(obj, "Backup", client)
    if not run.check_mode:
        results.attach_details(result, client, location_name, run.secret_values)
        if result["phase"] in specs.BACKUP_TERMINAL_PHASES:
            result["volumes"] = volume_data.backup_volumes(client, obj)
    return result, changed


def op_backup(run):
    def operation(cluster, recorder):
        client = run.clients.connect(cluster)
        pre = preflight(client, run, recorder, run.params["backup_spec"].get("storageLocation"))
        result, changed = run_backup(client, run, recorder, cluster["name"], pre["location"])
        run.mark_changed(cluster["name"], changed)
        if run.check_mode:
            return {"verdict": "succeeded", "phase": "WouldCreate" if changed else "Exists",
                    "object": {"kind": "Backup", "namespace": client.namespace, "name": result["name"]},
                    "location": pre["location"]}
        return cluster_result(result, pre["location"], run)
    return operation


# --------------------------------------------------------------------------- restore

def _cluster_mappings(cluster, run):
    """Storage-class / image-registry maps: the run's options, overridden per cluster by inventory vars."""
    storage = dict(run.params.get("storage_class_mapping") or {})
    storage.update(cluster.get("storage_class_map") or {})
    image = dict(run.params.get("image_registry_mapping") or {})
    image.update(cluster.get("image_registry_map") or {})
    return {
        objects.STORAGE_CLASS_PLUGIN: ("fleetdr_storage_class_map", specs.validate_mapping(storage or None, "fleetdr_storage_class_map", "storage class")),
        objects.IMAGE_NAME_PLUGIN: ("fleetdr_image_registry_map", specs.validate_mapping(image or None, "fleetdr_image_registry_map", "image part")),
    }


def run_restore(client, run, recorder, cluster, backup_name, restore_name, location=None, pvbs=None):
    """Create the Restore of ``backup_name`` and wait; returns (partial report entry, restore obj, changed).

    ``pvbs``: the backup's PodVolumeBackups, already present on this cluster; each volume they
    hold is accounted for in the entry's ``volumes``.
    """
    params = dict(run.params["restore_options"])
    params["backup_name"] = backup_name
    spec = specs.build_restore_spec(params, backup_name)
    labels = dict(run.params.get("labels") or {})
    labels.update(names.ownership_labels(run.operation, run.name, cluster["name"]))
    mappings = _cluster_mappings(cluster, run)
    recorder.phase("RestoreInProgress")
    changed, obj, diff, config_changes = objects.ensure_restore(
        client, restore_name, spec, labels, mappings, run.params.get("resource_modifier_rules"), run.check_mode)
    del diff, config_changes
    if run.check_mode:
        return ({"verdict": "succeeded", "phase": "WouldCreate" if changed else "Exists",
                 "object": {"kind": "Restore", "namespace": client.namespace, "name": restore_name}}, obj, changed)
    obj = objects.wait_restore(client, restore_name, timeout_for(run, recorder))
    result = results.normalize(obj, "Restore", client)
    results.attach_details(result, client, location, run.secret_values)
    if result["phase"] in specs.RESTORE_TERMINAL_PHASES:
        result["volumes"] = volume_data.restore_volumes(client, obj, pvbs if pvbs is not None else volume_data.backup_pvbs(client, backup_name))
    return cluster_result(result, location, run), obj, changed


def restore_name_for(run, cluster_name):
    return names.fleet_object_name(run.name, cluster_name)


def op_restore(run):
    def operation(cluster, recorder):
        client = run.clients.connect(cluster)
        preflight(client, run, recorder)
        if run.params.get("backup_name"):
            backup_name = names.fleet_object_name(run.params["backup_name"], cluster["name"])
            backup = client.get("backups", backup_name)
            if backup is None:
                raise SkipCluster("no Backup {0} on this cluster (fleet backup {1} did not include it)".format(
                    backup_name, run.params["backup_name"]))
        else:
            schedule = names.fleet_object_name(run.params["schedule_name"], cluster["name"], max_length=names.MAX_SCHEDULE_NAME)
            backup = objects.newest_completed_backup(client, schedule)
            backup_name = backup["metadata"]["name"]
        location = (backup.get("spec") or {}).get("storageLocation")
        pvbs = None if run.check_mode else results.synced_volume_backups(client, backup, timeout_for(run, recorder), run.secret_values)
        entry, obj, changed = run_restore(client, run, recorder, cluster, backup_name, restore_name_for(run, cluster["name"]),
                                          location, pvbs)
        run.mark_changed(cluster["name"], changed)
        return entry
    return operation


# --------------------------------------------------------------------------- migrate

def readonly_location_spec(source_bsl, target_bsl):
    """A ReadOnly BSL on the source's bucket/prefix, using the target's own credentials Secret."""
    source_spec = source_bsl.get("spec") or {}
    target_spec = (target_bsl or {}).get("spec") or {}
    spec = {
        "provider": source_spec.get("provider"),
        "objectStorage": dict(source_spec.get("objectStorage") or {}),
        "config": dict(source_spec.get("config") or {}),
        "accessMode": "ReadOnly",
        "backupSyncPeriod": READONLY_SYNC_PERIOD,
        "default": False,
    }
    credential = target_spec.get("credential") or source_spec.get("credential")
    if credential:
        spec["credential"] = credential
    return spec


def _target_namespaces(run):
    options = run.params["restore_options"]
    mapping = options.get("namespace_mapping") or {}
    included = options.get("included_namespaces") or run.params["backup_spec"].get("includedNamespaces") or []
    return [mapping.get(ns, ns) for ns in included if ns != "*" and "*" not in ns]


def _migrate_source(run, cluster, recorder, client, targets):
    """Back up the source once every target finished its pre-flight (and at least one passed)."""
    with run.cond:
        run.cond.wait_for(lambda: all(t in run.preflight_done for t in targets), timeout=timeout_for(run, recorder))
        passed = [t for t in targets if run.preflight_done.get(t) is True]
    if not passed:
        reason = "no target passed its pre-flight; nothing was backed up"
        with run.cond:
            run.source_backup = (False, reason)
            run.cond.notify_all()
        raise PreflightError(reason)
    try:
        result, changed = run_backup(client, run, recorder, cluster["name"], run.params["source_location"])
        entry = cluster_result(result, run.params["source_location"], run)
        # What each target must hold before its restore may start (see volume_data.wait_for_pvbs).
        source_pvbs = volume_data.backup_pvbs(client, result["name"]) if entry["verdict"] != "failed" else []
    except Exception as exc:
        with run.cond:
            run.source_backup = (False, "source backup failed: {0}".format(exc))
            run.cond.notify_all()
        raise
    run.mark_changed(cluster["name"], changed)
    with run.cond:
        run.source_pvbs = source_pvbs
        run.source_backup = (entry["verdict"] == "succeeded", result["name"] if entry["verdict"] == "succeeded" else
                             "source backup {0} ended {1}: {2}".format(result["name"], result["phase"], entry["reason"]))
        run.cond.notify_all()
    if entry["verdict"] == "succeeded":
        entry["phase"] = "Completed"
    return entry


def existing_pvcs(client, run):
    """PVCs of the migrated namespaces that already exist on a target ("namespace/name")."""
    found = []
    for namespace in _target_namespaces(run):
        found.extend("{0}/{1}".format(namespace, pvc["metadata"]["name"]) for pvc in client.list_core("persistentvolumeclaims", namespace))
    return sorted(found)


def _target_preflight(run, client, recorder):
    """Velero ready, namespaces free (or a policy to restore over them), same Velero minor as the source."""
    preflight(client, run, recorder)
    if not run.params["restore_options"].get("existing_resource_policy"):
        taken = [ns for ns in _target_namespaces(run) if client.namespace_exists(ns)]
        if taken:
            raise PreflightError("target namespaces already exist: {0} (set existing_resource_policy to restore over them)".format(
                ", ".join(taken)))
    version = minor_version(preflight_version(client))
    want = minor_version(run.params.get("source_version"))
    if version and want and version != want:
        raise PreflightError("Velero version {0} differs from the source's {1}".format(
            ".".join(map(str, version)), ".".join(map(str, want))))
    return existing_pvcs(client, run)


def _remove_source_location(client, run, location_name):
    """Take the read-only location off the target, with the Backup objects synced through it.

    Plain deletes, as ``velero backup-location delete`` does (pkg/cmd/cli/backuplocation/delete.go):
    a DeleteBackupRequest would remove the source's backup from storage. Their PodVolumeBackups
    go with them through ownerReferences. Returns True when something was deleted.
    """
    deleted = False
    for backup in client.list("backups", label_selector="velero.io/storage-location={0}".format(names.label_value(location_name))):
        deleted = client.delete("backups", backup["metadata"]["name"]) is not None or deleted
    return client.delete("backupstoragelocations", location_name) is not None or deleted


def _migrate_target(run, cluster, recorder, client, source_bsl):
    name = cluster["name"]
    try:
        existing = _target_preflight(run, client, recorder)
    except Exception:
        with run.cond:
            run.preflight_done[name] = False
            run.cond.notify_all()
        raise
    with run.cond:
        run.preflight_done[name] = True
        run.cond.notify_all()
    recorder.phase("sourceReady")
    recorder.phase("BackupInProgress")
    with run.cond:
        run.cond.wait_for(lambda: run.source_backup is not None, timeout=timeout_for(run, recorder))
        outcome = run.source_backup
    if outcome is None:
        raise FleetdrError("the source backup did not finish in time")
    ok, detail = outcome
    if not ok:
        raise FleetdrError(detail)
    backup_name = detail
    restore_name = restore_name_for(run, name)
    recorder.phase("RestoreInProgress")
    location_name = names.make_name("fleetdr-from", run.params["source"])
    done_before = client.get("restores", restore_name)
    if done_before is None and not run.check_mode:
        target_bsl = objects.check_storage_location(client, None)
        objects.ensure_location(client, "backupstoragelocations", "BackupStorageLocation", location_name,
                                readonly_location_spec(source_bsl, target_bsl),
                                names.ownership_labels(run.operation, run.name, name))
        # Velero syncs a location on its own ticker (create events do not trigger one), so the Backup
        # appears once the new read-only location was validated and synced; its PodVolumeBackups
        # come after it, and the Restore must not start before they are all here.
        wait_for(client.watch_source("backups", backup_name),
                 lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in specs.BACKUP_TERMINAL_PHASES,
                 timeout_for(run, recorder), "Backup {0} to be synced from {1}".format(backup_name, run.params["source"]))
        volume_data.wait_for_pvbs(client, backup_name, run.source_pvbs, timeout_for(run, recorder))
    entry, obj, changed = run_restore(client, run, recorder, cluster, backup_name, restore_name, location_name, run.source_pvbs)
    if not run.check_mode and not run.params.get("keep_source_location") and _remove_source_location(client, run, location_name):
        changed = True
    run.mark_changed(name, changed)
    if existing:
        note = "PVCs that already existed on this cluster kept their own data (Velero never overwrites volume data): {0}".format(
            ", ".join(existing))
        entry.setdefault("warnings", []).insert(0, note)
        entry["details"] = dict(entry.get("details") or {}, existing_pvcs=existing)
    if entry["verdict"] != "succeeded":
        return entry
    missing = [ns for ns in _target_namespaces(run) if not client.namespace_exists(ns)]
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
    return _image_version(deployment) if deployment else None


def op_migrate(run, source_cluster, targets):
    """Source backs up once; every target gets a read-only location, a sync and its restore in parallel."""
    source_state = {}

    def operation(cluster, recorder):
        try:
            client = run.clients.connect(cluster)
            if cluster["name"] == run.params["source"]:
                try:
                    pre = preflight(client, run, recorder, run.params["backup_spec"].get("storageLocation"))
                except Exception as exc:
                    with run.cond:
                        run.source_backup = (False, "source pre-flight failed: {0}".format(exc))
                        run.cond.notify_all()
                    raise
                with run.cond:
                    source_state.update(pre)
                    run.params["source_location"] = pre["location"]
                    run.params["source_version"] = pre["version"]
                    run.cond.notify_all()
                recorder.phase("sourceReady")
                return _migrate_source(run, cluster, recorder, client, targets)
            with run.cond:
                run.cond.wait_for(lambda: "bsl" in source_state or run.source_backup is not None, timeout=timeout_for(run, recorder))
                source_bsl = source_state.get("bsl")
            if source_bsl is None:
                with run.cond:
                    run.preflight_done[cluster["name"]] = False
                    run.cond.notify_all()
                detail = (run.source_backup or (False, "source not ready in time"))[1]
                raise FleetdrError(detail)
            return _migrate_target(run, cluster, recorder, client, source_bsl)
        except Exception:
            recorder.phase("Failed")
            with run.cond:
                run.preflight_done.setdefault(cluster["name"], False)
                run.cond.notify_all()
            raise
    return operation


# --------------------------------------------------------------------------- schedule

def op_schedule(run):
    params = run.params

    def operation(cluster, recorder):
        client = run.clients.connect(cluster)
        name = names.fleet_object_name(run.name, cluster["name"], max_length=names.MAX_SCHEDULE_NAME)
        obj_ref = {"kind": "Schedule", "namespace": client.namespace, "name": name}
        if params["state"] == "absent":
            recorder.phase("Deleting")
            changed, _existing = objects.delete_plain(client, "schedules", name, run.check_mode)
            run.mark_changed(cluster["name"], changed)
            return {"verdict": "succeeded", "phase": "Deleted" if changed else "Absent", "object": obj_ref}
        pre = preflight(client, run, recorder, (params.get("backup_spec") or {}).get("storageLocation"))
        if params.get("from_backup"):
            template = objects.template_from_backup(client, names.fleet_object_name(params["from_backup"], cluster["name"]))
        else:
            template = params["backup_spec"]
        labels = dict(params.get("labels") or {})
        labels.update(names.ownership_labels("schedule", run.name, cluster["name"]))
        template = dict(template)
        template["metadata"] = {"labels": dict(labels)}
        spec = objects.schedule_spec(params["schedule"], template, params.get("paused", False),
                                     skip_immediately=params.get("skip_immediately"))
        recorder.phase("Applying")
        changed, obj, diff = objects.ensure_schedule(client, name, spec, labels, run.check_mode)
        del diff
        run.mark_changed(cluster["name"], changed)
        status = (obj or {}).get("status") or {}
        phase = "Paused" if spec["paused"] else (status.get("phase") or "New")
        verdict = "failed" if status.get("phase") == "FailedValidation" else "succeeded"
        return {"verdict": verdict, "phase": phase, "object": obj_ref, "location": pre["location"],
                "reason": "; ".join(status.get("validationErrors") or []) or None,
                "details": {"schedule": spec["schedule"], "paused": spec["paused"], "changed": changed,
                            "last_backup": status.get("lastBackup")}}
    return operation


# --------------------------------------------------------------------------- status / installed

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


def op_status(run):
    def operation(cluster, recorder):
        client = run.clients.connect(cluster)
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
        max_age = run.params.get("max_backup_age_s")
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
                "velero_version": _image_version(deployment),
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


def op_installed(run):
    """What the install left on each cluster: Velero version, server readiness and location phase."""
    def operation(cluster, recorder):
        client = run.clients.connect(cluster)
        pre = preflight(client, run, recorder)
        bsl = pre["bsl"]
        return {"verdict": "succeeded", "phase": "Installed",
                "object": {"kind": "Deployment", "namespace": client.namespace, "name": "velero"},
                "location": pre["location"],
                "details": {"velero_version": pre["version"], "location_phase": (bsl.get("status") or {}).get("phase"),
                            "bucket": ((bsl.get("spec") or {}).get("objectStorage") or {}).get("bucket"),
                            "prefix": ((bsl.get("spec") or {}).get("objectStorage") or {}).get("prefix")}}
    return operation
