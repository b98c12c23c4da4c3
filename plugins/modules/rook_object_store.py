#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rook_object_store
short_description: Manage a Rook CephObjectStore (S3 gateway) and its bucket StorageClass
version_added: 1.1.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates, updates or deletes a C(CephObjectStore) (its pools and RADOS gateway) and, with O(storage_class), the
    StorageClass that ObjectBucketClaims name. The class's provisioner is the one Rook runs on this cluster, read
    from C(rook-ceph-operator-config) (C(<namespace>.ceph.rook.io/bucket) or C(ceph.rook.io/bucket)); a class
    naming another provisioner would leave every claim silently unserved.
  - Checks Rook's rules before the write (a name of at most 38 characters, a port) and waits by watch until the
    store is C(Ready); returns its endpoint.
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - fleetdr.kube.rook
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
    description: Name of the CephObjectStore (at most 38 characters).
    type: str
    required: true
  port:
    description: HTTP port of the gateway Service.
    type: int
    default: 80
  instances:
    description: Gateway pods.
    type: int
    default: 1
  metadata_pool:
    description: The metadata pools (replicated; C(replicated_size) defaults to 3).
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
  data_pool:
    description: The data pool.
    type: dict
    default: {}
    suboptions:
      replicated_size:
        description: Copies of each object (default 3 unless O(data_pool.erasure_coded) is given).
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
  preserve_pools_on_delete:
    description: Keep the pools (and the objects in them) when the store is deleted.
    type: bool
    default: true
  storage_class:
    description: The StorageClass for ObjectBucketClaims on this store.
    type: dict
    suboptions:
      name:
        description: Name of the StorageClass.
        type: str
        required: true
      reclaim_policy:
        description: V(Delete) deletes a claim's bucket with the claim; V(Retain) keeps it.
        type: str
        choices: [Delete, Retain]
        default: Delete
"""

EXAMPLES = r"""
- name: An S3 object store with a bucket class
  fleetdr.kube.rook_object_store:
    name: my-store
    data_pool:
      erasure_coded: {data_chunks: 2, coding_chunks: 1}
    storage_class:
      name: rook-ceph-bucket
"""

RETURN = r"""
result:
  description: The store's phase, Rook's C(status.info) (with C(endpoint)) and what changed.
  returned: always
  type: dict
object:
  description: The CephObjectStore.
  returned: when it exists
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.client import auth_argspec
from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, kube_module, run_module
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import storage


def store_spec(params):
    storage.object_store_name(params["name"])
    if params["port"] < 1 or params["port"] > 65535:
        raise ValidationError("port", "must be between 1 and 65535, got {0}".format(params["port"]))
    if params["instances"] < 1:
        raise ValidationError("instances", "must be at least 1, got {0}".format(params["instances"]))
    return {"metadataPool": storage.pool_spec(params["metadata_pool"], "metadata_pool."),
            "dataPool": storage.pool_spec(params["data_pool"], "data_pool."),
            "preservePoolsOnDelete": params["preserve_pools_on_delete"],
            "gateway": {"port": params["port"], "instances": params["instances"]}}


def main():
    data_pool = dict(storage.POOL_ARG_SPEC)
    for key in ("device_class", "parameters", "require_safe_replica_size"):
        data_pool.pop(key)
    spec = auth_argspec()
    spec.update(storage.ROOK_ARG_SPEC)
    spec.update(name={"type": "str", "required": True},
                port={"type": "int", "default": 80},
                instances={"type": "int", "default": 1},
                metadata_pool={"type": "dict", "default": {}, "options": {"replicated_size": {"type": "int"},
                                                                          "failure_domain": {"type": "str", "default": "host"}}},
                data_pool={"type": "dict", "default": {}, "options": data_pool},
                preserve_pools_on_delete={"type": "bool", "default": True},
                storage_class={"type": "dict", "options": storage.BUCKET_CLASS_ARG_SPEC})
    module = kube_module(argument_spec=spec, supports_check_mode=True)

    def action():
        params = module.params
        wanted = [storage.rook_object("CephObjectStore", params["name"], params["namespace"], store_spec(params))]
        client = get_client(module, namespace=params["namespace"])
        if params["storage_class"]:
            config = client.request("Reading the operator's settings", "GET", "/api/v1/namespaces/{0}/configmaps/{1}".format(
                params["operator_namespace"], "rook-ceph-operator-config"), missing_ok=True)
            wanted.append(storage.bucket_storage_class(params["storage_class"], params["name"], params["namespace"],
                                                       storage.bucket_provisioner(config, params["namespace"])))
        return storage.module_result(module, client, wanted)

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
