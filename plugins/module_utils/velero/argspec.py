# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Argument specs shared by the Velero modules (documented in the doc fragments of the same names)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.fleetdr.kube.plugins.module_utils.client import auth_argspec

# fleetdr.kube.velero doc fragment
VELERO_ARG_SPEC = {
    "velero_namespace": {"type": "str", "default": "velero"},
}

# fleetdr.kube.velero_wait doc fragment
WAIT_ARG_SPEC = {
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 600},
}

# fleetdr.kube.velero_backup_spec doc fragment: velero_backup options and velero_schedule's template.
BACKUP_SPEC_ARG_SPEC = {
    "included_namespaces": {"type": "list", "elements": "str"},
    "excluded_namespaces": {"type": "list", "elements": "str"},
    "included_resources": {"type": "list", "elements": "str"},
    "excluded_resources": {"type": "list", "elements": "str"},
    "included_cluster_scoped_resources": {"type": "list", "elements": "str"},
    "excluded_cluster_scoped_resources": {"type": "list", "elements": "str"},
    "included_namespace_scoped_resources": {"type": "list", "elements": "str"},
    "excluded_namespace_scoped_resources": {"type": "list", "elements": "str"},
    "include_cluster_resources": {"type": "bool"},
    "label_selector": {"type": "raw"},
    "or_label_selectors": {"type": "list", "elements": "raw"},
    "ttl": {"type": "str"},
    "storage_location": {"type": "str"},
    "volume_snapshot_locations": {"type": "list", "elements": "str"},
    "default_volumes_to_fs_backup": {"type": "bool"},
    "snapshot_volumes": {"type": "bool"},
    "snapshot_move_data": {"type": "bool"},
    "csi_snapshot_timeout": {"type": "str"},
    "item_operation_timeout": {"type": "str"},
    "hooks": {"type": "dict"},
    "ordered_resources": {"type": "dict"},
    "resource_policy": {"type": "str"},
}

BACKUP_SPEC_MUTUALLY_EXCLUSIVE = [("label_selector", "or_label_selectors")]

# Options that shape a Restore's spec: velero_restore's and the fleet restore/migrate's.
RESTORE_SPEC_ARG_SPEC = {
    "included_namespaces": {"type": "list", "elements": "str"},
    "excluded_namespaces": {"type": "list", "elements": "str"},
    "included_resources": {"type": "list", "elements": "str"},
    "excluded_resources": {"type": "list", "elements": "str"},
    "include_cluster_resources": {"type": "bool"},
    "label_selector": {"type": "raw"},
    "or_label_selectors": {"type": "list", "elements": "raw"},
    "namespace_mapping": {"type": "dict"},
    "existing_resource_policy": {"type": "str", "choices": ["none", "update"]},
    "restore_pvs": {"type": "bool"},
    "preserve_node_ports": {"type": "bool"},
    "item_operation_timeout": {"type": "str"},
    "hooks": {"type": "dict"},
}

# Transforms applied through Velero's restore plugins and resource modifiers.
RESTORE_TRANSFORM_ARG_SPEC = {
    "storage_class_mapping": {"type": "dict"},
    "image_registry_mapping": {"type": "dict"},
    "resource_modifier_rules": {"type": "list", "elements": "dict"},
}


def common_argspec():
    """kubernetes.core's auth options plus the Velero namespace."""
    spec = auth_argspec()
    spec.update(copy.deepcopy(VELERO_ARG_SPEC))
    return spec


def wait_argspec():
    return copy.deepcopy(WAIT_ARG_SPEC)


def backup_spec_argspec():
    return copy.deepcopy(BACKUP_SPEC_ARG_SPEC)


def restore_spec_argspec():
    return copy.deepcopy(RESTORE_SPEC_ARG_SPEC)


def restore_transform_argspec():
    return copy.deepcopy(RESTORE_TRANSFORM_ARG_SPEC)
