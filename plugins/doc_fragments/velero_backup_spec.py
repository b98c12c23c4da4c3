# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The backup spec options: fleetdr.kube.velero_backup and the template of fleetdr.kube.velero_schedule.
    DOCUMENTATION = r"""
options:
  included_namespaces:
    description:
      - Namespaces to include (Velero C(includedNamespaces)). Globs C(*), C(?) and C([...]) are allowed.
      - Omitted or V(*) means all namespaces.
    type: list
    elements: str
  excluded_namespaces:
    description:
      - Namespaces to exclude (Velero C(excludedNamespaces)). Exclusion wins over inclusion.
    type: list
    elements: str
  included_resources:
    description:
      - Resources to include, old-style filter (Velero C(includedResources)), for example V(deployments.apps) or V(pods).
      - Cannot be combined with the scoped filters O(included_cluster_scoped_resources),
        O(excluded_cluster_scoped_resources), O(included_namespace_scoped_resources) and O(excluded_namespace_scoped_resources).
    type: list
    elements: str
  excluded_resources:
    description:
      - Resources to exclude, old-style filter (Velero C(excludedResources)).
    type: list
    elements: str
  include_cluster_resources:
    description:
      - Old-style switch for cluster-scoped resources (Velero C(includeClusterResources)).
      - V(true) takes all cluster-scoped resources, V(false) none; omitted takes them only when all namespaces are backed up.
      - Since Velero 1.17 a backup without any filter takes cluster-scoped resources only as related items;
        set this (or O(included_cluster_scoped_resources=[*])) to get them all.
    type: bool
  included_cluster_scoped_resources:
    description:
      - Cluster-scoped resources to include (Velero C(includedClusterScopedResources)); V(*) for all.
    type: list
    elements: str
  excluded_cluster_scoped_resources:
    description:
      - Cluster-scoped resources to exclude (Velero C(excludedClusterScopedResources)).
    type: list
    elements: str
  included_namespace_scoped_resources:
    description:
      - Namespace-scoped resources to include (Velero C(includedNamespaceScopedResources)); V(*) for all.
    type: list
    elements: str
  excluded_namespace_scoped_resources:
    description:
      - Namespace-scoped resources to exclude (Velero C(excludedNamespaceScopedResources)).
    type: list
    elements: str
  label_selector:
    description:
      - Only objects with matching labels (Velero C(labelSelector)).
      - Either a selector string such as V(app=web,tier in (front,back),!legacy), a plain label
        dictionary (C(app) set to C(web)), or a Kubernetes LabelSelector with C(matchLabels) and C(matchExpressions).
      - Mutually exclusive with O(or_label_selectors).
    type: raw
  or_label_selectors:
    description:
      - Objects matching any of these selectors (Velero C(orLabelSelectors)); each entry takes the forms of O(label_selector).
      - Mutually exclusive with O(label_selector).
    type: list
    elements: raw
  ttl:
    description:
      - How long Velero keeps the backup, as a Go duration such as V(720h) or V(72h30m) (days are not a unit).
      - Omitted means the server default (C(720h0m0s)).
    type: str
  storage_location:
    description:
      - BackupStorageLocation to write to. Omitted means the default location.
      - The location must exist and must not be V(Unavailable); this is checked before anything is created.
    type: str
  volume_snapshot_locations:
    description:
      - VolumeSnapshotLocations for native volume snapshots.
    type: list
    elements: str
  default_volumes_to_fs_backup:
    description:
      - Back up all pod volumes with the node-agent file-system backup (opt-out mode) instead of only annotated ones.
    type: bool
  snapshot_volumes:
    description:
      - Take native snapshots of persistent volumes. Omitted means Velero's default (snapshot when possible).
    type: bool
  snapshot_move_data:
    description:
      - Move CSI snapshot data to the backup storage (data mover).
    type: bool
  csi_snapshot_timeout:
    description:
      - How long to wait for CSI snapshots, as a Go duration. Server default C(10m0s).
    type: str
  item_operation_timeout:
    description:
      - How long to wait for asynchronous plugin operations, as a Go duration. Server default C(4h0m0s).
    type: str
  hooks:
    description:
      - Backup hooks, in the shape of Velero's C(spec.hooks) (keys may be written in snake_case).
      - A dictionary with a C(resources) list; each entry has a C(name), optional namespace, resource and
        label filters, and C(pre)/C(post) lists of hooks, each an C(exec) with C(container), C(command), C(on_error) and C(timeout).
    type: dict
  ordered_resources:
    description:
      - Order in which objects of a resource are backed up, mapping a resource name to a list of
        V(namespace/name) entries (Velero C(orderedResources)).
    type: dict
  resource_policy:
    description:
      - Name of a ConfigMap in O(velero_namespace) holding a Velero resource policy (volume policies).
    type: str
"""
