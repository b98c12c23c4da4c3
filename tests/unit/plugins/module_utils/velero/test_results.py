import base64
import gzip
import json

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.velero import results

from fakes import FakeKube

BACKUP = {
    "metadata": {"name": "b1", "namespace": "velero", "labels": {"velero.io/schedule-name": "nightly"}},
    "spec": {"storageLocation": "default"},
    "status": {"phase": "PartiallyFailed", "startTimestamp": "2026-01-01T10:00:00Z", "completionTimestamp": "2026-01-01T10:01:30Z",
               "expiration": "2026-01-31T10:00:00Z", "progress": {"totalItems": 40, "itemsBackedUp": 30},
               "warnings": 2, "errors": 1},
}


def test_normalize_backup():
    kube = FakeKube()
    r = results.normalize(BACKUP, "Backup", kube)
    assert r["cluster"] == "c1" and r["context"] == "ctx"
    assert r["name"] == "b1" and r["phase"] == "PartiallyFailed"
    assert r["progress"] == {"total_items": 40, "items_done": 30, "percent": 75.0}
    assert r["duration_s"] == 90.0
    assert r["expiration"] == "2026-01-31T10:00:00Z"
    assert (r["warnings"], r["errors"]) == (2, 1)
    assert r["storage_location"] == "default" and r["schedule_name"] == "nightly"
    assert r["succeeded"] is False
    assert results.needs_details(r)


def test_normalize_absent_and_failed_validation():
    r = results.normalize(None, "Backup")
    assert r["exists"] is False and r["phase"] is None and r["duration_s"] is None
    fv = results.normalize({"metadata": {"name": "x"}, "status": {"phase": "FailedValidation", "validationErrors": ["bad"]}}, "Backup")
    assert fv["validation_errors"] == ["bad"]
    assert not results.needs_details(fv)  # nothing is written to storage for those


def test_normalize_restore_and_location():
    r = results.normalize({"metadata": {"name": "r"}, "spec": {"backupName": "b1"},
                           "status": {"phase": "Completed", "progress": {"totalItems": 3, "itemsRestored": 3}}}, "Restore")
    assert r["backup_name"] == "b1" and r["progress"]["percent"] == 100.0 and r["succeeded"]
    loc = results.normalize({"metadata": {"name": "l"}, "spec": {"default": True},
                             "status": {"phase": "Unavailable", "message": "no bucket"}}, "BackupStorageLocation")
    assert loc["failure_reason"] == "no bucket" and loc["default"] and loc["access_mode"] == "ReadWrite"


def test_flatten_results_keeps_texts_and_sources():
    doc = {"errors": {"namespaces": {"shop": [" resource: /pods name: /web message: /hook failed"]}, "velero": ["boom"]},
           "warnings": {"cluster": ["w1"]}}
    out = results.flatten_results(doc)
    assert out["errors"] == ["velero: boom", "namespace shop: resource: /pods name: /web message: /hook failed"]
    assert out["warnings"] == ["cluster: w1"]


def test_flatten_results_caps_long_lists():
    doc = {"warnings": {"velero": ["w%d" % i for i in range(200)]}}
    out = results.flatten_results(doc)["warnings"]
    assert len(out) == results.MAX_MESSAGES + 1 and out[-1] == "... 150 more"


def test_results_keys():
    assert results.results_key("Backup", "b1", "/velero/c1/") == "velero/c1/backups/b1/b1-results.gz"
    assert results.results_key("Restore", "r1", "") == "restores/r1/restore-r1-results.gz"


def _kube_with_location(endpoint=None):
    kube = FakeKube()
    creds = "[default]\naws_access_key_id=AKIDTEST\naws_secret_access_key=SeCrEt/Value\n"
    kube.secrets["cloud-credentials"] = {"metadata": {"name": "cloud-credentials"},
                                         "data": {"cloud": base64.b64encode(creds.encode()).decode()}}
    config = {"region": "us-east-1"}
    if endpoint:
        config["s3Url"] = endpoint
    kube.objects[("backupstoragelocations", "default")] = {
        "metadata": {"name": "default"}, "spec": {"provider": "aws", "objectStorage": {"bucket": "fleet-bucket", "prefix": "p"}, "config": config}}
    return kube


def test_read_results_from_object_storage_with_location_credentials():
    moto = pytest.importorskip("moto")
    import boto3

    with moto.mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="fleet-bucket")
        doc = {"errors": {"namespaces": {"shop": ["hook failed"]}}, "warnings": {"velero": ["slow"]}}
        s3.put_object(Bucket="fleet-bucket", Key="p/backups/b1/b1-results.gz", Body=gzip.compress(json.dumps(doc).encode()))
        kube = _kube_with_location()
        secrets = set()
        r = results.attach_details(results.normalize(BACKUP, "Backup", kube), kube, "default", secrets)
    assert r["messages"] == {"errors": ["namespace shop: hook failed"], "warnings": ["velero: slow"]}
    assert secrets == {"AKIDTEST", "SeCrEt/Value"}  # handed to no_log


def test_unreadable_results_are_reported_not_raised_and_secrets_masked():
    kube = _kube_with_location(endpoint="http://127.0.0.1:9")  # nothing listens there
    secrets = set()
    r = results.attach_details(results.normalize(BACKUP, "Backup", kube), kube, "default", secrets)
    assert "messages" not in r
    assert r["messages_error"].startswith("could not read Velero results")
    assert "SeCrEt/Value" not in r["messages_error"]


def test_missing_credentials_secret_is_explained():
    kube = _kube_with_location()
    kube.secrets.clear()
    r = results.attach_details(results.normalize(BACKUP, "Backup", kube), kube, "default", set())
    assert "cloud-credentials" in r["messages_error"]
