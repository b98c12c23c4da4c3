"""One cluster's object store: the apiserver's storage semantics without HTTP.

Operations are synchronous and run on the lab's event-loop thread, so each is atomic. Stored
objects are never mutated in place: every write stores a fresh dict, so watch history can keep
references and only what is handed out is copied.

Known simplifications (the rest follows kube-apiserver): no conversion between CR versions
(strategy None, as most CRDs use); managedFields are kept only for writes that name a field
manager (the API always does; lab-internal controller writes do not); a CRD's deletion removes
its objects at once; watch history is a fixed number of events per cluster rather than
etcd compaction; list continue tokens never expire; fieldValidation=Strict checks built-in kinds
against Kubernetes 1.32's definitions (unknown fields only) and custom resources against their
schema.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import functools
import json
import logging
import pickle
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

import yaml

from . import validation
from .patching import (PatchError, apply_merge, diff_fields, field_set, fields_tree,
                       from_fields_v1, json_patch, merge_patch, path_string, remove_unapplied,
                       strategic_merge, to_fields_v1, tree_copy, tree_discard, tree_has_any,
                       tree_insert, value_at)
from .registry import Registry, ResourceType
from .selectors import (FieldSelector, LabelSelector, SelectorError, object_fields,
                        selector_string, supported_fields)

log = logging.getLogger(__name__)

# ---- errors -----------------------------------------------------------------------------


class ApiError(Exception):
    """An apiserver error: HTTP code, StatusReason, message and optional details."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self):
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def details_for(gr: str, name: str) -> dict:
    """The details of a Status about one object of group-resource gr."""
    plural, _, group = gr.partition(".")
    d = {"name": name}
    if group:
        d["group"] = group
    d["kind"] = plural
    return d


def not_found(gr: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{gr} "{name}" not found', details_for(gr, name))


def already_exists(gr: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{gr} "{name}" already exists', details_for(gr, name))


def _conflict_manager(entry: dict) -> str:
    """A managedFields entry as an apply conflict names it (printManager in the apiserver's
    staging/src/k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager/internal/conflict.go):
    "name", with its subresource, and "using <apiVersion>" for Update managers only."""
    text = json.dumps(entry.get("manager") or "")
    if entry.get("subresource"):
        text += f" with subresource {json.dumps(entry['subresource'])}"
    if entry.get("operation") == "Update":
        text += f" using {entry.get('apiVersion')}"
    return text


def _conflict_message(conflicts: list) -> str:
    """getConflictMessage (same file): one conflict inline; several grouped under each manager,
    managers sorted."""
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {manager}: {path_string(path)}"
    by_manager: dict[str, list] = {}
    for manager, path in conflicts:
        by_manager.setdefault(manager, []).append(path_string(path))
    lines = []
    for manager in sorted(by_manager):
        lines.append(f"conflicts with {manager}:")
        lines.extend(f"- {path}" for path in by_manager[manager])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


def conflict(gr: str, name: str, msg: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {gr} "{name}": {msg}',
                    details_for(gr, name))


def invalid(kind: str, name: str, causes: list) -> ApiError:
    """kind is the qualified kind (`Deployment.apps`, `ConfigMap`); causes are FieldErrors or
    (field, message) pairs."""
    pairs = [(c.field, c.body(), c.type) if isinstance(c, validation.FieldError)
             else (c[0], c[1], "FieldValueInvalid") for c in causes]
    text = [f"{f}: {m}" for f, m, _ in pairs]
    agg = text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"
    kname, _, group = kind.partition(".")
    details = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kname
    details["causes"] = [{"reason": t, "message": m, "field": f} for f, m, t in pairs]
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {agg}', details)


def bad_request(msg: str) -> ApiError:
    return ApiError(400, "BadRequest", msg)


def gone(msg: str) -> ApiError:
    return ApiError(410, "Expired", msg)


def forbidden(msg: str, details: dict | None = None) -> ApiError:
    return ApiError(403, "Forbidden", msg, details)


def method_not_allowed(msg: str = "the server does not allow this method on the requested "
                                  "resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", msg)


def unsupported_media_type(msg: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", msg)


def resource_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


# ---- helpers ----------------------------------------------------------------------------


def fast_copy(obj):
    """Deep copy of plain JSON data (pickle round-trip: several times faster than deepcopy)."""
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


def _qualified_kind(rt: ResourceType) -> str:
    return f"{rt.kind}.{rt.group}" if rt.group else rt.kind


_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery utilrand's alphabet


def _path_get(obj: dict, dotted: str):
    cur = obj
    for part in dotted.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _path_set(obj: dict, dotted: str, value) -> None:
    parts = dotted.strip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def _has_descendant(paths: set, p: tuple) -> bool:
    return any(len(q) > len(p) and q[:len(p)] == p for q in paths)


# metadata fields no manager owns (managedfields/internal/stripmeta.go)
_SERVER_META = frozenset(("name", "namespace", "uid", "resourceVersion", "managedFields",
                          "creationTimestamp", "generation", "selfLink", "deletionTimestamp",
                          "deletionGracePeriodSeconds"))


def _owned_view(obj: dict, subresource: str | None, has_status: bool) -> dict:
    """The part of obj whose fields a write of (sub)resource can own: a status write only
    status; a main-resource write everything but status (when status is a subresource) and
    the server's metadata (the reset fields of the resource strategies)."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    view = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    if has_status:
        view.pop("status", None)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_META}
    if meta:
        view["metadata"] = meta
    return view


def _decoded_entries(sent) -> list | None:
    """managedFields a write sends, as the server decodes them (times in RFC 3339 UTC, which
    typed clients may have re-encoded); None if they do not decode (the live ones are kept)."""
    if not isinstance(sent, list):
        return None
    out = []
    for e in sent:
        if not isinstance(e, dict):
            return None
        t = e.get("time")
        if isinstance(t, str) and t:
            try:
                when = datetime.fromisoformat(t)
            except ValueError:
                return None
            if when.tzinfo is not None:
                when = when.astimezone(timezone.utc)
            e = dict(e, time=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        out.append(e)
    return out


MAX_UPDATE_MANAGERS = 10   # managedfields/internal/capmanagers.go DefaultMaxUpdateManagers


def _tree_union(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _tree_union(out[k], v) if k in out else v
    return {k: out[k] for k in sorted(out)}


def _cap_update_managers(entries: list) -> list:
    """capUpdateManagers (capmanagers.go): beyond ten Update entries, the oldest are merged,
    per apiVersion, into one "ancient-changes" entry (with the newest merged one's time)."""
    updaters = [e for e in entries if e.get("operation") != "Apply"]
    if len(updaters) <= MAX_UPDATE_MANAGERS:
        return entries
    updaters.sort(key=lambda e: (e.get("time") or "", e.get("manager") or "",
                                 e.get("subresource") or ""))
    gone: set = set()
    first: dict = {}
    buckets: dict = {}
    length = len(updaters)
    for e in updaters:
        if length <= MAX_UPDATE_MANAGERS:
            break
        version = e.get("apiVersion") or ""
        if version not in first:
            first[version] = e
            continue
        bucket = buckets.get(version)
        if bucket is None:
            f = first[version]
            gone.add(id(f))
            bucket = buckets[version] = {"manager": "ancient-changes", "operation": "Update",
                                         "apiVersion": version, "time": f.get("time"),
                                         "fieldsType": "FieldsV1",
                                         "fieldsV1": f.get("fieldsV1") or {}}
        bucket["fieldsV1"] = _tree_union(bucket["fieldsV1"], e.get("fieldsV1") or {})
        bucket["time"] = e.get("time")
        gone.add(id(e))
        length -= 1
    return [e for e in entries if id(e) not in gone] + list(buckets.values())


def _entry_order(e: dict) -> tuple:
    """sortEncodedManagedFields (managedfields/internal/managedfields.go): operation, time,
    manager, apiVersion, subresource."""
    return (e.get("operation") or "", e.get("time") or "", e.get("manager") or "",
            e.get("apiVersion") or "", e.get("subresource") or "")


def _content(obj: dict, has_status: bool = True) -> dict:
    """What generation tracks: everything but metadata (and status, when it is a
    subresource; without one, status is an ordinary field and bumps generation too)."""
    skip = ("metadata", "status", "apiVersion", "kind") if has_status else (
        "metadata", "apiVersion", "kind")
    return {k: v for k, v in obj.items() if k not in skip}


# ---- watches ----------------------------------------------------------------------------


class Watch:
    """An async iterator of watch events for one subscriber.

    Events are queued synchronously by the Store (it runs on the loop thread). A consumer that
    falls more than `max_pending` live events behind is closed with an ERROR event carrying a
    410 Expired Status, so the client relists as it would after the real server drops it.

    A `shared` watch hands out the stored objects themselves (in a new top-level dict carrying
    apiVersion and kind) instead of deep copies: for in-process consumers that only read events
    (the controllers' watches), where a copy per event and watch was most of the lab's cost.
    Stored objects are never edited in place, so what such a consumer holds stays as it was.
    """

    def __init__(self, store: "Store", rt: ResourceType | None, group, plural, namespace,
                 version, label_selector: LabelSelector, field_selector: FieldSelector,
                 max_pending: int, shared: bool = False):
        self._store = store
        self._rt = rt
        self._group, self._plural = group, plural
        self._namespace = namespace or None
        self._version = version
        self._labels = label_selector
        self._fields = field_selector
        self._wanted_fields = {r.field for r in field_selector.requirements}
        self._items: collections.deque = collections.deque()
        self._wake = asyncio.Event()
        self._max_pending = max_pending
        self._shared = shared
        self.closed = False

    # --- store side
    def _matches_scope(self, rt: ResourceType, ns: str) -> bool:
        if self._group is not None and rt.group != self._group:
            return False
        if self._plural is not None and rt.plural != self._plural:
            return False
        return self._namespace is None or ns == self._namespace

    def _passes(self, obj: dict | None) -> bool:
        if obj is None:
            return False
        if not self._labels.empty() and not self._labels.matches(obj["metadata"].get("labels")):
            return False
        if not self._fields.empty() and not self._fields.matches(
                object_fields(obj, self._wanted_fields)):
            return False
        return True

    def _offer(self, etype: str, rt: ResourceType, obj: dict, old: dict | None,
               initial: bool = False) -> None:
        if self.closed or not self._matches_scope(rt, obj["metadata"].get("namespace", "")):
            return
        if etype == "MODIFIED":
            now, before = self._passes(obj), self._passes(old)
            if now and not before:
                etype = "ADDED"
            elif before and not now:
                # the object left this filtered view: DELETED with the previous state at this RV
                prev = dict(old)
                prev["metadata"] = dict(old["metadata"],
                                        resourceVersion=obj["metadata"]["resourceVersion"])
                etype, obj = "DELETED", prev
            elif not now:
                return
        elif not self._passes(obj):
            return
        if not initial and len(self._items) >= self._max_pending:
            self._overflow()
            return
        self._items.append((etype, rt, obj))
        self._wake.set()

    def _overflow(self) -> None:
        self._items.clear()
        err = gone("too old resource version: watcher fell behind").status()
        self._items.append(("ERROR", None, err))
        self._end()

    def _end(self) -> None:
        self.closed = True
        self._store._watchers.discard(self)
        self._wake.set()

    # --- consumer side
    def bookmark(self) -> None:
        """Queue a BOOKMARK carrying the current resourceVersion (the api decides when)."""
        if self.closed:
            return
        obj = {"metadata": {"resourceVersion": self._store.current_resource_version()}}
        if self._rt is not None:
            obj = {"kind": self._rt.kind, "apiVersion": self._rt.api_version_for(self._version),
                   **obj}
        self._items.append(("BOOKMARK", None, obj))
        self._wake.set()

    def close(self) -> None:
        self._items.clear()
        self._end()

    def pending(self) -> int:
        return len(self._items)

    def _render(self, item) -> dict:
        etype, rt, obj = item
        if rt is None:
            return {"type": etype, "object": obj}
        version = self._version if self._rt is rt else None
        if self._shared and not (version is not None and version != rt.version
                                 and version in rt.versions):
            # what _out returns without a conversion, minus the deep copy
            view = dict(obj)
            view["apiVersion"] = rt.api_version
            view["kind"] = rt.kind
            return {"type": etype, "object": view}
        return {"type": etype, "object": self._store._out(rt, obj, version)}

    def get_nowait(self) -> dict | None:
        """The next queued event, or None (for synchronous consumers)."""
        return self._render(self._items.popleft()) if self._items else None

    def __aiter__(self):
        return self

    async def __anext__(self) -> dict:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._render(self._items.popleft())


# ---- per-resource strategies ------------------------------------------------------------


class Strategy:
    """What the Store does differently for one resource: kube-apiserver's per-resource REST
    strategy plus the admission plugins that apply to it. The Store calls these hooks at fixed
    points of its verbs and knows nothing else about kinds; every hook defaults to the
    behaviour of a plain resource. Registered with `Store.register`."""

    # paths (map keys from the root) of the maps and lists the kind's empty object has
    # (non-pointer structs, lists without omitempty): a write that fills them does not own
    # them as a whole, only their fields (no "." in FieldsV1). None for custom resources.
    zero_fields: frozenset = frozenset()
    # paths of structs owned as one field (`+structType=atomic`: label selectors)
    atomic_fields: frozenset = frozenset()

    def decode(self, obj: dict) -> None:
        """Refuse a body that cannot be decoded as this kind (raise ApiError 400)."""

    def to_version(self, obj: dict, version: str) -> dict:
        """obj (a private copy, in the storage version) as the served `version` shows it."""
        return obj

    def from_version(self, obj: dict, version: str) -> dict:
        """obj (a private copy in the served `version`) in the storage version."""
        return obj

    def reset_status(self, obj: dict) -> None:
        """PrepareForCreate of a resource with a status subresource: the status a create gets."""
        obj.pop("status", None)

    def prepare_for_update(self, new: dict, old: dict) -> None:
        """PrepareForUpdate of the main resource: keep fields only subresources change."""

    def default(self, obj: dict) -> None:
        """Scheme defaulting of a decoded create/update body (what the field manager sees:
        the fields it sets belong to the writer)."""

    def admit(self, store: "Store", obj: dict, old: dict | None) -> None:
        """Mutating admission on create (old None) and update (PrepareForCreate, allocations:
        the writer does not own what these set); may raise."""

    def validate(self, obj: dict) -> list:
        """FieldErrors of obj (metadata and CRD schemas are the Store's)."""
        return []

    def validate_update(self, obj: dict, old: dict) -> list:
        """FieldErrors of an update (immutable fields)."""
        return []

    def finish(self, store: "Store", obj: dict, old: dict | None) -> None:
        """Fields the server computes once obj is valid (a CRD's status)."""

    def written(self, store: "Store", obj: dict, old: dict | None) -> None:
        """After a create or a main-resource update is stored (a CRD registers its types)."""

    def removing(self, store: "Store", obj: dict) -> None:
        """Before obj leaves storage (a CRD's objects go first)."""

    def update_subresource(self, subresource: str, old: dict, body: dict) -> dict:
        """The new object for an update of a subresource other than status/scale."""
        raise method_not_allowed()

    def create_subresource(self, store: "Store", rt: ResourceType, namespace: str | None,
                           current: dict, body: dict, subresource: str, dry_run: bool) -> dict:
        """POST to a subresource of current (a copy of the stored object)."""
        raise method_not_allowed()

    def check_delete(self, rt: ResourceType, obj: dict) -> None:
        """Refuse a delete (raise ApiError)."""

    def grace_period(self, obj: dict, requested: int | None) -> int:
        """Seconds a deletion waits before the object goes (0: at once)."""
        return 0

    def holds_removal(self, obj: dict) -> bool:
        """True while obj must stay although it has no finalizers left."""
        return False

    def mark_deleting(self, new: dict, old: dict) -> None:
        """Changes besides deletionTimestamp when a deletion has to wait."""


PLAIN = Strategy()


class Admission:
    """An admission plugin: sees the writes of every resource (after the resource's own
    strategy has defaulted the object) and picks what it handles. Registered with
    `Store.register` without a resource."""

    def check_create(self, store: "Store", rt: ResourceType, namespace: str, name: str) -> None:
        """Refuse a create in namespace (namespaced resources only; raise ApiError)."""

    def admit(self, store: "Store", rt: ResourceType, obj: dict, old: dict | None) -> None:
        """Mutate or refuse a create (old None) or main-resource update."""


# ---- the store --------------------------------------------------------------------------


class Store:
    """Objects of one cluster, addressed by (group, plural), namespace, name."""

    def __init__(self, clock=None, history_size: int = 5000, watch_max_pending: int = 20000,
                 first_resource_version: int = 1000):
        self.registry = Registry()
        self.clock = clock or SystemClock()
        self._data: dict[tuple[str, str], dict[str, dict[str, dict]]] = {}
        self._rv = first_resource_version
        self._history: collections.deque = collections.deque(maxlen=history_size)
        self._evicted_rv = first_resource_version   # watches from an RV below this get 410
        self._watchers: set[Watch] = set()
        self._subscribers: list[tuple[Callable, str | None, str | None]] = []
        self._watch_max_pending = watch_max_pending
        self._strategies: dict[tuple[str, str], Strategy] = {}
        self._plugins: list[Admission] = []
        self._warnings: list[str] = []  # fieldValidation=Warn findings of the last write
        # id(stored object) -> (object, its pickle, its managedFields): stored objects are
        # immutable, so the pickle taken at write time makes every later copy a single
        # pickle.loads. managedFields stay out of the pickle: copies share their entries (nothing
        # edits an entry in place; writes build new ones), which keeps API-written objects
        # about as cheap to copy as before they carried them.
        self._blobs: dict[int, tuple[dict, bytes, list | None]] = {}

    def register(self, handler: Strategy | Admission, group: str | None = None,
                 plural: str | None = None) -> None:
        """The one way kinds plug into the store: a Strategy for resource (group, plural), or,
        without a resource, an Admission plugin for every resource (run in registration order)."""
        if plural is None:
            if not isinstance(handler, Admission):
                raise TypeError("a handler registered for every resource must be an Admission")
            self._plugins.append(handler)
        else:
            self._strategies[(group or "", plural)] = handler

    def _strategy(self, rt: ResourceType) -> Strategy:
        return self._strategies.get((rt.group, rt.plural), PLAIN)

    # ---- small helpers
    def timestamp(self, plus_seconds: int = 0) -> str:
        """The lab clock's time (plus some seconds) as an RFC 3339 timestamp."""
        t = self.clock.now().astimezone(timezone.utc) + timedelta(seconds=plus_seconds)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def current_resource_version(self) -> str:
        return str(self._rv)

    def _type(self, group: str, plural: str) -> ResourceType:
        rt = self.registry.get(group, plural)
        if rt is None:
            raise resource_not_found()
        return rt

    def _bucket(self, rt: ResourceType) -> dict[str, dict[str, dict]]:
        return self._data.setdefault((rt.group, rt.plural), {})

    def _ns(self, rt: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if rt.namespaced else ""

    def _stored(self, rt: ResourceType, namespace: str | None, name: str) -> dict | None:
        return self._bucket(rt).get(self._ns(rt, namespace), {}).get(name)

    def _must(self, rt: ResourceType, namespace: str | None, name: str) -> dict:
        obj = self._stored(rt, namespace, name)
        if obj is None:
            raise not_found(rt.group_resource, name)
        return obj

    def _copy(self, obj: dict) -> dict:
        blob = self._blobs.get(id(obj))
        if blob is not None and blob[0] is obj:
            out = pickle.loads(blob[1])
            if blob[2]:
                out["metadata"]["managedFields"] = list(blob[2])   # last, as ObjectMeta has it
            return out
        return fast_copy(obj)

    def _out(self, rt: ResourceType, obj: dict, version: str | None = None) -> dict:
        out = self._copy(obj)
        if version is not None and version != rt.version and version in rt.versions:
            out = self._strategy(rt).to_version(out, version)
            out["apiVersion"] = rt.api_version_for(version)
        else:
            out["apiVersion"] = rt.api_version
        out["kind"] = rt.kind
        return out

    def take_warnings(self) -> list[str]:
        """The fieldValidation warnings of the writes since the last call (the API answers them
        as `Warning:` headers), and forget them."""
        found, self._warnings = self._warnings, []
        return found

    def to_version(self, group: str, plural: str, obj: dict, version: str) -> dict:
        """obj (as a verb returned it: storage version) in the served `version` (conversion of
        built-in kinds, e.g. autoscaling/v1 HorizontalPodAutoscaler; CRDs: apiVersion only)."""
        rt = self._type(group, plural)
        if version != rt.version and version in rt.versions:
            obj = self._strategy(rt).to_version(fast_copy(obj), version)
        obj["apiVersion"] = rt.api_version_for(version)
        return obj

    def _check_verb(self, rt: ResourceType, verb: str, subresource: str | None = None):
        verbs = rt.subresources.get(subresource) if subresource else rt.verbs
        if subresource and verbs is None:
            raise resource_not_found()
        if verb not in verbs:
            raise method_not_allowed()

    # ---- events
    def _emit(self, etype: str, rt: ResourceType, obj: dict, old: dict | None = None) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        if len(self._history) == self._history.maxlen:
            self._evicted_rv = self._history[0][0]
        self._history.append((rv, etype, rt, obj, old))
        ns = obj["metadata"].get("namespace", "")
        for w in list(self._watchers):
            w._offer(etype, rt, obj, old)
        for fn, group, plural in list(self._subscribers):
            if (group is None or group == rt.group) and (plural is None or plural == rt.plural):
                try:
                    fn(etype, self._out(rt, obj))
                except Exception:  # a subscriber's bug must not break the write
                    log.exception("watch subscriber failed on %s %s/%s", etype, ns,
                                  obj["metadata"].get("name"))

    def subscribe(self, fn: Callable[[str, dict], None], group: str | None = None,
                  plural: str | None = None) -> Callable[[], None]:
        """Call fn(event_type, object_copy) synchronously after every committed write (of
        (group, plural) when given). Returns a function that unsubscribes."""
        entry = (fn, group, plural)
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    # ---- read verbs
    def get(self, group: str, plural: str, namespace: str | None, name: str,
            version: str | None = None, subresource: str | None = None) -> dict:
        rt = self._type(group, plural)
        if subresource:
            self._check_verb(rt, "get", subresource)
        obj = self._must(rt, namespace, name)
        if subresource == "scale":
            return self._scale_of(rt, obj)
        return self._out(rt, obj, version)

    def exists(self, group: str, plural: str, namespace: str | None, name: str) -> bool:
        """Whether the object is stored (what `get_or_none(...) is not None` says, without copying
        it out: a CRD with its schema is a large copy for a yes/no question)."""
        rt = self.registry.get(group, plural)
        return rt is not None and self._stored(rt, namespace, name) is not None

    def get_or_none(self, group: str, plural: str, namespace: str | None, name: str) -> dict | None:
        rt = self.registry.get(group, plural)
        if rt is None:
            return None
        obj = self._stored(rt, namespace, name)
        return None if obj is None else self._out(rt, obj)

    def _selectors(self, rt, label_selector, field_selector):
        try:
            ls = (label_selector if isinstance(label_selector, LabelSelector)
                  else LabelSelector.parse(label_selector))
            fs = (field_selector if isinstance(field_selector, FieldSelector)
                  else FieldSelector.parse(field_selector))
            if rt is not None:
                fs.check_supported(supported_fields(rt.group, rt.plural)
                                   if rt.builtin else {"metadata.name", "metadata.namespace"})
        except SelectorError as e:
            raise bad_request(str(e))
        return ls, fs

    def _iter(self, rt: ResourceType, namespace: str | None) -> Iterable[tuple[str, str, dict]]:
        bucket = self._bucket(rt)
        namespaces = [self._ns(rt, namespace)] if (namespace or not rt.namespaced) else sorted(bucket)
        for ns in namespaces:
            objs = bucket.get(ns) or {}
            for name in sorted(objs):
                yield ns, name, objs[name]

    def _select(self, rt, namespace, ls: LabelSelector, fs: FieldSelector):
        wanted = {r.field for r in fs.requirements}
        for ns, name, obj in self._iter(rt, namespace):
            if not ls.empty() and not ls.matches(obj["metadata"].get("labels")):
                continue
            if not fs.empty() and not fs.matches(object_fields(obj, wanted)):
                continue
            yield ns, name, obj

    def list(self, group: str, plural: str, namespace: str | None = None, label_selector=None,
             field_selector=None, limit: int | None = None, continue_token: str | None = None,
             version: str | None = None, shared: bool = False) -> dict:
        """shared: items are the stored objects in new top-level dicts, not deep copies - for
        callers in this process that only read them (a controller's periodic check)."""
        rt = self._type(group, plural)
        self._check_verb(rt, "list")
        ls, fs = self._selectors(rt, label_selector, field_selector)
        start = None
        if continue_token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = (tok["ns"], tok["name"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise bad_request(f"continue key is not valid: {continue_token}")
        items, next_token, remaining = [], None, 0
        convert = (self._strategy(rt).to_version
                   if version is not None and version != rt.version and version in rt.versions
                   else None)
        for ns, name, obj in self._select(rt, namespace, ls, fs):
            if start is not None and (ns, name) <= start:
                continue
            if limit and len(items) >= limit:
                if next_token is None:
                    last = items[-1]["metadata"]
                    next_token = base64.urlsafe_b64encode(json.dumps(
                        {"rv": self._rv, "ns": last.get("namespace", ""),
                         "name": last["name"]}).encode()).decode()
                remaining += 1
                continue
            if shared and convert is None:
                item = dict(obj)
            else:
                item = self._copy(obj)
            if convert is not None:
                item = convert(item, version)
            if not rt.builtin:  # custom resource lists carry apiVersion/kind per item
                item["apiVersion"] = rt.api_version_for(version if version in rt.versions else None)
                item["kind"] = rt.kind
            else:
                item.pop("apiVersion", None)
                item.pop("kind", None)
            items.append(item)
        meta = {"resourceVersion": str(self._rv)}
        if next_token:
            meta["continue"] = next_token
            meta["remainingItemCount"] = remaining
        return {"kind": rt.list_kind,
                "apiVersion": rt.api_version_for(version if version in rt.versions else None),
                "metadata": meta, "items": items}

    def watch(self, group: str | None = None, plural: str | None = None,
              namespace: str | None = None, resource_version: str | None = None,
              label_selector=None, field_selector=None, version: str | None = None,
              shared: bool = False) -> Watch:
        """shared: the events carry the stored objects, not copies - for consumers in this
        process that never modify what they are handed (see Watch)."""
        rt = self._type(group, plural) if plural is not None else None
        if rt is not None:
            self._check_verb(rt, "watch")
        ls, fs = self._selectors(rt, label_selector, field_selector)
        w = Watch(self, rt, group, plural, namespace, version, ls, fs, self._watch_max_pending,
                  shared)
        if resource_version in (None, "", "0"):
            types = [rt] if rt else [t for t in self.registry.all()
                                     if group is None or t.group == group]
            for t in types:
                for _, _, obj in self._iter(t, namespace if t.namespaced else None):
                    w._offer("ADDED", t, obj, None, initial=True)
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise bad_request(f'invalid resource version "{resource_version}"')
            if since < self._evicted_rv:
                oldest = self._history[0][0] - 1 if self._history else self._rv
                raise gone(f"too old resource version: {since} ({oldest})")
            for rv, etype, t, obj, old in self._history:
                if rv > since:
                    w._offer(etype, t, obj, old, initial=True)
        self._watchers.add(w)
        return w

    # ---- write verbs
    def create(self, group: str, plural: str, namespace: str | None, obj: dict,
               dry_run: bool = False, subresource: str | None = None,
               field_validation: str | None = None, *,
               managed_fields: list | None = None, field_manager: str | None = None) -> dict:
        """field_manager: who writes (the request's fieldManager, else its User-Agent's
        prefix); None (lab-internal writes) records no managedFields entry."""
        rt = self._type(group, plural)
        if subresource:
            return self._create_subresource(rt, namespace, obj, subresource, dry_run)
        self._check_verb(rt, "create")
        obj = self._decode(rt, obj)
        ns = self._ns(rt, namespace)
        meta = obj.setdefault("metadata", {})
        self._check_namespace_field(rt, ns, meta)
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            for _ in range(8):
                # the prefix is cut so the generated name fits 63 characters, as upstream does
                candidate = (meta["generateName"][:58]
                             + "".join(random.choices(_NAME_ALPHABET, k=5)))
                if self._stored(rt, ns, candidate) is None:
                    break
            meta["name"] = candidate
        if rt.namespaced:
            meta["namespace"] = ns
            for plugin in self._plugins:
                plugin.check_create(self, rt, ns, meta.get("name", ""))
        else:
            meta.pop("namespace", None)
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(k, None)
        if managed_fields:
            meta["managedFields"] = managed_fields
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self.timestamp()
        if rt.has_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        strategy = self._strategy(rt)
        if rt.has_status:
            strategy.reset_status(obj)
        decoded = None
        if managed_fields is None and field_manager is not None:
            # the creator owns every field it sent or defaulting set, not what admission and
            # the strategy add (create.go runs the field manager before admission)
            decoded = functools.partial(self._record_update, rt, None, field_manager, None, None)
        self._admit(rt, obj, None, field_validation, decoded)
        name = meta["name"]
        if self._stored(rt, ns, name) is not None:
            raise already_exists(rt.group_resource, name)
        if dry_run:
            return self._out(rt, obj)
        meta["resourceVersion"] = self._next_rv()
        self._put(rt, obj)
        strategy.written(self, obj, None)
        self._emit("ADDED", rt, obj)
        return self._out(rt, obj)

    def update(self, group: str, plural: str, namespace: str | None, name: str, obj: dict,
               subresource: str | None = None, dry_run: bool = False,
               field_validation: str | None = None, field_manager: str | None = None) -> dict:
        rt = self._type(group, plural)
        if subresource:
            self._check_verb(rt, "update", subresource)
        else:
            self._check_verb(rt, "update")
        if not isinstance(obj, dict):
            raise bad_request("the body of the request is not a JSON object")
        obj = fast_copy(obj)
        old = self._stored(rt, namespace, name)
        if subresource == "scale":
            return self._update_scale(rt, namespace, name, obj, dry_run, field_manager)
        body_meta = obj.get("metadata") or {}
        if body_meta.get("name") and body_meta["name"] != name:
            raise bad_request(f"the name of the object ({body_meta['name']}) does not match "
                              f"the name on the URL ({name})")
        if old is None:
            if rt.allow_create_on_update and not subresource:
                obj.setdefault("metadata", {})["name"] = name
                obj["metadata"].pop("resourceVersion", None)
                return self.create(group, plural, namespace, obj, dry_run=dry_run,
                                   field_validation=field_validation,
                                   field_manager=field_manager)
            raise not_found(rt.group_resource, name)
        return self._commit_update(rt, old, obj, subresource, dry_run, field_validation,
                                   field_manager=field_manager)

    def patch(self, group: str, plural: str, namespace: str | None, name: str, patch,
              patch_type: str, subresource: str | None = None, dry_run: bool = False,
              field_manager: str | None = None, force: bool = False,
              field_validation: str | None = None, version: str | None = None) -> dict:
        """version: the served version the patch is written against (default: storage)."""
        rt = self._type(group, plural)
        if subresource:
            self._check_verb(rt, "patch", subresource)
        else:
            self._check_verb(rt, "patch")
        if isinstance(patch, (bytes, str)):
            try:
                patch = json.loads(patch)
            except ValueError as e:
                if patch_type != "apply":
                    raise bad_request(f"error decoding patch: {e}")
                patch = yaml.safe_load(patch)  # apply bodies may be YAML
        if patch_type == "strategic" and not rt.builtin:
            raise unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml")
        old = self._stored(rt, namespace, name)
        if old is None:
            if patch_type == "apply" and not subresource:
                if not isinstance(patch, dict):
                    raise bad_request("apply patch must be an object")
                body = fast_copy(patch)
                body.setdefault("metadata", {})["name"] = name
                entry = self._apply_entry(rt, field_manager, field_set(
                    patch, rt.kind, rt.builtin))
                return self.create(group, plural, namespace, body, dry_run=dry_run,
                                   field_validation=field_validation, managed_fields=[entry])
            raise not_found(rt.group_resource, name)
        if subresource == "scale":
            current = self._scale_of(rt, old)
        else:
            current = self._out(rt, old, version)
        try:
            if patch_type == "json":
                new = json_patch(current, patch)
            elif patch_type == "merge":
                if not isinstance(patch, dict):
                    raise PatchError("json: cannot unmarshal into a JSON merge patch object", 400)
                new = merge_patch(current, patch)
            elif patch_type == "strategic":
                new = strategic_merge(current, patch, current.get("kind"))
            elif patch_type == "apply":
                if not isinstance(patch, dict):
                    raise PatchError("apply patch must be an object", 400)
                new, managed = self._server_side_apply(rt, current, patch, field_manager, force)
            else:
                raise unsupported_media_type(f"unsupported patch type {patch_type!r}")
        except PatchError as e:
            if e.code == 400:
                raise bad_request(str(e))
            raise ApiError(422, "Invalid", str(e))
        if not isinstance(new, dict):
            raise bad_request("patched object is not a JSON object")
        if subresource == "scale":
            return self._update_scale(rt, namespace, name, new, dry_run,
                                      None if patch_type == "apply" else field_manager)
        new_meta = new.get("metadata") or {}
        if new_meta.get("name") != name:
            raise bad_request(f"the name of the object ({new_meta.get('name')}) does not match "
                              f"the name on the URL ({name})")
        managed_fields = None
        if patch_type == "apply":
            if not (isinstance(patch.get("metadata"), dict)
                    and patch["metadata"].get("resourceVersion")):
                new_meta.pop("resourceVersion", None)
            managed_fields = managed
        return self._commit_update(rt, old, new, subresource, dry_run, field_validation,
                                   managed_fields,
                                   field_manager=None if patch_type == "apply" else field_manager)

    def _record_update(self, rt: ResourceType, old: dict | None, manager: str,
                       subresource: str | None, owned_as: str | None, body: dict) -> None:
        """Set body's managedFields to what they are after manager's Update of old (None: a
        create) to body."""
        bm = body["metadata"]
        base = bm.get("managedFields") or [] if old is not None else []
        entries = self._managed_after_update(rt, base, old, body, manager, subresource, owned_as)
        if entries:
            bm["managedFields"] = entries
        else:
            bm.pop("managedFields", None)

    def _managed_after_update(self, rt: ResourceType, base: list, old: dict | None, new: dict,
                              manager: str, subresource: str | None,
                              owned_as: str | None = None) -> list:
        """managedFields after an Update operation (create: old None) of manager: the fields
        it set or changed join its entry (one per manager, apiVersion and subresource; its time
        is now), leave every other manager's entry, and removed fields leave every entry;
        entries left with no field go (managedfieldsupdater.go; structured-merge-diff
        merge/update.go Updater.update). A write that changes nothing leaves them as they are."""
        view = _owned_view(new, subresource, rt.has_status)
        changed: set = set()
        removed: set = set()
        if old is None:
            strategy = self._strategy(rt)
            tree = fields_tree(view, rt.kind, rt.builtin, strategy.zero_fields,
                               strategy.atomic_fields)
            if not tree:
                return []
            return [self._update_entry(manager, rt.api_version, owned_as or subresource, tree)]
        diff_fields(_owned_view(old, subresource, rt.has_status), view, rt.kind, rt.builtin,
                    changed, removed, atomic=self._strategy(rt).atomic_fields)
        owned_as = owned_as or subresource
        api_version = rt.api_version
        out, mine = [], None
        for e in base:
            if not isinstance(e, dict) or not e.get("fieldsV1") and e.get("operation") != "Apply":
                continue
            if e.get("operation") == "Update" and (e.get("manager") or "") == manager and \
                    e.get("apiVersion") == api_version and e.get("subresource") == owned_as:
                if changed:
                    mine = e
                    continue
            tree = e.get("fieldsV1")
            if isinstance(tree, dict) and (tree_has_any(tree, changed) or tree_has_any(tree, removed)):
                tree = tree_copy(tree, changed | removed)
                tree_discard(tree, changed, whole=False)
                tree_discard(tree, removed, whole=True)
                if not tree:
                    continue
                e = dict(e, fieldsV1=tree)
            out.append(e)
        if changed:
            tree = tree_copy(mine.get("fieldsV1") or {}, changed | removed) if mine else {}
            tree_discard(tree, removed, whole=True)
            tree_insert(tree, changed, self._strategy(rt).zero_fields)
            out.append(self._update_entry(manager, api_version, owned_as, tree))
            if len(out) > MAX_UPDATE_MANAGERS:
                out = _cap_update_managers(out)
            out.sort(key=_entry_order)
        return out

    def _update_entry(self, manager: str, api_version: str, subresource: str | None,
                      tree: dict) -> dict:
        entry = {"manager": manager, "operation": "Update", "apiVersion": api_version,
                 "time": self.timestamp(), "fieldsType": "FieldsV1", "fieldsV1": tree}
        if not manager:
            del entry["manager"]  # omitempty
        if subresource:
            entry["subresource"] = subresource
        return entry

    def _apply_entry(self, rt: ResourceType, manager: str | None, fields: set) -> dict:
        return {"manager": manager or "unknown", "operation": "Apply",
                "apiVersion": rt.api_version, "time": self.timestamp(), "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(fields)}

    def _server_side_apply(self, rt: ResourceType, live: dict, applied: dict,
                           manager: str | None, force: bool) -> tuple[dict, list]:
        """Merge an applied configuration with field ownership between managers.

        A field another manager (applier or Update) owns with a different value is a 409
        conflict unless force; fields this manager applied before and no longer applies are
        removed unless another manager owns them."""
        manager = manager or "unknown"
        entries = list((live.get("metadata") or {}).get("managedFields") or [])
        mine = next((e for e in entries if e.get("manager") == manager
                     and e.get("operation") == "Apply"), None)
        before = from_fields_v1(mine.get("fieldsV1")) if mine else set()
        others = [(e, from_fields_v1(e.get("fieldsV1"))) for e in entries if e is not mine]
        wanted = field_set(applied, rt.kind, rt.builtin)
        leaves = {p for p in wanted if not _has_descendant(wanted, p)}
        conflicts = [(_conflict_manager(e), p) for e, owned in others
                     for p in sorted(leaves & owned, key=path_string)
                     if value_at(live, p) != value_at(applied, p)]
        if conflicts and not force:
            details = details_for(rt.group_resource, live["metadata"]["name"])
            details["causes"] = [{"reason": "FieldManagerConflict", "message": f"conflict with {m}",
                                  "field": path_string(p)} for m, p in conflicts]
            raise ApiError(409, "Conflict", _conflict_message(conflicts), details)
        taken = {p for _, p in conflicts}
        kept_others = []
        for e, owned in others:
            left = owned - taken
            # a map or item stays owned only while some field under it (or itself, if it was
            # set as a whole) is still owned
            owned = {p for p in left if _has_descendant(left, p) or not _has_descendant(owned, p)}
            if owned:
                kept_others.append(dict(e, fieldsV1=to_fields_v1(owned)))
        owned_by_others = set().union(*(from_fields_v1(e["fieldsV1"]) for e in kept_others))
        new = apply_merge(live, applied, rt.kind, rt.builtin)
        remove_unapplied(new, before - wanted - owned_by_others)
        entry = self._apply_entry(rt, manager, wanted)
        if mine and before == wanted:
            entry["time"] = mine.get("time", entry["time"])  # an unchanged apply is a no-op
        return new, sorted(kept_others + [entry], key=_entry_order)

    def delete(self, group: str, plural: str, namespace: str | None, name: str,
               propagation_policy: str | None = None, preconditions: dict | None = None,
               dry_run: bool = False, grace_period_seconds: int | None = None) -> dict:
        return self.delete_with_status(group, plural, namespace, name, propagation_policy,
                                       preconditions, dry_run, grace_period_seconds)[0]

    def delete_with_status(self, group: str, plural: str, namespace: str | None, name: str,
                           propagation_policy: str | None = None,
                           preconditions: dict | None = None, dry_run: bool = False,
                           grace_period_seconds: int | None = None) -> tuple[dict, bool]:
        """Like delete; also says whether the object is gone (True: 200) or only marked for
        deletion and kept for its finalizers (False: the apiserver answers 202)."""
        rt = self._type(group, plural)
        self._check_verb(rt, "delete")
        old = self._must(rt, namespace, name)
        meta = old["metadata"]
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(rt.group_resource, name,
                           f"Precondition failed: UID in precondition: {pre['uid']}, "
                           f"UID in object meta: {meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(rt.group_resource, name,
                           f"Precondition failed: ResourceVersion in precondition: "
                           f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                           f"{meta['resourceVersion']}")
        if propagation_policy not in (None, "Foreground", "Background", "Orphan"):
            raise invalid("DeleteOptions", "", [validation.not_supported(
                "propagationPolicy", propagation_policy, ["Foreground", "Background", "Orphan"])])
        strategy = self._strategy(rt)
        strategy.check_delete(rt, old)
        finalizers = list(meta.get("finalizers") or [])
        gc_finalizer = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(
            propagation_policy)
        if gc_finalizer and gc_finalizer not in finalizers:
            finalizers.append(gc_finalizer)
        grace = strategy.grace_period(old, grace_period_seconds)
        pending = bool(finalizers) or grace > 0 or strategy.holds_removal(old)
        if pending:
            current_grace = meta.get("deletionGracePeriodSeconds")
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []) \
                    and (current_grace is None or grace >= current_grace):
                return self._out(rt, old), False
            new = dict(old)
            new["metadata"] = dict(meta)
            if finalizers:
                new["metadata"]["finalizers"] = finalizers
            if current_grace is None or grace < current_grace:
                # graceful deletion (running pods): the kubelet confirms once the grace ends
                new["metadata"]["deletionTimestamp"] = self.timestamp(grace)
                new["metadata"]["deletionGracePeriodSeconds"] = grace
            strategy.mark_deleting(new, old)
            if dry_run:
                return self._out(rt, new), False
            new["metadata"]["resourceVersion"] = self._next_rv()
            self._put(rt, new)
            self._emit("MODIFIED", rt, new, old)
            return self._out(rt, new), False
        if dry_run:
            return self._deleted_answer(rt, old), True
        self._remove(rt, old)
        return self._deleted_answer(rt, old), True

    def _deleted_answer(self, rt: ResourceType, obj: dict) -> dict:
        if rt.return_deleted_object:
            return self._out(rt, obj)
        details = {"name": obj["metadata"]["name"]}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = obj["metadata"]["uid"]
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": details}

    def delete_collection(self, group: str, plural: str, namespace: str | None,
                          label_selector=None, field_selector=None, dry_run: bool = False,
                          propagation_policy: str | None = None) -> dict:
        rt = self._type(group, plural)
        self._check_verb(rt, "deletecollection")
        ls, fs = self._selectors(rt, label_selector, field_selector)
        targets = [(ns, name) for ns, name, _ in self._select(rt, namespace, ls, fs)]
        items = []
        for ns, name in targets:
            if self._stored(rt, ns, name) is None:
                continue
            self.delete(group, plural, ns or None, name, propagation_policy=propagation_policy,
                        dry_run=dry_run)
            items.append(self._out(rt, self._stored(rt, ns, name) or {"metadata": {"name": name,
                                                                               "namespace": ns}}))
        return {"kind": rt.list_kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def apply_object(self, obj: dict) -> dict:
        """Create obj, or merge it into the existing one (by apiVersion/kind/namespace/name) as
        `kubectl apply` would: fields obj leaves out keep their live values (e.g. a bound
        PVC's volumeName). A .status in obj is then written through the status subresource,
        so lab-internal callers (seeds, bootstrap) can set status in one call."""
        rt = self.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise bad_request(f"no resource for {obj.get('apiVersion')} {obj.get('kind')}")
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") if rt.namespaced else None
        if rt.namespaced and not ns:
            ns = "default"
        existing = self._stored(rt, ns, meta.get("name", ""))
        body = fast_copy(obj)
        body.get("metadata", {}).pop("resourceVersion", None)
        if existing is None:
            out = self.create(rt.group, rt.plural, ns, body)
        else:
            body.pop("status", None)
            out = self.patch(rt.group, rt.plural, ns, meta["name"], body,
                             "strategic" if rt.builtin else "merge")
        if rt.has_status and "status" in obj and out.get("status") != obj["status"]:
            out["status"] = fast_copy(obj["status"])
            out = self.update(rt.group, rt.plural, ns, meta["name"], out, subresource="status")
        return out

    # ---- internals of writes
    def _decode(self, rt: ResourceType, obj: dict) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request is not a JSON object")
        obj = fast_copy(obj)
        av = obj.get("apiVersion")
        if av and av not in [rt.api_version_for(v) for v in rt.versions]:
            raise bad_request(f"the API version in the data ({av}) does not match the expected "
                              f"API version ({rt.api_version})")
        kind = obj.get("kind")
        if kind and kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind "
                              f"({rt.kind})")
        if av and av != rt.api_version:  # another served version: to the storage version
            obj = self._strategy(rt).from_version(obj, av.rpartition("/")[2])
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        self._strategy(rt).decode(obj)
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        return obj

    def _check_namespace_field(self, rt: ResourceType, ns: str, meta: dict) -> None:
        if rt.namespaced:
            if not ns:
                raise bad_request("the server could not find the requested resource: a "
                                  "namespace is required")
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")

    def _admit(self, rt: ResourceType, obj: dict, old: dict | None,
               field_validation: str | None = None, decoded: Callable | None = None) -> None:
        """Defaulting, admission plugins and validation; raises 422 Invalid.
        field_validation "Strict" turns fields a CRD schema does not know into a 400 (what
        kubectl's default --validate=strict gets); otherwise they are pruned silently. Built-in
        kinds are checked against Kubernetes' own definitions (strict JSON decoding).
        decoded(obj) runs once obj is decoded and defaulted, before admission (where
        kube-apiserver's create/update handlers run the field manager)."""
        strategy = self._strategy(rt)
        if rt.builtin and field_validation in ("Strict", "Warn"):
            unknown = validation.builtin_unknown_fields(obj, rt.group, rt.version, rt.kind)
            if unknown and old is not None:  # only what this write brings in
                known = set(validation.builtin_unknown_fields(old, rt.group, rt.version, rt.kind))
                unknown = [p for p in unknown if p not in known]
            if unknown and field_validation == "Strict":
                raise bad_request(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                    "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown))
            self._warnings += [f'unknown field "{p}"' for p in unknown]
        validation.prune_metadata(obj["metadata"])
        strategy.default(obj)
        errs: list = []
        schema = None if rt.builtin else rt.schemas.get(rt.version)
        if schema:
            dropped: list[str] = []
            validation.prune(obj, schema, root=True, dropped=dropped)
            if dropped and field_validation == "Strict":
                raise bad_request(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}:'
                    " strict decoding error: "
                    + ", ".join(f'unknown field "{p}"' for p in dropped))
            if dropped and field_validation in (None, "Warn"):  # the server's default: Warn
                self._warnings += [f'unknown field "{p}"' for p in dropped]
            validation.default(obj, schema)
        if decoded is not None:
            decoded(obj)
        strategy.admit(self, obj, old)
        for plugin in self._plugins:
            plugin.admit(self, rt, obj, old)
        if schema:
            errs += validation.schema_errors(obj, schema, old=old if old is not None else validation.ABSENT)
        errs = (validation.validate_metadata(rt.group, rt.plural, obj.get("metadata") or {})
                + strategy.validate(obj) + errs)
        if old is not None:
            errs += strategy.validate_update(obj, old)
        if errs:
            raise invalid(_qualified_kind(rt), obj["metadata"].get("name", ""), errs)
        strategy.finish(self, obj, old)

    def _put(self, rt: ResourceType, obj: dict) -> None:
        m = obj["metadata"]
        objs = self._bucket(rt).setdefault(m.get("namespace", "") if rt.namespaced else "", {})
        old = objs.get(m["name"])
        if old is not None:
            self._blobs.pop(id(old), None)
        objs[m["name"]] = obj
        managed = m.get("managedFields")
        if managed:
            bare = dict(obj)
            bare["metadata"] = {k: v for k, v in m.items() if k != "managedFields"}
            self._blobs[id(obj)] = (obj, pickle.dumps(bare, pickle.HIGHEST_PROTOCOL), managed)
        else:
            self._blobs[id(obj)] = (obj, pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), None)

    def _remove(self, rt: ResourceType, old: dict) -> None:
        """Drop old from storage and emit DELETED (at a new resourceVersion)."""
        self._strategy(rt).removing(self, old)
        m = old["metadata"]
        ns = m.get("namespace", "") if rt.namespaced else ""
        bucket = self._bucket(rt)
        self._blobs.pop(id(bucket.get(ns, {}).pop(m["name"], None)), None)
        if ns in bucket and not bucket[ns]:
            del bucket[ns]
        gone_obj = dict(old)
        gone_obj["metadata"] = dict(m, resourceVersion=self._next_rv())
        self._emit("DELETED", rt, gone_obj)

    def _commit_update(self, rt: ResourceType, old: dict, obj: dict, subresource: str | None,
                       dry_run: bool, field_validation: str | None = None,
                       managed_fields: list | None = None, field_manager: str | None = None,
                       owned_as: str | None = None) -> dict:
        """Shared tail of update and patch: merge server-owned fields, admit, store.
        managed_fields: an apply's entries; else field_manager's Update entry is recorded
        (for subresource, or `owned_as` when a subresource writes through the main one)."""
        strategy = self._strategy(rt)
        name = old["metadata"]["name"]
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        record = None
        if managed_fields is None and field_manager is not None:
            # the field manager's Update (main resource: after decoding and defaulting, before
            # admission, as update.go/patch.go run it)
            record = functools.partial(self._record_update, rt, old, field_manager,
                                       subresource if subresource != "scale" else None,
                                       owned_as or subresource)
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt.group_resource, name, "the object has been modified; please apply "
                           "your changes to the latest version and try again")
        if subresource == "status":
            av = obj.get("apiVersion")
            if av and av != rt.api_version and av in [rt.api_version_for(v) for v in rt.versions]:
                obj = self._strategy(rt).from_version(fast_copy(obj), av.rpartition("/")[2])
            new = dict(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            new["metadata"] = dict(old["metadata"])
        elif subresource:
            new = strategy.update_subresource(subresource, old, obj)
        else:
            new = self._decode(rt, obj)
            nm = new.setdefault("metadata", {})
            if rt.namespaced and nm.get("namespace") and \
                    nm["namespace"] != old["metadata"].get("namespace"):
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            om = old["metadata"]
            for k in ("uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation", "namespace", "name"):
                if k in om:
                    nm[k] = om[k]
                else:
                    nm.pop(k, None)
            # managedFields are the server's: apply sets them, other writes keep them unless
            # they set them explicitly (fieldmanager.go Update: a non-empty list in the body
            # replaces the live one; `[{}]` clears them)
            sent = nm.get("managedFields")
            if sent and sent != om.get("managedFields") and field_manager is not None:
                sent = _decoded_entries(sent)
            if managed_fields is not None:
                nm["managedFields"] = managed_fields
            elif field_manager is not None and sent and sent != om.get("managedFields"):
                nm["managedFields"] = sent
            elif om.get("managedFields"):
                nm["managedFields"] = om["managedFields"]
            else:
                nm.pop("managedFields", None)
            nm.pop("selfLink", None)
            if om.get("deletionTimestamp"):
                added = set(nm.get("finalizers") or []) - set(om.get("finalizers") or [])
                if added:
                    raise invalid(_qualified_kind(rt), name, [validation.forbidden(
                        "metadata.finalizers", "no new finalizers can be added if the object "
                                               "is being deleted, found new finalizers "
                        + json.dumps(sorted(added)))])
            if rt.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            strategy.prepare_for_update(new, old)
            self._admit(rt, new, old, field_validation, record)
            record = None
            if rt.has_generation:
                nm["generation"] = om.get("generation", 1) + (
                    0 if _content(new, rt.has_status) == _content(old, rt.has_status) else 1)
        if record is not None:
            record(new)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old:
            return self._out(rt, old)  # no-op writes neither bump the RV nor emit events
        if dry_run:
            return self._out(rt, new)
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._put(rt, new)
        if not subresource:
            strategy.written(self, new, old)
        self._emit("MODIFIED", rt, new, old)
        nm = new["metadata"]
        if nm.get("deletionTimestamp") and not nm.get("finalizers") and \
                not strategy.holds_removal(new):
            self._remove(rt, new)
        return self._out(rt, new)

    # ---- subresources
    def _scale_of(self, rt: ResourceType, obj: dict) -> dict:
        spec = rt.scale
        m = obj["metadata"]
        if spec is None:
            raise resource_not_found()
        if rt.builtin:
            selector = selector_string((obj.get("spec") or {}).get("selector"))
        else:
            selector = (_path_get(obj, spec.label_selector_path)
                        if spec.label_selector_path else None)
        status = {"replicas": _path_get(obj, spec.status_replicas_path) or 0}
        if selector:
            status["selector"] = selector
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": m["name"], "namespace": m.get("namespace"),
                             "uid": m["uid"], "resourceVersion": m["resourceVersion"],
                             "creationTimestamp": m["creationTimestamp"]},
                "spec": {"replicas": _path_get(obj, spec.spec_replicas_path) or 0},
                "status": status}

    def _update_scale(self, rt, namespace, name, scale: dict, dry_run: bool,
                      field_manager: str | None = None) -> dict:
        old = self._must(rt, namespace, name)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid("Scale.autoscaling", name, [validation.invalid(
                "spec.replicas", replicas, "must be greater than or equal to 0")])
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        new = self._out(rt, old)
        new["metadata"]["resourceVersion"] = rv or old["metadata"]["resourceVersion"]
        _path_set(new, rt.scale.spec_replicas_path, replicas)
        out = self._commit_update(rt, old, new, None, dry_run, field_manager=field_manager,
                                  owned_as="scale")
        if dry_run:
            return self._scale_of(rt, out)
        return self._scale_of(rt, self._must(rt, namespace, name))

    def _create_subresource(self, rt, namespace, body, subresource, dry_run):
        self._check_verb(rt, "create", subresource)
        name = (body.get("metadata") or {}).get("name", "")
        old = self._must(rt, namespace, name)
        return self._strategy(rt).create_subresource(self, rt, namespace, self._out(rt, old),
                                                     body, subresource, dry_run)

    def drop_type(self, group: str, plural: str) -> None:
        """Stop serving a type: its objects go first, each with a DELETED event."""
        rt = self.registry.get(group, plural)
        if rt is None:
            return
        for _, _, obj in list(self._iter(rt, None)):
            self._remove(rt, obj)
        self._data.pop((group, plural), None)
        self.registry.remove(group, plural)
