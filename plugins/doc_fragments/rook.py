# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options every Rook storage module takes besides kubernetes.core's authentication options.
    DOCUMENTATION = r"""
options:
  namespace:
    description: Namespace of the CephCluster (and of the Rook object).
    type: str
    default: rook-ceph
  operator_namespace:
    description:
      - Namespace of the Rook operator. Rook's CSI drivers are named after it
        (C(<operator_namespace>.rbd.csi.ceph.com), C(<operator_namespace>.cephfs.csi.ceph.com)).
    type: str
    default: rook-ceph
  state:
    description:
      - V(present) creates or updates the object (and its StorageClass); V(absent) deletes them. Rook refuses to
        delete what is still in use; the task then fails with Rook's reason.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: Wait by watch until Rook reports the object ready (or gone).
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait. When it runs out, the error carries Rook's Warning events about the object and, if
        the CephCluster is not healthy, that Rook holds dependents back until it is.
    type: int
    default: 300
requirements:
  - kubernetes >= 24.2.0
"""

    # The StorageClass option of rook_pool and rook_filesystem.
    STORAGE_CLASS = r"""
options:
  storage_class:
    description: The StorageClass for volumes on this pool or filesystem, as Rook's examples write it.
    type: dict
    suboptions:
      name:
        description: Name of the StorageClass.
        type: str
        required: true
      default:
        description: Make it the cluster's default StorageClass.
        type: bool
        default: false
      reclaim_policy:
        description: What happens to a volume when its claim goes.
        type: str
        choices: [Delete, Retain]
        default: Delete
"""
