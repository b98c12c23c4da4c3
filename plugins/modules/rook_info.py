#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rook_info
short_description: Read a cluster's Rook-Ceph state - operator, Ceph health, daemons, storage
version_added: 1.1.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Reads, without writing anything, what a platform team asks of a Rook-Ceph cluster - the operator
    version, the CephCluster's phase, state and message, Ceph's health and its failing checks,
    capacity, monitors, managers and OSDs ready against wanted and the nodes they run on, block pools,
    filesystems, object stores, bucket claims, Rook's storage classes and the volumes Rook provisioned.
  - Reads Rook's status as Rook writes it - a failed reconcile is phase C(Progressing) with state
    C(Error), and C(Ready) says nothing about health, so both are returned.
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  namespace:
    description: Namespace of the CephCluster.
    type: str
    default: rook-ceph
  operator_namespace:
    description: Namespace of the Rook operator (its CSI drivers are named after it).
    type: str
    default: rook-ceph
notes:
  - The module runs on the controller (C(ansible_connection=local)) and talks to the cluster API.
seealso:
  - module: fleetdr.kube.rook_cluster
"""

EXAMPLES = r"""
- name: Read Rook's state
  fleetdr.kube.rook_info:
  register: rook

- name: Stop when Ceph is not healthy
  ansible.builtin.assert:
    that: rook.rook.cluster.health == 'HEALTH_OK'
    fail_msg: "Ceph is {{ rook.rook.cluster.health }}: {{ rook.rook.cluster.health_checks }}"
"""

RETURN = r"""
rook:
  description: The cluster's Rook-Ceph state.
  returned: always
  type: dict
  contains:
    operator:
      description: C(installed), C(image), C(version), C(available) of the C(rook-ceph-operator) Deployment.
      type: dict
      returned: always
    cluster:
      description:
        - The CephCluster (null when there is none) - C(name), C(phase), C(state), C(message), C(health),
          C(health_checks), C(capacity), C(ceph_version), C(fsid), C(deleting), C(deletion_blocked).
      type: dict
      returned: always
    daemons:
      description: C(mon), C(mgr), C(osd) each with C(wanted), C(ready) and C(nodes).
      type: dict
      returned: always
    block_pools: {description: CephBlockPools with their phase., type: list, elements: dict, returned: always}
    filesystems: {description: CephFilesystems with their phase., type: list, elements: dict, returned: always}
    object_stores: {description: CephObjectStores with their phase., type: list, elements: dict, returned: always}
    storage_classes: {description: "StorageClasses served by this Rook cluster, C(type) block, file or object.", type: list, elements: dict, returned: always}
    bucket_claims: {description: ObjectBucketClaims of Rook's bucket classes with their phase., type: list, elements: dict, returned: always}
    volumes: {description: PersistentVolumes Rook's CSI drivers provisioned from this cluster., type: list, elements: dict, returned: always}
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.client import auth_argspec
from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, kube_module, run_module
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import info


def main():
    spec = auth_argspec()
    spec.update(namespace={"type": "str", "default": "rook-ceph"}, operator_namespace={"type": "str", "default": "rook-ceph"})
    module = kube_module(argument_spec=spec, supports_check_mode=True)

    def action():
        client = get_client(module, namespace=module.params["namespace"])
        return {"changed": False, "rook": info.gather(client, module.params["namespace"], module.params["operator_namespace"])}

    run_module(module, action)


if __name__ == "__main__":
    main()
