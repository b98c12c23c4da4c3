# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller-side merge of slice reports (documentation in plugins/modules/report_merge.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.fleetdr.kube.plugins.module_utils.report import (
    FAIL_ON_CHOICES,
    RENDERERS,
    ReportError,
    exit_decision,
    merge_reports,
    render_table,
    report_from_stats,
    stats_data,
    write_report,
)

display = Display()

ARGUMENT_SPEC = dict(
    reports=dict(type="list", elements="path", default=[]),
    stats=dict(type="list", elements="dict", default=[]),
    dest=dict(type="path"),
    formats=dict(type="list", elements="str", default=sorted(RENDERERS), choices=sorted(RENDERERS)),
    fail_on=dict(type="str", default="any", choices=list(FAIL_ON_CHOICES)),
    stats_key=dict(type="str", default="fleetdr_report", no_log=False),
    print_table=dict(type="bool", default=True),
)


def read_report(path):
    """A report document from a report.json file or a report directory."""
    if os.path.isdir(path):
        path = os.path.join(path, "report.json")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC, required_one_of=[("reports", "stats")])
        del validation
        try:
            slices = [read_report(path) for path in args["reports"]] + [report_from_stats(stats) for stats in args["stats"]]
            report = merge_reports(slices)
            fail, summary = exit_decision(report, args["fail_on"])
            paths = {}
            if args["dest"] and not self._task.check_mode:
                paths = write_report(report, os.path.abspath(args["dest"]), args["formats"])
        except (ReportError, OSError, ValueError, KeyError, TypeError) as exc:
            raise AnsibleActionFail("Failed to merge the slice reports: %s" % to_native(exc))
        table = render_table(report)
        if args["print_table"]:
            display.display(table)
        stats = stats_data(report)
        result.update(changed=bool(paths), report=report, paths=paths, table=table, stats=stats, fail=fail,
                      msg="%s (merged from %d slices)" % (summary, len(slices)),
                      failed_clusters=[c["name"] for c in report["clusters"] if c["verdict"] in ("failed", "partially_failed")])
        if args["stats_key"]:
            result["ansible_stats"] = {"data": {args["stats_key"]: stats}, "per_host": False, "aggregate": False}
        return result
