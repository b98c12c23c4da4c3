# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Create-if-absent / compare / delete for Velero objects.

Functions here take a ``KubeClient`` and already-validated specs, and return
``(changed, object, diff)``. Pre-flight checks (referenced location or backup
exists) run before the first write, so a bad reference creates nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import json
import time
import uuid

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import (
    ConflictError,
    FleetdrError,
    NotFoundError,
    ValidationError,
    WaitTimeout,
)
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, spec as specs

API_VERSION = "velero.io/v1"

# Velero adds these to a Backup's spec when it starts (Velero pkg/controller/backup_controller.go prepareBackupRequest); they are not user changes.
_AUTO_EXCLUDED = (
    "volumesnapshots.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
)
_SERVER_DEFAULTED_KEYS = ("ttl", "storageLocation", "volumeSnapshotLocations", "csiSnapshotTimeout", "itemOperationTimeout",
                          "defaultVolumesToFsBackup", "snapshotMoveData", "volumeGroupSnapshotLabelKey")


def velero_object(kind, name, namespace, spec, labels=None, annotations=None):
    metadata = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def requested_spec(obj):
    """The spec as the user gave it, if we recorded it at creation."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    text = annotations.get(names.ANNOTATION_REQUESTED_SPEC)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _tolerant_equal(key, want, have):
    """Compare one BackupSpec key, forgiving Velero's start-of-backup mutations."""
    if want == have:
        return True
    if key == "includedNamespaces" and want in ([], ["*"]) and have in (None, [], ["*"]):
        return True
    if key.startswith("excluded") and isinstance(want, list) and isinstance(have, list):
        extra = [x for x in have if x not in want]
        return all(x in have for x in want) and all(x in _AUTO_EXCLUDED or key == "excludedNamespaces" for x in extra)
    if key == "ttl" and want and have:
        return specs.parse_duration(want, "ttl") == specs.parse_duration(have, "ttl")
    return False


def spec_differences(want, existing_obj):
    """Keys where the stored object differs from the wanted spec (empty list = same)."""
    recorded = requested_spec(existing_obj)
    have_spec = (existing_obj or {}).get("spec") or {}
    if recorded is not None:
        keys = sorted(set(want) | set(recorded))
        # A Backup recorded without a location got Velero's default: naming that same location is no change.
        return [k for k in keys if want.get(k) != recorded.get(k)
                and not (k == "storageLocation" and k not in recorded and want[k] == have_spec.get(k))]
    diffs = []
    for key in sorted(set(want) | set(have_spec)):
        if key not in want:
            # Server-filled keys and keys Velero writes itself are not user differences.
            if key in _SERVER_DEFAULTED_KEYS or key.startswith("excluded") or key == "includedNamespaces":
                continue
            if have_spec.get(key) in (None, [], {}, False):
                continue
            diffs.append(key)
        elif not _tolerant_equal(key, want[key], have_spec.get(key)):
            diffs.append(key)
    return diffs


def _label_changes(want, have):
    have = have or {}
    return dict((k, v) for k, v in (want or {}).items() if have.get(k) != v)


def _updated_object(existing, have, new_spec, label_patch):
    """``existing`` with ``new_spec`` and the label changes applied, and the diff of that change."""
    before_labels = (existing.get("metadata") or {}).get("labels") or {}
    after_labels = dict(before_labels, **label_patch)
    diff = {"before": {"metadata": {"labels": before_labels}, "spec": have},
            "after": {"metadata": {"labels": after_labels}, "spec": new_spec}}
    updated = copy.deepcopy(existing)
    updated["spec"] = new_spec
    updated["metadata"]["labels"] = after_labels
    return updated, diff


# --------------------------------------------------------------------------- locations

def check_storage_location(client, name, option="storage_location"):
    """Fail before creating anything if the location is missing or known Unavailable; return it."""
    if name:
        location = client.get("backupstoragelocations", name)
        if location is None:
            raise NotFoundError(
                "{0}: BackupStorageLocation '{1}' does not exist in namespace {2}".format(option, name, client.namespace),
                option=option,
            )
    else:
        defaults = [loc for loc in client.list("backupstoragelocations") if (loc.get("spec") or {}).get("default")]
        location = defaults[0] if defaults else client.get("backupstoragelocations", "default")
        if location is None:
            raise NotFoundError(
                "{0}: no default BackupStorageLocation in namespace {1}; name one with {0}".format(option, client.namespace),
                option=option,
            )
    status = location.get("status") or {}
    if status.get("phase") == "Unavailable":
        raise FleetdrError(
            "{0}: BackupStorageLocation '{1}' is Unavailable: {2}".format(
                option, location["metadata"]["name"], status.get("message") or "no reason given"),
            option=option,
        )
    return location


# --------------------------------------------------------------------------- backups

def ensure_backup(client, name, spec, labels=None, check_mode=False, location_checked=False):
    """Create the Backup unless it exists; an existing one with another spec is a conflict.

    ``location_checked``: the caller has just found the location Available, so create at once and
    compare with an existing Backup only when the create conflicts (one request instead of three).
    """
    if check_mode or not location_checked:
        existing = client.get("backups", name)
        if existing is not None:
            return _existing_backup(client, name, spec, labels, existing, check_mode)
    if not location_checked:
        check_storage_location(client, spec.get("storageLocation"))
    annotations = {names.ANNOTATION_REQUESTED_SPEC: specs.canonical_json(spec)}
    body = velero_object("Backup", name, client.namespace, spec, labels, annotations)
    diff = {"before": {}, "after": {"metadata": body["metadata"], "spec": spec}}
    if check_mode:
        return True, body, diff
    try:
        created = client.create("backups", body)
    except Exception as exc:
        if getattr(exc, "status", None) == 409:  # a retried POST that had in fact succeeded, or a race
            existing = client.get("backups", name)
            if existing is not None:
                return _existing_backup(client, name, spec, labels, existing, check_mode)
        raise
    return True, created, diff


def _existing_backup(client, name, spec, labels, existing, check_mode):
    phase = (existing.get("status") or {}).get("phase")
    if phase == "Deleting":
        raise ConflictError("Backup {0} is being deleted; wait for the deletion to finish or choose another name".format(name), name=name)
    differences = spec_differences(spec, existing)
    if differences:
        have = requested_spec(existing) or existing.get("spec") or {}
        raise ConflictError(
            "Backup {0} already exists with a different spec ({1}); Velero backups are immutable, "
            "so choose a new name or delete the old backup first".format(name, ", ".join(differences)),
            name=name,
            differences=dict((k, {"requested": spec.get(k), "existing": have.get(k)}) for k in differences),
        )
    label_patch = _label_changes(labels, (existing.get("metadata") or {}).get("labels"))
    if not label_patch:
        return False, existing, {}
    diff = {"before": {"metadata": {"labels": (existing.get("metadata") or {}).get("labels") or {}}},
            "after": {"metadata": {"labels": dict((existing.get("metadata") or {}).get("labels") or {}, **label_patch)}}}
    if check_mode:
        return True, existing, diff
    updated = copy.deepcopy(existing)
    updated["metadata"].setdefault("labels", {}).update(label_patch)
    return True, client.replace("backups", name, updated), diff


def backup_done(obj):
    return obj is not None and (obj.get("status") or {}).get("phase") in specs.BACKUP_TERMINAL_PHASES


def wait_backup(client, name, timeout, initial=None):
    return wait_for(client.watch_source("backups", name), backup_done, timeout, "Backup {0} to finish".format(name), initial=initial)


def delete_backup(client, name, wait=True, timeout=600, check_mode=False):
    """Delete a backup the way `velero backup delete` does: through a DeleteBackupRequest.

    Velero then removes the data in object storage, snapshots and restores of it,
    and finally the Backup object. Returns (changed, last Backup state or None, request).
    """
    existing = client.get("backups", name)
    if existing is None:
        return False, None, None
    uid = existing["metadata"].get("uid") or ""
    request_name = names.make_name(name, "delete", uid[:8])
    body = {
        "apiVersion": API_VERSION,
        "kind": "DeleteBackupRequest",
        "metadata": {
            "name": request_name,
            "namespace": client.namespace,
            "labels": {"velero.io/backup-name": names.label_value(name), "velero.io/backup-uid": uid,
                       names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE},
        },
        "spec": {"backupName": name},
    }
    if check_mode:
        return True, existing, body
    try:
        request = client.create("deletebackuprequests", body)
    except Exception as exc:
        if getattr(exc, "status", None) != 409:
            raise
        request = client.get("deletebackuprequests", request_name) or body
    if not wait:
        return True, existing, request

    def request_settled(obj):
        # A successful request deletes itself; a failed one stays Processed with errors.
        return obj is None or (obj.get("status") or {}).get("phase") == "Processed"

    request = wait_for(client.watch_source("deletebackuprequests", request_name), request_settled, timeout,
                       "DeleteBackupRequest {0}".format(request_name))
    errors = ((request or {}).get("status") or {}).get("errors") or []
    if errors:
        raise FleetdrError("Velero could not delete backup {0}: {1}".format(name, "; ".join(errors)),
                           name=name, delete_request=request)
    try:
        wait_for(client.watch_source("backups", name), lambda obj: obj is None, timeout, "Backup {0} to be deleted".format(name))
    except WaitTimeout as exc:
        raise WaitTimeout(exc.msg, last=exc.last, name=name)
    return True, None, request


# --------------------------------------------------------------------------- schedules

def schedule_spec(cron, template, paused=False, use_owner_references=None, skip_immediately=None):
    spec = {"schedule": cron, "template": template, "paused": bool(paused)}
    if use_owner_references is not None:
        spec["useOwnerReferencesInBackup"] = use_owner_references
    if skip_immediately is not None:
        spec["skipImmediately"] = skip_immediately
    return spec


def template_from_backup(client, backup_name, option="from_backup"):
    """The spec of an existing instant backup, as the user asked for it where known."""
    backup = client.get("backups", backup_name)
    if backup is None:
        raise NotFoundError("{0}: Backup '{1}' does not exist in namespace {2}".format(option, backup_name, client.namespace), option=option)
    recorded = requested_spec(backup)
    if recorded is not None:
        return recorded
    template = copy.deepcopy(backup.get("spec") or {})
    # Drop what Velero filled in at start so the schedule keeps following server defaults.
    for key in ("volumeGroupSnapshotLabelKey",):
        template.pop(key, None)
    for key in ("excludedResources", "excludedNamespaceScopedResources", "excludedClusterScopedResources"):
        if key in template:
            template[key] = [x for x in template[key] if x not in _AUTO_EXCLUDED]
            if not template[key]:
                template.pop(key)
    return template


def ensure_schedule(client, name, spec, labels=None, check_mode=False):
    existing = client.get("schedules", name)
    if existing is None:
        check_storage_location(client, spec["template"].get("storageLocation"))
        body = velero_object("Schedule", name, client.namespace, spec, labels)
        diff = {"before": {}, "after": {"metadata": body["metadata"], "spec": spec}}
        if check_mode:
            return True, body, diff
        return True, client.create("schedules", body), diff
    have = existing.get("spec") or {}
    new_spec = copy.deepcopy(have)
    new_spec.update(spec)
    if "skipImmediately" not in spec and "skipImmediately" in have:
        new_spec["skipImmediately"] = have["skipImmediately"]  # Velero rewrites it after each reconcile
    new_spec["paused"] = bool(spec.get("paused"))
    have_cmp = dict(have, paused=bool(have.get("paused")))
    label_patch = _label_changes(labels, (existing.get("metadata") or {}).get("labels"))
    if new_spec == have_cmp and not label_patch:
        return False, existing, {}
    if spec["template"].get("storageLocation") != (have.get("template") or {}).get("storageLocation"):
        check_storage_location(client, spec["template"].get("storageLocation"))
    updated, diff = _updated_object(existing, have, new_spec, label_patch)
    if check_mode:
        return True, updated, diff
    return True, client.replace("schedules", name, updated), diff


def delete_plain(client, plural, name, check_mode=False, wait=False, timeout=60):
    existing = client.get(plural, name)
    if existing is None:
        return False, None
    if check_mode:
        return True, existing
    client.delete(plural, name)
    if wait:
        wait_for(client.watch_source(plural, name), lambda obj: obj is None, timeout, "{0} {1} to be deleted".format(plural, name))
    return True, existing


# --------------------------------------------------------------------------- restores

def newest_completed_backup(client, schedule_name, option="schedule_name"):
    backups = client.list("backups", label_selector="velero.io/schedule-name={0}".format(names.label_value(schedule_name)))
    if not backups:
        raise NotFoundError("{0}: no backups found for schedule '{1}'".format(option, schedule_name), option=option)
    completed = [b for b in backups if (b.get("status") or {}).get("phase") == "Completed"]
    if not completed:
        raise NotFoundError("{0}: schedule '{1}' has no Completed backup ({2} backups, none Completed)".format(
            option, schedule_name, len(backups)), option=option)
    return max(completed, key=lambda b: (b.get("status") or {}).get("startTimestamp") or "")


def resolve_restore_source(client, backup_name=None, schedule_name=None):
    """The Backup a restore will read: named, or the newest Completed one of a schedule."""
    if backup_name:
        backup = client.get("backups", backup_name)
        if backup is None:
            raise NotFoundError("backup_name: Backup '{0}' does not exist in namespace {1}".format(backup_name, client.namespace),
                                option="backup_name")
        return backup
    return newest_completed_backup(client, schedule_name)


PLUGIN_CONFIG_LABEL = "velero.io/plugin-config"
STORAGE_CLASS_PLUGIN = "velero.io/change-storage-class"
IMAGE_NAME_PLUGIN = "velero.io/change-image-name"
PLUGIN_CONFIGMAPS = {
    STORAGE_CLASS_PLUGIN: "fleetdr-change-storage-class",
    IMAGE_NAME_PLUGIN: "fleetdr-change-image-name",
}


def plugin_configmap_data(plugin, mapping):
    if plugin == IMAGE_NAME_PLUGIN:
        # Velero reads values "<old>,<new>"; keys only need to be unique.
        return dict(("case{0}".format(i + 1), "{0},{1}".format(old, new)) for i, (old, new) in enumerate(sorted(mapping.items())))
    return dict(mapping)


def plan_plugin_configmap(client, plugin, mapping, option):
    """What to do with the plugin ConfigMap Velero reads for ``plugin``: (action, body) without writing.

    Velero applies every ConfigMap labelled for the plugin to every restore, so
    the mapping lives in one ConfigMap we own; a restore without a mapping
    removes ours, and a foreign one is refused (two would make Velero fail items).
    """
    name = PLUGIN_CONFIGMAPS[plugin]
    found = client.list_configmaps("{0},{1}=RestoreItemAction".format(PLUGIN_CONFIG_LABEL, plugin))
    foreign = [c["metadata"]["name"] for c in found if c["metadata"]["name"] != name]
    if foreign and mapping:
        raise ValidationError(option, "ConfigMap {0} in namespace {1} already configures {2}; Velero allows one, "
                                      "so remove it or leave {3} unset".format(", ".join(foreign), client.namespace, plugin, option))
    ours = client.get_configmap(name)
    if not mapping:
        return ("delete", name) if ours is not None else (None, None)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": client.namespace,
                     "labels": {PLUGIN_CONFIG_LABEL: "", plugin: "RestoreItemAction", names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}},
        "data": plugin_configmap_data(plugin, mapping),
    }
    if ours is None:
        return "create", body
    if ours.get("data") == body["data"] and all((ours["metadata"].get("labels") or {}).get(k) == v for k, v in body["metadata"]["labels"].items()):
        return None, None
    body["metadata"]["resourceVersion"] = ours["metadata"].get("resourceVersion")
    return "replace", body


def apply_configmap_plan(client, action, body):
    if action == "create":
        client.create_configmap(body)
    elif action == "replace":
        client.replace_configmap(body["metadata"]["name"], body)
    elif action == "delete":
        client.delete_configmap(body)


def modifier_configmap(client, restore_name, rules):
    import yaml

    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": names.make_name(restore_name, "modifiers"), "namespace": client.namespace,
                     "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE, "velero.io/restore-name": names.label_value(restore_name)}},
        "data": {"rules.yaml": yaml.safe_dump({"version": "v1", "resourceModifierRules": rules}, sort_keys=False)},
    }


def ensure_restore(client, name, spec, labels=None, plugin_mappings=None, modifier_rules=None, check_mode=False):
    """Create the Restore (and the ConfigMaps Velero reads for it) unless it exists."""
    existing = client.get("restores", name)
    want = dict(spec)
    if modifier_rules:
        want["resourceModifier"] = {"kind": "configmap", "name": names.make_name(name, "modifiers")}
    if existing is not None:
        differences = spec_differences(want, existing)
        if differences:
            raise ConflictError("Restore {0} already exists with a different spec ({1}); restores run once, "
                                "so choose a new name".format(name, ", ".join(differences)), name=name)
        return False, existing, {}, []
    # Plan every write first: a refused mapping must leave the cluster unchanged.
    plans = []
    for plugin, (option, mapping) in (plugin_mappings or {}).items():
        action, body = plan_plugin_configmap(client, plugin, mapping, option)
        if action:
            plans.append((action, body))
    annotations = {names.ANNOTATION_REQUESTED_SPEC: specs.canonical_json(want)}
    body = velero_object("Restore", name, client.namespace, want, labels, annotations)
    diff = {"before": {}, "after": {"metadata": body["metadata"], "spec": want}}
    changes = ["{0} ConfigMap {1}".format(a, b if isinstance(b, str) else b["metadata"]["name"]) for a, b in plans]
    if modifier_rules:
        changes.append("create ConfigMap {0}".format(want["resourceModifier"]["name"]))
    if check_mode:
        return True, body, diff, changes
    for action, cm in plans:
        apply_configmap_plan(client, action, cm)
    if modifier_rules:
        cm = modifier_configmap(client, name, modifier_rules)
        if client.get_configmap(cm["metadata"]["name"]) is None:
            client.create_configmap(cm)
        else:
            client.replace_configmap(cm["metadata"]["name"], cm)
    try:
        created = client.create("restores", body)
    except Exception as exc:
        if getattr(exc, "status", None) == 409:
            existing = client.get("restores", name)
            if existing is not None and not spec_differences(want, existing):
                return False, existing, {}, changes
        raise
    return True, created, diff, changes


def wait_restore(client, name, timeout):
    return wait_for(client.watch_source("restores", name),
                    lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in specs.RESTORE_TERMINAL_PHASES,
                    timeout, "Restore {0} to finish".format(name))


# --------------------------------------------------------------------------- storage / snapshot locations

def credentials_file(access_key_id, secret_access_key, profile="default"):
    return "[{0}]\naws_access_key_id={1}\naws_secret_access_key={2}\n".format(profile or "default", access_key_id, secret_access_key)


def plan_secret(client, name, key, content):
    """(action, body) for the credentials Secret; content is compared, never returned."""
    encoded = base64.b64encode(content.encode("utf-8")).decode("ascii")
    existing = client.get_secret(name)
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": client.namespace,
                         "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}},
            "data": {key: encoded}}
    if existing is None:
        return "create", body
    if (existing.get("data") or {}).get(key) == encoded:
        return None, None
    body["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
    merged = dict(existing.get("data") or {})
    merged[key] = encoded
    body["data"] = merged
    return "replace", body


def ensure_location(client, plural, kind, name, spec, labels=None, secret_plan=None, check_mode=False):
    """Create or update a BackupStorageLocation / VolumeSnapshotLocation (and its credentials Secret)."""
    existing = client.get(plural, name)
    secret_action, secret_body = secret_plan or (None, None)
    if existing is None:
        body = velero_object(kind, name, client.namespace, spec, labels)
        diff = {"before": {}, "after": {"metadata": body["metadata"], "spec": spec}}
        if check_mode:
            return True, body, diff, secret_action
        _apply_secret(client, secret_action, secret_body)
        return True, client.create(plural, body), diff, secret_action
    have = existing.get("spec") or {}
    # Keys the user did not set keep their stored values (Velero or another tool may own them).
    new_spec = copy.deepcopy(have)
    new_spec.update(copy.deepcopy(spec))
    label_patch = _label_changes(labels, (existing.get("metadata") or {}).get("labels"))
    if new_spec == have and not label_patch:
        if secret_action and not check_mode:
            _apply_secret(client, secret_action, secret_body)
        return bool(secret_action), existing, {}, secret_action
    updated, diff = _updated_object(existing, have, new_spec, label_patch)
    if check_mode:
        return True, updated, diff, secret_action
    _apply_secret(client, secret_action, secret_body)
    return True, client.replace(plural, name, updated), diff, secret_action


def _apply_secret(client, action, body):
    if action == "create":
        client.create_secret(body)
    elif action == "replace":
        client.replace_secret(body["metadata"]["name"], body)


def wait_location_validated(client, name, previous_validation, timeout):
    """Wait until Velero validated the BSL after our change; return it (Available or not)."""

    def validated(obj):
        status = (obj or {}).get("status") or {}
        if status.get("phase") not in ("Available", "Unavailable"):
            return False
        return previous_validation is None or status.get("lastValidationTime") != previous_validation

    return wait_for(client.watch_source("backupstoragelocations", name), validated, timeout,
                    "BackupStorageLocation {0} to be validated".format(name))


# --------------------------------------------------------------------------- server status

def image_version(deployment):
    for container in ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []:
        if container.get("name") == "velero" or "velero/velero" in (container.get("image") or ""):
            image = container.get("image") or ""
            tail = image.rsplit("/", 1)[-1]
            return tail.split(":", 1)[1].split("@")[0] if ":" in tail else None
    return None


def velero_deployment(client, within=30):
    """The Velero server Deployment, or None when Velero is not installed; raises when unreachable.

    Retried like every call (a 503 or a reset is not the cluster's answer) but all of it, retries and
    reads, within ``within`` seconds: a hung or unreachable cluster fails its pre-flight in that time.
    """
    return client.get_raw("/apis/apps/v1/namespaces/{0}/deployments/velero".format(client.namespace),
                          "Reading Deployment {0}/velero".format(client.namespace), timeout=15, deadline=time.monotonic() + within)


def server_status(client, timeout=30, check_mode=False):
    """Ask the server for its version and plugins (a ServerStatusRequest, as `velero version` does).
    In check mode nothing is created: the version comes from the Deployment's image, without plugins."""
    if check_mode:
        deployment = velero_deployment(client)
        if deployment is None:
            return {"available": False, "version": None, "plugins": [],
                    "reason": "Velero is not installed: Deployment velero not found in namespace {0}".format(client.namespace)}
        ready = bool((deployment.get("status") or {}).get("availableReplicas"))
        return {"available": ready, "version": image_version(deployment), "plugins": [],
                "reason": "check mode: read from Deployment {0}/velero without a ServerStatusRequest (plugins not listed){1}".format(
                    client.namespace, "" if ready else "; no replica available")}
    request_name = names.make_name("fleetdr-status", uuid.uuid4().hex[:10])
    body = {"apiVersion": API_VERSION, "kind": "ServerStatusRequest",
            "metadata": {"name": request_name, "namespace": client.namespace,
                         "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY_VALUE}},
            "spec": {}}
    try:
        client.create("serverstatusrequests", body)
    except Exception as exc:
        if getattr(exc, "status", None) != 409:
            raise
    try:
        obj = wait_for(client.watch_source("serverstatusrequests", request_name),
                       lambda o: o is not None and (o.get("status") or {}).get("phase") == "Processed",
                       timeout, "ServerStatusRequest {0}".format(request_name))
        status = obj.get("status") or {}
        return {"available": True, "version": status.get("serverVersion"),
                "plugins": sorted(status.get("plugins") or [], key=lambda p: (p.get("kind", ""), p.get("name", ""))),
                "processed": status.get("processedTimestamp")}
    except WaitTimeout:
        return {"available": False, "version": None, "plugins": [],
                "reason": "the Velero server did not answer a ServerStatusRequest within {0}s (is it running?)".format(timeout)}
    finally:
        try:
            client.delete("serverstatusrequests", request_name)
        except Exception:
            pass
