"""Pod-spec and scheduling helpers shared by the workload reconcilers, and the constants of the
emulated kubelet and controllers."""
from __future__ import annotations

import copy
import hashlib
import math

from ..base import is_deleting, meta, owner_reference, pod_is_terminal, selector_matches


POD_START_DELAY = (0.1, 0.25)      # seconds from binding to Running/Ready
JOB_RUN_DELAY = (0.2, 0.35)        # seconds a Job pod "works" before Succeeded
INIT_POLL_SECONDS = 0.25           # how often a blocking init container re-checks (restore-wait)
DS_TOLERATIONS = [  # what the DaemonSet controller adds to every daemon pod
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]
OWNER_KINDS = {"ReplicaSet", "StatefulSet", "DaemonSet", "Job"}
RESOURCE = {  # kind -> (group, plural)
    "Deployment": ("apps", "deployments"), "ReplicaSet": ("apps", "replicasets"),
    "StatefulSet": ("apps", "statefulsets"), "DaemonSet": ("apps", "daemonsets"),
    "Job": ("batch", "jobs"), "Pod": ("", "pods"),
}


def int_or_percent(value, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        frac = total * int(text[:-1]) / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(text)


def omit_zero(status: dict) -> dict:
    """Workload status integers are `omitempty` in the real API: zeros are not serialized."""
    return {k: v for k, v in status.items() if v not in (0, None, "", [], {})}


def strip_hash(template: dict) -> dict:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop("pod-template-hash", None)
    return t


def normalize_image(image: str) -> str:
    """What the kubelet reports in containerStatuses[].image: registry and tag spelled out."""
    name = image or ""
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        if "/" not in name:
            name = "library/" + name
        name = "docker.io/" + name
    return name


def image_id(image: str) -> str:
    repo = normalize_image(image).split("@")[0].rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(normalize_image(image).encode()).hexdigest()}"


def qos_class(spec: dict) -> str:
    requests = limits = False
    guaranteed = True
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        requests |= bool(req)
        limits |= bool(lim)
        if not lim or not all(k in lim for k in ("cpu", "memory")) or \
                any(req.get(k, lim[k]) != lim[k] for k in lim):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def node_is_ready(node: dict) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def tolerates(tolerations: list, taint: dict) -> bool:
    for t in tolerations or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _expr_matches(expr: dict, value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            return value is not None and ((int(value) > int(values[0])) if op == "Gt"
                                          else (int(value) < int(values[0])))
        except (ValueError, IndexError):
            return False
    return False


def node_fits(pod_spec: dict, node: dict, ignore_taints: bool = False) -> bool:
    labels = meta(node).get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        fields = {"metadata.name": meta(node).get("name")}
        if not any(all(_expr_matches(e, labels.get(e.get("key"))) for e in t.get("matchExpressions") or [])
                   and all(_expr_matches(e, fields.get(e.get("key"))) for e in t.get("matchFields") or [])
                   for t in terms):
            return False
    if not ignore_taints:
        for taint in (node.get("spec") or {}).get("taints") or []:
            if taint.get("effect") in ("NoSchedule", "NoExecute") and \
                    not tolerates(pod_spec.get("tolerations"), taint):
                return False
    return True


def anti_affinity_excludes(pod: dict, nodes: list[dict], pods: list[dict]) -> set[str]:
    """Names of the nodes that the pod's required podAntiAffinity rules out: a node is out when a
    pod matching a term's labelSelector (in the term's namespaces, by default the pod's own) runs on a
    node with the same value of the term's topologyKey label (kube-scheduler's InterPodAffinity
    filter, pkg/scheduler/framework/plugins/interpodaffinity/filtering.go). The reverse check, the
    running pods' own anti-affinity against the new pod, is not emulated."""
    spec = pod.get("spec") or {}
    terms = (((spec.get("affinity") or {}).get("podAntiAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    if not terms:
        return set()
    m = meta(pod)
    node_labels = {meta(n)["name"]: meta(n).get("labels") or {} for n in nodes}
    placed = [p for p in pods if (p.get("spec") or {}).get("nodeName") and meta(p).get("uid") != m.get("uid")
              and not pod_is_terminal(p) and not is_deleting(p)]
    out = set()
    for term in terms:
        key = term.get("topologyKey")
        namespaces = term.get("namespaces") or [m.get("namespace")]
        taken = {node_labels.get(p["spec"]["nodeName"], {}).get(key) for p in placed
                 if meta(p).get("namespace") in namespaces and selector_matches(term.get("labelSelector"), meta(p).get("labels"))}
        taken.discard(None)
        out |= {name for name, labels in node_labels.items() if labels.get(key) in taken}
    return out


def pod_claims(pod: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"]
            for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")]


def pod_from_template(template: dict, namespace: str, owner: dict, *, name: str | None = None,
                      generate_name: str | None = None, labels: dict | None = None) -> dict:
    tmeta = (template or {}).get("metadata") or {}
    md = {"namespace": namespace,
          "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
          "ownerReferences": [owner_reference(owner)]}
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        md["finalizers"] = list(tmeta["finalizers"])
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": copy.deepcopy((template or {}).get("spec") or {})}
