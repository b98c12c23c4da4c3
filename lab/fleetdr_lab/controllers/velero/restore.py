"""Restore controller: validation, the restore of a backup tarball into the cluster,
file-system volume restores, the `restores/<name>/` files, the finalizer phases and the
`restores.velero.io/external-resources-finalizer` clean-up on deletion.

Upstream source: Velero pkg/controller/restore_controller.go, pkg/restore/restore.go.
"""
from __future__ import annotations

import asyncio
import copy
import gzip
import json
import time

from ...selectors import LabelSelector
from ...store import ApiError
from . import fsbackup
from .filters import (IncludesExcludes, glob_match, has_wildcard, resolve_resource_name,
                      validate_resource_lists)
from .modifiers import ModifierError, apply_modifiers, parse_resource_modifiers
from .restore_actions import ActionError, hook_applies, parse_command, run_actions
from .backup_store import ObjectStoreError, run_blocking
from .server import GROUP, VeleroController, label_safe, parse_time
from .tarball import read_backup_tarball

FINALIZER = "restores.velero.io/external-resources-finalizer"
NON_RESTORABLE = [
    "nodes", "events", "events.events.k8s.io", "backups.velero.io", "restores.velero.io",
    "resticrepositories.velero.io", "csinodes.storage.k8s.io", "volumeattachments.storage.k8s.io",
    "backuprepositories.velero.io",
]
# resources restored even when filters would drop them (resourceMustHave)
MUST_HAVE = {"datauploads.velero.io", "volumesnapshotcontents.snapshot.storage.k8s.io"}
STRIP_METADATA = ("generateName", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
                  "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences")
BACKUP_NAME_LABEL = "velero.io/backup-name"
RESTORE_NAME_LABEL = "velero.io/restore-name"
SCHEDULE_NAME_LABEL = "velero.io/schedule-name"
PROGRESS_PATCH_SECONDS = 1.0


def split_gr(gr: str) -> tuple[str, str]:
    """`deployments.apps` -> ("apps", "deployments"); `pods` -> ("", "pods")."""
    plural, _, group = gr.partition(".")
    return group, plural


def strip_for_restore(obj: dict) -> dict:
    """6.5 step 3: drop server-set metadata and status (labels, annotations, finalizers and
    managedFields are kept)."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    for key in STRIP_METADATA:
        meta.pop(key, None)
    out.pop("status", None)
    return out


def merge_patch_between(old, new):
    """The RFC 7386 merge patch that turns `old` into `new` (jsonmergepatch.CreateMergePatch)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            if isinstance(old[key], dict) and isinstance(value, dict):
                patch[key] = merge_patch_between(old[key], value)
            else:
                patch[key] = value
    return patch


class Results:
    """Velero's results.Result for warnings or errors: velero / cluster / namespaces[ns]."""

    def __init__(self):
        self.velero: list[str] = []
        self.cluster: list[str] = []
        self.namespaces: dict[str, list[str]] = {}

    def add(self, namespace: str | None, message: str):
        if namespace:
            self.namespaces.setdefault(namespace, []).append(message)
        else:
            self.cluster.append(message)

    def add_velero(self, message: str):
        self.velero.append(message)

    def count(self) -> int:
        return len(self.velero) + len(self.cluster) + sum(len(v) for v in self.namespaces.values())

    def to_json(self) -> dict:
        out = {}
        if self.velero:
            out["velero"] = self.velero
        if self.cluster:
            out["cluster"] = self.cluster
        if self.namespaces:
            out["namespaces"] = self.namespaces
        return out


def gzip_json(obj) -> bytes:
    # json.Encoder output: trailing newline inside the gzip stream
    return gzip.compress((json.dumps(obj) + "\n").encode(), mtime=0)


class RestoreRun:
    """One restore being executed: everything restore_actions need (`run` there)."""

    def __init__(self, controller: "RestoreController", restore: dict, backup: dict, contents, bstore,
                 modifiers):
        self.controller = controller
        self.server = controller.server
        self.store = controller.store
        self.cluster = controller.cluster
        self.velero_namespace = controller.namespace
        self.restore = restore
        self.backup = backup
        self.contents = contents
        self.backup_store = bstore
        self.modifiers = modifiers
        self.name = restore["metadata"]["name"]
        self.spec = restore.get("spec") or {}
        self.mapping = self.spec.get("namespaceMapping") or {}
        self.warnings = Results()
        self.errors = Results()
        self.log_lines: list[str] = []
        self.restored: dict[tuple[str, str, str], tuple[str, str, str]] = {}   # key -> (gv/Kind, ns/name, action)
        self.pvs_to_provision: set[str] = set()
        self.pvr_names: list[str] = []
        self.exec_hooks: list[dict] = []      # post-restore exec hooks of restored pods
        self.hooks_attempted = 0
        self.hooks_failed = 0
        self.total_items = 0
        self._last_progress = 0.0
        registry = self.store.registry
        res = lambda key: [resolve_resource_name(registry, r) for r in self.spec.get(key) or []]  # noqa: E731
        self.resource_ie = IncludesExcludes(res("includedResources"), res("excludedResources"))
        backup_namespaces = contents.namespaces()
        includes = self._expand(self.spec.get("includedNamespaces") or [], backup_namespaces)
        self.namespace_ie = IncludesExcludes(includes, self.spec.get("excludedNamespaces") or [])
        self.include_cluster = self.spec.get("includeClusterResources")
        self.label_selector = (LabelSelector.from_dict(self.spec["labelSelector"])
                               if self.spec.get("labelSelector") is not None else None)
        self.or_selectors = [LabelSelector.from_dict(s) for s in self.spec.get("orLabelSelectors") or []]
        pvbs = self.store.list(GROUP, "podvolumebackups", self.velero_namespace,
                               label_selector=f"{BACKUP_NAME_LABEL}={label_safe(backup['metadata']['name'])}")["items"]
        self.pvbs = [p for p in pvbs if (p.get("status") or {}).get("snapshotID")]

    @staticmethod
    def _expand(patterns: list[str], existing: list[str]) -> list[str]:
        out = []
        for p in patterns:
            if p != "*" and has_wildcard(p):
                out.extend(ns for ns in existing if glob_match(p, ns) and ns not in out)
            elif p not in out:
                out.append(p)
        return out

    # ---- logging ---------------------------------------------------------------------
    def log(self, level: str, msg: str):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.server.clock.time()))
        self.log_lines.append(f'time="{stamp}" level={level} msg={json.dumps(msg)} '
                              f'logSource="pkg/restore/restore.go" restore={self.velero_namespace}/{self.name}')

    def warn(self, namespace: str | None, message: str):
        self.warnings.add(namespace, message)
        self.log("warning", message)

    def error(self, namespace: str | None, message: str):
        self.errors.add(namespace, message)
        self.log("error", message)

    # ---- helpers for restore_actions -------------------------------------------------------
    def backed_up_item(self, gr: str, namespace: str, name: str) -> dict | None:
        return self.contents.get(gr, namespace or None, name)

    def server_image(self) -> str | None:
        dep = self.store.get_or_none("apps", "deployments", self.velero_namespace, "velero")
        if dep is None:
            return None
        containers = dep["spec"]["template"]["spec"].get("containers") or []
        container = next((c for c in containers if c.get("name") == "velero"), containers[0] if containers else {})
        return container.get("image")

    def pvbs_for_pod(self, pod: dict) -> list[dict]:
        meta = pod["metadata"]
        return [p for p in self.pvbs if (p["spec"].get("pod") or {}).get("namespace") == meta.get("namespace")
                and (p["spec"].get("pod") or {}).get("name") == meta["name"]]

    def fs_restore_volumes(self, pod: dict) -> list[str]:
        if not self.resource_ie.should_include("persistentvolumeclaims") and any(
                "persistentVolumeClaim" in v for v in (pod.get("spec") or {}).get("volumes") or []):
            return []
        return [p["spec"]["volume"] for p in self.pvbs_for_pod(pod)]

    def target_namespace(self, source_ns: str) -> str:
        return self.mapping.get(source_ns, source_ns)

    # ---- selection ------------------------------------------------------------------------
    def _type_of(self, gr: str):
        group, plural = split_gr(gr)
        return self.store.registry.get(group, plural)

    def _selected(self, gr: str, namespace: str | None, obj: dict, must_include: bool) -> bool:
        """6.3 filters for one item."""
        must_have = gr in MUST_HAVE
        if not must_have and not self.resource_ie.should_include(gr):
            return False
        if namespace:
            if not must_have:
                if must_include:
                    if self.namespace_ie.explicitly_excludes(namespace):
                        return False
                elif not self.namespace_ie.should_include(namespace):
                    return False
        else:
            if self.include_cluster is False:
                return False
            if self.include_cluster is None and not must_include and not must_have \
                    and not self.namespace_ie.is_everything():
                return False
        if not must_include and not must_have:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if self.label_selector is not None and not self.label_selector.matches(labels):
                return False
            if self.or_selectors and not any(s.matches(labels) for s in self.or_selectors):
                return False
        return True

    def ordered_resources(self) -> list[str]:
        high, low = self.server.config.restore_priorities
        registry = self.store.registry
        high = [resolve_resource_name(registry, r) for r in high]
        low = [resolve_resource_name(registry, r) for r in low]
        present = self.contents.resources()
        ordered = [r for r in high if r in present]
        ordered += sorted(r for r in present if r not in high and r not in low)
        ordered += [r for r in low if r in present]
        return ordered

    # ---- execution ------------------------------------------------------------------------
    async def execute(self):
        resources = self.ordered_resources()
        selection = []
        for gr in resources:
            if gr == "namespaces":
                continue
            for item in self.contents.iter_items(gr):
                if self._selected(gr, item.namespace, item.obj, False):
                    selection.append(item)
        self.total_items = len(selection)
        self.controller.patch("restores", self.name, {"status": {"progress": {
            "totalItems": self.total_items, "itemsRestored": 0}}})
        # first pass: CRDs (the store establishes them synchronously)
        crd_gr = "customresourcedefinitions.apiextensions.k8s.io"
        for item in selection:
            if item.group_resource == crd_gr:
                await self.restore_item(item.group_resource, item.namespace, item.name, item.obj, False)
        for item in selection:
            if item.group_resource != crd_gr:
                await self.restore_item(item.group_resource, item.namespace, item.name, item.obj, False)
            self._maybe_progress()
            await asyncio.sleep(0)  # let the API and other controllers run between items
        # namespaces of the backup that are selected but hold no restored item are still created
        for item in self.contents.iter_items("namespaces") if "namespaces" in self.contents.items else ():
            if self.namespace_ie.should_include(item.name) and self._selected("namespaces", None, item.obj, False):
                await self.ensure_namespace(item.name, self.target_namespace(item.name))
            await asyncio.sleep(0)  # let the API and other controllers run between items

    def _maybe_progress(self, force: bool = False):
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_PATCH_SECONDS:
            self._last_progress = now
            self.controller.patch("restores", self.name, {"status": {"progress": {
                "totalItems": max(self.total_items, len(self.restored)), "itemsRestored": len(self.restored)}}})

    def _record(self, gr: str, namespace: str | None, name: str, obj: dict, action: str):
        key = (gr, namespace or "", name)
        gv_kind = f"{obj.get('apiVersion', 'v1')}/{obj.get('kind', '')}"
        self.restored[key] = (gv_kind, f"{namespace}/{name}" if namespace else name, action)

    async def ensure_namespace(self, source_ns: str, target_ns: str) -> bool:
        """6.4 step 4: create the target namespace from the backed-up Namespace (labels,
        annotations, spec only); wait while it is Terminating. False if it cannot be used."""
        deadline = self.server.clock.time() + self.server.config.terminating_resource_timeout.total_seconds()
        while True:
            existing = self.store.get_or_none("", "namespaces", None, target_ns)
            if existing is None:
                break
            if (existing.get("status") or {}).get("phase") != "Terminating" and \
                    not existing["metadata"].get("deletionTimestamp"):
                return True
            if self.server.clock.time() >= deadline:
                self.error(target_ns, f"error ensuring namespace {target_ns} exists: timed out waiting for "
                                      f"terminating namespace {target_ns} to disappear before restoring")
                return False
            await asyncio.sleep(0.1)
        backed = self.contents.get("namespaces", None, source_ns) or {}
        meta = backed.get("metadata") or {}
        ns_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target_ns}}
        labels = dict(meta.get("labels") or {})
        if "kubernetes.io/metadata.name" in labels:
            labels["kubernetes.io/metadata.name"] = target_ns
        if labels:
            ns_obj["metadata"]["labels"] = labels
        if meta.get("annotations"):
            ns_obj["metadata"]["annotations"] = dict(meta["annotations"])
        if backed.get("spec"):
            ns_obj["spec"] = copy.deepcopy(backed["spec"])
        try:
            self.store.create("", "namespaces", None, ns_obj)
        except ApiError as exc:
            if exc.code == 409:
                return True
            self.error(target_ns, f"error ensuring namespace {target_ns} exists: {exc}")
            return False
        self.restored[("namespaces", "", target_ns)] = ("v1/Namespace", target_ns, "created")
        self.log("info", f"Namespace {target_ns} created")
        return True

    async def restore_item(self, gr: str, namespace: str | None, name: str, obj: dict, must_include: bool):
        """6.5: the per-item pipeline."""
        key = (gr, namespace or "", name)
        if key in self.restored:
            return
        if must_include and not self._selected(gr, namespace, obj, True):
            return
        target_ns = self.target_namespace(namespace) if namespace else None
        result_ns = target_ns  # warnings/errors are filed under the target namespace
        rt = self._type_of(gr)
        if namespace:
            if not await self.ensure_namespace(namespace, target_ns):
                return
        # things never restored
        if gr == "pods":
            if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            if "kubernetes.io/config.mirror" in ((obj.get("metadata") or {}).get("annotations") or {}):
                return
        if gr == "jobs.batch" and (obj.get("status") or {}).get("completionTime"):
            return
        if rt is None:
            self._record(gr, target_ns, name, obj, "failed")
            self.error(result_ns, f"error restoring {gr}/{target_ns + '/' if target_ns else ''}{name}: "
                                  f"the server could not find the requested resource")
            return
        # PersistentVolumes (6.7)
        if gr == "persistentvolumes":
            if not self._restore_pv_decision(obj):
                self.restored[key] = (f"{obj.get('apiVersion', 'v1')}/{obj.get('kind', '')}", name, "skipped")
                return
        self.restored[key] = None  # in progress: breaks cycles between related items
        item = strip_for_restore(obj)
        if gr == "persistentvolumes":
            item = self._reset_pv(item)
        try:
            result = run_actions(item, gr, self)
        except ActionError as exc:
            self._record(gr, target_ns, name, obj, "failed")
            self.error(result_ns, f"error preparing {gr}/{target_ns + '/' if target_ns else ''}{name}: {exc}")
            return
        for add_gr, add_ns, add_name in result.additional:
            extra = self.contents.get(add_gr, add_ns or None, add_name)
            if extra is not None:
                await self.restore_item(add_gr, add_ns or None, add_name, extra, True)
        if result.item is None:
            self.restored[key] = (f"{obj.get('apiVersion', 'v1')}/{obj.get('kind', '')}",
                                  f"{target_ns}/{name}" if target_ns else name, "skipped")
            return
        item = result.item
        if gr == "persistentvolumeclaims":
            annotations = item["metadata"].get("annotations") or {}
            annotations.pop("pv.kubernetes.io/bind-completed", None)
            annotations.pop("pv.kubernetes.io/bound-by-controller", None)
            if (item.get("spec") or {}).get("volumeName") in self.pvs_to_provision:
                item["spec"].pop("volumeName")
        if self.modifiers:
            item, errs = apply_modifiers(self.modifiers, item, gr)
            for e in errs:
                self.error(result_ns, e)
        if target_ns:
            item["metadata"]["namespace"] = target_ns
        labels = item["metadata"].setdefault("labels", {})
        labels[BACKUP_NAME_LABEL] = label_safe(self.backup["metadata"]["name"])
        labels[RESTORE_NAME_LABEL] = label_safe(self.name)
        group, plural = split_gr(gr)
        version = item.get("apiVersion", "v1").rpartition("/")[2]
        try:
            created = self.store.create(group, plural, target_ns, item)
        except ApiError as exc:
            exists = exc.code == 409 and exc.reason == "AlreadyExists"
            if not exists and gr == "services" and "provided port is already allocated" in str(exc.message):
                # Velero treats a node-port clash of a Service that is already there as "exists"
                exists = self.store.get_or_none(group, plural, target_ns, name) is not None
            if exists:
                self._existing(gr, group, plural, target_ns, name, item, version, result_ns, obj)
                return
            self._record(gr, target_ns, name, obj, "failed")
            self.error(result_ns, f"error restoring {gr}/{target_ns + '/' if target_ns else ''}{name}: "
                                  f"{getattr(exc, 'message', exc)}")
            return
        except Exception as exc:  # noqa: BLE001 - any store refusal fails this item only
            self._record(gr, target_ns, name, obj, "failed")
            self.error(result_ns, f"error restoring {gr}/{target_ns + '/' if target_ns else ''}{name}: {exc}")
            return
        self._record(gr, target_ns, name, obj, "created")
        self.log("info", f"Restored {gr} {target_ns + '/' if target_ns else ''}{name}")
        self._restore_status(gr, group, plural, target_ns, name, obj, version)
        if gr == "pods":
            self._collect_exec_hooks(obj, target_ns)
            pvbs = self.pvbs_for_pod(obj)
            if pvbs and self.fs_restore_volumes(obj):
                self.pvr_names += fsbackup.create_pod_volume_restores(self, self.restore, created, pvbs, namespace)

    # ---- post-restore exec hooks (14.2) -----------------------------------------------------
    def _collect_exec_hooks(self, pod: dict, target_ns: str):
        """Annotations (post.hook.restore.velero.io/*) win over spec.hooks for a pod."""
        meta = pod["metadata"]
        ann = meta.get("annotations") or {}
        prefix = "post.hook.restore.velero.io/"
        hooks = []
        if ann.get(prefix + "command"):
            hooks.append({"hookName": "<from-annotation>", "container": ann.get(prefix + "container"),
                          "command": parse_command(ann[prefix + "command"]),
                          "onError": ann.get(prefix + "on-error") or "Continue",
                          "waitTimeout": ann.get(prefix + "wait-timeout"),
                          "waitForReady": ann.get(prefix + "wait-for-ready") == "true"})
        else:
            for rh in (self.spec.get("hooks") or {}).get("resources") or []:
                if not hook_applies(rh, "pods", meta.get("namespace", ""), meta.get("labels") or {}, self):
                    continue
                for hook in rh.get("postHooks") or []:
                    if hook.get("exec"):
                        hooks.append(dict(hook["exec"], hookName=rh.get("name", "")))
        for h in hooks:
            h["namespace"], h["pod"] = target_ns, meta["name"]
            self.exec_hooks.append(h)

    async def run_exec_hooks(self):
        """The lab cannot exec into containers: a hook 'runs' once its container is running (or
        ready with waitForReady) and fails when the container does not exist or never gets there."""
        from .server_config import parse_duration
        clock = self.server.clock
        for h in self.exec_hooks:
            self.hooks_attempted += 1
            try:
                wait = parse_duration(h["waitTimeout"]).total_seconds() if h.get("waitTimeout") else 0
            except ValueError:
                wait = 0
            deadline = clock.time() + (wait or self.server.config.resource_timeout.total_seconds())
            error = None
            while True:
                pod = self.store.get_or_none("", "pods", h["namespace"], h["pod"])
                if pod is None:
                    error = "pod not found"
                    break
                names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
                container = h.get("container") or (names[0] if names else "")
                if not h.get("command"):
                    error = "command is required"
                    break
                if container not in names:
                    error = f'no such container: "{container}"'
                    break
                cs = next((c for c in (pod.get("status") or {}).get("containerStatuses") or []
                           if c.get("name") == container), {})
                if (cs.get("state") or {}).get("running") and (cs.get("ready") or not h.get("waitForReady")):
                    self.log("info", f"hook {h['hookName']} in container {container} in pod "
                                     f"{h['namespace']}/{h['pod']} executed")
                    break
                if clock.time() >= deadline:
                    error = f"timed out waiting for container {container} to be " \
                            f"{'ready' if h.get('waitForReady') else 'running'}"
                    break
                await asyncio.sleep(0.1)
            if error:
                self.hooks_failed += 1
                self.error(h["namespace"], f"hook {h['hookName']} in container {h.get('container') or ''} "
                                           f"in pod {h['namespace']}/{h['pod']} not executed: {error}")

    def _restore_status(self, gr, group, plural, ns, name, backed_up: dict, version):
        """6.9: status only when restoreStatus selects the type or the object asks for it."""
        wanted = (backed_up["metadata"].get("annotations") or {}).get("velero.io/restore-status")
        rs = self.spec.get("restoreStatus") or {}
        by_spec = bool(rs) and IncludesExcludes(
            [resolve_resource_name(self.store.registry, r) for r in rs.get("includedResources") or []],
            [resolve_resource_name(self.store.registry, r) for r in rs.get("excludedResources") or []],
        ).should_include(gr) and bool(rs.get("includedResources"))
        if wanted == "false" or not (by_spec or wanted == "true") or not backed_up.get("status"):
            return
        rt = self._type_of(gr)
        sub = "status" if rt is not None and rt.has_status else None
        try:
            self.store.patch(group, plural, ns, name, {"status": backed_up["status"]}, "merge",
                             subresource=sub)
        except Exception as exc:  # noqa: BLE001
            self.warn(ns, f"could not restore status of {gr} {name}: {exc}")

    def _restore_pv_decision(self, pv: dict) -> bool:
        """True: restore the PV object. False: leave it to dynamic provisioning (its PVC loses
        spec.volumeName). No snapshots exist in the lab except file-system ones."""
        name = pv["metadata"]["name"]
        claim = (pv.get("spec") or {}).get("claimRef") or {}
        fs_backed = any((p["spec"].get("pod") or {}).get("namespace") == claim.get("namespace")
                        and (p["metadata"].get("annotations") or {}).get("velero.io/pvc-name") == claim.get("name")
                        for p in self.pvbs)
        if fs_backed or (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Delete") == "Delete":
            self.pvs_to_provision.add(name)
            self.log("info", f"Dynamically re-provisioning persistent volume {name} "
                             f"({'has a pod volume backup' if fs_backed else 'no snapshot, reclaim policy Delete'})")
            return False
        return True

    def _reset_pv(self, pv: dict) -> dict:
        spec = pv.setdefault("spec", {})
        claim = spec.get("claimRef")
        if claim:
            claim.pop("uid", None)
            claim.pop("resourceVersion", None)
            if claim.get("namespace") in self.mapping:
                claim["namespace"] = self.mapping[claim["namespace"]]
        annotations = pv["metadata"].get("annotations") or {}
        annotations.pop("pv.kubernetes.io/bind-completed", None)
        annotations.pop("pv.kubernetes.io/bound-by-controller", None)
        return pv

    def _existing(self, gr, group, plural, ns, name, item, version, result_ns, backed_up):
        """6.8: the object already exists."""
        live = self.store.get_or_none(group, plural, ns, name)
        if live is None:
            self._record(gr, ns, name, backed_up, "failed")
            self.error(result_ns, f"error restoring {gr}/{ns + '/' if ns else ''}{name}: already exists but cannot be read")
            return
        live_cmp = strip_for_restore(live)
        live_cmp["metadata"].setdefault("labels", {})
        live_cmp["metadata"]["labels"][BACKUP_NAME_LABEL] = item["metadata"]["labels"][BACKUP_NAME_LABEL]
        live_cmp["metadata"]["labels"][RESTORE_NAME_LABEL] = item["metadata"]["labels"][RESTORE_NAME_LABEL]
        desired = copy.deepcopy(item)
        if live_cmp == desired:
            self._record(gr, ns, name, backed_up, "skipped")
            self.log("info", f"Restore of {item.get('kind')}, {name} skipped: it already exists in the cluster "
                             f"and is the same as the backed up version")
            return
        policy = self.spec.get("existingResourcePolicy") or ""
        kind = item.get("kind", "")
        if gr == "serviceaccounts":
            patch = self._merge_service_account(live, item)
            try:
                if patch:
                    self.store.patch(group, plural, ns, name, patch, "merge")
                self._record(gr, ns, name, backed_up, "updated")
            except Exception as exc:  # noqa: BLE001
                self._record(gr, ns, name, backed_up, "failed")
                self.warn(result_ns, str(getattr(exc, "message", exc)))
            return
        if policy == "update":
            blanked = copy.deepcopy(live_cmp)
            blanked["metadata"]["labels"].pop(BACKUP_NAME_LABEL, None)
            blanked["metadata"]["labels"].pop(RESTORE_NAME_LABEL, None)
            patch = merge_patch_between(blanked, desired)
            try:
                self.store.patch(group, plural, ns, name, patch, "merge")
                self._record(gr, ns, name, backed_up, "updated")
                self.log("info", f"{kind} {name} updated")
            except Exception as exc:  # noqa: BLE001
                self.warn(result_ns, f"could not update existing {kind} {name}: {getattr(exc, 'message', exc)}")
                self._record(gr, ns, name, backed_up, "failed")
                try:
                    self.store.patch(group, plural, ns, name, {"metadata": {"labels": {
                        BACKUP_NAME_LABEL: desired["metadata"]["labels"][BACKUP_NAME_LABEL],
                        RESTORE_NAME_LABEL: desired["metadata"]["labels"][RESTORE_NAME_LABEL]}}}, "merge")
                except Exception:  # noqa: BLE001
                    pass
            return
        self._record(gr, ns, name, backed_up, "failed")
        if policy == "none":
            self.warn(result_ns, f'could not restore, {kind} "{name}" already exists. Warning: the in-cluster '
                                 f'version is different than the backed-up version.')
        else:
            self.warn(result_ns, f"could not restore, {kind}:{name} already exists. Warning: the in-cluster "
                                 f"version is different than the backed-up version")

    @staticmethod
    def _merge_service_account(live: dict, backed: dict) -> dict:
        """merge_service_account.go: union of secrets / imagePullSecrets, labels and annotations
        (existing keys win)."""
        patch = {}
        for key in ("secrets", "imagePullSecrets"):
            have = list(live.get(key) or [])
            names = {s.get("name") for s in have}
            added = [s for s in backed.get(key) or [] if s.get("name") not in names]
            if added:
                patch[key] = have + added
        for key in ("labels", "annotations"):
            have = live["metadata"].get(key) or {}
            extra = {k: v for k, v in (backed["metadata"].get(key) or {}).items() if k not in have}
            if extra:
                patch.setdefault("metadata", {})[key] = extra
        return patch

    # ---- results ------------------------------------------------------------------------
    def resource_list(self) -> dict:
        out: dict[str, list[str]] = {}
        for entry in self.restored.values():
            if entry is None:
                continue
            gv_kind, ident, action = entry
            out.setdefault(gv_kind, []).append(f"{ident}({action})")
        return {k: sorted(v) for k, v in sorted(out.items())}

    def volume_info(self) -> list[dict]:
        infos = []
        for name in self.pvr_names:
            pvr = self.store.get_or_none(GROUP, "podvolumerestores", self.velero_namespace, name)
            if pvr is None:
                continue
            pod = self.store.get_or_none("", "pods", pvr["spec"]["pod"]["namespace"], pvr["spec"]["pod"]["name"]) or {}
            vol = next((v for v in (pod.get("spec") or {}).get("volumes") or []
                        if v.get("name") == pvr["spec"]["volume"]), {})
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName", "")
            infos.append({"pvcName": claim, "pvcNamespace": pvr["spec"]["pod"]["namespace"],
                          "restoreMethod": "PodVolumeRestore", "snapshotDataMoved": False,
                          "pvrInfo": {"snapshotHandle": pvr["spec"]["snapshotID"], "uploaderType": "kopia",
                                      "volumeName": pvr["spec"]["volume"], "podName": pvr["spec"]["pod"]["name"],
                                      "podNamespace": pvr["spec"]["pod"]["namespace"]}})
        return infos


class RestoreController(VeleroController):
    name = "restore"
    watches = [(GROUP, "restores")]

    def keys_for(self, etype, obj):
        m = obj.get("metadata") or {}
        if m.get("namespace") != self.namespace or etype == "DELETED":
            return ()
        phase = (obj.get("status") or {}).get("phase")
        if phase in (None, "", "New") or m.get("deletionTimestamp") or FINALIZER not in (m.get("finalizers") or []):
            return (m["name"],)
        return ()

    async def reconcile(self, name):
        restore = self.get("restores", name)
        if restore is None:
            return
        meta = restore["metadata"]
        if meta.get("deletionTimestamp"):
            await self._finalize_deletion(restore)
            return
        if FINALIZER not in (meta.get("finalizers") or []):
            restore = self.patch("restores", name, {"metadata": {
                "finalizers": list(meta.get("finalizers") or []) + [FINALIZER]}})
        if (restore.get("status") or {}).get("phase") not in (None, "", "New"):
            return
        await self._process(restore)

    async def _finalize_deletion(self, restore: dict):
        """Delete `restores/<name>/*` from the backup's BSL, then drop the finalizer. Skipped when
        the Backup CR is gone; retried while the BSL is unavailable or the delete fails."""
        name = restore["metadata"]["name"]
        if FINALIZER not in (restore["metadata"].get("finalizers") or []):
            return
        backup = self.get("backups", (restore.get("spec") or {}).get("backupName") or "")
        if backup is not None:
            bsl = self.server.get_bsl((backup.get("spec") or {}).get("storageLocation") or "")
            if bsl is None or (bsl.get("status") or {}).get("phase") != "Available":
                self.enqueue_after(5.0, name)
                return
            try:
                bstore = self.server.backup_store(bsl)
                await run_blocking(bstore.delete_prefix, bstore.layout.restore_dir(name))
            except ObjectStoreError:
                self.log.exception("deleting restore files of %s", name)
                self.enqueue_after(5.0, name)
                return
        current = self.get("restores", name)
        if current is None:
            return
        finalizers = [f for f in current["metadata"].get("finalizers") or [] if f != FINALIZER]
        self.store.patch(GROUP, "restores", self.namespace, name,
                         [{"op": "test", "path": "/metadata/resourceVersion",
                           "value": current["metadata"]["resourceVersion"]},
                          {"op": "replace", "path": "/metadata/finalizers", "value": finalizers}], "json")

    # ---- validation (6.2) -------------------------------------------------------------------
    def _validate(self, restore: dict) -> tuple[dict, list[str], dict | None, list]:
        """Returns (spec after mutation, validation errors, backup, modifier rules)."""
        spec = copy.deepcopy(restore.get("spec") or {})
        errors: list[str] = []
        excluded = list(spec.get("excludedResources") or [])
        for r in NON_RESTORABLE:
            if r not in excluded:
                excluded.append(r)
        spec["excludedResources"] = excluded
        included = spec.get("includedResources") or []
        for r in NON_RESTORABLE:
            if r in included:
                errors.append(f"{r} are non-restorable resources")
        for e in validate_resource_lists(included, excluded):
            errors.append(f"Invalid included/excluded resource lists: {e}")
        for e in validate_resource_lists(spec.get("includedNamespaces") or [], spec.get("excludedNamespaces") or []):
            errors.append(f"Invalid included/excluded namespace lists: {e}")
        if spec.get("orLabelSelectors") is not None and spec.get("labelSelector") is not None:
            errors.append("encountered labelSelector as well as orLabelSelectors in restore spec, "
                          "only one can be specified")
        if bool(spec.get("backupName")) == bool(spec.get("scheduleName")):
            errors.append("Either a backup or schedule must be specified as a source for the restore, but not both")
            return spec, errors, None, []
        policy = spec.get("existingResourcePolicy")
        if policy and policy not in ("none", "update"):
            errors.append(f"Invalid ExistingResourcePolicy: {policy}")
        if spec.get("scheduleName"):
            backups = self.list("backups", label_selector=f"{SCHEDULE_NAME_LABEL}={label_safe(spec['scheduleName'])}")
            if not backups:
                errors.append("No backups found for schedule")
            completed = [b for b in backups if (b.get("status") or {}).get("phase") == "Completed"]
            if completed:
                newest = max(completed, key=lambda b: parse_time((b.get("status") or {}).get("startTimestamp"))
                             or parse_time("1970-01-01T00:00:00Z"))
                spec["backupName"] = newest["metadata"]["name"]
            else:
                errors.append("No completed backups found for schedule")
                return spec, errors, None, []
        backup = self.get("backups", spec["backupName"])
        if backup is None:
            errors.append(f"Error retrieving backup: can't find backup {self.namespace}/{spec['backupName']}: "
                          f"backups.velero.io \"{spec['backupName']}\" not found")
            return spec, errors, None, []
        bsl_name = (backup.get("spec") or {}).get("storageLocation") or ""
        bsl = self.server.get_bsl(bsl_name)
        if bsl is None:
            errors.append(f"Error retrieving backup: backupstoragelocations.velero.io \"{bsl_name}\" not found")
            return spec, errors, None, []
        if (bsl.get("status") or {}).get("phase") != "Available":
            errors.append(f"Error retrieving backup: The BSL {bsl_name} is unavailable, cannot retrieve the backup")
            return spec, errors, None, []
        if not spec.get("scheduleName"):
            schedule = (backup["metadata"].get("labels") or {}).get(SCHEDULE_NAME_LABEL)
            if schedule:
                spec["scheduleName"] = schedule
        rules = []
        ref = spec.get("resourceModifier")
        if ref and str(ref.get("kind", "")).lower() == "configmap":
            cm = self.store.get_or_none("", "configmaps", self.namespace, ref.get("name", ""))
            if cm is None:
                errors.append(f"failed to get resource modifiers configmap {self.namespace}/{ref.get('name')}")
                return spec, errors, backup, []
            try:
                rules = parse_resource_modifiers(cm)
            except ModifierError as exc:
                errors.append(f"Error in parsing resource modifiers provided in configmap "
                              f"{self.namespace}/{ref.get('name')}: {exc}")
                return spec, errors, backup, []
        return spec, errors, backup, rules

    # ---- processing ----------------------------------------------------------------------------
    async def _process(self, restore: dict):
        name = restore["metadata"]["name"]
        spec, errors, backup, rules = self._validate(restore)
        if errors:
            self.patch("restores", name, {"spec": spec, "status": {
                "phase": "FailedValidation", "validationErrors": errors}})
            return
        spec.setdefault("itemOperationTimeout", "4h0m0s")
        restore = self.patch("restores", name, {"spec": spec, "status": {
            "phase": "InProgress", "startTimestamp": self.now()}})
        bsl = self.server.get_bsl(backup["spec"].get("storageLocation") or "")
        try:
            bstore = self.server.backup_store(bsl)
            data = await run_blocking(bstore.get_backup_contents, backup["metadata"]["name"])
            contents = read_backup_tarball(data)
        except Exception as exc:  # noqa: BLE001 - download/parse failure fails the restore
            self.patch("restores", name, {"status": {
                "phase": "Failed", "failureReason": f"error downloading backup: {exc}",
                "completionTimestamp": self.now()}})
            return
        run = RestoreRun(self, restore, backup, contents, bstore, rules)
        run.log("info", f"starting restore of backup {self.namespace}/{backup['metadata']['name']}")
        for w in contents.warnings:
            run.warn(None, w) if w == "zero items to be restored" else run.log("warning", w)
        try:
            await run.execute()
        except Exception as exc:  # noqa: BLE001 - an unexpected crash fails the restore
            self.log.exception("restore %s failed", name)
            self.patch("restores", name, {"status": {
                "phase": "Failed", "failureReason": str(exc), "completionTimestamp": self.now()}})
            return
        if run.pvr_names:
            pvrs = await fsbackup.wait_pod_volume_restores(run, restore, run.pvr_names)
            for pvr in pvrs:
                st = (pvr or {}).get("status") or {}
                if st.get("phase") != "Completed":
                    ns = pvr["spec"]["pod"]["namespace"]
                    run.error(ns, f"pod volume restore failed: {st.get('message', st.get('phase', ''))}")
        run.log("info", "restore completed")
        # upload: the log first (its failure is an error), the rest only logged
        lay = bstore.layout
        try:
            await run_blocking(bstore.put_object, lay.restore_log_key(name),
                               gzip.compress(("\n".join(run.log_lines) + "\n").encode(), mtime=0))
        except ObjectStoreError as exc:
            run.errors.add_velero(f"error uploading log file to backup storage: {exc}")
        files = {
            lay.restore_results_key(name): gzip_json({"errors": run.errors.to_json(),
                                                      "warnings": run.warnings.to_json()}),
            lay.restore_resource_list_key(name): gzip_json(run.resource_list()),
            lay.restore_item_operations_key(name): gzip_json([]),
            lay.restore_volume_info_key(name): gzip_json(run.volume_info()),
        }
        for key, blob in files.items():
            try:
                await run_blocking(bstore.put_object, key, blob)
            except ObjectStoreError:
                self.log.warning("uploading %s failed", key)
        done = len([v for v in run.restored.values() if v is not None])
        errors_n, warnings_n = run.errors.count(), run.warnings.count()
        self.patch("restores", name, {"status": {
            "phase": "FinalizingPartiallyFailed" if errors_n else "Finalizing",
            "progress": {"totalItems": done, "itemsRestored": done},
            "warnings": warnings_n, "errors": errors_n}})
        # the restore-finalizer controller's step: wait for exec hooks, add their errors
        await asyncio.sleep(0)
        final = {}
        if run.exec_hooks:
            await run.run_exec_hooks()
            final["hookStatus"] = {"hooksAttempted": run.hooks_attempted, "hooksFailed": run.hooks_failed}
            if run.errors.count() != errors_n:
                errors_n = run.errors.count()
                final["errors"] = errors_n
                try:
                    await run_blocking(bstore.put_object, lay.restore_results_key(name), gzip_json(
                        {"errors": run.errors.to_json(), "warnings": run.warnings.to_json()}))
                except ObjectStoreError:
                    self.log.warning("re-uploading results of %s failed", name)
        final.update({"phase": "PartiallyFailed" if errors_n else "Completed",
                      "completionTimestamp": self.now()})
        self.patch("restores", name, {"status": final})
