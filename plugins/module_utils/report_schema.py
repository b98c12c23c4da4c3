# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""JSON schema of the fleet report (fleetdr.kube/report/v1).

Held as a Python dict because module_utils cannot read package data files.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

SCHEMA_ID = "fleetdr.kube/report/v1"

REPORT_VERDICTS = ["succeeded", "partially_failed", "failed"]
CLUSTER_VERDICTS = REPORT_VERDICTS + ["skipped"]

_TIMESTAMP = {"type": ["string", "null"]}
_DURATION = {"type": ["number", "null"], "minimum": 0}
_TEXTS = {"type": "array", "items": {"type": "string"}}

# What happened to one PVC's data (module_utils/velero/volume_data.py makes these).
VOLUME_SCHEMA = {
    "type": "object",
    "required": ["namespace", "pvc", "requested", "moved", "reason"],
    "properties": {
        "namespace": {"type": "string"},
        "pvc": {"type": "string"},
        "pod": {"type": ["string", "null"]},
        "volume": {"type": ["string", "null"]},
        "requested": {"type": "boolean"},
        "moved": {"type": "boolean"},
        "bytes": {"type": ["integer", "null"], "minimum": 0},
        "snapshot_id": {"type": ["string", "null"]},
        "object": {"type": ["object", "null"]},
        "reason": {"type": ["string", "null"]},
    },
}

CLUSTER_SCHEMA = {
    "type": "object",
    "required": [
        "name", "labels", "verdict", "phase", "reason", "object", "location", "items",
        "warnings", "errors", "started", "finished", "duration_s", "timeline",
    ],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "verdict": {"enum": CLUSTER_VERDICTS},
        "phase": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "object": {
            "type": ["object", "null"],
            "required": ["kind", "namespace", "name"],
            "properties": {
                "kind": {"type": ["string", "null"]},
                "namespace": {"type": ["string", "null"]},
                "name": {"type": ["string", "null"]},
            },
        },
        "location": {"type": ["string", "null"]},
        "items": {
            "type": "object",
            "required": ["total", "done"],
            "properties": {
                "total": {"type": ["integer", "null"], "minimum": 0},
                "done": {"type": ["integer", "null"], "minimum": 0},
            },
        },
        "warnings": _TEXTS,
        "errors": _TEXTS,
        "details": {"type": "object"},
        "volumes": {"type": "array", "items": VOLUME_SCHEMA},
        "started": _TIMESTAMP,
        "finished": _TIMESTAMP,
        "duration_s": _DURATION,
        "timeline": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["phase", "at"],
                "properties": {"phase": {"type": "string"}, "at": {"type": "string"}},
            },
        },
    },
}

REPORT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fleetdr.kube fleet operation report",
    "type": "object",
    "required": [
        "schema", "operation", "name", "started", "finished", "duration_s", "verdict",
        "options", "totals", "clusters",
    ],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "operation": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "started": _TIMESTAMP,
        "finished": _TIMESTAMP,
        "duration_s": _DURATION,
        "verdict": {"enum": REPORT_VERDICTS},
        "options": {"type": "object"},
        "totals": {
            "type": "object",
            "required": ["clusters", "succeeded", "partially_failed", "failed", "skipped"],
            "properties": dict(
                (key, {"type": "integer", "minimum": 0})
                for key in ("clusters", "succeeded", "partially_failed", "failed", "skipped")
            ),
        },
        "clusters": {"type": "array", "items": CLUSTER_SCHEMA},
    },
}
