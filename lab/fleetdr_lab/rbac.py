"""RBAC of one cluster: the authorizer kube-apiserver runs with --authorization-mode=Node,RBAC
(plugin/pkg/auth/authorizer/rbac/rbac.go, pkg/registry/rbac/validation/rule.go), the bootstrap
roles a kubeadm cluster starts with (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go)
and the escalation check on writes of roles and bindings (pkg/registry/rbac/escalation_check.go).

Roles and bindings are indexed from the store's write stream (built on the first request that
needs them), and the rules a user holds in a namespace are cached until the next RBAC write, so
an authorization is a few set look-ups. Members of system:masters are allowed everything before
RBAC is asked, as kube-apiserver's privileged-group authorizer does.
"""
from __future__ import annotations

import contextvars
import json

from .selectors import LabelSelector
from .store import Admission, ApiError, details_for

GROUP = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"

# The user of the request being served (None: the lab's own controllers), for admission plugins
# that decide by user (the RBAC escalation check). Set by the API middleware.
CURRENT_USER: contextvars.ContextVar = contextvars.ContextVar("fleetdr_lab_user", default=None)


class Attributes:
    """authorizer.Attributes: what a request asks to do."""
    __slots__ = ("verb", "group", "version", "resource", "subresource", "namespace", "name",
                 "path", "resource_request")

    def __init__(self, verb, group="", resource="", subresource="", namespace="", name="",
                 path="", resource_request=True, version=""):
        self.verb, self.group, self.version = verb, group, version
        self.resource, self.subresource = resource, subresource
        self.namespace, self.name = namespace or "", name or ""
        self.path, self.resource_request = path, resource_request


def forbidden_message(username: str, a: Attributes) -> str:
    # staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go
    if not a.resource_request:
        return f'User "{username}" cannot {a.verb} path "{a.path}"'
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    where = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    return f'User "{username}" cannot {a.verb} resource "{resource}" in API group "{a.group}" {where}'


def forbidden_error(username: str, a: Attributes, reason: str = "") -> ApiError:
    # errors.NewForbidden(GroupResource{group, resource}, name, err)
    msg = forbidden_message(username, a) + (f": {reason}" if reason else "")
    if not a.resource_request:
        return ApiError(403, "Forbidden", f"forbidden: {msg}", {})
    gr = f"{a.resource}.{a.group}" if a.group else a.resource
    head = f'{gr} "{a.name}" is forbidden' if a.name else f"{gr} is forbidden"
    details = {"name": a.name, "group": a.group, "kind": a.resource} if a.name else \
        {"group": a.group, "kind": a.resource}
    return ApiError(403, "Forbidden", f"{head}: {msg}", {k: v for k, v in details.items() if v})


# ---- rule matching (pkg/apis/rbac/v1/evaluation_helpers.go) -----------------------------

def _has(values, value) -> bool:
    return "*" in values or value in values


def rule_allows(a: Attributes, rule: dict) -> bool:
    if not _has(rule.get("verbs") or (), a.verb):
        return False
    if not a.resource_request:
        for url in rule.get("nonResourceURLs") or ():
            if url == "*" or url == a.path or (url.endswith("*") and a.path.startswith(url[:-1])):
                return True
        return False
    if not _has(rule.get("apiGroups") or (), a.group):
        return False
    combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    resources = rule.get("resources") or ()
    if not ("*" in resources or combined in resources
            or (a.subresource and f"*/{a.subresource}" in resources)):
        return False
    names = rule.get("resourceNames") or ()
    return not names or a.name in names


def _covers(owner: dict, atom: dict) -> bool:
    """pkg/registry/rbac/validation/policy_comparator.go ruleCovers for one broken-down rule."""
    def has_all(owned, wanted):
        return all(w in owned or "*" in owned for w in wanted)
    if not has_all(owner.get("verbs") or [], atom.get("verbs") or []):
        return False
    if atom.get("nonResourceURLs"):
        for url in atom["nonResourceURLs"]:
            if not any(o == "*" or o == url or (o.endswith("*") and url.startswith(o[:-1]))
                       for o in owner.get("nonResourceURLs") or []):
                return False
        return True
    if not has_all(owner.get("apiGroups") or [], atom.get("apiGroups") or []):
        return False
    owned = owner.get("resources") or []
    for res in atom.get("resources") or []:
        if not ("*" in owned or res in owned
                or ("/" in res and f"*/{res.split('/', 1)[1]}" in owned)):
            return False
    owned_names = owner.get("resourceNames") or []
    return not owned_names or has_all(owned_names, atom.get("resourceNames") or [])


def _breakdown(rule: dict):
    """validation.BreakdownRule: one rule per verb/group/resource (resourceName) or URL."""
    for verb in rule.get("verbs") or []:
        for group in rule.get("apiGroups") or []:
            for res in rule.get("resources") or []:
                names = rule.get("resourceNames") or []
                if names:
                    for n in names:
                        yield {"verbs": [verb], "apiGroups": [group], "resources": [res],
                               "resourceNames": [n]}
                else:
                    yield {"verbs": [verb], "apiGroups": [group], "resources": [res]}
        for url in rule.get("nonResourceURLs") or []:
            yield {"verbs": [verb], "nonResourceURLs": [url]}


def compact_rule(rule: dict) -> str:
    """rbac/v1 PolicyRule.CompactString."""
    parts = []
    for key, field in (("apiGroups", "APIGroups"), ("resources", "Resources"),
                       ("resourceNames", "ResourceNames"), ("nonResourceURLs", "NonResourceURLs"),
                       ("verbs", "Verbs")):
        if rule.get(key):
            parts.append(f"{field}:[{' '.join(json.dumps(v) for v in rule[key])}]")  # Go's %q of a slice
    return "{" + ", ".join(parts) + "}"


def compact_rules(rules: list) -> list:
    """validation.CompactRules: simple resource rules of one group and resource merge their verbs."""
    out, simple = [], {}
    for r in rules:
        if not r.get("resourceNames") and not r.get("nonResourceURLs") and len(r.get("apiGroups") or []) == 1 \
                and len(r.get("resources") or []) == 1:
            key = (r["apiGroups"][0], r["resources"][0])
            if key in simple:
                simple[key]["verbs"] += [v for v in r["verbs"] if v not in simple[key]["verbs"]]
                continue
            simple[key] = r = {"apiGroups": [key[0]], "resources": [key[1]], "verbs": list(r["verbs"])}
        out.append(r)
    return out


# ---- the authorizer ----------------------------------------------------------------------

def _selects(selector: dict, labels: dict) -> bool:
    # an empty selector in an aggregation rule selects every ClusterRole
    return LabelSelector.from_dict(selector or {}).matches(labels)


def _subject_applies(subject: dict, username: str, groups, binding_ns: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == username
    if kind == "Group":
        return subject.get("name") in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return bool(ns) and username == f"system:serviceaccount:{ns}:{subject.get('name')}"
    return False


def _subject_string(subject: dict, binding_ns: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        return f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or binding_ns}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


class RbacAuthorizer:
    def __init__(self, store):
        self.store = store
        self._built = False
        self.cluster_roles: dict = {}
        self.roles: dict = {}
        self.cluster_bindings: dict = {}
        self.bindings: dict = {}   # namespace -> {name: binding}
        self._cache: dict = {}

    def _build(self):
        if self._built:
            return
        self._built = True
        for plural in ("clusterroles", "roles", "clusterrolebindings", "rolebindings"):
            for obj in self.store.list(GROUP, plural)["items"]:
                self._put(plural, obj)
        self.store.subscribe(self._on_write, GROUP)

    def _put(self, plural, obj, deleted=False):
        m = obj["metadata"]
        if plural == "clusterroles":
            table, key = self.cluster_roles, m["name"]
        elif plural == "clusterrolebindings":
            table, key = self.cluster_bindings, m["name"]
        elif plural == "roles":
            table, key = self.roles, (m["namespace"], m["name"])
        else:
            table, key = self.bindings.setdefault(m["namespace"], {}), m["name"]
        if deleted:
            table.pop(key, None)
        else:
            table[key] = obj

    def _on_write(self, etype, obj):
        plural = {"ClusterRole": "clusterroles", "Role": "roles", "RoleBinding": "rolebindings",
                  "ClusterRoleBinding": "clusterrolebindings"}.get(obj.get("kind"))
        if plural:
            self._put(plural, obj, etype == "DELETED")
            self._cache.clear()

    def _cluster_role_rules(self, name: str):
        role = self.cluster_roles.get(name)
        if role is None:
            return None
        rules = list(role.get("rules") or [])
        agg = role.get("aggregationRule")
        if agg:  # clusterrole-aggregation controller, evaluated when read
            for other in self.cluster_roles.values():
                if other is role:
                    continue
                labels = other["metadata"].get("labels") or {}
                if any(_selects(sel, labels) for sel in agg.get("clusterRoleSelectors") or []):
                    rules.extend(r for r in other.get("rules") or [] if r not in rules)
        return rules

    def _role_rules(self, ref: dict, binding_ns: str):
        if ref.get("kind") == "ClusterRole":
            rules = self._cluster_role_rules(ref.get("name", ""))
            what = f'clusterrole.rbac.authorization.k8s.io "{ref.get("name")}" not found'
        else:
            role = self.roles.get((binding_ns, ref.get("name", "")))
            rules = None if role is None else list(role.get("rules") or [])
            what = f'role.rbac.authorization.k8s.io "{ref.get("name")}" not found'
        return rules, what

    def rule_sets(self, username: str, groups, namespace: str):
        """[(source description, rules)] and the resolution errors, cached per subject/namespace
        until the next RBAC write (rule.go VisitRulesFor)."""
        self._build()
        key = (username, tuple(groups), namespace)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        sets, errors = [], []
        for b in self.cluster_bindings.values():
            subj = next((s for s in b.get("subjects") or [] if _subject_applies(s, username, groups, "")), None)
            if subj is None:
                continue
            rules, what = self._role_rules(b.get("roleRef") or {}, "")
            if rules is None:
                errors.append(what)
                continue
            sets.append((f'ClusterRoleBinding "{b["metadata"]["name"]}" of ClusterRole '
                         f'"{b["roleRef"].get("name")}" to {_subject_string(subj, "")}', rules))
        if namespace:
            for b in (self.bindings.get(namespace) or {}).values():
                subj = next((s for s in b.get("subjects") or []
                             if _subject_applies(s, username, groups, namespace)), None)
                if subj is None:
                    continue
                ref = b.get("roleRef") or {}
                rules, what = self._role_rules(ref, namespace)
                if rules is None:
                    errors.append(what)
                    continue
                sets.append((f'RoleBinding "{b["metadata"]["name"]}/{namespace}" of {ref.get("kind")} '
                             f'"{ref.get("name")}" to {_subject_string(subj, namespace)}', rules))
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = result = (sets, errors)
        return result

    def authorize(self, username: str, groups, a: Attributes) -> tuple[bool, str]:
        """(allowed, reason) as rbac.go Authorize (the reason of a denial lists the bindings whose
        roles could not be found)."""
        if MASTERS in groups:
            return True, ""
        sets, errors = self.rule_sets(username, groups, a.namespace if a.resource_request else "")
        for source, rules in sets:
            for rule in rules:
                if rule_allows(a, rule):
                    return True, f"RBAC: allowed by {source}"
        return False, ("RBAC: " + ", ".join(errors)) if errors else ""

    def rules_for(self, username: str, groups, namespace: str) -> tuple[list, list]:
        sets, errors = self.rule_sets(username, groups, namespace)
        return [r for _, rules in sets for r in rules], errors

    # -- escalation check (pkg/registry/rbac/escalation_check.go, validation.ConfirmNoEscalation)
    def missing_rules(self, user: dict, namespace: str, rules: list) -> list:
        owned, _ = self.rules_for(user["username"], user["groups"], namespace)
        missing = []
        for rule in rules:
            for atom in _breakdown(rule):
                if not any(_covers(o, atom) for o in owned):
                    missing.append(atom)
        return missing


def authorizer_of(cluster) -> RbacAuthorizer:
    authz = getattr(cluster, "_rbac", None)
    if authz is None:
        authz = cluster._rbac = RbacAuthorizer(cluster.store)
    return authz


class RbacEscalationCheck(Admission):
    """No one writes a Role/ClusterRole granting, or a binding to a role holding, permissions they
    do not hold themselves, unless allowed the `escalate` / `bind` verb (or in system:masters)."""

    def __init__(self, cluster):
        self.cluster = cluster

    def admit(self, store, rt, obj, old) -> None:
        if rt.group != GROUP:
            return
        user = CURRENT_USER.get()
        if user is None or MASTERS in user["groups"]:
            return
        authz = authorizer_of(self.cluster)
        m = obj.get("metadata") or {}
        ns = m.get("namespace") or ""
        if rt.plural in ("roles", "clusterroles"):
            a = Attributes("escalate", GROUP, rt.plural, namespace=ns, name=m.get("name", ""))
            if authz.authorize(user["username"], user["groups"], a)[0]:
                return
            rules = obj.get("rules") or []
            if rt.plural == "clusterroles" and obj.get("aggregationRule"):
                return  # aggregated rules come from the other roles (checked there)
        elif rt.plural in ("rolebindings", "clusterrolebindings"):
            ref = obj.get("roleRef") or {}
            ref_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            a = Attributes("bind", GROUP, ref_plural, namespace=ns if ref_plural == "roles" else ns,
                           name=ref.get("name", ""))
            if authz.authorize(user["username"], user["groups"], a)[0]:
                return
            rules, _ = authz._role_rules(ref, ns)
            if rules is None:
                return  # a binding to a missing role grants nothing yet
        else:
            return
        missing = authz.missing_rules(user, ns, rules)
        if missing:
            groups = " ".join(json.dumps(g) for g in user["groups"])
            msg = (f'user "{user["username"]}" (groups=[{groups}]) is attempting to grant RBAC '
                   f"permissions not currently held:\n" + "\n".join(sorted(compact_rule(r) for r in compact_rules(missing))))
            name = m.get("name", "")
            raise ApiError(403, "Forbidden", f'{rt.group_resource} "{name}" is forbidden: {msg}',
                           details_for(rt.group_resource, name))


# ---- bootstrap policy (bootstrappolicy/policy.go, the parts that matter to clients) --------

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]


def _rule(groups, resources, verbs):
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


def _view_rules():
    return [
        _rule([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status",
                     "pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                     "services", "services/status"], READ),
        _rule([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                     "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], READ),
        _rule([""], ["namespaces"], READ),
        _rule(["discovery.k8s.io"], ["endpointslices"], READ),
        _rule(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                         "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
                         "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status"], READ),
        _rule(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
        _rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
        _rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
        _rule(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ),
    ]


def _edit_rules():
    return [
        _rule([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets",
                     "services/proxy"], READ),
        _rule([""], ["serviceaccounts"], ["impersonate"]),
        _rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
        _rule([""], ["pods/eviction"], ["create"]),
        _rule([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                     "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
                     "services/proxy"], WRITE),
        _rule([""], ["serviceaccounts/token"], ["create"]),
        _rule(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale",
                         "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"], WRITE),
        _rule(["autoscaling"], ["horizontalpodautoscalers"], WRITE),
        _rule(["batch"], ["cronjobs", "jobs"], WRITE),
        _rule(["networking.k8s.io"], ["ingresses", "networkpolicies"], WRITE),
        _rule(["policy"], ["poddisruptionbudgets"], WRITE),
        _rule(["coordination.k8s.io"], ["leases"], READ + WRITE),
    ] + _view_rules()


def _admin_rules():
    return [
        _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        _rule([GROUP], ["rolebindings", "roles"], READ + WRITE),
    ] + _edit_rules()


def _cluster_role(name, rules, aggregate_label=None, aggregate_to=(), extra_meta=None):
    labels = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    for target in aggregate_to:
        labels[f"rbac.authorization.k8s.io/aggregate-to-{target}"] = "true"
    obj = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
           "metadata": {"name": name, "labels": labels,
                        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
           "rules": rules}
    if aggregate_label:
        obj["aggregationRule"] = {"clusterRoleSelectors": [
            {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{aggregate_label}": "true"}}]}
    return obj


def _binding(name, role, group):
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": group}]}


def bootstrap_policy() -> list[dict]:
    """The default ClusterRoles/ClusterRoleBindings clients rely on (kubeadm cluster)."""
    discovery_urls = ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                      "/openapi/*", "/readyz", "/version", "/version/"]
    public_urls = ["/healthz", "/livez", "/readyz", "/version", "/version/"]
    return [
        _cluster_role("cluster-admin", [_rule(["*"], ["*"], ["*"]),
                                        {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        _cluster_role("admin", _admin_rules(), aggregate_label="admin"),
        _cluster_role("edit", _edit_rules(), aggregate_label="edit", aggregate_to=("admin",)),
        _cluster_role("view", _view_rules(), aggregate_label="view", aggregate_to=("edit",)),
        _cluster_role("system:discovery", [{"nonResourceURLs": discovery_urls, "verbs": ["get"]}]),
        _cluster_role("system:basic-user", [
            _rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
            _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]),
        _cluster_role("system:public-info-viewer", [{"nonResourceURLs": public_urls, "verbs": ["get"]}]),
        _binding("cluster-admin", "cluster-admin", MASTERS),
        _binding("system:discovery", "system:discovery", AUTHENTICATED),
        _binding("system:basic-user", "system:basic-user", AUTHENTICATED),
        _binding("system:public-info-viewer", "system:public-info-viewer", AUTHENTICATED),
    ]
