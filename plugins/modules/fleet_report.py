#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name on the controller; this file holds
# its documentation.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: fleet_report
short_description: Build, render and publish the report of a fleet operation
version_added: 1.0.0
description:
  - Builds the fleet report (schema C(fleetdr.kube/report/v1)) from per-cluster results, or takes a
    complete report, and validates it against the schema (when the C(jsonschema) library is installed).
  - Writes C(report.json), C(report.md), a self-contained C(report.html) (per-cluster table and a phase
    timeline chart) and C(junit.xml) into O(dest) on the controller, prints a compact table and
    publishes a summary as custom stats (C(set_stats) with C(per_host=false)), which AWX keeps as job
    artifacts.
  - Totals and the overall verdict are computed once, in the report; every rendering formats that one
    document. The overall verdict is C(succeeded) when every cluster that ran succeeded, C(failed)
    when every one failed (or none ran), and C(partially_failed) otherwise.
  - The task does not fail because of the report's verdict (Ansible drops custom stats of failed
    tasks). It returns RV(fail) decided by O(fail_on); fail the play in a following task.
author:
  - fleetdr.kube maintainers (@fleetdr)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: In check mode the report is built and returned but no file is written.
  diff_mode:
    support: none
  platform:
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
options:
  report:
    description:
      - A complete report document to validate and render. Mutually exclusive with O(operation) and O(clusters).
    type: dict
  operation:
    description:
      - The fleet operation the report is about, for example C(backup), C(restore) or C(install).
    type: str
  name:
    description:
      - Name of the run (backup name, restore name, schedule name).
    type: str
    default: ""
  clusters:
    description:
      - Per-cluster results. Each needs C(name); the other fields of a report cluster entry (C(labels),
        C(verdict), C(phase), C(reason), C(object), C(location), C(items), C(warnings), C(errors),
        C(started), C(finished), C(duration_s), C(timeline)) are optional.
      - C(verdict) is one of C(succeeded) (the default), C(partially_failed), C(failed), C(skipped).
    type: list
    elements: dict
  options:
    description:
      - The validated inputs of the run, recorded in the report. Keys that look secret (password, token,
        secret, credentials, ...) are dropped.
    type: dict
    default: {}
  started:
    description: Start of the run (RFC 3339). Defaults to the earliest cluster start.
    type: str
  finished:
    description: End of the run (RFC 3339). Defaults to the latest cluster end.
    type: str
  dest:
    description:
      - Directory on the controller to write the report files into; created when missing. Without it no file is written.
    type: path
  formats:
    description: Which files to write.
    type: list
    elements: str
    choices: [html, json, junit, md]
    default: [html, json, junit, md]
  fail_on:
    description:
      - Decides RV(fail). V(any) when any cluster did not succeed, V(all) when no cluster succeeded even
        partially, V(never) never.
    type: str
    choices: [any, all, never]
    default: any
  secrets:
    description:
      - Secret values (S3 keys, tokens) to remove from the report wherever they appear, also inside error texts.
    type: list
    elements: str
    default: []
  stats_key:
    description:
      - Name of the custom stat the summary is published under. An empty string publishes nothing.
    type: str
    default: fleetdr_report
  print_table:
    description: Print the compact table on the controller's display.
    type: bool
    default: true
notes:
  - Runs on the controller only; use it in a play on C(localhost) or with C(run_once).
seealso:
  - module: ansible.builtin.set_stats
"""

EXAMPLES = r"""
- name: Write the backup report
  fleetdr.kube.fleet_report:
    operation: backup
    name: nightly
    clusters: "{{ fleetdr_results }}"
    options:
      included_namespaces: [shop]
    dest: "{{ playbook_dir }}/fleetdr-reports/backup-nightly"
    fail_on: any
    secrets:
      - "{{ fleetdr_s3_secret_access_key }}"
  register: fleetdr_report

- name: Fail the run when the report says so
  ansible.builtin.fail:
    msg: "{{ fleetdr_report.msg }}"
  when: fleetdr_report.fail
"""

RETURN = r"""
report:
  description: The report document (schema C(fleetdr.kube/report/v1)).
  returned: always
  type: dict
  sample:
    schema: fleetdr.kube/report/v1
    operation: backup
    name: nightly
    verdict: partially_failed
    totals: {clusters: 3, succeeded: 2, partially_failed: 0, failed: 1, skipped: 0}
paths:
  description: Written files by format.
  returned: always
  type: dict
  sample: {json: /runs/backup-nightly/report.json, html: /runs/backup-nightly/report.html}
table:
  description: The compact text table.
  returned: always
  type: str
stats:
  description: The summary published as custom stats (no timelines, warnings or errors).
  returned: always
  type: dict
fail:
  description: Whether the run should fail according to O(fail_on).
  returned: always
  type: bool
msg:
  description: One line summary of the run.
  returned: always
  type: str
  sample: "backup nightly: partially_failed (2 succeeded, 0 partially failed, 1 failed, 0 skipped of 3 clusters)"
failed_clusters:
  description: Names of the clusters whose verdict is failed or partially_failed.
  returned: always
  type: list
  elements: str
"""
