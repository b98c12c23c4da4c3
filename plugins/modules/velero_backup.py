#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: velero_backup
short_description: Create, wait for and delete Velero backups
version_added: 1.0.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates a Velero C(Backup) in one cluster and waits for it to finish, or deletes one through a
    C(DeleteBackupRequest) so Velero also removes its data from object storage.
  - Velero backups are immutable. Running the module again with the same O(name) and the same options
    reports the existing backup unchanged; different options under an existing name fail with a message
    naming the differing fields. The comparison is against the options as given, not against the spec
    Velero rewrites when the backup starts.
  - All options are validated before any API call, so bad input creates nothing.
  - When the backup did not fully succeed, the result carries Velero's error and warning texts read
    from the results file in object storage, using the location's credentials Secret.
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - fleetdr.kube.velero
  - fleetdr.kube.velero_backup_spec
  - fleetdr.kube.velero_wait
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  name:
    description:
      - Name of the backup; a valid Kubernetes name of at most 63 characters.
    type: str
    required: true
  state:
    description:
      - V(present) creates the backup if it does not exist.
      - V(absent) deletes it through a DeleteBackupRequest (backup data in object storage included) and,
        with O(wait=true), waits until Velero removed it.
    type: str
    choices: [present, absent]
    default: present
  labels:
    description:
      - Labels for the Backup object.
    type: dict
  allow_partially_failed:
    description:
      - Treat a backup that ended V(PartiallyFailed) as success.
      - By default the task fails for any final phase other than V(Completed).
    type: bool
    default: false
  allow_missing_volume_data:
    description:
      - Treat a backup whose requested volume data did not move as success.
      - By default the task fails and names each such PVC with the reason (RV(result.volumes)).
    type: bool
    default: false
notes:
  - The module runs on the controller (C(ansible_connection=local)) and talks to the cluster API.
  - boto3 is needed only to read error details of backups that did not fully succeed.
seealso:
  - module: fleetdr.kube.velero_schedule
  - module: fleetdr.kube.velero_restore
  - module: fleetdr.kube.velero_info
"""

EXAMPLES = r"""
- name: Back up two namespaces and wait for the result
  fleetdr.kube.velero_backup:
    name: shop-nightly-1
    included_namespaces: [shop, payments]
    ttl: 72h
    label_selector: app.kubernetes.io/part-of=shop
  register: shop_backup

- name: Show why the backup was not clean
  ansible.builtin.debug:
    var: shop_backup.result.messages
  when: shop_backup.result.phase != 'Completed'

- name: Full-cluster backup with file-system volume backup, not waiting
  fleetdr.kube.velero_backup:
    kubeconfig: ~/.kube/prod
    context: prod-eu
    name: cluster-full
    include_cluster_resources: true
    default_volumes_to_fs_backup: true
    hooks:
      resources:
        - name: freeze-db
          included_namespaces: [db]
          pre:
            - exec:
                container: postgres
                command: [/bin/sh, -c, "psql -c CHECKPOINT"]
                on_error: Fail
    wait: false

- name: Delete a backup and its data in object storage
  fleetdr.kube.velero_backup:
    name: shop-nightly-1
    state: absent
"""

RETURN = r"""
result:
  description: Normalised state of the backup (the same shape every fleetdr.kube Velero module returns).
  returned: always
  type: dict
  contains:
    cluster: {description: Cluster name given by the caller (null for single-cluster use)., type: str, returned: always}
    context: {description: Kubeconfig context used., type: str, returned: always}
    kind: {description: V(Backup)., type: str, returned: always}
    namespace: {description: Velero namespace., type: str, returned: always}
    name: {description: Backup name., type: str, returned: always, sample: shop-nightly-1}
    exists: {description: Whether the backup exists after the task., type: bool, returned: always}
    phase: {description: Velero phase (for example V(Completed) or V(PartiallyFailed))., type: str, returned: always}
    progress:
      description: Items total and done, and the percentage.
      type: dict
      returned: always
      sample: {total_items: 42, items_done: 42, percent: 100.0}
    started: {description: Start time (RFC 3339)., type: str, returned: always}
    completed: {description: Completion time (RFC 3339)., type: str, returned: always}
    duration_s: {description: Seconds from start to completion., type: float, returned: always}
    expiration: {description: When Velero garbage-collects the backup., type: str, returned: always}
    warnings: {description: Number of warnings Velero counted., type: int, returned: always}
    errors: {description: Number of errors Velero counted., type: int, returned: always}
    validation_errors: {description: Why Velero refused the backup (phase V(FailedValidation))., type: list, elements: str, returned: always}
    failure_reason: {description: Why the backup V(Failed)., type: str, returned: always}
    storage_location: {description: BackupStorageLocation used., type: str, returned: always}
    succeeded: {description: Phase V(Completed) and no errors., type: bool, returned: always}
    volumes:
      description:
        - Each PVC in scope with what happened to its data.
        - C(requested) says the data was asked for (file-system backup by default or by pod annotation), C(moved)
          that it arrived; C(reason) says why not (pod not Running, no pod mounts it, not opted in, PVC already
          existed, PodVolumeBackup failed).
      type: list
      elements: dict
      returned: when O(wait=true) and the backup finished
      sample: [{namespace: shop, pvc: data, pod: web-0, volume: data, requested: true, moved: true, bytes: 16,
                snapshot_id: 5f1e, object: {kind: PodVolumeBackup, name: backup-x1}, reason: null}]
    verdict:
      description: V(succeeded), V(partially_failed) (also when requested volume data did not move) or V(failed).
      type: str
      returned: when O(wait=true) and the backup finished
    messages:
      description: Error and warning texts from Velero's results file in object storage.
      type: dict
      returned: when the backup did not fully succeed and the file could be read
      sample: {errors: ["namespace shop: resource: /pods name: /web-0 message: /hook failed"], warnings: []}
    messages_error:
      description: Why the texts could not be read.
      type: str
      returned: when the backup did not fully succeed and the file could not be read
backup:
  description: The Backup object as stored by the API server.
  returned: when it exists (or would be created in check mode)
  type: dict
delete_request:
  description: The DeleteBackupRequest created for O(state=absent) (null once Velero removed it after success).
  returned: when a backup was deleted
  type: dict
diff:
  description: Before and after, when run with C(--diff).
  returned: when diff mode is on and something changed
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, no_log_values, run_module, kube_module
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, volume_data
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.argspec import (
    BACKUP_SPEC_MUTUALLY_EXCLUSIVE,
    backup_spec_argspec,
    common_argspec,
    wait_argspec,
)
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.spec import build_backup_spec


def argspec():
    spec = common_argspec()
    spec.update(wait_argspec())
    spec.update(backup_spec_argspec())
    spec.update(
        name={"type": "str", "required": True},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        labels={"type": "dict"},
        allow_partially_failed={"type": "bool", "default": False},
        allow_missing_volume_data={"type": "bool", "default": False},
    )
    return spec


def finish(module, client, obj, changed, diff, extra=None):
    result = results.normalize(obj, "Backup", client)
    if obj is not None:
        results.attach_details(result, client, (obj.get("spec") or {}).get("storageLocation"), no_log_values(module))
    out = {"changed": changed, "result": result}
    if obj is not None:
        out["backup"] = obj
    if module._diff and diff:
        out["diff"] = diff
    if extra:
        out.update(extra)
    return out


def present(module, client, spec, labels):
    params = module.params
    changed, obj, diff = objects.ensure_backup(client, params["name"], spec, labels, module.check_mode)
    if params["wait"] and not module.check_mode:
        try:
            obj = objects.wait_backup(client, params["name"], params["wait_timeout"])
        except WaitTimeout as exc:
            raise WaitTimeout(exc.msg, last=exc.last, changed=changed, result=results.normalize(exc.last, "Backup", client))
    out = finish(module, client, obj, changed, diff)
    result = out["result"]
    if params["wait"] and not module.check_mode and obj is not None:
        result["volumes"] = volume_data.backup_volumes(client, obj)
        result["verdict"], reason = results.verdict(result, params["allow_partially_failed"], params["allow_missing_volume_data"])
        if result["verdict"] != "succeeded":
            raise FleetdrError("Backup {0} ended {1}: {2}".format(params["name"], result["phase"], reason), **out)
    return out


def absent(module, client):
    params = module.params
    changed, obj, request = objects.delete_backup(client, params["name"], params["wait"], params["wait_timeout"], module.check_mode)
    diff = {"before": {"metadata": (obj or {}).get("metadata", {}), "spec": (obj or {}).get("spec", {})}, "after": {}} if changed else {}
    out = finish(module, client, None if (changed and params["wait"] and not module.check_mode) else obj, changed, diff)
    if request is not None:
        out["delete_request"] = request
    return out


def main():
    module = kube_module(argument_spec=argspec(), supports_check_mode=True, mutually_exclusive=BACKUP_SPEC_MUTUALLY_EXCLUSIVE)

    def action():
        params = module.params
        # Everything the user typed is checked before the first API call.
        names.validate_object_name(params["name"])
        labels = names.validate_labels(params["labels"])
        spec = build_backup_spec(params) if params["state"] == "present" else None
        client = get_client(module)
        if params["state"] == "absent":
            return absent(module, client)
        return present(module, client, spec, labels)

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
