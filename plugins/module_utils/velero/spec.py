# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Module options -> Velero specs, and all input validation.

Everything here is pure (no API calls): a bad option fails with a
``ValidationError`` naming the option before anything is created. The rules
mirror what Velero's own controllers would reject later (FailedValidation), so
users learn about mistakes at once instead of from a failed object.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.argspec import RESTORE_SPEC_ARG_SPEC, RESTORE_TRANSFORM_ARG_SPEC

import importlib.util

# croniter is imported only where cron expressions are checked (velero_schedule).
HAS_CRONITER = importlib.util.find_spec("croniter") is not None
CRONITER_IMPORT_ERROR = None if HAS_CRONITER else "No module named 'croniter'"

try:
    from zoneinfo import ZoneInfo
except ImportError:  # pragma: no cover - Python < 3.9
    ZoneInfo = None


# option name -> Velero BackupSpec key, in the order they are documented.
BACKUP_LIST_OPTIONS = (
    ("included_namespaces", "includedNamespaces"),
    ("excluded_namespaces", "excludedNamespaces"),
    ("included_resources", "includedResources"),
    ("excluded_resources", "excludedResources"),
    ("included_cluster_scoped_resources", "includedClusterScopedResources"),
    ("excluded_cluster_scoped_resources", "excludedClusterScopedResources"),
    ("included_namespace_scoped_resources", "includedNamespaceScopedResources"),
    ("excluded_namespace_scoped_resources", "excludedNamespaceScopedResources"),
    ("volume_snapshot_locations", "volumeSnapshotLocations"),
)
BACKUP_SCALAR_OPTIONS = (
    ("include_cluster_resources", "includeClusterResources"),
    ("storage_location", "storageLocation"),
    ("default_volumes_to_fs_backup", "defaultVolumesToFsBackup"),
    ("snapshot_volumes", "snapshotVolumes"),
    ("snapshot_move_data", "snapshotMoveData"),
)
BACKUP_DURATION_OPTIONS = (
    ("ttl", "ttl"),
    ("csi_snapshot_timeout", "csiSnapshotTimeout"),
    ("item_operation_timeout", "itemOperationTimeout"),
)
# Every option that shapes a backup spec; velero_schedule's template uses the same list.
BACKUP_SPEC_OPTIONS = tuple(pair[0] for pair in BACKUP_LIST_OPTIONS + BACKUP_SCALAR_OPTIONS + BACKUP_DURATION_OPTIONS) + (
    "label_selector",
    "or_label_selectors",
    "hooks",
    "ordered_resources",
    "resource_policy",
)

OLD_STYLE_FILTERS = ("included_resources", "excluded_resources", "include_cluster_resources")
NEW_STYLE_FILTERS = (
    "included_cluster_scoped_resources",
    "excluded_cluster_scoped_resources",
    "included_namespace_scoped_resources",
    "excluded_namespace_scoped_resources",
)

NON_RESTORABLE = (
    "nodes",
    "events",
    "events.events.k8s.io",
    "backups.velero.io",
    "restores.velero.io",
    "resticrepositories.velero.io",
    "csinodes.storage.k8s.io",
    "volumeattachments.storage.k8s.io",
    "backuprepositories.velero.io",
)
EXISTING_RESOURCE_POLICIES = ("none", "update")

BACKUP_TERMINAL_PHASES = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")
RESTORE_TERMINAL_PHASES = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1000, "\u00b5s": 1000, "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9, "h": 3600 * 10 ** 9}


def parse_duration(value, option):
    """Parse a Go duration string (``72h``, ``1h30m``, ``90s``) into nanoseconds."""
    if isinstance(value, bool) or value is None:
        raise ValidationError(option, "must be a duration such as '720h' or '1h30m', got {0!r}".format(value))
    text = str(value).strip()
    if text == "0":
        return 0
    pos = 0
    total = 0
    if not text:
        raise ValidationError(option, "must not be empty")
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match or match.group(1) in ("", "."):
            raise ValidationError(
                option,
                "'{0}' is not a valid duration; use Go duration syntax with units h, m, s, ms "
                "(for example '720h', '1h30m', '45s'; days are not a unit, write '72h' for 3 days)".format(text),
            )
        number, unit = match.group(1), match.group(2)
        if "." in number:
            whole, frac = number.split(".", 1)
            total += int(whole or "0") * _UNIT_NS[unit]
            if frac:
                total += int(frac) * _UNIT_NS[unit] // (10 ** len(frac))
        else:
            total += int(number) * _UNIT_NS[unit]
        pos = match.end()
    return total


def format_duration(nanoseconds):
    """Format nanoseconds as Go's ``time.Duration.String()`` does (``720h0m0s``)."""
    if nanoseconds == 0:
        return "0s"
    if nanoseconds < 10 ** 9:
        for unit, size in (("ms", 10 ** 6), ("\u00b5s", 1000), ("ns", 1)):
            if nanoseconds >= size:
                return _trim_fraction(nanoseconds, size) + unit
    hours, rest = divmod(nanoseconds, 3600 * 10 ** 9)
    minutes, rest = divmod(rest, 60 * 10 ** 9)
    seconds = _trim_fraction(rest, 10 ** 9)
    if hours:
        return "{0}h{1}m{2}s".format(hours, minutes, seconds)
    if minutes:
        return "{0}m{1}s".format(minutes, seconds)
    return "{0}s".format(seconds)


def _trim_fraction(value, size):
    whole, frac = divmod(value, size)
    if not frac:
        return str(whole)
    digits = len(str(size)) - 1
    return "{0}.{1}".format(whole, str(frac).rjust(digits, "0").rstrip("0"))


def normalize_duration(value, option):
    return format_duration(parse_duration(value, option))


# --------------------------------------------------------------------------- label selectors

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _check_key(key, option):
    if not isinstance(key, str) or not _LABEL_KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise ValidationError(option, "'{0}' is not a valid label key".format(key))


def _check_value(value, key, option):
    if not isinstance(value, str) or len(value) > names.MAX_NAME or not names.LABEL_VALUE.match(value):
        raise ValidationError(option, "'{0}' is not a valid value for label '{1}'".format(value, key))


def _split_requirements(text, option):
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValidationError(option, "unbalanced ')' in selector '{0}'".format(text))
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ValidationError(option, "unbalanced '(' in selector '{0}'".format(text))
    parts.append("".join(current))
    return [p.strip() for p in parts]


_SET_REQ = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")
_EQ_REQ = re.compile(r"^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$")


def parse_selector_string(text, option):
    """Parse a kubectl-style selector (``app=web,tier in (a,b),!legacy``) into a LabelSelector."""
    text = text.strip()
    if not text:
        raise ValidationError(option, "selector must not be empty")
    match_labels, expressions = {}, []
    for req in _split_requirements(text, option):
        if not req:
            raise ValidationError(option, "empty requirement in selector '{0}'".format(text))
        set_match = _SET_REQ.match(req)
        eq_match = _EQ_REQ.match(req)
        if set_match:
            key, op, values = set_match.groups()
            _check_key(key, option)
            vals = [v.strip() for v in values.split(",")]
            if not vals or any(v == "" for v in vals):
                raise ValidationError(option, "empty value list in '{0}'".format(req))
            for val in vals:
                _check_value(val, key, option)
            expressions.append({"key": key, "operator": "In" if op == "in" else "NotIn", "values": vals})
        elif eq_match:
            key, op, value = eq_match.groups()
            _check_key(key, option)
            _check_value(value, key, option)
            if op == "!=":
                expressions.append({"key": key, "operator": "NotIn", "values": [value]})
            else:
                if key in match_labels and match_labels[key] != value:
                    raise ValidationError(option, "label '{0}' is required to equal two different values".format(key))
                match_labels[key] = value
        elif req.startswith("!"):
            key = req[1:].strip()
            _check_key(key, option)
            expressions.append({"key": key, "operator": "DoesNotExist"})
        elif re.match(r"^\S+$", req):
            _check_key(req, option)
            expressions.append({"key": req, "operator": "Exists"})
        else:
            raise ValidationError(option, "cannot parse requirement '{0}' in selector '{1}'".format(req, text))
    selector = {}
    if match_labels:
        selector["matchLabels"] = match_labels
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def build_label_selector(value, option="label_selector"):
    """A LabelSelector from a selector string, a LabelSelector dict, or a plain label map."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_selector_string(value, option)
    if not isinstance(value, dict):
        raise ValidationError(option, "must be a selector string (app=web,tier!=db) or a dictionary, got {0}".format(type(value).__name__))
    if not value:
        raise ValidationError(option, "must not be empty")
    keys = set(value)
    known = {"matchLabels", "matchExpressions", "match_labels", "match_expressions"}
    if keys <= known:
        labels = value.get("matchLabels", value.get("match_labels")) or {}
        exprs = value.get("matchExpressions", value.get("match_expressions")) or []
        selector = {}
        if not isinstance(labels, dict):
            raise ValidationError(option, "matchLabels must be a dictionary")
        for key, val in labels.items():
            _check_key(key, option)
            _check_value(str(val), key, option)
        if labels:
            selector["matchLabels"] = dict((k, str(v)) for k, v in labels.items())
        if not isinstance(exprs, list):
            raise ValidationError(option, "matchExpressions must be a list")
        out = []
        for expr in exprs:
            if not isinstance(expr, dict) or "key" not in expr or "operator" not in expr:
                raise ValidationError(option, "each matchExpressions entry needs 'key' and 'operator'")
            _check_key(expr["key"], option)
            operator = expr["operator"]
            if operator not in _OPERATORS:
                raise ValidationError(option, "operator '{0}' is not one of {1}".format(operator, ", ".join(_OPERATORS)))
            values = expr.get("values") or []
            if operator in ("In", "NotIn") and not values:
                raise ValidationError(option, "operator {0} on '{1}' needs a non-empty 'values' list".format(operator, expr["key"]))
            if operator in ("Exists", "DoesNotExist") and values:
                raise ValidationError(option, "operator {0} on '{1}' takes no 'values'".format(operator, expr["key"]))
            for val in values:
                _check_value(str(val), expr["key"], option)
            entry = {"key": expr["key"], "operator": operator}
            if values:
                entry["values"] = [str(v) for v in values]
            out.append(entry)
        if out:
            selector["matchExpressions"] = out
        if not selector:
            raise ValidationError(option, "selects nothing: give matchLabels or matchExpressions")
        return selector
    for key, val in value.items():
        _check_key(key, option)
        _check_value("" if val is None else str(val), key, option)
    return {"matchLabels": dict((k, "" if v is None else str(v)) for k, v in value.items())}


def selector_to_string(selector):
    """Render a LabelSelector as a kubectl selector string (for list calls)."""
    if not selector:
        return None
    parts = ["{0}={1}".format(k, v) for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr["operator"]
        if op == "In":
            parts.append("{0} in ({1})".format(expr["key"], ",".join(expr["values"])))
        elif op == "NotIn":
            parts.append("{0} notin ({1})".format(expr["key"], ",".join(expr["values"])))
        elif op == "Exists":
            parts.append(expr["key"])
        else:
            parts.append("!" + expr["key"])
    return ",".join(parts)


# --------------------------------------------------------------------------- filters

def _clean_list(value, option):
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise ValidationError(option, "entries must be non-empty strings, got {0!r}".format(item))
        out.append(item.strip())
    return out


def _check_include_exclude(params, include_opt, exclude_opt, new_style):
    inc = params.get(include_opt) or []
    exc = params.get(exclude_opt) or []
    if "*" in inc and len(inc) > 1:
        raise ValidationError(include_opt, "'*' cannot be combined with other entries")
    if new_style:
        if "*" in exc and len(exc) > 1:
            raise ValidationError(exclude_opt, "'*' cannot be combined with other entries")
        if "*" in exc and inc:
            raise ValidationError(exclude_opt, "'*' excludes everything, so {0} must be empty".format(include_opt))
    elif "*" in exc:
        raise ValidationError(exclude_opt, "'*' is not allowed in an exclude list")
    both = sorted(set(inc) & set(exc))
    if both:
        raise ValidationError(exclude_opt, "{0} also listed in {1}".format(", ".join(both), include_opt))


_NS_FORBIDDEN = set("|(){}!,")


def _check_namespace_patterns(params, check_names=True):
    _check_include_exclude(params, "included_namespaces", "excluded_namespaces", new_style=False)
    if not check_names:
        return
    for option in ("included_namespaces", "excluded_namespaces"):
        for pattern in params.get(option) or []:
            if pattern == "*":
                continue
            bad = sorted(set(pattern) & _NS_FORBIDDEN)
            if bad or "**" in pattern or "[]" in pattern or pattern.count("[") != pattern.count("]"):
                raise ValidationError(option, "'{0}' is not a supported namespace pattern (only * ? and [..] globs)".format(pattern))
            plain = re.sub(r"\[[^\]]*\]", "a", pattern).replace("*", "a").replace("?", "a")
            if not names.is_dns1123_label(plain):
                raise ValidationError(option, "'{0}' is not a valid namespace name or pattern".format(pattern))


def _check_filter_style(params):
    old = [o for o in OLD_STYLE_FILTERS if params.get(o) not in (None, [])]
    new = [o for o in NEW_STYLE_FILTERS if params.get(o) not in (None, [])]
    if old and new:
        raise ValidationError(
            new[0],
            "cannot be combined with {0}: Velero accepts either the old resource filters "
            "(included_resources, excluded_resources, include_cluster_resources) or the scoped ones".format(", ".join(old)),
        )


def _selectors(params):
    if params.get("label_selector") is not None and params.get("or_label_selectors"):
        raise ValidationError("label_selector", "only one of label_selector and or_label_selectors can be given")
    selector = build_label_selector(params.get("label_selector"), "label_selector")
    or_selectors = None
    if params.get("or_label_selectors"):
        or_selectors = [build_label_selector(s, "or_label_selectors") for s in params["or_label_selectors"]]
    return selector, or_selectors


# --------------------------------------------------------------------------- hooks and ordering

def _camel(key):
    head, dummy, tail = key.partition("_")
    if not tail:
        return key
    return head + "".join(part[:1].upper() + part[1:] for part in tail.split("_"))


def camelize(value, keep=("matchLabels", "match_labels")):
    """snake_case keys -> Velero camelCase, leaving label maps untouched."""
    if isinstance(value, dict):
        out = {}
        for key, val in value.items():
            new_key = _camel(key) if isinstance(key, str) else key
            out[new_key] = copy.deepcopy(val) if key in keep else camelize(val, keep)
        return out
    if isinstance(value, list):
        return [camelize(v, keep) for v in value]
    return value


def build_backup_hooks(hooks, option="hooks"):
    if hooks is None:
        return None
    if not isinstance(hooks, dict):
        raise ValidationError(option, "must be a dictionary with a 'resources' list")
    hooks = camelize(hooks)
    resources = hooks.get("resources")
    if not isinstance(resources, list) or not resources:
        raise ValidationError(option, "needs a non-empty 'resources' list")
    for idx, res in enumerate(resources):
        where = "resources[{0}]".format(idx)
        if not isinstance(res, dict) or not res.get("name"):
            raise ValidationError(option, "{0} needs a 'name'".format(where))
        if not res.get("pre") and not res.get("post"):
            raise ValidationError(option, "{0} needs 'pre' or 'post' hooks".format(where))
        if res.get("labelSelector") is not None:
            res["labelSelector"] = build_label_selector(res["labelSelector"], option)
        for phase in ("pre", "post"):
            for hidx, hook in enumerate(res.get(phase) or []):
                exec_ = hook.get("exec") if isinstance(hook, dict) else None
                if not isinstance(exec_, dict) or not isinstance(exec_.get("command"), list) or not exec_["command"]:
                    raise ValidationError(option, "{0}.{1}[{2}].exec.command must be a non-empty list".format(where, phase, hidx))
                if exec_.get("onError") not in (None, "Continue", "Fail"):
                    raise ValidationError(option, "{0}.{1}[{2}].exec.onError must be Continue or Fail".format(where, phase, hidx))
                if exec_.get("timeout") is not None:
                    exec_["timeout"] = normalize_duration(exec_["timeout"], option)
    return hooks


def build_ordered_resources(value, option="ordered_resources"):
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(option, "must map a resource name to a list of 'namespace/name' entries")
    out = {}
    for resource, items in value.items():
        if isinstance(items, str):
            items = [i.strip() for i in items.split(",") if i.strip()]
        if not isinstance(items, list) or not items:
            raise ValidationError(option, "'{0}' needs a non-empty list of objects".format(resource))
        out[str(resource)] = ",".join(str(i) for i in items)
    return out


# --------------------------------------------------------------------------- specs

def build_backup_spec(params):
    """The Velero BackupSpec for ``params`` (module options), validated.

    Only options the user set appear in the spec, so the spec is also the
    record of "what was asked" that later runs compare against.
    """
    params = dict(params)
    for option, _key in BACKUP_LIST_OPTIONS:
        params[option] = _clean_list(params.get(option), option)
    _check_filter_style(params)
    _check_namespace_patterns(params)
    _check_include_exclude(params, "included_resources", "excluded_resources", new_style=False)
    _check_include_exclude(params, "included_cluster_scoped_resources", "excluded_cluster_scoped_resources", new_style=True)
    _check_include_exclude(params, "included_namespace_scoped_resources", "excluded_namespace_scoped_resources", new_style=True)
    selector, or_selectors = _selectors(params)

    spec = {}
    for option, key in BACKUP_LIST_OPTIONS:
        if params.get(option) is not None:
            spec[key] = params[option]
    for option, key in BACKUP_SCALAR_OPTIONS:
        if params.get(option) is not None:
            spec[key] = params[option]
    for option, key in BACKUP_DURATION_OPTIONS:
        if params.get(option) is not None:
            spec[key] = normalize_duration(params[option], option)
    if params.get("storage_location") is not None:
        names.validate_object_name(params["storage_location"], "storage_location", max_length=253)
    if selector is not None:
        spec["labelSelector"] = selector
    if or_selectors is not None:
        spec["orLabelSelectors"] = or_selectors
    hooks = build_backup_hooks(params.get("hooks"))
    if hooks is not None:
        spec["hooks"] = hooks
    ordered = build_ordered_resources(params.get("ordered_resources"))
    if ordered is not None:
        spec["orderedResources"] = ordered
    if params.get("resource_policy"):
        names.validate_object_name(params["resource_policy"], "resource_policy", max_length=253)
        spec["resourcePolicy"] = {"kind": "configmap", "name": params["resource_policy"]}
    return spec


def build_restore_spec(params, backup_name):
    """The Velero RestoreSpec for ``params``; ``backup_name`` is already resolved."""
    params = dict(params)
    for option in ("included_namespaces", "excluded_namespaces", "included_resources", "excluded_resources"):
        params[option] = _clean_list(params.get(option), option)
    non_restorable = sorted(set(params.get("included_resources") or []) & set(NON_RESTORABLE))
    if non_restorable:
        raise ValidationError("included_resources", "{0} cannot be restored by Velero".format(", ".join(non_restorable)))
    _check_include_exclude(params, "included_resources", "excluded_resources", new_style=False)
    _check_namespace_patterns(params, check_names=False)
    selector, or_selectors = _selectors(params)
    policy = params.get("existing_resource_policy")
    if policy is not None and policy not in EXISTING_RESOURCE_POLICIES:
        raise ValidationError("existing_resource_policy", "'{0}' is not one of {1}".format(policy, ", ".join(EXISTING_RESOURCE_POLICIES)))

    spec = {"backupName": backup_name}
    for option, key in (
        ("included_namespaces", "includedNamespaces"),
        ("excluded_namespaces", "excludedNamespaces"),
        ("included_resources", "includedResources"),
        ("excluded_resources", "excludedResources"),
    ):
        if params.get(option) is not None:
            spec[key] = params[option]
    for option, key in (
        ("include_cluster_resources", "includeClusterResources"),
        ("restore_pvs", "restorePVs"),
        ("preserve_node_ports", "preserveNodePorts"),
        ("existing_resource_policy", "existingResourcePolicy"),
    ):
        if params.get(option) is not None:
            spec[key] = params[option]
    if params.get("item_operation_timeout") is not None:
        spec["itemOperationTimeout"] = normalize_duration(params["item_operation_timeout"], "item_operation_timeout")
    mapping = params.get("namespace_mapping")
    if mapping:
        if not isinstance(mapping, dict):
            raise ValidationError("namespace_mapping", "must map source namespaces to target namespaces")
        for src, dst in mapping.items():
            for ns in (src, dst):
                if not names.is_dns1123_label(str(ns)):
                    raise ValidationError("namespace_mapping", "'{0}' is not a valid namespace name".format(ns))
        spec["namespaceMapping"] = dict((str(k), str(v)) for k, v in mapping.items())
    if selector is not None:
        spec["labelSelector"] = selector
    if or_selectors is not None:
        spec["orLabelSelectors"] = or_selectors
    if params.get("hooks") is not None:
        if not isinstance(params["hooks"], dict) or not isinstance(camelize(params["hooks"]).get("resources"), list):
            raise ValidationError("hooks", "must be a dictionary with a 'resources' list")
        spec["hooks"] = camelize(params["hooks"])
    return spec


def location_spec(provider, object_storage=None, config=None, access_mode=None, default=None,
                  backup_sync_period=None, validation_frequency=None, credential=None):
    """The spec of a BackupStorageLocation (or, without object_storage, a VolumeSnapshotLocation):
    the one place that knows Velero's field names for it (velero_location and migrate's read-only
    location build theirs here)."""
    spec = {"provider": provider}
    for key, value in (("objectStorage", object_storage), ("accessMode", access_mode), ("default", default),
                       ("backupSyncPeriod", backup_sync_period), ("validationFrequency", validation_frequency),
                       ("config", config), ("credential", credential)):
        if value is not None and value != {}:
            spec[key] = value
    return spec


def validate_mapping(value, option, what):
    """A {old: new} mapping of non-empty strings (storage classes, image registries)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise ValidationError(option, "must be a non-empty dictionary of old {0} to new {0}".format(what))
    out = {}
    for old, new in value.items():
        if not isinstance(old, str) or not isinstance(new, str) or not old.strip() or not new.strip():
            raise ValidationError(option, "entries must map a non-empty {0} to a non-empty {0}".format(what))
        out[old.strip()] = new.strip()
    return out


_PATCH_KINDS = ("patches", "mergePatches", "strategicPatches")
_JSON_PATCH_OPS = ("add", "remove", "replace", "test", "move", "copy")


def validate_resource_modifier_rules(rules, option="resource_modifier_rules"):
    """Check rules as Velero's resource-modifier parser would and return them camelCased."""
    if rules is None:
        return None
    if not isinstance(rules, list) or not rules:
        raise ValidationError(option, "must be a non-empty list of rules")
    out = camelize(rules)
    for idx, rule in enumerate(out):
        where = "rule {0}".format(idx)
        if not isinstance(rule, dict):
            raise ValidationError(option, "{0} must be a dictionary".format(where))
        conditions = rule.get("conditions")
        if not isinstance(conditions, dict) or not conditions.get("groupResource"):
            raise ValidationError(option, "{0} needs conditions.groupResource (for example deployments.apps)".format(where))
        regex = conditions.get("resourceNameRegex")
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise ValidationError(option, "{0} resourceNameRegex: {1}".format(where, exc))
        if conditions.get("labelSelector") is not None:
            conditions["labelSelector"] = build_label_selector(conditions["labelSelector"], option)
        kinds = [k for k in _PATCH_KINDS if rule.get(k)]
        if len(kinds) != 1:
            raise ValidationError(option, "{0} needs exactly one of patches, merge_patches, strategic_patches".format(where))
        for patch in rule[kinds[0]]:
            if not isinstance(patch, dict):
                raise ValidationError(option, "{0}: each patch must be a dictionary".format(where))
            if kinds[0] == "patches":
                if patch.get("operation") not in _JSON_PATCH_OPS or not str(patch.get("path", "")).startswith("/"):
                    raise ValidationError(option, "{0}: JSON patches need an operation ({1}) and a path starting with '/'".format(
                        where, ", ".join(_JSON_PATCH_OPS)))
            elif not patch.get("patchData"):
                raise ValidationError(option, "{0}: {1} entries need patch_data".format(where, kinds[0]))
    return out


# --------------------------------------------------------------------------- cron

_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def validate_cron(expression, option="schedule"):
    """Validate a Velero cron expression (robfig/cron ParseStandard rules) and return it stripped."""
    if not isinstance(expression, str) or not expression.strip():
        raise ValidationError(option, "must be a non-empty cron expression such as '0 2 * * *'")
    text = expression.strip()
    body = text
    zone_match = re.match(r"^(CRON_TZ|TZ)=(\S+)\s+(.*)$", text)
    if zone_match:
        zone, body = zone_match.group(2), zone_match.group(3).strip()
        if ZoneInfo is not None:
            try:
                ZoneInfo(zone)
            except Exception:
                raise ValidationError(option, "unknown time zone '{0}'".format(zone))
    if body.startswith("@every"):
        duration = body[len("@every"):].strip()
        if not duration or parse_duration(duration, option) <= 0:
            raise ValidationError(option, "'@every' needs a positive duration such as '@every 6h'")
        return text
    if body.startswith("@"):
        if body not in _DESCRIPTORS:
            raise ValidationError(option, "unknown descriptor '{0}' (use one of {1} or '@every <duration>')".format(body, ", ".join(_DESCRIPTORS)))
        return text
    fields = body.split()
    if len(fields) != 5:
        raise ValidationError(
            option,
            "'{0}' has {1} fields; Velero needs exactly 5 (minute hour day-of-month month day-of-week)".format(body, len(fields)),
        )
    if not HAS_CRONITER:  # pragma: no cover - modules check this first
        raise ValidationError(option, "the croniter Python library is required to validate cron expressions")
    from croniter import croniter

    if not croniter.is_valid(body):
        raise ValidationError(option, "'{0}' is not a valid cron expression".format(body))
    return text


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def default_restore_name(source, params):
    """The Restore name when none is given: deterministic, so the same source and restore options
    always name the same Restore (a re-run finds it instead of restoring again)."""
    keys = sorted(set(RESTORE_SPEC_ARG_SPEC) | set(RESTORE_TRANSFORM_ARG_SPEC) | set(("backup_name", "schedule_name")))
    material = canonical_json(dict((key, params.get(key)) for key in keys))
    return names.make_name(source, "restore", names.short_hash(material, 8))
