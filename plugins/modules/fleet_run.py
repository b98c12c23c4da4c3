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
module: fleet_run
short_description: Run one Velero or Rook operation on every selected cluster concurrently and report it
version_added: 1.0.0
description:
  - Controller-side fan-out used by the collection's playbooks. Run it once (C(run_once)); it drives
    every selected cluster on its own thread through the collection's module_utils, waits by watch
    and writes one fleet report (C(report.json), C(report.md), C(report.html), C(junit.xml)).
  - Clusters come from the inventory hosts of the play (or O(hosts)); each host's variables
    C(fleetdr_kubeconfig) and C(fleetdr_context), or C(fleetdr_host), C(fleetdr_api_key),
    C(fleetdr_ca_cert) and C(fleetdr_validate_certs), say how to reach it, and C(fleetdr_cluster_labels)
    are matched against O(cluster_selector).
  - Every input is validated before the first API call. One cluster's failure (unreachable, Velero
    missing, location unavailable, Velero object failed) is that cluster's result with its reason;
    the others carry on.
  - Each cluster's Velero object is named C(<name>-<cluster>) (hashed when too long) and labelled
    with C(fleetdr.kube/operation), C(fleetdr.kube/operation-name) and C(fleetdr.kube/cluster).
  - O(operation=migrate) backs up O(source) once, creates on each target a ReadOnly
    BackupStorageLocation on the source's bucket and prefix (with the target's own credentials
    Secret), waits until Velero synced the backup, restores on all targets in parallel and checks
    the restored namespaces exist. The source cluster is only read, apart from its Backup.
  - The task does not fail on the clusters' verdicts; it returns RV(fail) decided by O(fail_on).
author:
  - fleetdr.kube maintainers (@fleetdr)
requirements:
  - kubernetes >= 24.2.0 (Python library, on the controller)
  - boto3 (to read Velero's result texts from object storage)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    support: partial
    details: Reads every cluster and reports what would be created; nothing is created and no report file is written.
  diff_mode:
    support: partial
    details: O(operation=install) shows each object's before and after (Secret data masked).
  platform:
    platforms: posix
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
options:
  operation:
    description:
      - C(install) (the objects of role C(fleetdr.kube.velero), rendered per cluster from its templates and variables,
        applied by server-side apply; C(state=absent) removes them), C(backup), C(restore), C(migrate), C(schedule)
        or C(status).
      - C(storage) installs Rook-Ceph (the release manifests, then each cluster's CephCluster from its
        C(rook_ceph_cluster) variable, waited for until Ready with an acceptable Ceph health) or, with
        C(state=absent), tears it down in Rook's order; C(storage_status) reports each cluster's Rook state and Ceph health.
      - C(drill) restores each cluster's newest Completed backup (of C(schedule_name) or C(backup_name) in O(options)
        when given) into scratch namespaces C(<namespace>-<scratch_suffix>), waits for the restored workloads,
        compares each volume's restored bytes with the backup's record, reports the observed time to restore
        (C(details.rto_s)) and the backup's age (C(details.rpo_s)), and removes the scratch namespaces and the
        Restore again unless C(keep) is set in O(options).
    type: str
    required: true
    choices: [install, backup, restore, migrate, schedule, status, drill, storage, storage_status]
  name:
    description:
      - Name of the run (fleet backup, restore, migration or schedule name). Required except for
        C(status), C(install) and C(restore) (derived from the source and the options).
    type: str
    default: ""
  name_var:
    description:
      - The play variable O(name) came from (e.g. C(backup_name)), so that a message about a bad name
        names what the user typed.
    type: str
    default: name
  options:
    description:
      - Operation options, as the single-cluster modules take them (M(fleetdr.kube.velero_backup) options for
        C(backup), C(schedule) and C(migrate); M(fleetdr.kube.velero_restore) options for C(restore) and C(migrate);
        C(schedule), C(state), C(paused), C(from_backup), C(skip_immediately) for C(schedule);
        C(max_backup_age_s) for C(status); C(state) and C(force_conflicts) for C(install), whose other settings are
        the role's variables of each host; C(state), C(force_conflicts), C(destroy_data), C(version) and
        C(manifests_src) for C(storage)). Lists may be comma separated strings (AWX surveys).
      - C(ceph_health_gate) (V(off), V(warn) default, V(enforce)) for C(backup), C(restore), C(migrate) and C(schedule)
        - where Rook runs, each cluster's Ceph health is read before anything is created; V(warn) names a degraded
        cluster's health in its result, V(enforce) skips a cluster at HEALTH_ERR with the failing checks as reason.
    type: dict
    default: {}
  option_vars:
    description:
      - Names of play variables to read as options (unset or empty ones are ignored); O(options) win.
    type: list
    elements: str
    default: []
  hosts:
    description:
      - Inventory hosts (clusters) to run on. Default the hosts of the play.
    type: list
    elements: str
  cluster_selector:
    description:
      - Only clusters whose C(fleetdr_cluster_labels) hold all these labels.
    type: dict
    default: {}
  source:
    description:
      - The source cluster (inventory host) of O(operation=migrate); all other selected clusters are targets.
    type: str
  velero_namespace:
    description:
      - Namespace Velero runs in on every cluster.
    type: str
    default: velero
  wait_timeout:
    description:
      - Seconds to wait for each Velero object (and for a migration's sync).
    type: int
    default: 600
  deadline:
    description:
      - Seconds for the whole fleet; clusters still running then are reported failed with the phase they were in.
    type: int
    default: 1800
  max_workers:
    description:
      - Most clusters worked on at once (default all, capped at 128).
    type: int
  report_dir:
    description:
      - Base directory of the report; the files go to C(<report_dir>/<operation>-<name>-<UTC timestamp>/).
    type: path
    default: fleetdr-reports
  report_path:
    description:
      - Exact directory for the report files (overrides O(report_dir)).
    type: path
  formats:
    description:
      - Report files to write.
    type: list
    elements: str
    choices: [html, json, junit, md]
    default: [html, json, junit, md]
  batch:
    description:
      - Roll the operation out in waves of this many clusters (V(5)) or this share of the selection (V(25%)),
        one wave after the other, as Ansible's C(serial) does. Default all at once.
    type: str
  max_fail_percentage:
    description:
      - With O(batch), stop the rollout when more than this percentage of a wave's clusters failed; the clusters
        of the later waves are reported C(skipped) with the reason. Default never stop.
    type: int
  fail_on:
    description:
      - C(any) sets RV(fail) unless every cluster succeeded, C(all) only when no cluster succeeded,
        C(never) never.
    type: str
    choices: [any, all, never]
    default: any
  progress:
    description:
      - "While the clusters run, print a line per cluster each time it enters a phase or finishes
        (C(c17 Completed 34/34 2.1s)) and every O(progress_interval) seconds a one-line summary
        (C(backup nightly: 61/100 done, 2 failed, 37 in progress)), on the normal output (no C(-v)
        needed). Secrets are masked as in the report. V(false) prints only the final table."
    type: bool
    default: true
  progress_interval:
    description: Seconds between two summary lines; V(0) prints only the final summary.
    type: int
    default: 30
seealso:
  - module: fleetdr.kube.fleet_report
  - module: fleetdr.kube.velero_backup
  - module: fleetdr.kube.velero_restore
"""

EXAMPLES = r"""
- name: Back up namespace shop on every production cluster
  fleetdr.kube.fleet_run:
    operation: backup
    name: shop-before-upgrade
    options:
      included_namespaces: [shop]
      ttl: 72h0m0s
    cluster_selector:
      env: prod
  run_once: true
  register: fleetdr_run

- name: Migrate shop from c1 to every other cluster of the play
  fleetdr.kube.fleet_run:
    operation: migrate
    name: shop-move
    source: c1
    options:
      included_namespaces: [shop]
  run_once: true
  register: fleetdr_run
"""

RETURN = r"""
clusters:
  description:
    - Each cluster's C(verdict), C(phase), C(reason) and C(changed), keyed by inventory host.
    - The whole report (schema C(fleetdr.kube/report/v1), without secrets) is in the files of RV(paths);
      it is not returned, because Ansible copies a task's result several times (about 2 MB at 1,000 clusters).
  returned: always
  type: dict
  sample: {c1: {verdict: succeeded, phase: Completed, reason: null, changed: true}}
paths:
  description: Written report files by format.
  returned: always
  type: dict
  sample: {json: fleetdr-reports/backup-nightly-20260101T020000Z/report.json}
report_dir:
  description: Absolute path of the report directory (null in check mode).
  returned: always
  type: str
table:
  description: The compact text table printed at the end of the task.
  returned: always
  type: str
stats:
  description: Compact summary for C(ansible.builtin.set_stats) (AWX artifacts), with C(report_dir).
  returned: always
  type: dict
fail:
  description: Whether the run should fail according to O(fail_on).
  returned: always
  type: bool
failed_clusters:
  description: Clusters whose verdict is failed or partially_failed.
  returned: always
  type: list
  elements: str
msg:
  description: One-line summary with the totals.
  returned: always
  type: str
"""
