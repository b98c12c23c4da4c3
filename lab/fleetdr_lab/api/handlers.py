"""The HTTP handlers of one emulated cluster's API, as unmodified Kubernetes clients see it.

`make_app(cluster)` returns an aiohttp application that the daemon serves over TLS. It speaks
the kube-apiserver's REST dialect: discovery, the verbs over /api and /apis paths, the four
patch types, watch streams, Table output for kubectl, bearer-token auth, Status errors and the
per-cluster faults. All object semantics live in the Store; this module only translates HTTP
(protobuf bodies: protobuf.py, Table output: tables.py).
"""
from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
import uuid

import yaml
from aiohttp import web

from ..rbac import CURRENT_USER
from ..registry import SUBRESOURCE_KINDS
from ..store import ApiError
from .openapi import OpenApiService, etag_of
from . import auth
from .protobuf import decode_protobuf
from .tables import TableConverter, partial_metadata

try:  # orjson serialises large lists several times faster; json is the fallback
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

log = logging.getLogger("fleetdr_lab.api")

# Paths that kubeadm's system:public-info-viewer role lets anonymous clients read.
PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")
# kube-apiserver's default --min-request-timeout: a watch without timeoutSeconds lasts this long.
DEFAULT_WATCH_TIMEOUT = 1800.0
# The watch cache sends a bookmark about once a minute, and one just before the watch times out.
BOOKMARK_INTERVAL = 60.0
# How often an idle watch looks whether its client went away.
DISCONNECT_POLL = 1.0
MAX_BODY = 8 * 1024 * 1024

NOT_FOUND_MESSAGE = "the server could not find the requested resource"
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": None,  # known to the real server, not to the lab
}
METHOD_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}

# ---- encoding -------------------------------------------------------------------------------

def dumps(obj) -> bytes:
    if orjson is not None:
        return orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":")).encode()


def json_response(obj, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=dumps(obj), status=status, headers=headers,
                        content_type="application/json")


def error_response(err: ApiError, headers: dict | None = None) -> web.Response:
    return json_response(err.status(), status=err.code, headers=headers)


def not_found() -> ApiError:
    return ApiError(404, "NotFound", NOT_FOUND_MESSAGE, {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource", {})


def invalid_list_options(field: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f'ListOptions.meta.k8s.io "" is invalid: {field}: {message}',
                    {"kind": "ListOptions", "group": "meta.k8s.io",
                     "causes": [{"reason": "FieldValueInvalid", "message": message,
                                 "field": field}]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


FAULT_STATUS = {
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: fleetdr-lab injected fault"),
    503: ("ServiceUnavailable", "The server is currently unable to handle the request"),
    504: ("Timeout", "The server was unable to return a response in the time allotted"),
}


def fault_error(code: int) -> tuple[ApiError, dict]:
    reason, message = FAULT_STATUS.get(code, ("InternalError", f"fleetdr-lab injected fault {code}"))
    details, headers = {}, {}
    if code == 429:
        details = {"retryAfterSeconds": 1}
        headers = {"Retry-After": "1"}
    return ApiError(code, reason, message, details), headers


# ---- small parsing helpers ------------------------------------------------------------------

def field_manager_of(request: web.Request) -> str:
    """The request's field manager: ?fieldManager=, else the User-Agent up to its first "/",
    printable characters only, at most 128 bytes (managerOrUserAgent / prefixFromUserAgent in
    staging/src/k8s.io/apiserver/pkg/endpoints/handlers/create.go)."""
    manager = request.query.get("fieldManager")
    if manager:
        return manager
    out, size = [], 0
    for ch in (request.headers.get("User-Agent") or "").split("/")[0]:
        if not ch.isprintable():
            continue
        size += len(ch.encode())
        if size > 128:
            break
        out.append(ch)
    return "".join(out)


def parse_bool(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("1", "t", "true", "yes")


def parse_int(query, name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name}: Invalid value: \"{raw}\": must be an integer") from None


def parse_dry_run(values: list[str]) -> bool:
    values = [v for v in values if v != ""]
    for v in values:
        if v != "All":
            raise ApiError(400, "BadRequest",
                           f'Invalid dryRun value: "{v}": supported values: "All"')
    return bool(values)


def parse_accept(header: str | None) -> str:
    """Which representation the client wants: "json", "table", "table-v1beta1" or "partial"."""
    for part in (header or "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        if media not in ("application/json", "*/*", "application/*"):
            continue
        opts = dict(p.split("=", 1) for p in params if "=" in p)
        as_ = opts.get("as")
        if as_ is None:
            return "json"
        if opts.get("g") != "meta.k8s.io":
            continue
        if as_ == "Table":
            return "table" if opts.get("v") == "v1" else "table-v1beta1"
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return "partial"
    # Protobuf-only or unknown: real clients that ask for protobuf also read JSON.
    return "json"


def discovery_accept(header: str | None) -> str | None:
    """The apidiscovery.k8s.io version of an aggregated-discovery Accept, if it comes first."""
    for part in (header or "").split(","):
        media, *params = [p.strip() for p in part.split(";")]
        opts = dict(p.split("=", 1) for p in params if "=" in p)
        if media == "application/json" and opts.get("as") == "APIGroupDiscoveryList" and \
                opts.get("g") == "apidiscovery.k8s.io" and opts.get("v") in ("v2", "v2beta1"):
            return opts["v"]
        if media in ("application/json", "*/*") and "as" not in opts:
            return None
    return None


PB_V2 = "com.github.proto-openapi.spec.v2.v1.0+protobuf"
PB_V2_OLD = "com.github.proto-openapi.spec.v2@v1.0+protobuf"


def openapi_accept(header: str, offered: tuple[str, ...]) -> str | None:
    """The first of `offered` (application/ subtypes) the Accept header takes, by q order
    (goautoneg as kube-openapi uses it); None: 406."""
    clauses = []
    for i, part in enumerate(header.split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        if not media:
            continue
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        mtype, _, sub = media.partition("/")
        clauses.append((-q, i, mtype, sub or "*"))
    for _, _, mtype, sub in sorted(clauses):
        if mtype not in ("application", "*"):
            continue
        for offer in offered:
            if sub in (offer, "*"):
                return offer
    return None


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


def decode_body(raw: bytes, content_type: str):
    if "protobuf" in content_type:
        return decode_protobuf(raw)
    if not raw:
        raise bad_request("the body of the request was empty")
    try:
        if "yaml" in content_type:
            # kube-apiserver's YAML decoder takes JSON as it is (yaml.YAMLOrJSONDecoder); clients send
            # apply patches as JSON, and PyYAML's pure-Python parser cost more than the apply itself
            if raw.lstrip()[:1] == b"{":
                try:
                    return json.loads(raw)
                except ValueError:
                    pass
            return yaml.load(raw, Loader=_YAML_LOADER)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


# ---- the application ------------------------------------------------------------------------

class ResourcePath:
    """A parsed /api/v1/... or /apis/<g>/<v>/... resource path."""

    __slots__ = ("group", "version", "rt", "namespace", "name", "sub", "watch_prefix")

    def __init__(self, group, version, rt, namespace, name, sub, watch_prefix):
        self.group, self.version, self.rt = group, version, rt
        self.namespace, self.name, self.sub = namespace, name, sub
        self.watch_prefix = watch_prefix


class ClusterApi:
    def __init__(self, cluster):
        self.cluster = cluster
        self.random = random.Random()
        self.openapi_service: OpenApiService | None = None  # built on the first /openapi request

    @property
    def store(self):
        return self.cluster.store

    # -- middleware: auth, faults, errors -------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler):
        try:
            faults = getattr(self.cluster, "faults", None)
            if faults is not None and faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000.0)
            user = auth.authenticate(self.cluster, request, PUBLIC_PATHS)
            request[USER_KEY] = user
            if faults is not None and faults.error_rate and \
                    self.random.random() < faults.error_rate:
                err, headers = fault_error(int(faults.error_code or 500))
                return error_response(err, headers)
            if user is None or user is auth.ADMIN_USER:
                return await handler(request)
            auth.authorize_request(self.cluster, request, user)
            reset = CURRENT_USER.set(user)  # for admission plugins that decide by user
            try:
                return await handler(request)
            finally:
                CURRENT_USER.reset(reset)
        except ApiError as err:
            return error_response(err)
        except web.HTTPRequestEntityTooLarge:
            return error_response(ApiError(413, "RequestEntityTooLarge",
                                           "the request is too large"))
        except (web.HTTPException, asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path_qs)
            return error_response(ApiError(500, "InternalError",
                                           f"Internal error occurred: {exc}"))

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Audit-Id", str(uuid.uuid4()))
        response.headers.setdefault("Cache-Control", "no-cache, private")

    # -- routing --------------------------------------------------------------------------
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        head = parts[0] if parts else ""
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if head == "version" and len(parts) == 1:
            self.require_get(request)
            return json_response(self.cluster.kube_version)
        if head == "openapi":
            return self.openapi(request, parts[1:])
        if head in ("api", "apis") and len(parts) == 1:
            aggregated = discovery_accept(request.headers.get("Accept"))
            if aggregated:
                self.require_get(request)
                return self.aggregated_discovery(head == "api", aggregated)
        if head == "api":
            if len(parts) == 1:
                self.require_get(request)
                return json_response(self.api_versions(request))
            if parts[1] != "v1":
                raise not_found()
            if len(parts) == 2:
                self.require_get(request)
                return json_response(self.resource_list("", "v1"))
            return await self.resource(request, "", "v1", parts[2:])
        if head == "apis":
            if len(parts) == 1:
                self.require_get(request)
                return json_response(self.group_list())
            group = parts[1]
            info = next((g for g in self.store.registry.groups() if g["name"] == group and group),
                        None)
            if info is None:
                raise not_found()
            if len(parts) == 2:
                self.require_get(request)
                return json_response(dict(kind="APIGroup", apiVersion="v1",
                                          **self.group_entry(info)))
            if parts[2] not in info["versions"]:
                raise not_found()
            if len(parts) == 3:
                self.require_get(request)
                return json_response(self.resource_list(group, parts[2]))
            return await self.resource(request, group, parts[2], parts[3:])
        raise not_found()

    @staticmethod
    def require_get(request: web.Request) -> None:
        if request.method not in ("GET", "HEAD"):
            raise method_not_allowed()

    # -- discovery ------------------------------------------------------------------------
    def api_versions(self, request: web.Request) -> dict:
        host = request.host or f"127.0.0.1:{getattr(self.cluster, 'port', 443)}"
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": host}]}

    @staticmethod
    def group_entry(info: dict) -> dict:
        name = info["name"]
        versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in info["versions"]]
        preferred = info.get("preferredVersion") or info["versions"][0]
        return {"name": name, "versions": versions,
                "preferredVersion": {"groupVersion": f"{name}/{preferred}", "version": preferred}}

    def group_list(self) -> dict:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self.group_entry(g) for g in self.store.registry.groups() if g["name"]]}

    def resource_list(self, group: str, version: str) -> dict:
        resources = []
        for rt in sorted(self.store.registry.resources(group, version), key=lambda r: r.plural):
            resources.extend(rt.discovery())
        body = {"kind": "APIResourceList", "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources}
        if group:
            body["apiVersion"] = "v1"
        return body

    def aggregated_discovery(self, core: bool, version: str) -> web.Response:
        """apidiscovery.k8s.io APIGroupDiscoveryList: every group, version and resource in one
        answer, which kubectl 1.32 asks for before falling back to per-version discovery."""
        items = []
        for g in self.store.registry.groups():
            if bool(g["name"]) == core:
                continue
            versions = []
            for v in g["versions"]:
                resources = []
                for rt in sorted(self.store.registry.resources(g["name"], v),
                                 key=lambda r: r.plural):
                    entry = {"resource": rt.plural,
                             "responseKind": {"group": rt.group, "version": v, "kind": rt.kind},
                             "scope": "Namespaced" if rt.namespaced else "Cluster",
                             "singularResource": rt.singular, "verbs": list(rt.verbs)}
                    if rt.short_names:
                        entry["shortNames"] = list(rt.short_names)
                    if rt.categories:
                        entry["categories"] = list(rt.categories)
                    subs = []
                    for sub, verbs in rt.subresources.items():
                        group, sub_version, kind = SUBRESOURCE_KINDS.get(
                            sub, (rt.group, v, rt.kind))
                        subs.append({"subresource": sub, "verbs": list(verbs),
                                     "responseKind": {"group": group, "version": sub_version,
                                                      "kind": kind}})
                    if subs:
                        entry["subresources"] = subs
                    resources.append(entry)
                versions.append({"version": v, "resources": resources, "freshness": "Current"})
            meta = {"creationTimestamp": None}
            if g["name"]:
                meta["name"] = g["name"]
            items.append({"metadata": meta, "versions": versions})
        body = {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
                "metadata": {}, "items": items}
        return web.Response(body=dumps(body), headers={
            "Content-Type": f"application/json;g=apidiscovery.k8s.io;v={version};"
                            "as=APIGroupDiscoveryList"})

    def openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        """/openapi/v2 and /openapi/v3[/<group-version>] (documents: openapi.py), answered as
        kube-openapi's handlers do: content negotiation, ETag / If-None-Match, and for a v3
        document requested with the `?hash=` its index handed out, immutable caching (a stale
        hash is redirected to the current one)."""
        self.require_get(request)
        if self.openapi_service is None:
            self.openapi_service = OpenApiService(self.store.registry)
        service = self.openapi_service
        accept = request.headers.get("Accept") or "*/*"
        if parts == ["v2"]:
            # kube-openapi pkg/handler/handler.go: JSON or gnostic protobuf, else 406
            form = openapi_accept(accept, ("json", PB_V2, PB_V2_OLD))
            if form is None:
                return web.Response(status=406, headers={"Vary": "Accept"})
            protobuf = form != "json"
            data, etag = service.v2(protobuf)
            return self.openapi_body(request, data, etag,
                                     "application/" + (PB_V2 if protobuf else "json"))
        if parts == ["v3"]:
            data = service.index()
            return self.openapi_body(request, data, etag_of(data), "application/json")
        if len(parts) >= 3 and parts[0] == "v3":
            key = "/".join(parts[1:])
            found = service.group_version(key)
            if found is None:
                raise not_found()
            # pkg/handler3/handler.go: JSON here (the lab has no v3 protobuf encoder)
            if openapi_accept(accept, ("json",)) is None:
                return web.Response(status=406, headers={"Vary": "Accept"})
            data, etag = found
            wanted = request.query.get("hash")
            headers = {}
            if wanted:
                if wanted != etag:
                    raise web.HTTPMovedPermanently(f"/openapi/v3/{key}?hash={etag}")
                headers = {"Cache-Control": "public, immutable",
                           "Expires": email.utils.formatdate(time.time() + 365 * 86400,
                                                             usegmt=True)}
            return self.openapi_body(request, data, etag, "application/json", headers)
        raise not_found()

    @staticmethod
    def openapi_body(request: web.Request, data: bytes, etag: str, content_type: str,
                     headers: dict | None = None) -> web.Response:
        headers = dict(headers or {})
        headers["Etag"] = f'"{etag}"'
        headers["Vary"] = "Accept"
        match = request.headers.get("If-None-Match")
        if match and any(t.strip() in (f'"{etag}"', f'W/"{etag}"', "*") for t in match.split(",")):
            return web.Response(status=304, headers=headers)  # net/http ServeContent
        return web.Response(body=data, headers=headers, content_type=content_type)

    # -- resource requests ----------------------------------------------------------------
    def parse_resource_path(self, group: str, version: str, rest: list[str]) -> ResourcePath:
        registry = self.store.registry
        watch_prefix = False
        if rest and rest[0] == "watch":
            watch_prefix, rest = True, rest[1:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            inner = registry.get(group, rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise not_found()
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        rt = registry.get(group, plural)
        if rt is None or version not in rt.versions:
            raise not_found()
        if rt.namespaced and name is not None and namespace is None:
            raise not_found()
        if sub is not None and sub not in rt.subresources:
            raise not_found()
        if watch_prefix and sub is not None:
            raise not_found()
        return ResourcePath(group, version, rt, namespace, name, sub, watch_prefix)

    async def resource(self, request: web.Request, group: str, version: str,
                       rest: list[str]) -> web.StreamResponse:
        path = self.parse_resource_path(group, version, rest)
        method = request.method
        rt, query = path.rt, request.query
        if method == "HEAD":
            method = "GET"
        if method == "GET":
            watching = path.watch_prefix or parse_bool(query.get("watch"))
            verb = "watch" if watching else ("get" if path.name else "list")
        elif method == "POST":
            verb = "create"
        elif method == "DELETE" and path.name is None:
            verb = "deletecollection"
        else:
            verb = METHOD_VERBS.get(method)
        allowed = rt.subresources[path.sub] if path.sub else rt.verbs
        if verb is None or verb not in allowed:
            raise method_not_allowed()
        if path.watch_prefix and verb != "watch":
            raise method_not_allowed()
        if rt.namespaced and path.namespace is None and verb not in ("list", "watch"):
            raise method_not_allowed()  # the all-namespaces path only reads
        if verb == "create" and path.name is not None and path.sub is None:
            raise method_not_allowed()
        if verb in ("update", "patch", "delete") and path.name is None:
            raise method_not_allowed()

        if verb == "watch":
            return await self.watch(request, path)
        if verb == "list":
            return self.list(request, path)
        if verb == "get":
            return self.get(request, path)
        if verb == "create":
            return await self.create(request, path)
        if verb == "update":
            return await self.update(request, path)
        if verb == "patch":
            return await self.patch(request, path)
        if verb == "delete":
            return await self.delete(request, path)
        return await self.delete_collection(request, path)

    # -- representation -------------------------------------------------------------------
    def convert(self, obj: dict, path: ResourcePath) -> dict:
        """Objects are served in the version the request names (built-in conversions: the kind's
        strategy; CRD conversion `None`)."""
        rt = path.rt
        if isinstance(obj, dict) and obj.get("kind") == rt.kind:
            want = rt.api_version_for(path.version)
            if obj.get("apiVersion") != want:
                if obj.get("apiVersion") == rt.api_version:  # storage version: convert
                    return self.store.to_version(rt.group, rt.plural, obj, path.version)
                obj["apiVersion"] = want
        return obj

    def respond_object(self, request: web.Request, path: ResourcePath, obj: dict,
                       status: int = 200) -> web.Response:
        obj = self.convert(obj, path)
        form = parse_accept(request.headers.get("Accept"))
        if form.startswith("table") and obj.get("kind") == path.rt.kind and path.sub is None:
            conv = TableConverter(path.rt, path.version, self.store.clock.now())
            return json_response(conv.table([obj], request.query.get("includeObject", "Metadata"),
                                            table_api_version(form),
                                            {"resourceVersion": (obj.get("metadata") or {})
                                             .get("resourceVersion", "")}), status)
        if form == "partial" and obj.get("kind") == path.rt.kind:
            return json_response(partial_metadata(obj), status)
        return json_response(obj, status)

    # -- verbs ------------------------------------------------------------------------------
    def get(self, request: web.Request, path: ResourcePath) -> web.Response:
        if path.sub == "log":
            self.store.get(path.group, path.rt.plural, path.namespace, path.name)
            return web.Response(text="", content_type="text/plain")
        if path.sub == "scale":
            return json_response(self.store.get(path.group, path.rt.plural, path.namespace,
                                                path.name, subresource="scale"))
        obj = self.store.get(path.group, path.rt.plural, path.namespace, path.name,
                             version=path.version)
        return self.respond_object(request, path, obj)

    def list(self, request: web.Request, path: ResourcePath) -> web.Response:
        query = request.query
        cont = query.get("continue") or None
        rv = query.get("resourceVersion") or ""
        rv_match = query.get("resourceVersionMatch") or ""
        if rv_match and not rv:
            raise invalid_list_options("resourceVersionMatch", "resourceVersionMatch is "
                                       "forbidden unless resourceVersion is provided")
        if rv_match not in ("", "NotOlderThan", "Exact"):
            raise invalid_list_options("resourceVersionMatch", f'Unsupported value: "{rv_match}": '
                                       'supported values: "Exact", "NotOlderThan", ""')
        if cont and rv not in ("", "0"):
            raise bad_request("specifying resource version is not allowed when using continue")
        limit = parse_int(query, "limit")
        result = self.store.list(path.group, path.rt.plural, path.namespace,
                                 label_selector=query.get("labelSelector") or None,
                                 field_selector=query.get("fieldSelector") or None,
                                 limit=limit if limit and limit > 0 else None,
                                 continue_token=cont, version=path.version)
        items = [self.convert(o, path) for o in result.get("items") or []]
        form = parse_accept(request.headers.get("Accept"))
        if form.startswith("table"):
            conv = TableConverter(path.rt, path.version, self.store.clock.now())
            api_version = path.rt.api_version_for(path.version)
            for item in items:  # row objects are whole objects, typed unlike list items
                item["apiVersion"], item["kind"] = api_version, path.rt.kind
            return json_response(conv.table(items, query.get("includeObject", "Metadata"),
                                            table_api_version(form), result.get("metadata")))
        if form == "partial":
            return json_response({"kind": "PartialObjectMetadataList",
                                  "apiVersion": "meta.k8s.io/v1",
                                  "metadata": result.get("metadata") or {},
                                  "items": [partial_metadata(o) for o in items]})
        result["items"] = items
        result["apiVersion"] = path.rt.api_version_for(path.version)
        return json_response(result)

    async def read_object(self, request: web.Request, path: ResourcePath) -> dict:
        body = decode_body(await request.read(), request.content_type or "")
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        self.check_kind(body, path)
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata: must be an object")
        if path.namespace is not None:
            if meta.get("namespace") and meta["namespace"] != path.namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = path.namespace
        return body

    @staticmethod
    def expected_kind(path: ResourcePath) -> tuple[str, str, str]:
        """(group, version, kind) a request body must carry for this path."""
        rt = path.rt
        if path.sub == "scale":
            return "autoscaling", "v1", "Scale"
        if path.sub in ("binding", "eviction", "token"):
            return SUBRESOURCE_KINDS[path.sub]
        return rt.group, path.version, rt.kind

    def check_kind(self, body: dict, path: ResourcePath) -> None:
        group, version, kind = self.expected_kind(path)
        api_version, body_kind = body.get("apiVersion"), body.get("kind")
        if not api_version and not body_kind:
            body["apiVersion"] = f"{group}/{version}" if group else version
            body["kind"] = kind
            return
        if not isinstance(api_version, str) or not isinstance(body_kind, str) or \
                not api_version or not body_kind:
            raise bad_request("Object 'Kind' is missing in "
                              f"'{json.dumps(body, separators=(',', ':'))[:200]}'"
                              if not body_kind else
                              "Object 'apiVersion' is missing")
        body_group, body_version = split_api_version(api_version)
        if body_group != group:
            raise bad_request(f"the API version in the data ({api_version}) does not match the "
                              f"expected API version ({group + '/' if group else ''}{version})")
        if body_kind != kind:
            raise bad_request(f'{body_kind} in version "{body_version}" cannot be handled as a '
                              f'{kind}: no kind "{body_kind}" is registered for version '
                              f'"{api_version}" in scheme')
        if body_version != version:
            if path.sub is None and body_version in path.rt.versions:
                return  # another served version of the same kind; conversion is identity
            raise bad_request(f"the API version in the data ({api_version}) does not match the "
                              f"expected API version ({group + '/' if group else ''}{version})")

    @staticmethod
    def dry_run(request: web.Request) -> bool:
        return parse_dry_run(request.query.getall("dryRun", []))

    @staticmethod
    def field_validation(request: web.Request, options_kind: str) -> str | None:
        value = request.query.get("fieldValidation") or None
        if value not in (None, "Ignore", "Warn", "Strict"):
            raise ApiError(422, "Invalid", f'{options_kind}.meta.k8s.io "" is invalid: '
                           f'fieldValidation: Unsupported value: "{value}": supported values: '
                           '"Ignore", "Strict", "Warn"')
        return value

    async def create(self, request: web.Request, path: ResourcePath) -> web.Response:
        body = await self.read_object(request, path)
        if path.rt.group in auth.REVIEW_GROUPS:
            return json_response(auth.review(self.cluster, request[USER_KEY] or {}, path.rt,
                                             path.namespace, body), 201)
        if path.sub == "token":
            return json_response(auth.token_request(self.cluster, path.namespace, path.name, body,
                                                    self.dry_run(request)), 201)
        if path.sub is not None:
            body.setdefault("metadata", {}).setdefault("name", path.name)
        self.store.take_warnings()
        created = self.store.create(path.group, path.rt.plural, path.namespace, body,
                                    dry_run=self.dry_run(request), subresource=path.sub,
                                    field_validation=self.field_validation(request,
                                                                           "CreateOptions"),
                                    field_manager=field_manager_of(request))
        if path.sub is not None:
            return json_response(created, 201)
        return self.with_warnings(self.respond_object(request, path, created, 201))

    async def update(self, request: web.Request, path: ResourcePath) -> web.Response:
        body = await self.read_object(request, path)
        meta = body["metadata"]
        if meta.get("name") and meta["name"] != path.name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name "
                              f"on the URL ({path.name})")
        meta["name"] = path.name
        existed = path.sub is not None or self.store.get_or_none(
            path.group, path.rt.plural, path.namespace, path.name) is not None
        self.store.take_warnings()
        user = request[USER_KEY]
        if not existed and path.rt.allow_create_on_update and user is not None and user is not auth.ADMIN_USER:
            # handlers/update.go: an update that creates the object is authorized for create too
            auth.authorize_create(self.cluster, user, path.group, path.rt.plural, path.namespace, path.name)
        updated = self.store.update(path.group, path.rt.plural, path.namespace, path.name, body,
                                    subresource=path.sub, dry_run=self.dry_run(request),
                                    field_validation=self.field_validation(request,
                                                                           "UpdateOptions"),
                                    field_manager=field_manager_of(request))
        if path.sub == "scale":
            return json_response(updated)
        return self.with_warnings(self.respond_object(request, path, updated,
                                                      200 if existed else 201))

    async def patch(self, request: web.Request, path: ResourcePath) -> web.Response:
        query = request.query
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        patch_type = PATCH_TYPES.get(content_type)
        if patch_type == "strategic" and not path.rt.builtin:
            patch_type = None  # custom resources have no strategic merge metadata
        if patch_type is None:
            accepted = [t for t, k in PATCH_TYPES.items() if k and
                        (k != "strategic" or path.rt.builtin)]
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted media "
                           f"types include: {', '.join(accepted)}")
        field_manager = query.get("fieldManager") or None
        force = parse_bool(query.get("force"))
        if patch_type == "apply" and not field_manager:
            raise bad_request("fieldManager is required for apply requests")
        if force and patch_type != "apply":
            raise bad_request("force may not be set for non-apply patch")
        raw = await request.read()
        if patch_type == "apply":
            body = decode_body(raw, "yaml")
        else:
            body = decode_body(raw, "json")
        if patch_type == "json" and not isinstance(body, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        if patch_type != "json" and not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        if patch_type == "apply":
            self.check_kind(body, path)
        existed = patch_type != "apply" or path.sub is not None or self.store.get_or_none(
            path.group, path.rt.plural, path.namespace, path.name) is not None
        self.store.take_warnings()
        user = request[USER_KEY]
        if not existed and user is not None and user is not auth.ADMIN_USER:
            # handlers/patch.go: a patch that creates the object is authorized for create too
            auth.authorize_create(self.cluster, user, path.group, path.rt.plural, path.namespace, path.name)
        patched = self.store.patch(path.group, path.rt.plural, path.namespace, path.name, body,
                                   patch_type, subresource=path.sub,
                                   dry_run=self.dry_run(request),
                                   field_manager=field_manager or field_manager_of(request),
                                   force=force,
                                   field_validation=self.field_validation(request,
                                                                          "PatchOptions"),
                                   version=path.version)
        if path.sub == "scale":
            return json_response(patched)
        return self.with_warnings(self.respond_object(request, path, patched,
                                                      200 if existed else 201))

    def with_warnings(self, response: web.Response) -> web.Response:
        """fieldValidation=Warn findings as `Warning: 299 - "..."` headers
        (apiserver pkg/endpoints/handlers/... warning.AddWarning, strconv.Quote'd)."""
        for text in self.store.take_warnings():
            response.headers.add("Warning", "299 - " + json.dumps(text))
        return response

    async def delete_options(self, request: web.Request) -> dict:
        """DeleteOptions from the body merged over the query parameters."""
        query = request.query
        opts: dict = {}
        if query.get("propagationPolicy"):
            opts["propagationPolicy"] = query["propagationPolicy"]
        if query.get("gracePeriodSeconds"):
            opts["gracePeriodSeconds"] = parse_int(query, "gracePeriodSeconds")
        if "orphanDependents" in query:
            opts["orphanDependents"] = parse_bool(query.get("orphanDependents"))
        dry = query.getall("dryRun", [])
        if dry:
            opts["dryRun"] = dry
        raw = await request.read()
        if raw.strip():
            body = decode_body(raw, request.content_type or "")
            if body is not None:
                if not isinstance(body, dict):
                    raise bad_request("DeleteOptions must be a JSON object")
                opts.update({k: v for k, v in body.items() if k not in ("kind", "apiVersion")})
        policy = opts.get("propagationPolicy")
        if opts.get("orphanDependents") is not None:
            if policy:
                raise ApiError(422, "Invalid", "DeleteOptions.meta.k8s.io \"\" is invalid: "
                               "propagationPolicy: Invalid value: \"" + policy + "\": orphanDependents "
                               "and deletionPropagation cannot be both set")
            opts["propagationPolicy"] = "Orphan" if opts["orphanDependents"] else "Background"
        if opts.get("propagationPolicy") not in (None, "Orphan", "Background", "Foreground"):
            raise ApiError(422, "Invalid",
                           "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: "
                           f"Unsupported value: \"{opts['propagationPolicy']}\": supported values: "
                           "\"Foreground\", \"Background\", \"Orphan\", \"nil\"")
        dry = opts.get("dryRun") or []
        opts["dryRun"] = parse_dry_run(dry if isinstance(dry, list) else [dry])
        return opts

    async def delete(self, request: web.Request, path: ResourcePath) -> web.Response:
        opts = await self.delete_options(request)
        result, gone = self.store.delete_with_status(
            path.group, path.rt.plural, path.namespace, path.name,
            propagation_policy=opts.get("propagationPolicy"),
            preconditions=opts.get("preconditions") or None, dry_run=opts["dryRun"],
            grace_period_seconds=opts.get("gracePeriodSeconds"))
        # kube-apiserver answers 202 only for a pending deletion that explicitly asked for
        # orphanDependents=false; every other delete is 200 (kept for old clients).
        status = 202 if not gone and opts.get("orphanDependents") is False else 200
        if isinstance(result, dict) and result.get("kind") == path.rt.kind:
            return self.respond_object(request, path, result, status)
        return json_response(result, status)

    async def delete_collection(self, request: web.Request, path: ResourcePath) -> web.Response:
        opts = await self.delete_options(request)
        query = request.query
        result = self.store.delete_collection(
            path.group, path.rt.plural, path.namespace,
            label_selector=query.get("labelSelector") or None,
            field_selector=query.get("fieldSelector") or None,
            dry_run=opts["dryRun"], propagation_policy=opts.get("propagationPolicy"))
        if isinstance(result, dict):
            result["items"] = [self.convert(o, path) for o in result.get("items") or []]
            return json_response(result)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success"})

    # -- watch ------------------------------------------------------------------------------
    async def watch(self, request: web.Request, path: ResourcePath) -> web.StreamResponse:
        query = request.query
        if parse_bool(query.get("sendInitialEvents")):
            raise ApiError(422, "Invalid",
                           "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: "
                           "sendInitialEvents is forbidden for watch unless the WatchList "
                           "feature gate is enabled")
        field_selector = query.get("fieldSelector") or None
        if path.name is not None:
            by_name = f"metadata.name={path.name}"
            field_selector = f"{by_name},{field_selector}" if field_selector else by_name
        timeout = parse_int(query, "timeoutSeconds")
        timeout = float(timeout) if timeout and timeout > 0 else DEFAULT_WATCH_TIMEOUT
        bookmarks = parse_bool(query.get("allowWatchBookmarks"))
        form = parse_accept(request.headers.get("Accept"))
        include = query.get("includeObject", "Metadata")

        expired = None
        try:
            stream = self.store.watch(path.group, path.rt.plural, path.namespace,
                                      resource_version=query.get("resourceVersion") or None,
                                      label_selector=query.get("labelSelector") or None,
                                      field_selector=field_selector, version=path.version)
        except ApiError as err:
            if err.code != 410:
                raise
            stream, expired = None, err

        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if expired is not None:
            # The real server reports an expired resourceVersion inside the stream.
            await response.write(dumps({"type": "ERROR", "object": expired.status()}) + b"\n")
            await response.write_eof()
            return response

        encoder = WatchEncoder(self, path, form, include, bookmarks)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A watch shorter than the interval gets only the bookmark sent when it times out.
        next_bookmark = loop.time() + (BOOKMARK_INTERVAL if BOOKMARK_INTERVAL < timeout
                                       else float("inf"))
        pending: asyncio.Future | None = None
        try:
            while not stream.closed or stream.pending():
                now = loop.time()
                if now >= deadline:
                    # Like the watch cache: a last bookmark, then whatever is queued, then EOF.
                    if bookmarks:
                        stream.bookmark()
                    if pending is not None and pending.done() and not pending.cancelled():
                        await self.write_event(response, encoder, pending)
                        pending = None
                    while (event := stream.get_nowait()) is not None:
                        await response.write(encoder.line(event))
                    break
                if request.transport is None or request.transport.is_closing():
                    break
                if bookmarks and now >= next_bookmark:
                    stream.bookmark()
                    next_bookmark = now + BOOKMARK_INTERVAL
                if pending is None:
                    pending = asyncio.ensure_future(stream.__anext__())
                wake = min(deadline, now + DISCONNECT_POLL)
                if bookmarks:
                    wake = min(wake, next_bookmark)
                done, _ = await asyncio.wait({pending}, timeout=max(wake - now, 0.0))
                if not done:
                    continue
                task, pending = pending, None
                if not await self.write_event(response, encoder, task):
                    break
        except ConnectionResetError:
            pass  # the client went away; the finally clause releases the store watch
        finally:  # also on cancellation (server shutdown), which then propagates
            if pending is not None:
                pending.cancel()
            stream.close()
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    @staticmethod
    async def write_event(response, encoder: "WatchEncoder", task) -> bool:
        """Write the event a finished __anext__ produced; False when the stream is over."""
        try:
            event = task.result()
        except StopAsyncIteration:
            return False
        line = encoder.line(event)
        if line:
            await response.write(line)
        return event.get("type") != "ERROR"


class WatchEncoder:
    """Renders store watch events in the representation the watch client asked for."""

    def __init__(self, api: ClusterApi, path: ResourcePath, form: str, include: str,
                 bookmarks: bool):
        self.api, self.path, self.form = api, path, form
        self.include, self.bookmarks = include, bookmarks
        self.table = (TableConverter(path.rt, path.version, api.store.clock.now())
                      if form.startswith("table") else None)
        self.first_table = True

    def line(self, event: dict) -> bytes:
        etype, obj = event.get("type"), event.get("object") or {}
        if etype == "ERROR":
            return dumps(event) + b"\n"
        rv = (obj.get("metadata") or {}).get("resourceVersion", "")
        if etype == "BOOKMARK":
            if not self.bookmarks:
                return b""
            if self.table is not None:
                obj = {"kind": "Table", "apiVersion": table_api_version(self.form),
                       "metadata": {"resourceVersion": rv}, "columnDefinitions": [], "rows": []}
            elif self.form == "partial":
                obj = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": {"resourceVersion": rv}}
            else:
                obj = {"kind": self.path.rt.kind,
                       "apiVersion": self.path.rt.api_version_for(self.path.version),
                       "metadata": {"resourceVersion": rv, "creationTimestamp": None}}
            return dumps({"type": etype, "object": obj}) + b"\n"
        obj = self.api.convert(obj, self.path)
        if self.table is not None:
            # Each event is a one-row Table; only the first carries the column definitions.
            self.table.now = self.api.store.clock.now()  # ages as of this event
            obj = self.table.table([obj], self.include, table_api_version(self.form),
                                   {"resourceVersion": rv}, with_columns=self.first_table)
            self.first_table = False
        elif self.form == "partial":
            obj = partial_metadata(obj)
        return dumps({"type": etype, "object": obj}) + b"\n"


def table_api_version(form: str) -> str:
    return "meta.k8s.io/v1beta1" if form == "table-v1beta1" else "meta.k8s.io/v1"


CLUSTER_KEY = web.AppKey("fleetdr_cluster", object)
USER_KEY = web.RequestKey("fleetdr_user", object)  # the authenticated (or impersonated) user
API_KEY = web.AppKey("fleetdr_api", ClusterApi)


def make_app(cluster) -> web.Application:
    """The aiohttp application serving `cluster`'s API (the daemon adds TLS and the port)."""
    api = ClusterApi(cluster)
    app = web.Application(middlewares=[api.middleware], client_max_size=MAX_BODY)
    app[CLUSTER_KEY] = cluster
    app[API_KEY] = api
    app.on_response_prepare.append(api.on_prepare)
    app.router.add_route("*", "/{tail:.*}", api.dispatch)
    return app
