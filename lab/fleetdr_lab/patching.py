"""Patch types the apiserver accepts: JSON patch, JSON merge patch, strategic merge patch and
server-side apply's merge.

Strategic merge follows k8s.io/apimachinery/pkg/util/strategicpatch for built-in kinds: lists
with a patchMergeKey merge element-wise, `merge`-strategy primitive lists are sets, other lists
are replaced; the directives `$patch` (replace/delete/merge), `$retainKeys`,
`$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are honoured.
"""
from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _encode_str

import jsonpatch


class PatchError(ValueError):
    """A patch that cannot be applied; `code` is the HTTP status the apiserver answers with."""

    def __init__(self, message: str, code: int = 422):
        super().__init__(message)
        self.code = code


def _copy(v):
    return json.loads(json.dumps(v))


def json_patch(doc: dict, patch) -> dict:
    if isinstance(patch, (str, bytes)):
        patch = json.loads(patch)
    if not isinstance(patch, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch",
                         400)
    try:
        return jsonpatch.apply_patch(doc, patch, in_place=False)
    except jsonpatch.JsonPatchTestFailed as e:
        raise PatchError(f"the server rejected our request due to an error in our request: {e}")
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError,
            IndexError, TypeError) as e:
        raise PatchError(f"the server rejected our request due to an error in our request: {e}")


def merge_patch(doc, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return _copy(patch)
    result = dict(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# ---- strategic merge --------------------------------------------------------------------

_MERGE_BY_NAME = {"containers", "initContainers", "ephemeralContainers", "env", "volumes",
                  "imagePullSecrets", "secrets"}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


def list_strategy(path: tuple[str, ...], kind: str | None) -> tuple[str, str | None]:
    """("merge", key) | ("set", None) | ("replace", None) for the list at `path` (map keys
    from the object root, list indices left out) in an object of `kind`."""
    field = path[-1] if path else ""
    parent = path[:-1]
    if field in _MERGE_BY_NAME:
        if field == "secrets" and kind != "ServiceAccount":
            return ("replace", None)
        return ("merge", "name")
    if field == "ports":
        if parent and parent[-1] in _CONTAINER_LISTS:
            return ("merge", "containerPort")
        if kind == "Service" and path == ("spec", "ports"):
            return ("merge", "port")
        return ("replace", None)
    if field == "volumeMounts":
        return ("merge", "mountPath")
    if field == "volumeDevices":
        return ("merge", "devicePath")
    if field == "conditions":
        return ("merge", "type")
    if field == "finalizers" and parent == ("metadata",):
        return ("set", None)
    if field == "ownerReferences" and parent == ("metadata",):
        return ("merge", "uid")
    if field == "hostAliases":
        return ("merge", "ip")
    if field == "topologySpreadConstraints":
        return ("merge", "topologyKey")
    if field == "addresses" and kind == "Node":
        return ("merge", "type")
    return ("replace", None)


_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge(doc: dict, patch: dict, kind: str | None) -> dict:
    if not isinstance(patch, dict):
        raise PatchError("json: cannot unmarshal array into Go value of type map[string]interface {}",
                         400)
    result = _merge_map(_copy(doc), _copy(patch), (), kind)
    return result if result is not None else {}


def _strip_directives(v):
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items()
                if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v
                if not (isinstance(x, dict) and "$patch" in x and len(x) == 1)]
    return v


def _merge_map(orig: dict | None, patch: dict, path, kind):
    directive = patch.pop("$patch", None)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip_directives(patch)
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive} in map: {patch}", 400)
    result = dict(orig) if isinstance(orig, dict) else {}
    retain = patch.pop("$retainKeys", None)
    orders = {}
    deletes = {}
    for k in list(patch):
        if k.startswith(_SET_ORDER):
            orders[k[len(_SET_ORDER):]] = patch.pop(k)
        elif k.startswith(_DELETE_PRIMITIVE):
            deletes[k[len(_DELETE_PRIMITIVE):]] = patch.pop(k)
    for k, v in patch.items():
        sub = path + (k,)
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = _merge_map(result.get(k), v, sub, kind)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list):
            result[k] = _merge_list(result.get(k), v, sub, kind)
        else:
            result[k] = v
    for k, values in deletes.items():
        if isinstance(result.get(k), list):
            result[k] = [x for x in result[k] if x not in values]
    for k, order in orders.items():
        if isinstance(result.get(k), list):
            strategy, key = list_strategy(path + (k,), kind)
            result[k] = _apply_order(result[k], order, key)
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(orig, patch: list, path, kind) -> list:
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return _strip_directives([x for x in patch
                                  if not (isinstance(x, dict) and x.get("$patch") == "replace")])
    strategy, key = list_strategy(path, kind)
    orig = list(orig) if isinstance(orig, list) else []
    if strategy == "replace":
        return _strip_directives(patch)
    if strategy == "set" or not all(isinstance(x, dict) for x in patch):
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    out = list(orig)
    for item in patch:
        if key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict)
                    and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            out = [o for o in out if not (isinstance(o, dict) and o.get(key) == item[key])]
            continue
        if idx is None:
            merged = _merge_map(None, dict(item), path, kind)
            if merged is not None:
                out.append(merged)
        else:
            merged = _merge_map(out[idx], dict(item), path, kind)
            if merged is None:
                out.pop(idx)
            else:
                out[idx] = merged
    return out


def _apply_order(items: list, order: list, key: str | None) -> list:
    def ident(x):
        return x.get(key) if key and isinstance(x, dict) else x
    wanted = [ident(o) if key and isinstance(o, dict) else o for o in order]
    rank = {json.dumps(w, sort_keys=True): i for i, w in enumerate(wanted)}
    ordered = sorted((x for x in items if json.dumps(ident(x), sort_keys=True) in rank),
                     key=lambda x: rank[json.dumps(ident(x), sort_keys=True)])
    rest = [x for x in items if json.dumps(ident(x), sort_keys=True) not in rank]
    return ordered + rest


# ---- server-side apply ------------------------------------------------------------------

def apply_merge(live: dict, applied: dict, kind: str | None, builtin: bool) -> dict:
    """Merge an applied configuration into the live object.

    Lists merge by the built-in merge keys (which match the listMapKeys of built-in kinds)
    and are atomic for custom resources. Field ownership is handled by the Store with
    field_set/remove_unapplied below.
    """
    if builtin:
        return strategic_merge(live, _strip_directives(applied), kind)
    return _deep_merge(_copy(live), _copy(applied))


def _deep_merge(live, applied):
    if isinstance(live, dict) and isinstance(applied, dict):
        for k, v in applied.items():
            live[k] = _deep_merge(live.get(k), v) if k in live else v
        return live
    return applied


# ---- server-side apply field sets ---------------------------------------------------------
# A field path is a tuple of elements: ("f", key) a map key, ("k", '{"name":"x"}') an item of
# a keyed list, ("v", '"value"') a value of a set list. Atomic lists are leaves.


def field_set(obj, kind: str | None, builtin: bool, path: tuple = (), names: tuple = ()) -> set:
    """Every field path an applied configuration sets (maps and keyed items included)."""
    out: set = set()
    if not isinstance(obj, dict):
        return out
    for k, v in obj.items():
        if not path and k in ("apiVersion", "kind"):
            continue
        if path == (("f", "metadata"),) and k in ("name", "namespace", "uid",
                                                   "resourceVersion", "managedFields",
                                                   "creationTimestamp", "generation"):
            continue
        p = path + (("f", k),)
        if isinstance(v, dict):
            children = field_set(v, kind, builtin, p, names + (k,))
            if children or not v:   # a map whose only keys are server-owned is not applied
                out.add(p)
                out |= children
            continue
        out.add(p)
        if isinstance(v, list) and builtin:
            strategy, key = list_strategy(names + (k,), kind)
            if strategy == "merge":
                for item in v:
                    if isinstance(item, dict) and key in item:
                        ip = p + (("k", _item_key(item, key)),)
                        out.add(ip)
                        out |= field_set(item, kind, builtin, ip, names + (k,))
            elif strategy == "set":
                out |= {p + (("v", _value_key(x)),) for x in v}
    return out


# lists whose listMapKeys (server-side apply) are more than their patchMergeKey
_MAP_KEYS = {"containerPort": ("containerPort", "protocol"), "port": ("port", "protocol"),
             "topologyKey": ("topologyKey", "whenUnsatisfiable")}


def _item_key(item: dict, key: str) -> str:
    """A keyed list item's FieldsV1 key, `{"name":"c"}`, `{"port":80,"protocol":"TCP"}`
    (its listMapKeys in Go's compact JSON)."""
    keys = _MAP_KEYS.get(key)
    if keys is not None:
        return json.dumps({k: item[k] for k in keys if k in item}, separators=(",", ":"))
    v = item[key]
    if isinstance(v, str):
        return f'{{"{key}":{_encode_str(v)}}}'
    if isinstance(v, int) and not isinstance(v, bool):
        return f'{{"{key}":{v}}}'
    return json.dumps({key: v}, separators=(",", ":"))


def _value_key(x) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"))


_MISSING = object()


def diff_fields(old: dict, new: dict, kind: str | None, builtin: bool, changed: set,
                removed: set, path: tuple = (), names: tuple = (),
                atomic=frozenset()) -> None:
    """Add to `changed` the fields an Update operation sets going from old to new (leaves that
    differ, and maps / list items that appear, with everything under them) and to `removed`
    the ones that go (structured-merge-diff typed.Compare: Added+Modified, Removed). Subtrees
    equal in both are skipped at C speed, so a small change to a big object stays cheap."""
    for k, v in new.items():
        ov = old.get(k, _MISSING)
        if ov is v:
            continue
        if ov is _MISSING:
            if atomic and names + (k,) in atomic:
                changed.add(path + (("f", k),))   # an atomic struct (label selector): one leaf
            else:
                changed |= field_set({k: v}, kind, builtin, path, names)
            continue
        if ov == v:
            continue
        p = path + (("f", k),)
        if atomic and names + (k,) in atomic:
            changed.add(p)
        elif isinstance(v, dict) and isinstance(ov, dict):
            diff_fields(ov, v, kind, builtin, changed, removed, p, names + (k,), atomic)
        elif isinstance(v, list) and isinstance(ov, list) and builtin and v and ov:
            _diff_items(ov, v, kind, changed, removed, p, names + (k,), atomic)
        else:
            changed.add(p)
            if isinstance(ov, (dict, list)) and ov:
                removed |= field_set({k: ov}, kind, builtin, path, names) - {p}
    for k, ov in old.items():
        if k not in new:
            removed |= field_set({k: ov}, kind, builtin, path, names)


def _diff_items(old: list, new: list, kind, changed: set, removed: set, p: tuple,
                names: tuple, atomic) -> None:
    strategy, key = list_strategy(names, kind)
    if strategy == "set":
        before, after = {_value_key(x) for x in old}, {_value_key(x) for x in new}
        changed |= {p + (("v", x),) for x in after - before}
        removed |= {p + (("v", x),) for x in before - after}
        return
    if strategy != "merge" or not all(isinstance(x, dict) and key in x for x in old) or \
            not all(isinstance(x, dict) and key in x for x in new):
        changed.add(p)  # an atomic list is one leaf
        return
    before = {_item_key(x, key): x for x in old}
    after = {_item_key(x, key): x for x in new}
    for ik, item in after.items():
        ip = p + (("k", ik),)
        o = before.get(ik)
        if o is None:
            changed.add(ip)
            changed |= field_set(item, kind, True, ip, names)
        elif o != item:
            diff_fields(o, item, kind, True, changed, removed, ip, names, atomic)
    for ik, o in before.items():
        if ik not in after:
            ip = p + (("k", ik),)
            removed.add(ip)
            removed |= field_set(o, kind, True, ip, names)


# FieldsV1 trees are edited in place below (callers own the copies): a path is a tuple of
# (type, key) elements; its tree key is "type:key".

def tree_has_any(tree: dict, paths) -> bool:
    """True when tree (a FieldsV1 dict) holds one of paths."""
    for p in paths:
        node = tree
        for t, k in p:
            node = node.get(f"{t}:{k}")
            if node is None:
                break
        else:
            return True
    return False


def tree_copy(tree: dict, paths) -> dict:
    """A copy of tree that tree_insert/tree_discard of paths may edit: only the nodes on those
    paths are copied, the rest stays shared with tree (stored objects are never edited)."""
    root = dict(tree)
    copied = {id(root)}
    for p in paths:
        node = root
        for t, k in p:
            key = f"{t}:{k}"
            sub = node.get(key)
            if sub is None:
                break
            if id(sub) not in copied:
                sub = node[key] = dict(sub)
                copied.add(id(sub))
            node = sub
    return root


def tree_discard(tree: dict, paths, whole: bool) -> None:
    """Drop paths from a FieldsV1 tree: a leaf goes; a node with fields under it keeps them
    unless `whole` (removed from the object: everything under it goes too). Maps left without
    fields go as well (their ownership is only through their fields)."""
    for p in paths:
        trail = []
        node = tree
        for t, k in p:
            trail.append((node, f"{t}:{k}"))
            node = node.get(f"{t}:{k}")
            if node is None:
                break
        if node is None:
            continue
        if whole or not node or set(node) == {"."}:
            parent, key = trail.pop()
            del parent[key]
        else:
            node.pop(".", None)
            continue
        while trail:
            parent, key = trail.pop()
            if parent[key]:
                break
            del parent[key]


# A map, list or list item a write adds is itself a member of the writer's field set ("." in
# FieldsV1: typed.Compare's Added for non-leaf nodes), except where the kind's empty object
# already has it: `zero` holds those paths (map keys from the root; non-pointer structs and
# non-omitempty lists of built-in kinds; empty for custom resources).

def fields_tree(obj: dict, kind: str | None, builtin: bool, zero=frozenset(),
                atomic=frozenset(), names: tuple = ()) -> dict:
    """The FieldsV1 tree of every field of obj (what the manager of a create owns), built in
    one pass with keys in the apiserver's order; the same fields as tree_insert(field_set())
    into an empty tree. Null leaves of built-in kinds are what their empty object has."""
    out = {}
    for k in sorted(obj):
        v = obj[k]
        tv = type(v)
        if tv is dict:
            n = names + (k,)
            if v and n not in atomic:
                sub = fields_tree(v, kind, builtin, zero, atomic, n)
                out["f:" + k] = {".": {}, **sub} if sub and n not in zero and \
                    n != ("metadata",) else sub
            else:
                out["f:" + k] = {}
        elif tv is list and v and builtin:
            n = names + (k,)
            strategy, key = list_strategy(n, kind)
            if strategy == "merge":
                items = {"k:" + _item_key(x, key): {".": {}, **fields_tree(x, kind, True, zero,
                                                                           atomic, n)}
                         for x in v if type(x) is dict and key in x}
                items = {ik: items[ik] for ik in sorted(items)}
            elif strategy == "set":
                items = {"v:" + x: {} for x in sorted({_value_key(x) for x in v})}
            else:
                out["f:" + k] = {}
                continue
            out["f:" + k] = {".": {}, **items} if items and n not in zero else items
        elif v is not None or not builtin:
            out["f:" + k] = {}
    return out


def _order(node: dict) -> None:
    items = sorted(node.items())   # "." sorts before "f:", "k:", "v:"
    node.clear()
    node.update(items)


def tree_insert(tree: dict, paths, zero=frozenset()) -> None:
    """Add paths to a FieldsV1 tree, in place, keeping the apiserver's key order ("." first,
    then sorted); paths that get fields under them are marked "." unless in zero."""
    touched: dict = {}
    ends = []
    for p in paths:
        node = tree
        for t, k in p:
            key = t + ":" + k
            sub = node.get(key)
            if sub is None:
                sub = node[key] = {}
                touched[id(node)] = node
            node = sub
        ends.append((p, node))
    for p, node in ends:   # once every path is in: the ones with fields under them
        if node and "." not in node and (
                p[-1][0] == "k" or p != (("f", "metadata"),)
                and tuple(k for t, k in p if t == "f") not in zero):
            node["."] = {}
            touched[id(node)] = node
    for node in touched.values():
        if len(node) > 1:
            _order(node)


def to_fields_v1(paths: set) -> dict:
    root: dict = {}
    for p in sorted(paths, key=len):
        node = root
        for i, (t, k) in enumerate(p):
            node = node.setdefault(f"{t}:{k}", {})
            if t == "k" and i == len(p) - 1:
                node.setdefault(".", {})
    return root


def from_fields_v1(tree: dict, prefix: tuple = ()) -> set:
    out: set = set()
    for name, sub in (tree or {}).items():
        if name == ".":
            continue
        t, _, k = name.partition(":")
        p = prefix + ((t, k),)
        out.add(p)
        out |= from_fields_v1(sub, p)
    return out


def _step(node, element):
    t, k = element
    if t == "f":
        return node.get(k) if isinstance(node, dict) else None
    if t == "k" and isinstance(node, list):
        want = json.loads(k)
        return next((x for x in node if isinstance(x, dict)
                     and all(x.get(a) == b for a, b in want.items())), None)
    if t == "v" and isinstance(node, list):
        v = json.loads(k)
        return v if v in node else None
    return None


def value_at(obj, path: tuple):
    node = obj
    for el in path:
        node = _step(node, el)
        if node is None:
            return None
    return node


def delete_at(obj, path: tuple) -> None:
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    if parent is None:
        return
    t, k = path[-1]
    if t == "f" and isinstance(parent, dict):
        parent.pop(k, None)
    elif t == "k" and isinstance(parent, list):
        item = _step(parent, path[-1])
        if item is not None:
            parent.remove(item)
    elif t == "v" and isinstance(parent, list):
        v = json.loads(k)
        if v in parent:
            parent.remove(v)


def path_string(path: tuple) -> str:
    """`.spec.template.spec.containers[name="app"].image`, as conflict messages show paths."""
    out = ""
    for t, k in path:
        if t == "f":
            out += "." + k
        elif t == "k":
            out += "[" + ",".join(f"{a}={json.dumps(b)}" for a, b in json.loads(k).items()) + "]"
        else:
            out += f"[={k}]"
    return out


def remove_unapplied(obj: dict, removed: set) -> None:
    """Delete fields a manager no longer applies: leaves and keyed items, then maps left
    empty by that (deepest first, so children go before their parents)."""
    for p in sorted((p for p in removed if p[-1][0] in ("k", "v")), key=len):
        delete_at(obj, p)   # whole list items first, while their keys still find them
    for p in sorted((p for p in removed if p[-1][0] == "f"), key=len, reverse=True):
        node = value_at(obj, p)
        if node is None:
            continue
        has_children = any(len(q) > len(p) and q[:len(p)] == p for q in removed)
        if not has_children or node == {}:
            delete_at(obj, p)
