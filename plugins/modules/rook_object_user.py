#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rook_object_user
short_description: Manage a Rook CephObjectStoreUser (S3 credentials on a Rook object store)
version_added: 1.1.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates, updates or deletes a C(CephObjectStoreUser) and waits until Rook wrote its Secret
    C(rook-ceph-object-user-<store>-<user>) (keys C(AccessKey), C(SecretKey), C(Endpoint)).
  - Returns where the credentials are (the Secret's name and the endpoint); the keys themselves only with
    O(return_credentials), and then the task should set C(no_log).
  - Rook marks a user it cannot create C(ReconcileFailed); the task fails at once with that.
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
    description: Name of the CephObjectStoreUser; also the S3 user ID.
    type: str
    required: true
  store:
    description: The CephObjectStore the user belongs to.
    type: str
    required: true
  display_name:
    description: Display name. Defaults to O(name).
    type: str
  max_buckets:
    description: Buckets the user may own.
    type: int
  max_size:
    description: Total size quota, for example V(10G).
    type: str
  max_objects:
    description: Total object count quota.
    type: int
  return_credentials:
    description: Return the access and secret keys (set C(no_log) on the task).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: An S3 user for Velero on the shared object store
  fleetdr.kube.rook_object_user:
    name: velero
    store: my-store
    max_buckets: 5
"""

RETURN = r"""
result:
  description: The user's phase and what changed.
  returned: always
  type: dict
secret:
  description: The Secret holding the keys (C(name), C(namespace)) and the store's C(endpoint).
  returned: when the user is ready
  type: dict
credentials:
  description: C(access_key_id) and C(secret_access_key).
  returned: with O(return_credentials)
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.client import auth_argspec
from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, kube_module, no_log_values, run_module
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import storage


def user_ready(live):
    return (live.get("status") or {}).get("phase") == "Ready"


def main():
    spec = auth_argspec()
    spec.update(storage.ROOK_ARG_SPEC)
    spec.update(name={"type": "str", "required": True}, store={"type": "str", "required": True}, display_name={"type": "str"},
                max_buckets={"type": "int"}, max_size={"type": "str"}, max_objects={"type": "int"},
                return_credentials={"type": "bool", "default": False})
    module = kube_module(argument_spec=spec, supports_check_mode=True)

    def action():
        params = module.params
        body = {"store": params["store"], "displayName": params["display_name"] or params["name"]}
        fields = (("maxBuckets", "max_buckets"), ("maxSize", "max_size"), ("maxObjects", "max_objects"))
        quotas = dict((key, params[option]) for key, option in fields if params[option] is not None)
        if quotas:
            body["quotas"] = quotas
        client = get_client(module, namespace=params["namespace"])
        out = storage.module_result(module, client, [storage.rook_object("CephObjectStoreUser", params["name"], params["namespace"], body)],
                                    ready=user_ready)
        if out["result"]["phase"] == "Ready":
            name = "rook-ceph-object-user-{0}-{1}".format(params["store"], params["name"])
            data = storage.read_secret_data(client, params["namespace"], name) or {}
            out["secret"] = {"name": name, "namespace": params["namespace"], "endpoint": data.get("Endpoint")}
            if params["return_credentials"]:
                out["credentials"] = {"access_key_id": data.get("AccessKey"), "secret_access_key": data.get("SecretKey")}
            else:
                no_log_values(module).update(v for k, v in data.items() if k in ("AccessKey", "SecretKey") and v)
        return out

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
