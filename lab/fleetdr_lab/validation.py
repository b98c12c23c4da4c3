"""Names, labels, per-kind defaulting and validation, CRD schema pruning/defaulting.

The (group, plural) tables DEFAULTERS, INITIAL_STATUS, VALIDATORS, OMITEMPTY (Go's omitempty),
ZERO_FIELDS and ATOMIC_FIELDS (field shapes for managedFields) are read by the built-in kinds'
strategies (strategies.py). Validators return lists of FieldError; the Store turns a non-empty list into a 422 Invalid
whose message and details.causes have the shapes k8s.io/apimachinery's field.Error gives.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

import celpy

from .names import (dns1123_label_errors, dns1123_subdomain_errors, label_key_errors,
                    label_value_errors, path_segment_errors, qualified_name_errors)
from .selectors import LabelSelector, SelectorError

ABSENT = object()  # no old value at this place (a create, or a field the update adds)

# ---- field errors -----------------------------------------------------------------------


def _go_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
        inner = ", ".join(f"{json.dumps(k)}:{json.dumps(x)}" for k, x in sorted(v.items()))
        return "map[string]string{" + inner + "}"
    return json.dumps(v, separators=(",", ":")) if not isinstance(v, (int, float)) else str(v)


@dataclass
class FieldError:
    field: str
    type: str            # "FieldValueInvalid", "FieldValueRequired", ...
    detail: str = ""
    value: object = None

    def body(self) -> str:
        if self.type == "FieldValueRequired":
            return "Required value" + (f": {self.detail}" if self.detail else "")
        if self.type == "FieldValueForbidden":
            return "Forbidden" + (f": {self.detail}" if self.detail else "")
        if self.type == "FieldValueNotSupported":
            return f"Unsupported value: {_go_value(self.value)}: {self.detail}"
        if self.type == "FieldValueDuplicate":
            return f"Duplicate value: {_go_value(self.value)}"
        if self.type == "FieldValueTypeInvalid":
            return f"Invalid value: {_go_value(self.value)}: {self.detail}"
        if self.type == "FieldValueTooLong":
            return f"Too long: {self.detail}"
        if self.type == "FieldValueTooMany":
            return f"Too many: {self.detail}"
        return f"Invalid value: {_go_value(self.value)}" + (f": {self.detail}" if self.detail else "")

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict:
        return {"reason": self.type, "message": self.body(), "field": self.field}


def invalid(field, value, detail) -> FieldError:
    return FieldError(field, "FieldValueInvalid", detail, value)


def required(field, detail="") -> FieldError:
    return FieldError(field, "FieldValueRequired", detail)


def forbidden(field, detail) -> FieldError:
    return FieldError(field, "FieldValueForbidden", detail)


def not_supported(field, value, supported) -> FieldError:
    return FieldError(field, "FieldValueNotSupported",
                      "supported values: " + ", ".join(json.dumps(s) for s in supported), value)


# ---- names and labels: names.py ---------------------------------------------------------


# Resources whose names are DNS-1123 labels / free path segments rather than subdomains.
LABEL_NAMED = {("", "namespaces"), ("", "services")}
PATH_SEGMENT_NAMED = {("rbac.authorization.k8s.io", p)
                      for p in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")}

TOTAL_ANNOTATION_SIZE = 256 * 1024


def validate_metadata(group: str, plural: str, meta: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    name = meta.get("name")
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        if (group, plural) in LABEL_NAMED:
            msgs = dns1123_label_errors(name)
        elif (group, plural) in PATH_SEGMENT_NAMED:
            msgs = path_segment_errors(name)
        else:
            msgs = dns1123_subdomain_errors(name)
        errs += [invalid("metadata.name", name, m) for m in msgs]
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        errs.append(invalid("metadata.labels", labels, "must be a map of string to string"))
        labels = {}
    for k, v in labels.items():
        errs += [invalid("metadata.labels", k, m) for m in label_key_errors(k)]
        if not isinstance(v, str):
            errs.append(invalid("metadata.labels", v, "must be a string"))
            continue
        errs += [invalid("metadata.labels", v, m) for m in label_value_errors(v)]
    annotations = meta.get("annotations") or {}
    size = 0
    for k, v in annotations.items():
        errs += [invalid("metadata.annotations", k, m) for m in qualified_name_errors(k.lower())]
        size += len(k) + len(v or "")
    if size > TOTAL_ANNOTATION_SIZE:
        errs.append(FieldError("metadata.annotations", "FieldValueTooLong",
                               f"may not be more than {TOTAL_ANNOTATION_SIZE} bytes"))
    controllers = 0
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        p = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            errs.append(invalid(p, ref, "must be an object"))
            continue
        for k in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(k):
                errs.append(invalid(f"metadata.ownerReferences.{k}", ref.get(k, ""),
                                    f"{k} must not be empty" if k != "apiVersion"
                                    else "version must not be empty"))
        controllers += bool(ref.get("controller"))
    if controllers > 1:
        errs.append(invalid("metadata.ownerReferences", meta["ownerReferences"],
                            "Only one reference can have Controller set to true."))
    # apimachinery ValidateFinalizers: any qualified name (kube-apiserver only warns about names
    # without a domain, e.g. Rook's "cephcluster.ceph.rook.io"); the stricter "standard or fully
    # qualified" rule is core's, for Namespace spec.finalizers.
    for i, f in enumerate(meta.get("finalizers") or []):
        errs += [invalid(f"metadata.finalizers[{i}]", f, m) for m in qualified_name_errors(f)]
    return errs


# ---- per-kind defaulting ---------------------------------------------------------------


def _image_pull_policy(image: str) -> str:
    # The tag is after the last ':' that comes after the last '/'; a digest pins the image.
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.rsplit(":", 1)[1] == "latest":
        return "Always"
    return "IfNotPresent"


def _default_container(c: dict) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "image" in c:
        c.setdefault("imagePullPolicy", _image_pull_policy(c["image"] or ""))
    res = c.setdefault("resources", {})
    if isinstance(res, dict) and res.get("limits"):
        # requests default to limits for resources that only set a limit
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        vf = e.get("valueFrom") or {}
        if "fieldRef" in vf:
            vf["fieldRef"].setdefault("apiVersion", "v1")


def default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        _default_container(c)
    for v in spec.get("volumes") or []:
        for src, field in (("secret", "defaultMode"), ("configMap", "defaultMode"),
                           ("projected", "defaultMode"), ("downwardAPI", "defaultMode")):
            if src in v and isinstance(v[src], dict):
                v[src].setdefault(field, 420)
        if "hostPath" in v and isinstance(v["hostPath"], dict):
            v["hostPath"].setdefault("type", "")


def _default_template(obj: dict, *path: str) -> None:
    t = obj
    for p in path:
        t = t.get(p) if isinstance(t, dict) else None
        if t is None:
            return
    if isinstance(t, dict):
        t.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        if isinstance(t.get("spec"), dict):
            default_pod_spec(t["spec"])


def _default_service(obj: dict) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    for p in spec.get("ports") or []:
        p.setdefault("protocol", "TCP")
        if "port" in p:
            p.setdefault("targetPort", p["port"])


def _default_secret(obj: dict) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.get("data") or {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data


def _default_deployment(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(obj, "spec", "template")


def _default_statefulset(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    us = spec.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy",
                    {"whenDeleted": "Retain", "whenScaled": "Retain"})
    for t in spec.get("volumeClaimTemplates") or []:
        t.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        t.setdefault("apiVersion", "v1")
        t.setdefault("kind", "PersistentVolumeClaim")
        t.setdefault("status", {"phase": "Pending"})
    _default_template(obj, "spec", "template")


def _default_daemonset(obj):
    spec = obj.setdefault("spec", {})
    us = spec.setdefault("updateStrategy", {})
    us.setdefault("type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        ru = us.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(obj, "spec", "template")


def _default_replicaset(obj):
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _default_template(obj, "spec", "template")


def _default_job_spec(spec: dict):
    spec.setdefault("parallelism", 1)
    if spec.get("completionMode") != "Indexed":
        spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    t = spec.get("template")
    if isinstance(t, dict):
        t.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        if isinstance(t.get("spec"), dict):
            default_pod_spec(t["spec"])


def _default_job(obj):
    spec = obj.setdefault("spec", {})
    _default_job_spec(spec)
    # The Job strategy generates a selector unique to this Job unless manualSelector is set.
    uid = (obj.get("metadata") or {}).get("uid")
    if uid and not spec.get("manualSelector") and "selector" not in spec:
        name = obj["metadata"].get("name", "")
        gen = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
               "controller-uid": uid, "job-name": name}
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        t = spec.setdefault("template", {}).setdefault("metadata", {})
        labels = t.get("labels") or {}
        labels.update(gen)
        t["labels"] = labels


def _default_cronjob(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = spec.get("jobTemplate")
    if isinstance(jt, dict):
        jt.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        _default_job_spec(jt.setdefault("spec", {}))


def _default_pvc(obj):
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")


def _default_pv(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    hp = spec.get("hostPath")
    if isinstance(hp, dict):
        hp.setdefault("type", "")


def _default_namespace(obj):
    name = obj["metadata"].get("name", "")
    labels = obj["metadata"].get("labels") or {}
    labels["kubernetes.io/metadata.name"] = name
    obj["metadata"]["labels"] = labels
    spec = obj.get("spec") or {}
    spec.setdefault("finalizers", ["kubernetes"])
    obj["spec"] = spec


def _default_storageclass(obj):
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def _default_crd(obj):
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    for v in spec.get("versions") or []:
        v.setdefault("served", True)
        v.setdefault("storage", False)


def _default_ingress(obj):
    for rule in (obj.get("spec") or {}).get("rules") or []:
        for p in ((rule.get("http") or {}).get("paths") or []):
            p.setdefault("pathType", "ImplementationSpecific")


def _default_pod(obj):
    default_pod_spec(obj.setdefault("spec", {}))


# The defaults kube-apiserver fills in for the kinds below (Kubernetes pkg/apis/<group>/<v>/defaults.go).


def _default_priorityclass(obj):
    obj.setdefault("preemptionPolicy", "PreemptLowerPriority")


def _default_networkpolicy(obj):
    spec = obj.setdefault("spec", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
        for port in rule.get("ports") or []:
            port.setdefault("protocol", "TCP")


def _default_hpa(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):  # autoscaling/v2 SetDefaults: 80% CPU utilisation
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]


def _default_webhooks(obj):
    for hook in obj.get("webhooks") or []:
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", 10)
        if obj.get("kind") == "MutatingWebhookConfiguration":
            hook.setdefault("reinvocationPolicy", "Never")
        for rule in hook.get("rules") or []:
            rule.setdefault("scope", "*")
        service = (hook.get("clientConfig") or {}).get("service")
        if service:
            service.setdefault("port", 443)


def _default_csidriver(obj):
    spec = obj.setdefault("spec", {})
    for key, value in (("attachRequired", True), ("podInfoOnMount", False), ("requiresRepublish", False),
                       ("storageCapacity", False), ("seLinuxMount", False),
                       ("fsGroupPolicy", "ReadWriteOnceWithFSType"),
                       ("volumeLifecycleModes", ["Persistent"])):
        spec.setdefault(key, value)


def _default_replicationcontroller(obj):
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    labels = (((spec.get("template") or {}).get("metadata") or {}).get("labels")) or {}
    if not spec.get("selector") and labels:
        spec["selector"] = dict(labels)
    spec.setdefault("minReadySeconds", 0)


DEFAULTERS = {
    ("", "pods"): _default_pod,
    ("", "services"): _default_service,
    ("", "secrets"): _default_secret,
    ("", "persistentvolumeclaims"): _default_pvc,
    ("", "persistentvolumes"): _default_pv,
    ("", "namespaces"): _default_namespace,
    ("apps", "deployments"): _default_deployment,
    ("apps", "statefulsets"): _default_statefulset,
    ("apps", "daemonsets"): _default_daemonset,
    ("apps", "replicasets"): _default_replicaset,
    ("batch", "jobs"): _default_job,
    ("batch", "cronjobs"): _default_cronjob,
    ("storage.k8s.io", "storageclasses"): _default_storageclass,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _default_crd,
    ("networking.k8s.io", "ingresses"): _default_ingress,
    ("scheduling.k8s.io", "priorityclasses"): _default_priorityclass,
    ("networking.k8s.io", "networkpolicies"): _default_networkpolicy,
    ("autoscaling", "horizontalpodautoscalers"): _default_hpa,
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): _default_webhooks,
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): _default_webhooks,
    ("storage.k8s.io", "csidrivers"): _default_csidriver,
    ("", "replicationcontrollers"): _default_replicationcontroller,
}

# Status a built-in type is given on create (its strategy's PrepareForCreate resets status).
INITIAL_STATUS = {
    ("", "pods"): lambda: {"phase": "Pending", "qosClass": "BestEffort"},
    ("", "namespaces"): lambda: {"phase": "Active"},
    ("", "persistentvolumeclaims"): lambda: {"phase": "Pending"},
    ("", "persistentvolumes"): lambda: {"phase": "Pending"},
    ("", "services"): lambda: {"loadBalancer": {}},
    ("apps", "deployments"): dict, ("apps", "statefulsets"): lambda: {"replicas": 0,
                                                                      "availableReplicas": 0},
    ("apps", "daemonsets"): lambda: {"currentNumberScheduled": 0, "numberMisscheduled": 0,
                                     "desiredNumberScheduled": 0, "numberReady": 0},
    ("apps", "replicasets"): lambda: {"replicas": 0},
    ("batch", "jobs"): dict, ("batch", "cronjobs"): dict,
    ("networking.k8s.io", "ingresses"): lambda: {"loadBalancer": {}},
    ("policy", "poddisruptionbudgets"): lambda: {"disruptionsAllowed": 0, "currentHealthy": 0,
                                                 "desiredHealthy": 0, "expectedPods": 0},
    ("", "resourcequotas"): dict,
    ("autoscaling", "horizontalpodautoscalers"): lambda: {"currentReplicas": 0, "desiredReplicas": 0},
    ("", "replicationcontrollers"): lambda: {"replicas": 0},
    ("certificates.k8s.io", "certificatesigningrequests"): dict,
}


# ---- Go's omitempty: what the typed structs of built-in kinds drop ----------------------
# A built-in object is stored as its Go struct encodes: a field tagged `omitempty` whose value
# is empty (false, 0, "", empty list or map) is left out; fields without the tag and pointer
# fields (a set *bool false stays) are kept. Custom resources keep whatever their schema
# allows. Tables: field -> OMIT (drop when empty), a nested table (a struct, or a list of
# structs, never dropped itself) or (OMIT, table). Only non-pointer fields are listed.
# Tags from staging/src/k8s.io/api/{core,apps,batch}/v1/types.go and apimachinery's
# pkg/apis/meta/v1/types.go (ObjectMeta, LabelSelector).

OMIT = "omitempty"

_OBJECT_META = {k: OMIT for k in ("generateName", "namespace", "selfLink", "uid",
                                  "resourceVersion", "generation", "labels", "annotations",
                                  "ownerReferences", "finalizers", "managedFields")}
_LABEL_SELECTOR = {"matchLabels": OMIT, "matchExpressions": OMIT}
_RESOURCES = {"limits": OMIT, "requests": OMIT, "claims": OMIT}
_CONTAINER = {
    **{k: OMIT for k in ("image", "command", "args", "workingDir", "envFrom", "resizePolicy",
                         "restartPolicyRules", "volumeDevices", "terminationMessagePath",
                         "terminationMessagePolicy", "imagePullPolicy", "stdin", "stdinOnce",
                         "tty")},
    "ports": (OMIT, {k: OMIT for k in ("name", "hostPort", "protocol", "hostIP")}),
    "env": (OMIT, {"value": OMIT}),
    "volumeMounts": (OMIT, {k: OMIT for k in ("readOnly", "subPath", "subPathExpr",
                                              "bindMountOptions")}),
    "resources": _RESOURCES,
}
_POD_SPEC = {
    **{k: OMIT for k in ("volumes", "restartPolicy", "dnsPolicy", "nodeSelector",
                         "serviceAccountName", "serviceAccount", "nodeName", "hostNetwork",
                         "hostPID", "hostIPC", "imagePullSecrets", "hostname", "subdomain",
                         "schedulerName", "hostAliases", "priorityClassName", "readinessGates",
                         "overhead", "topologySpreadConstraints", "schedulingGates",
                         "resourceClaims")},
    "containers": _CONTAINER,
    "initContainers": (OMIT, _CONTAINER),
    "ephemeralContainers": (OMIT, _CONTAINER),
    "tolerations": (OMIT, {k: OMIT for k in ("key", "operator", "value", "effect")}),
}
_POD_TEMPLATE = {"metadata": _OBJECT_META, "spec": _POD_SPEC}
_WORKLOAD = {"selector": _LABEL_SELECTOR, "template": _POD_TEMPLATE, "minReadySeconds": OMIT}
_JOB_SPEC = {"selector": _LABEL_SELECTOR, "template": _POD_TEMPLATE}

OMITEMPTY = {
    ("", "pods"): {"spec": _POD_SPEC},
    ("", "podtemplates"): {"template": _POD_TEMPLATE},
    ("", "nodes"): {"spec": {**{k: OMIT for k in ("podCIDR", "podCIDRs", "providerID",
                                                  "unschedulable", "externalID")},
                             "taints": (OMIT, {"value": OMIT})}},
    ("", "namespaces"): {"spec": {"finalizers": OMIT}},
    ("", "configmaps"): {"data": OMIT, "binaryData": OMIT},
    ("", "secrets"): {"data": OMIT, "stringData": OMIT, "type": OMIT},
    ("", "serviceaccounts"): {"secrets": OMIT, "imagePullSecrets": OMIT},
    ("", "services"): {"spec": {
        **{k: OMIT for k in ("selector", "clusterIP", "clusterIPs", "type", "externalIPs",
                             "sessionAffinity", "loadBalancerIP", "loadBalancerSourceRanges",
                             "externalName", "externalTrafficPolicy", "healthCheckNodePort",
                             "publishNotReadyAddresses", "ipFamilies")},
        "ports": (OMIT, {k: OMIT for k in ("name", "protocol", "nodePort")})}},
    ("", "persistentvolumeclaims"): {"spec": {"accessModes": OMIT, "volumeName": OMIT,
                                              "selector": _LABEL_SELECTOR,
                                              "resources": {"limits": OMIT, "requests": OMIT}}},
    ("", "replicationcontrollers"): {"spec": {"minReadySeconds": OMIT, "selector": OMIT,
                                              "template": _POD_TEMPLATE}},
    ("apps", "deployments"): {"spec": {**_WORKLOAD, "paused": OMIT}},
    ("apps", "replicasets"): {"spec": _WORKLOAD},
    ("apps", "daemonsets"): {"spec": _WORKLOAD},
    ("apps", "statefulsets"): {"spec": {**_WORKLOAD, "volumeClaimTemplates": OMIT,
                                        "podManagementPolicy": OMIT}},
    ("batch", "jobs"): {"spec": _JOB_SPEC},
    ("batch", "cronjobs"): {"spec": {"concurrencyPolicy": OMIT, "jobTemplate": {
        "metadata": _OBJECT_META, "spec": _JOB_SPEC}}},
}


def prune_empty(value, table: dict) -> None:
    """Drop, in place, the omitempty fields of value (a struct, or a list of structs) that
    are empty, as encoding the Go struct of table would."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                prune_empty(item, table)
        return
    if not isinstance(value, dict):
        return
    for k in [k for k in value if k in table]:
        rule = value_rule = table[k]
        v = value[k]
        if isinstance(rule, tuple):
            rule, value_rule = OMIT, rule[1]
        if rule is OMIT and not v:
            del value[k]
        elif value_rule is not OMIT:
            prune_empty(v, value_rule)


def prune_metadata(meta: dict) -> None:
    """ObjectMeta's empty omitempty fields go for every kind (custom resources' metadata is
    coerced through ObjectMeta too: apiextensions-apiserver schema/objectmeta/coerce.go)."""
    prune_empty(meta, _OBJECT_META)


# Maps and lists the empty object of a kind has (non-pointer structs; lists and maps without
# omitempty are there as null): a write filling them owns their fields, not them as a whole
# (no "." in managedFields). Built-in kinds not listed have spec and status structs.
ZERO_SPEC_STATUS = frozenset({("spec",), ("status",)})
_TEMPLATE_ZERO = ("template",), ("template", "metadata"), ("template", "spec"), \
    ("template", "spec", "containers")


def _zero(*paths, under=("spec",)) -> frozenset:
    return ZERO_SPEC_STATUS | {under + p for p in paths}


ZERO_FIELDS = {
    ("", "pods"): _zero(("containers",)),
    ("", "configmaps"): frozenset(), ("", "secrets"): frozenset(),
    ("", "serviceaccounts"): frozenset(), ("", "endpoints"): frozenset(),
    ("", "nodes"): ZERO_SPEC_STATUS | {("status", "daemonEndpoints"),
                                       ("status", "daemonEndpoints", "kubeletEndpoint"),
                                       ("status", "nodeInfo")},
    ("", "services"): ZERO_SPEC_STATUS | {("status", "loadBalancer")},
    ("", "persistentvolumeclaims"): _zero(("resources",)),
    ("", "podtemplates"): frozenset({("template",), ("template", "metadata"),
                                     ("template", "spec"), ("template", "spec", "containers")}),
    ("apps", "deployments"): _zero(*_TEMPLATE_ZERO, ("strategy",)),
    ("apps", "replicasets"): _zero(*_TEMPLATE_ZERO),
    ("apps", "statefulsets"): _zero(*_TEMPLATE_ZERO, ("updateStrategy",)),
    ("apps", "daemonsets"): _zero(*_TEMPLATE_ZERO, ("updateStrategy",)),
    ("batch", "jobs"): _zero(*_TEMPLATE_ZERO),
    ("batch", "cronjobs"): _zero(("jobTemplate",), ("jobTemplate", "metadata"),
                                 ("jobTemplate", "spec"),
                                 *(("jobTemplate", "spec") + p for p in _TEMPLATE_ZERO)),
    ("apiextensions.k8s.io", "customresourcedefinitions"): _zero(("names",)) | {
        ("status", "acceptedNames")},
}

# Label selectors are atomic structs (+structType=atomic in apimachinery's LabelSelector):
# whoever sets one owns it as a single field.
_SELECTOR = frozenset({("spec", "selector")})
ATOMIC_FIELDS = {key: _SELECTOR for key in (
    ("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
    ("apps", "daemonsets"), ("batch", "jobs"), ("", "persistentvolumeclaims"),
    ("policy", "poddisruptionbudgets"))}


# ---- per-kind validation ---------------------------------------------------------------


def _containers_errors(spec, path: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [required(path)]
    containers = spec.get("containers")
    if not containers:
        return [required(f"{path}.containers")]
    errs = []
    seen = set()
    for i, c in enumerate(containers):
        p = f"{path}.containers[{i}]"
        if not c.get("name"):
            errs.append(required(f"{p}.name"))
        else:
            errs += [invalid(f"{p}.name", c["name"], m) for m in dns1123_label_errors(c["name"])]
            if c["name"] in seen:
                errs.append(FieldError(f"{p}.name", "FieldValueDuplicate", value=c["name"]))
            seen.add(c["name"])
        if not c.get("image"):
            errs.append(required(f"{p}.image"))
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in ("Always", "OnFailure", "Never"):
        errs.append(not_supported(f"{path}.restartPolicy", rp, ["Always", "OnFailure", "Never"]))
    return errs


def _selector_template_errors(obj: dict, require_selector=True) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs = []
    sel = spec.get("selector")
    if not sel:
        if require_selector:
            errs.append(required("spec.selector"))
    else:
        try:
            ls = LabelSelector.from_dict(sel)
        except SelectorError as e:
            return [invalid("spec.selector", sel, str(e))]
        if ls.empty():
            errs.append(invalid("spec.selector", sel,
                                "empty selector is invalid for deployment"))
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not ls.matches(labels):
            errs.append(invalid("spec.template.metadata.labels", labels,
                                "`selector` does not match template `labels`"))
    errs += _containers_errors((spec.get("template") or {}).get("spec"), "spec.template.spec")
    return errs


CONFIG_KEY = r"[-._a-zA-Z0-9]+"


def _config_data_errors(obj) -> list[FieldError]:
    errs = []
    for field in ("data", "binaryData"):
        for k in (obj.get(field) or {}):
            if len(k) > 253 or not re.fullmatch(CONFIG_KEY, k) or k in (".", ".."):
                errs.append(invalid(f"{field}[{k}]", k,
                                    "a valid config key must consist of alphanumeric characters, "
                                    "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                                    "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"))
    for k in set(obj.get("data") or {}) & set(obj.get("binaryData") or {}):
        errs.append(invalid(f"data[{k}]", k, "duplicate of key present in binaryData"))
    return errs


def base64_error(kind: str, obj: dict) -> str | None:
    """The decode error the apiserver gives for a non-base64 Secret data value, else None."""
    for field in ("binaryData",) if kind == "ConfigMap" else ("data",):
        for v in (obj.get(field) or {}).values():
            if not isinstance(v, str):
                return f"json: cannot unmarshal {_json_type(v)} into Go value of type []uint8"
            try:
                base64.b64decode(v, validate=True)
            except ValueError:  # binascii.Error is a ValueError
                bad = next((i for i, c in enumerate(v)
                            if not (c.isalnum() or c in "+/=")), len(v) - len(v) % 4)
                return f"illegal base64 data at input byte {bad}"
    return None


def qos_class(pod_spec: dict) -> str:
    """Pod QoS class from container requests/limits, as the apiserver computes it."""
    containers = (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or [])
    requests_any = limits_any = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        requests_any |= any(k in ("cpu", "memory") for k in req)
        limits_any |= any(k in ("cpu", "memory") for k in lim)
        for r in ("cpu", "memory"):
            if r not in lim or req.get(r, lim[r]) != lim[r]:
                guaranteed = False
    if not requests_any and not limits_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _validate_pvc(obj):
    spec = obj.get("spec") or {}
    errs = []
    if not spec.get("accessModes"):
        errs.append(required("spec.accessModes", "at least 1 access mode is required"))
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        errs.append(required("spec.resources[storage]"))
    return errs


def _validate_service(obj):
    spec = obj.get("spec") or {}
    errs = []
    types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    if spec.get("type") not in types:
        errs.append(not_supported("spec.type", spec.get("type"), types))
    ports = spec.get("ports") or []
    if not ports and spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None":
        errs.append(required("spec.ports"))
    for i, p in enumerate(ports):
        if len(ports) > 1 and not p.get("name"):
            errs.append(required(f"spec.ports[{i}].name"))
        port = p.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            errs.append(invalid(f"spec.ports[{i}].port", port,
                                "must be between 1 and 65535, inclusive"))
    return errs


def _validate_crd(obj):
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    errs = []
    name = obj["metadata"].get("name", "")
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    if not group:
        errs.append(required("spec.group"))
    elif "." not in group:
        errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    if not plural:
        errs.append(required("spec.names.plural"))
    elif dns1123_label_errors(plural):
        errs.append(invalid("spec.names.plural", plural, dns1123_label_errors(plural)[0]))
    if not names.get("kind"):
        errs.append(required("spec.names.kind"))
    if name != f"{plural}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        errs.append(not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        errs.append(invalid("spec.versions", versions, "must have exactly one version marked "
                                                       "as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errs.append(invalid("spec.versions", versions, "must have exactly one version marked "
                                                       "as storage version"))
    for i, v in enumerate(versions):
        if not ((v.get("schema") or {}).get("openAPIV3Schema")):
            errs.append(required(f"spec.versions[{i}].schema.openAPIV3Schema",
                                 "schemas are required"))
    if versions and not any(v.get("served") for v in versions):
        errs.append(invalid("spec.versions", versions, "must have at least one version served"))
    return errs


# Validation of the kinds above (Kubernetes pkg/apis/<group>/validation/validation.go), the
# rules a restore or a user most often trips over.


def _validate_priorityclass(obj):
    errs = []
    value = obj.get("value")
    if not isinstance(value, int) or isinstance(value, bool):
        errs.append(required("value"))
    elif value > 1000000000 and not (_meta_name(obj) or "").startswith("system-"):
        errs.append(forbidden("value", "maximum allowed value of a user defined priority is 1000000000"))
    policy = obj.get("preemptionPolicy")
    if policy not in (None, "PreemptLowerPriority", "Never"):
        errs.append(not_supported("preemptionPolicy", policy, ["Never", "PreemptLowerPriority"]))
    return errs


def _meta_name(obj):
    return (obj.get("metadata") or {}).get("name")


def _validate_networkpolicy(obj):
    spec = obj.get("spec") or {}
    errs = []
    if not isinstance(spec.get("podSelector"), dict):
        errs.append(required("spec.podSelector"))
    for index, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Ingress", "Egress"):
            errs.append(not_supported("spec.policyTypes[%d]" % index, kind, ["Egress", "Ingress"]))
    return errs


def _validate_hpa(obj):
    spec = obj.get("spec") or {}
    errs = []
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind"):
        errs.append(required("spec.scaleTargetRef.kind"))
    if not ref.get("name"):
        errs.append(required("spec.scaleTargetRef.name"))
    high, low = spec.get("maxReplicas"), spec.get("minReplicas", 1)
    if not isinstance(high, int) or high < 1:
        errs.append(invalid("spec.maxReplicas", high, "must be greater than or equal to 1"))
    elif isinstance(low, int) and low > high:
        errs.append(invalid("spec.minReplicas", low, "must be less than or equal to maxReplicas"))
    return errs


def _validate_webhooks(obj):
    errs = []
    names = set()
    for index, hook in enumerate(obj.get("webhooks") or []):
        path = "webhooks[%d]" % index
        name = hook.get("name") or ""
        if not name:
            errs.append(required(path + ".name"))
        elif name.count(".") < 2:
            errs.append(invalid(path + ".name", name, "should be a domain with at least three segments separated by dots"))
        elif name in names:
            errs.append(FieldError(path + ".name", "FieldValueDuplicate", "", name))
        names.add(name)
        config = hook.get("clientConfig") or {}
        if bool(config.get("url")) == bool(config.get("service")):
            errs.append(required(path + ".clientConfig", "exactly one of url or service is required"))
        if hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            errs.append(not_supported(path + ".sideEffects", hook.get("sideEffects"), ["None", "NoneOnDryRun"]))
        if not hook.get("admissionReviewVersions"):
            errs.append(required(path + ".admissionReviewVersions", "must specify one of v1, v1beta1"))
    return errs


def _require(*paths):
    def check(obj):
        errs = []
        for path in paths:
            value = obj
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value in (None, "", [], {}):
                errs.append(required(path))
        return errs
    return check


def _validate_endpointslice(obj):
    kind = obj.get("addressType")
    if kind not in ("IPv4", "IPv6", "FQDN"):
        return [not_supported("addressType", kind, ["FQDN", "IPv4", "IPv6"])]
    return []


VALIDATORS = {
    ("", "pods"): lambda o: _containers_errors(o.get("spec"), "spec"),
    ("", "services"): _validate_service,
    ("", "persistentvolumeclaims"): _validate_pvc,
    ("", "configmaps"): _config_data_errors,
    ("", "secrets"): _config_data_errors,
    ("apps", "deployments"): _selector_template_errors,
    ("apps", "replicasets"): _selector_template_errors,
    ("apps", "statefulsets"): _selector_template_errors,
    ("apps", "daemonsets"): _selector_template_errors,
    ("batch", "jobs"): lambda o: _containers_errors(
        ((o.get("spec") or {}).get("template") or {}).get("spec"), "spec.template.spec"),
    ("batch", "cronjobs"): lambda o: _containers_errors(
        ((((o.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {})
         .get("template") or {}).get("spec"), "spec.jobTemplate.spec.template.spec"),
    ("apiextensions.k8s.io", "customresourcedefinitions"): _validate_crd,
    ("scheduling.k8s.io", "priorityclasses"): _validate_priorityclass,
    ("networking.k8s.io", "networkpolicies"): _validate_networkpolicy,
    ("networking.k8s.io", "ingressclasses"): _require("spec.controller"),
    ("discovery.k8s.io", "endpointslices"): _validate_endpointslice,
    ("autoscaling", "horizontalpodautoscalers"): _validate_hpa,
    ("node.k8s.io", "runtimeclasses"): _require("handler"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): _validate_webhooks,
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"): _validate_webhooks,
    ("storage.k8s.io", "volumeattachments"): _require("spec.attacher", "spec.nodeName", "spec.source"),
    ("certificates.k8s.io", "certificatesigningrequests"): _require("spec.request", "spec.signerName"),
    ("", "replicationcontrollers"): lambda o: _containers_errors(
        ((o.get("spec") or {}).get("template") or {}).get("spec"), "spec.template.spec"),
    ("storage.k8s.io", "csistoragecapacities"): _require("storageClassName"),
}


# ---- built-in kinds' schemas: Kubernetes 1.32's OpenAPI definitions ------------------------

DEFINITIONS_FILE = Path(__file__).with_name("openapi_data") / "k8s-1.32-definitions.json"
_DEFINITIONS: dict | None = None
_DEFINITION_BY_GVK: dict = {}


def builtin_definitions() -> dict:
    """The v2 definitions of the built-in kinds (openapi_data/README.md), loaded on first use
    (once per process: every cluster shares them)."""
    global _DEFINITIONS
    if _DEFINITIONS is None:
        defs = json.loads(DEFINITIONS_FILE.read_text())["definitions"]
        for name, d in defs.items():
            for g in d.get("x-kubernetes-group-version-kind") or []:
                _DEFINITION_BY_GVK[(g["group"], g["version"], g["kind"])] = name
        _DEFINITIONS = defs
    return _DEFINITIONS


def builtin_definition_name(group: str, version: str, kind: str) -> str | None:
    builtin_definitions()
    return _DEFINITION_BY_GVK.get((group, version, kind))


def builtin_unknown_fields(obj: dict, group: str, version: str, kind: str) -> list[str]:
    """Paths of fields a built-in kind's Go type does not have: what the apiserver's strict
    JSON decoding (fieldValidation=Strict) reports as `unknown field "spec.x"`."""
    defs = builtin_definitions()
    name = _DEFINITION_BY_GVK.get((group, version, kind))
    if name is None:
        return []
    out: list[str] = []
    _unknown(obj, defs[name], defs, "", out)
    return out


def _unknown(value, schema: dict, defs: dict, path: str, out: list) -> None:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = defs.get(ref.rsplit("/", 1)[-1]) or {}
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        if props is None:
            if isinstance(addl, dict):
                for k, v in value.items():
                    _unknown(v, addl, defs, f"{path}[{k}]" if path else k, out)
            return  # an open object (RawExtension, FieldsV1, JSON)
        for k, v in value.items():
            sub = props.get(k)
            child = f"{path}.{k}" if path else k
            if sub is None:
                out.append(child)
            elif v is not None:
                _unknown(v, sub, defs, child, out)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                if isinstance(v, (dict, list)):
                    _unknown(v, items, defs, f"{path}[{i}]", out)


# ---- CRD structural schemas: pruning, defaulting, validation ----------------------------


def prune(value, schema: dict, root: bool = False, path: str = "",
          dropped: list | None = None):
    """Drop fields the structural schema does not specify (what the apiserver does silently);
    the dotted paths of dropped fields are appended to `dropped` (for fieldValidation)."""
    if not isinstance(schema, dict):
        return value
    sub_path = (lambda k: f"{path}.{k}" if path else k)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        # unknown fields stay, but known properties are still pruned inside
        if isinstance(value, dict):
            for k, sub in (schema.get("properties") or {}).items():
                if k in value:
                    value[k] = prune(value[k], sub, path=sub_path(k), dropped=dropped)
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        keep_meta = root or schema.get("x-kubernetes-embedded-resource")
        if props is not None or addl is not None or schema.get("type") == "object":
            for k in list(value):
                if keep_meta and k in ("apiVersion", "kind", "metadata"):
                    continue
                if props and k in props:
                    value[k] = prune(value[k], props[k], path=sub_path(k), dropped=dropped)
                elif isinstance(addl, dict):
                    value[k] = prune(value[k], addl, path=sub_path(k), dropped=dropped)
                elif addl is True:
                    continue
                else:
                    del value[k]
                    if dropped is not None:
                        dropped.append(sub_path(k))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"], path=f"{path}[{i}]", dropped=dropped)
                for i, v in enumerate(value)]
    return value


def default(value, schema: dict):
    """Apply `default:` of missing properties (recursively, where the parent exists)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        for k, sub in (schema.get("properties") or {}).items():
            if k not in value and isinstance(sub, dict) and "default" in sub:
                value[k] = json.loads(json.dumps(sub["default"]))
            if k in value:
                value[k] = default(value[k], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in value:
                value[k] = default(value[k], addl)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [default(v, schema["items"]) for v in value]
    return value


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool,
               "integer": int, "number": (int, float)}


def schema_errors(value, schema: dict, path: str = "", old=ABSENT) -> list[FieldError]:
    """A light OpenAPI v3 check: type, required, enum, nullable, bounds, and the CEL rules of
    x-kubernetes-validations (``old``: the value at the same place before an update, for
    transition rules that read oldSelf)."""
    if not isinstance(schema, dict):
        return []
    errs: list[FieldError] = []
    if value is None:
        if schema.get("nullable") or not schema.get("type"):
            return []
    typ = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            errs.append(FieldError(path, "FieldValueTypeInvalid",
                                   f"{path} in body must be of type integer,string: "
                                   f"{json.dumps(_json_type(value))}", _json_type(value)))
        return errs
    if typ in _JSON_TYPES:
        ok = isinstance(value, _JSON_TYPES[typ])
        if typ in ("integer", "number") and isinstance(value, bool):
            ok = False
        if typ == "integer" and isinstance(value, float) and value.is_integer():
            ok = True
        if not ok:
            got = _json_type(value)
            return [FieldError(path, "FieldValueTypeInvalid",
                               f"{path} in body must be of type {typ}: {json.dumps(got)}", got)]
    if "enum" in schema and value not in schema["enum"]:
        errs.append(not_supported(path, value, schema["enum"]))
    errs += _bound_errors(value, schema, path)
    if schema.get("x-kubernetes-validations"):
        errs += _cel_errors(value, schema, path, old)
    if isinstance(value, dict):
        for r in schema.get("required") or []:
            if r not in value:
                errs.append(required(f"{path}.{r}" if path else r))
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for k, v in value.items():
            if not path and k in ("apiVersion", "kind", "metadata"):
                continue
            sub = props.get(k) if k in props else (addl if isinstance(addl, dict) else None)
            if sub is not None:
                errs += schema_errors(v, sub, f"{path}.{k}" if path else k,
                                      old.get(k, ABSENT) if isinstance(old, dict) else ABSENT)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            errs += schema_errors(v, schema["items"], f"{path}[{i}]")
    return errs


_CEL_PROGRAMS: dict = {}
_CEL_REASONS = {"FieldValueForbidden": forbidden, "FieldValueRequired": lambda field, detail: required(field, detail)}


def _cel_program(rule: str):
    """The compiled rule, or None when cel-python cannot compile it (Kubernetes' own CEL libraries,
    e.g. quantity() or url(), are not part of CEL itself): such a rule is not enforced by the lab."""
    if rule not in _CEL_PROGRAMS:
        try:
            environment = celpy.Environment()
            _CEL_PROGRAMS[rule] = environment.program(environment.compile(rule))
        except Exception:  # noqa: BLE001 - any parser/compiler failure means "not supported here"
            _CEL_PROGRAMS[rule] = None
    return _CEL_PROGRAMS[rule]


def _cel_errors(value, schema: dict, path: str, old) -> list[FieldError]:
    """x-kubernetes-validations as kube-apiserver applies them (apiextensions-apiserver
    pkg/apiserver/schema/cel/validation.go): each rule sees the value as `self`; a transition
    rule (one that reads oldSelf) only runs on an update where the old value exists."""
    errs = []
    for rule in schema["x-kubernetes-validations"]:
        text = rule.get("rule") or ""
        transition = "oldSelf" in text
        if transition and old is ABSENT:
            continue
        program = _cel_program(text)
        if program is None:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        try:
            result = program.evaluate(activation)
        except celpy.CELEvalError as exc:
            result = exc
        field = path + (rule.get("fieldPath") or "") if rule.get("fieldPath") else path
        if isinstance(result, celpy.CELEvalError):
            errs.append(invalid(field, _json_type(value), f"{result.args[0] if result.args else result} evaluating rule: {text}"))
        elif result is not True and result != celpy.celtypes.BoolType(True):
            message = rule.get("message") or f"failed rule: {text}"
            make = _CEL_REASONS.get(rule.get("reason"))
            errs.append(make(field, message) if make else invalid(field, _json_type(value), message))
    return errs


def _bound_errors(value, schema: dict, path: str) -> list[FieldError]:
    """minimum/maximum, minLength/maxLength/pattern, minItems/maxItems, in kube-apiserver's words
    (k8s.io/kube-openapi pkg/validation/errors)."""
    errs = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(invalid(path, value, f"{path} in body should be greater than or equal to {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(invalid(path, value, f"{path} in body should be less than or equal to {schema['maximum']}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append(FieldError(path, "FieldValueTooLong", f"may not be more than {schema['maxLength']} bytes", value))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append(invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append(invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(FieldError(path, "FieldValueTooMany", f"{len(value)}: must have at most {schema['maxItems']} items", value))
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append(invalid(path, value, f"{path} in body should have at least {schema['minItems']} items"))
    return errs


def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"
