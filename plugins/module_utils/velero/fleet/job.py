# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What every fleet operation shares: the job (run-wide inputs, validated once), its time budget,
the Velero pre-flight of a cluster, and the shape of a cluster's result.

Each operation module (backup, restore, migrate, schedule, status) has the signature
fleet.run_fleet wants: ``operation(job)`` -> ``(cluster, recorder) -> partial result``. A
cluster's failure raises (or returns verdict failed) and stays that cluster's result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2
    from urlparse import urlsplit

from ansible_collections.fleetdr.kube.plugins.module_utils.client import ClusterClients
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.fleet import SkipCluster
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import info as rook_info
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.objects import image_version, velero_deployment
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for


PREFLIGHT_TIMEOUT = 30
CEPH_GATED = ("backup", "restore", "migrate", "schedule", "drill")
CEPH_GATE_CHOICES = ("off", "warn", "enforce")


class PreflightError(FleetdrError):
    """A cluster is not ready for the operation (the message says why)."""


class FleetJob(object):
    """One fleet operation's inputs, validated once and read-only for the cluster threads; the
    threads only add to ``changed`` (mark_changed) and ``secret_values``, under the lock."""

    def __init__(self, operation, name, params, velero_namespace="velero", wait_timeout=600, check_mode=False):
        self.operation = operation
        self.name = name
        self.params = params
        self.velero_namespace = velero_namespace
        self.wait_timeout = wait_timeout
        self.check_mode = check_mode
        self.secret_values = set()  # credentials read while working; scrubbed from the report
        self.changed = {}  # cluster -> bool
        self.diffs = {}  # cluster -> [{before, after, before_header, after_header}] (diff mode)
        self.warnings = {}  # cluster -> texts the operation adds to that cluster's result
        self.lock = threading.Lock()
        self.clients = ClusterClients(velero_namespace)
        # inventory host -> its cluster entry (or None), for clusters outside the selection (a vault)
        self.resolve_cluster = lambda name: None
        self._vault_health = {}  # vault host -> (health, text) or None, read once per run
        self._vault_locks = {}

    def mark_changed(self, cluster, changed):
        with self.lock:
            self.changed[cluster] = bool(self.changed.get(cluster)) or bool(changed)

    def vault_health(self, vault, deadline):
        """The Ceph health of the vault cluster ``vault`` (an inventory host), read once per run."""
        with self.lock:
            lock = self._vault_locks.setdefault(vault, threading.Lock())
        with lock:
            if vault not in self._vault_health:
                try:
                    cluster = self.resolve_cluster(vault)
                    if cluster is None:
                        raise FleetdrError("the vault cluster {0} is not an inventory host".format(vault))
                    self._vault_health[vault] = rook_info.ceph_health(self.clients.connect(cluster), deadline=deadline)
                except Exception as exc:  # kept too: the other clusters of that vault do not wait for it again
                    self._vault_health[vault] = exc
            found = self._vault_health[vault]
        if isinstance(found, Exception):
            raise found
        return found

    def warn(self, cluster, text):
        with self.lock:
            self.warnings.setdefault(cluster, []).append(text)

    def record_diff(self, cluster, changes):
        """Keep the before/after of each change for diff mode (Secret data is already masked)."""
        diffs = [dict(change["diff"], before_header="{0}: {1}".format(cluster, change["object"]),
                      after_header="{0}: {1} ({2})".format(cluster, change["object"], change["action"]))
                 for change in changes if change.get("diff")]
        with self.lock:
            self.diffs.setdefault(cluster, []).extend(diffs)


def timeout_for(job, recorder, cap=None):
    """A wait timeout bounded by the operation's wait_timeout and the fleet deadline."""
    values = [job.wait_timeout]
    if cap is not None:
        values.append(cap)
    remaining = recorder.remaining()
    if remaining is not None:
        values.append(remaining)
    return max(int(min(values)), 1)


def with_final_phase(operation, job=None):
    """Close each cluster's timeline with its final phase (Failed when the operation raised), and
    add the warnings the job collected for the cluster to its result."""
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
        extra = job.warnings.get(cluster["name"]) if job is not None and isinstance(cluster, dict) else None
        if partial is not None and extra:
            partial["warnings"] = list(extra) + list(partial.get("warnings") or [])
        return partial
    return wrapped


# --------------------------------------------------------------------------- pre-flight

def minor_version(version):
    """'v1.18.1' -> (1, 18); None when it cannot be read."""
    if not version:
        return None
    parts = version.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return None


def ceph_gate(client, job, recorder):
    """Where Rook runs, the cluster's Ceph health before anything is created: ceph_health_gate
    warn (default) adds it to the result, enforce skips a HEALTH_ERR cluster with the check text."""
    mode = job.params.get("ceph_health_gate") or "warn"
    if mode == "off" or job.operation not in CEPH_GATED:
        return
    found = rook_info.ceph_health(client, deadline=time.monotonic() + timeout_for(job, recorder, PREFLIGHT_TIMEOUT))
    if found is None or found[0] == "HEALTH_OK":
        return
    health, text = found
    if health == "HEALTH_ERR" and mode == "enforce":
        raise SkipCluster("{0}; skipped by ceph_health_gate=enforce".format(text))
    job.warn(recorder.name, text)


def vault_gate(job, recorder, location):
    """The Ceph gate for a location kept on another cluster's Rook object store (install's
    velero_vault): that cluster's health counts as this one's, since its backups are written or read
    there. An unreadable vault health is a warning; the location's own validation decides."""
    mode = job.params.get("ceph_health_gate") or "warn"
    vault = ((location.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_VAULT)
    if mode == "off" or job.operation not in CEPH_GATED or not vault or vault == recorder.name:
        return
    where = "the backup vault {0} (location {1} keeps this cluster's backups there)".format(vault, location["metadata"]["name"])
    try:
        found = job.vault_health(vault, time.monotonic() + timeout_for(job, recorder, PREFLIGHT_TIMEOUT))
    except Exception as exc:  # unreachable or not in the inventory: say so, the location's validation decides
        job.warn(recorder.name, "{0}: Ceph health not checked: {1}".format(where, getattr(exc, "msg", None) or exc))
        return
    if found is None or found[0] == "HEALTH_OK":
        return
    health, text = found
    if health == "HEALTH_ERR" and mode == "enforce":
        raise SkipCluster("{0}: {1}; skipped by ceph_health_gate=enforce".format(where, text))
    job.warn(recorder.name, "{0}: {1}".format(where, text))


def preflight(client, job, recorder, location_name=None, deployment=None):
    """Velero Deployment ready and the location Available (and the Ceph health gate); returns
    {version, location, bsl}. ``deployment``: the Velero Deployment when the caller has just read it."""
    recorder.phase("Preflight")
    ceph_gate(client, job, recorder)
    deployment = deployment or velero_deployment(client, timeout_for(job, recorder, PREFLIGHT_TIMEOUT))
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
                                timeout_for(job, recorder, PREFLIGHT_TIMEOUT), "BackupStorageLocation {0} to be validated".format(name))
        except WaitTimeout:
            raise PreflightError("BackupStorageLocation {0} was not validated within {1}s".format(name, PREFLIGHT_TIMEOUT))
        if location["status"]["phase"] != "Available":
            raise PreflightError("BackupStorageLocation {0} is Unavailable: {1}".format(
                name, location["status"].get("message") or "no reason given"))
    vault_gate(job, recorder, location)
    url = ((location.get("spec") or {}).get("config") or {}).get("s3Url") or ""
    host = urlsplit(url).hostname or ""
    if host.endswith((".svc", ".svc.cluster.local")):
        job.warn(recorder.name, "backups are kept in this cluster's own object store ({0}): they do not survive the loss of this "
                                "cluster; keep them in another cluster's or region's store".format(host))
    return {"version": image_version(deployment), "location": name, "bsl": location}


# --------------------------------------------------------------------------- timeouts

class TimedOut(Exception):
    """A Velero object outlived its wait; ``entry`` is the cluster's failed report entry (see timed_out)."""

    def __init__(self, entry):
        super(TimedOut, self).__init__(entry["reason"])
        self.entry = entry


# Phases in which Velero's server is working on a Backup (its in-memory tracker): a DeleteBackupRequest
# for it is refused with "backup is still in progress" and the Backup left alone
# (pkg/controller/backup_deletion_controller.go). Queued and ReadyToStart do not count.
RUNNING_BACKUP_PHASES = ("InProgress", "WaitingForPluginOperations", "WaitingForPluginOperationsPartiallyFailed",
                         "Finalizing", "FinalizingPartiallyFailed")
# How long on_timeout=cancel waits for Velero to remove a Backup that had not started.
CANCEL_TIMEOUT = 60


def cancel_wait(recorder):
    """CANCEL_TIMEOUT within the fleet deadline (not within wait_timeout: that wait is already over)."""
    remaining = recorder.remaining()
    return CANCEL_TIMEOUT if remaining is None else max(int(min(CANCEL_TIMEOUT, remaining)), 1)


def timed_out(client, job, kind, plural, name, timeout, cancel_timeout=CANCEL_TIMEOUT):
    """The failed entry of a Velero object that did not finish within ``timeout``: it names the object,
    its last phase, and what became of it - left to finish (on_timeout=leave, the default) or
    cancelled (on_timeout=cancel: deleted for a Restore; for a Backup that has not started, a
    DeleteBackupRequest, waited for up to ``cancel_timeout`` seconds, and what Velero made of it).
    Velero cannot cancel a running Backup: that one is left, and the reason says so."""
    obj = client.get(plural, name)
    phase = ((obj or {}).get("status") or {}).get("phase") or "New"
    fate = "left on the cluster, where it may still finish (on_timeout=leave)"
    if job.params.get("on_timeout") == "cancel" and obj is not None:
        if kind != "Backup":
            objects.delete_plain(client, plural, name)
            fate = "cancelled (on_timeout=cancel: the Restore was deleted; what it already restored stays)"
        elif phase in RUNNING_BACKUP_PHASES:
            fate = ("not cancelled: Velero refuses to delete a Backup while it runs, so it is left on the cluster, where it may "
                    "still finish; delete it once it has ended (fleetdr.kube.velero_backup state=absent)")
        else:
            # Velero deletes through the object store, and can refuse (e.g. a location it cannot reach): only
            # a Backup that is gone is reported cancelled.
            try:
                objects.delete_backup(client, name, timeout=cancel_timeout)
                fate = "cancelled before it started (on_timeout=cancel: Velero removed it through a DeleteBackupRequest)"
            except WaitTimeout:
                fate = ("not yet cancelled: Velero had not removed it {0}s after a DeleteBackupRequest (on_timeout=cancel); "
                        "it may still be removed, or start").format(cancel_timeout)
            except FleetdrError as exc:
                fate = "not cancelled: {0} (on_timeout=cancel); it is left on the cluster".format(exc.msg)
    return {"verdict": "failed", "phase": phase,
            "reason": "{0} {1}/{2} did not finish within {3}s (last phase {4}); {5}".format(kind, client.namespace, name, timeout, phase, fate),
            "object": {"kind": kind, "namespace": client.namespace, "name": name}}


# --------------------------------------------------------------------------- result shaping

def cluster_result(result, location=None, job=None, phase=None):
    """A report entry (partial) from a results.normalize() dict of a Backup or Restore (with its volumes)."""
    params = job.params if job is not None else {}
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
