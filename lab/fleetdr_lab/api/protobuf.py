"""Kubernetes protobuf request bodies (what kubectl's typed clients send), decoded to JSON dicts."""
from __future__ import annotations

import base64
from datetime import datetime, timezone

from ..store import ApiError, bad_request


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
    # authentication.k8s.io/v1 (kubectl create token, auth whoami)
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec"), 3: ("status", "skip")},
    "TokenRequestSpec": {1: ("audiences", "[string"), 3: ("boundObjectRef", "BoundObjectReference"),
                         4: ("expirationSeconds", "int?")},
    "BoundObjectReference": {1: ("kind", "string"), 2: ("apiVersion", "string"), 3: ("name", "string"),
                             4: ("uid", "string")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta"), 2: ("status", "skip")},
    "TokenReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenReviewSpec"), 3: ("status", "skip")},
    "TokenReviewSpec": {1: ("token", "string"), 2: ("audiences", "[string")},
    # authorization.k8s.io/v1 (kubectl auth can-i)
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectAccessReviewSpec"),
                                3: ("status", "skip")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
                           4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
                           7: ("name", "string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SelfSubjectRulesReviewSpec"),
                               3: ("status", "skip")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string")},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec"),
                            3: ("status", "skip")},
    "LocalSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec"),
                                 3: ("status", "skip")},
    "SubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                2: ("nonResourceAttributes", "NonResourceAttributes"), 3: ("user", "string"),
                                4: ("groups", "[string"), 6: ("uid", "string")},
}
PROTO_KINDS = ("Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Pod",
               "Deployment", "Job", "CronJob", "Eviction", "DeleteOptions", "Role",
               "ClusterRole", "RoleBinding", "ClusterRoleBinding", "TokenRequest", "SelfSubjectReview",
               "TokenReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview", "SubjectAccessReview",
               "LocalSubjectAccessReview")
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
