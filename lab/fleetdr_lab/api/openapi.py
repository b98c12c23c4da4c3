"""The OpenAPI documents a kube-apiserver publishes: /openapi/v2 (JSON and gnostic protobuf) and
/openapi/v3 (the group-version index with `?hash=` URLs, one document per group-version).

Built-in kinds get Kubernetes 1.32's own definitions (openapi_data/, trimmed to what the lab
serves: see ../openapi_data/README.md), with their x-kubernetes-group-version-kind and
x-kubernetes-patch-merge-key / -patch-strategy extensions, so `kubectl explain` and kubectl's
client-side apply (strategic merge from the v3 schema) work as against a real server. Custom
resources get their CRD's openAPIV3Schema of each served version, shaped as
apiextensions-apiserver's pkg/controller/openapi/builder does (apiVersion/kind/metadata
properties, ObjectMeta reference, the <Kind>List schema).

Nothing is built on the request path of ordinary objects: documents are made on the first
/openapi request and cached, built-in ones once per process (every cluster of the lab shares
them), the others per cluster until the set of ResourceTypes changes (a CRD create, update or
delete replaces its ResourceType).
"""
from __future__ import annotations

import copy
import hashlib
import json
import struct

from ..registry import SUBRESOURCE_KINDS
from ..validation import builtin_definition_name, builtin_definitions

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
V2_REF = "#/definitions/"
V3_REF = "#/components/schemas/"
INFO = {"title": "Kubernetes", "version": "v1.32.4"}

# (group, version, signature of the built-in types) -> (json bytes, etag); shared by all clusters
_BUILTIN_GV_CACHE: dict = {}
builtin_name = builtin_definition_name


def etag_of(data: bytes) -> str:
    # kube-openapi pkg/handler computeETag: upper-case hex SHA-512 of the JSON document
    return hashlib.sha512(data).hexdigest().upper()


def _refs(schema, out: set) -> None:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            out.add(ref.rsplit("/", 1)[-1])
        for k, v in schema.items():
            if k != "$ref" or not isinstance(v, str):
                _refs(v, out)
    elif isinstance(schema, list):
        for v in schema:
            _refs(v, out)


def closure(roots, defs: dict) -> list[str]:
    """Names of roots and every definition they reach (through defs)."""
    seen: set = set()
    todo = [r for r in roots if r in defs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        found: set = set()
        _refs(defs[name], found)
        todo.extend(n for n in found if n in defs and n not in seen)
    return sorted(seen)


def to_v3(schema):
    """A v2 definition in v3 form: refs under components, a ref with siblings wrapped in allOf
    (as Kubernetes' v3 documents write them)."""
    if isinstance(schema, list):
        return [to_v3(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "$ref" and isinstance(v, str):
            out[k] = V3_REF + v.rsplit("/", 1)[-1]
        elif k in ("properties", "patternProperties", "definitions") and isinstance(v, dict):
            out[k] = {p: to_v3(s) for p, s in v.items()}
        elif k in ("x-kubernetes-group-version-kind", "enum", "default", "example",
                   "x-kubernetes-validations", "required", "x-kubernetes-list-map-keys"):
            out[k] = v
        else:
            out[k] = to_v3(v)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    return out


# ---- custom resources -----------------------------------------------------------------------

def crd_schema_name(group: str, version: str, kind: str) -> str:
    """apiextensions-apiserver's definition name: the group reversed, version, kind."""
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


_API_VERSION_DOC = ("APIVersion defines the versioned schema of this representation of an object. "
                    "Servers should convert recognized schemas to the latest internal value, and may "
                    "reject unrecognized values. More info: https://git.k8s.io/community/contributors/"
                    "devel/sig-architecture/api-conventions.md#resources")
_KIND_DOC = ("Kind is a string value representing the REST resource this object represents. Servers "
             "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
             "CamelCase. More info: https://git.k8s.io/community/contributors/devel/"
             "sig-architecture/api-conventions.md#types-kinds")
_META_DOC = ("Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/"
             "sig-architecture/api-conventions.md#metadata")
_LIST_META_DOC = ("Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/"
                  "sig-architecture/api-conventions.md#lists-and-simple-lists")


def _crd_v2(schema):
    """A structural v3 schema in what a v2 document can say (builder's ToStructuralOpenAPIV2)."""
    if isinstance(schema, list):
        return [_crd_v2(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k in ("nullable", "anyOf", "oneOf", "not", "x-kubernetes-validations"):
            continue
        if k in ("properties", "patternProperties") and isinstance(v, dict):
            out[k] = {p: _crd_v2(s) for p, s in v.items()}
        elif k in ("enum", "default", "example", "required", "x-kubernetes-list-map-keys"):
            out[k] = v
        else:
            out[k] = _crd_v2(v)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    return out


def crd_definitions(rt, version: str, v3: bool) -> dict:
    """{name: schema} of one served version of a custom resource (object and list kinds)."""
    ref = V3_REF if v3 else V2_REF
    gvk = [{"group": rt.group, "version": version, "kind": rt.kind}]
    schema = copy.deepcopy(rt.schemas.get(version)
                           or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    if not v3:
        schema = _crd_v2(schema)
    props = schema.setdefault("properties", {}) if schema.get("type", "object") == "object" else {}
    props["apiVersion"] = {"description": _API_VERSION_DOC, "type": "string"}
    props["kind"] = {"description": _KIND_DOC, "type": "string"}
    meta = {"description": _META_DOC}
    meta_ref = ref + META + "ObjectMeta"
    if v3:
        meta["allOf"] = [{"$ref": meta_ref}]
    else:
        meta["$ref"] = meta_ref
    props["metadata"] = meta
    schema["type"] = "object"
    schema["x-kubernetes-group-version-kind"] = gvk
    name = crd_schema_name(rt.group, version, rt.kind)
    list_meta = {"description": _LIST_META_DOC}
    if v3:
        list_meta["allOf"] = [{"$ref": ref + META + "ListMeta"}]
    else:
        list_meta["$ref"] = ref + META + "ListMeta"
    listing = {
        "description": f"{rt.kind}List is a list of {rt.kind}",
        "required": ["items"], "type": "object",
        "properties": {
            "apiVersion": {"description": _API_VERSION_DOC, "type": "string"},
            "items": {"description": f"List of {rt.plural}. More info: https://git.k8s.io/"
                                     "community/contributors/devel/api-conventions.md",
                      "type": "array", "items": {"$ref": ref + name}},
            "kind": {"description": _KIND_DOC, "type": "string"},
            "metadata": list_meta,
        },
        "x-kubernetes-group-version-kind": [{"group": rt.group, "version": version,
                                             "kind": rt.list_kind}],
    }
    return {name: schema, name + "List": listing}


# ---- paths ----------------------------------------------------------------------------------

_PATCH_TYPES = ["application/apply-patch+yaml", "application/json-patch+json",
                "application/merge-patch+json", "application/strategic-merge-patch+json"]


def _param(name: str, where: str = "query", required: bool = False) -> dict:
    p = {"name": name, "in": where, "schema": {"type": "string"}, "uniqueItems": True}
    if required:
        p["required"] = True
    return p


def _content(ref: str, types=("application/json", "application/yaml")) -> dict:
    return {t: {"schema": {"$ref": ref}} for t in types}


def paths_v3(rt, version: str, object_ref: str, list_ref: str) -> dict:
    """The operations of one resource in a v3 document (those kubectl looks at: the PATCH
    operation's fieldValidation parameter and request body media types, the GVK extension)."""
    group = rt.group
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    gvk = {"group": group, "version": version, "kind": rt.kind}
    # operation ids as Kubernetes names them: patchAppsV1NamespacedDeployment
    name = group[:-len(".k8s.io")] if rt.builtin and group.endswith(".k8s.io") else group
    gv = "".join(w[:1].upper() + w[1:] for w in name.replace("-", ".").split(".")) or "Core"
    gv += version[:1].upper() + version[1:]
    write_params = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]
    patch_types = [t for t in _PATCH_TYPES if rt.builtin or "strategic" not in t]
    ns_param = [_param("namespace", "path", True)] if rt.namespaced else []
    base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced \
        else f"{prefix}/{rt.plural}"
    ns_word = "Namespaced" if rt.namespaced else ""
    paths = {}

    def op(action, op_id, response_ref=None, body_ref=None, params=(), body_types=None):
        o = {"operationId": op_id, "x-kubernetes-action": action,
             "x-kubernetes-group-version-kind": gvk, "parameters": list(params),
             "responses": {"200": {"description": "OK",
                                   "content": _content(response_ref or object_ref)},
                           "401": {"description": "Unauthorized"}}}
        if body_ref:
            o["requestBody"] = {"content": _content(body_ref, body_types or ("*/*",)),
                                "required": True}
        return o

    coll = {"parameters": ns_param + [_param("pretty")]}
    if "list" in rt.verbs:
        coll["get"] = op("list", f"list{gv}{ns_word}{rt.kind}", list_ref,
                         params=[_param(n) for n in ("labelSelector", "fieldSelector", "limit",
                                                     "continue", "resourceVersion", "watch")])
    if "create" in rt.verbs:
        coll["post"] = op("post", f"create{gv}{ns_word}{rt.kind}", body_ref=object_ref,
                          params=write_params, body_types=("*/*",))
    if "deletecollection" in rt.verbs:
        coll["delete"] = op("deletecollection", f"deletecollection{gv}{ns_word}{rt.kind}",
                            V3_REF + META + "Status")
    paths[base] = coll
    item = {"parameters": [_param("name", "path", True)] + ns_param + [_param("pretty")]}
    if "get" in rt.verbs:
        item["get"] = op("get", f"read{gv}{ns_word}{rt.kind}")
    if "update" in rt.verbs:
        item["put"] = op("put", f"replace{gv}{ns_word}{rt.kind}", body_ref=object_ref,
                         params=write_params, body_types=("*/*",))
    if "patch" in rt.verbs:
        item["patch"] = op("patch", f"patch{gv}{ns_word}{rt.kind}", body_ref=V3_REF + META + "Patch",
                           params=write_params + [_param("force")], body_types=patch_types)
    if "delete" in rt.verbs:
        item["delete"] = op("delete", f"delete{gv}{ns_word}{rt.kind}", V3_REF + META + "Status")
    paths[base + "/{name}"] = item
    for sub, verbs in rt.subresources.items():
        if sub not in ("status", "scale"):
            continue
        ref = object_ref
        if sub in SUBRESOURCE_KINDS:
            ref = V3_REF + "io.k8s.api.autoscaling.v1.Scale"
        sub_word = sub.capitalize()
        entry = {"parameters": list(item["parameters"])}
        if "get" in verbs:
            entry["get"] = op("get", f"read{gv}{ns_word}{rt.kind}{sub_word}", ref)
        if "update" in verbs:
            entry["put"] = op("put", f"replace{gv}{ns_word}{rt.kind}{sub_word}", ref, ref,
                              params=write_params, body_types=("*/*",))
        if "patch" in verbs:
            entry["patch"] = op("patch", f"patch{gv}{ns_word}{rt.kind}{sub_word}", ref,
                                V3_REF + META + "Patch", params=write_params + [_param("force")],
                                body_types=patch_types)
        paths[f"{base}/{{name}}/{sub}"] = entry
    if rt.namespaced and "list" in rt.verbs:
        paths[f"{prefix}/{rt.plural}"] = {
            "parameters": [_param("pretty")],
            "get": op("list", f"list{gv}{rt.kind}ForAllNamespaces", list_ref)}
    return paths


# ---- documents ------------------------------------------------------------------------------

_COMMON_META = [META + n for n in ("Status", "DeleteOptions", "Patch", "WatchEvent", "ObjectMeta",
                                   "ListMeta")]


def _type_defs(rt, version: str, v3: bool) -> tuple[dict, str, str]:
    """(definitions this type adds, object definition name, list definition name)."""
    if rt.builtin:
        name = builtin_name(rt.group, version, rt.kind)
        list_name = builtin_name(rt.group, version, rt.list_kind)
        if name is not None:
            return {}, name, list_name or name
        # a kind Kubernetes 1.32 does not define: an open object with its GVK
        name = crd_schema_name(rt.group or "core", version, rt.kind)
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                  "x-kubernetes-group-version-kind": [{"group": rt.group, "version": version,
                                                       "kind": rt.kind}]}
        return {name: schema}, name, name
    defs = crd_definitions(rt, version, v3)
    name = crd_schema_name(rt.group, version, rt.kind)
    return defs, name, name + "List"


def build_v3(group: str, version: str, rts, type_defs=None) -> dict:
    type_defs = type_defs or _type_defs
    base = builtin_definitions()
    extra: dict = {}
    roots = list(_COMMON_META)
    paths: dict = {}
    for rt in sorted(rts, key=lambda r: r.plural):
        defs, name, list_name = type_defs(rt, version, True)
        extra.update(defs)
        roots += [name, list_name]
        if "scale" in rt.subresources:
            roots.append("io.k8s.api.autoscaling.v1.Scale")
        paths.update(paths_v3(rt, version, V3_REF + name, V3_REF + list_name))
    schemas = {}
    for name in closure(roots, base):
        schemas[name] = to_v3(base[name])
    for name, schema in extra.items():
        schemas[name] = schema
        found: set = set()
        _refs(schema, found)
        for dep in closure(found, base):
            if dep not in schemas:
                schemas[dep] = to_v3(base[dep])
    return {"openapi": "3.0.0", "info": dict(INFO), "paths": paths,
            "components": {"schemas": dict(sorted(schemas.items()))}}


def _v2_ref(ref: str) -> str:
    return V2_REF + ref.rsplit("/", 1)[-1]


def _v2_param(p: dict) -> dict:
    out = {"name": p["name"], "in": p["in"], "type": "string", "uniqueItems": True}
    if p.get("required"):
        out["required"] = True
    return out


def paths_v2(rt, version: str, object_name: str, list_name: str) -> dict:
    """The same operations in a v2 document (body parameters, consumes/produces)."""
    paths = {}
    for path, item in paths_v3(rt, version, V3_REF + object_name, V3_REF + list_name).items():
        out = {"parameters": [_v2_param(p) for p in item.get("parameters") or []]}
        for method in ("get", "put", "post", "delete", "patch"):
            op = item.get(method)
            if op is None:
                continue
            v2op = {k: op[k] for k in ("operationId", "x-kubernetes-action",
                                       "x-kubernetes-group-version-kind")}
            params = [_v2_param(p) for p in op.get("parameters") or []]
            body = op.get("requestBody")
            if body:
                content = body["content"]
                v2op["consumes"] = list(content)
                schema = next(iter(content.values()))["schema"]
                params.insert(0, {"name": "body", "in": "body", "required": True,
                                  "schema": {"$ref": _v2_ref(schema["$ref"])}})
            v2op["produces"] = ["application/json", "application/yaml"]
            v2op["schemes"] = ["https"]
            v2op["parameters"] = params
            responses = {}
            for code, r in op["responses"].items():
                resp = {"description": r["description"]}
                if r.get("content"):
                    ref = next(iter(r["content"].values()))["schema"]["$ref"]
                    resp["schema"] = {"$ref": _v2_ref(ref)}
                responses[code] = resp
            v2op["responses"] = responses
            out[method] = v2op
        paths[path] = out
    return paths


def build_v2(rts, type_defs=None) -> dict:
    type_defs = type_defs or _type_defs
    base = builtin_definitions()
    defs = dict(base)
    paths: dict = {}
    for rt in rts:
        for version in rt.versions:
            extra, name, list_name = type_defs(rt, version, False)
            defs.update(extra)
            paths.update(paths_v2(rt, version, name, list_name))
    return {"swagger": "2.0", "info": dict(INFO), "paths": dict(sorted(paths.items())),
            "definitions": dict(sorted(defs.items()))}


def _dump(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


class OpenApiService:
    """One cluster's OpenAPI documents, cached until its resource types change."""

    def __init__(self, registry):
        self.registry = registry
        self._gv: dict = {}       # "apis/g/v" -> (rts, json bytes, etag)
        self._v2: list | None = None    # [rts, json bytes, etag, protobuf bytes or None]
        # id(custom resource type) -> (type, {(version, v3): definitions}): a CRD's schemas are
        # converted once per change of the CRD (each change registers a new ResourceType)
        self._crd_defs: dict = {}

    def type_defs(self, rt, version: str, v3: bool):
        if rt.builtin:
            return _type_defs(rt, version, v3)
        entry = self._crd_defs.get(id(rt))
        if entry is None or entry[0] is not rt:
            live = {id(t) for t in self.registry.all()}
            for key in [k for k in self._crd_defs if k not in live]:
                del self._crd_defs[key]
            entry = self._crd_defs[id(rt)] = (rt, {})
        found = entry[1].get((version, v3))
        if found is None:
            found = entry[1][(version, v3)] = _type_defs(rt, version, v3)
        return found

    def group_versions(self) -> dict[str, tuple[str, str]]:
        out = {}
        for g in self.registry.groups():
            for v in g["versions"]:
                key = f"apis/{g['name']}/{v}" if g["name"] else f"api/{v}"
                out[key] = (g["name"], v)
        return out

    def group_version(self, key: str) -> tuple[bytes, str] | None:
        gv = self.group_versions().get(key)
        if gv is None:
            return None
        group, version = gv
        rts = sorted(self.registry.resources(group, version), key=lambda r: r.plural)
        if not rts:
            return None
        cached = self._gv.get(key)
        if cached is not None and len(cached[0]) == len(rts) and \
                all(a is b for a, b in zip(cached[0], rts)):
            return cached[1], cached[2]
        if all(rt.builtin for rt in rts):
            sig = (group, version, tuple((rt.plural, rt.kind, rt.namespaced, tuple(rt.verbs),
                                          tuple(rt.subresources)) for rt in rts))
            shared = _BUILTIN_GV_CACHE.get(sig)
            if shared is None:
                data = _dump(build_v3(group, version, rts))
                shared = _BUILTIN_GV_CACHE[sig] = (data, etag_of(data))
            data, etag = shared
        else:
            data = _dump(build_v3(group, version, rts, self.type_defs))
            etag = etag_of(data)
        self._gv[key] = (rts, data, etag)
        return data, etag

    def index(self) -> bytes:
        """/openapi/v3: every group-version with its content-hashed URL."""
        paths = {}
        for key in self.group_versions():
            found = self.group_version(key)
            if found is None:
                continue
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={found[1]}"}
        return _dump({"paths": paths})

    def v2(self, protobuf: bool) -> tuple[bytes, str]:
        rts = sorted(self.registry.all(), key=lambda r: (r.group, r.plural))
        cached = self._v2
        if cached is None or len(cached[0]) != len(rts) or \
                not all(a is b for a, b in zip(cached[0], rts)):
            data = _dump(build_v2(rts, self.type_defs))
            cached = self._v2 = [rts, data, etag_of(data), None]
        if not protobuf:
            return cached[1], cached[2]
        if cached[3] is None:
            # kube-openapi's ToProtoBinary: the protobuf form is made from the JSON document
            cached[3] = encode_document(json.loads(cached[1]))
        return cached[3], cached[2]


# ---- gnostic openapi_v2.Document protobuf (github.com/google/gnostic openapiv2/OpenAPIv2.proto) --

def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def _bytes(num: int, data: bytes) -> bytes:
    return _key(num, 2) + _varint(len(data)) + data


def _str(num: int, s: str) -> bytes:
    return _bytes(num, s.encode()) if s else b""


def _any(value) -> bytes:
    # gnostic keeps values it has no message for as YAML text (Any.yaml = 2)
    return _str(2, json.dumps(value) + "\n")


def _named_any(name: str, value) -> bytes:
    return _str(1, name) + _bytes(2, _any(value))


_SCHEMA_STRINGS = {"$ref": 1, "format": 2, "title": 3, "description": 4, "pattern": 13,
                   "discriminator": 26}
_SCHEMA_DOUBLES = {"multipleOf": 6, "maximum": 7, "minimum": 9}
_SCHEMA_BOOLS = {"exclusiveMaximum": 8, "exclusiveMinimum": 10, "uniqueItems": 16, "readOnly": 27}
_SCHEMA_INTS = {"maxLength": 11, "minLength": 12, "maxItems": 14, "minItems": 15,
                "maxProperties": 17, "minProperties": 18}


def _schema(s: dict) -> bytes:
    out = bytearray()
    if not isinstance(s, dict):
        return b""
    for k in sorted(s, key=_schema_order):
        v = s[k]
        if k in _SCHEMA_STRINGS and isinstance(v, str):
            out += _str(_SCHEMA_STRINGS[k], v)
        elif k == "default":
            out += _bytes(5, _any(v))
        elif k in _SCHEMA_DOUBLES and isinstance(v, (int, float)):
            out += _key(_SCHEMA_DOUBLES[k], 1) + struct.pack("<d", float(v))
        elif k in _SCHEMA_BOOLS:
            if v:
                out += _key(_SCHEMA_BOOLS[k], 0) + b"\x01"
        elif k in _SCHEMA_INTS and isinstance(v, int):
            out += _key(_SCHEMA_INTS[k], 0) + _varint(v)
        elif k == "required" and isinstance(v, list):
            for r in v:
                out += _str(19, str(r))
        elif k == "enum" and isinstance(v, list):
            for e in v:
                out += _bytes(20, _any(e))
        elif k == "additionalProperties":
            if isinstance(v, bool):
                out += _bytes(21, _key(2, 0) + (b"\x01" if v else b"\x00"))
            elif isinstance(v, dict):
                out += _bytes(21, _bytes(1, _schema(v)))
        elif k == "type":
            types = v if isinstance(v, list) else [v]
            out += _bytes(22, b"".join(_str(1, t) for t in types if isinstance(t, str)))
        elif k == "items":
            items = v if isinstance(v, list) else [v]
            out += _bytes(23, b"".join(_bytes(1, _schema(i)) for i in items))
        elif k == "allOf" and isinstance(v, list):
            for sub in v:
                out += _bytes(24, _schema(sub))
        elif k == "properties" and isinstance(v, dict):
            out += _bytes(25, b"".join(_bytes(1, _str(1, p) + _bytes(2, _schema(ps)))
                                       for p, ps in v.items()))
        elif k == "example":
            out += _bytes(30, _any(v))
        elif k.startswith("x-"):
            out += _bytes(31, _named_any(k, v))
    return bytes(out)


_ORDER = {**_SCHEMA_STRINGS, **_SCHEMA_DOUBLES, **_SCHEMA_BOOLS, **_SCHEMA_INTS, "default": 5,
          "required": 19, "enum": 20, "additionalProperties": 21, "type": 22, "items": 23,
          "allOf": 24, "properties": 25, "example": 30}


def _schema_order(k: str):
    return (_ORDER.get(k, 31), k)


def _bool(num: int, v) -> bytes:
    return _key(num, 0) + b"\x01" if v else b""


def _parameter(p: dict) -> bytes:
    """ParametersItem{parameter=1: Parameter{body_parameter=1 | non_body_parameter=2}}."""
    if p.get("in") == "body":
        inner = _bytes(1, _str(2, p["name"]) + _str(3, "body") + _bool(4, p.get("required"))
                       + _bytes(5, _schema(p.get("schema") or {})))
    elif p.get("in") == "path":  # PathParameterSubSchema (NonBodyParameter field 4)
        inner = _bytes(2, _bytes(4, _bool(1, p.get("required")) + _str(2, "path")
                                 + _str(4, p["name"]) + _str(5, p.get("type", "string"))
                                 + _bool(19, p.get("uniqueItems"))))
    else:  # QueryParameterSubSchema (NonBodyParameter field 3)
        inner = _bytes(2, _bytes(3, _bool(1, p.get("required")) + _str(2, "query")
                                 + _str(4, p["name"]) + _str(6, p.get("type", "string"))
                                 + _bool(20, p.get("uniqueItems"))))
    return _bytes(1, inner)


def _operation(op: dict) -> bytes:
    out = bytearray(_str(5, op.get("operationId", "")))
    for t in op.get("produces") or []:
        out += _str(6, t)
    for t in op.get("consumes") or []:
        out += _str(7, t)
    for p in op.get("parameters") or []:
        out += _bytes(8, _parameter(p))
    codes = b""
    for code, r in (op.get("responses") or {}).items():
        resp = _str(1, r.get("description", ""))
        if r.get("schema"):
            resp += _bytes(2, _bytes(1, _schema(r["schema"])))
        codes += _bytes(1, _str(1, code) + _bytes(2, _bytes(1, resp)))
    out += _bytes(9, codes)
    for t in op.get("schemes") or []:
        out += _str(10, t)
    for k, v in op.items():
        if k.startswith("x-"):
            out += _bytes(13, _named_any(k, v))
    return bytes(out)


_PATH_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def _path_item(item: dict) -> bytes:
    out = bytearray()
    for method, num in _PATH_METHODS.items():
        if method in item:
            out += _bytes(num, _operation(item[method]))
    for p in item.get("parameters") or []:
        out += _bytes(9, _parameter(p))
    return bytes(out)


def encode_document(doc: dict) -> bytes:
    """openapi_v2.Document: swagger=1, info=2 {title=1, version=2}, paths=8, definitions=9."""
    out = bytearray(_str(1, doc.get("swagger", "2.0")))
    info = doc.get("info") or {}
    out += _bytes(2, _str(1, info.get("title", "")) + _str(2, info.get("version", "")))
    out += _bytes(8, b"".join(_bytes(2, _str(1, path) + _bytes(2, _path_item(item)))
                              for path, item in (doc.get("paths") or {}).items()))
    defs = doc.get("definitions") or {}
    out += _bytes(9, b"".join(_bytes(1, _str(1, name) + _bytes(2, _schema(s)))
                              for name, s in defs.items()))
    return bytes(out)
