#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rook_pool
short_description: Manage a Rook CephBlockPool and its block StorageClass
version_added: 1.1.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates, updates or deletes a C(CephBlockPool) and, with O(storage_class), the RBD StorageClass that provisions
    volumes from it (as Rook's C(deploy/examples/csi/rbd/storageclass.yaml) writes it).
  - Checks Rook's pool rules before the write (replicated or erasure coded, not both; at least 2 data and 1 coding
    chunks; size 1 only without O(require_safe_replica_size)); Rook itself only keeps such a pool C(Progressing)
    with a Warning event.
  - Waits by watch until the pool is C(Ready); C(Failure) fails at once, and a timeout reports Rook's events and,
    when the CephCluster is not healthy, that Rook waits for it.
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - fleetdr.kube.rook
  - fleetdr.kube.rook.storage_class
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
    description: Name of the CephBlockPool (and of the Ceph pool).
    type: str
    required: true
  replicated_size:
    description: Copies of each object. Defaults to 3 unless O(erasure_coded) is given.
    type: int
  require_safe_replica_size:
    description: Refuse sizes that risk data (Rook's C(requireSafeReplicaSize)).
    type: bool
  erasure_coded:
    description: Erasure coding instead of replication.
    type: dict
    suboptions:
      data_chunks:
        description: Data chunks, at least 2.
        type: int
        required: true
      coding_chunks:
        description: Coding chunks, at least 1.
        type: int
        required: true
  failure_domain:
    description: CRUSH failure domain the copies spread over (V(host), V(zone), V(osd) ...).
    type: str
    default: host
  device_class:
    description: Only OSDs of this device class (V(hdd), V(ssd), V(nvme)).
    type: str
  parameters:
    description: Ceph pool parameters, for example C(compression_mode).
    type: dict
"""

EXAMPLES = r"""
- name: A replicated pool with the default block StorageClass
  fleetdr.kube.rook_pool:
    name: replicapool
    replicated_size: 3
    storage_class:
      name: rook-ceph-block
      default: true
"""

RETURN = r"""
result:
  description: The pool's phase, Rook's C(status.info) and what changed.
  returned: always
  type: dict
object:
  description: The CephBlockPool.
  returned: when it exists
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.client import auth_argspec
from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, kube_module, run_module
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import storage


def main():
    spec = auth_argspec()
    spec.update(storage.ROOK_ARG_SPEC)
    spec.update(storage.POOL_ARG_SPEC)
    spec.update(name={"type": "str", "required": True},
                storage_class={"type": "dict", "options": storage.STORAGE_CLASS_ARG_SPEC})
    module = kube_module(argument_spec=spec, supports_check_mode=True)

    def action():
        params = module.params
        wanted = [storage.rook_object("CephBlockPool", params["name"], params["namespace"], storage.pool_spec(params))]
        if params["storage_class"]:
            wanted.append(storage.block_storage_class(params["storage_class"], params["name"], params["namespace"],
                                                      params["operator_namespace"]))
        return storage.module_result(module, get_client(module, namespace=params["namespace"]), wanted)

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
