# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A vault cluster's Rook object store as the backup target of the fleet's Velero.

The install path asks for ``velero_vault``: the inventory host of the vault cluster, the bucket
StorageClass of its Rook object store, and the endpoint through which the other clusters reach that
store (a LoadBalancer or ingress in front of the RGW: the store's in-cluster Service name only
resolves inside the vault). Each protected cluster gets its own bucket claim on the vault
(``velero-<cluster>`` in ``claim_namespace``); its BackupStorageLocation points at the claim's bucket
through the endpoint and its credentials Secret carries the claim's keys. Re-running the install
carries rotated keys over; the claims are never deleted by the install.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible_collections.fleetdr.kube.plugins.module_utils import apply
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import storage
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names

OPTIONS = ("cluster", "storage_class", "endpoint", "claim_namespace", "region")


def vault_params(value):
    """The checked ``velero_vault`` variable (None when unset)."""
    if value in (None, "", {}):
        return None
    if not isinstance(value, dict):
        raise ValidationError("velero_vault", "must be a dict with cluster, storage_class and endpoint, got {0!r}".format(value))
    unknown = sorted(set(value) - set(OPTIONS))
    if unknown:
        raise ValidationError("velero_vault", "unknown keys {0} (known: {1})".format(", ".join(unknown), ", ".join(OPTIONS)))
    missing = [key for key in ("cluster", "storage_class", "endpoint") if not value.get(key)]
    if missing:
        raise ValidationError("velero_vault", "needs {0}".format(", ".join(missing)))
    endpoint = str(value["endpoint"])
    if not endpoint.startswith(("http://", "https://")):
        raise ValidationError("velero_vault", "endpoint must be an http:// or https:// URL the clusters can reach, got {0}".format(endpoint))
    if ".svc" in endpoint.split("://", 1)[1].split("/", 1)[0]:
        raise ValidationError("velero_vault", "endpoint {0} is a cluster-internal Service name: the other clusters cannot resolve it; "
                                              "give the load balancer or ingress address in front of the vault's RGW".format(endpoint))
    out = dict(value, endpoint=endpoint.rstrip("/"), claim_namespace=value.get("claim_namespace") or "velero-vault",
               region=value.get("region") or "us-east-1")
    names.validate_object_name(out["claim_namespace"], "velero_vault.claim_namespace", max_length=63)
    return out


def claim_name(cluster_name):
    return names.make_name("velero", cluster_name, max_length=63)


def ensure_bucket(vault_client, vault, cluster_name, timeout, check_mode=False):
    """The protected cluster's bucket claim on the vault, Bound; returns (changed, bucket, access key, secret key)."""
    namespace = vault["claim_namespace"]
    mapper = apply.ResourceMapper()
    changes = [apply.apply_object(vault_client, mapper, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                                  check_mode=check_mode)]
    storage.check_bucket_class(vault_client, vault["storage_class"])
    claim = storage.bucket_claim({"name": claim_name(cluster_name), "claim_namespace": namespace,
                                  "storage_class": vault["storage_class"], "generate_bucket_name": claim_name(cluster_name)})
    claim["metadata"]["labels"] = {"fleetdr.kube/protects": names.label_value(cluster_name)}
    more, live = storage.ensure(vault_client, [claim], check_mode=check_mode, wait=not check_mode, timeout=timeout,
                                ready=storage.claim_bound, failed=storage.claim_never_failed)
    changes += more
    if check_mode:
        return apply.changed(changes), None, None, None
    bucket = (live.get("spec") or {}).get("bucketName")
    keys = storage.read_secret_data(vault_client, namespace, claim["metadata"]["name"]) or {}
    if not bucket or not keys.get("AWS_ACCESS_KEY_ID"):
        raise FleetdrError("bucket claim {0}/{1} on the vault is Bound but has no bucket or keys".format(namespace, claim["metadata"]["name"]))
    return apply.changed(changes), bucket, keys["AWS_ACCESS_KEY_ID"], keys["AWS_SECRET_ACCESS_KEY"]


def point_at_vault(objects, vault, bucket, access_key, secret_key):
    """Rewrite the rendered Velero objects: the default location on the vault's bucket through its
    endpoint, the credentials Secret with the claim's keys."""
    found = set()
    for obj in objects:
        kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
        if kind == "BackupStorageLocation" and (obj.get("spec") or {}).get("default"):
            spec = obj["spec"]
            spec["objectStorage"] = dict(spec.get("objectStorage") or {}, bucket=bucket)
            spec["config"] = dict(spec.get("config") or {}, s3Url=vault["endpoint"], s3ForcePathStyle="true", region=vault["region"])
            # the Ceph health gate of backups and restores checks the vault through this
            obj["metadata"].setdefault("annotations", {})[names.ANNOTATION_VAULT] = vault["cluster"]
            found.add(kind)
        elif kind == "Secret" and name == "cloud-credentials":
            text = "[default]\naws_access_key_id={0}\naws_secret_access_key={1}\n".format(access_key, secret_key)
            obj.pop("stringData", None)
            obj["data"] = {"cloud": base64.b64encode(text.encode("utf-8")).decode("ascii")}
            found.add(kind)
    if found != {"BackupStorageLocation", "Secret"}:
        raise FleetdrError("the rendered Velero objects have no default BackupStorageLocation or cloud-credentials Secret to point at the vault")
