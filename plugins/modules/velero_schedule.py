#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: velero_schedule
short_description: Manage Velero backup schedules
version_added: 1.0.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates, updates, pauses or deletes a Velero C(Schedule).
  - The backup template takes exactly the options of M(fleetdr.kube.velero_backup) (one shared
    argument spec), or is copied from an existing backup with O(from_backup).
  - The cron expression is validated (5 fields, descriptors, C(@every), C(CRON_TZ=)) before any API call.
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - fleetdr.kube.velero
  - fleetdr.kube.velero_backup_spec
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
      - Name of the schedule. At most 48 characters, because Velero names its backups
        C(<schedule>-<YYYYMMDDhhmmss>) and those must stay within 63.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the schedule; V(absent) deletes it (its backups stay).
    type: str
    choices: [present, absent]
    default: present
  schedule:
    description:
      - Cron expression as Velero parses it, for example V(0 2 * * *), V(@daily), V(@every 6h) or
        V(CRON_TZ=Europe/Paris 30 1 * * *). Required with O(state=present).
    type: str
  paused:
    description:
      - Pause the schedule (Velero stops creating backups from it).
    type: bool
    default: false
  use_owner_references_in_backup:
    description:
      - Make the schedule the owner of its backups, so deleting the schedule lets Kubernetes delete the
        Backup objects (not their data).
    type: bool
  skip_immediately:
    description:
      - Skip the first due run after the schedule is created or unpaused.
    type: bool
  from_backup:
    description:
      - Name of an existing backup whose spec becomes the template. Template options given as well
        override the copied values.
    type: str
  labels:
    description:
      - Labels for the Schedule object. Backups made by the schedule get these labels too, unless the
        template has its own.
    type: dict
notes:
  - The module runs on the controller (C(ansible_connection=local)) and talks to the cluster API.
seealso:
  - module: fleetdr.kube.velero_backup
requirements:
  - croniter
"""

EXAMPLES = r"""
- name: Nightly backup of the shop, kept a week
  fleetdr.kube.velero_schedule:
    name: shop-nightly
    schedule: "0 2 * * *"
    included_namespaces: [shop]
    ttl: 168h

- name: Pause it during the migration
  fleetdr.kube.velero_schedule:
    name: shop-nightly
    schedule: "0 2 * * *"
    included_namespaces: [shop]
    ttl: 168h
    paused: true

- name: Turn a one-off backup into an hourly schedule
  fleetdr.kube.velero_schedule:
    name: shop-hourly
    schedule: "@every 1h"
    from_backup: shop-manual-1

- name: Remove the schedule
  fleetdr.kube.velero_schedule:
    name: shop-nightly
    state: absent
"""

RETURN = r"""
result:
  description: Normalised state of the schedule (common fleetdr.kube result shape).
  returned: always
  type: dict
  contains:
    name: {description: Schedule name., type: str, returned: always}
    phase: {description: V(Enabled) or V(FailedValidation) once Velero reconciled it., type: str, returned: always}
    schedule: {description: The cron expression., type: str, returned: always}
    paused: {description: Whether the schedule is paused., type: bool, returned: always}
    last_backup: {description: When Velero last created a backup from it., type: str, returned: always}
    validation_errors: {description: Velero's validation messages., type: list, elements: str, returned: always}
    next_runs: {description: The next three due times (UTC) computed from the cron expression., type: list, elements: str, returned: when computable}
schedule:
  description: The Schedule object.
  returned: when it exists (or would be created in check mode)
  type: dict
diff:
  description: Before and after, when run with C(--diff).
  returned: when diff mode is on and something changed
  type: dict
"""

from datetime import datetime, timezone

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, run_module, kube_module
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.argspec import (
    BACKUP_SPEC_MUTUALLY_EXCLUSIVE,
    backup_spec_argspec,
    common_argspec,
)


def argspec():
    spec = common_argspec()
    spec.update(backup_spec_argspec())
    spec.update(
        name={"type": "str", "required": True},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        schedule={"type": "str"},
        paused={"type": "bool", "default": False},
        use_owner_references_in_backup={"type": "bool"},
        skip_immediately={"type": "bool"},
        from_backup={"type": "str"},
        labels={"type": "dict"},
    )
    return spec


def next_runs(expression, count=3):
    """Upcoming due times for plain 5-field expressions (descriptors are left to Velero)."""
    if not specs.HAS_CRONITER or expression.startswith(("@every", "CRON_TZ", "TZ")):
        return None
    try:
        from croniter import croniter

        it = croniter(expression, datetime.now(timezone.utc))
        return [it.get_next(datetime).strftime("%Y-%m-%dT%H:%M:%SZ") for dummy in range(count)]
    except Exception:
        return None


def main():
    module = kube_module(
        argument_spec=argspec(),
        supports_check_mode=True,
        mutually_exclusive=BACKUP_SPEC_MUTUALLY_EXCLUSIVE,
        required_if=[("state", "present", ["schedule"])],
    )
    if not specs.HAS_CRONITER:
        module.fail_json(msg=missing_required_lib("croniter"), exception=str(specs.CRONITER_IMPORT_ERROR))

    def action():
        params = module.params
        names.validate_object_name(params["name"], max_length=names.MAX_SCHEDULE_NAME)
        labels = names.validate_labels(params["labels"])
        if params["state"] == "absent":
            client = get_client(module)
            changed, obj = objects.delete_plain(client, "schedules", params["name"], module.check_mode)
            out = {"changed": changed, "result": results.normalize(None if changed else obj, "Schedule", client)}
            if module._diff and changed:
                out["diff"] = {"before": {"metadata": obj["metadata"], "spec": obj.get("spec")}, "after": {}}
            return out
        cron = specs.validate_cron(params["schedule"])
        template = specs.build_backup_spec(params)
        if params["from_backup"]:
            names.validate_object_name(params["from_backup"], "from_backup")
        client = get_client(module)
        if params["from_backup"]:
            base = objects.template_from_backup(client, params["from_backup"])
            base.update(template)
            template = base
        desired = objects.schedule_spec(cron, template, params["paused"], params["use_owner_references_in_backup"], params["skip_immediately"])
        changed, obj, diff = objects.ensure_schedule(client, params["name"], desired, labels, module.check_mode)
        result = results.normalize(obj, "Schedule", client)
        runs = next_runs(cron)
        if runs:
            result["next_runs"] = runs
        out = {"changed": changed, "result": result, "schedule": obj}
        if module._diff and diff:
            out["diff"] = diff
        return out

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
