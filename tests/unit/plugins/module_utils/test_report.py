# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import datetime
import json
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils import report as rpt
from ansible_collections.fleetdr.kube.plugins.module_utils.report_schema import REPORT_SCHEMA

T0 = datetime.datetime(2026, 11, 22, 12, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def cluster(name, verdict="succeeded", start=0, end=10, **extra):
    result = {
        "name": name,
        "labels": {"env": "prod", "region": "eu-west"},
        "verdict": verdict,
        "phase": {"succeeded": "Completed", "failed": "Failed", "partially_failed": "PartiallyFailed"}.get(verdict),
        "object": {"kind": "Backup", "namespace": "velero", "name": "nightly-%s" % name},
        "location": "default",
        "items": {"total": 20, "done": 20 if verdict == "succeeded" else 7},
        "started": at(start),
        "finished": at(end),
        "timeline": [
            {"phase": "Connecting", "at": at(start)},
            {"phase": "InProgress", "at": at(start + 1)},
            {"phase": "Completed", "at": at(end)},
        ],
    }
    result.update(extra)
    return result


@pytest.fixture
def mixed():
    return rpt.build_report(
        "backup", "nightly",
        [
            cluster("c1"),
            cluster("c2", "failed", end=95, reason="BackupStorageLocation default is Unavailable",
                    errors=["backup storage location unavailable", "<script>alert(1)</script>"]),
            cluster("c3", "partially_failed", end=30, reason="2 items failed",
                    warnings=["namespace missing"], errors=["pod x failed"]),
            {"name": "c4", "verdict": "skipped", "reason": "Velero not installed"},
        ],
        options={"included_namespaces": ["shop"], "s3_secret_access_key": "hunter22", "ttl": "720h"},
    )


def test_report_is_schema_valid_and_totals_are_counted(mixed):
    jsonschema.validate(mixed, REPORT_SCHEMA)
    assert mixed["schema"] == "fleetdr.kube/report/v1"
    assert mixed["totals"] == {"clusters": 4, "succeeded": 1, "partially_failed": 1, "failed": 1, "skipped": 1}
    assert mixed["verdict"] == "partially_failed"
    # run bounds come from the clusters when not given
    assert mixed["started"] == "2026-11-22T12:00:00.000Z"
    assert mixed["finished"] == "2026-11-22T12:01:35.000Z"
    assert mixed["duration_s"] == 95.0
    c2 = mixed["clusters"][1]
    assert c2["duration_s"] == 95.0
    assert c2["errors"] == ["backup storage location unavailable", "<script>alert(1)</script>"]
    assert c2["timeline"][1] == {"phase": "InProgress", "at": "2026-11-22T12:00:01.000Z"}
    # missing fields of the skipped cluster are filled with empty values, not omitted
    c4 = mixed["clusters"][3]
    assert c4["items"] == {"total": None, "done": None} and c4["warnings"] == [] and c4["timeline"] == []


def test_options_are_scrubbed(mixed):
    assert mixed["options"] == {"included_namespaces": ["shop"], "ttl": "720h"}


@pytest.mark.parametrize("verdicts, expected", [
    (["succeeded", "succeeded"], "succeeded"),
    (["succeeded", "skipped"], "succeeded"),
    (["failed", "failed"], "failed"),
    (["failed", "skipped"], "failed"),
    (["succeeded", "failed"], "partially_failed"),
    (["partially_failed", "partially_failed"], "partially_failed"),
    (["skipped"], "failed"),
])
def test_overall_verdict(verdicts, expected):
    clusters = [{"name": "c%d" % i, "verdict": v} for i, v in enumerate(verdicts)]
    assert rpt.build_report("backup", "x", clusters)["verdict"] == expected


@pytest.mark.parametrize("fail_on, verdicts, fail", [
    ("any", ["succeeded", "succeeded"], False),
    ("any", ["succeeded", "partially_failed"], True),
    ("any", ["succeeded", "failed"], True),
    ("all", ["succeeded", "failed"], False),
    ("all", ["failed", "failed"], True),
    ("never", ["failed", "failed"], False),
])
def test_exit_decision(fail_on, verdicts, fail):
    report = rpt.build_report("restore", "x", [{"name": "c%d" % i, "verdict": v} for i, v in enumerate(verdicts)])
    decided, message = rpt.exit_decision(report, fail_on)
    assert decided is fail
    assert message.startswith("restore x: ")


def test_exit_decision_rejects_unknown_policy(mixed):
    with pytest.raises(rpt.ReportError):
        rpt.exit_decision(mixed, "some")


def test_invalid_cluster_results_are_rejected():
    with pytest.raises(rpt.ReportError, match="verdict"):
        rpt.build_report("backup", "x", [{"name": "c1", "verdict": "great"}])
    with pytest.raises(rpt.ReportError, match="twice"):
        rpt.build_report("backup", "x", [{"name": "c1"}, {"name": "c1"}])
    with pytest.raises(rpt.ReportError, match="name"):
        rpt.build_report("backup", "x", [{"verdict": "failed"}])


def test_validate_report_catches_schema_violations(mixed):
    broken = json.loads(json.dumps(mixed))
    broken["totals"]["failed"] = -1
    del broken["clusters"][0]["timeline"]
    with pytest.raises(rpt.ReportError) as info:
        rpt.validate_report(broken)
    assert "totals/failed" in str(info.value) and "timeline" in str(info.value)


def test_scrub_secrets_keys_values_and_substrings():
    data = {
        "password": "x", "aws_secret_access_key": "y", "bearerToken": "z", "clientSecret": "w",
        "access_key_id": "AKIA1", "name": "ok",
        "nested": {"url": "https://user:s3cr3tvalue@host/", "plain": "s3cr3tvalue", "list": ["s3cr3tvalue", "a"]},
    }
    scrubbed = rpt.scrub_secrets(data, secret_values=["s3cr3tvalue"])
    assert scrubbed == {
        "access_key_id": "AKIA1", "name": "ok",
        "nested": {"url": "https://user:********@host/", "list": ["********", "a"]},
    }
    # the input is not modified
    assert data["nested"]["plain"] == "s3cr3tvalue"


def test_cluster_texts_mask_registered_secrets():
    report = rpt.build_report("backup", "x", [{
        "name": "c1", "verdict": "failed", "reason": "403 for key TOPSECRETKEY",
        "errors": ["signature mismatch for TOPSECRETKEY"],
    }], secret_values=["TOPSECRETKEY"])
    text = rpt.render_json(report)
    assert "TOPSECRETKEY" not in text
    assert report["clusters"][0]["reason"] == "403 for key ********"


def test_json_rendering_round_trips(mixed):
    assert json.loads(rpt.render_json(mixed)) == mixed


def test_markdown_lists_every_cluster_and_error_text(mixed):
    md = rpt.render_markdown(mixed)
    assert md.startswith("# backup nightly: partially_failed")
    for name in ("c1", "c2", "c3", "c4"):
        assert re.search(r"^\| %s \| " % name, md, re.M)
    assert "| c2 | failed | Failed | Backup velero/nightly-c2 | default | 7/20 | 0 | 2 | 1m35s |" in md
    assert "- error: pod x failed" in md and "- warning: namespace missing" in md
    assert "hunter22" not in md


def test_junit_has_one_testcase_per_cluster_with_failures(mixed):
    root = ET.fromstring(rpt.render_junit(mixed))
    suite = root.find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "2" and suite.get("skipped") == "1"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert sorted(cases) == ["c1", "c2", "c3", "c4"]
    assert cases["c1"].find("failure") is None
    failure = cases["c2"].find("failure")
    assert failure.get("message") == "BackupStorageLocation default is Unavailable"
    assert failure.get("type") == "failed"
    assert "error: backup storage location unavailable" in failure.text
    assert cases["c3"].find("failure").get("type") == "partially_failed"
    assert cases["c4"].find("skipped").get("message") == "Velero not installed"
    assert cases["c2"].get("time") == "95.000"


def test_html_is_self_contained_escaped_and_charts_phases(mixed):
    page = rpt.render_html(mixed)
    assert page.startswith("<!DOCTYPE html>")
    # no external assets
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # the svg timeline has one labelled row per cluster that ran and one segment per phase
    svg = page[page.index("<svg"):page.index("</svg>") + 6]
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    titles = [rect.find(ns + "title").text for rect in root.iter(ns + "rect") if rect.find(ns + "title") is not None]
    assert "c2: InProgress for 1m34s" in titles
    assert len([t for t in titles if t.startswith("c1: ")]) == 3
    assert not [t for t in titles if t.startswith("c4: ")]  # skipped, never started
    # the slow cluster's bar is the longest: its InProgress segment is wider than c1's
    widths = dict((rect.find(ns + "title").text.split(" for ")[0], float(rect.get("width")))
                  for rect in root.iter(ns + "rect") if rect.find(ns + "title") is not None)
    assert widths["c2: InProgress"] > 5 * widths["c1: InProgress"]
    # verdict colours: failed row is red-tinted
    assert re.search(r'<tr style="background:#ffebe9"><td>c2</td>', page)


def test_table_is_compact_and_aligned(mixed):
    table = rpt.render_table(mixed)
    lines = table.splitlines()
    assert lines[0].startswith("backup nightly: PARTIALLY FAILED - 4 clusters: 1 succeeded")
    assert lines[1].split() == ["CLUSTER", "VERDICT", "PHASE", "ITEMS", "DURATION", "REASON"]
    assert lines[3].split()[:5] == ["c2", "failed", "Failed", "7/20", "1m35s"]
    assert len(set(line.index(line.split()[1]) for line in lines[1:])) == 1  # column 2 aligned


def test_stats_data_is_compact(mixed):
    stats = rpt.stats_data(mixed)
    assert stats["verdict"] == "partially_failed"
    assert stats["clusters"][1] == {"name": "c2", "verdict": "failed", "phase": "Failed",
                                    "reason": "BackupStorageLocation default is Unavailable", "duration_s": 95.0}
    assert "timeline" not in stats["clusters"][0]


def test_write_report_writes_all_renderings(tmp_path, mixed):
    paths = rpt.write_report(mixed, str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml", "report.html", "report.json", "report.md"]
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == mixed
    assert paths["junit"].endswith("junit.xml")
    with pytest.raises(rpt.ReportError):
        rpt.write_report(mixed, str(tmp_path), formats=["pdf"])


def test_timestamps_normalise_to_utc():
    assert rpt.to_timestamp(datetime.datetime(2026, 1, 1, 13, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))) \
        == "2026-01-01T12:00:00.000Z"
    assert rpt.seconds_between("2026-01-01T12:00:00Z", "2026-01-01T12:00:02.5Z") == 2.5


def test_operation_details_are_kept_in_the_document():
    details = {"backups": [{"name": "b1"}], "pair": ("a", 1)}
    report = rpt.build_report("status", "x", [{"name": "c1", "details": details}])
    details["backups"][0]["name"] = "changed later"
    assert report["clusters"][0]["details"] == {"backups": [{"name": "b1"}], "pair": ["a", 1]}  # a copy, JSON-shaped
    assert "details" not in rpt.build_report("status", "x", [{"name": "c1"}])["clusters"][0]


def _with_volumes():
    moved = {"namespace": "shop", "pvc": "data", "pod": "web-0", "volume": "data", "requested": True, "moved": True,
             "bytes": 16, "snapshot_id": "s1", "object": {"kind": "PodVolumeRestore", "name": "r-x"}, "reason": None}
    stuck = dict(moved, pvc="logs", moved=False, bytes=None, object=None, reason="pod web-1 is not Running (phase Pending)")
    return rpt.build_report("restore", "r", [
        cluster("c1", volumes=[moved]),
        cluster("c2", verdict="partially_failed", reason="volume data not moved: shop/logs", volumes=[moved, stuck]),
    ])


def test_volume_data_is_in_every_rendering():
    report = _with_volumes()
    assert [len(c["volumes"]) for c in report["clusters"]] == [1, 2]
    markdown = rpt.render_markdown(report)
    assert "## Volume data" in markdown
    assert "| c2 | shop/logs | NOT MOVED | - | - | pod web-1 is not Running (phase Pending) |" in markdown
    assert "| c1 | shop/data | moved | 16 | PodVolumeRestore r-x | - |" in markdown
    page = rpt.render_html(report)
    assert page.count('data-data="NOT MOVED"') == 1 and page.count('data-data="moved"') == 2
    cases = dict((case.get("name"), case) for case in ET.fromstring(rpt.render_junit(report).split("\n", 1)[1]).iter("testcase"))
    assert "volume shop/logs: NOT MOVED (pod web-1 is not Running (phase Pending))" in cases["c2"].find("system-out").text
    table = rpt.render_table(report)
    assert "Volume data:" in table and re.search(r"c2\s+shop/logs\s+NOT MOVED", table)


def test_a_report_without_volumes_has_no_volume_section(mixed):
    assert "Volume data" not in rpt.render_markdown(mixed) and "Volume data" not in rpt.render_table(mixed)


def test_storage_reports_get_a_ceph_section_with_a_capacity_bar_per_cluster():
    from ansible_collections.fleetdr.kube.plugins.module_utils.report import build_report, render_html, storage_rows
    details = {"health": "HEALTH_WARN", "health_checks": {"TOO_FEW_OSDS": "OSD count 1 < osd_pool_default_size 3"},
               "daemons": {"mon": {"wanted": 3, "ready": 3}, "mgr": {"wanted": 2, "ready": 2}, "osd": {"wanted": 1, "ready": 1}},
               "capacity": {"total_bytes": 100 * 2 ** 30, "used_bytes": 25 * 2 ** 30, "available_bytes": 75 * 2 ** 30},
               "block_pools": [{"name": "replicapool", "phase": "Ready"}], "filesystems": [], "object_stores": [{"name": "s", "phase": "Progressing"}]}
    report = build_report("storage", "rook-ceph", [{"name": "c1", "verdict": "succeeded", "phase": "Ready", "details": details},
                                                   {"name": "c2", "verdict": "failed", "phase": "Degraded", "reason": "x"}])
    rows = storage_rows(report)
    assert len(rows) == 1 and rows[0]["daemons"] == "mon 3/3 mgr 2/2 osd 1/1" and rows[0]["pools"] == "1/2 Ready"
    html = render_html(report)
    assert "<h2>Ceph storage</h2>" in html and 'style="width:25.0%"' in html and "25.0 GiB / 100.0 GiB" in html
    assert "TOO_FEW_OSDS: OSD count 1" in html
    assert "Ceph storage" not in render_html(build_report("backup", "b", [{"name": "c1"}]))


def test_table_wraps_long_reasons_whole():
    reason = ("no Backup nightly-c7 on this cluster (fleet backup nightly did not include it); the location default was "
              "Unavailable at 02:00 because the bucket policy denies s3:ListBucket for the velero user")
    report = rpt.build_report("restore", "nightly", [{"name": "c7", "verdict": "failed", "phase": "Preflight", "reason": reason}])
    lines = rpt.render_table(report).splitlines()
    start = lines[2].index("no Backup")
    assert all(len(line) - start <= 60 for line in lines[2:])
    assert " ".join(line[start:].strip() for line in lines[2:]) == reason  # every word, in order
    assert all(not line[:start].strip() for line in lines[3:])  # continuation lines hold only the reason


def _fleet_of(count):
    clusters = []
    for index in range(count):
        verdict = "failed" if index % 97 == 3 else "succeeded"
        clusters.append({"name": "c%04d" % index, "verdict": verdict, "phase": "Completed" if verdict == "succeeded" else "Failed",
                         "labels": {"env": ("prod", "staging")[index % 2], "region": "r%d" % (index % 5)},
                         "reason": None if verdict == "succeeded" else "Backup c%04d ended Failed: bucket policy denies" % index,
                         "started": "2026-12-03T02:00:00Z", "finished": "2026-12-03T02:01:%02dZ" % (index % 60),
                         "timeline": [{"phase": "Preflight", "at": "2026-12-03T02:00:00Z"},
                                      {"phase": "BackupInProgress", "at": "2026-12-03T02:00:02Z"},
                                      {"phase": "Completed", "at": "2026-12-03T02:01:%02dZ" % (index % 60)}]})
    return rpt.build_report("backup", "nightly", clusters, started="2026-12-03T02:00:00Z", finished="2026-12-03T02:01:59Z")


def test_a_thousand_cluster_page_puts_failures_first_and_stays_small():
    report = _fleet_of(1000)
    page = rpt.render_html(report)
    assert len(page.encode("utf-8")) < 2 * 1024 * 1024
    main_table, rest = page.split("</table>", 1)
    failed = [c["name"] for c in report["clusters"] if c["verdict"] == "failed"]
    assert all(name in main_table for name in failed) and "c0000" not in main_table  # failures first, successes collapsed
    assert "<summary>%d succeeded clusters</summary>" % (1000 - len(failed)) in rest and "c0000" in rest
    assert 'class="lane"' not in page  # no 1,000 timeline lanes: phase percentiles instead
    assert "<td>BackupInProgress</td><td class=\"num\">1000</td>" in page
    assert "<td>env=prod</td>" in page and "<td>region=r3</td>" in page  # verdicts per label


def test_a_small_page_keeps_one_timeline_lane_per_cluster():
    page = rpt.render_html(_fleet_of(10))
    assert page.count('class="lane"') == 10 and "succeeded clusters</summary>" not in page
