# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller-side writer of the fleet report (documentation in plugins/modules/fleet_report.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.fleetdr.kube.plugins.module_utils.report import (
    FAIL_ON_CHOICES,
    RENDERERS,
    ReportError,
    build_report,
    exit_decision,
    render_table,
    scrub_secrets,
    stats_data,
    validate_report,
    write_report,
)

display = Display()

ARGUMENT_SPEC = dict(
    report=dict(type="dict"),
    operation=dict(type="str"),
    name=dict(type="str", default=""),
    clusters=dict(type="list", elements="dict"),
    options=dict(type="dict", default={}),
    started=dict(type="str"),
    finished=dict(type="str"),
    dest=dict(type="path"),
    formats=dict(type="list", elements="str", default=sorted(RENDERERS), choices=sorted(RENDERERS)),
    fail_on=dict(type="str", default="any", choices=list(FAIL_ON_CHOICES)),
    secrets=dict(type="list", elements="str", default=[], no_log=True),
    stats_key=dict(type="str", default="fleetdr_report", no_log=False),
    print_table=dict(type="bool", default=True),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(
            argument_spec=ARGUMENT_SPEC,
            mutually_exclusive=[("report", "operation"), ("report", "clusters")],
            required_one_of=[("report", "operation")],
            required_together=[("operation", "clusters")],
        )
        del validation
        secrets = args["secrets"]
        try:
            if args["report"] is not None:
                report = scrub_secrets(args["report"], secrets, drop_values=False) if secrets else dict(args["report"])
                validate_report(report)
            else:
                report = build_report(
                    args["operation"], args["name"], args["clusters"], options=args["options"],
                    started=args["started"], finished=args["finished"], secret_values=secrets,
                )
            fail, summary = exit_decision(report, args["fail_on"])
            table = render_table(report)
            paths = {}
            if args["dest"] and not self._task.check_mode:
                paths = write_report(report, os.path.abspath(args["dest"]), args["formats"])
        except (ReportError, OSError, ValueError, KeyError, TypeError) as exc:
            raise AnsibleActionFail("Failed to build or write the fleet report: %s" % to_native(exc))

        if args["print_table"]:
            display.display(table)
        stats = stats_data(report)
        result.update(
            changed=bool(paths),
            report=report,
            paths=paths,
            table=table,
            stats=stats,
            fail=fail,
            msg=summary,
            failed_clusters=[c["name"] for c in report["clusters"] if c["verdict"] in ("failed", "partially_failed")],
        )
        if args["stats_key"]:
            # The strategy records custom stats only from successful results, which is why this
            # action never fails on the report's verdict: a later task fails on `fail`.
            result["ansible_stats"] = {"data": {args["stats_key"]: stats}, "per_host": False, "aggregate": False}
        return result
