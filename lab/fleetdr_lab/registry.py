"""Resource types the lab serves: the built-in table and the types CRDs register.

A ResourceType carries what discovery, Table output and the Store need to know about one
(group, plural): kind, scope, verbs, short names, categories, subresources and, for custom
resources, the CRD's schemas and printer columns.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# Verb lists exactly as kube-apiserver's discovery reports them.
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
NO_COLLECTION_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "log": ["get"],
    "binding": ["create"],
    "eviction": ["create"],
    "finalize": ["update"],
    "token": ["create"],
}
SUBRESOURCE_KINDS = {
    "scale": ("autoscaling", "v1", "Scale"),
    "log": ("", "v1", "Pod"),
    "binding": ("", "v1", "Binding"),
    "eviction": ("policy", "v1", "Eviction"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
}


@dataclass
class ScaleSpec:
    """Where a type keeps the fields autoscaling/v1 Scale exposes (CRD `subresources.scale`)."""
    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = ".status.selector"


@dataclass
class ResourceType:
    group: str
    version: str                      # storage version (the one objects are kept in)
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    versions: list[str] = field(default_factory=list)  # served versions, preferred first
    verbs: list[str] = field(default_factory=lambda: list(ALL_VERBS))
    short_names: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    subresources: dict[str, list[str]] = field(default_factory=dict)  # name -> verbs
    scale: ScaleSpec | None = None
    # metadata.generation is maintained only by types whose strategy does it (workloads, CRs...)
    has_generation: bool = False
    # PUT of a missing object creates it (rbac, endpoints, events, leases do this)
    allow_create_on_update: bool = False
    # DELETE answers with the object rather than a Status (pods, custom resources)
    return_deleted_object: bool = False
    # Kinds whose apply/strategic-merge uses the built-in patchMergeKey table
    builtin: bool = True
    # custom resources only
    crd_name: str | None = None
    schemas: dict[str, dict] = field(default_factory=dict)          # version -> openAPIV3Schema
    printer_columns: dict[str, list[dict]] = field(default_factory=dict)  # version -> columns

    def __post_init__(self):
        if not self.singular:
            self.singular = self.kind.lower()
        if not self.versions:
            self.versions = [self.version]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def api_version_for(self, version: str | None) -> str:
        v = version or self.version
        return f"{self.group}/{v}" if self.group else v

    @property
    def group_resource(self) -> str:
        """`deployments.apps` / `configmaps`: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def discovery(self) -> list[dict]:
        """APIResource entries (main resource + subresources) for /apis/<g>/<v> discovery."""
        main = {
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": list(self.verbs),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        for sub, verbs in self.subresources.items():
            entry = {"name": f"{self.plural}/{sub}", "singularName": "",
                     "namespaced": self.namespaced, "kind": self.kind, "verbs": list(verbs)}
            if sub in SUBRESOURCE_KINDS:
                g, v, k = SUBRESOURCE_KINDS[sub]
                entry["kind"] = k
                if g and g != self.group:
                    entry["group"], entry["version"] = g, v
            out.append(entry)
        return out


def _subs(*names: str) -> dict[str, list[str]]:
    return {n: list(SUBRESOURCE_VERBS[n]) for n in names}


def _builtin_types() -> list[ResourceType]:
    R = ResourceType
    all_ = ["all"]
    return [
        # core/v1
        R("", "v1", "namespaces", "Namespace", False, verbs=list(NO_COLLECTION_VERBS),
          short_names=["ns"], subresources=_subs("finalize", "status")),
        R("", "v1", "pods", "Pod", True, short_names=["po"], categories=all_,
          subresources=_subs("binding", "eviction", "log", "status"),
          return_deleted_object=True),
        R("", "v1", "services", "Service", True, short_names=["svc"], categories=all_,
          subresources=_subs("status"),
          # service storage sets ReturnDeletedObject: DELETE answers with the Service (the
          # kubernetes client's delete_namespaced_service deserializes a V1Service)
          return_deleted_object=True),
        R("", "v1", "endpoints", "Endpoints", True, short_names=["ep"],
          allow_create_on_update=True),
        R("", "v1", "configmaps", "ConfigMap", True, short_names=["cm"]),
        R("", "v1", "secrets", "Secret", True),
        R("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=["sa"],
          subresources=_subs("token")),
        R("", "v1", "persistentvolumes", "PersistentVolume", False, short_names=["pv"],
          subresources=_subs("status")),
        R("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True,
          short_names=["pvc"], subresources=_subs("status")),
        R("", "v1", "nodes", "Node", False, short_names=["no"], subresources=_subs("status")),
        R("", "v1", "events", "Event", True, short_names=["ev"], allow_create_on_update=True),
        R("", "v1", "limitranges", "LimitRange", True, short_names=["limits"]),
        R("", "v1", "resourcequotas", "ResourceQuota", True, short_names=["quota"],
          subresources=_subs("status")),
        # apps/v1
        R("apps", "v1", "deployments", "Deployment", True, short_names=["deploy"],
          categories=all_, subresources=_subs("scale", "status"), scale=ScaleSpec(),
          has_generation=True),
        R("apps", "v1", "statefulsets", "StatefulSet", True, short_names=["sts"],
          categories=all_, subresources=_subs("scale", "status"), scale=ScaleSpec(),
          has_generation=True),
        R("apps", "v1", "daemonsets", "DaemonSet", True, short_names=["ds"], categories=all_,
          subresources=_subs("status"), has_generation=True),
        R("apps", "v1", "replicasets", "ReplicaSet", True, short_names=["rs"],
          categories=all_, subresources=_subs("scale", "status"), scale=ScaleSpec(),
          has_generation=True),
        R("apps", "v1", "controllerrevisions", "ControllerRevision", True),
        # batch/v1
        R("batch", "v1", "jobs", "Job", True, categories=all_, subresources=_subs("status"),
          has_generation=True),
        R("batch", "v1", "cronjobs", "CronJob", True, short_names=["cj"], categories=all_,
          subresources=_subs("status"), has_generation=True),
        # rbac.authorization.k8s.io/v1
        R("rbac.authorization.k8s.io", "v1", "roles", "Role", True,
          allow_create_on_update=True),
        R("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True,
          allow_create_on_update=True),
        R("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False,
          allow_create_on_update=True),
        R("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
          False, allow_create_on_update=True),
        # authentication.k8s.io/v1, authorization.k8s.io/v1: reviews, created and answered, never stored
        R("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, verbs=["create"]),
        R("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=["create"]),
        R("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", True,
          verbs=["create"]),
        R("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
          verbs=["create"]),
        R("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False,
          verbs=["create"]),
        R("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False, verbs=["create"]),
        # storage.k8s.io/v1
        R("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, short_names=["sc"]),
        # networking.k8s.io/v1
        R("networking.k8s.io", "v1", "ingresses", "Ingress", True, short_names=["ing"],
          subresources=_subs("status"), has_generation=True),
        # apiextensions.k8s.io/v1
        R("apiextensions.k8s.io", "v1", "customresourcedefinitions",
          "CustomResourceDefinition", False, short_names=["crd", "crds"],
          categories=["api-extensions"], subresources=_subs("status"), has_generation=True),
        # coordination.k8s.io/v1
        R("coordination.k8s.io", "v1", "leases", "Lease", True, allow_create_on_update=True),
        # policy/v1
        R("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True,
          short_names=["pdb"], subresources=_subs("status"), has_generation=True),
        # What else a current kube-apiserver serves and a backup meets (Kubernetes
        # pkg/controlplane/instance.go's default resources), at each group's GA version.
        R("", "v1", "podtemplates", "PodTemplate", True),
        R("", "v1", "replicationcontrollers", "ReplicationController", True, short_names=["rc"],
          categories=all_, subresources=_subs("scale", "status"), scale=ScaleSpec(),
          has_generation=True),
        R("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
          short_names=["netpol"], has_generation=True),
        R("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False),
        R("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
        # autoscaling/v1 is still served (converted: strategies.HpaStrategy)
        R("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
          versions=["v2", "v1"], short_names=["hpa"], categories=all_,
          subresources=_subs("status")),
        R("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False,
          short_names=["pc"]),
        R("node.k8s.io", "v1", "runtimeclasses", "RuntimeClass", False),
        R("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
          "MutatingWebhookConfiguration", False, categories=["api-extensions"], has_generation=True),
        R("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
          "ValidatingWebhookConfiguration", False, categories=["api-extensions"],
          has_generation=True),
        R("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies",
          "ValidatingAdmissionPolicy", False, categories=["api-extensions"],
          subresources=_subs("status"), has_generation=True),
        R("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
          "ValidatingAdmissionPolicyBinding", False, categories=["api-extensions"],
          has_generation=True),
        R("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", "FlowSchema", False,
          subresources=_subs("status"), has_generation=True),
        R("flowcontrol.apiserver.k8s.io", "v1", "prioritylevelconfigurations",
          "PriorityLevelConfiguration", False, subresources=_subs("status"), has_generation=True),
        R("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest",
          False, short_names=["csr"], subresources={"approval": ["get", "patch", "update"],
                                                     **_subs("status")}),
        R("storage.k8s.io", "v1", "csidrivers", "CSIDriver", False),
        R("storage.k8s.io", "v1", "csinodes", "CSINode", False),
        R("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", False,
          subresources=_subs("status")),
        R("storage.k8s.io", "v1", "csistoragecapacities", "CSIStorageCapacity", True),
    ]


# Group order as kube-apiserver lists them in /apis (core first, then this order).
_GROUP_ORDER = ["", "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io",
                "authorization.k8s.io", "autoscaling", "batch", "certificates.k8s.io",
                "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "storage.k8s.io",
                "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
                "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io",
                "flowcontrol.apiserver.k8s.io"]


class Registry:
    """The (group, plural) -> ResourceType table of one cluster."""

    def __init__(self):
        self._types: dict[tuple[str, str], ResourceType] = {}
        for rt in _builtin_types():
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.plural)] = rt

    def remove(self, group: str, plural: str) -> ResourceType | None:
        return self._types.pop((group, plural), None)

    def get(self, group: str, plural: str) -> ResourceType | None:
        """The type, or None when the server does not serve it."""
        return self._types.get((group, plural))

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.kind == kind and version in rt.versions:
                return rt
        return None

    def find(self, name: str) -> list[ResourceType]:
        """Types a user-typed name (plural, singular, short name, kind) may mean."""
        n = name.lower()
        return [rt for rt in self._types.values()
                if n in (rt.plural, rt.singular, rt.kind.lower(), *rt.short_names)]

    def groups(self) -> list[dict]:
        """[{"name": group, "versions": [...], "preferredVersion": v}] in discovery order."""
        versions: dict[str, list[str]] = {}
        for rt in self._types.values():
            vs = versions.setdefault(rt.group, [])
            for v in rt.versions:
                if v not in vs:
                    vs.append(v)
        order = {g: i for i, g in enumerate(_GROUP_ORDER)}
        names = sorted(versions, key=lambda g: (order.get(g, len(order)), g))
        return [{"name": g, "versions": versions[g], "preferredVersion": versions[g][0]}
                for g in names]

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and version in rt.versions]

    # ---- CRDs -------------------------------------------------------------------------

    def types_from_crd(self, crd: dict) -> ResourceType:
        """The ResourceType a (validated) CRD defines."""
        spec = crd["spec"]
        names = spec["names"]
        served = [v for v in spec["versions"] if v.get("served", True)]
        storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
        # Preferred version = highest-priority served version; kube sorts by version priority.
        served_names = sorted((v["name"] for v in served), key=version_priority)
        subresources: dict[str, list[str]] = {}
        scale = None
        # subresources may differ per version; the lab takes the storage version's (or any).
        by_name = {v["name"]: v for v in spec["versions"]}
        subs = (by_name[storage].get("subresources")
                or next((v.get("subresources") for v in served if v.get("subresources")), None)
                or {})
        if "status" in subs:
            subresources["status"] = list(SUBRESOURCE_VERBS["status"])
        if "scale" in subs:
            subresources["scale"] = list(SUBRESOURCE_VERBS["scale"])
            s = subs["scale"] or {}
            scale = ScaleSpec(s.get("specReplicasPath", ".spec.replicas"),
                              s.get("statusReplicasPath", ".status.replicas"),
                              s.get("labelSelectorPath"))
        return ResourceType(
            group=spec["group"], version=storage, plural=names["plural"], kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            versions=served_names,
            short_names=list(names.get("shortNames") or []),
            categories=list(names.get("categories") or []),
            subresources=subresources, scale=scale, has_generation=True,
            return_deleted_object=True, builtin=False, crd_name=crd["metadata"]["name"],
            schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {}
                     for v in spec["versions"]},
            printer_columns={v["name"]: list(v.get("additionalPrinterColumns") or [])
                             for v in spec["versions"]},
        )


def version_priority(v: str):
    """Sort key giving Kubernetes version priority: GA > beta > alpha, higher numbers first,
    then non-kube-like versions alphabetically."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, v)
