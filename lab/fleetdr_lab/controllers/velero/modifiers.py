"""Restore resource modifiers: a ConfigMap referenced by
`spec.resourceModifier` whose single data value is YAML with JSON-patch, merge-patch or
strategic-merge-patch rules and conditions. Parsed and validated once per restore
(invalid -> FailedValidation), then applied to every item before the namespace change.

Upstream source: Velero internal/resourcemodifiers/*.go.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import jsonpatch
import jsonpointer
import yaml

from fleetdr_lab import patching
from fleetdr_lab.selectors import LabelSelector

RULE_KEYS = {"conditions", "patches", "mergePatches", "strategicPatches"}
CONDITION_KEYS = {"groupResource", "resourceNameRegex", "namespaces", "labelSelector", "matches"}
TOP_KEYS = {"version", "resourceModifierRules"}


class ModifierError(ValueError):
    """The ConfigMap cannot be used: the restore fails validation with this message."""


def glob_to_regex(pattern: str, separator: str = ".") -> re.Pattern:
    """gobwas/glob semantics with a separator: `*` does not cross it, `**` does,
    `?` is one non-separator char, `[...]` classes, `{a,b}` alternatives."""
    sep = re.escape(separator)
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i:i + 2] == "**":
                out.append(".*")
                i += 2
                continue
            out.append(f"[^{sep}]*")
        elif ch == "?":
            out.append(f"[^{sep}]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise ModifierError(f"unbalanced bracket in pattern {pattern!r}")
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = end + 1
            continue
        elif ch == "{":
            end = pattern.find("}", i + 1)
            if end < 0:
                raise ModifierError(f"unbalanced brace in pattern {pattern!r}")
            alternatives = pattern[i + 1:end].split(",")
            out.append("(?:" + "|".join(glob_to_regex(a, separator).pattern[:-2] for a in alternatives) + ")")
            i = end + 1
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def typed_patch_value(value):
    """Velero's JSONPatch.ToString quoting rule: a string value is emitted raw (so it becomes a
    number, bool, null, object or array) when it parses as one; `"..."` forces a string."""
    if not isinstance(value, str):
        return value
    if value == "":
        return ""
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return value[1:-1]
    if value in ("null",):
        return None
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    # strconv.ParseBool accepts these spellings
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    if isinstance(parsed, (dict, list)):
        return parsed
    return value


@dataclass
class ModifierRule:
    group_resource: re.Pattern
    name_regex: re.Pattern | None
    namespaces: list[str]
    label_selector: dict | None
    matches: list[dict]
    json_patch: list[dict] = field(default_factory=list)
    merge_patches: list[dict] = field(default_factory=list)
    strategic_patches: list[dict] = field(default_factory=list)

    def applies_to(self, item: dict, group_resource: str) -> bool:
        meta = item.get("metadata") or {}
        if not self.group_resource.match(group_resource):
            return False
        if self.namespaces and meta.get("namespace", "") not in self.namespaces:
            return False
        if self.name_regex is not None and not self.name_regex.search(meta.get("name", "")):
            return False
        if self.label_selector is not None and not LabelSelector.from_dict(self.label_selector).matches(meta.get("labels")):
            return False
        for m in self.matches:
            try:
                actual = jsonpointer.resolve_pointer(item, m["path"])
            except (jsonpointer.JsonPointerException, KeyError, TypeError):
                return False
            if actual != typed_patch_value(m.get("value", "")):
                return False
        return True

    def apply(self, item: dict) -> dict:
        if self.json_patch:
            return jsonpatch.apply_patch(item, self.json_patch)
        result = item
        for patch in self.merge_patches:
            result = patching.merge_patch(result, patch)
        for patch in self.strategic_patches:
            result = strategic_merge_patch(result, patch)
        return result


def strategic_merge_patch(obj: dict, patch: dict) -> dict:
    # The store's patch engine knows the per-kind merge keys (containers by name, ...).
    return patching.strategic_merge(obj, patch, obj.get("kind"))


def _load_patch_data(text, where: str):
    if isinstance(text, dict):
        return text
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModifierError(f"{where}: patchData is neither JSON nor YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ModifierError(f"{where}: patchData must be an object")
    return data


def parse_resource_modifiers(configmap: dict) -> list[ModifierRule]:
    """Parse and validate the ConfigMap; raises ModifierError with the validation message."""
    name = (configmap.get("metadata") or {}).get("name", "")
    data = configmap.get("data") or {}
    if len(data) != 1:
        raise ModifierError(
            f"illegal resource modifiers {name} configmap: expected exactly one data key, got {len(data)}")
    text = next(iter(data.values()))
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModifierError(f"failed to decode yaml data into resource modifiers, err: {exc}") from None
    if not isinstance(doc, dict):
        raise ModifierError("failed to decode yaml data into resource modifiers, err: not a mapping")
    unknown = set(doc) - TOP_KEYS
    if unknown:  # strict decoding: unknown fields are errors
        raise ModifierError(
            f"failed to decode yaml data into resource modifiers, err: unknown field {sorted(unknown)[0]!r}")
    if doc.get("version") != "v1":
        raise ModifierError(f"unsupported resource modifier version {doc.get('version')}")
    rules = []
    for index, raw in enumerate(doc.get("resourceModifierRules") or []):
        where = f"resourceModifierRules[{index}]"
        if not isinstance(raw, dict) or set(raw) - RULE_KEYS:
            raise ModifierError(f"failed to decode yaml data into resource modifiers, err: bad rule {where}")
        cond = raw.get("conditions") or {}
        if set(cond) - CONDITION_KEYS:
            raise ModifierError(
                f"failed to decode yaml data into resource modifiers, err: unknown condition "
                f"{sorted(set(cond) - CONDITION_KEYS)[0]!r}")
        if not cond.get("groupResource"):
            raise ModifierError("groupkResource cannot be empty")
        kinds = [k for k in ("patches", "mergePatches", "strategicPatches") if raw.get(k)]
        if len(kinds) > 1:
            raise ModifierError("only one of patches, mergePatches, strategicPatches can be specified")
        name_regex = None
        if cond.get("resourceNameRegex"):
            try:
                name_regex = re.compile(cond["resourceNameRegex"])
            except re.error as exc:
                raise ModifierError(f"resourceNameRegex is invalid: {exc}") from None
        json_ops = []
        for p in raw.get("patches") or []:
            op = {"op": p.get("operation"), "path": p.get("path")}
            if op["op"] not in ("add", "remove", "replace", "test", "move", "copy"):
                raise ModifierError(f"{where}: invalid patch operation {p.get('operation')!r}")
            if not op["path"]:
                raise ModifierError(f"{where}: patch path cannot be empty")
            if op["op"] in ("move", "copy"):
                op["from"] = p.get("from", "")
            if op["op"] in ("add", "replace", "test"):
                op["value"] = typed_patch_value(p.get("value", ""))
            json_ops.append(op)
        rules.append(ModifierRule(
            group_resource=glob_to_regex(cond["groupResource"]),
            name_regex=name_regex,
            namespaces=list(cond.get("namespaces") or []),
            label_selector=cond.get("labelSelector"),
            matches=list(cond.get("matches") or []),
            json_patch=json_ops,
            merge_patches=[_load_patch_data(p.get("patchData"), where) for p in raw.get("mergePatches") or []],
            strategic_patches=[_load_patch_data(p.get("patchData"), where)
                               for p in raw.get("strategicPatches") or []],
        ))
    return rules


def apply_modifiers(rules: list[ModifierRule], item: dict, group_resource: str) -> tuple[dict, list[str]]:
    """Apply every matching rule in order. Returns (item, errors); a failing patch leaves the
    item as it was before that rule (the restore logs an error and still creates it)."""
    errors = []
    for rule in rules:
        if not rule.applies_to(item, group_resource):
            continue
        try:
            item = rule.apply(item)
        except Exception as exc:  # noqa: BLE001 - any patch failure is an item error
            meta = item.get("metadata") or {}
            errors.append(f"error applying resource modifier to {group_resource} "
                          f"{meta.get('namespace', '')}/{meta.get('name', '')}: {exc}")
    return item, errors
