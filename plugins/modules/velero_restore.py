#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: velero_restore
short_description: Restore a Velero backup and wait for it
version_added: 1.0.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates a Velero C(Restore) from a named backup, or from the newest V(Completed) backup of a
    schedule, and waits for it to finish.
  - Storage-class and image-registry mappings and resource modifier rules are written into the
    ConfigMaps Velero reads for them, before the restore is created.
  - A restore runs once. Running the module again with the same name and options reports the existing
    restore unchanged; without O(name) the name is derived from the source and the options, so a repeated
    task is idempotent too.
  - All options and the source backup are checked before anything is created.
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - fleetdr.kube.velero
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
      - Name of the restore (at most 63 characters).
      - Omitted means C(<backup>-restore-<hash of the options>).
    type: str
  backup_name:
    description:
      - Backup to restore. Mutually exclusive with O(schedule_name).
    type: str
  schedule_name:
    description:
      - Restore the newest V(Completed) backup made by this schedule (the choice is made and checked
        before the restore is created, and returned as RV(result.backup_name)).
    type: str
  included_namespaces:
    description: Namespaces (as named in the backup) to restore; globs allowed; omitted means all.
    type: list
    elements: str
  excluded_namespaces:
    description: Namespaces (as named in the backup) not to restore.
    type: list
    elements: str
  included_resources:
    description: Resources to restore, for example V(deployments.apps); omitted means all restorable ones.
    type: list
    elements: str
  excluded_resources:
    description: Resources not to restore.
    type: list
    elements: str
  include_cluster_resources:
    description:
      - V(true) restores all cluster-scoped objects of the backup, V(false) none; omitted restores them
        only when all namespaces are restored.
    type: bool
  label_selector:
    description:
      - Only objects whose backed-up labels match; a selector string, a label dictionary or a LabelSelector.
      - Mutually exclusive with O(or_label_selectors).
    type: raw
  or_label_selectors:
    description: Objects matching any of these selectors.
    type: list
    elements: raw
  namespace_mapping:
    description: Restore namespaces under new names, mapping backup namespace to target namespace.
    type: dict
  existing_resource_policy:
    description:
      - What to do with objects that already exist. V(none) leaves them (a warning each), V(update)
        merge-patches them to the backed-up version. Omitted behaves like V(none).
    type: str
    choices: [none, update]
  restore_pvs:
    description: Restore persistent volumes from native snapshots. Omitted means yes.
    type: bool
  preserve_node_ports:
    description: Keep the node ports of Services instead of letting the cluster assign new ones.
    type: bool
  item_operation_timeout:
    description: How long to wait for asynchronous plugin operations, as a Go duration.
    type: str
  storage_class_mapping:
    description:
      - Map storage classes of the backup to storage classes of the target cluster.
      - Written into the ConfigMap Velero's change-storage-class plugin reads
        (C(fleetdr-change-storage-class)); that ConfigMap applies to every restore in the cluster, so a
        restore without this option removes it.
    type: dict
  image_registry_mapping:
    description:
      - Map image name parts (for example an old registry host) to replacements, through Velero's
        change-image-name plugin ConfigMap (C(fleetdr-change-image-name)); same lifetime rules as
        O(storage_class_mapping).
    type: dict
  resource_modifier_rules:
    description:
      - Velero resource modifier rules (C(resourceModifierRules)), each with C(conditions) (C(group_resource)
        required, optional C(resource_name_regex), C(namespaces), C(label_selector)) and exactly one of
        C(patches) (JSON patch), C(merge_patches) or C(strategic_patches).
      - Stored in a ConfigMap C(<restore>-modifiers) that the restore references.
    type: list
    elements: dict
  hooks:
    description: Restore hooks in the shape of Velero's C(spec.hooks) (keys may be snake_case).
    type: dict
  labels:
    description: Labels for the Restore object.
    type: dict
  allow_partially_failed:
    description: Treat a restore that ended V(PartiallyFailed) as success.
    type: bool
    default: false
  allow_missing_volume_data:
    description:
      - Treat a restore whose requested volume data did not move as success.
      - By default the task fails and names each such PVC with the reason (RV(result.volumes)).
    type: bool
    default: false
notes:
  - Objects that already exist produce warnings, not errors; the warning texts are returned in
    RV(result.messages).
seealso:
  - module: fleetdr.kube.velero_backup
"""

EXAMPLES = r"""
- name: Restore the shop into a copy namespace
  fleetdr.kube.velero_restore:
    backup_name: shop-nightly-1
    included_namespaces: [shop]
    namespace_mapping:
      shop: shop-copy
  register: restored

- name: Restore the newest good backup of a schedule, updating what exists
  fleetdr.kube.velero_restore:
    name: shop-dr-drill
    schedule_name: shop-nightly
    existing_resource_policy: update
    storage_class_mapping:
      gp2: standard
    image_registry_mapping:
      registry.eu.example.com: registry.us.example.com
    resource_modifier_rules:
      - conditions:
          group_resource: deployments.apps
          namespaces: [shop]
        patches:
          - operation: replace
            path: /spec/replicas
            value: "1"
"""

RETURN = r"""
result:
  description: Normalised state of the restore (common fleetdr.kube result shape).
  returned: always
  type: dict
  contains:
    name: {description: Restore name., type: str, returned: always}
    backup_name: {description: The backup restored., type: str, returned: always}
    phase: {description: Velero phase., type: str, returned: always}
    progress: {description: Items total and restored., type: dict, returned: always}
    warnings: {description: Number of warnings., type: int, returned: always}
    errors: {description: Number of errors., type: int, returned: always}
    volumes:
      description:
        - Each PVC in scope with what happened to its data.
        - C(requested) says the data was asked for (file-system backup by default or by pod annotation), C(moved)
          that it arrived; C(reason) says why not (pod not Running, no pod mounts it, not opted in, PVC already
          existed, PodVolumeRestore failed).
      type: list
      elements: dict
      returned: when O(wait=true) and the restore finished
      sample: [{namespace: shop, pvc: data, pod: web-0, volume: data, requested: true, moved: true, bytes: 16,
                snapshot_id: 5f1e, object: {kind: PodVolumeRestore, name: restore-x1}, reason: null}]
    verdict:
      description: V(succeeded), V(partially_failed) (also when requested volume data did not move) or V(failed).
      type: str
      returned: when O(wait=true) and the restore finished
    messages:
      description: Error and warning texts from the restore's results file in object storage.
      type: dict
      returned: when the restore did not fully succeed or had warnings
restore:
  description: The Restore object.
  returned: when it exists (or would be created in check mode)
  type: dict
config_changes:
  description: ConfigMaps written for the restore (plugin mappings, resource modifiers).
  returned: always
  type: list
  elements: str
diff:
  description: Before and after, when run with C(--diff).
  returned: when diff mode is on and something changed
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, no_log_values, run_module, kube_module
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, volume_data
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.argspec import (
    common_argspec,
    restore_spec_argspec,
    restore_transform_argspec,
    wait_argspec,
)


def argspec():
    spec = common_argspec()
    spec.update(wait_argspec())
    spec.update(restore_spec_argspec())
    spec.update(restore_transform_argspec())
    spec.update(
        name={"type": "str"},
        backup_name={"type": "str"},
        schedule_name={"type": "str"},
        labels={"type": "dict"},
        allow_partially_failed={"type": "bool", "default": False},
        allow_missing_volume_data={"type": "bool", "default": False},
    )
    return spec


def main():
    module = kube_module(
        argument_spec=argspec(),
        supports_check_mode=True,
        mutually_exclusive=[("backup_name", "schedule_name"), ("label_selector", "or_label_selectors")],
        required_one_of=[("backup_name", "schedule_name")],
    )

    def action():
        params = module.params
        source_option = "backup_name" if params["backup_name"] else "schedule_name"
        names.validate_object_name(params[source_option], source_option, max_length=253)
        name = params["name"] or specs.default_restore_name(params[source_option], params)
        names.validate_object_name(name)
        labels = names.validate_labels(params["labels"])
        storage_map = specs.validate_mapping(params["storage_class_mapping"], "storage_class_mapping", "storage class")
        image_map = specs.validate_mapping(params["image_registry_mapping"], "image_registry_mapping", "image part")
        rules = specs.validate_resource_modifier_rules(params["resource_modifier_rules"])
        specs.build_restore_spec(params, "placeholder")  # validate every option before touching the cluster

        client = get_client(module)
        existing = client.get("restores", name)
        if existing is not None:
            backup_name = (existing.get("spec") or {}).get("backupName")
            if params["backup_name"] and backup_name != params["backup_name"]:
                raise FleetdrError("Restore {0} already exists for backup {1}, not {2}; choose another name".format(
                    name, backup_name, params["backup_name"]), name=name)
        else:
            backup_name = objects.resolve_restore_source(client, params["backup_name"], params["schedule_name"])["metadata"]["name"]
        spec = specs.build_restore_spec(params, backup_name)
        plugin_mappings = {
            objects.STORAGE_CLASS_PLUGIN: ("storage_class_mapping", storage_map),
            objects.IMAGE_NAME_PLUGIN: ("image_registry_mapping", image_map),
        }
        if existing is not None and params["schedule_name"]:
            # The schedule may have made newer backups since; the existing restore keeps its own.
            spec["backupName"] = backup_name
        backup = client.get("backups", backup_name)
        pvbs = None
        if params["wait"] and not module.check_mode and backup is not None:
            # Every volume backup must be on the cluster before the Restore starts (it reads them once).
            pvbs = results.synced_volume_backups(client, backup, params["wait_timeout"], no_log_values(module))
        changed, obj, diff, config_changes = objects.ensure_restore(
            client, name, spec, labels, plugin_mappings, rules, module.check_mode)
        if params["wait"] and not module.check_mode:
            try:
                obj = objects.wait_restore(client, name, params["wait_timeout"])
            except WaitTimeout as exc:
                raise WaitTimeout(exc.msg, last=exc.last, changed=changed, result=results.normalize(exc.last, "Restore", client))
        result = results.normalize(obj, "Restore", client)
        if obj is not None and not module.check_mode:
            location = ((backup or {}).get("spec") or {}).get("storageLocation")
            results.attach_details(result, client, location, no_log_values(module))
        out = {"changed": changed, "result": result, "restore": obj, "config_changes": config_changes}
        if module._diff and diff:
            out["diff"] = diff
        if params["wait"] and not module.check_mode and obj is not None:
            result["volumes"] = volume_data.restore_volumes(client, obj, pvbs if pvbs is not None else volume_data.backup_pvbs(client, backup_name))
            result["verdict"], reason = results.verdict(result, params["allow_partially_failed"], params["allow_missing_volume_data"])
            if result["verdict"] != "succeeded":
                raise FleetdrError("Restore {0} ended {1}: {2}".format(name, result["phase"], reason), **out)
        return out

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
