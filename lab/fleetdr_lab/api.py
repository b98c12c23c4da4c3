"""The HTTP API of one emulated cluster, as unmodified Kubernetes clients see it.

`make_app(cluster)` returns an aiohttp application that the daemon serves over TLS. It speaks
the kube-apiserver's REST dialect: discovery, the verbs over /api and /apis paths, the four
patch types, watch streams, Table output for kubectl, bearer-token auth, Status errors and the
per-cluster faults. All object semantics live in the Store; this module only translates HTTP.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import re
import uuid
from datetime import datetime, timezone

import yaml
from aiohttp import web

from .registry import SUBRESOURCE_KINDS
from .store import ApiError

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


def decode_body(raw: bytes, content_type: str):
    if "protobuf" in content_type:
        return decode_protobuf(raw)
    if not raw:
        raise bad_request("the body of the request was empty")
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


# ---- protobuf request bodies ------------------------------------------------------------
# kubectl's typed clients (create namespace/configmap/secret/deployment/job/cronjob/service,
# run, drain) send built-in objects as Kubernetes protobuf: b"k8s\0" + runtime.Unknown whose
# `raw` is the object's message. The lab decodes the messages those commands produce, from the
# field numbers of k8s.io/api's generated.proto; a field outside these tables is refused (415)
# rather than silently dropped. Type codes: string, bytes, int, bool, Time, Quantity,
# IntOrString, map:<value type>, a message name; "[" = repeated; "?" = a pointer field whose
# zero value is meaningful (Go marshals non-pointer zero values, JSON omits them).

PROTO_MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "rawbytes"),
                3: ("contentEncoding", "string"), 4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {1: ("name", "string"), 2: ("generateName", "string"),
                   3: ("namespace", "string"), 4: ("selfLink", "string"), 5: ("uid", "string"),
                   6: ("resourceVersion", "string"), 7: ("generation", "int"),
                   8: ("creationTimestamp", "Time"), 9: ("deletionTimestamp", "Time"),
                   10: ("deletionGracePeriodSeconds", "int?"), 11: ("labels", "map:string"),
                   12: ("annotations", "map:string"),
                   13: ("ownerReferences", "[OwnerReference"), 14: ("finalizers", "[string"),
                   17: ("managedFields", "skip")},
    "OwnerReference": {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                       5: ("apiVersion", "string"), 6: ("controller", "bool?"),
                       7: ("blockOwnerDeletion", "bool?")},
    "LabelSelector": {1: ("matchLabels", "map:string"),
                      2: ("matchExpressions", "[LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"),
                                 3: ("values", "[string")},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int?"), 2: ("preconditions", "Preconditions"),
                      3: ("orphanDependents", "bool?"), 4: ("propagationPolicy", "string"),
                      5: ("dryRun", "[string")},
    "Preconditions": {1: ("uid", "string"), 2: ("resourceVersion", "string")},
    "ObjectReference": {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string"),
                        4: ("uid", "string"), 5: ("apiVersion", "string"),
                        6: ("resourceVersion", "string"), 7: ("fieldPath", "string")},
    "LocalObjectReference": {1: ("name", "string")},
    # core/v1
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"),
                  3: ("status", "skip")},
    "NamespaceSpec": {1: ("finalizers", "[string")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:string"),
                  3: ("binaryData", "map:bytes"), 4: ("immutable", "bool?")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:bytes"), 3: ("type", "string"),
               4: ("stringData", "map:string"), 5: ("immutable", "bool?")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "[ObjectReference"),
                       3: ("imagePullSecrets", "[LocalObjectReference"),
                       4: ("automountServiceAccountToken", "bool?")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec"), 3: ("status", "skip")},
    "ServiceSpec": {1: ("ports", "[ServicePort"), 2: ("selector", "map:string"),
                    3: ("clusterIP", "string"), 4: ("type", "string"),
                    5: ("externalIPs", "[string"), 7: ("sessionAffinity", "string"),
                    10: ("externalName", "string"), 18: ("clusterIPs", "[string")},
    "ServicePort": {1: ("name", "string"), 2: ("protocol", "string"), 3: ("port", "int"),
                    4: ("targetPort", "IntOrString"), 5: ("nodePort", "int"),
                    6: ("appProtocol", "string?")},
    "Pod": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec"), 3: ("status", "skip")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {2: ("containers", "[Container"), 3: ("restartPolicy", "string"),
                4: ("terminationGracePeriodSeconds", "int?"), 6: ("dnsPolicy", "string"),
                7: ("nodeSelector", "map:string"), 8: ("serviceAccountName", "string"),
                10: ("nodeName", "string"), 15: ("imagePullSecrets", "[LocalObjectReference"),
                20: ("initContainers", "[Container")},
    "Container": {1: ("name", "string"), 2: ("image", "string"), 3: ("command", "[string"),
                  4: ("args", "[string"), 5: ("workingDir", "string"),
                  6: ("ports", "[ContainerPort"), 7: ("env", "[EnvVar"),
                  8: ("resources", "ResourceRequirements"),
                  13: ("terminationMessagePath", "string"), 14: ("imagePullPolicy", "string"),
                  16: ("stdin", "bool"), 17: ("stdinOnce", "bool"), 18: ("tty", "bool"),
                  20: ("terminationMessagePolicy", "string")},
    "ContainerPort": {1: ("name", "string"), 2: ("hostPort", "int"),
                      3: ("containerPort", "int"), 4: ("protocol", "string"),
                      5: ("hostIP", "string")},
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "ResourceRequirements": {1: ("limits", "map:Quantity"), 2: ("requests", "map:Quantity")},
    # apps/v1, batch/v1, policy/v1
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec"),
                   3: ("status", "skip")},
    "DeploymentSpec": {1: ("replicas", "int?"), 2: ("selector", "LabelSelector"),
                       3: ("template", "PodTemplateSpec"), 4: ("strategy", "DeploymentStrategy"),
                       5: ("minReadySeconds", "int"), 6: ("revisionHistoryLimit", "int?"),
                       7: ("paused", "bool"), 9: ("progressDeadlineSeconds", "int?")},
    "DeploymentStrategy": {1: ("type", "string")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec"), 3: ("status", "skip")},
    "JobSpec": {1: ("parallelism", "int?"), 2: ("completions", "int?"),
                3: ("activeDeadlineSeconds", "int?"), 4: ("selector", "LabelSelector"),
                5: ("manualSelector", "bool?"), 6: ("template", "PodTemplateSpec"),
                7: ("backoffLimit", "int?"), 8: ("ttlSecondsAfterFinished", "int?"),
                9: ("completionMode", "string?"), 10: ("suspend", "bool?")},
    "CronJob": {1: ("metadata", "ObjectMeta"), 2: ("spec", "CronJobSpec"), 3: ("status", "skip")},
    "CronJobSpec": {1: ("schedule", "string"), 2: ("startingDeadlineSeconds", "int?"),
                    3: ("concurrencyPolicy", "string"), 4: ("suspend", "bool?"),
                    5: ("jobTemplate", "JobTemplateSpec"),
                    6: ("successfulJobsHistoryLimit", "int?"),
                    7: ("failedJobsHistoryLimit", "int?"), 8: ("timeZone", "string?")},
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec")},
    "Eviction": {1: ("metadata", "ObjectMeta"), 2: ("deleteOptions", "DeleteOptions")},
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule")},
    "PolicyRule": {1: ("verbs", "[string"), 2: ("apiGroups", "[string"),
                   3: ("resources", "[string"), 4: ("resourceNames", "[string"),
                   5: ("nonResourceURLs", "[string")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject"),
                    3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject"),
                           3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"),
                4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
}
PROTO_KINDS = ("Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Pod",
               "Deployment", "Job", "CronJob", "Eviction", "DeleteOptions", "Role",
               "ClusterRole", "RoleBinding", "ClusterRoleBinding")
PROTO_MAGIC = b"k8s\x00"


class ProtobufError(Exception):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of one message; value is int or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
            if len(value) != length:
                raise ProtobufError("truncated field")
        elif wire == 1:
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        yield number, wire, value


def _scalar(type_: str, value, message: str, name: str):
    import base64
    if type_ == "string":
        return value.decode()
    if type_ in ("bytes",):
        return base64.b64encode(value).decode()
    if type_ == "rawbytes":
        return value
    if type_ == "int":
        return value - (1 << 64) if value >= 1 << 63 else value
    if type_ == "bool":
        return bool(value)
    if type_ == "Time":
        seconds = next((v for n, _, v in _fields(value) if n == 1), 0)
        if not seconds:
            return None
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if type_ == "Quantity":
        return next((v.decode() for n, _, v in _fields(value) if n == 1), "")
    if type_ == "IntOrString":
        parts = {n: v for n, _, v in _fields(value)}
        return parts.get(3, b"").decode() if parts.get(1) == 1 else parts.get(2, 0)
    if type_ in PROTO_MESSAGES:
        return _message(type_, value)
    raise ProtobufError(f"{message}.{name}: unsupported type {type_}")


def _all_zero(wire: int, value) -> bool:
    """True for a zero scalar, or an (embedded message) made only of zero fields."""
    if wire != 2:
        return value == 0
    if not value:
        return True
    try:
        return all(_all_zero(w, v) for _, w, v in _fields(value))
    except ProtobufError:
        return False


def _zero(value) -> bool:
    return value in (None, "", 0, False, b"") or value == {} or value == []


def _message(message: str, data: bytes) -> dict:
    schema = PROTO_MESSAGES[message]
    out: dict = {}
    for number, wire, value in _fields(data):
        if number not in schema:
            # Go marshals every non-pointer field, so unmodelled fields arrive empty; only a
            # field that carries a value would be lost.
            if _all_zero(wire, value):
                continue
            raise ProtobufError(f"field {number} of {message} is not understood by the lab")
        name, type_ = schema[number]
        if type_ == "skip":
            continue
        pointer, repeated = type_.endswith("?"), type_.startswith("[")
        type_ = type_.strip("[?")
        if type_.startswith("map:"):
            entry = {n: v for n, _, v in _fields(value)}
            key = entry.get(1, b"").decode()
            out.setdefault(name, {})[key] = _scalar(type_[4:], entry.get(2, b""), message, name)
            continue
        if repeated and wire == 2 and type_ == "int":  # packed repeated varints
            raise ProtobufError(f"{message}.{name}: packed fields are not supported")
        decoded = _scalar(type_, value, message, name)
        if repeated:
            out.setdefault(name, []).append(decoded)
        elif pointer or not _zero(decoded):
            out[name] = decoded
    return out


def decode_protobuf(raw: bytes) -> dict:
    """A built-in object from a Kubernetes protobuf body, as the JSON the client meant."""
    if not raw.startswith(PROTO_MAGIC):
        raise bad_request("protobuf body without the k8s envelope")
    try:
        unknown = _message("Unknown", raw[len(PROTO_MAGIC):])
        type_meta = unknown.get("typeMeta") or {}
        kind = type_meta.get("kind", "")
        if kind not in PROTO_KINDS:
            raise ProtobufError(f"protobuf bodies of kind {kind or '?'} are not supported")
        obj = _message(kind, unknown.get("raw") or b"")
    except ProtobufError as exc:
        raise ApiError(415, "UnsupportedMediaType",
                       f"fleetdr-lab could not decode the protobuf body ({exc}); "
                       "send application/json") from None
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}


# ---- age and Table helpers ------------------------------------------------------------------

def parse_time(value: str | None) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """The apimachinery HumanDuration rendering kubectl shows in AGE columns."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


_JSONPATH_STEP = re.compile(
    r"""\.(?P<key>(?:[^.\[\\]|\\.)+)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[\?\(@\.(?P<fkey>[\w.-]+)\s*==\s*(?P<q>["'])(?P<fval>.*?)(?P=q)\)\]"""
    r"""|\[['"](?P<qkey>[^'"]+)['"]\]"""
)


def jsonpath_value(obj, path: str):
    """Evaluate the simple JSONPaths printer columns use (.a.b, [0], [?(@.k=="v")])."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    pos, current = 0, [obj]
    while pos < len(path):
        m = _JSONPATH_STEP.match(path, pos)
        if not m:
            return None
        pos = m.end()
        nxt = []
        for item in current:
            if m.group("key") is not None or m.group("qkey") is not None:
                key = m.group("qkey") or m.group("key").replace("\\.", ".")
                if isinstance(item, dict) and key in item:
                    nxt.append(item[key])
            elif m.group("index") is not None:
                i = int(m.group("index"))
                if isinstance(item, list) and -len(item) <= i < len(item):
                    nxt.append(item[i])
            else:
                if isinstance(item, list):
                    nxt.extend(e for e in item if isinstance(e, dict)
                               and str(e.get(m.group("fkey"))) == m.group("fval"))
        current = nxt
        if not current:
            return None
    return current[0] if current else None


def _col(name: str, type_: str = "string", fmt: str = "", description: str = "",
         priority: int = 0) -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description,
            "priority": priority}


NAME_COLUMN = _col("Name", "string", "name",
                   "Name must be unique within a namespace. Is required when creating "
                   "resources, although some resources may allow a client to request the "
                   "generation of an appropriate name automatically.")
AGE_COLUMN = _col("Age", "string", "",
                  "CreationTimestamp is a timestamp representing the server time when this "
                  "object was created.")


def _access_modes(modes) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes or [])


def _pod_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for c in statuses:
        state = c.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason") and reason != "Completed":
            reason = state["terminated"]["reason"]
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [f"{ready}/{total}", reason, str(restarts), age,
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>",
            f"{len(gates)}/{len(gates)}" if gates else "<none>"]


def _deployment_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}",
            int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0),
            age, ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers),
            _selector_string((spec.get("selector") or {}))]


def _selector_string(selector: dict) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _node_cells(obj, age):
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True"
                                             else "NotReady")
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [state, ",".join(roles) or "<none>", age, info.get("kubeletVersion", ""),
            addresses.get("InternalIP", "<none>"), addresses.get("ExternalIP", "<none>"),
            info.get("osImage", ""), info.get("kernelVersion", ""),
            info.get("containerRuntimeVersion", "")]


def _pvc_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    return [phase, spec.get("volumeName") or "",
            (status.get("capacity") or {}).get("storage", ""),
            _access_modes(status.get("accessModes")), spec.get("storageClassName") or "",
            spec.get("volumeAttributesClassName") or "<unset>", age,
            spec.get("volumeMode") or "Filesystem"]


def _pv_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    claim = spec.get("claimRef") or {}
    return [(spec.get("capacity") or {}).get("storage", ""), _access_modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy") or "", status.get("phase") or "",
            f"{claim['namespace']}/{claim['name']}" if claim.get("name") else "",
            spec.get("storageClassName") or "", spec.get("volumeAttributesClassName") or "<unset>",
            status.get("reason") or "", age, spec.get("volumeMode") or "Filesystem"]


def _service_cells(obj, age):
    spec = obj.get("spec") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = [i.get("ip") or i.get("hostname") for i in ingress] + list(spec.get("externalIPs") or [])
    ports = []
    for p in spec.get("ports") or []:
        s = str(p.get("port"))
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        ports.append(f"{s}/{p.get('protocol', 'TCP')}")
    svc_type = spec.get("type") or "ClusterIP"
    ext = ",".join(e for e in external if e) or ("<pending>" if svc_type == "LoadBalancer"
                                                 else "<none>")
    return [svc_type, spec.get("clusterIP") or "<none>", ext, ",".join(ports) or "<none>", age,
            _selector_string({"matchLabels": spec.get("selector") or {}})]


def _replicated_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}", age]


def _replicaset_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [int(spec.get("replicas", 1)), int(status.get("replicas") or 0),
            int(status.get("readyReplicas") or 0), age]


def _daemonset_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [int(status.get(k) or 0) for k in ("desiredNumberScheduled", "currentNumberScheduled",
                                              "numberReady", "updatedNumberScheduled",
                                              "numberAvailable")] + [
        ",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or "<none>", age]


def _job_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    state = ("Complete" if conditions.get("Complete") == "True"
             else "Failed" if conditions.get("Failed") == "True" else "Running")
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = human_duration((end - start).total_seconds()) if start and end else ""
    return [state, f"{status.get('succeeded') or 0}/{spec.get('completions', 1)}", duration, age]


def _cronjob_cells(obj, age, now=None):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    last = parse_time(status.get("lastScheduleTime"))
    return [spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            bool(spec.get("suspend", False)), len(status.get("active") or []),
            "<none>" if last is None or now is None
            else human_duration((now - last).total_seconds()), age]


def _event_cells(obj, age, now=None):
    involved = obj.get("involvedObject") or {}
    source = obj.get("source") or {}
    last = parse_time(obj.get("lastTimestamp") or obj.get("eventTime")
                      or (obj.get("metadata") or {}).get("creationTimestamp"))
    first = parse_time(obj.get("firstTimestamp") or obj.get("eventTime"))

    def since(ts):
        return "<unknown>" if ts is None or now is None else human_duration(
            (now - ts).total_seconds())

    origin = ", ".join(v for v in (source.get("component") or obj.get("reportingComponent"),
                                   source.get("host")) if v)
    return [since(last), obj.get("type", ""), obj.get("reason", ""),
            f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}",
            involved.get("fieldPath", ""), origin, obj.get("message", ""), since(first),
            str(obj.get("count") or 1), (obj.get("metadata") or {}).get("name", "")]


def _serviceaccount_cells(obj, age):
    return [len(obj.get("secrets") or []), age]


def _endpoints_cells(obj, age):
    addresses = []
    for subset in obj.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for addr in subset.get("addresses") or []:
            addresses += [f"{addr.get('ip')}:{p}" if p else addr.get("ip") for p in ports]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..."
                                      if len(addresses) > 3 else "")
    return [shown or "<none>", age]


def _role_cells(obj, age):
    return [(obj.get("metadata") or {}).get("creationTimestamp", "")]


def _rolebinding_cells(obj, age):
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def of(kind):
        return ",".join(
            (f"{s.get('namespace')}/{s.get('name')}" if kind == "ServiceAccount"
             else s.get("name", "")) for s in subjects if s.get("kind") == kind)
    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", age, of("User"), of("Group"),
            of("ServiceAccount")]


def _lease_cells(obj, age):
    return [(obj.get("spec") or {}).get("holderIdentity") or "", age]


def _namespace_cells(obj, age):
    return [(obj.get("status") or {}).get("phase") or "Active", age]


def _configmap_cells(obj, age):
    return [len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), age]


def _secret_cells(obj, age):
    return [obj.get("type") or "Opaque", len(obj.get("data") or {}), age]


def _storageclass_cells(obj, age):
    return [obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate",
            bool(obj.get("allowVolumeExpansion", False)), age]


# (group, plural) -> (columns after Name, cell function)
BUILTIN_TABLES = {
    ("", "pods"): ([_col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
                    _col("Status", description="The aggregate status of the containers in this pod."),
                    _col("Restarts", description="The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
                    AGE_COLUMN,
                    _col("IP", priority=1), _col("Node", priority=1),
                    _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)],
                   _pod_cells),
    ("apps", "deployments"): ([_col("Ready", description="Number of the pod with ready state"),
                               _col("Up-to-date", "integer", description="Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                               _col("Available", "integer", description="Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                               AGE_COLUMN, _col("Containers", priority=1),
                               _col("Images", priority=1), _col("Selector", priority=1)],
                              _deployment_cells),
    ("apps", "statefulsets"): ([_col("Ready", description="Number of the pod with ready state"),
                                AGE_COLUMN], _replicated_cells),
    ("apps", "replicasets"): ([_col("Desired", "integer"), _col("Current", "integer"),
                               _col("Ready", "integer"), AGE_COLUMN], _replicaset_cells),
    ("apps", "daemonsets"): ([_col("Desired", "integer"), _col("Current", "integer"),
                              _col("Ready", "integer"), _col("Up-to-date", "integer"),
                              _col("Available", "integer"), _col("Node Selector"), AGE_COLUMN],
                             _daemonset_cells),
    ("batch", "jobs"): ([_col("Status"), _col("Completions"), _col("Duration"), AGE_COLUMN],
                        _job_cells),
    ("batch", "cronjobs"): ([_col("Schedule"), _col("Timezone"), _col("Suspend", "boolean"),
                             _col("Active", "integer"), _col("Last Schedule"), AGE_COLUMN],
                            _cronjob_cells),
    ("", "events"): ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"),
                      _col("Subobject", priority=1), _col("Source", priority=1),
                      _col("Message"), _col("First Seen", priority=1),
                      _col("Count", priority=1), _col("Name", fmt="name", priority=1)],
                     _event_cells),
    ("", "serviceaccounts"): ([_col("Secrets", "integer"), AGE_COLUMN], _serviceaccount_cells),
    ("", "endpoints"): ([_col("Endpoints"), AGE_COLUMN], _endpoints_cells),
    ("coordination.k8s.io", "leases"): ([_col("Holder"), AGE_COLUMN], _lease_cells),
    ("rbac.authorization.k8s.io", "roles"): ([_col("Created At", "date")], _role_cells),
    ("rbac.authorization.k8s.io", "clusterroles"): ([_col("Created At", "date")], _role_cells),
    ("rbac.authorization.k8s.io", "rolebindings"): (
        [_col("Role"), AGE_COLUMN, _col("Users", priority=1), _col("Groups", priority=1),
         _col("ServiceAccounts", priority=1)], _rolebinding_cells),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): (
        [_col("Role"), AGE_COLUMN, _col("Users", priority=1), _col("Groups", priority=1),
         _col("ServiceAccounts", priority=1)], _rolebinding_cells),
    ("", "nodes"): ([_col("Status", description="The status of the node"),
                     _col("Roles", description="The roles of the node"), AGE_COLUMN,
                     _col("Version", description="Kubelet Version reported by the node."),
                     _col("Internal-IP", priority=1), _col("External-IP", priority=1),
                     _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
                     _col("Container-Runtime", priority=1)], _node_cells),
    ("", "persistentvolumeclaims"): ([_col("Status"), _col("Volume"), _col("Capacity"),
                                      _col("Access Modes"), _col("StorageClass"),
                                      _col("VolumeAttributesClass"), AGE_COLUMN,
                                      _col("VolumeMode", priority=1)], _pvc_cells),
    ("", "persistentvolumes"): ([_col("Capacity"), _col("Access Modes"), _col("Reclaim Policy"),
                                 _col("Status"), _col("Claim"), _col("StorageClass"),
                                 _col("VolumeAttributesClass"), _col("Reason"), AGE_COLUMN,
                                 _col("VolumeMode", priority=1)], _pv_cells),
    ("", "services"): ([_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                        AGE_COLUMN, _col("Selector", priority=1)], _service_cells),
    ("", "namespaces"): ([_col("Status", description="The status of the namespace"),
                          AGE_COLUMN], _namespace_cells),
    ("", "configmaps"): ([_col("Data", "integer"), AGE_COLUMN], _configmap_cells),
    ("", "secrets"): ([_col("Type"), _col("Data", "integer"), AGE_COLUMN], _secret_cells),
    ("storage.k8s.io", "storageclasses"): ([_col("Provisioner"), _col("ReclaimPolicy"),
                                            _col("VolumeBindingMode"),
                                            _col("AllowVolumeExpansion"), AGE_COLUMN],
                                           _storageclass_cells),
}


def _json_cell(type_: str, value, now: datetime):
    """apiextensions' cellForJSONValue: CRD printer column values by declared type."""
    if value is None:
        return None
    if type_ == "string":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if type_ == "integer":
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if type_ == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if type_ == "date":
        ts = parse_time(value)
        return "<invalid>" if ts is None else human_duration((now - ts).total_seconds())
    return None


class TableConverter:
    """Builds meta.k8s.io Tables the way kube-apiserver's printers do for kubectl."""

    def __init__(self, rt, version: str, now: datetime):
        self.rt, self.now = rt, now
        self.custom = None
        if (rt.group, rt.plural) in BUILTIN_TABLES:
            columns, cells = BUILTIN_TABLES[(rt.group, rt.plural)]
            self.columns = [NAME_COLUMN] + columns
            self.cells = cells
            if cells in (_cronjob_cells, _event_cells):  # more ages on the lab clock
                self.cells = lambda obj, age: cells(obj, age, self.now)
            if cells is _event_cells:  # kubectl shows events without a leading NAME
                self.columns = columns
        elif not rt.builtin:
            printers = rt.printer_columns.get(version) or []
            if not printers:  # what the CRD server serves when the CRD declares none
                printers = [{"name": "Age", "type": "date",
                             "jsonPath": ".metadata.creationTimestamp"}]
            self.custom = printers
            self.columns = [NAME_COLUMN] + [
                _col(p["name"], p.get("type", "string"), p.get("format", ""),
                     p.get("description", ""), int(p.get("priority", 0))) for p in printers]
        elif rt.plural == "customresourcedefinitions":  # the default table convertor
            self.columns = [NAME_COLUMN, _col("Created At", "date", description=AGE_COLUMN["description"])]
            self.cells = lambda obj, age: [(obj.get("metadata") or {}).get("creationTimestamp", "")]
        else:
            self.columns = [NAME_COLUMN, AGE_COLUMN]
            self.cells = lambda obj, age: [age]

    def row_cells(self, obj: dict) -> list:
        meta = obj.get("metadata") or {}
        created = parse_time(meta.get("creationTimestamp"))
        age = human_duration((self.now - created).total_seconds()) if created else "<unknown>"
        name = meta.get("name", "")
        if self.custom is not None:
            return [name] + [_json_cell(p.get("type", "string"),
                                        jsonpath_value(obj, p.get("jsonPath", "")), self.now)
                             for p in self.custom]
        if (self.rt.group, self.rt.plural) == ("storage.k8s.io", "storageclasses") and \
                (meta.get("annotations") or {}).get(
                    "storageclass.kubernetes.io/is-default-class") == "true":
            name += " (default)"
        if self.columns[0] is not NAME_COLUMN:
            return self.cells(obj, age)
        return [name] + self.cells(obj, age)

    def table(self, objs: list[dict], include: str, api_version: str,
              list_meta: dict | None = None, with_columns: bool = True) -> dict:
        rows = []
        for obj in objs:
            row = {"cells": self.row_cells(obj)}
            if include == "Object":
                row["object"] = obj
            elif include == "Metadata":
                row["object"] = partial_metadata(obj)
            rows.append(row)
        return {"kind": "Table", "apiVersion": api_version, "metadata": list_meta or {},
                "columnDefinitions": self.columns if with_columns else [], "rows": rows}


def partial_metadata(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}


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
            self.authenticate(request)
            if faults is not None and faults.error_rate and \
                    self.random.random() < faults.error_rate:
                err, headers = fault_error(int(faults.error_code or 500))
                return error_response(err, headers)
            return await handler(request)
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

    def authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization")
        if header is None and request.path.rstrip("/").startswith(PUBLIC_PATHS):
            return  # anonymous, allowed to read public info
        expected = f"Bearer {self.cluster.token}"
        if header is None or not hmac.compare_digest(header.encode(), expected.encode()):
            raise ApiError(401, "Unauthorized", "Unauthorized")

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
        """Just enough OpenAPI v3 for kubectl to see that the server validates fields itself.

        kubectl asks /openapi/v3 for each kind's PATCH operation and, when it lists the
        `fieldValidation` parameter, leaves schema validation to the server instead of
        downloading /openapi/v2 (which the lab does not serve). PATCH operations declare no
        request body, so kubectl apply computes strategic merge patches from its built-in
        types, as it does when a server's schema lacks them.
        """
        self.require_get(request)
        if parts == ["v3"]:
            paths = {}
            for g in self.store.registry.groups():
                for v in g["versions"]:
                    key = f"apis/{g['name']}/{v}" if g["name"] else f"api/{v}"
                    paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}"}
            return json_response({"paths": paths})
        if len(parts) >= 3 and parts[0] == "v3" and (parts[1] == "api" and len(parts) == 3 or
                                                     parts[1] == "apis" and len(parts) == 4):
            group = parts[2] if parts[1] == "apis" else ""
            version = parts[-1]
            rts = self.store.registry.resources(group, version)
            if not rts:
                raise not_found()
            return json_response(self.openapi_gv(group, version, rts))
        raise not_found()

    @staticmethod
    def openapi_gv(group: str, version: str, rts) -> dict:
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        params = [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                  for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
        paths = {}
        for rt in rts:
            gvk = {"group": group, "version": version, "kind": rt.kind}
            base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced \
                else f"{prefix}/{rt.plural}"
            paths[base + "/{name}"] = {
                "get": {"operationId": f"read{rt.kind}",
                        "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk},
                "patch": {"operationId": f"patch{rt.kind}", "parameters": params,
                          "x-kubernetes-action": "patch",
                          "x-kubernetes-group-version-kind": gvk},
            }
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.4"},
                "paths": paths, "components": {"schemas": {}}}

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
        """Objects are served in the version the request names (CRD conversion `None`)."""
        rt = path.rt
        if isinstance(obj, dict) and obj.get("kind") == rt.kind:
            want = rt.api_version_for(path.version)
            if obj.get("apiVersion") != want:
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
        if path.sub in ("binding", "eviction"):
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
        if path.sub is not None:
            body.setdefault("metadata", {}).setdefault("name", path.name)
        created = self.store.create(path.group, path.rt.plural, path.namespace, body,
                                    dry_run=self.dry_run(request), subresource=path.sub,
                                    field_validation=self.field_validation(request,
                                                                           "CreateOptions"))
        if path.sub is not None:
            return json_response(created, 201)
        return self.respond_object(request, path, created, 201)

    async def update(self, request: web.Request, path: ResourcePath) -> web.Response:
        body = await self.read_object(request, path)
        meta = body["metadata"]
        if meta.get("name") and meta["name"] != path.name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name "
                              f"on the URL ({path.name})")
        meta["name"] = path.name
        existed = path.sub is not None or self.store.get_or_none(
            path.group, path.rt.plural, path.namespace, path.name) is not None
        updated = self.store.update(path.group, path.rt.plural, path.namespace, path.name, body,
                                    subresource=path.sub, dry_run=self.dry_run(request),
                                    field_validation=self.field_validation(request,
                                                                           "UpdateOptions"))
        if path.sub == "scale":
            return json_response(updated)
        return self.respond_object(request, path, updated, 200 if existed else 201)

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
        patched = self.store.patch(path.group, path.rt.plural, path.namespace, path.name, body,
                                   patch_type, subresource=path.sub,
                                   dry_run=self.dry_run(request),
                                   field_manager=field_manager, force=force,
                                   field_validation=self.field_validation(request,
                                                                          "PatchOptions"))
        if path.sub == "scale":
            return json_response(patched)
        return self.respond_object(request, path, patched, 200 if existed else 201)

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
