# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""velero_vault: checked before any write; the rendered Velero objects pointed at the vault's bucket."""

import base64

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.rook.vault import point_at_vault, vault_params


@pytest.mark.parametrize("value,words", [
    ("c3", "must be a dict"),
    ({"cluster": "c3", "storage_class": "b"}, "needs endpoint"),
    ({"cluster": "c3", "storage_class": "b", "endpoint": "10.0.0.1"}, "http:// or https:// URL"),
    ({"cluster": "c3", "storage_class": "b", "endpoint": "http://rgw.rook-ceph.svc:80"}, "cluster-internal Service name"),
    ({"cluster": "c3", "storage_class": "b", "endpoint": "http://10.0.0.1", "bukcet": "x"}, "unknown keys bukcet"),
])
def test_bad_vault_settings_are_refused_naming_the_variable(value, words):
    with pytest.raises(ValidationError) as caught:
        vault_params(value)
    assert caught.value.option == "velero_vault" and words in caught.value.msg


def test_defaults_and_unset():
    assert vault_params(None) is None
    vault = vault_params({"cluster": "c3", "storage_class": "b", "endpoint": "http://10.128.2.10:80/"})
    assert vault["claim_namespace"] == "velero-vault" and vault["endpoint"] == "http://10.128.2.10:80" and vault["region"] == "us-east-1"


def test_the_location_and_secret_point_at_the_vault():
    objects = [{"kind": "BackupStorageLocation", "metadata": {"name": "default"},
                "spec": {"default": True, "objectStorage": {"bucket": "", "prefix": "c1"}, "config": {"region": "eu"}}},
               {"kind": "Secret", "metadata": {"name": "cloud-credentials"}, "data": {"cloud": ""}}]
    point_at_vault(objects, vault_params({"cluster": "c3", "storage_class": "b", "endpoint": "http://10.128.2.10:80"}),
                   "velero-c1-0000", "AKID", "SECRET")
    assert objects[0]["spec"]["objectStorage"] == {"bucket": "velero-c1-0000", "prefix": "c1"}
    assert objects[0]["spec"]["config"]["s3Url"] == "http://10.128.2.10:80"
    assert objects[0]["metadata"]["annotations"]["fleetdr.kube/vault-cluster"] == "c3"  # what the Ceph gate reads
    assert base64.b64decode(objects[1]["data"]["cloud"]).decode() == "[default]\naws_access_key_id=AKID\naws_secret_access_key=SECRET\n"
