# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What happened to each PVC's data in a backup or a restore, and waiting for synced volume backups.

A Backup or Restore can end ``Completed`` while the data of a volume the user asked for stayed
behind: Velero skips the volumes of pods that are not Running, volumes no pod mounts, and on
restore every PVC or pod that already exists (it never overwrites volume data). The accounting
here names each PVC in scope with what happened to its data, so a verdict can count it.

Entries: ``{namespace, pvc, pod, volume, requested, moved, bytes, snapshot_id, object, reason}``;
``requested`` says the user asked for the data (file-system backup by default or by annotation),
``moved`` that it arrived. The rules follow Velero's pkg/util/podvolume/pod_volume.go,
pkg/podvolume/backupper.go and pkg/restore/restore.go.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.report import parse_timestamp
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for

BACKUP_NAME_LABEL = "velero.io/backup-name"
RESTORE_NAME_LABEL = "velero.io/restore-name"
PVC_NAME_ANNOTATION = "velero.io/pvc-name"
BACKUP_VOLUMES_ANNOTATION = "backup.velero.io/backup-volumes"
EXCLUDES_ANNOTATION = "backup.velero.io/backup-volumes-excludes"
FINAL_PHASES = ("Completed", "Failed", "Canceled")
# How many volumes a reason names before it says "and N more".
REASON_VOLUMES = 5


# --------------------------------------------------------------------------- helpers

def _meta(obj):
    return obj.get("metadata") or {}


def _split(text):
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _selector_matches(selector, labels):
    """A metav1.LabelSelector (matchLabels / matchExpressions) against a label map."""
    labels = labels or {}
    for key, value in ((selector or {}).get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in (selector or {}).get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _namespace_in(namespace, included, excluded):
    included = included or ["*"]
    if any(fnmatch.fnmatchcase(namespace, pattern) for pattern in excluded or []):
        return False
    return any(pattern == "*" or fnmatch.fnmatchcase(namespace, pattern) for pattern in included)


def _resources_include(spec, *resources):
    """False when the spec's resource filters leave any of ``resources`` out (old and new style)."""
    included = [r.lower() for r in (spec.get("includedResources") or []) + (spec.get("includedNamespaceScopedResources") or [])]
    excluded = [r.lower() for r in (spec.get("excludedResources") or []) + (spec.get("excludedNamespaceScopedResources") or [])]
    short = {"persistentvolumeclaims": "pvc", "pods": "po"}
    for resource in resources:
        forms = (resource, short[resource])
        if any(form in excluded for form in forms):
            return False
        if included and "*" not in included and not any(form in included for form in forms):
            return False
    return True


def _mounting_pods(pods, namespace, claim):
    """(pod, volume name) for every pod of ``namespace`` that mounts PVC ``claim``."""
    out = []
    for pod in pods:
        if _meta(pod).get("namespace") != namespace:
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            if (volume.get("persistentVolumeClaim") or {}).get("claimName") == claim:
                out.append((pod, volume["name"]))
    return out


def _entry(namespace, pvc, requested, moved, reason=None, pod=None, volume=None, size=None, snapshot_id=None, obj=None):
    return {"namespace": namespace, "pvc": pvc, "pod": pod, "volume": volume, "requested": bool(requested),
            "moved": bool(moved), "bytes": size, "snapshot_id": snapshot_id, "object": obj, "reason": reason}


def volume_bytes(obj):
    progress = (obj.get("status") or {}).get("progress") or {}
    value = progress.get("totalBytes", progress.get("bytesDone"))
    return None if value is None else int(value)


# --------------------------------------------------------------------------- backup

def _list_in_scope(client, plural, namespaces):
    """Objects of a built-in kind in the given namespaces (one list over all when there are many)."""
    if namespaces is None or len(namespaces) > 3:
        return client.list_core(plural, "*")
    items = []
    for namespace in namespaces:
        items.extend(client.list_core(plural, namespace))
    return items


def backup_volumes(client, backup):
    """Each PVC the Backup covers, with what happened to its data (from its PodVolumeBackups)."""
    spec = backup.get("spec") or {}
    if not _resources_include(spec, "persistentvolumeclaims", "pods"):
        return []
    included, excluded = spec.get("includedNamespaces") or ["*"], spec.get("excludedNamespaces") or []
    exact = None if any("*" in pattern or "?" in pattern for pattern in included) else list(included)
    pvcs = [pvc for pvc in _list_in_scope(client, "persistentvolumeclaims", exact)
            if _namespace_in(_meta(pvc).get("namespace"), included, excluded)]
    if not pvcs:
        return []
    pods = _list_in_scope(client, "pods", sorted(set(_meta(p)["namespace"] for p in pvcs)))
    selectors = [spec["labelSelector"]] if spec.get("labelSelector") else list(spec.get("orLabelSelectors") or [])
    pvbs = client.list("podvolumebackups", label_selector="{0}={1}".format(BACKUP_NAME_LABEL, names.label_value(_meta(backup)["name"])))
    by_claim = {}
    for pvb in pvbs:
        claim = (_meta(pvb).get("annotations") or {}).get(PVC_NAME_ANNOTATION)
        pod_ref = (pvb.get("spec") or {}).get("pod") or {}
        if claim:
            by_claim[(pod_ref.get("namespace"), claim)] = pvb
    default_fs = bool(spec.get("defaultVolumesToFsBackup"))
    entries = []
    for pvc in sorted(pvcs, key=lambda p: (_meta(p)["namespace"], _meta(p)["name"])):
        namespace, claim = _meta(pvc)["namespace"], _meta(pvc)["name"]
        mounts = _mounting_pods(pods, namespace, claim)
        if selectors and not any(_selector_matches(s, _meta(pvc).get("labels")) for s in selectors) and not any(
                _selector_matches(s, _meta(pod).get("labels")) for s in selectors for pod, _vol in mounts):
            continue  # neither the PVC nor a pod mounting it is in the backup
        pvb = by_claim.get((namespace, claim))
        if pvb is not None:
            entries.append(_pvb_entry(namespace, claim, pvb))
            continue
        entries.append(_skipped_backup_entry(namespace, claim, mounts, default_fs, spec))
    return entries


def _pvb_entry(namespace, claim, pvb):
    status = pvb.get("status") or {}
    pod = ((pvb.get("spec") or {}).get("pod") or {}).get("name")
    volume = (pvb.get("spec") or {}).get("volume")
    ref = {"kind": "PodVolumeBackup", "name": _meta(pvb).get("name")}
    if status.get("phase") == "Completed":
        return _entry(namespace, claim, True, True, pod=pod, volume=volume, size=volume_bytes(pvb) or 0,
                      snapshot_id=status.get("snapshotID") or None, obj=ref,
                      reason=status.get("message") or None)
    return _entry(namespace, claim, True, False, pod=pod, volume=volume, obj=ref,
                  reason="PodVolumeBackup {0} ended {1}: {2}".format(
                      ref["name"], status.get("phase") or "unfinished", status.get("message") or "no message"))


def _skipped_backup_entry(namespace, claim, mounts, default_fs, spec):
    """Why a PVC in the backup has no PodVolumeBackup (Velero's volume selection rules)."""
    if not mounts:
        return _entry(namespace, claim, default_fs, False,
                      reason="no pod mounts it, so the node-agent had nothing to back up")
    running = [(pod, vol) for pod, vol in mounts if (pod.get("status") or {}).get("phase") == "Running"]
    requested_by = []
    for pod, vol in mounts:
        annotations = _meta(pod).get("annotations") or {}
        if vol in _split(annotations.get(EXCLUDES_ANNOTATION)):
            continue
        if default_fs or vol in _split(annotations.get(BACKUP_VOLUMES_ANNOTATION)):
            requested_by.append((pod, vol))
    pod, vol = mounts[0]
    if not requested_by:
        annotations = _meta(pod).get("annotations") or {}
        if vol in _split(annotations.get(EXCLUDES_ANNOTATION)):
            reason = "excluded by the {0} annotation of pod {1}".format(EXCLUDES_ANNOTATION, _meta(pod)["name"])
        elif spec.get("resourcePolicy"):
            reason = "not selected by resource policy {0}".format((spec["resourcePolicy"] or {}).get("name"))
        else:
            reason = ("not opted in: default_volumes_to_fs_backup is off and pod {0} has no {1} annotation naming "
                      "volume {2}".format(_meta(pod)["name"], BACKUP_VOLUMES_ANNOTATION, vol))
        return _entry(namespace, claim, False, False, pod=_meta(pod)["name"], volume=vol, reason=reason)
    if not running:
        pod, vol = requested_by[0]
        return _entry(namespace, claim, True, False, pod=_meta(pod)["name"], volume=vol,
                      reason="pod {0} is not Running (phase {1}); Velero backs up volumes of running pods only".format(
                          _meta(pod)["name"], (pod.get("status") or {}).get("phase") or "unknown"))
    pod, vol = requested_by[0]
    return _entry(namespace, claim, True, False, pod=_meta(pod)["name"], volume=vol,
                  reason="no PodVolumeBackup was created (is the node-agent running on the pod's node?)")


# --------------------------------------------------------------------------- restore

def _restored_namespace(namespace, restore_spec):
    if not _namespace_in(namespace, restore_spec.get("includedNamespaces"), restore_spec.get("excludedNamespaces")):
        return None
    return (restore_spec.get("namespaceMapping") or {}).get(namespace, namespace)


def _existed_before(obj, restore):
    """True when ``obj`` was there before the Restore was created (so Velero left it as it was)."""
    created, started = parse_timestamp(_meta(obj).get("creationTimestamp")), parse_timestamp(_meta(restore).get("creationTimestamp"))
    return created is not None and started is not None and created < started


def restore_volumes(client, restore, pvbs):
    """Each volume the Restore should fill from ``pvbs`` (the backup's PodVolumeBackups), with what happened."""
    spec = restore.get("spec") or {}
    if spec.get("restorePVs") is False or not _resources_include(spec, "persistentvolumeclaims", "pods"):
        scope_reason = "restore_pvs is off or the restore leaves PVCs/pods out"
    else:
        scope_reason = None
    pvrs = client.list("podvolumerestores", label_selector="{0}={1}".format(RESTORE_NAME_LABEL, names.label_value(_meta(restore)["name"])))
    by_pod_volume = dict((((p.get("spec") or {}).get("pod") or {}).get("namespace", "") + "/" + ((p.get("spec") or {}).get("pod") or {}).get("name", "")
                          + "/" + (p.get("spec") or {}).get("volume", ""), p) for p in pvrs)
    wanted = []
    for pvb in pvbs:
        pod_ref = (pvb.get("spec") or {}).get("pod") or {}
        target = _restored_namespace(pod_ref.get("namespace"), spec)
        if target is not None:
            wanted.append((target, pvb))
    if not wanted:
        return []
    namespaces = sorted(set(target for target, _pvb in wanted))
    pvcs = dict(((_meta(p)["namespace"], _meta(p)["name"]), p) for p in _list_in_scope(client, "persistentvolumeclaims", namespaces))
    pods = dict(((_meta(p)["namespace"], _meta(p)["name"]), p) for p in _list_in_scope(client, "pods", namespaces))
    entries = []
    for target, pvb in sorted(wanted, key=lambda pair: (pair[0], _meta(pair[1]).get("name"))):
        pod_name = ((pvb.get("spec") or {}).get("pod") or {}).get("name")
        volume = (pvb.get("spec") or {}).get("volume")
        claim = (_meta(pvb).get("annotations") or {}).get(PVC_NAME_ANNOTATION) or volume
        status = pvb.get("status") or {}
        if not status.get("snapshotID"):
            entries.append(_entry(target, claim, False, False, pod=pod_name, volume=volume,
                                  reason="nothing to restore: the backup holds no snapshot of it ({0})".format(
                                      status.get("message") or "PodVolumeBackup " + (status.get("phase") or "unfinished"))))
            continue
        pvr = by_pod_volume.get("{0}/{1}/{2}".format(target, pod_name, volume))
        if pvr is not None:
            pvr_status = pvr.get("status") or {}
            ref = {"kind": "PodVolumeRestore", "name": _meta(pvr).get("name")}
            if pvr_status.get("phase") == "Completed":
                entries.append(_entry(target, claim, True, True, pod=pod_name, volume=volume, size=volume_bytes(pvr) or 0,
                                      snapshot_id=status.get("snapshotID"), obj=ref))
            else:
                entries.append(_entry(target, claim, True, False, pod=pod_name, volume=volume, obj=ref,
                                      reason="PodVolumeRestore {0} ended {1}: {2}".format(
                                          ref["name"], pvr_status.get("phase") or "unfinished", pvr_status.get("message") or "no message")))
            continue
        pvc, pod = pvcs.get((target, claim)), pods.get((target, pod_name))
        if pvc is not None and _existed_before(pvc, restore):
            reason = ("PVC already existed on the target; its data was kept, not replaced "
                      "(Velero never overwrites volume data)")
        elif pod is not None and _existed_before(pod, restore):
            reason = "pod {0} already existed on the target, so Velero did not restore its volumes".format(pod_name)
        elif scope_reason:
            reason = scope_reason
        else:
            reason = "no PodVolumeRestore was created for pod {0} volume {1}".format(pod_name, volume)
        entries.append(_entry(target, claim, True, False, pod=pod_name, volume=volume, snapshot_id=status.get("snapshotID"),
                              reason=reason))
    return entries


# --------------------------------------------------------------------------- synced PodVolumeBackups

def backup_pvbs(client, backup_name):
    """The PodVolumeBackups a cluster holds for a backup."""
    return client.list("podvolumebackups", label_selector="{0}={1}".format(BACKUP_NAME_LABEL, names.label_value(backup_name)))


def describe(pvb):
    pod = (pvb.get("spec") or {}).get("pod") or {}
    claim = (_meta(pvb).get("annotations") or {}).get(PVC_NAME_ANNOTATION)
    where = "{0}/{1}".format(pod.get("namespace"), claim) if claim else "{0}/{1} volume {2}".format(
        pod.get("namespace"), pod.get("name"), (pvb.get("spec") or {}).get("volume"))
    return where


def wait_for_pvbs(client, backup_name, expected, timeout):
    """Wait until the cluster holds every PodVolumeBackup in ``expected`` (by name) for ``backup_name``.

    Velero's backup sync creates the Backup first and its PodVolumeBackups afterwards, and a
    Restore finds them by label when it starts: a Restore created in between restores no volume
    data and still completes (pkg/controller/backup_sync_controller.go, pkg/restore/restore.go).
    Returns the cluster's PVBs of the backup; raises FleetdrError naming what never arrived.
    """
    wanted = dict((_meta(p).get("name"), p) for p in expected if _meta(p).get("name"))
    source = client.selection_source("podvolumebackups", "{0}={1}".format(BACKUP_NAME_LABEL, names.label_value(backup_name)))
    if not wanted:
        return backup_pvbs(client, backup_name)
    try:
        state = wait_for(source, lambda s: s is not None and set(wanted) <= set(s.get("items") or {}), timeout,
                         "the PodVolumeBackups of backup {0} to be synced".format(backup_name))
    except WaitTimeout as exc:
        have = set(((exc.last or {}).get("items") or {}))
        missing = sorted(describe(p) for name, p in wanted.items() if name not in have)
        raise FleetdrError("the volume backups of {0} did not reach this cluster within {1}s, so a restore would leave "
                           "their data behind: {2}".format(backup_name, timeout, summarize_names(missing)))
    return list(state["items"].values())


# --------------------------------------------------------------------------- verdict

def summarize_names(texts):
    texts = list(texts)
    if len(texts) > REASON_VOLUMES:
        return ", ".join(texts[:REASON_VOLUMES]) + " and {0} more".format(len(texts) - REASON_VOLUMES)
    return ", ".join(texts)


def data_not_moved(entries):
    """The entries whose data was asked for and did not arrive."""
    return [e for e in entries or [] if e["requested"] and not e["moved"]]


def shortfall_reason(entries):
    """One sentence naming the requested volume data that did not move, or None."""
    missing = data_not_moved(entries)
    if not missing:
        return None
    return "volume data not moved: " + summarize_names(
        "{0}/{1} ({2})".format(e["namespace"], e["pvc"], e["reason"]) for e in missing)
