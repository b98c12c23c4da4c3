# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The fleet report: one document (schema fleetdr.kube/report/v1) and its renderings.

``build_report`` is the only place where totals, verdicts and durations are computed; every
renderer (json, markdown, html, junit, text table) only formats what the document holds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import html
import json
import os
import re
import textwrap
import xml.etree.ElementTree as ET

from ansible_collections.fleetdr.kube.plugins.module_utils.report_schema import (
    CLUSTER_VERDICTS,
    REPORT_SCHEMA,
    SCHEMA_ID,
)

try:
    import jsonschema
    HAS_JSONSCHEMA = True
except ImportError:  # optional: validation is skipped without it
    HAS_JSONSCHEMA = False

FAIL_ON_CHOICES = ("any", "all", "never")
REPORT_FILES = {
    "json": "report.json",
    "md": "report.md",
    "html": "report.html",
    "junit": "junit.xml",
}
MASK = "********"

# A key is secret when one of its words (split on _ - . and camelCase) is one of these,
# or when the whole key is listed in SECRET_KEYS.
SECRET_WORDS = frozenset((
    "password", "passwd", "secret", "token", "credential", "credentials", "passphrase",
    "authorization", "bearer", "apikey",
))
SECRET_KEYS = frozenset((
    "aws_secret_access_key", "secret_access_key", "api_key", "private_key", "client_key",
    "client_key_data", "ssh_private_key",
))


class ReportError(ValueError):
    """The report document does not match the schema."""


# ---------------------------------------------------------------------------------------------
# time helpers


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def to_timestamp(value):
    """RFC 3339 UTC text (second precision kept to milliseconds) from a datetime or text."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        value = value.astimezone(datetime.timezone.utc)
        text = value.isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")
    return str(value)


def parse_timestamp(value):
    """Aware datetime from an RFC 3339 text (as Kubernetes and this module write them)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    text = str(value).strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def seconds_between(started, finished):
    start, end = parse_timestamp(started), parse_timestamp(finished)
    if start is None or end is None:
        return None
    return round(max((end - start).total_seconds(), 0.0), 3)


# ---------------------------------------------------------------------------------------------
# secrets


def _key_words(key):
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key))
    return [word for word in re.split(r"[_\-.\s]+", spaced.lower()) if word]


def is_secret_key(key):
    lowered = str(key).lower()
    if lowered in SECRET_KEYS:
        return True
    return any(word in SECRET_WORDS for word in _key_words(key))


def scrub_secrets(data, secret_values=(), drop_values=True):
    """Copy of ``data`` without secrets.

    Dict entries whose key looks secret are dropped, and so are entries whose value equals a
    registered secret (masked instead with ``drop_values=False``, to keep a fixed shape); list
    elements equal to a secret, and any occurrence of a secret inside a longer text, are
    replaced by a mask, so an error message quoting a credential does not leak it.
    """
    secrets = sorted(
        (str(value) for value in (secret_values or ()) if value not in (None, "") and len(str(value)) > 2),
        key=len,
        reverse=True,
    )

    def is_secret_value(value):
        return isinstance(value, (str, bytes)) and _text(value) in secrets

    def scrub(value):
        if isinstance(value, dict):
            return dict(
                (key, MASK if is_secret_value(item) else scrub(item)) for key, item in value.items()
                if not is_secret_key(key) and not (drop_values and is_secret_value(item))
            )
        if isinstance(value, (list, tuple)):
            return [MASK if is_secret_value(item) else scrub(item) for item in value]
        if isinstance(value, (str, bytes)):
            text = _text(value)
            for secret in secrets:
                text = text.replace(secret, MASK)
            return text
        return copy.deepcopy(value)

    return scrub(data)


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


# ---------------------------------------------------------------------------------------------
# the document


def _texts(values):
    if values is None:
        return []
    if isinstance(values, (str, bytes)):
        values = [values]
    return [_text(value) if isinstance(value, (str, bytes)) else json.dumps(value, sort_keys=True)
            for value in values]


def _count(value):
    if value is None or value == "":
        return None
    return max(int(value), 0)


def _json_copy(value):
    """A copy of JSON-shaped data (dicts, lists, scalars); copy.deepcopy's bookkeeping made it most of
    building a cluster's entry."""
    if isinstance(value, dict):
        return dict((key, _json_copy(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_json_copy(item) for item in value]
    return value


def normalize_cluster(result):
    """A complete per-cluster entry from a partial one (missing fields get empty values)."""
    result = dict(result or {})
    name = result.get("name")
    if not name:
        raise ReportError("a cluster result needs a name")
    verdict = result.get("verdict") or "succeeded"
    if verdict not in CLUSTER_VERDICTS:
        raise ReportError("cluster %s: verdict %r is not one of %s" % (name, verdict, ", ".join(CLUSTER_VERDICTS)))
    obj = result.get("object")
    if obj:
        obj = {"kind": obj.get("kind"), "namespace": obj.get("namespace"), "name": obj.get("name")}
    items = result.get("items") or {}
    started = to_timestamp(result.get("started"))
    finished = to_timestamp(result.get("finished"))
    duration = result.get("duration_s")
    if duration is None:
        duration = seconds_between(started, finished)
    timeline = [
        {"phase": str(step["phase"]), "at": to_timestamp(step["at"])}
        for step in (result.get("timeline") or [])
    ]
    reason = result.get("reason")
    entry = {
        "name": str(name),
        "labels": dict((str(k), str(v)) for k, v in (result.get("labels") or {}).items()),
        "verdict": verdict,
        "phase": None if result.get("phase") is None else str(result.get("phase")),
        "reason": None if reason in (None, "") else _text(reason) if isinstance(reason, (str, bytes)) else str(reason),
        "object": obj or None,
        "location": result.get("location"),
        "items": {"total": _count(items.get("total")), "done": _count(items.get("done"))},
        "warnings": _texts(result.get("warnings")),
        "errors": _texts(result.get("errors")),
        "started": started,
        "finished": finished,
        "duration_s": None if duration is None else round(float(duration), 3),
        "timeline": timeline,
    }
    if result.get("volumes") is not None:  # what happened to each PVC's data
        entry["volumes"] = [dict(volume) for volume in result["volumes"]]
    if result.get("details") is not None:  # operation-specific data (e.g. status listings), json only
        entry["details"] = _json_copy(result["details"])
    return entry


def overall_verdict(clusters):
    """succeeded when every cluster that ran succeeded, failed when every one failed (or none ran)."""
    ran = [cluster["verdict"] for cluster in clusters if cluster["verdict"] != "skipped"]
    if not ran:
        return "failed"
    if all(verdict == "succeeded" for verdict in ran):
        return "succeeded"
    if all(verdict == "failed" for verdict in ran):
        return "failed"
    return "partially_failed"


def build_report(operation, name, clusters, options=None, started=None, finished=None, secret_values=()):
    """The report document; totals, verdict and durations are computed here and only here."""
    entries = [normalize_cluster(cluster) for cluster in clusters]
    seen = set()
    for entry in entries:
        if entry["name"] in seen:
            raise ReportError("cluster %s appears twice in the report" % entry["name"])
        seen.add(entry["name"])
    if started is None:
        starts = [parse_timestamp(entry["started"]) for entry in entries if entry["started"]]
        started = min(starts) if starts else None
    if finished is None:
        ends = [parse_timestamp(entry["finished"]) for entry in entries if entry["finished"]]
        finished = max(ends) if ends else None
    started, finished = to_timestamp(started), to_timestamp(finished)
    totals = {"clusters": len(entries)}
    for verdict in CLUSTER_VERDICTS:
        totals[verdict] = sum(1 for entry in entries if entry["verdict"] == verdict)
    report = {
        "schema": SCHEMA_ID,
        "operation": str(operation),
        "name": "" if name is None else str(name),
        "started": started,
        "finished": finished,
        "duration_s": seconds_between(started, finished),
        "verdict": overall_verdict(entries),
        "options": scrub_secrets(options or {}, secret_values),
        "totals": totals,
        "clusters": [
            dict(entry, **scrub_secrets(
                dict((key, entry[key]) for key in ("reason", "phase", "location", "warnings", "errors", "labels")),
                secret_values, drop_values=False))
            for entry in entries
        ],
    }
    validate_report(report)
    return report


def merge_reports(reports):
    """One fleet report from the reports of slices of one run (AWX job slicing: each slice drove only
    its own clusters). Slices must be of the same operation and run name, and no cluster may appear
    in two of them; totals, verdict and times are computed anew over all clusters."""
    reports = list(reports)
    if not reports:
        raise ReportError("no reports to merge")
    for report in reports:
        validate_report(report)
    runs = sorted(set((r["operation"], r["name"]) for r in reports))
    if len(runs) > 1:
        raise ReportError("the reports are of different runs: %s" % ", ".join("%s %s" % run for run in runs))
    seen = {}
    for index, report in enumerate(reports):
        for cluster in report["clusters"]:
            if cluster["name"] in seen:
                raise ReportError("cluster %s is in slice %d and slice %d" % (cluster["name"], seen[cluster["name"]] + 1, index + 1))
            seen[cluster["name"]] = index
    starts = [parse_timestamp(r["started"]) for r in reports if r.get("started")]
    ends = [parse_timestamp(r["finished"]) for r in reports if r.get("finished")]
    options = dict(reports[0].get("options") or {})
    options["merged_slices"] = len(reports)
    return build_report(runs[0][0], runs[0][1], [c for r in reports for c in r["clusters"]], options=options,
                        started=min(starts) if starts else None, finished=max(ends) if ends else None)


def report_from_stats(stats):
    """A report document from the compact summary a run publishes as custom stats (AWX artifacts):
    per cluster verdict, phase, reason and duration (no timelines or texts)."""
    clusters = [dict((k, c.get(k)) for k in ("name", "verdict", "phase", "reason", "duration_s")) for c in stats.get("clusters") or []]
    return build_report(stats["operation"], stats.get("name"), clusters, started=stats.get("started"), finished=stats.get("finished"))


def validate_report(report):
    """Raise ReportError when the document does not match the schema (needs jsonschema)."""
    if not HAS_JSONSCHEMA:
        if not isinstance(report, dict) or report.get("schema") != SCHEMA_ID:
            raise ReportError("not a %s document" % SCHEMA_ID)
        return False
    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    problems = sorted(validator.iter_errors(report), key=lambda error: list(error.absolute_path))
    if problems:
        raise ReportError("; ".join(
            "%s: %s" % ("/".join(str(part) for part in problem.absolute_path) or "(root)", problem.message)
            for problem in problems[:5]
        ))
    return True


def exit_decision(report, fail_on):
    """(fail, message) for the run's exit status.

    any: fail unless every cluster succeeded; all: fail only when no cluster succeeded even
    partially (report verdict failed); never: do not fail.
    """
    if fail_on not in FAIL_ON_CHOICES:
        raise ReportError("fail_on must be one of %s, not %r" % (", ".join(FAIL_ON_CHOICES), fail_on))
    verdict = report["verdict"]
    totals = report["totals"]
    summary = "%s %s: %s (%d succeeded, %d partially failed, %d failed, %d skipped of %d clusters)" % (
        report["operation"], report["name"], verdict, totals["succeeded"], totals["partially_failed"],
        totals["failed"], totals["skipped"], totals["clusters"],
    )
    if fail_on == "any":
        fail = verdict != "succeeded"
    elif fail_on == "all":
        fail = verdict == "failed"
    else:
        fail = False
    return fail, summary


def stats_data(report):
    """Compact data for ansible.builtin.set_stats (AWX job artifacts): no timelines or texts."""
    return {
        "schema": report["schema"],
        "operation": report["operation"],
        "name": report["name"],
        "verdict": report["verdict"],
        "started": report["started"],
        "finished": report["finished"],
        "duration_s": report["duration_s"],
        "totals": dict(report["totals"]),
        "clusters": [
            {
                "name": cluster["name"],
                "verdict": cluster["verdict"],
                "phase": cluster["phase"],
                "reason": cluster["reason"],
                "duration_s": cluster["duration_s"],
            }
            for cluster in report["clusters"]
        ],
    }


# ---------------------------------------------------------------------------------------------
# renderers


def _fmt_duration(seconds):
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return "%.1fs" % seconds
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return "%dm%02ds" % (minutes, rest)
    hours, minutes = divmod(minutes, 60)
    return "%dh%02dm" % (hours, minutes)


def _fmt_items(items):
    if items["total"] is None and items["done"] is None:
        return "-"
    return "%s/%s" % ("?" if items["done"] is None else items["done"], "?" if items["total"] is None else items["total"])


def _fmt_object(obj):
    if not obj:
        return "-"
    name = obj.get("name") or "?"
    if obj.get("namespace"):
        name = "%s/%s" % (obj["namespace"], name)
    return "%s %s" % (obj.get("kind") or "", name) if obj.get("kind") else name


def _headline(report):
    totals = report["totals"]
    return "%s %s: %s - %d clusters: %d succeeded, %d partially failed, %d failed, %d skipped (%s)" % (
        report["operation"], report["name"], report["verdict"].upper().replace("_", " "), totals["clusters"],
        totals["succeeded"], totals["partially_failed"], totals["failed"], totals["skipped"],
        _fmt_duration(report["duration_s"]),
    )


def volume_rows(report):
    """(cluster, namespace/pvc, result, bytes, object, reason) for every volume of every cluster."""
    rows = []
    for cluster in report["clusters"]:
        for volume in cluster.get("volumes") or []:
            if volume["moved"]:
                outcome = "moved"
            elif volume["requested"]:
                outcome = "NOT MOVED"
            else:
                outcome = "not requested"
            obj = volume.get("object") or {}
            rows.append((cluster["name"], "%s/%s" % (volume["namespace"], volume["pvc"]), outcome,
                         "-" if volume.get("bytes") is None else str(volume["bytes"]),
                         "%s %s" % (obj.get("kind"), obj.get("name")) if obj else "-", volume.get("reason") or ""))
    return rows


VOLUME_HEADER = ("CLUSTER", "PVC", "DATA", "BYTES", "BY", "REASON")


def _bytes(value):
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0


def storage_rows(report):
    """Per cluster of a Rook report: health, daemons ready/wanted, capacity, ready pools (none for Velero reports)."""
    rows = []
    for cluster in report["clusters"]:
        details = cluster.get("details") or {}
        if "health" not in details or "daemons" not in details:
            continue
        daemons = details.get("daemons") or {}
        capacity = details.get("capacity") or {}
        pools = (details.get("block_pools") or []) + (details.get("filesystems") or []) + (details.get("object_stores") or [])
        rows.append({
            "cluster": cluster["name"], "verdict": cluster["verdict"], "health": details.get("health") or "-",
            "checks": "; ".join("%s: %s" % item for item in sorted((details.get("health_checks") or {}).items())),
            "daemons": " ".join("%s %s/%s" % (name, (daemons.get(name) or {}).get("ready", 0), (daemons.get(name) or {}).get("wanted", "?"))
                                for name in ("mon", "mgr", "osd")),
            "used": capacity.get("used_bytes"), "total": capacity.get("total_bytes"),
            "pools": "%d/%d Ready" % (sum(1 for p in pools if p.get("phase") == "Ready"), len(pools)),
        })
    return rows


def render_json(report):
    """The report as JSON: the top level and the ``clusters`` list indented, one line per cluster.

    Indenting everything switches json to its pure-Python encoder (about 2 ms per cluster on a
    fleet install); each cluster entry on a line of its own keeps the file greppable by cluster.
    """
    lines = []
    for key, value in report.items():
        if key == "clusters" and isinstance(value, list) and value:
            text = "[\n" + ",\n".join("    " + json.dumps(entry) for entry in value) + "\n  ]"
        else:
            text = json.dumps(value)
        lines.append("  %s: %s" % (json.dumps(key), text))
    return "{\n" + ",\n".join(lines) + "\n}\n"


def render_table(report, reason_width=60):
    """Compact fixed-width text table for the end of a run; long reasons wrap onto continuation lines
    (whole, never cut: the reason is what the user reads to act)."""
    header = ("CLUSTER", "VERDICT", "PHASE", "ITEMS", "DURATION", "REASON")
    rows = []
    for cluster in report["clusters"]:
        rows.extend(_wrapped((
            cluster["name"], cluster["verdict"], cluster["phase"] or "-", _fmt_items(cluster["items"]),
            _fmt_duration(cluster["duration_s"]), (cluster["reason"] or "").replace("\n", " "),
        ), reason_width))
    lines = [_headline(report)] + _fixed_width(header, rows)
    volumes = [line for row in volume_rows(report) for line in _wrapped(row, reason_width)]
    if volumes:
        lines += ["", "Volume data:"] + _fixed_width(VOLUME_HEADER, volumes)
    return "\n".join(lines) + "\n"


def _wrapped(row, width):
    """``row`` whose last cell is wrapped at ``width``: one line, or continuation lines with empty cells."""
    parts = textwrap.wrap(row[-1], width, break_long_words=True, break_on_hyphens=False) or [""]
    blank = ("",) * (len(row) - 1)
    return [tuple(row[:-1]) + (parts[0],)] + [blank + (part,) for part in parts[1:]]


def _fixed_width(header, rows):
    widths = [max([len(header[i])] + [len(row[i]) for row in rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header] + rows]


def _md_cell(value):
    text = "-" if value in (None, "") else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report):
    lines = [
        "# %s %s: %s" % (report["operation"], report["name"], report["verdict"]),
        "",
        "- Started: %s" % (report["started"] or "-"),
        "- Finished: %s" % (report["finished"] or "-"),
        "- Duration: %s" % _fmt_duration(report["duration_s"]),
        "- Clusters: %(clusters)d (succeeded %(succeeded)d, partially failed %(partially_failed)d, "
        "failed %(failed)d, skipped %(skipped)d)" % report["totals"],
        "",
        "| Cluster | Verdict | Phase | Object | Location | Items | Warnings | Errors | Duration | Reason |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cluster in report["clusters"]:
        lines.append("| %s |" % " | ".join(_md_cell(cell) for cell in (
            cluster["name"], cluster["verdict"], cluster["phase"], _fmt_object(cluster["object"]),
            cluster["location"], _fmt_items(cluster["items"]), len(cluster["warnings"]), len(cluster["errors"]),
            _fmt_duration(cluster["duration_s"]), cluster["reason"],
        )))
    volumes = volume_rows(report)
    if volumes:
        lines += ["", "## Volume data", "", "| Cluster | PVC | Data | Bytes | By | Reason |", "|---|---|---|---|---|---|"]
        lines += ["| %s |" % " | ".join(_md_cell(cell) for cell in row) for row in volumes]
    storage = storage_rows(report)
    if storage:
        lines += ["", "## Ceph storage", "", "| Cluster | Health | Daemons ready/wanted | Capacity used | Pools | Health checks |",
                  "|---|---|---|---|---|---|"]
        lines += ["| %s |" % " | ".join(_md_cell(cell) for cell in (
            row["cluster"], row["health"], row["daemons"], "%s of %s" % (_bytes(row["used"]), _bytes(row["total"])), row["pools"],
            row["checks"])) for row in storage]
    details = [cluster for cluster in report["clusters"] if cluster["errors"] or cluster["warnings"]]
    if details:
        lines += ["", "## Errors and warnings"]
        for cluster in details:
            lines += ["", "### %s (%s)" % (cluster["name"], cluster["verdict"])]
            lines += ["- error: %s" % _md_cell(text) for text in cluster["errors"]]
            lines += ["- warning: %s" % _md_cell(text) for text in cluster["warnings"]]
    if report["options"]:
        lines += ["", "## Options", "", "```json", json.dumps(report["options"], indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def render_junit(report):
    """JUnit XML: one testcase per cluster; failed and partially failed clusters carry a failure."""
    totals = report["totals"]
    suites = ET.Element("testsuites", name="fleetdr.kube")
    suite = ET.SubElement(suites, "testsuite", {
        "name": "%s %s" % (report["operation"], report["name"]),
        "tests": str(totals["clusters"]),
        "failures": str(totals["failed"] + totals["partially_failed"]),
        "errors": "0",
        "skipped": str(totals["skipped"]),
        "time": "%.3f" % (report["duration_s"] or 0.0),
    })
    if report["started"]:
        suite.set("timestamp", report["started"])
    for cluster in report["clusters"]:
        case = ET.SubElement(suite, "testcase", {
            "classname": "fleetdr.%s" % report["operation"],
            "name": cluster["name"],
            "time": "%.3f" % (cluster["duration_s"] or 0.0),
        })
        reason = cluster["reason"] or cluster["verdict"]
        if cluster["verdict"] in ("failed", "partially_failed"):
            failure = ET.SubElement(case, "failure", message=reason, type=cluster["verdict"])
            failure.text = "\n".join([reason] + ["error: %s" % text for text in cluster["errors"]])
        elif cluster["verdict"] == "skipped":
            ET.SubElement(case, "skipped", message=reason)
        out = ["phase: %s" % (cluster["phase"] or "-")]
        out += ["volume %s: %s%s" % (row[1], row[2], " (%s)" % row[5] if row[5] else "")
                for row in volume_rows({"clusters": [cluster]})]
        out += ["%s %s" % (step["at"], step["phase"]) for step in cluster["timeline"]]
        out += ["warning: %s" % text for text in cluster["warnings"]]
        ET.SubElement(case, "system-out").text = "\n".join(out)
    if hasattr(ET, "indent"):
        ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


_VERDICT_COLOURS = {
    "succeeded": ("#1a7f37", "#dafbe1"),
    "partially_failed": ("#9a6700", "#fff8c5"),
    "failed": ("#cf222e", "#ffebe9"),
    "skipped": ("#57606a", "#eaeef2"),
}
# Distinct, colour-blind friendly hues (Okabe-Ito) assigned to phases in order of first use.
_PHASE_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1f2328}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
.meta{color:#57606a;font-size:13px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-weight:600;font-size:12px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.num{text-align:right;white-space:nowrap} td.slowest{font-weight:700}
.totals span{margin-right:16px;font-size:14px}
details{margin:4px 0} summary{cursor:pointer;font-weight:600}
ul{margin:4px 0 8px 20px;padding:0} li.err{color:#cf222e} li.warn{color:#9a6700}
svg text{font-family:inherit;font-size:11px}
pre{background:#f6f8fa;padding:8px;font-size:12px;overflow:auto}
.bar{display:inline-block;width:120px;height:10px;background:#eaeef2;border-radius:3px;vertical-align:middle}
.bar div{height:100%;background:#0969da;border-radius:3px}
"""


def _esc(value):
    return html.escape("-" if value in (None, "") else str(value), quote=True)


def _badge(verdict):
    # solid verdict colour with white text: stands out on the tinted table rows too
    fg = _VERDICT_COLOURS.get(verdict, _VERDICT_COLOURS["skipped"])[0]
    return '<span class="badge" style="color:#ffffff;background:%s">%s</span>' % (fg, _esc(verdict))


def _timeline_svg(report):
    """Gantt-like SVG: one row per cluster, one coloured segment per phase, scaled to the run."""
    origin = parse_timestamp(report["started"])
    end = parse_timestamp(report["finished"])
    rows = [cluster for cluster in report["clusters"] if cluster["started"] or cluster["timeline"]]
    if origin is None or end is None or not rows:
        return "<p class=\"meta\">No timeline recorded.</p>"
    span = max((end - origin).total_seconds(), 0.001)
    label_w, chart_w, row_h, top = 160, 640, 18, 20
    colours = {}
    for cluster in rows:
        for step in cluster["timeline"]:
            colours.setdefault(step["phase"], _PHASE_PALETTE[len(colours) % len(_PHASE_PALETTE)])

    def x_of(moment):
        offset = (parse_timestamp(moment) - origin).total_seconds()
        return label_w + chart_w * min(max(offset / span, 0.0), 1.0)

    height = top + row_h * len(rows) + 40
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" '
        'aria-label="Phase timeline per cluster">' % (label_w + chart_w + 70, height),
    ]
    for tick in range(5):
        x = label_w + chart_w * tick / 4.0
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#d0d7de"/>' % (x, top - 4, x, top + row_h * len(rows)))
        parts.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#57606a">%s</text>' % (
            x, top - 8, _esc(_fmt_duration(span * tick / 4.0))))
    for index, cluster in enumerate(rows):
        y = top + index * row_h
        fg = _VERDICT_COLOURS.get(cluster["verdict"], _VERDICT_COLOURS["skipped"])[0]
        # one group per cluster: a lane that tools (and tests) can find by cluster name
        parts.append('<g class="lane" data-cluster="%s" data-verdict="%s">' % (
            _esc(cluster["name"]), _esc(cluster["verdict"])))
        parts.append('<text x="%d" y="%d" text-anchor="end" fill="%s">%s</text>' % (
            label_w - 6, y + row_h - 5, fg, _esc(cluster["name"])))
        finished = cluster["finished"] or report["finished"]
        steps = cluster["timeline"] or [{"phase": cluster["phase"] or cluster["verdict"], "at": cluster["started"]}]
        for position, step in enumerate(steps):
            stop = steps[position + 1]["at"] if position + 1 < len(steps) else finished
            x1, x2 = x_of(step["at"]), x_of(stop)
            seconds = seconds_between(step["at"], stop)
            parts.append(
                '<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %s for %s</title></rect>' % (
                    x1, y + 3, max(x2 - x1, 1.0), row_h - 6, colours.get(step["phase"], "#999999"),
                    _esc(cluster["name"]), _esc(step["phase"]), _esc(_fmt_duration(seconds))))
        end_x = x_of(finished) if finished else label_w + chart_w
        parts.append('<text x="%.1f" y="%d" fill="%s">%s%s</text>' % (
            end_x + 4, y + row_h - 5, fg, _esc(_fmt_duration(cluster["duration_s"])),
            "" if cluster["verdict"] == "succeeded" else " " + _esc(cluster["verdict"])))
        parts.append("</g>")
    legend_y = top + row_h * len(rows) + 24
    x = label_w
    for phase, colour in colours.items():
        parts.append('<rect x="%d" y="%d" width="10" height="10" fill="%s"/>' % (x, legend_y - 9, colour))
        parts.append('<text x="%d" y="%d">%s</text>' % (x + 14, legend_y, _esc(phase)))
        x += 22 + 6 * len(phase)  # about 11px-font text width
    parts.append("</svg>")
    return "\n".join(parts)


# Above this many clusters the page is built to be read at fleet scale: failures first, the succeeded
# clusters collapsed, counts per label, and the timeline as phase percentiles instead of one lane each.
LARGE_REPORT = 50
_VERDICT_ORDER = ("failed", "partially_failed", "skipped", "succeeded")


def _percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))] if ordered else None


def _phase_percentiles(report):
    """Per phase: how many clusters went through it and how long it took them (p50, p90, max)."""
    spent = {}
    for cluster in report["clusters"]:
        steps = cluster["timeline"]
        for position, step in enumerate(steps):
            stop = steps[position + 1]["at"] if position + 1 < len(steps) else cluster["finished"]
            seconds = seconds_between(step["at"], stop)
            if seconds is not None:
                spent.setdefault(step["phase"], []).append(seconds)
    rows = ["<tr><td>%s</td><td class=\"num\">%d</td><td class=\"num\">%s</td><td class=\"num\">%s</td><td class=\"num\">%s</td></tr>" % (
        _esc(phase), len(values), _esc(_fmt_duration(_percentile(values, 0.5))), _esc(_fmt_duration(_percentile(values, 0.9))),
        _esc(_fmt_duration(max(values)))) for phase, values in spent.items()]
    durations = [c["duration_s"] for c in report["clusters"] if c["duration_s"] is not None]
    if durations:
        rows.append("<tr><td><b>whole run per cluster</b></td><td class=\"num\">%d</td><td class=\"num\">%s</td>"
                    "<td class=\"num\">%s</td><td class=\"num\">%s</td></tr>" % (
                        len(durations), _esc(_fmt_duration(_percentile(durations, 0.5))),
                        _esc(_fmt_duration(_percentile(durations, 0.9))), _esc(_fmt_duration(max(durations)))))
    return ("<table class=\"phases\"><thead><tr><th>Phase</th><th>Clusters</th><th>p50</th><th>p90</th><th>max</th></tr></thead>"
            "<tbody>%s</tbody></table>" % "".join(rows))


def _by_label(report):
    """Verdict counts per label value (the fleet's env/region groups): where the failures are."""
    counts = {}
    for cluster in report["clusters"]:
        for key, value in sorted(cluster["labels"].items()):
            row = counts.setdefault("%s=%s" % (key, value), dict((verdict, 0) for verdict in _VERDICT_ORDER))
            row[cluster["verdict"]] = row.get(cluster["verdict"], 0) + 1
    if not counts:
        return ""
    return ("<h2>By label</h2><table class=\"labels\"><thead><tr><th>Label</th>%s</tr></thead><tbody>%s</tbody></table>" % (
        "".join("<th>%s</th>" % _esc(v.replace("_", " ")) for v in _VERDICT_ORDER),
        "".join("<tr><td>%s</td>%s</tr>" % (_esc(label), "".join('<td class="num">%d</td>' % row[v] for v in _VERDICT_ORDER))
                for label, row in sorted(counts.items()))))


_CLUSTER_HEADER = ("<th>Cluster</th><th>Labels</th><th>Verdict</th><th>Phase</th><th>Object</th><th>Location</th><th>Items</th>"
                   "<th>Warnings</th><th>Errors</th><th>Duration</th><th>Reason</th>")


def render_html(report):
    """Self-contained HTML page (inline CSS and SVG, no external assets)."""
    totals = report["totals"]
    title = "%s %s" % (report["operation"], report["name"])
    large = len(report["clusters"]) > LARGE_REPORT
    rows = []
    collapsed = []
    durations = [cluster["duration_s"] for cluster in report["clusters"] if cluster["duration_s"] is not None]
    slowest = max(durations) if len(durations) > 1 else None
    clusters = report["clusters"]
    if large:
        rank = dict((verdict, index) for index, verdict in enumerate(_VERDICT_ORDER))
        clusters = sorted(clusters, key=lambda c: rank.get(c["verdict"], 0))
    for cluster in clusters:
        fg, bg = _VERDICT_COLOURS.get(cluster["verdict"], _VERDICT_COLOURS["skipped"])
        labels = ", ".join("%s=%s" % item for item in sorted(cluster["labels"].items()))
        (collapsed if large and cluster["verdict"] == "succeeded" else rows).append(
            '<tr style="background:%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>'
            '<td class="num">%s</td><td class="num">%d</td><td class="num">%d</td><td class="num%s">%s</td><td>%s</td></tr>' % (
                bg, _esc(cluster["name"]), _esc(labels), _badge(cluster["verdict"]), _esc(cluster["phase"]),
                _esc(_fmt_object(cluster["object"])), _esc(cluster["location"]), _esc(_fmt_items(cluster["items"])),
                len(cluster["warnings"]), len(cluster["errors"]),
                " slowest" if slowest is not None and cluster["duration_s"] == slowest else "",
                _esc(_fmt_duration(cluster["duration_s"])),
                _esc(cluster["reason"]),
            ))
        del fg
    details = []
    for cluster in report["clusters"]:
        if not (cluster["errors"] or cluster["warnings"]):
            continue
        items = ['<li class="err">%s</li>' % _esc(text) for text in cluster["errors"]]
        items += ['<li class="warn">%s</li>' % _esc(text) for text in cluster["warnings"]]
        details.append('<details%s><summary>%s %s (%d errors, %d warnings)</summary><ul>%s</ul></details>' % (
            " open" if cluster["verdict"] in ("failed", "partially_failed") else "", _esc(cluster["name"]),
            _badge(cluster["verdict"]), len(cluster["errors"]), len(cluster["warnings"]), "".join(items)))
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="generator" content="fleetdr.kube %s">' % _esc(report["schema"]),
        "<title>%s</title><style>%s</style></head><body>" % (_esc(title), _CSS),
        "<h1>%s %s</h1>" % (_esc(title), _badge(report["verdict"])),
        '<p class="meta">%s &rarr; %s &middot; %s</p>' % (
            _esc(report["started"]), _esc(report["finished"]), _esc(_fmt_duration(report["duration_s"]))),
        '<p class="totals"><span>clusters <b>%d</b></span><span style="color:%s">succeeded <b>%d</b></span>'
        '<span style="color:%s">partially failed <b>%d</b></span><span style="color:%s">failed <b>%d</b></span>'
        '<span style="color:%s">skipped <b>%d</b></span></p>' % (
            totals["clusters"], _VERDICT_COLOURS["succeeded"][0], totals["succeeded"],
            _VERDICT_COLOURS["partially_failed"][0], totals["partially_failed"], _VERDICT_COLOURS["failed"][0],
            totals["failed"], _VERDICT_COLOURS["skipped"][0], totals["skipped"]),
        "<h2>Clusters</h2>" + (" <p class=\"meta\">Failures first; the %d succeeded clusters are collapsed below.</p>" % len(collapsed)
                               if large else ""),
        "<table><thead><tr>%s</tr></thead>" % _CLUSTER_HEADER,
        "<tbody>%s</tbody></table>" % "".join(rows),
    ]
    if collapsed:
        body.append("<details><summary>%d succeeded clusters</summary><table><thead><tr>%s</tr></thead><tbody>%s</tbody></table>"
                    "</details>" % (len(collapsed), _CLUSTER_HEADER, "".join(collapsed)))
    if large:
        body += [_by_label(report), "<h2>Timeline</h2>", "<p class=\"meta\">Time spent per phase across the %d clusters.</p>" % (
            len(report["clusters"])), _phase_percentiles(report)]
    else:
        body += ["<h2>Timeline</h2>", _timeline_svg(report)]
    volumes = volume_rows(report)
    if volumes:
        colours = {"moved": _VERDICT_COLOURS["succeeded"][1], "NOT MOVED": _VERDICT_COLOURS["failed"][1]}
        body += ["<h2>Volume data</h2>",
                 "<table class=\"volumes\"><thead><tr><th>Cluster</th><th>PVC</th><th>Data</th><th>Bytes</th><th>By</th>"
                 "<th>Reason</th></tr></thead><tbody>%s</tbody></table>" % "".join(
                     '<tr style="background:%s" data-cluster="%s" data-data="%s"><td>%s</td><td>%s</td><td>%s</td>'
                     '<td class="num">%s</td><td>%s</td><td>%s</td></tr>' % (
                         colours.get(row[2], _VERDICT_COLOURS["skipped"][1]), _esc(row[0]), _esc(row[2]),
                         *[_esc(cell) for cell in row]) for row in volumes)]
    storage = storage_rows(report)
    if storage:
        bars = []
        for row in storage:
            share = (100.0 * row["used"] / row["total"]) if row["used"] is not None and row["total"] else None
            capacity_cell = ('<div class="bar" title="%s of %s"><div style="width:%.1f%%"></div></div> %s / %s' % (
                _esc(_bytes(row["used"])), _esc(_bytes(row["total"])), share, _esc(_bytes(row["used"])), _esc(_bytes(row["total"]))
            )) if share is not None else "-"
            bars.append('<tr style="background:%s" data-cluster="%s"><td>%s</td><td>%s</td><td>%s</td><td class="capacity">%s</td>'
                        '<td>%s</td><td>%s</td></tr>' % (
                            _VERDICT_COLOURS.get(row["verdict"], _VERDICT_COLOURS["skipped"])[1], _esc(row["cluster"]), _esc(row["cluster"]),
                            _esc(row["health"]), _esc(row["daemons"]), capacity_cell, _esc(row["pools"]), _esc(row["checks"])))
        body += ["<h2>Ceph storage</h2>",
                 "<table class=\"storage\"><thead><tr><th>Cluster</th><th>Health</th><th>Daemons ready/wanted</th><th>Capacity</th>"
                 "<th>Pools, filesystems, object stores</th><th>Health checks</th></tr></thead><tbody>%s</tbody></table>" % "".join(bars)]
    if details:
        body += ["<h2>Errors and warnings</h2>"] + details
    if report["options"]:
        body += ["<h2>Options</h2>", "<pre>%s</pre>" % _esc(json.dumps(report["options"], indent=2, sort_keys=True))]
    body.append("</body></html>")
    return "\n".join(body) + "\n"


RENDERERS = {
    "json": render_json,
    "md": render_markdown,
    "html": render_html,
    "junit": render_junit,
}


def write_report(report, directory, formats=None):
    """Write the requested renderings into ``directory``; returns {format: path}."""
    formats = list(formats or REPORT_FILES)
    unknown = [fmt for fmt in formats if fmt not in RENDERERS]
    if unknown:
        raise ReportError("unknown report formats: %s (known: %s)" % (", ".join(unknown), ", ".join(RENDERERS)))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    paths = {}
    for fmt in formats:
        path = os.path.join(directory, REPORT_FILES[fmt])
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(RENDERERS[fmt](report))
        os.replace(tmp, path)  # readers never see a half-written file
        paths[fmt] = path
    return paths
