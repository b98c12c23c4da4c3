# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Velero status -> one normalised result, plus the *why* from object storage.

Every module (and the fleet runner) returns the same shape, so a report can be
built from any of them. For backups and restores that did not fully succeed,
the error and warning texts come from Velero's results file in the bucket
(``backups/<b>/<b>-results.gz`` / ``restores/<r>/restore-<r>-results.gz``),
read with boto3 and the location's own credentials Secret.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import configparser
import gzip
import json
import threading

import importlib.util

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError
from ansible_collections.fleetdr.kube.plugins.module_utils.report import seconds_between
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import volume_data

# boto3 is imported only when a results file is read (it costs ~0.5 s per module start).
HAS_BOTO3 = importlib.util.find_spec("boto3") is not None
# One boto3 session per process for every cluster's client: a session loads the S3 service model
# (~50 ms of JSON), and the cluster threads each made their own through boto3's default session.
_SESSION = None
_SESSION_LOCK = threading.Lock()

SUCCESS_PHASES = ("Completed", "Available", "Enabled", "Processed")
# How many results-file entries a result carries per list (a bad restore can log thousands).
MAX_MESSAGES = 50


def normalize(obj, kind, client=None):
    """The common result for one Velero object (``obj`` may be None: absent)."""
    meta = (obj or {}).get("metadata") or {}
    status = (obj or {}).get("status") or {}
    spec = (obj or {}).get("spec") or {}
    progress = status.get("progress") or {}
    total = progress.get("totalItems")
    done = progress.get("itemsBackedUp", progress.get("itemsRestored"))
    started = status.get("startTimestamp")
    completed = status.get("completionTimestamp")
    result = {
        "cluster": getattr(client, "cluster", None),
        "context": getattr(client, "context", None),
        "kind": kind,
        "namespace": meta.get("namespace") or getattr(client, "namespace", None),
        "name": meta.get("name"),
        "exists": obj is not None,
        "phase": status.get("phase"),
        "progress": {
            "total_items": total,
            "items_done": done,
            "percent": round(100.0 * done / total, 1) if total and done is not None else None,
        },
        "started": started,
        "completed": completed,
        "duration_s": seconds_between(started, completed),
        "expiration": status.get("expiration"),
        "warnings": status.get("warnings", 0) or 0,
        "errors": status.get("errors", 0) or 0,
        "validation_errors": status.get("validationErrors") or [],
        "failure_reason": status.get("failureReason") or status.get("message"),
        "labels": meta.get("labels") or {},
    }
    if kind == "Backup":
        result["storage_location"] = spec.get("storageLocation")
        result["schedule_name"] = (meta.get("labels") or {}).get("velero.io/schedule-name")
    elif kind == "Restore":
        result["backup_name"] = spec.get("backupName")
        result["schedule_name"] = spec.get("scheduleName")
    elif kind == "Schedule":
        result["schedule"] = spec.get("schedule")
        result["paused"] = bool(spec.get("paused"))
        result["last_backup"] = status.get("lastBackup")
    elif kind in ("BackupStorageLocation", "VolumeSnapshotLocation"):
        result["last_validated"] = status.get("lastValidationTime")
        result["last_synced"] = status.get("lastSyncedTime")
        result["default"] = bool(spec.get("default"))
        result["access_mode"] = spec.get("accessMode") or ("ReadWrite" if kind == "BackupStorageLocation" else None)
    result["succeeded"] = result["phase"] in SUCCESS_PHASES and not result["errors"]
    return result


def verdict(result, allow_partially_failed=False, allow_missing_volume_data=False):
    """(verdict, reason) of a finished Backup or Restore result, counting its volume data.

    ``succeeded`` means the objects *and* the volume data asked for arrived: a Completed one that
    left requested volume data behind (``result["volumes"]``) is ``partially_failed`` with the
    volumes named, unless ``allow_missing_volume_data``.
    """
    phase = result.get("phase")
    if phase == "Completed" or (phase == "PartiallyFailed" and allow_partially_failed):
        shortfall = None if allow_missing_volume_data else volume_data.shortfall_reason(result.get("volumes"))
        return ("partially_failed", shortfall) if shortfall else ("succeeded", None)
    reason = result.get("failure_reason") or "; ".join(result.get("validation_errors") or []) or (
        "{0} {1} ended {2} ({3} errors, {4} warnings)".format(
            result.get("kind"), result.get("name"), phase, result.get("errors"), result.get("warnings")))
    return ("partially_failed" if phase == "PartiallyFailed" else "failed"), reason


def needs_details(result):
    """A terminal backup/restore that did not fully succeed (and wrote a results file)."""
    return result.get("kind") in ("Backup", "Restore") and (
        result.get("phase") in ("PartiallyFailed", "Failed") or (result.get("phase") == "Completed" and result.get("warnings"))
    )


def flatten_results(document):
    """``{"errors": Result, "warnings": Result}`` -> {"errors": [...], "warnings": [...]} of texts."""
    out = {"errors": [], "warnings": []}
    for key in ("errors", "warnings"):
        section = (document or {}).get(key) or {}
        for text in section.get("velero") or []:
            out[key].append("velero: " + text.strip())
        for text in section.get("cluster") or []:
            out[key].append("cluster: " + text.strip())
        for namespace, texts in sorted((section.get("namespaces") or {}).items()):
            for text in texts or []:
                out[key].append("namespace {0}: {1}".format(namespace, text.strip()))
        if len(out[key]) > MAX_MESSAGES:
            dropped = len(out[key]) - MAX_MESSAGES
            out[key] = out[key][:MAX_MESSAGES] + ["... {0} more".format(dropped)]
    return out


def results_key(kind, name, prefix):
    root = (prefix or "").strip("/")
    if kind == "Backup":
        key = "backups/{0}/{0}-results.gz".format(name)
    else:
        key = "restores/{0}/restore-{0}-results.gz".format(name)
    return "{0}/{1}".format(root, key) if root else key


def _credentials_from_secret(secret, key, profile):
    data = (secret or {}).get("data") or {}
    if key not in data:
        raise KeyError("key '{0}' not found in Secret {1}".format(key, (secret.get("metadata") or {}).get("name")))
    text = base64.b64decode(data[key]).decode("utf-8")
    parser = configparser.ConfigParser()
    parser.read_string(text)
    section = profile or "default"
    if not parser.has_section(section):
        raise KeyError("profile '{0}' not found in the credentials file".format(section))
    return parser.get(section, "aws_access_key_id"), parser.get(section, "aws_secret_access_key"), parser.get(section, "aws_session_token", fallback=None)


def _boto3_session(boto3):
    global _SESSION
    if _SESSION is None:
        _SESSION = boto3.session.Session()
    return _SESSION


def location_s3_client(client, location, secret_values=None):
    """A boto3 S3 client for a BackupStorageLocation, with the credentials Velero uses for it.

    ``secret_values`` (a set) collects every credential read, so callers can
    mark them no_log.
    """
    spec = location.get("spec") or {}
    config = spec.get("config") or {}
    credential = spec.get("credential") or {"name": "cloud-credentials", "key": "cloud"}
    secret = client.get_secret(credential["name"])
    if secret is None:
        raise KeyError("credentials Secret {0} not found in namespace {1}".format(credential["name"], client.namespace))
    key_id, secret_key, token = _credentials_from_secret(secret, credential.get("key") or "cloud", config.get("profile"))
    if secret_values is not None:
        secret_values.update(v for v in (key_id, secret_key, token) if v)
    import boto3
    from botocore.config import Config as BotoConfig

    verify = str(config.get("insecureSkipTLSVerify", "false")).lower() not in ("true", "1")
    addressing = "path" if str(config.get("s3ForcePathStyle", "false")).lower() in ("true", "1") else "auto"
    with _SESSION_LOCK:  # botocore sessions are not thread-safe; the clients they make are
        return _boto3_session(boto3).client(
            "s3",
            endpoint_url=config.get("s3Url") or None,
            region_name=config.get("region") or "us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret_key,
            aws_session_token=token,
            verify=verify,
            config=BotoConfig(s3={"addressing_style": addressing}, retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10,
                              read_timeout=30),
        )


def read_results(client, kind, name, location_name, secret_values=None):
    """Error and warning texts from Velero's results file for one backup or restore."""
    if not HAS_BOTO3:
        raise RuntimeError("boto3 is required to read Velero results from object storage")
    location = client.get("backupstoragelocations", location_name)
    if location is None:
        raise KeyError("BackupStorageLocation {0} not found".format(location_name))
    bucket = ((location.get("spec") or {}).get("objectStorage") or {}).get("bucket")
    prefix = ((location.get("spec") or {}).get("objectStorage") or {}).get("prefix")
    s3 = location_s3_client(client, location, secret_values)
    body = s3.get_object(Bucket=bucket.strip("/"), Key=results_key(kind, name, prefix))["Body"].read()
    return flatten_results(json.loads(gzip.decompress(body).decode("utf-8")))


def attach_details(result, client, location_name, secret_values=None):
    """Add ``messages`` (texts) or ``messages_error`` (why they could not be read) to ``result``."""
    if not needs_details(result) or not location_name:
        return result
    try:
        result["messages"] = read_results(client, result["kind"], result["name"], location_name, secret_values)
    except Exception as exc:  # the result is still useful without the texts
        result["messages_error"] = "could not read Velero results from object storage: {0}".format(safe_error(exc, secret_values))
    return result


def safe_error(exc, secret_values):
    text = str(exc)
    for value in secret_values or ():
        if value:
            text = text.replace(value, "********")
    return text


def bucket_pod_volume_backups(client, location, backup_name, secret_values=None):
    """The backup's PodVolumeBackups as Velero wrote them to ``<backup>-podvolumebackups.json.gz``
    (pkg/persistence/object_store.go); [] when the file is absent (no file-system backup)."""
    storage = (location.get("spec") or {}).get("objectStorage") or {}
    root = (storage.get("prefix") or "").strip("/")
    key = "backups/{0}/{0}-podvolumebackups.json.gz".format(backup_name)
    s3 = location_s3_client(client, location, secret_values)
    try:
        body = s3.get_object(Bucket=(storage.get("bucket") or "").strip("/"), Key="{0}/{1}".format(root, key) if root else key)["Body"].read()
    except Exception as exc:
        if ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code") in ("NoSuchKey", "404"):
            return []
        raise
    return json.loads(gzip.decompress(body).decode("utf-8")) or []


def synced_volume_backups(client, backup, timeout, secret_values=None):
    """The backup's PodVolumeBackups, once every one of them is on this cluster.

    The expected set is the bucket's copy, read with the location's own credentials: a Backup
    synced from storage (from another cluster, or again after its object was deleted) is on the
    cluster before its PodVolumeBackups are. Raises FleetdrError when they do not all arrive.
    """
    name = backup["metadata"]["name"]
    location_name = (backup.get("spec") or {}).get("storageLocation") or ""
    location = client.get("backupstoragelocations", location_name) if location_name else None
    if location is None:  # its location is gone: the cluster's own PVBs are all there is
        return volume_data.backup_pvbs(client, name)
    try:
        expected = bucket_pod_volume_backups(client, location, name, secret_values)
    except Exception as exc:
        raise FleetdrError("could not read the volume backups of {0} from storage location {1}: {2}".format(
            name, location_name, safe_error(exc, secret_values)))
    return volume_data.wait_for_pvbs(client, name, expected, timeout)
