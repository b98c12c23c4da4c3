"""Backup queue + backup controllers: phases, prepare patch, filters, upload.

Phases (1.18): "" -> Queued -> ReadyToStart -> FailedValidation | InProgress -> Finalizing[PartiallyFailed]
-> Completed | PartiallyFailed, or Failed. Before 1.18 there is no queue (""/New -> InProgress).

Lab fault: an object annotated `fleetdr.lab/fail-backup: "true"` fails to back up: it is not written
to the tarball, an error "Error backing up item" is logged under its namespace (in `-results.gz`)
and the backup ends PartiallyFailed.

Upstream source: Velero pkg/controller/backup_controller.go, backup_queue_controller.go,
pkg/backup/backup.go.
"""
from __future__ import annotations

import asyncio
import gzip
import json
import math
from dataclasses import dataclass, field
from datetime import timedelta

from .server_config import format_duration, parse_duration
from .filters import (EXCLUDE_LABEL, OLD_NEW_MIXED, SNAPSHOT_CLUSTER_RESOURCE, SNAPSHOT_NS_RESOURCE,
                      IncludesExcludes, ResourceFilter, ResourcePolicies, expand_namespaces, selector_from,
                      uses_new_filters, uses_old_filters, validate_namespace_lists,
                      validate_resource_lists, validate_scoped_lists)
from .layout import versions_to_write
from .backup_store import ObjectStoreError, run_blocking
from .server import GROUP, VeleroController, label_safe
from .tarball import BACKUP_FORMAT_VERSION, TarballWriter

PLURAL = "backups"
FAIL_ANNOTATION = "fleetdr.lab/fail-backup"
ACTIVE_PHASES = ("ReadyToStart", "InProgress")
TERMINAL_PHASES = ("FailedValidation", "Completed", "PartiallyFailed", "Failed")
COHABITING = {"deployments": ("extensions", "apps"), "daemonsets": ("extensions", "apps"),
              "replicasets": ("extensions", "apps"), "networkpolicies": ("extensions", "networking.k8s.io"),
              "events": ("", "events.k8s.io")}
FS_NEVER_VOLUME_SOURCES = ("hostPath", "secret", "configMap", "projected", "downwardAPI")


def version_tuple(v: str) -> tuple[int, int, int]:
    parts = (v.lstrip("v").split("-")[0].split(".") + ["0", "0", "0"])[:3]
    try:
        return tuple(int(p) for p in parts)  # type: ignore[return-value]
    except ValueError:
        return (1, 18, 0)


def has_queue(version: str) -> bool:
    return version_tuple(version) >= (1, 18, 0)


def gzip_json(obj) -> bytes:
    # json.Encoder output: compact, trailing newline, inside the gzip stream.
    return gzip.compress((json.dumps(obj, separators=(",", ":")) + "\n").encode(), mtime=0)


def backup_metadata_json(backup: dict) -> bytes:
    ordered = {"kind": "Backup", "apiVersion": "velero.io/v1", "metadata": backup.get("metadata", {}),
               "spec": backup.get("spec", {}), "status": backup.get("status", {})}
    return (json.dumps(ordered, indent=2) + "\n").encode()


def _namespaces_of(backup: dict) -> set[str] | None:
    inc = (backup.get("spec") or {}).get("includedNamespaces") or ["*"]
    return None if "*" in inc else set(inc)


def _overlaps(a: dict, b: dict) -> bool:
    na, nb = _namespaces_of(a), _namespaces_of(b)
    return na is None or nb is None or bool(na & nb)


class BackupQueueController(VeleroController):
    """"" / New -> Queued (queuePosition) -> ReadyToStart, one running backup at a time by default."""

    name = "backup-queue"
    watches = [(GROUP, PLURAL)]
    resync_seconds = 60.0

    def reconcile(self, key):
        if not has_queue(self.config.version):
            return
        b = self.get(PLURAL, key)
        if b is not None and (b.get("status") or {}).get("phase", "") in ("", "New"):
            positions = [(x.get("status") or {}).get("queuePosition") or 0 for x in self.list(PLURAL)
                         if (x.get("status") or {}).get("phase") == "Queued"]
            self.patch(PLURAL, key, {"status": {"phase": "Queued",
                                                "queuePosition": max(positions, default=0) + 1}})
        # Velero re-examines the queue when a backup arrives or leaves the running phases; the
        # many progress updates of a running backup change nothing for the queue (and listing
        # every Backup on each of them made a busy cluster's queue quadratic).
        if b is None or (b.get("status") or {}).get("phase", "") not in ACTIVE_PHASES:
            self.dequeue()

    async def resync(self):
        self.dequeue()

    def dequeue(self):
        backups = self.list(PLURAL)
        phase = lambda x: (x.get("status") or {}).get("phase", "")  # noqa: E731
        running = [x for x in backups if phase(x) in ACTIVE_PHASES]
        queued = sorted((x for x in backups if phase(x) == "Queued"),
                        key=lambda x: ((x.get("status") or {}).get("queuePosition") or 0,
                                       x["metadata"].get("creationTimestamp", "")))
        still_queued = []
        for x in queued:
            blockers = running + still_queued
            if len(running) < self.config.concurrent_backups and not any(_overlaps(x, r) for r in blockers):
                self.patch(PLURAL, x["metadata"]["name"],
                           {"status": {"phase": "ReadyToStart", "queuePosition": None}})
                running.append(x)
            else:
                still_queued.append(x)
        for i, x in enumerate(still_queued, start=1):
            if (x.get("status") or {}).get("queuePosition") != i:
                self.patch(PLURAL, x["metadata"]["name"], {"status": {"queuePosition": i}})


@dataclass
class LogEntry:
    level: str
    msg: str
    fields: dict = field(default_factory=dict)
    time: str = ""


class BackupRequest:
    """Everything about one running backup; passed to fsbackup's hook as `ctx`.

    Attributes: server, store (Store), backup (the Backup dict as last written), name, bsl (dict),
    backup_store (backup_store.BackupStore), plus `log_info/log_warning/log_error(msg, **fields)`; log fields
    `namespace`, `resource`, `name`, `error` shape `-results.gz` entries as Velero does.
    """

    def __init__(self, controller: "BackupController", backup: dict):
        self.controller = controller
        self.server = controller.server
        self.store = controller.store
        self.backup = backup
        self.name = backup["metadata"]["name"]
        self.bsl: dict | None = None
        self.backup_store = None
        self.entries: list[LogEntry] = []
        self.pod_volume_backups: list[dict] = []
        self.volume_infos: list[dict] = []
        self.hooks_attempted = 0
        self.hooks_failed = 0
        self.listed_only: dict[tuple, dict] = {}

    def _log(self, level, msg, **fields):
        self.entries.append(LogEntry(level, msg, fields, self.controller.now()))

    def log_info(self, msg, **fields):
        self._log("info", msg, **fields)

    def log_warning(self, msg, **fields):
        self._log("warning", msg, **fields)

    def log_error(self, msg, **fields):
        self._log("error", msg, **fields)

    @property
    def warnings(self) -> int:
        return sum(1 for e in self.entries if e.level == "warning")

    @property
    def errors(self) -> int:
        return sum(1 for e in self.entries if e.level == "error")

    def results(self) -> dict:
        """{"errors": Result, "warnings": Result}, built from log lines (log_counter_hook.go)."""
        out = {"errors": {}, "warnings": {}}
        for e in self.entries:
            if e.level not in ("warning", "error"):
                continue
            text = ""
            if "resource" in e.fields:
                text += f" resource: /{e.fields['resource']}"
            if "name" in e.fields:
                text += f" name: /{e.fields['name']}"
            if e.msg:
                text += f" message: /{e.msg}"
            if "error" in e.fields:
                text += f" error: /{e.fields['error']}"
            bucket = out["errors" if e.level == "error" else "warnings"]
            if e.fields.get("namespace"):
                bucket.setdefault("namespaces", {}).setdefault(e.fields["namespace"], []).append(text)
            else:
                bucket.setdefault("velero", []).append(text)
        return out

    def log_text(self) -> bytes:
        lines = []
        for e in self.entries:
            parts = [f'time="{e.time}"', f"level={e.level}", f"msg={json.dumps(e.msg)}",
                     f"backup={self.server.namespace}/{self.name}"]
            for k, v in e.fields.items():
                v = str(v)
                parts.append(f"{k}={json.dumps(v) if (' ' in v or not v) else v}")
            lines.append(" ".join(parts))
        return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


class BackupController(VeleroController):
    name = "backup"
    watches = [(GROUP, PLURAL)]

    async def reconcile(self, key):
        b = self.get(PLURAL, key)
        if b is None:
            return
        phase = (b.get("status") or {}).get("phase", "")
        startable = ("ReadyToStart",) if has_queue(self.config.version) else ("", "New")
        if phase not in startable or key in self.server.running_backups:
            return
        await self.run_backup(b)

    # ------------------------------------------------------------------ prepare + validate
    def prepare(self, b: dict) -> tuple[dict, list[str]]:
        """The start-of-backup patch (4.2) and validation errors (4.3)."""
        spec = json.loads(json.dumps(b.get("spec") or {}))
        meta = b["metadata"]
        version = version_tuple(self.config.version)
        errors: list[str] = []
        now = self.clock.now()

        ttl = parse_duration(spec["ttl"]) if spec.get("ttl") else timedelta(0)
        if ttl.total_seconds() == 0:
            ttl = self.config.default_backup_ttl
        spec["ttl"] = format_duration(ttl)
        spec.setdefault("volumeGroupSnapshotLabelKey", "velero.io/volume-group") \
            if not spec.get("volumeGroupSnapshotLabelKey") else None
        if not spec.get("csiSnapshotTimeout") or parse_duration(spec["csiSnapshotTimeout"]).total_seconds() == 0:
            spec["csiSnapshotTimeout"] = "10m0s"
        if not spec.get("itemOperationTimeout") or parse_duration(spec["itemOperationTimeout"]).total_seconds() == 0:
            spec["itemOperationTimeout"] = "4h0m0s"
        if spec.get("defaultVolumesToFsBackup") is None:
            spec["defaultVolumesToFsBackup"] = bool(spec.get("defaultVolumesToRestic")) or \
                self.config.default_volumes_to_fs_backup
        if spec.get("snapshotMoveData") is None:
            spec["snapshotMoveData"] = self.config.default_snapshot_move_data

        # storage location
        if not spec.get("storageLocation"):
            default = next((x for x in self.list("backupstoragelocations")
                            if (x.get("spec") or {}).get("default")), None)
            spec["storageLocation"] = default["metadata"]["name"] if default else \
                self.config.default_backup_storage_location
        bsl_name = spec["storageLocation"]
        labels = dict(meta.get("labels") or {})
        labels["velero.io/storage-location"] = label_safe(bsl_name)
        bsl = self.get("backupstoragelocations", bsl_name)
        if bsl is None:
            errors.append(
                "an existing backup storage location wasn't specified at backup creation time and the "
                f"default '{bsl_name}' wasn't found. Please address this issue (see `velero "
                "backup-location -h` for options) and create a new backup. Error: "
                f'backupstoragelocations.velero.io "{bsl_name}" not found')
        else:
            if (bsl.get("spec") or {}).get("accessMode") == "ReadOnly":
                errors.append(f"backup can't be created because backup storage location {bsl_name} "
                              "is currently in read-only mode")
            if (bsl.get("status") or {}).get("phase") != "Available":
                errors.append(f"backup can't be created because BackupStorageLocation {bsl_name} "
                              "is in Unavailable status.")

        # volume snapshot locations: one per provider
        vsl_errors, vsls = self._resolve_vsls(spec.get("volumeSnapshotLocations") or [])
        errors += vsl_errors
        spec["volumeSnapshotLocations"] = vsls

        annotations = dict(meta.get("annotations") or {})
        kv = self.server.k8s_version()
        annotations["velero.io/source-cluster-k8s-gitversion"] = kv["gitVersion"]
        annotations["velero.io/source-cluster-k8s-major-version"] = kv["major"]
        annotations["velero.io/source-cluster-k8s-minor-version"] = kv["minor"]
        annotations["velero.io/resource-timeout"] = format_duration(self.config.resource_timeout)

        # namespaces labelled velero.io/exclude-from-backup=true
        excluded_ns = list(spec.get("excludedNamespaces") or [])
        for ns in self.store.list("", "namespaces")["items"]:
            if (ns["metadata"].get("labels") or {}).get(EXCLUDE_LABEL) == "true" and \
                    ns["metadata"]["name"] not in excluded_ns:
                excluded_ns.append(ns["metadata"]["name"])
        if excluded_ns:
            spec["excludedNamespaces"] = excluded_ns

        old = uses_old_filters(spec)
        if version >= (1, 17, 0):
            if old:
                exc = list(spec.get("excludedResources") or [])
                for r in (SNAPSHOT_NS_RESOURCE, SNAPSHOT_CLUSTER_RESOURCE):
                    if r not in exc:
                        exc.append(r)
                spec["excludedResources"] = exc
                if spec.get("includedResources"):
                    spec["includedResources"] = [r for r in spec["includedResources"]
                                                 if r not in (SNAPSHOT_NS_RESOURCE, SNAPSHOT_CLUSTER_RESOURCE)]
            else:
                for key, r in (("excludedNamespaceScopedResources", SNAPSHOT_NS_RESOURCE),
                               ("excludedClusterScopedResources", SNAPSHOT_CLUSTER_RESOURCE)):
                    exc = list(spec.get(key) or [])
                    if r not in exc and "*" not in exc:
                        exc.append(r)
                    spec[key] = exc
        if version >= (1, 19, 0):
            if not spec.get("includedNamespaces"):
                spec["includedNamespaces"] = ["*"]
        elif version >= (1, 18, 1):
            if "includedNamespaces" not in spec or spec.get("includedNamespaces") is None:
                spec["includedNamespaces"] = ["*"]

        # 6: old and new filters mixed
        if old and uses_new_filters(spec):
            errors.append(OLD_NEW_MIXED)
        # 7: resource lists
        if old:
            errors += [f"Invalid included/excluded resource lists: {e}" for e in
                       validate_resource_lists(spec.get("includedResources"), spec.get("excludedResources"))]
        else:
            errors += [f"Invalid included/excluded cluster-scoped resource lists: {e}" for e in
                       validate_scoped_lists(spec.get("includedClusterScopedResources"),
                                             spec.get("excludedClusterScopedResources"))]
            errors += [f"Invalid included/excluded namespace-scoped resource lists: {e}" for e in
                       validate_scoped_lists(spec.get("includedNamespaceScopedResources"),
                                             spec.get("excludedNamespaceScopedResources"))]
        # 8: namespace lists
        errors += [f"Invalid included/excluded namespace lists: {e}" for e in
                   validate_namespace_lists(spec.get("includedNamespaces"), excluded_ns)]
        # 9: both selectors
        if spec.get("labelSelector") is not None and spec.get("orLabelSelectors") is not None:
            errors.append("encountered labelSelector as well as orLabelSelectors in backup spec, "
                          "only one can be specified")
        # 10/11: resource policy configmap
        policies, policy_errors = self.load_policies(spec)
        errors += policy_errors
        if policies is not None and policies.include_exclude and old:
            errors.append("include-resources, exclude-resources and include-cluster-resources are old filter "
                          "parameters, they cannot be used together with the includeExcludePolicy of "
                          f"resource policies {self.namespace}/{spec['resourcePolicy'].get('name')}")

        status = {"version": 1, "formatVersion": BACKUP_FORMAT_VERSION,
                  "expiration": _rfc(now + ttl)}
        if errors:
            status.update({"phase": "FailedValidation", "validationErrors": errors})
        else:
            status.update({"phase": "InProgress", "startTimestamp": _rfc(now)})
        patch = {"metadata": {"labels": labels, "annotations": annotations}, "spec": spec, "status": status}
        return patch, errors

    def load_policies(self, spec: dict):
        """The backup's resource policies (14.3): (ResourcePolicies|None, validation errors)."""
        rp = spec.get("resourcePolicy")
        if not rp or str(rp.get("kind", "")).lower() != "configmap":
            return None, []
        name = rp.get("name", "")
        cm = self.store.get_or_none("", "configmaps", self.namespace, name)
        if cm is None:
            return None, [f"failed to get resource policies {self.namespace}/{name} configmap with err "
                          f'configmaps "{name}" not found']
        try:
            return ResourcePolicies.from_configmap(cm), []
        except ValueError as exc:
            return None, [f"resource policies {self.namespace}/{name}: {exc}"]

    def _resolve_vsls(self, names: list[str]) -> tuple[list[str], list[str]]:
        errors, by_provider = [], {}
        all_vsls = self.list("volumesnapshotlocations")
        known = {v["metadata"]["name"]: v for v in all_vsls}
        for n in names:
            v = known.get(n)
            if v is None:
                errors.append(f"a VolumeSnapshotLocation CRD for the location {n} with the name specified "
                              "in the backup spec needs to be created before this location can be used")
                continue
            provider = (v.get("spec") or {}).get("provider", "")
            if provider in by_provider and by_provider[provider] != n:
                errors.append(f"more than one VolumeSnapshotLocation name specified for provider {provider}: "
                              f"{n}; unexpected name was {by_provider[provider]}")
                continue
            by_provider[provider] = n
        providers: dict[str, list[str]] = {}
        for v in all_vsls:
            providers.setdefault((v.get("spec") or {}).get("provider", ""), []).append(v["metadata"]["name"])
        for provider, vnames in providers.items():
            if provider in by_provider:
                continue
            if len(vnames) == 1:
                by_provider[provider] = vnames[0]
            elif provider in self.config.default_volume_snapshot_locations:
                by_provider[provider] = self.config.default_volume_snapshot_locations[provider]
            else:
                errors.append(f"provider {provider} has more than one possible volume snapshot location, "
                              "and none were specified explicitly or as a default")
        return errors, sorted(by_provider.values()) if not errors else list(names)

    # ------------------------------------------------------------------ run
    async def run_backup(self, b: dict):
        name = b["metadata"]["name"]
        patch, errors = self.prepare(b)
        b = self.patch(PLURAL, name, patch)
        if errors:
            self.log.info("backup %s failed validation: %s", name, errors)
            return
        self.server.running_backups.add(name)
        try:
            await self._execute(b)
        except asyncio.CancelledError:
            raise   # server stopping: the backup stays InProgress (marked Failed at next start)
        except Exception as exc:
            self.log.exception("backup %s failed", name)
            self._fail(name, str(exc))
        finally:
            self.server.running_backups.discard(name)
            queue = self.server.controller(BackupQueueController)
            if queue is not None:
                queue.dequeue()

    def _fail(self, name: str, reason: str):
        self.patch(PLURAL, name, {"status": {"phase": "Failed", "failureReason": reason,
                                             "completionTimestamp": self.now()}})

    async def _execute(self, b: dict):
        name = b["metadata"]["name"]
        req = BackupRequest(self, b)
        req.log_info("Setting up backup log")
        req.bsl = self.get("backupstoragelocations", b["spec"]["storageLocation"])
        try:
            req.backup_store = self.server.backup_store(req.bsl)
            exists = await run_blocking(req.backup_store.backup_exists, name)
        except (ObjectStoreError, TypeError) as exc:
            self._fail(name, str(exc))
            return
        if exists:
            self._fail(name, "backup already exists in object storage")
            return
        req.log_info("Backing up items", backup=f"{self.namespace}/{name}")

        collector = ItemCollector(self, req)
        items = collector.collect()
        total = len(items)
        self.patch(PLURAL, name, {"status": {"progress": {"totalItems": total, "itemsBackedUp": 0}}})

        writer = TarballWriter(mtime=self.clock.time())
        written: dict[tuple, dict] = {}
        backed_up: set[tuple] = set()
        # Several rounds with short pauses: progress is observable like the real 1/s patches.
        chunk = max(1, min(250, math.ceil(total / 4))) if total else 1
        for start in range(0, max(total, 1), chunk):
            for item in items[start:start + chunk]:
                await self._backup_item(req, collector, item, written, backed_up)
            self.patch(PLURAL, name, {"status": {"progress": {
                "totalItems": max(total, len(backed_up)), "itemsBackedUp": len(backed_up)}}})
            await asyncio.sleep(0.02)

        # CRDs of the custom resources that were backed up (5.6)
        for crd in collector.crds_for(written):
            await self._backup_item(req, collector, crd, written, backed_up)
        # Namespace objects (5.1)
        for ns_item in collector.namespace_items(written):
            await self._backup_item(req, collector, ns_item, written, backed_up)

        def build_tarball() -> bytes:   # off the loop: JSON encoding + gzip of every item
            for (gr, ns, iname, ver), obj in written.items():   # processing order, like Velero's tar
                writer.add_item(gr, ns, iname, ver, obj)
            return writer.finish()

        resource_list: dict[str, list[str]] = {}
        for (gr, ns, iname, ver), obj in list(written.items()) + list(req.listed_only.items()):
            k = f"{obj.get('apiVersion')}/{obj.get('kind')}"
            resource_list.setdefault(k, []).append(f"{ns}/{iname}" if ns else iname)
        for k in resource_list:
            resource_list[k].sort()

        req.log_info("Backed up a total of %d items" % len(backed_up))
        n_errors, n_warnings = req.errors, req.warnings
        final_phase = "FinalizingPartiallyFailed" if n_errors else "Finalizing"
        status = {"phase": final_phase,
                  "progress": {"totalItems": len(backed_up), "itemsBackedUp": len(backed_up)},
                  "hookStatus": {k: v for k, v in (("hooksAttempted", req.hooks_attempted),
                                                     ("hooksFailed", req.hooks_failed)) if v},
                  "warnings": n_warnings or None, "errors": n_errors or None}
        current = self.get(PLURAL, name) or b
        snapshot = json.loads(json.dumps(current))
        snapshot["status"] = {**(snapshot.get("status") or {}), **{k: v for k, v in status.items() if v is not None}}
        tarball = await run_blocking(build_tarball)
        lay = req.backup_store.layout
        side = {
            lay.backup_resource_list_key(name): gzip_json(resource_list),
            lay.backup_results_key(name): gzip_json(req.results()),
            lay.backup_volume_snapshots_key(name): gzip_json(None),
            lay.backup_item_operations_key(name): gzip_json([]),
            lay.backup_pod_volume_backups_key(name): gzip_json(req.pod_volume_backups or None),
            lay.backup_volume_info_key(name): gzip_json(req.volume_infos),
        }
        csi = versions_to_write(self.config.version)
        if csi["csi_all"]:
            side[lay.csi_volume_snapshots_key(name)] = gzip_json(None)
            side[lay.csi_volume_snapshot_contents_key(name)] = gzip_json(None)
        if csi["csi_all"] or csi["csi_classes_only"]:
            side[lay.csi_volume_snapshot_classes_key(name)] = gzip_json(None)
        try:
            await run_blocking(req.backup_store.put_backup, name, backup_metadata_json(snapshot),
                               tarball, req.log_text(), side)
        except ObjectStoreError as exc:
            self._fail(name, str(exc))
            return
        self.patch(PLURAL, name, {"status": status})
        await asyncio.sleep(0.02)
        # backup-finalizer: terminal phase, completionTimestamp, metadata re-uploaded.
        terminal = "PartiallyFailed" if n_errors else "Completed"
        done = self.patch(PLURAL, name, {"status": {"phase": terminal, "completionTimestamp": self.now()}})
        try:
            await run_blocking(req.backup_store.put_object, lay.backup_metadata_key(name),
                               backup_metadata_json(done))
        except ObjectStoreError as exc:
            self.log.warning("re-uploading metadata of %s failed: %s", name, exc)

    async def _backup_item(self, req: BackupRequest, collector: "ItemCollector", item: "Item",
                           written: dict, backed_up: set):
        key = (item.gr, item.namespace, item.name)
        if key in backed_up:
            return
        obj = item.obj
        m = obj.get("metadata") or {}
        if (m.get("labels") or {}).get(EXCLUDE_LABEL) == "true" or m.get("deletionTimestamp"):
            return
        if item.namespace and not collector.ns_filter.should_include(item.namespace):
            return
        backed_up.add(key)
        if (m.get("annotations") or {}).get(FAIL_ANNOTATION) == "true":
            fields = {"resource": item.gr, "name": item.name}
            if item.namespace:
                fields["namespace"] = item.namespace
            fields["error"] = f"{FAIL_ANNOTATION}: injected failure backing up {item.gr} " \
                              f"{(item.namespace + '/') if item.namespace else ''}{item.name}"
            req.log_error("Error backing up item", **fields)
            return
        if item.gr == "pods" and not run_pod_hooks(req, collector, obj, "pre"):
            # a pre hook failed with onError: Fail -> listed as backed up, not written (14.1)
            req.listed_only[(item.gr, item.namespace, item.name, item.version)] = obj
            return
        # Related items first, then the item itself (item_backupper.go writes after its actions).
        for related in collector.related(item):
            await self._backup_item(req, collector, related, written, backed_up)
        # pod volumes through the node-agent (fsbackup.py)
        if item.gr == "pods":
            await self._pod_volumes(req, collector, obj)
        written[(item.gr, item.namespace, item.name, item.version)] = obj
        if item.gr == "pods":
            run_pod_hooks(req, collector, obj, "post")

    def _pvb_volume_info(self, pod: dict, pvb: dict) -> dict:
        """One `-volumeinfo.json.gz` entry for a file-system backed-up volume."""
        pm, st, spec = pod["metadata"], pvb.get("status") or {}, pvb.get("spec") or {}
        pvc_name = ((pvb.get("metadata") or {}).get("annotations") or {}).get("velero.io/pvc-name", "")
        info = {"pvcName": pvc_name, "pvcNamespace": pm["namespace"] if pvc_name else "",
                "backupMethod": "PodVolumeBackup", "snapshotDataMoved": False, "skipped": False,
                "result": "succeeded" if st.get("phase") == "Completed" else "failed",
                "startTimestamp": st.get("startTimestamp"), "completionTimestamp": st.get("completionTimestamp"),
                "pvbInfo": {"snapshotHandle": st.get("snapshotID", ""),
                            "size": (st.get("progress") or {}).get("totalBytes", 0),
                            "uploaderType": spec.get("uploaderType", "kopia"), "volumeName": spec.get("volume", ""),
                            "podName": pm["name"], "podNamespace": pm["namespace"],
                            "nodeName": spec.get("node", "")}}
        if pvc_name:
            pvc = self.store.get_or_none("", "persistentvolumeclaims", pm["namespace"], pvc_name)
            pv_name = ((pvc or {}).get("spec") or {}).get("volumeName", "")
            info["pvName"] = pv_name
            pv = self.store.get_or_none("", "persistentvolumes", None, pv_name) if pv_name else None
            if pv is not None:
                info["pvInfo"] = {"reclaimPolicy": pv["spec"].get("persistentVolumeReclaimPolicy", ""),
                                  "labels": pv["metadata"].get("labels") or {}}
        return info

    async def _pod_volumes(self, req: BackupRequest, collector: "ItemCollector", pod: dict):
        volumes = select_fs_volumes(pod, req.backup.get("spec") or {},
                                    collector.filter.include_related("persistentvolumeclaims", True),
                                    collector.policies, self.store)
        if not volumes:
            return
        try:
            from . import fsbackup
        except ImportError:
            return
        pm = pod["metadata"]
        try:
            pvbs = await fsbackup.backup_pod_volumes(req, req.backup, pod, volumes)
        except Exception as exc:
            # e.g. no node-agent on the pod's node: one error per problem (-> PartiallyFailed)
            for err in getattr(exc, "errors", None) or [str(exc)]:
                req.log_error("Error backing up item", namespace=pm["namespace"], name=pm["name"],
                              resource="pods", error=f"pod volume backup failed: {err}")
            return
        for pvb in pvbs or []:
            req.pod_volume_backups.append(pvb)
            req.volume_infos.append(self._pvb_volume_info(pod, pvb))
            st = pvb.get("status") or {}
            if st.get("phase") in ("Failed", "Canceled"):
                req.log_error(f"pod volume backup failed: {st.get('message', '')}",
                              namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"],
                              resource="pods")


HOOK_PREFIXES = {"pre": ("pre.hook.backup.velero.io/", "hook.backup.velero.io/"),
                 "post": ("post.hook.backup.velero.io/",)}


def _annotation_hook(pod: dict, phase: str) -> dict | None:
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    for prefix in HOOK_PREFIXES[phase]:
        command = ann.get(prefix + "command")
        if command:
            try:
                parsed = json.loads(command)
                command = parsed if isinstance(parsed, list) else [command]
            except ValueError:
                command = [command]
            return {"container": ann.get(prefix + "container", ""), "command": command,
                    "onError": ann.get(prefix + "on-error", ""), "timeout": ann.get(prefix + "timeout", "")}
    return None


def _spec_hooks(spec: dict, pod: dict, phase: str) -> list[tuple[str, dict]]:
    """(hook-resource name, exec) for spec.hooks.resources matching this pod."""
    out = []
    m = pod["metadata"]
    for rh in ((spec.get("hooks") or {}).get("resources") or []):
        if not IncludesExcludes(rh.get("includedNamespaces"), rh.get("excludedNamespaces")).should_include(m["namespace"]):
            continue
        res = IncludesExcludes(rh.get("includedResources"), rh.get("excludedResources"))
        if not (res.should_include("pods") or res.should_include("pod") or res.should_include("po")):
            continue
        sel = selector_from(rh.get("labelSelector"))
        if sel is not None and not sel.matches(m.get("labels") or {}):
            continue
        for h in rh.get(phase) or []:
            if h.get("exec"):
                out.append((rh.get("name", ""), h["exec"]))
    return out


def run_pod_hooks(req: "BackupRequest", collector: "ItemCollector", pod: dict, phase: str) -> bool:
    """Backup exec hooks of a pod (14.1). The lab cannot exec into containers: a hook "runs" when
    its container exists and is running in a Running pod, and fails like Velero's executor
    otherwise. Returns False when a pre hook failed with onError: Fail."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return True
    m = pod["metadata"]
    annotated = _annotation_hook(pod, phase)
    hooks = [("<from-annotation>", annotated)] if annotated else _spec_hooks(collector.spec, pod, phase)
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    running = {cs.get("name") for cs in (pod.get("status") or {}).get("containerStatuses") or []
               if (cs.get("state") or {}).get("running")}
    for source, hook in hooks:
        req.hooks_attempted += 1
        container = hook.get("container") or (containers[0] if containers else "")
        if not hook.get("command"):
            error = "command is required"
        elif container not in containers:
            error = f'no such container: "{container}"'
        elif container not in running:
            error = f'container "{container}" is not running'
        else:
            req.log_info("running exec hook", namespace=m["namespace"], name=m["name"], resource="pods",
                         hookName=source, hookPhase=phase, hookContainer=container)
            continue
        req.hooks_failed += 1
        req.log_error("Error executing hook", namespace=m["namespace"], name=m["name"], resource="pods",
                      error=error)
        if hook.get("onError") == "Fail":
            return phase != "pre"
    return True


def select_fs_volumes(pod: dict, spec: dict, pvcs_included: bool, policies=None, store=None) -> list[str]:
    """Pod volumes to back up with the node-agent (13.1); a matching volume policy decides first."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return []
    pspec = pod.get("spec") or {}
    mounted = {vm.get("name") for c in (pspec.get("containers") or []) + (pspec.get("initContainers") or [])
               for vm in c.get("volumeMounts") or []}
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    candidates = []
    decided: dict[str, bool] = {}
    for v in pspec.get("volumes") or []:
        n = v.get("name", "")
        if any(src in v for src in FS_NEVER_VOLUME_SOURCES) or n.startswith("default-token"):
            continue
        if "persistentVolumeClaim" in v and not pvcs_included:
            continue
        if n not in mounted:
            continue
        if policies is not None and policies.volume_policies:
            pvc = pv = None
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and store is not None:
                pvc = store.get_or_none("", "persistentvolumeclaims", pod["metadata"]["namespace"], claim)
                vol_name = ((pvc or {}).get("spec") or {}).get("volumeName")
                pv = store.get_or_none("", "persistentvolumes", None, vol_name) if vol_name else None
            action = policies.volume_action(v, pvc, pv)
            if action is not None:
                decided[n] = action == "fs-backup"
                continue
        candidates.append(n)
    if spec.get("defaultVolumesToFsBackup"):
        excl = {x.strip() for x in ann.get("backup.velero.io/backup-volumes-excludes", "").split(",") if x.strip()}
        chosen = [n for n in candidates if n not in excl]
    else:
        opt_in = [x.strip() for x in ann.get("backup.velero.io/backup-volumes", "").split(",") if x.strip()]
        chosen = [n for n in candidates if n in opt_in]
    by_policy = {n for n, yes in decided.items() if yes}
    return [v.get("name") for v in pspec.get("volumes") or [] if v.get("name") in by_policy or v.get("name") in chosen]


def _rfc(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Item:
    gr: str
    namespace: str | None
    name: str
    version: str
    obj: dict
    rt: object = None


class ItemCollector:
    """Lists what a backup contains (4.4 step 3, section 5)."""

    def __init__(self, controller: BackupController, req: BackupRequest):
        self.c = controller
        self.req = req
        self.store = controller.store
        self.registry = controller.store.registry
        self.spec = req.backup.get("spec") or {}
        self.policies, _ = controller.load_policies(self.spec)
        if self.policies is not None and not uses_old_filters(self.spec):
            self.spec = self.policies.merge_into(self.spec)
        existing = [n["metadata"]["name"] for n in self.store.list("", "namespaces")["items"]]
        self.existing_namespaces = existing
        inc, exc = list(self.spec.get("includedNamespaces") or []), list(self.spec.get("excludedNamespaces") or [])
        if "*" not in inc:
            inc_x, unmatched_i = expand_namespaces(inc, existing)
        else:
            inc_x, unmatched_i = inc, []
        exc_x, unmatched_e = expand_namespaces(exc, existing)
        for p in unmatched_i + unmatched_e:
            req.log_warning(f"wildcard pattern {p} did not match any namespace")
        if inc and not inc_x and unmatched_i:
            inc_x = ["__fleetdr_no_match__"]
        self.ns_filter = IncludesExcludes(inc_x, exc_x)
        self.all_namespaces = "*" in inc_x or not inc_x
        self.filter = ResourceFilter(self.registry, self.spec, self.ns_filter)
        self.selector = selector_from(self.spec.get("labelSelector"))
        self.or_selectors = [selector_from(s) for s in self.spec.get("orLabelSelectors") or []] \
            if self.spec.get("orLabelSelectors") is not None else None
        for ns in inc_x:
            if ns != "*" and ns != "__fleetdr_no_match__" and ns not in existing:
                req.log_error(f"fail to get the namespace {ns} specified in backup.Spec.IncludedNamespaces")

    # ---------------------------------------------------------------- types
    def resource_types(self) -> list:
        """Listable types in discovery order; core: pods, pvcs, pvs first; cohabitants once."""
        out, seen_cohab = [], set()
        for g in self.registry.groups():
            group, preferred = g["name"], g["preferredVersion"]
            rts = [rt for rt in self.registry.resources(group, preferred)]
            if group == "":
                first = {"pods": 0, "persistentvolumeclaims": 1, "persistentvolumes": 2}
                rts.sort(key=lambda rt: first.get(rt.plural, 3))
            for rt in rts:
                if not all(v in rt.verbs for v in ("list", "create", "get", "delete")):
                    continue
                if rt.plural in COHABITING and rt.group in COHABITING[rt.plural]:
                    if rt.plural in seen_cohab:
                        continue
                    seen_cohab.add(rt.plural)
                out.append(rt)
        ext = [rt for rt in out if rt.group == "extensions"]
        return [rt for rt in out if rt.group != "extensions"] + ext

    @staticmethod
    def gr_of(rt) -> str:
        return f"{rt.plural}.{rt.group}" if rt.group else rt.plural

    def _matches_selectors(self, obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if self.or_selectors is not None:
            return any(s is None or s.matches(labels) for s in self.or_selectors)
        return self.selector is None or self.selector.matches(labels)

    def _item(self, rt, obj: dict) -> Item:
        version = rt.versions[0] if rt.versions else rt.version
        obj["apiVersion"] = rt.api_version_for(version)
        obj["kind"] = rt.kind
        m = obj["metadata"]
        return Item(self.gr_of(rt), m.get("namespace") if rt.namespaced else None, m["name"], version, obj, rt)

    def collect(self) -> list[Item]:
        items: list[Item] = []
        ordered = self.spec.get("orderedResources") or {}
        for rt in self.resource_types():
            gr = self.gr_of(rt)
            if gr == "namespaces":
                continue  # handled by namespace_items (nsTracker)
            if not self.filter.include_type(gr, rt.namespaced):
                continue
            version = rt.versions[0] if rt.versions else rt.version
            if rt.namespaced and not self.all_namespaces:
                objs = []
                for ns in self.ns_filter.includes:
                    if ns in self.existing_namespaces:
                        objs += self.store.list(rt.group, rt.plural, ns, version=version)["items"]
            else:
                objs = self.store.list(rt.group, rt.plural, version=version)["items"]
            batch = []
            for obj in objs:
                ns = obj["metadata"].get("namespace")
                if rt.namespaced and not self.ns_filter.should_include(ns):
                    continue
                if not self._matches_selectors(obj):
                    continue
                batch.append(self._item(rt, obj))
            order = ordered.get(rt.plural) or ordered.get(gr)
            if order:
                wanted = [s.strip() for s in order.split(",") if s.strip()]
                pos = {w: i for i, w in enumerate(wanted)}
                key = lambda it: pos.get(f"{it.namespace}/{it.name}" if it.namespace else it.name, len(pos))  # noqa: E731
                batch.sort(key=key)
            items += batch
        return items

    # ---------------------------------------------------------------- related items (5.6)
    def _get_related(self, group, plural, namespace, name) -> Item | None:
        rt = self.registry.get(group, plural)
        if rt is None:
            return None
        gr = self.gr_of(rt)
        if not self.filter.include_related(gr, rt.namespaced):
            return None
        if rt.namespaced and not self.ns_filter.should_include(namespace):
            return None
        version = rt.versions[0] if rt.versions else rt.version
        obj = self.store.get_or_none(group, plural, namespace if rt.namespaced else None, name)
        if obj is None:
            return None
        if version != rt.version:
            obj = self.store.get(group, plural, namespace if rt.namespaced else None, name, version=version)
        return self._item(rt, obj)

    def related(self, item: Item) -> list[Item]:
        out = []
        obj = item.obj
        if item.gr == "pods":
            spec = obj.get("spec") or {}
            for v in spec.get("volumes") or []:
                claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    out.append(self._get_related("", "persistentvolumeclaims", item.namespace, claim))
            if spec.get("priorityClassName"):
                out.append(self._get_related("scheduling.k8s.io", "priorityclasses", None,
                                             spec["priorityClassName"]))
        elif item.gr == "persistentvolumeclaims":
            if (obj.get("status") or {}).get("phase") == "Bound" and (obj.get("spec") or {}).get("volumeName"):
                out.append(self._get_related("", "persistentvolumes", None, obj["spec"]["volumeName"]))
        elif item.gr == "serviceaccounts":
            for crb in self.store.list("rbac.authorization.k8s.io", "clusterrolebindings")["items"]:
                if any(s.get("kind") == "ServiceAccount" and s.get("name") == item.name
                       and s.get("namespace") == item.namespace for s in crb.get("subjects") or []):
                    out.append(self._get_related("rbac.authorization.k8s.io", "clusterrolebindings", None,
                                                 crb["metadata"]["name"]))
                    role = crb.get("roleRef") or {}
                    if role.get("kind") == "ClusterRole":
                        out.append(self._get_related("rbac.authorization.k8s.io", "clusterroles", None,
                                                     role.get("name", "")))
        return [r for r in out if r is not None]

    def crds_for(self, written: dict) -> list[Item]:
        """The CRD of each backed-up custom GroupResource, unless CRDs are excluded or bulk-included."""
        out = []
        seen = set()
        for (gr, ns, name, ver), obj in list(written.items()):
            rt = self.registry.get(*reversed(gr.split(".", 1))) if "." in gr else None
            if rt is None or getattr(rt, "builtin", True) or not getattr(rt, "crd_name", None):
                continue
            if rt.crd_name in seen:
                continue
            seen.add(rt.crd_name)
            it = self._get_related("apiextensions.k8s.io", "customresourcedefinitions", None, rt.crd_name)
            if it is not None:
                out.append(it)
        return out

    def namespace_items(self, written: dict) -> list[Item]:
        """Namespace objects per the nsTracker rule (5.1)."""
        if not self.filter.include_type("namespaces", False):
            return []
        rt = self.registry.get("", "namespaces")
        used = {ns for (_, ns, _, _) in written if ns}
        has_selector = self.selector is not None or self.or_selectors is not None
        out = []
        for ns in self.store.list("", "namespaces")["items"]:
            m = ns["metadata"]
            name = m["name"]
            if (ns.get("status") or {}).get("phase", "Active") != "Active":
                continue
            if not self.ns_filter.should_include(name):
                continue
            keep = (has_selector and self._matches_selectors(ns)) or \
                not (self.all_namespaces and has_selector)
            if name in used:
                keep = True
            if keep:
                out.append(self._item(rt, ns))
        return out
