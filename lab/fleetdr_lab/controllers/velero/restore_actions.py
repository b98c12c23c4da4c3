"""Velero's built-in RestoreItemActions.

Each action takes the item (already metadata-stripped, still in its source namespace) and the
running restore (`RestoreRun`, restore.py) and returns an ActionResult. An action raising
ActionError fails the item: the restore records an error for it and does not create it.

Upstream source: Velero pkg/restore/actions/*.go, plugin ConfigMaps:
pkg/plugin/framework/common/plugin_config.go.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field


PLUGIN_CONFIG_LABEL = "velero.io/plugin-config"
CHANGE_STORAGE_CLASS = "velero.io/change-storage-class"
CHANGE_IMAGE_NAME = "velero.io/change-image-name"
POD_VOLUME_RESTORE = "velero.io/pod-volume-restore"
RESTORE_HELPER_COMMAND = ["/velero-restore-helper"]

PVC_ANNOTATIONS_TO_DROP = (
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
    "velero.io/volume-snapshot-name",
    "velero.io/data-upload-name",
)


class ActionError(Exception):
    pass


@dataclass
class ActionResult:
    item: dict | None                       # None: skip the item (not restored, no error)
    additional: list[tuple[str, str, str]] = field(default_factory=list)  # (group-resource, ns, name)


def plugin_config(run, plugin_label: str) -> dict | None:
    """The plugin ConfigMap: labelled velero.io/plugin-config and <plugin>=RestoreItemAction in
    the Velero namespace; none -> None; several -> error for the item."""
    found = run.store.list("", "configmaps", run.velero_namespace,
                           label_selector=f"{PLUGIN_CONFIG_LABEL},{plugin_label}=RestoreItemAction")["items"]
    if len(found) > 1:
        raise ActionError(f"found more than one ConfigMap matching label selector "
                          f"\"{PLUGIN_CONFIG_LABEL},{plugin_label}=RestoreItemAction\": "
                          f"{sorted(cm['metadata']['name'] for cm in found)}")
    return found[0] if found else None


def _pod_spec_of(item: dict, group_resource: str) -> dict | None:
    spec = item.get("spec") or {}
    if group_resource == "pods":
        return spec
    if group_resource == "cronjobs.batch":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec")
    return (spec.get("template") or {}).get("spec")


# ---- pods ------------------------------------------------------------------------------

def pod_action(item, gr, run):
    spec = item.setdefault("spec", {})
    spec.pop("nodeName", None)
    spec.pop("priority", None)
    # Service-account token volumes are re-injected by the target cluster.
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or ""
    prefix = f"{sa}-token-"
    if sa:
        spec["volumes"] = [v for v in spec.get("volumes") or [] if not v.get("name", "").startswith(prefix)]
        for key in ("containers", "initContainers"):
            for c in spec.get(key) or []:
                if c.get("volumeMounts"):
                    c["volumeMounts"] = [m for m in c["volumeMounts"] if not m.get("name", "").startswith(prefix)]
    if not spec.get("volumes"):
        spec.pop("volumes", None)
    additional = []
    if spec.get("priorityClassName"):
        additional.append(("priorityclasses.scheduling.k8s.io", "", spec["priorityClassName"]))
    return ActionResult(item, additional)


def add_pvc_from_pod_action(item, gr, run):
    ns = item["metadata"].get("namespace", "")
    additional = [("persistentvolumeclaims", ns, v["persistentVolumeClaim"]["claimName"])
                  for v in (item.get("spec") or {}).get("volumes") or [] if v.get("persistentVolumeClaim")]
    return ActionResult(item, additional)


def pod_volume_restore_action(item, gr, run):
    """Prepend the restore-wait init container when the backup has file-system snapshots of this pod."""
    volumes = run.fs_restore_volumes(item)
    if not volumes:
        return ActionResult(item)
    image = run.server_image()
    if image is None:
        raise ActionError("unable to get velero server deployment: deployments.apps \"velero\" not found")
    cfg = plugin_config(run, POD_VOLUME_RESTORE)
    data = (cfg or {}).get("data") or {}
    requests = {"cpu": data.get("cpuRequest", "100m"), "memory": data.get("memRequest", "128Mi")}
    limits = {"cpu": data.get("cpuLimit", "100m"), "memory": data.get("memLimit", "128Mi")}
    init = {
        "name": "restore-wait",
        "image": data.get("image") or image,
        "imagePullPolicy": "IfNotPresent",
        "command": [data["command"]] if data.get("command") else list(RESTORE_HELPER_COMMAND),
        "args": [run.restore["metadata"]["uid"]],
        "env": [
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        ],
        "resources": {"requests": requests, "limits": limits},
        "volumeMounts": [{"name": v, "mountPath": f"/restores/{v}"} for v in volumes],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    sec = {}
    if data.get("secCtxRunAsUser"):
        sec["runAsUser"] = int(data["secCtxRunAsUser"])
    if data.get("secCtxRunAsGroup"):
        sec["runAsGroup"] = int(data["secCtxRunAsGroup"])
    if data.get("secCtxAllowPrivilegeEscalation"):
        sec["allowPrivilegeEscalation"] = data["secCtxAllowPrivilegeEscalation"].lower() == "true"
    if data.get("secCtx"):
        sec = json.loads(data["secCtx"]) if data["secCtx"].lstrip().startswith("{") else sec
    if sec:
        init["securityContext"] = sec
    spec = item["spec"]
    others = [c for c in spec.get("initContainers") or [] if c.get("name") not in ("restore-wait", "restic-wait")]
    spec["initContainers"] = [init] + others
    return ActionResult(item)


INIT_HOOK_IMAGE = "init.hook.restore.velero.io/container-image"
INIT_HOOK_NAME = "init.hook.restore.velero.io/container-name"
INIT_HOOK_COMMAND = "init.hook.restore.velero.io/command"


def parse_command(text: str) -> list[str]:
    """A JSON array string, or a single command."""
    text = (text or "").strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
            if isinstance(value, list):
                return [str(v) for v in value]
        except ValueError:
            pass
    return [text] if text else []


def hook_applies(selector: dict, gr: str, namespace: str, labels: dict, run) -> bool:
    from .filters import IncludesExcludes, resolve_resource_name
    from ...selectors import LabelSelector
    if not IncludesExcludes(selector.get("includedNamespaces"), selector.get("excludedNamespaces")).should_include(namespace):
        return False
    res = [resolve_resource_name(run.store.registry, r) for r in selector.get("includedResources") or []]
    exc = [resolve_resource_name(run.store.registry, r) for r in selector.get("excludedResources") or []]
    if not IncludesExcludes(res, exc).should_include(gr):
        return False
    if selector.get("labelSelector") is not None and \
            not LabelSelector.from_dict(selector["labelSelector"]).matches(labels):
        return False
    return True


def init_restore_hook_action(item, gr, run):
    """Init containers from restore hooks (annotations win over spec.hooks), placed after an
    existing restore-wait container so volumes are restored before the hooks run."""
    meta = item["metadata"]
    annotations = meta.get("annotations") or {}
    hooks: list[dict] = []
    if annotations.get(INIT_HOOK_IMAGE):
        name = annotations.get(INIT_HOOK_NAME) or f"velero-restore-init-{secrets.token_hex(4)}"
        hooks.append({"name": name, "image": annotations[INIT_HOOK_IMAGE],
                      "command": parse_command(annotations.get(INIT_HOOK_COMMAND, ""))})
    else:
        for rh in ((run.restore.get("spec") or {}).get("hooks") or {}).get("resources") or []:
            if not hook_applies(rh, gr, meta.get("namespace", ""), meta.get("labels") or {}, run):
                continue
            for hook in rh.get("postHooks") or []:
                init = hook.get("init") or {}
                hooks.extend(json.loads(json.dumps(init.get("initContainers") or [])))
    if not hooks:
        return ActionResult(item)
    spec = item.setdefault("spec", {})
    existing = list(spec.get("initContainers") or [])
    head = [existing.pop(0)] if existing and existing[0].get("name") == "restore-wait" else []
    spec["initContainers"] = head + hooks + existing
    return ActionResult(item)


# ---- services, jobs, service accounts, secrets ----------------------------------------

def _explicit_node_ports(service: dict) -> tuple[set[str], set[int], bool]:
    """Names / numbers of node ports the user set explicitly (last-applied-configuration or
    managedFields `f:nodePort`), and whether healthCheckNodePort was explicit."""
    names, numbers, health = set(), set(), False
    meta = service.get("metadata") or {}
    applied = (meta.get("annotations") or {}).get("kubectl.kubernetes.io/last-applied-configuration")
    if applied:
        try:
            spec = (json.loads(applied).get("spec") or {})
        except ValueError:
            spec = {}
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                (names.add(p["name"]) if p.get("name") else numbers.add(int(p["nodePort"])))
        health = bool(spec.get("healthCheckNodePort"))
    by_key = {(p.get("port"), p.get("protocol", "TCP")): p for p in (service.get("spec") or {}).get("ports") or []}
    for mf in meta.get("managedFields") or []:
        fspec = (mf.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:healthCheckNodePort" in fspec:
            health = True
        for key, value in (fspec.get("f:ports") or {}).items():
            if not key.startswith("k:") or "f:nodePort" not in (value or {}):
                continue
            try:
                k = json.loads(key[2:])
            except ValueError:
                continue
            port = by_key.get((k.get("port"), k.get("protocol", "TCP")))
            if port is not None:
                (names.add(port["name"]) if port.get("name") else numbers.add(int(port.get("nodePort") or 0)))
    return names, numbers, health


def service_action(item, gr, run):
    spec = item.setdefault("spec", {})
    if spec.get("type") == "ExternalName":
        return ActionResult(item)
    if spec.get("clusterIP") != "None":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
    if not run.restore["spec"].get("preserveNodePorts"):
        names, numbers, health = _explicit_node_ports(item)
        for port in spec.get("ports") or []:
            if "nodePort" not in port:
                continue
            explicit = port["name"] in names if port.get("name") else int(port["nodePort"]) in numbers
            if not explicit:
                port.pop("nodePort")
        if (spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
                and not health):
            spec.pop("healthCheckNodePort", None)
    return ActionResult(item)


def job_action(item, gr, run):
    spec = item.get("spec") or {}
    for labels in ((spec.get("selector") or {}).get("matchLabels"),
                   ((spec.get("template") or {}).get("metadata") or {}).get("labels")):
        if labels:
            labels.pop("batch.kubernetes.io/controller-uid", None)
            labels.pop("controller-uid", None)
    return ActionResult(item)


def service_account_action(item, gr, run):
    name = item["metadata"]["name"]
    secrets = item.get("secrets") or []
    for i in range(len(secrets) - 1, -1, -1):
        if secrets[i].get("name", "").startswith(f"{name}-token-"):
            del secrets[i]
            break
    if "secrets" in item and not secrets:
        item.pop("secrets")
    return ActionResult(item)


def secret_action(item, gr, run):
    if item.get("type") != "kubernetes.io/service-account-token":
        return ActionResult(item)
    meta = item["metadata"]
    sa_name = (meta.get("annotations") or {}).get("kubernetes.io/service-account.name", "")
    if sa_name and meta["name"].startswith(f"{sa_name}-token-") and \
            run.store.get_or_none("", "serviceaccounts", meta.get("namespace", ""), sa_name) is not None:
        return ActionResult(None)  # the target's token controller made its own
    (meta.get("annotations") or {}).pop("kubernetes.io/service-account.uid", None)
    for key in ("token", "ca.crt"):
        (item.get("data") or {}).pop(key, None)
    return ActionResult(item)


# ---- PVCs, storage classes, images ------------------------------------------------------

def pvc_action(item, gr, run):
    annotations = item["metadata"].get("annotations") or {}
    for key in PVC_ANNOTATIONS_TO_DROP:
        annotations.pop(key, None)
    additional = []
    backed_up = run.backed_up_item("persistentvolumeclaims", item["metadata"].get("namespace", ""),
                                   item["metadata"]["name"])
    source = backed_up or item
    if (source.get("status") or {}).get("phase") == "Bound" and (source.get("spec") or {}).get("volumeName"):
        additional.append(("persistentvolumes", "", source["spec"]["volumeName"]))
    return ActionResult(item, additional)


def _mapped_storage_class(run, config: dict, old: str) -> str | None:
    new = (config.get("data") or {}).get(old)
    if not new:
        return None
    if run.store.get_or_none("storage.k8s.io", "storageclasses", None, new) is None:
        raise ActionError(f"failed to get storage class {new}: storageclasses.storage.k8s.io \"{new}\" not found")
    return new


def change_storage_class_action(item, gr, run):
    config = plugin_config(run, CHANGE_STORAGE_CLASS)
    if not config or not config.get("data"):
        return ActionResult(item)
    spec = item.get("spec") or {}
    if gr == "statefulsets.apps":
        for tmpl in spec.get("volumeClaimTemplates") or []:
            old = (tmpl.get("spec") or {}).get("storageClassName")
            if old:
                new = _mapped_storage_class(run, config, old)
                if new:
                    tmpl["spec"]["storageClassName"] = new
        return ActionResult(item)
    old = spec.get("storageClassName")
    if old:
        new = _mapped_storage_class(run, config, old)
        if new:
            spec["storageClassName"] = new
    return ActionResult(item)


def _replace_image(image: str, config: dict) -> str | None:
    for row in (config.get("data") or {}).values():
        if "," not in row:
            continue
        old, _, new = row.partition(",")
        old, new = old.strip(), new.strip()
        if new and old in image:
            return image.replace(old, new)
    return None


def change_image_name_action(item, gr, run):
    config = plugin_config(run, CHANGE_IMAGE_NAME)
    if not config or not config.get("data"):
        return ActionResult(item)
    pod_spec = _pod_spec_of(item, gr)
    for key in ("containers", "initContainers"):
        for c in (pod_spec or {}).get(key) or []:
            if c.get("image"):
                new = _replace_image(c["image"], config)
                if new:
                    c["image"] = new
    return ActionResult(item)


# ---- RBAC, API services, webhooks ---------------------------------------------------------

def role_binding_action(item, gr, run):
    mapping = run.restore["spec"].get("namespaceMapping") or {}
    for subject in item.get("subjects") or []:
        if subject.get("namespace") in mapping:
            subject["namespace"] = mapping[subject["namespace"]]
    return ActionResult(item)


def apiservice_action(item, gr, run):
    if "kube-aggregator.kubernetes.io/automanaged" in (item["metadata"].get("labels") or {}):
        return ActionResult(None)
    return ActionResult(item)


def admission_webhook_action(item, gr, run):
    if not item.get("apiVersion", "").endswith("/v1"):
        return ActionResult(item)
    for hook in item.get("webhooks") or []:
        if hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            hook["sideEffects"] = "None"
    return ActionResult(item)


WORKLOADS = {"deployments.apps", "statefulsets.apps", "daemonsets.apps", "replicasets.apps",
             "replicationcontrollers", "jobs.batch", "cronjobs.batch", "pods"}

# (action name, group-resources it applies to, function) in registration order
ACTIONS = [
    ("velero.io/pod", {"pods"}, pod_action),
    ("velero.io/add-pvc-from-pod", {"pods"}, add_pvc_from_pod_action),
    ("velero.io/pod-volume-restore", {"pods"}, pod_volume_restore_action),
    ("velero.io/init-restore-hook", {"pods"}, init_restore_hook_action),
    ("velero.io/service", {"services"}, service_action),
    ("velero.io/job", {"jobs.batch"}, job_action),
    ("velero.io/service-account", {"serviceaccounts"}, service_account_action),
    ("velero.io/secret", {"secrets"}, secret_action),
    ("velero.io/pvc", {"persistentvolumeclaims"}, pvc_action),
    ("velero.io/change-storage-class",
     {"persistentvolumeclaims", "persistentvolumes", "statefulsets.apps"}, change_storage_class_action),
    ("velero.io/change-image-name", WORKLOADS, change_image_name_action),
    ("velero.io/role-bindings", {"rolebindings.rbac.authorization.k8s.io"}, role_binding_action),
    ("velero.io/cluster-role-bindings", {"clusterrolebindings.rbac.authorization.k8s.io"}, role_binding_action),
    ("velero.io/apiservice", {"apiservices.apiregistration.k8s.io"}, apiservice_action),
    ("velero.io/admission-webhook-configuration",
     {"mutatingwebhookconfigurations.admissionregistration.k8s.io",
      "validatingwebhookconfigurations.admissionregistration.k8s.io"}, admission_webhook_action),
]


def run_actions(item: dict, group_resource: str, run) -> ActionResult:
    """All applicable actions in order; additional items accumulate; a skip stops the chain."""
    additional = []
    for _name, applies, fn in ACTIONS:
        if group_resource not in applies:
            continue
        result = fn(item, group_resource, run)
        additional.extend(result.additional)
        if result.item is None:
            return ActionResult(None, additional)
        item = result.item
    return ActionResult(item, additional)
