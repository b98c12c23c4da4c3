#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rook_filesystem
short_description: Manage a Rook CephFilesystem and its file StorageClass
version_added: 1.1.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates, updates or deletes a C(CephFilesystem) (its metadata pool, data pools and metadata servers) and, with
    O(storage_class), the CephFS StorageClass. The class names the Ceph data pool as Rook names it
    (C(<filesystem>-<data pool name>), or C(<filesystem>-data0) when unnamed), not the entry's name.
  - Checks Rook's rules before the write (at least one active metadata server, 50 at most; unique data pool names;
    each pool by Rook's pool rules) and waits by watch until the filesystem is C(Ready).
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
    description: Name of the CephFilesystem.
    type: str
    required: true
  metadata_pool:
    description: The metadata pool (replicated; C(replicated_size) defaults to 3).
    type: dict
    default: {}
    suboptions:
      replicated_size:
        description: Copies of each object.
        type: int
      failure_domain:
        description: CRUSH failure domain.
        type: str
        default: host
  data_pools:
    description: The data pools; the first one backs the StorageClass.
    type: list
    elements: dict
    default: [{name: replicated}]
    suboptions:
      name:
        description: Name of the data pool entry (the Ceph pool is C(<filesystem>-<name>)).
        type: str
      replicated_size:
        description: Copies of each object (default 3 unless O(data_pools[].erasure_coded) is given).
        type: int
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
        description: CRUSH failure domain.
        type: str
        default: host
  active_count:
    description: Active metadata servers (1 to 50).
    type: int
    default: 1
  active_standby:
    description: Keep a hot standby for each active metadata server (doubles the MDS Deployments).
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: A shared filesystem with its StorageClass
  fleetdr.kube.rook_filesystem:
    name: myfs
    data_pools:
      - name: replicated
        replicated_size: 3
    storage_class:
      name: rook-cephfs
"""

RETURN = r"""
result:
  description: The filesystem's phase and what changed.
  returned: always
  type: dict
object:
  description: The CephFilesystem.
  returned: when it exists
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.client import auth_argspec
from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, kube_module, run_module
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import storage


def filesystem_spec(params):
    if not 1 <= params["active_count"] <= 50:
        raise ValidationError("active_count", "must be between 1 and 50 (Rook: MetadataServer.ActiveCount), got {0}".format(params["active_count"]))
    names = [pool.get("name") for pool in params["data_pools"] if pool.get("name")]
    if len(names) != len(set(names)):
        raise ValidationError("data_pools", "names a data pool more than once: {0}".format(", ".join(sorted(set(n for n in names if names.count(n) > 1)))))
    if not params["data_pools"]:
        raise ValidationError("data_pools", "needs at least one data pool (without one Rook assumes the filesystem already exists)")
    data = []
    for index, pool in enumerate(params["data_pools"]):
        entry = storage.pool_spec(pool, "data_pools[{0}].".format(index))
        if pool.get("name"):
            entry["name"] = pool["name"]
        data.append(entry)
    return {"metadataPool": storage.pool_spec(params["metadata_pool"], "metadata_pool."), "dataPools": data,
            "metadataServer": {"activeCount": params["active_count"], "activeStandby": params["active_standby"]}}


def main():
    pool_options = dict(storage.POOL_ARG_SPEC)
    pool_options.pop("device_class")
    pool_options.pop("parameters")
    pool_options.pop("require_safe_replica_size")
    spec = auth_argspec()
    spec.update(storage.ROOK_ARG_SPEC)
    spec.update(name={"type": "str", "required": True},
                metadata_pool={"type": "dict", "default": {}, "options": {"replicated_size": {"type": "int"},
                                                                          "failure_domain": {"type": "str", "default": "host"}}},
                data_pools={"type": "list", "elements": "dict", "default": [{"name": "replicated"}],
                            "options": dict(pool_options, name={"type": "str"})},
                active_count={"type": "int", "default": 1},
                active_standby={"type": "bool", "default": True},
                storage_class={"type": "dict", "options": storage.STORAGE_CLASS_ARG_SPEC})
    module = kube_module(argument_spec=spec, supports_check_mode=True)

    def action():
        params = module.params
        wanted = [storage.rook_object("CephFilesystem", params["name"], params["namespace"], filesystem_spec(params))]
        if params["storage_class"]:
            wanted.append(storage.file_storage_class(params["storage_class"], params["name"], params["data_pools"], params["namespace"],
                                                     params["operator_namespace"]))
        return storage.module_result(module, get_client(module, namespace=params["namespace"]), wanted)

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
