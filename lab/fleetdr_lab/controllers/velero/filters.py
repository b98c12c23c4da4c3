"""Backup resource and namespace filtering (SEMANTICS 4.3, 5)."""
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
