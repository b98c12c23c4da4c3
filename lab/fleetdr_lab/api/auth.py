"""Who a request is and what it may do: bearer-token authentication (the lab's admin token and
ServiceAccount tokens), impersonation, RBAC authorization of every request, and the review APIs
(authentication.k8s.io TokenReview/SelfSubjectReview, authorization.k8s.io *SubjectAccessReview,
SelfSubjectRulesReview) plus the serviceaccounts/token subresource (TokenRequest).

The admin token is checked first and costs what it always did: it is a member of system:masters,
which kube-apiserver allows everything before RBAC is asked, so its requests are not authorized
further unless they impersonate someone.
"""
from __future__ import annotations

import hmac

from .. import satokens
from ..rbac import AUTHENTICATED, MASTERS, Attributes, authorizer_of, forbidden_error
from ..store import ApiError

ADMIN_USER = {"username": "kubernetes-admin", "uid": "", "groups": [MASTERS, AUTHENTICATED], "extra": {}}
IMPERSONATE_HEADERS = ("Impersonate-User", "Impersonate-Group", "Impersonate-Uid")
REVIEW_GROUPS = ("authentication.k8s.io", "authorization.k8s.io")
NAMESPACE_SUBRESOURCES = ("status", "finalize")


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def authenticate(cluster, request, public_paths) -> dict | None:
    """The user of the request; ADMIN_USER for the admin token; None for an anonymous read of
    public info. Raises 401 for a missing or invalid token."""
    header = request.headers.get("Authorization")
    if header is None:
        if request.path.rstrip("/").startswith(public_paths):
            return None
        raise unauthorized()
    expected = f"Bearer {cluster.token}"
    if hmac.compare_digest(header.encode(), expected.encode()):
        user = ADMIN_USER
    else:
        scheme, _, token = header.partition(" ")
        user = satokens.authenticate_token(cluster, token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise unauthorized()
    headers = request.headers
    if "Impersonate-User" in headers or "Impersonate-Group" in headers or "Impersonate-Uid" in headers:
        user = impersonate(cluster, request, user)
    return user


def impersonate(cluster, request, user: dict) -> dict:
    """staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go"""
    headers = request.headers
    username = headers.get("Impersonate-User", "")
    groups = headers.getall("Impersonate-Group", [])
    uid = headers.get("Impersonate-Uid", "")
    extra = {}
    for key in headers:
        if key.lower().startswith("impersonate-extra-"):
            extra.setdefault(key[len("impersonate-extra-"):].lower(), []).extend(headers.getall(key))
    if not username:
        raise ApiError(500, "InternalError", "Internal error occurred: requested "
                       f"{groups or extra or uid} without impersonating a user")
    authz = authorizer_of(cluster)
    checks = []
    sa = satokens.split_sa_username(username)
    if sa:
        checks.append(Attributes("impersonate", "", "serviceaccounts", namespace=sa[0], name=sa[1]))
    else:
        checks.append(Attributes("impersonate", "", "users", name=username))
    checks += [Attributes("impersonate", "", "groups", name=g) for g in groups]
    if uid:
        checks.append(Attributes("impersonate", "authentication.k8s.io", "uids", name=uid))
    for key, values in extra.items():
        checks += [Attributes("impersonate", "authentication.k8s.io", "userextras", subresource=key, name=v)
                   for v in values]
    for a in checks:
        allowed, reason = authz.authorize(user["username"], user["groups"], a)
        if not allowed:
            raise forbidden_error(user["username"], a, reason)
    new_groups = list(groups)
    if sa and not groups:
        new_groups = satokens.sa_groups(sa[0])
    if username != "system:anonymous" and not any(
            g in (AUTHENTICATED, "system:unauthenticated") for g in new_groups):
        new_groups.append(AUTHENTICATED)
    return {"username": username, "uid": uid, "groups": new_groups, "extra": extra}


def request_attributes(method: str, path: str, query) -> Attributes:
    """staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go"""
    parts = [p for p in path.split("/") if p]
    rest = None
    group = version = ""
    if parts and parts[0] == "api" and len(parts) >= 3:
        version, rest = parts[1], parts[2:]
    elif parts and parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    if rest is None:
        return Attributes(method.lower(), path=path, resource_request=False)
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "get")
    if rest[0] == "watch":
        verb, rest = "watch", rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if not name and verb == "get":
        verb = "list"
    if verb == "list" and query.get("watch", "").lower() in ("1", "true", "t", "yes"):
        verb = "watch"
    if not name and verb == "delete":
        verb = "deletecollection"
    if verb in ("list", "watch") and not name:
        for term in (query.get("fieldSelector") or "").split(","):
            key, _, value = term.partition("=")
            if key.strip() == "metadata.name" and value and not value.startswith("="):
                name = value.strip()
    return Attributes(verb, group, resource, sub, namespace, name, path=path, version=version)


def authorize_request(cluster, request, user: dict) -> None:
    if MASTERS in user["groups"]:
        return
    a = request_attributes(request.method, request.path, request.query)
    allowed, reason = authorizer_of(cluster).authorize(user["username"], user["groups"], a)
    if not allowed:
        raise forbidden_error(user["username"], a, reason)


def authorize_create(cluster, user: dict, group: str, plural: str, namespace, name: str) -> None:
    if MASTERS in user["groups"]:
        return
    a = Attributes("create", group, plural, namespace=namespace or "", name=name)
    allowed, reason = authorizer_of(cluster).authorize(user["username"], user["groups"], a)
    if not allowed:
        raise forbidden_error(user["username"], a, reason)


# ---- review APIs --------------------------------------------------------------------------

def _user_info(user: dict) -> dict:
    info = {"username": user["username"]}
    if user.get("uid"):
        info["uid"] = user["uid"]
    if user.get("groups"):
        info["groups"] = list(user["groups"])
    if user.get("extra"):
        info["extra"] = {k: list(v) for k, v in user["extra"].items()}
    return info


def _spec_attributes(spec: dict, namespace: str | None = None) -> Attributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if ra and nra:
        raise _invalid("spec.resourceAttributes", "cannot be specified in combination with "
                       "nonResourceAttributes")
    if nra:
        return Attributes(nra.get("verb", ""), path=nra.get("path", ""), resource_request=False)
    if not ra:
        raise _invalid("spec.resourceAttributes", "exactly one of nonResourceAttributes or "
                       "resourceAttributes must be specified")
    return Attributes(ra.get("verb", ""), ra.get("group", ""), ra.get("resource", ""),
                      ra.get("subresource", ""), namespace if namespace is not None else ra.get("namespace", ""),
                      ra.get("name", ""), version=ra.get("version", ""))


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f"{field}: Invalid value: {message}")


def review(cluster, user: dict, rt, namespace: str | None, body: dict) -> dict:
    """The answer to a create of one of the review resources (nothing is stored)."""
    out = {"kind": body.get("kind") or rt.kind, "apiVersion": body.get("apiVersion") or rt.api_version,
           "metadata": {"creationTimestamp": None}}
    spec = body.get("spec") or {}
    authz = authorizer_of(cluster)
    plural = rt.plural
    if plural == "selfsubjectreviews":
        out["status"] = {"userInfo": _user_info(user)}
        return out
    if plural == "tokenreviews":
        found = satokens.authenticate_token(cluster, spec.get("token") or "",
                                            spec.get("audiences") or satokens.API_AUDIENCES)
        out["spec"] = spec
        out["status"] = {"authenticated": True, "user": _user_info(found),
                         "audiences": found["audiences"]} if found else {"user": {}}
        return out
    if plural == "selfsubjectrulesreview" or plural == "selfsubjectrulesreviews":
        ns = spec.get("namespace") or ""
        rules, errors = authz.rules_for(user["username"], user["groups"], ns)
        resource_rules, non_resource_rules = [], []
        if MASTERS in user["groups"] and not rules:
            rules = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                     {"nonResourceURLs": ["*"], "verbs": ["*"]}]
        for r in rules:
            if r.get("nonResourceURLs"):
                non_resource_rules.append({"verbs": r.get("verbs") or [],
                                           "nonResourceURLs": r["nonResourceURLs"]})
            else:
                entry = {"verbs": r.get("verbs") or [], "apiGroups": r.get("apiGroups") or [],
                         "resources": r.get("resources") or []}
                if r.get("resourceNames"):
                    entry["resourceNames"] = r["resourceNames"]
                resource_rules.append(entry)
        out["spec"] = spec
        out["status"] = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                         "incomplete": bool(errors)}
        if errors:
            out["status"]["evaluationError"] = ", ".join(errors)
        return out
    if plural == "selfsubjectaccessreviews":
        subject = user
        a = _spec_attributes(spec)
    elif plural in ("subjectaccessreviews", "localsubjectaccessreviews"):
        if not spec.get("user") and not spec.get("groups"):
            raise _invalid("spec.user", '"": at least one of user or group must be specified')
        if plural == "localsubjectaccessreviews":
            ra_ns = (spec.get("resourceAttributes") or {}).get("namespace", "")
            if ra_ns != namespace:
                raise _invalid("spec.resourceAttributes.namespace",
                               f'"{ra_ns}": must match metadata.namespace')
            out["metadata"]["namespace"] = namespace
        subject = {"username": spec.get("user") or "", "groups": list(spec.get("groups") or []),
                   "uid": spec.get("uid") or "", "extra": spec.get("extra") or {}}
        a = _spec_attributes(spec)
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
    allowed, reason = authz.authorize(subject["username"], subject["groups"], a)
    out["spec"] = spec
    out["status"] = {"allowed": allowed}
    if reason:
        out["status"]["reason"] = reason
    return out


# ---- serviceaccounts/token --------------------------------------------------------------------

def token_request(cluster, namespace: str, name: str, body: dict, dry_run: bool) -> dict:
    """pkg/registry/core/serviceaccount/storage/token.go"""
    store = cluster.store
    sa = store.get("", "serviceaccounts", namespace, name)
    spec = dict(body.get("spec") or {})
    expiration = spec.get("expirationSeconds")
    expiration = 3600 if expiration is None else expiration
    if not isinstance(expiration, int) or expiration < 600:
        raise ApiError(422, "Invalid", f'TokenRequest.authentication.k8s.io "{name}" is invalid: '
                       "spec.expirationSeconds: Invalid value: "
                       f"{expiration}: may not specify a duration less than 10 minutes",
                       {"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest",
                        "causes": [{"reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                                    "message": f"Invalid value: {expiration}: may not specify a "
                                               "duration less than 10 minutes"}]})
    if expiration > 2 ** 32:
        raise ApiError(422, "Invalid", f'TokenRequest.authentication.k8s.io "{name}" is invalid: '
                       f"spec.expirationSeconds: Invalid value: {expiration}: may not specify a "
                       "duration larger than 2^32 seconds")
    audiences = spec.get("audiences") or list(satokens.API_AUDIENCES)
    bound = None
    ref = spec.get("boundObjectRef")
    if ref:
        kind = ref.get("kind")
        plural = {"Pod": "pods", "Secret": "secrets"}.get(kind)
        if plural is None:
            raise ApiError(400, "BadRequest", f"cannot bind token for serviceaccount \"{name}\" to "
                           f"object of type {ref.get('apiVersion', '')}, Kind={kind}")
        obj = store.get("", plural, namespace, ref.get("name", ""))
        if ref.get("uid") and ref["uid"] != obj["metadata"]["uid"]:
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {plural} "{ref.get("name")}": '
                           f"the UID in the bound object reference ({ref['uid']}) does not match the "
                           f"UID in record. The object might have been deleted and then recreated")
        bound = {"kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"]}
        spec["boundObjectRef"] = dict(ref, uid=bound["uid"])
    now = store.clock.now()
    token, exp = satokens.signer_of(cluster).bound_token(sa, now, expiration, audiences, bound)
    spec["audiences"] = audiences
    spec["expirationSeconds"] = expiration
    spec.setdefault("boundObjectRef", None)
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace,
                         "creationTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "spec": spec,
            "status": {"token": "" if dry_run else token,
                       "expirationTimestamp": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}}
