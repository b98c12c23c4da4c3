#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rook_bucket
short_description: Claim an S3 bucket from a Rook object store (ObjectBucketClaim)
version_added: 1.1.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates or deletes an C(ObjectBucketClaim) and waits until it is C(Bound); returns the bucket, its endpoint
    (from the ConfigMap named like the claim) and where its keys are (the Secret named like the claim, keys
    C(AWS_ACCESS_KEY_ID) and C(AWS_SECRET_ACCESS_KEY)); the keys themselves only with O(return_credentials).
  - A claim the provisioner cannot serve stays C(Pending) (the bucket library never sets C(Failed)); when the wait
    ends, the error says so with the provisioner's events, and whether the StorageClass names a provisioner at all.
  - Deleting the claim deletes the bucket when its StorageClass's reclaim policy is C(Delete).
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
    description: Name of the ObjectBucketClaim (and of its ConfigMap and Secret).
    type: str
    required: true
  claim_namespace:
    description: Namespace of the claim (the application's); O(namespace) is the CephCluster's.
    type: str
    required: true
  storage_class:
    description: A bucket StorageClass of a Rook object store (see M(fleetdr.kube.rook_object_store)).
    type: str
    required: true
  bucket_name:
    description: Exact bucket name. Without it one is generated from O(generate_bucket_name).
    type: str
  generate_bucket_name:
    description: Prefix of a generated bucket name (a UUID is appended). Defaults to O(name).
    type: str
  max_objects:
    description: Object count quota of the bucket.
    type: int
  max_size:
    description: Size quota of the bucket, for example V(2G).
    type: str
  return_credentials:
    description: Return the access and secret keys (set C(no_log) on the task).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: A bucket for the shop's uploads
  fleetdr.kube.rook_bucket:
    name: uploads
    claim_namespace: shop
    storage_class: rook-ceph-bucket
  register: bucket

- name: Show where it is
  ansible.builtin.debug:
    msg: "s3://{{ bucket.bucket.name }} at {{ bucket.bucket.endpoint }}"
"""

RETURN = r"""
result:
  description: The claim's phase and what changed.
  returned: always
  type: dict
bucket:
  description: C(name), C(host), C(port), C(endpoint) and the C(secret) holding the keys.
  returned: when the claim is Bound
  type: dict
credentials:
  description: C(access_key_id) and C(secret_access_key).
  returned: with O(return_credentials)
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.client import auth_argspec
from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, kube_module, no_log_values, run_module
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import storage


def main():
    spec = auth_argspec()
    spec.update(storage.ROOK_ARG_SPEC)
    spec.update(name={"type": "str", "required": True}, claim_namespace={"type": "str", "required": True},
                storage_class={"type": "str", "required": True}, bucket_name={"type": "str"}, generate_bucket_name={"type": "str"},
                max_objects={"type": "int"}, max_size={"type": "str"}, return_credentials={"type": "bool", "default": False})
    module = kube_module(argument_spec=spec, supports_check_mode=True, mutually_exclusive=[("bucket_name", "generate_bucket_name")])

    def action():
        params = module.params
        claim = storage.bucket_claim(params)
        client = get_client(module, namespace=params["namespace"])
        if params["state"] == "present":
            storage.check_bucket_class(client, params["storage_class"])
        out = storage.module_result(module, client, [claim], ready=storage.claim_bound, failed=storage.claim_never_failed)
        if out["result"]["phase"] == "Bound":
            namespace = params["claim_namespace"]
            config = client.request("Reading ConfigMap {0}/{1}".format(namespace, params["name"]), "GET",
                                    "/api/v1/namespaces/{0}/configmaps/{1}".format(namespace, params["name"]), missing_ok=True) or {}
            data = config.get("data") or {}
            keys = storage.read_secret_data(client, namespace, params["name"]) or {}
            out["bucket"] = {"name": data.get("BUCKET_NAME"), "host": data.get("BUCKET_HOST"), "port": data.get("BUCKET_PORT"),
                             "endpoint": "http://{0}:{1}".format(data.get("BUCKET_HOST"), data.get("BUCKET_PORT")),
                             "secret": {"name": params["name"], "namespace": namespace}}
            if params["return_credentials"]:
                out["credentials"] = {"access_key_id": keys.get("AWS_ACCESS_KEY_ID"), "secret_access_key": keys.get("AWS_SECRET_ACCESS_KEY")}
            else:
                no_log_values(module).update(v for v in keys.values() if v)
        return out

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
