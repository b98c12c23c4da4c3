"""Backup resource and namespace filtering.

Upstream source: Velero pkg/util/collections/includes_excludes.go, pkg/backup/item_collector.go.
"""
from __future__ import annotations

import fnmatch
import re

from ...selectors import LabelSelector

SNAPSHOT_NS_RESOURCE = "volumesnapshots.snapshot.storage.k8s.io"
SNAPSHOT_CLUSTER_RESOURCE = "volumesnapshotcontents.snapshot.storage.k8s.io"
EXCLUDE_LABEL = "velero.io/exclude-from-backup"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
                     "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
                     "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
OLD_NEW_MIXED = ("include-resources, exclude-resources and include-cluster-resources are old filter "
                 "parameters.\ninclude-cluster-scoped-resources, exclude-cluster-scoped-resources, "
                 "include-namespace-scoped-resources and exclude-namespace-scoped-resources are new "
                 "filter parameters.\nThey cannot be used together")


def glob_match(pattern: str, value: str) -> bool:
    # gobwas/glob without separators: `*` matches any run of characters, `?` one, `[...]` a class.
    return fnmatch.fnmatchcase(value, pattern)


class IncludesExcludes:
    """Velero's IncludesExcludes: exclusion wins; empty or `*` includes mean everything."""

    def __init__(self, includes=None, excludes=None):
        self.includes = list(includes or [])
        self.excludes = list(excludes or [])

    def should_include(self, s: str) -> bool:
        if any(glob_match(p, s) for p in self.excludes):
            return False
        return not self.includes or "*" in self.includes or any(glob_match(p, s) for p in self.includes)

    def is_everything(self) -> bool:
        return (not self.includes or self.includes == ["*"]) and not self.excludes

    def explicitly_excludes(self, s: str) -> bool:
        return any(glob_match(p, s) for p in self.excludes)


def uses_old_filters(spec: dict) -> bool:
    return (spec.get("includeClusterResources") is not None or bool(spec.get("includedResources"))
            or bool(spec.get("excludedResources")))


def uses_new_filters(spec: dict) -> bool:
    return any(spec.get(k) for k in ("includedClusterScopedResources", "excludedClusterScopedResources",
                                     "includedNamespaceScopedResources", "excludedNamespaceScopedResources"))


def _dups(includes, excludes):
    return [i for i in includes if i in excludes]


def validate_resource_lists(includes, excludes) -> list[str]:
    """Old style (ValidateIncludesExcludes)."""
    errs = []
    includes, excludes = list(includes or []), list(excludes or [])
    if "*" in includes and len(includes) > 1:
        errs.append("includes list must either contain '*' only, or a non-empty list of items")
    if "*" in excludes:
        errs.append("excludes list cannot contain '*'")
    for d in _dups(includes, excludes):
        errs.append(f"excludes list cannot contain an item in the includes list: {d}")
    return errs


def validate_scoped_lists(includes, excludes) -> list[str]:
    """New style (ValidateScopedIncludesExcludes), one pair."""
    errs = []
    includes, excludes = list(includes or []), list(excludes or [])
    if "*" in includes and len(includes) > 1:
        errs.append("includes list must either contain '*' only, or a non-empty list of items")
    if "*" in excludes and len(excludes) > 1:
        errs.append("excludes list must either contain '*' only, or a non-empty list of items")
    if "*" in excludes and includes:
        errs.append("when exclude is '*', include must be empty")
    for d in _dups(includes, excludes):
        errs.append(f"excludes list cannot contain an item in the includes list: {d}")
    return errs


def _namespace_pattern_error(ns: str) -> str | None:
    if any(c in ns for c in "|()!{},"):
        return f"invalid namespace {ns!r}: wildcard characters [|(){{}},!] are not supported"
    if "**" in ns:
        return f"invalid namespace {ns!r}: double asterisks are not supported"
    depth = 0
    for c in ns:
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth < 0:
                break
    if depth != 0 or "[]" in ns:
        return f"invalid namespace {ns!r}: unmatched or empty brackets"
    probe = re.sub(r"\[[^\]]*\]", "x", ns).replace("*", "x").replace("?", "x")
    if not DNS1123_LABEL.match(probe) or len(probe) > 63:
        return f'invalid namespace "{ns}": {DNS1123_LABEL_MSG}'
    return None


def validate_namespace_lists(includes, excludes) -> list[str]:
    errs = []
    includes, excludes = list(includes or []), list(excludes or [])
    if "*" in includes and len(includes) > 1:
        errs.append("includes list must either contain '*' only, or a non-empty list of items")
    if "*" in excludes:
        errs.append("excludes list cannot contain '*'")
    for d in _dups(includes, excludes):
        errs.append(f"excludes list cannot contain an item in the includes list: {d}")
    for ns in includes + excludes:
        if ns in ("", "*"):
            continue
        e = _namespace_pattern_error(ns)
        if e:
            errs.append(e)
    return errs


def has_wildcard(p: str) -> bool:
    return any(c in p for c in "*?[")


def expand_namespaces(patterns: list[str], existing: list[str]) -> tuple[list[str], list[str]]:
    """Expand glob patterns against existing namespaces (1.18+). Returns (expanded, unmatched patterns)."""
    out, unmatched = [], []
    for p in patterns:
        if p == "*" or not has_wildcard(p):
            if p not in out:
                out.append(p)
            continue
        hits = [ns for ns in existing if glob_match(p, ns)]
        if not hits:
            unmatched.append(p)
        for h in hits:
            if h not in out:
                out.append(h)
    return out, unmatched


def resolve_resource_name(registry, name: str) -> str:
    """User resource name -> `plural[.group]` via discovery (plural, singular, short, kind); globs kept."""
    if name == "*" or has_wildcard(name):
        return name
    n = name.lower()
    candidates = registry.find(n)
    if candidates:
        return _gr(candidates[0])
    head, _, group = n.partition(".")
    if group:
        for rt in registry.find(head):
            if rt.group == group:
                return _gr(rt)
    return name


def _gr(rt) -> str:
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def selector_from(sel: dict | None) -> LabelSelector | None:
    """metav1.LabelSelector -> matcher; None means "no selector" (matches all)."""
    if sel is None:
        return None
    return LabelSelector.from_dict(sel)


class ResourceFilter:
    """Decides which resource types a backup lists in bulk, and which related items it may take."""

    def __init__(self, registry, spec: dict, namespace_filter: IncludesExcludes):
        self.spec = spec
        self.old = uses_old_filters(spec)
        self.ns_filter = namespace_filter
        res = lambda key: [resolve_resource_name(registry, r) for r in spec.get(key) or []]  # noqa: E731
        if self.old:
            self.ie = IncludesExcludes(res("includedResources"), res("excludedResources"))
            self.icr = spec.get("includeClusterResources")
        else:
            self.ns_ie = IncludesExcludes(res("includedNamespaceScopedResources"),
                                          res("excludedNamespaceScopedResources"))
            self.cl_ie = IncludesExcludes(res("includedClusterScopedResources"),
                                          res("excludedClusterScopedResources"))

    def include_type(self, gr: str, namespaced: bool) -> bool:
        """Is the type listed in bulk?"""
        if self.old:
            if namespaced:
                return self.ie.should_include(gr)
            if self.icr is False:
                return False
            if self.icr is None and gr != "namespaces":
                return self.ns_filter.is_everything() and self.ie.should_include(gr)
            return self.ie.should_include(gr)
        if namespaced:
            return self.ns_ie.should_include(gr)
        if "*" in self.cl_ie.excludes or self.cl_ie.explicitly_excludes(gr):
            return False
        if (not self.cl_ie.includes and not self.cl_ie.excludes and self.ns_filter.is_everything()
                and self.ns_ie.is_everything()):
            return True
        return "*" in self.cl_ie.includes or any(glob_match(p, gr) for p in self.cl_ie.includes) \
            or gr == "namespaces"

    def include_related(self, gr: str, namespaced: bool) -> bool:
        """May a related item (5.6) of this type be taken?"""
        if namespaced:
            if self.old:
                return self.ie.should_include(gr)
            return self.ns_ie.should_include(gr)
        if self.old:
            if self.icr is False or self.ie.explicitly_excludes(gr):
                return False
            if self.icr is None and self.ie.includes and "*" not in self.ie.includes:
                return self.ie.should_include(gr)
            return True
        return not ("*" in self.cl_ie.excludes or self.cl_ie.explicitly_excludes(gr))


# ---- resource policies (Velero internal/resourcepolicies/*.go) ------------------------------
_QUANTITY = re.compile(r"^\s*([0-9.]+)\s*([KMGTPE]i?|[kmgtpe]|)\s*$")
_QUANTITY_FACTORS = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
                     "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
POLICY_ACTIONS = ("skip", "snapshot", "fs-backup", "custom")
SCOPED_POLICY_KEYS = ("includedClusterScopedResources", "excludedClusterScopedResources",
                      "includedNamespaceScopedResources", "excludedNamespaceScopedResources")
CONDITION_KEYS = ("capacity", "storageClass", "nfs", "csi", "volumeTypes", "pvcLabels", "pvcPhase")


def parse_quantity(text) -> float:
    m = _QUANTITY.match(str(text))
    if not m:
        raise ValueError("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    return float(m.group(1)) * _QUANTITY_FACTORS[m.group(2)]


class ResourcePolicies:
    def __init__(self, doc: dict):
        self.volume_policies = doc.get("volumePolicies") or []
        self.include_exclude = doc.get("includeExcludePolicy") or {}

    @classmethod
    def from_configmap(cls, cm: dict) -> "ResourcePolicies":
        """Parse + validate like GetResourcePoliciesFromConfig and Validate; raises ValueError."""
        import yaml
        data = cm.get("data") or {}
        if len(data) != 1:
            raise ValueError(f"illegal resource policies {cm['metadata']['namespace']}/{cm['metadata']['name']} "
                             "configmap")
        text = next(iter(data.values()))
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"failed to decode yaml data into resource policies: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("failed to decode yaml data into resource policies")
        unknown = [k for k in doc if k not in ("version", "volumePolicies", "includeExcludePolicy")]
        if unknown:
            raise ValueError(f"failed to decode yaml data into resource policies: field {unknown[0]} not found")
        if doc.get("version") != "v1":
            raise ValueError(f"incompatible version number {doc.get('version')} with supported version v1")
        for vp in doc.get("volumePolicies") or []:
            action = (vp.get("action") or {}).get("type")
            if action not in POLICY_ACTIONS:
                raise ValueError(f"action type {action} is not supported")
            for key, value in (vp.get("conditions") or {}).items():
                if key not in CONDITION_KEYS:
                    raise ValueError(f"failed to decode yaml data into resource policies: field {key} not found")
                if key == "capacity":
                    lo, _, hi = str(value).partition(",")
                    for q in (lo, hi):
                        if q.strip():
                            parse_quantity(q)
        iep = doc.get("includeExcludePolicy") or {}
        for key, value in iep.items():
            if key not in SCOPED_POLICY_KEYS:
                raise ValueError(f"failed to decode yaml data into resource policies: field {key} not found")
            if "*" in (value or []):
                raise ValueError("cannot use '*' in includeExcludePolicy filters")
        return cls(doc)

    def merge_into(self, spec: dict) -> dict:
        """Scoped lists from includeExcludePolicy, for types the backup spec does not mention."""
        out = dict(spec)
        for scope in ("ClusterScoped", "NamespaceScoped"):
            inc_key, exc_key = f"included{scope}Resources", f"excluded{scope}Resources"
            mentioned = set(spec.get(inc_key) or []) | set(spec.get(exc_key) or [])
            for key in (inc_key, exc_key):
                extra = [r for r in self.include_exclude.get(key) or [] if r not in mentioned]
                if extra:
                    out[key] = list(spec.get(key) or []) + extra
        return out

    def volume_action(self, volume: dict, pvc: dict | None, pv: dict | None) -> str | None:
        """Action of the first matching volume policy, or None."""
        for vp in self.volume_policies:
            if _volume_matches(vp.get("conditions") or {}, volume, pvc, pv):
                return (vp.get("action") or {}).get("type")
        return None


def _volume_type(volume: dict, pv: dict | None) -> str:
    if pv is not None:
        for t in ("nfs", "csi", "hostPath", "local", "awsElasticBlockStore"):
            if t in (pv.get("spec") or {}):
                return t
        return "persistentVolumeClaim"
    for t in ("emptyDir", "persistentVolumeClaim", "nfs", "csi", "hostPath", "configMap", "secret",
              "projected", "downwardAPI", "ephemeral"):
        if t in volume:
            return t
    return ""


def _volume_matches(cond: dict, volume: dict, pvc: dict | None, pv: dict | None) -> bool:
    if "volumeTypes" in cond:
        vt = _volume_type(volume, pv)
        if vt not in cond["volumeTypes"] and not ("persistentVolumeClaim" in cond["volumeTypes"] and pvc):
            return False
    if "storageClass" in cond:
        sc = ((pv or {}).get("spec") or {}).get("storageClassName") or ((pvc or {}).get("spec") or {}).get("storageClassName")
        if sc not in cond["storageClass"]:
            return False
    if "pvcLabels" in cond:
        labels = ((pvc or {}).get("metadata") or {}).get("labels") or {}
        if pvc is None or any(labels.get(k) != v for k, v in cond["pvcLabels"].items()):
            return False
    if "pvcPhase" in cond:
        if pvc is None or ((pvc.get("status") or {}).get("phase")) not in cond["pvcPhase"]:
            return False
    if "capacity" in cond:
        cap = ((pv or {}).get("spec") or {}).get("capacity", {}).get("storage")
        if cap is None:
            return False
        lo, _, hi = str(cond["capacity"]).partition(",")
        size = parse_quantity(cap)
        if lo.strip() and size < parse_quantity(lo):
            return False
        if hi.strip() and size > parse_quantity(hi):
            return False
    if "nfs" in cond:
        nfs = ((pv or {}).get("spec") or {}).get("nfs") or volume.get("nfs")
        if not nfs or any(nfs.get(k) != v for k, v in (cond["nfs"] or {}).items()):
            return False
    if "csi" in cond:
        csi = ((pv or {}).get("spec") or {}).get("csi") or volume.get("csi")
        want = cond["csi"] or {}
        if not csi or (want.get("driver") and csi.get("driver") != want["driver"]):
            return False
        attrs = csi.get("volumeAttributes") or {}
        if any(attrs.get(k) != v for k, v in (want.get("volumeAttributes") or {}).items()):
            return False
    return True
