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
module: report_merge
short_description: Merge the reports of the slices of one fleet run into one fleet report
version_added: 1.1.0
description:
  - AWX/AAP job slicing runs a playbook as several jobs, each on a slice of the inventory; each slice
    writes its own report of its own clusters. This merges them into one report of the whole fleet -
    totals, overall verdict, the exit decision of O(fail_on), and every rendering (JSON, Markdown,
    HTML, JUnit) - usable as the last node of an AWX workflow.
  - Slices come as report files or directories (O(reports)) or as the summaries the playbooks publish
    as custom stats (O(stats), AWX job artifacts; per cluster verdict, phase, reason and duration).
  - Refuses reports of different runs (operation and name) and clusters that appear in two slices.
  - The task does not fail on the merged verdict; it returns RV(fail). Playbook C(fleetdr.kube.report_merge) fails on it.
author:
  - fleetdr.kube maintainers (@fleetdr)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: full
    details: The merged report is built and returned; no file is written.
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
  reports:
    description: Slice reports, as C(report.json) files or the report directories holding them.
    type: list
    elements: path
    default: []
  stats:
    description: Slice summaries as published by the fleet playbooks (the C(fleetdr_report) custom stat of each slice).
    type: list
    elements: dict
    default: []
  dest:
    description: Directory to write the merged report into; created when missing. Without it no file is written.
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
  stats_key:
    description: Name of the custom stat the merged summary is published under. An empty string publishes nothing.
    type: str
    default: fleetdr_report
  print_table:
    description: Print the compact table of the merged report.
    type: bool
    default: true
notes:
  - Runs on the controller only.
seealso:
  - module: fleetdr.kube.fleet_report
"""

EXAMPLES = r"""
- name: Merge the slices of last night's backup
  fleetdr.kube.report_merge:
    reports: "{{ query('ansible.builtin.fileglob', 'fleetdr-reports/backup-nightly-*/report.json') }}"
    dest: fleetdr-reports/backup-nightly-merged
  register: merged
"""

RETURN = r"""
report:
  description: The merged report document (schema C(fleetdr.kube/report/v1)).
  returned: always
  type: dict
paths:
  description: Written files by format.
  returned: always
  type: dict
fail:
  description: Whether the run should fail according to O(fail_on).
  returned: always
  type: bool
msg:
  description: One-line summary with the totals.
  returned: always
  type: str
failed_clusters:
  description: Clusters whose verdict is failed or partially failed.
  returned: always
  type: list
  elements: str
"""
