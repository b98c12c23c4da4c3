#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: velero_info
short_description: Read Velero backups, restores, schedules, locations and server status
version_added: 1.0.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Lists Velero objects of one cluster as normalised results (the shape every fleetdr.kube Velero
    module returns), optionally filtered by name, labels and phase.
  - Reports the server version and plugins through a C(ServerStatusRequest), as C(velero version) does.
  - Read-only; always returns C(changed=false).
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - fleetdr.kube.velero
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  gather:
    description: What to read.
    type: list
    elements: str
    choices: [backups, restores, schedules, backup_locations, snapshot_locations, server_status]
    default: [backups, restores, schedules, backup_locations, snapshot_locations, server_status]
  name:
    description: Only objects with this name.
    type: str
  label_selector:
    description: Only objects whose labels match (selector string or label dictionary).
    type: raw
  phases:
    description: Only objects in one of these phases, for example V(PartiallyFailed).
    type: list
    elements: str
  details:
    description:
      - For backups and restores that did not fully succeed, read Velero's error and warning texts from
        object storage (one request per object).
    type: bool
    default: false
  server_status_timeout:
    description: Seconds to wait for the Velero server to answer the status request.
    type: int
    default: 15
  include_objects:
    description: Also return the raw objects under RV(objects).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Everything about Velero in this cluster
  fleetdr.kube.velero_info:
  register: velero

- name: Failed backups, with Velero's reasons
  fleetdr.kube.velero_info:
    gather: [backups]
    phases: [PartiallyFailed, Failed, FailedValidation]
    details: true

- name: Backups of one fleet operation
  fleetdr.kube.velero_info:
    gather: [backups]
    label_selector:
      fleetdr.kube/operation-name: nightly
"""

RETURN = r"""
backups:
  description: Normalised backups, newest first.
  returned: when gathered
  type: list
  elements: dict
restores:
  description: Normalised restores, newest first.
  returned: when gathered
  type: list
  elements: dict
schedules:
  description: Normalised schedules.
  returned: when gathered
  type: list
  elements: dict
backup_locations:
  description: Normalised backup storage locations (phase, message, default, access mode).
  returned: when gathered
  type: list
  elements: dict
snapshot_locations:
  description: Normalised volume snapshot locations.
  returned: when gathered
  type: list
  elements: dict
server_status:
  description: Velero server version and plugins.
  returned: when gathered
  type: dict
  contains:
    available: {description: Whether the server answered., type: bool, returned: always}
    version: {description: Server version (for example V(v1.18.1))., type: str, returned: always}
    plugins: {description: "Plugins, each C({name, kind})", type: list, elements: dict, returned: always}
    reason: {description: Why the server did not answer., type: str, returned: when not available}
objects:
  description: Raw objects per kind, when O(include_objects=true).
  returned: when requested
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, no_log_values, run_module, kube_module
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.argspec import common_argspec

GATHER = {
    "backups": ("backups", "Backup"),
    "restores": ("restores", "Restore"),
    "schedules": ("schedules", "Schedule"),
    "backup_locations": ("backupstoragelocations", "BackupStorageLocation"),
    "snapshot_locations": ("volumesnapshotlocations", "VolumeSnapshotLocation"),
}
ALL = list(GATHER) + ["server_status"]


def argspec():
    spec = common_argspec()
    spec.update(
        gather={"type": "list", "elements": "str", "choices": ALL, "default": ALL},
        name={"type": "str"},
        label_selector={"type": "raw"},
        phases={"type": "list", "elements": "str"},
        details={"type": "bool", "default": False},
        server_status_timeout={"type": "int", "default": 15},
        include_objects={"type": "bool", "default": False},
    )
    return spec


def _sort_key(obj):
    meta = obj.get("metadata") or {}
    return ((obj.get("status") or {}).get("startTimestamp") or meta.get("creationTimestamp") or "", meta.get("name", ""))


def main():
    module = kube_module(argument_spec=argspec(), supports_check_mode=True)

    def action():
        params = module.params
        selector = specs.selector_to_string(specs.build_label_selector(params["label_selector"], "label_selector"))
        if params["name"]:
            names.validate_object_name(params["name"], max_length=253)
        client = get_client(module)
        out = {"changed": False}
        raw = {}
        for what in params["gather"]:
            if what == "server_status":
                continue
            plural, kind = GATHER[what]
            field = "metadata.name={0}".format(params["name"]) if params["name"] else None
            items = client.list(plural, label_selector=selector, field_selector=field)
            if params["phases"]:
                items = [i for i in items if (i.get("status") or {}).get("phase") in params["phases"]]
            items.sort(key=_sort_key, reverse=what in ("backups", "restores"))
            normalised = []
            for item in items:
                result = results.normalize(item, kind, client)
                if params["details"] and kind in ("Backup", "Restore"):
                    if kind == "Backup":
                        location = (item.get("spec") or {}).get("storageLocation")
                    else:
                        backup = client.get("backups", (item.get("spec") or {}).get("backupName") or "")
                        location = ((backup or {}).get("spec") or {}).get("storageLocation")
                    results.attach_details(result, client, location, no_log_values(module))
                normalised.append(result)
            out[what] = normalised
            raw[what] = items
        if "server_status" in params["gather"]:
            out["server_status"] = objects.server_status(client, params["server_status_timeout"], check_mode=module.check_mode)
        if params["include_objects"]:
            out["objects"] = raw
        return out

    run_module(module, action)


if __name__ == "__main__":
    main()
