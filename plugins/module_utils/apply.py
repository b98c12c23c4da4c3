# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one apply engine: bring a cluster to a list of objects, in phases, honestly.

For each object the live one is read first; when it already holds every field we would set,
nothing is written (so ``changed`` means something changed). Otherwise it is sent as a
server-side apply (field manager ``fleetdr``): a field another manager owns is a conflict,
reported and not forced unless asked. Phases follow the API's own dependencies: CRDs first and
waited for until Established, then namespaces, then everything else. Check mode reads and
compares but writes nothing; each change carries a before/after diff with Secret data masked.
Removal (uninstall) goes through the same engine in reverse order.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import json

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ApiError, FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for

FIELD_MANAGER = "fleetdr"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MASK = "********"

# (apiVersion, kind) -> (plural, namespaced) for the built-in kinds installs use; custom kinds come
# from the CRDs in the same object list, or from the cluster's discovery.
BUILTIN_KINDS = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("storage.k8s.io/v1", "StorageClass"): ("storageclasses", False),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("scheduling.k8s.io/v1", "PriorityClass"): ("priorityclasses", False),
}
CRD_KEY = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
CRD_COLLECTION = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
NAMESPACE_KEY = ("v1", "Namespace")


def _key(obj):
    return obj.get("apiVersion"), obj.get("kind")


def describe(obj):
    meta = obj.get("metadata") or {}
    name = "{0}/{1}".format(meta["namespace"], meta.get("name")) if meta.get("namespace") else meta.get("name")
    return "{0} {1}".format(obj.get("kind"), name)


class ResourceMapper(object):
    """Where an object lives in the API: built-in kinds, the CRDs being applied, then discovery."""

    def __init__(self, objects=()):
        self.kinds = dict(BUILTIN_KINDS)
        for obj in objects:
            if _key(obj) == CRD_KEY:
                spec = obj.get("spec") or {}
                names = spec.get("names") or {}
                for version in spec.get("versions") or []:
                    self.kinds[("{0}/{1}".format(spec.get("group"), version.get("name")), names.get("kind"))] = (
                        names.get("plural"), spec.get("scope") == "Namespaced")
        self._discovered = {}

    def _discover(self, client, api_version):
        if api_version not in self._discovered:
            prefix = "/api/" if api_version == "v1" else "/apis/"
            listing = client.request("Discovering {0}".format(api_version), "GET", prefix + api_version, missing_ok=True) or {}
            self._discovered[api_version] = dict(
                (r["kind"], (r["name"], r.get("namespaced", False))) for r in listing.get("resources") or [] if "/" not in r["name"])
        return self._discovered[api_version]

    def paths(self, client, obj):
        """(collection path, object path) of ``obj``."""
        api_version, kind = _key(obj)
        found = self.kinds.get((api_version, kind)) or self._discover(client, api_version).get(kind)
        if found is None:
            raise FleetdrError("no kind {0} in {1} on this cluster (is its CRD installed?)".format(kind, api_version))
        plural, namespaced = found
        base = ("/api/" if api_version == "v1" else "/apis/") + api_version
        meta = obj.get("metadata") or {}
        if namespaced:
            base += "/namespaces/{0}".format(meta.get("namespace"))
        collection = "{0}/{1}".format(base, plural)
        return collection, "{0}/{1}".format(collection, meta.get("name"))


# --------------------------------------------------------------------------- comparing

def _normalised(obj):
    """The object as we would send it: no status, Secret stringData folded into data. A shallow
    copy: nothing below the top level is changed, and a deep copy of 13 CRDs per cluster was most
    of a no-change install's comparing time."""
    out = dict(obj)
    out.pop("status", None)
    if out.get("kind") == "Secret" and out.get("stringData"):
        data = dict(out.get("data") or {})
        for key, value in out.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
        out["data"] = data
    return out


def _identical(want, have):
    """Equal with JSON types kept apart (Python's == takes True for 1)."""
    try:
        return json.dumps(want, sort_keys=True) == json.dumps(have, sort_keys=True)
    except (TypeError, ValueError):
        return False


def holds(want, have):
    """True when ``have`` already holds every field of ``want`` (server defaults may add more).

    Most subtrees come back exactly as sent (a CRD's schema is thousands of nodes): they are
    compared whole first, in C, and walked only where the server added something."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return (want == have and _identical(want, have)) or all(holds(value, have.get(key)) for key, value in want.items())
    if isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            return False
        return (want == have and _identical(want, have)) or all(holds(w, h) for w, h in zip(want, have))
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return want == have
    return want == have


def _projection(want, have):
    """The part of ``have`` that ``want`` speaks about (for a readable diff)."""
    if isinstance(want, dict) and isinstance(have, dict):
        return dict((key, _projection(value, have.get(key))) for key, value in want.items() if key in have)
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        return [_projection(w, h) for w, h in zip(want, have)]
    return copy.deepcopy(have)


def _masked(obj):
    if obj and obj.get("kind") == "Secret":
        obj = dict(obj, data=dict((key, MASK) for key in (obj.get("data") or {})))
        obj.pop("stringData", None)
    return obj


# --------------------------------------------------------------------------- applying

class Change(dict):
    """One object's outcome: {object, action (create|update|unchanged|delete|absent), diff}; the
    object as read from the cluster, or as the API answered the apply, is ``live`` (not part of the
    dict: never reported)."""

    live = None


_UNREAD = object()


def _shared_labels(objects):
    """The (key, value) labels every one of ``objects`` carries."""
    shared = None
    for obj in objects:
        labels = set(((obj.get("metadata") or {}).get("labels") or {}).items())
        shared = labels if shared is None else shared & labels
    return shared or set()


def read_many(client, mapper, objects):
    """{object path: live object or None} for objects that share a collection, one LIST per
    collection narrowed by the labels they all carry (13 CRDs: one request, not 13)."""
    groups = {}
    for obj in objects:
        collection, path = mapper.paths(client, obj)
        groups.setdefault(collection, []).append((path, obj))
    live = {}
    for collection, members in groups.items():
        if len(members) < 2:
            continue
        shared = _shared_labels([obj for _path, obj in members])
        query = {"labelSelector": ",".join("{0}={1}".format(k, v) for k, v in sorted(shared))} if shared else None
        listing = client.request("Listing {0}".format(collection), "GET", collection, query=query, missing_ok=True) or {}
        found = dict(((item.get("metadata") or {}).get("name"), item) for item in listing.get("items") or [])
        for path, obj in members:
            item = found.get(obj["metadata"].get("name"))
            if item is not None:  # list items carry no apiVersion/kind of their own
                item = dict(item, apiVersion=obj.get("apiVersion"), kind=obj.get("kind"))
            live[path] = item
    return live


# id(CRD) -> (the CRD, its JSON text). A fleet run applies the same CRD dicts (rendered once) to every
# cluster: each is serialised once per run, not once per cluster (13 Velero CRDs, ~2 ms per cluster).
_CRD_TEXTS = {}


def _body(obj, want):
    """What to send for ``obj`` (``want`` is its normalised copy)."""
    if _key(obj) != CRD_KEY:
        return want
    known = _CRD_TEXTS.get(id(obj))
    if known is None or known[0] is not obj:
        known = _CRD_TEXTS[id(obj)] = (obj, json.dumps(want))
    return known[1]


def apply_object(client, mapper, obj, check_mode=False, force=False, live=_UNREAD):
    want = _normalised(obj)
    collection, path = mapper.paths(client, want)
    del collection
    if live is _UNREAD:
        live = client.request("Reading {0}".format(describe(want)), "GET", path, missing_ok=True)
    if live is not None and holds(want, live):
        change = Change(object=describe(want), action="unchanged")
        change.live = live
        return change
    change = Change(object=describe(want), action="create" if live is None else "update",
                    diff={"before": _masked(_projection(want, live)) if live is not None else {}, "after": _masked(want)})
    if check_mode:
        return change
    query = {"fieldManager": FIELD_MANAGER}
    if force:
        query["force"] = "true"
    try:
        # The answer is the object as applied (``live``: a waiter can start watching from it). A CRD's
        # is large and nothing reads it: not decoded.
        change.live = client.request("Applying {0}".format(describe(want)), "PATCH", path, body=_body(obj, want), query=query,
                                     content_type=APPLY_CONTENT_TYPE, answer=_key(obj) != CRD_KEY)
    except ApiError as exc:
        if exc.status == 409:
            raise FleetdrError("{0} has fields owned by another manager (set force_conflicts to take them over): {1}".format(
                describe(want), exc.body or exc.msg))
        raise
    return change


def _established(crd):
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def apply_phased(client, objects, check_mode=False, force=False, timeout=60, absent=()):
    """Apply ``objects`` in dependency order, then delete the ``absent`` ones (what is switched
    off); returns the list of Changes.

    CRDs first (then waited for until Established, unless in check mode), namespaces next, then
    the rest in the order given. In check mode on a cluster that lacks a CRD or namespace, the
    objects that need it are planned as creates without asking the API about them.
    """
    mapper = ResourceMapper(objects)
    crds = [o for o in objects if _key(o) == CRD_KEY]
    namespaces = [o for o in objects if _key(o) == NAMESPACE_KEY]
    rest = [o for o in objects if _key(o) not in (CRD_KEY, NAMESPACE_KEY)]
    known = read_many(client, mapper, crds)
    changes = [apply_object(client, mapper, o, check_mode, force, known.get(mapper.paths(client, o)[1], _UNREAD)) for o in crds]
    new_kinds = set(((c.get("spec") or {}).get("group"), ((c.get("spec") or {}).get("names") or {}).get("kind"))
                    for c, change in zip(crds, changes) if change["action"] == "create")
    pending = [crd["metadata"]["name"] for crd, change in zip(crds, changes) if change["action"] != "unchanged"]
    if pending and not check_mode:
        # One watch over the CRD collection for all of them, narrowed by the labels they share.
        shared = _shared_labels([crd for crd in crds if crd["metadata"]["name"] in pending])
        selector = ",".join("{0}={1}".format(k, v) for k, v in sorted(shared)) or None

        def all_established(state):
            return all(_established(state["items"].get(name)) for name in pending)

        try:
            wait_for(client.watch_collection(CRD_COLLECTION, selector), all_established, timeout,
                     "CustomResourceDefinitions {0} to be Established".format(", ".join(pending)))
        except WaitTimeout as exc:
            late = [name for name in pending if not _established(((exc.last or {}).get("items") or {}).get(name))]
            raise FleetdrError("CustomResourceDefinition {0} not Established within {1}s".format(", ".join(late or pending), timeout))
    new_namespaces = set()
    for obj in namespaces:
        change = apply_object(client, mapper, obj, check_mode, force)
        changes.append(change)
        if change["action"] == "create":
            new_namespaces.add(obj["metadata"]["name"])
    for obj in rest:
        # An object in a namespace just created, or of a kind just defined, cannot exist yet: no read
        # (in check mode the API could not even answer for it).
        if ((obj.get("metadata") or {}).get("namespace") in new_namespaces
                or ((obj.get("apiVersion") or "").split("/")[0], obj.get("kind")) in new_kinds):
            if check_mode:
                want = _normalised(obj)
                changes.append(Change(object=describe(want), action="create", diff={"before": {}, "after": _masked(want)}))
            else:
                changes.append(apply_object(client, mapper, obj, check_mode, force, live=None))
            continue
        changes.append(apply_object(client, mapper, obj, check_mode, force))
    gone = [obj for obj in absent if (obj.get("metadata") or {}).get("namespace") in new_namespaces]
    changes += [Change(object=describe(obj), action="absent") for obj in reversed(gone)]
    return changes + remove(client, [obj for obj in absent if obj not in gone], check_mode, mapper)


def remove(client, objects, check_mode=False, mapper=None):
    """Delete ``objects`` in reverse order (what exists); returns the list of Changes."""
    mapper = mapper or ResourceMapper(objects)
    changes = []
    for obj in reversed(list(objects)):
        try:
            _collection, path = mapper.paths(client, obj)
        except FleetdrError:  # its kind is already gone with its CRD
            changes.append(Change(object=describe(obj), action="absent"))
            continue
        live = client.request("Reading {0}".format(describe(obj)), "GET", path, missing_ok=True)
        if live is None:
            changes.append(Change(object=describe(obj), action="absent"))
            continue
        if not check_mode:
            client.request("Deleting {0}".format(describe(obj)), "DELETE", path, missing_ok=True,
                           body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        changes.append(Change(object=describe(obj), action="delete", diff={"before": _masked(_projection(_normalised(obj), live)), "after": {}}))
    return changes


def changed(changes):
    return any(c["action"] not in ("unchanged", "absent") for c in changes)
