#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: velero_location
short_description: Manage Velero backup storage and volume snapshot locations
version_added: 1.0.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Creates, updates or deletes a C(BackupStorageLocation) (O(type=backup)) or a
    C(VolumeSnapshotLocation) (O(type=snapshot)), and the Secret holding its credentials.
  - For a backup storage location, waits until Velero validated it and fails with Velero's own
    message when it is V(Unavailable) (wrong bucket, bad credentials, unexpected content).
  - Credentials are no_log and never returned; the Secret's content is compared, not shown.
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - fleetdr.kube.velero
  - fleetdr.kube.velero_wait
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
    description: Name of the location.
    type: str
    required: true
  type:
    description: V(backup) for a BackupStorageLocation, V(snapshot) for a VolumeSnapshotLocation.
    type: str
    choices: [backup, snapshot]
    default: backup
  state:
    description: V(present) creates or updates the location; V(absent) deletes it (not the data, not the Secret).
    type: str
    choices: [present, absent]
    default: present
  provider:
    description: Velero plugin name, for example V(aws) (same as V(velero.io/aws)). Required with O(state=present).
    type: str
  bucket:
    description: Bucket name (backup locations; required for them with O(state=present)).
    type: str
  prefix:
    description: Directory inside the bucket.
    type: str
  bucket_ca_cert:
    description: PEM CA bundle the plugin trusts for the object store (backup locations).
    type: str
  config:
    description:
      - Provider configuration, for example C(region), C(s3Url), C(s3ForcePathStyle) for the AWS plugin.
        Values are passed as strings.
    type: dict
  access_mode:
    description: V(ReadOnly) stops Velero from writing and garbage-collecting in this location (migration targets).
    type: str
    choices: [ReadWrite, ReadOnly]
  default:
    description: Make this the default backup storage location.
    type: bool
  backup_sync_period:
    description: How often Velero syncs backups from the bucket, as a Go duration; V(0s) disables.
    type: str
  validation_frequency:
    description: How often Velero validates the location, as a Go duration.
    type: str
  credential:
    description:
      - An existing Secret in O(velero_namespace) holding a credentials file.
      - Mutually exclusive with O(credentials_file) and O(access_key_id).
    type: dict
    suboptions:
      name:
        description: Secret name.
        type: str
        required: true
      key:
        description: Key inside the Secret.
        type: str
        default: cloud
  credentials_file:
    description:
      - Content of a credentials file (for the AWS plugin, the shared-credentials INI format).
      - Stored in the Secret O(credentials_secret) under key C(cloud).
    type: str
  access_key_id:
    description: S3 access key id; with O(secret_access_key) it builds the credentials file for you.
    type: str
  secret_access_key:
    description: S3 secret access key.
    type: str
  credentials_secret:
    description: Name of the Secret the module writes credentials to. Default C(<name>-credentials).
    type: str
  labels:
    description: Labels for the location object.
    type: dict
  fail_on_unavailable:
    description: Fail the task when Velero reports the backup storage location V(Unavailable).
    type: bool
    default: true
notes:
  - Velero validates a location when it is created and when its spec changes. A change of credentials
    alone is checked at Velero's next periodic validation (O(validation_frequency)); the module then
    reports the phase Velero currently shows.
seealso:
  - module: fleetdr.kube.velero_info
"""

EXAMPLES = r"""
- name: S3 location with its own credentials
  fleetdr.kube.velero_location:
    name: central
    provider: aws
    bucket: fleetdr
    prefix: prod
    config:
      region: us-east-1
      s3Url: https://s3.example.com
      s3ForcePathStyle: "true"
    access_key_id: "{{ s3_key_id }}"
    secret_access_key: "{{ s3_secret }}"
    default: true

- name: Read-only view of another cluster's backups, for a migration
  fleetdr.kube.velero_location:
    name: from-prod
    provider: aws
    bucket: fleetdr
    prefix: prod
    access_mode: ReadOnly
    config: {region: us-east-1, s3Url: "https://s3.example.com", s3ForcePathStyle: "true"}
    credential:
      name: cloud-credentials

- name: Snapshot location
  fleetdr.kube.velero_location:
    name: default
    type: snapshot
    provider: aws
    config: {region: us-east-1}
"""

RETURN = r"""
result:
  description: Normalised state of the location (common fleetdr.kube result shape).
  returned: always
  type: dict
  contains:
    name: {description: Location name., type: str, returned: always}
    phase: {description: V(Available) or V(Unavailable) once validated., type: str, returned: always}
    failure_reason: {description: Velero's message when V(Unavailable)., type: str, returned: always}
    last_validated: {description: Time of the last validation., type: str, returned: always}
    default: {description: Whether this is the default location., type: bool, returned: always}
    access_mode: {description: V(ReadWrite) or V(ReadOnly)., type: str, returned: always}
location:
  description: The location object.
  returned: when it exists (or would be created in check mode)
  type: dict
secret:
  description: What happened to the credentials Secret (V(create), V(replace) or null); never its content.
  returned: always
  type: str
diff:
  description: Before and after of the location object (never the Secret), when run with C(--diff).
  returned: when diff mode is on and something changed
  type: dict
"""

import base64

from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, run_module, kube_module
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, ValidationError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names, objects, results, spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.argspec import common_argspec, wait_argspec

KINDS = {"backup": ("backupstoragelocations", "BackupStorageLocation"), "snapshot": ("volumesnapshotlocations", "VolumeSnapshotLocation")}


def argspec():
    spec = common_argspec()
    spec.update(wait_argspec())
    spec.update(
        name={"type": "str", "required": True},
        type={"type": "str", "choices": ["backup", "snapshot"], "default": "backup"},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        provider={"type": "str"},
        bucket={"type": "str"},
        prefix={"type": "str"},
        bucket_ca_cert={"type": "str"},
        config={"type": "dict"},
        access_mode={"type": "str", "choices": ["ReadWrite", "ReadOnly"]},
        default={"type": "bool"},
        backup_sync_period={"type": "str"},
        validation_frequency={"type": "str"},
        credential={"type": "dict", "options": {"name": {"type": "str", "required": True}, "key": {"type": "str", "default": "cloud", "no_log": False}}},
        credentials_file={"type": "str", "no_log": True},
        access_key_id={"type": "str", "no_log": True},
        secret_access_key={"type": "str", "no_log": True},
        credentials_secret={"type": "str", "no_log": False},
        labels={"type": "dict"},
        fail_on_unavailable={"type": "bool", "default": True},
    )
    return spec


def build_spec(params):
    """Location spec from options; all validation happens here, before any API call."""
    is_backup = params["type"] == "backup"
    if not params["provider"]:
        raise ValidationError("provider", "is required with state=present")
    durations = {}
    storage = None
    if is_backup:
        if not params["bucket"]:
            raise ValidationError("bucket", "is required for a backup storage location")
        bucket = params["bucket"].strip("/")
        if "/" in bucket and not bucket.startswith("arn:aws:s3:"):
            raise ValidationError("bucket", "'{0}' contains '/'; put the directory part in prefix".format(params["bucket"]))
        if bucket.startswith("-"):
            raise ValidationError("bucket", "must not start with '-'")
        storage = {"bucket": bucket}
        if params["prefix"]:
            storage["prefix"] = params["prefix"].strip("/")
        if params["bucket_ca_cert"]:
            storage["caCert"] = base64.b64encode(params["bucket_ca_cert"].encode("utf-8")).decode("ascii")
        for option in ("backup_sync_period", "validation_frequency"):
            if params[option] is not None:
                durations[option] = specs.normalize_duration(params[option], option)
    else:
        for option in ("bucket", "prefix", "bucket_ca_cert", "access_mode", "default", "backup_sync_period", "validation_frequency"):
            if params[option] not in (None, False):
                raise ValidationError(option, "applies only to type=backup")
    config = dict((str(k), _config_value(v)) for k, v in params["config"].items()) if params["config"] else None
    return specs.location_spec(params["provider"], storage, config, access_mode=params["access_mode"] or None,
                               default=params["default"] if is_backup else None, **durations)


def _config_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def credentials_content(params):
    if params["access_key_id"] or params["secret_access_key"]:
        if not (params["access_key_id"] and params["secret_access_key"]):
            raise ValidationError("access_key_id", "access_key_id and secret_access_key must be given together")
        profile = (params["config"] or {}).get("profile") or "default"
        return objects.credentials_file(params["access_key_id"], params["secret_access_key"], profile)
    return params["credentials_file"]


def main():
    module = kube_module(
        argument_spec=argspec(),
        supports_check_mode=True,
        mutually_exclusive=[("credential", "credentials_file", "access_key_id"), ("credential", "credentials_file", "secret_access_key")],
        required_if=[("state", "present", ["provider"])],
    )

    def action():
        params = module.params
        plural, kind = KINDS[params["type"]]
        names.validate_object_name(params["name"], max_length=253)
        if params["state"] == "absent":
            client = get_client(module)
            changed, obj = objects.delete_plain(client, plural, params["name"], module.check_mode)
            out = {"changed": changed, "result": results.normalize(None if changed else obj, kind, client), "secret": None}
            if module._diff and changed:
                out["diff"] = {"before": {"metadata": obj["metadata"], "spec": obj.get("spec")}, "after": {}}
            return out
        labels = names.validate_labels(params["labels"])
        spec = build_spec(params)
        content = credentials_content(params)
        secret_name = params["credentials_secret"] or names.make_name(params["name"], "credentials", max_length=253)
        if content is not None:
            names.validate_object_name(secret_name, "credentials_secret", max_length=253)
            spec["credential"] = {"name": secret_name, "key": "cloud"}
        elif params["credential"]:
            spec["credential"] = {"name": params["credential"]["name"], "key": params["credential"]["key"]}

        client = get_client(module)
        if params["credential"] and client.get_secret(params["credential"]["name"]) is None:
            raise ValidationError("credential", "Secret '{0}' does not exist in namespace {1}".format(params["credential"]["name"], client.namespace))
        secret_plan = objects.plan_secret(client, secret_name, "cloud", content) if content is not None else None
        before = client.get(plural, params["name"])
        previous_validation = ((before or {}).get("status") or {}).get("lastValidationTime")
        changed, obj, diff, secret_action = objects.ensure_location(client, plural, kind, params["name"], spec, labels, secret_plan, module.check_mode)
        if params["type"] == "backup" and params["wait"] and not module.check_mode:
            # Velero validates on create and on spec changes; a Secret-only change is picked up
            # at its next periodic validation, so that case reports the current state.
            try:
                obj = objects.wait_location_validated(client, params["name"], previous_validation if diff else None, params["wait_timeout"])
            except WaitTimeout as exc:
                raise WaitTimeout(exc.msg + " (is the Velero server running?)", last=exc.last, changed=changed,
                                  result=results.normalize(exc.last, kind, client))
        result = results.normalize(obj, kind, client)
        out = {"changed": changed, "result": result, "location": obj, "secret": secret_action}
        if module._diff and diff:
            out["diff"] = diff
        if params["type"] == "backup" and params["wait"] and not module.check_mode and params["fail_on_unavailable"] and result["phase"] != "Available":
            reason = result["failure_reason"] or "no reason given"
            raise FleetdrError("BackupStorageLocation {0} is {1}: {2}".format(params["name"], result["phase"], reason), **out)
        return out

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
