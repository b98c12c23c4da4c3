"""Label and field selectors: parse once, match many objects.

Grammar follows k8s.io/apimachinery/pkg/labels and pkg/fields. Parse errors raise
SelectorError (a ValueError); the Store turns it into a 400 BadRequest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .names import label_key_errors, label_value_errors


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str                     # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        op = self.op
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        present = self.key in labels
        if op in ("=", "in"):
            return present and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op == "gt" else have < want


class LabelSelector:
    """A parsed label selector; empty selector matches everything."""

    def __init__(self, requirements: list[Requirement]):
        self.requirements = requirements

    def matches(self, labels: dict | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    @classmethod
    def parse(cls, text: str | None) -> "LabelSelector":
        return cls(_LabelParser(text or "").parse())

    @classmethod
    def from_dict(cls, sel: dict | None) -> "LabelSelector":
        """A metav1.LabelSelector ({matchLabels, matchExpressions}) as used in object specs."""
        sel = sel or {}
        reqs = [Requirement(k, "=", (str(v),)) for k, v in (sel.get("matchLabels") or {}).items()]
        ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
        for e in sel.get("matchExpressions") or []:
            op = ops.get(e.get("operator"))
            if op is None:
                raise SelectorError(f"{e.get('operator')!r} is not a valid label selector operator")
            reqs.append(Requirement(e["key"], op, tuple(e.get("values") or ())))
        return cls(reqs)

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.op == "exists":
                parts.append(r.key)
            elif r.op == "!":
                parts.append("!" + r.key)
            elif r.op in ("=", "!="):
                parts.append(f"{r.key}{r.op}{r.values[0]}")
            elif r.op in ("in", "notin"):
                parts.append(f"{r.key} {r.op} ({','.join(sorted(r.values))})")
            else:
                parts.append(f"{r.key}{'>' if r.op == 'gt' else '<'}{r.values[0]}")
        return ",".join(parts)


def selector_string(sel: dict | None) -> str:
    """metav1.LabelSelector dict -> selector string (as Scale.status.selector shows it)."""
    return str(LabelSelector.from_dict(sel))


_KEY_CHARS = re.compile(r"[A-Za-z0-9_./-]")


class _LabelParser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def _ws(self):
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def _ident(self) -> str:
        self._ws()
        start = self.i
        while self.i < len(self.s) and _KEY_CHARS.match(self.s[self.i]):
            self.i += 1
        return self.s[start:self.i]

    def _peek(self, tok: str) -> bool:
        return self.s.startswith(tok, self.i)

    def _fail(self, expected: str):
        found = self.s[self.i:].split(",")[0].strip() or "end of string"
        raise SelectorError(f"unable to parse requirement: found '{found}', expected: {expected}")

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        self._ws()
        if self.i >= len(self.s):
            return reqs
        while True:
            reqs.append(self._requirement())
            self._ws()
            if self.i >= len(self.s):
                return reqs
            if self.s[self.i] != ",":
                self._fail("',' or end of string")
            self.i += 1

    def _requirement(self) -> Requirement:
        self._ws()
        if self._peek("!"):
            self.i += 1
            key = self._ident()
            if not key:
                self._fail("identifier")
            self._check_key(key)
            return Requirement(key, "!")
        key = self._ident()
        if not key:
            self._fail("identifier")
        self._check_key(key)
        self._ws()
        if self.i >= len(self.s) or self._peek(","):
            return Requirement(key, "exists")
        for tok, op in (("==", "="), ("!=", "!="), ("=", "="), (">", "gt"), ("<", "lt")):
            if self._peek(tok):
                self.i += len(tok)
                value = self._ident()
                self._check_value(value)
                if op in ("gt", "lt") and not re.fullmatch(r"-?\d+", value):
                    raise SelectorError(f"unable to parse requirement: for 'Gt', 'Lt' operators, "
                                        f"the value must be an integer: {value!r}")
                return Requirement(key, op, (value,))
        word = self._ident()
        if word in ("in", "notin"):
            self._ws()
            if not self._peek("("):
                self._fail("'('")
            self.i += 1
            values = []
            while True:
                v = self._ident()
                self._check_value(v)
                values.append(v)
                self._ws()
                if self._peek(","):
                    self.i += 1
                    continue
                if self._peek(")"):
                    self.i += 1
                    break
                self._fail("',' or ')'")
            return Requirement(key, word, tuple(values))
        self.i -= len(word)
        self._fail("'=', '!=', '==', 'in', notin'")

    @staticmethod
    def _check_key(key: str):
        errs = label_key_errors(key)
        if errs:
            raise SelectorError(f"unable to parse requirement: Invalid value: {key!r}: {errs[0]}")

    @staticmethod
    def _check_value(value: str):
        errs = label_value_errors(value)
        if errs:
            raise SelectorError(f"unable to parse requirement: Invalid value: {value!r}: {errs[0]}")


# ---- field selectors --------------------------------------------------------------------

@dataclass(frozen=True)
class FieldRequirement:
    field: str
    op: str          # "=" or "!="
    value: str


class FieldSelector:
    def __init__(self, requirements: list[FieldRequirement]):
        self.requirements = requirements

    def empty(self) -> bool:
        return not self.requirements

    @classmethod
    def parse(cls, text: str | None) -> "FieldSelector":
        reqs = []
        for part in _split_unescaped(text or "", ","):
            if not part.strip():
                continue
            for tok, op in (("!=", "!="), ("==", "="), ("=", "=")):
                idx = _find_unescaped(part, tok)
                if idx >= 0:
                    reqs.append(FieldRequirement(part[:idx].strip(), op,
                                                 _unescape(part[idx + len(tok):].strip())))
                    break
            else:
                raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        return cls(reqs)

    def check_supported(self, supported: set[str]) -> None:
        for r in self.requirements:
            if r.field not in supported:
                raise SelectorError(f'field label not supported: {r.field}')

    def matches(self, fields: dict[str, str]) -> bool:
        for r in self.requirements:
            have = fields.get(r.field, "")
            if (have == r.value) != (r.op == "="):
                return False
        return True


def _find_unescaped(s: str, tok: str) -> int:
    i = 0
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s.startswith(tok, i):
            return i
        i += 1
    return -1


def _split_unescaped(s: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if s[i] == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(s[i])
        i += 1
    out.append("".join(cur))
    return out


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


# Fields each built-in kind can be selected on (pkg/registry/*/strategy.go ToSelectableFields).
_POD_FIELDS = {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
               "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
               "status.nominatedNodeName"}
_EVENT_FIELDS = {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion",
                 "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                 "reportingComponent", "source", "type"}
EXTRA_FIELDS: dict[tuple[str, str], set[str]] = {
    ("", "pods"): _POD_FIELDS,
    ("", "events"): _EVENT_FIELDS,
    ("", "secrets"): {"type"},
    ("", "namespaces"): {"status.phase"},
    ("", "nodes"): {"spec.unschedulable"},
    ("", "persistentvolumeclaims"): set(),
    ("", "replicationcontrollers"): {"status.replicas"},
    ("apps", "replicasets"): {"status.replicas"},
    ("batch", "jobs"): {"status.successful"},
}


def supported_fields(group: str, plural: str) -> set[str]:
    return {"metadata.name", "metadata.namespace"} | EXTRA_FIELDS.get((group, plural), set())


def object_fields(obj: dict, wanted: set[str] | None = None) -> dict[str, str]:
    """The selectable field values of obj (only `wanted` ones when given)."""
    meta = obj.get("metadata") or {}
    out = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", "")}
    for f in wanted or ():
        if f in out:
            continue
        if f == "source":
            v = (obj.get("source") or {}).get("component", "")
        else:
            v = obj
            for part in f.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            if v is None:
                v = ""
            elif isinstance(v, bool):
                v = "true" if v else "false"
        out[f] = str(v)
    return out
