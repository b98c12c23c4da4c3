# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Distributed storage fleet-wide: playbooks fleetdr.kube.storage / storage_status / storage_teardown
and the Rook modules against a lab of 3 clusters (3 nodes, one raw device each) running the emulated
Rook operator. Per-cluster CephCluster settings come from host_vars; tests build on each other.
The lab serves the clusters from two processes, as it serves a fleet of 200 clusters or more: the vault
c2 in one, c1 and c3 in the other, so their Velero reaches the vault's RGW through a LoadBalancer
address that the other process serves."""
import base64
import json
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner, api_get as _get, recap  # noqa: E402

NS = "rook-ceph"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("storage-lab"), clusters=3, nodes=3, extra=("--devices", "1"), processes=2)
    try:
        serving = dict((cluster, p["index"]) for p in handle.state["processes"] for cluster in p["clusters"])
        assert serving["c1"] == serving["c3"] != serving["c2"], serving
        yield handle
    finally:
        handle.down()


def host_vars(lab, cluster, mons, mgrs=1):
    directory = lab.inventory.parent / "host_vars"
    directory.mkdir(exist_ok=True)
    (directory / f"{cluster}.yml").write_text(yaml.safe_dump({"rook_ceph_cluster": {
        "monitor": {"count": mons, "labels": {"team": "storage"}}, "manager": {"count": mgrs}}}))


@pytest.fixture(scope="module")
def play(lab, collections, tmp_path_factory):
    work = tmp_path_factory.mktemp("storage-work")
    runner = PlaybookRunner(lab, collections, work)
    runner.manifests = lab.dir / "rook-manifests"
    lab.cli("rook", "manifests", "--out", str(runner.manifests))
    for cluster, mons in (("c1", 3), ("c2", 1), ("c3", 5)):
        host_vars(lab, cluster, mons)
    return runner


def test_storage_on_the_fleet_with_per_cluster_settings_and_a_refused_cluster(lab, play):
    proc = play("storage", "-e", "rook_ceph_manifests_src=%s" % play.manifests, check_rc=2)
    report = play.report("storage", "rook-ceph")[1]
    clusters = dict((c["name"], c) for c in report["clusters"])
    for name, mons in (("c1", 3), ("c2", 1)):
        entry = clusters[name]
        assert entry["verdict"] == "succeeded" and entry["phase"] == "Ready", entry
        assert entry["details"]["health"] == "HEALTH_OK"
        assert entry["details"]["daemons"]["mon"] == {"wanted": mons, "ready": mons, "nodes": entry["details"]["daemons"]["mon"]["nodes"]}
        assert entry["details"]["capacity"]["total_bytes"] == 3 * 100 * 2 ** 30
        cc = _get(lab, name, "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephclusters/rook-ceph")
        assert cc["spec"]["mon"]["count"] == mons and cc["spec"]["labels"]["mon"] == {"team": "storage"}
    # c3 asks for 5 mons on 3 nodes: refused with the numbers, nothing written there
    assert clusters["c3"]["verdict"] == "failed"
    assert "cannot start 5 mons on 3 node(s)" in clusters["c3"]["reason"] and "monitor.count" in clusters["c3"]["reason"]
    assert _get(lab, "c3", "/api/v1/namespaces/rook-ceph") is None
    assert recap(proc)["c3"]["failed"] == 1
    assert "Ceph storage" in (play.report("storage", "rook-ceph")[0] / "report.html").read_text()


def test_fixed_settings_install_the_rest_and_a_second_run_changes_nothing(lab, play):
    host_vars(lab, "c3", 3, mgrs=2)
    play("storage", "-e", "rook_ceph_manifests_src=%s" % play.manifests, check_rc=0)
    report = play.report("storage", "rook-ceph")[1]
    assert report["verdict"] == "succeeded"
    c3 = dict((c["name"], c) for c in report["clusters"])["c3"]
    assert c3["details"]["daemons"]["mgr"]["ready"] == 2
    before = dict((c, _get(lab, c, "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephclusters/rook-ceph")["metadata"]["resourceVersion"])
                  for c in lab.clusters)
    proc = play("storage", "-e", "rook_ceph_manifests_src=%s" % play.manifests, check_rc=0)
    assert recap(proc)["c1"]["changed"] == 0
    assert all(entry["details"]["changes"] == [] for entry in play.report("storage", "rook-ceph")[1]["clusters"])
    after = dict((c, _get(lab, c, "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephclusters/rook-ceph")["metadata"]["resourceVersion"])
                 for c in lab.clusters)
    assert after == before


def test_health_err_is_never_succeeded_and_the_report_names_the_check(lab, play):
    lab.cli("rook", "health", "c2", "HEALTH_ERR", "--message", "Reduced data availability: 4 pgs inactive")
    try:
        proc = play("storage_status", check_rc=2)
    finally:
        lab.cli("rook", "health", "c2", "HEALTH_OK")
    clusters = dict((c["name"], c) for c in play.report("storage_status", "storage")[1]["clusters"])
    assert clusters["c2"]["verdict"] == "failed"
    assert "HEALTH_ERR" in clusters["c2"]["reason"] and "4 pgs inactive" in clusters["c2"]["reason"]
    assert clusters["c1"]["verdict"] == "succeeded" and clusters["c3"]["verdict"] == "succeeded"
    assert recap(proc)["c2"]["failed"] == 1


def _rgw(lab, cluster="c2", store="my-store"):
    """Where the test (on the lab host) reaches the store's S3 API: each Rook object store is its own endpoint."""
    return lab.cli("rook", "endpoint", cluster, store).stdout.strip()


def test_object_storage_modules_give_a_working_bucket(lab, play):
    """rook_object_store (with its bucket class), rook_object_user and rook_bucket on c2; the keys work."""
    objects = play.work / "objects.yml"
    auth = {"kubeconfig": "{{ fleetdr_kubeconfig }}", "context": "{{ fleetdr_context }}"}
    objects.write_text(yaml.safe_dump([{
        "name": "Object storage on c2", "hosts": "c2", "gather_facts": False,
        "module_defaults": {"group/fleetdr.kube.rook": auth},
        "tasks": [
            {"name": "Store", "fleetdr.kube.rook_object_store": {"name": "my-store", "storage_class": {"name": "rook-ceph-bucket"}},
             "register": "store"},
            {"name": "User", "fleetdr.kube.rook_object_user": {"name": "velero", "store": "my-store"}, "register": "user"},
            {"name": "Bucket", "fleetdr.kube.rook_bucket": {"name": "backups", "claim_namespace": "default",
                                                            "storage_class": "rook-ceph-bucket", "return_credentials": True},
             "register": "bucket", "no_log": True},
            {"name": "Keep what the test reads", "ansible.builtin.copy": {
                "dest": str(play.work / "bucket.json"), "mode": "0600",
                "content": "{{ {'store': store.result, 'user': user.secret, 'bucket': bucket.bucket, 'credentials': bucket.credentials}"
                           " | to_json }}"}, "no_log": True},
            {"name": "A class nobody serves is refused before the write",
             "fleetdr.kube.rook_bucket": {"name": "nope", "claim_namespace": "default", "storage_class": "standard"},
             "register": "refused", "ignore_errors": True},
            {"name": "Check the refusal", "ansible.builtin.assert": {"that": ["refused.failed", "'not by a Rook object store' in refused.msg"]}},
        ]}]))
    proc = play(str(objects), check_rc=0)
    got = json.loads((play.work / "bucket.json").read_text())
    assert got["store"]["phase"] == "Ready" and got["store"]["info"]["endpoint"] == "http://rook-ceph-rgw-my-store.rook-ceph.svc:80"
    assert got["user"]["name"] == "rook-ceph-object-user-my-store-velero"
    assert got["bucket"]["host"] == "rook-ceph-rgw-my-store.rook-ceph.svc" and got["bucket"]["name"].startswith("backups-")
    assert got["credentials"]["secret_access_key"] not in proc.stdout
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=_rgw(lab), region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
                      aws_access_key_id=got["credentials"]["access_key_id"], aws_secret_access_key=got["credentials"]["secret_access_key"])
    s3.put_object(Bucket=got["bucket"]["name"], Key="probe", Body=b"ok")
    assert s3.get_object(Bucket=got["bucket"]["name"], Key="probe")["Body"].read() == b"ok"
    proc = play(str(objects), check_rc=0)
    # Store, user and bucket report no change; only the test's own file copy changes (its "changes" list is now empty).
    at = proc.stdout.index("changed: [c2]")
    assert recap(proc)["c2"]["changed"] == 1 and proc.stdout[:at].rsplit("TASK [", 1)[1].startswith("Keep what the test reads"), proc.stdout
    status = dict((c["name"], c) for c in (play("storage_status", check_rc=0) and play.report("storage_status", "storage")[1]["clusters"]))
    assert status["c2"]["details"]["object_stores"] == [{"name": "my-store", "phase": "Ready"}]
    assert status["c2"]["details"]["bucket_claims"][0]["phase"] == "Bound"


def test_a_shared_filesystem_gives_cephfs_volumes_and_goes_only_when_empty(lab, play):
    """rook_filesystem on c2: a CephFilesystem (two MDS with the standby) and its class naming the Ceph data pool
    <fs>-<entry>; a ReadWriteMany claim on it holds bytes; a second run changes nothing; bad input is refused
    before any write; deletion fails with Rook's reason while the volume exists, then succeeds."""
    files = play.work / "files.yml"
    auth = {"kubeconfig": "{{ fleetdr_kubeconfig }}", "context": "{{ fleetdr_context }}"}
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared", "namespace": "default"},
             "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "rook-cephfs", "resources": {"requests": {"storage": "1Gi"}}}}
    files.write_text(yaml.safe_dump([{
        "name": "A shared filesystem on c2", "hosts": "c2", "gather_facts": False,
        "module_defaults": {"group/fleetdr.kube.rook": auth},
        "tasks": [
            {"name": "Refused before any write", "fleetdr.kube.rook_filesystem": {"name": "badfs", "active_count": 0},
             "register": "refused", "ignore_errors": True},
            {"name": "Check the refusal", "ansible.builtin.assert": {"that": ["refused.failed", "'active_count' in refused.msg"]}},
            {"name": "Filesystem", "register": "fs",
             "fleetdr.kube.rook_filesystem": {"name": "myfs", "data_pools": [{"name": "replicated"}], "storage_class": {"name": "rook-cephfs"}}},
            {"name": "Claim", "kubernetes.core.k8s": dict(auth, definition=claim), "when": "fs.result.phase == 'Ready'"},
        ]}]))
    proc = play(str(files), check_rc=0)
    fs = _get(lab, "c2", "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephfilesystems/myfs")
    assert fs["status"]["phase"] == "Ready" and fs["spec"]["metadataServer"] == {"activeCount": 1, "activeStandby": True}
    assert _get(lab, "c2", "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephfilesystems/badfs") is None
    mds = _get(lab, "c2", "/apis/apps/v1/namespaces/rook-ceph/deployments?labelSelector=rook_file_system%3Dmyfs")
    assert sorted(d["metadata"]["name"] for d in mds["items"]) == ["rook-ceph-mds-myfs-a", "rook-ceph-mds-myfs-b"]
    sc = _get(lab, "c2", "/apis/storage.k8s.io/v1/storageclasses/rook-cephfs")
    assert sc["provisioner"] == "rook-ceph.cephfs.csi.ceph.com"
    assert sc["parameters"]["fsName"] == "myfs" and sc["parameters"]["pool"] == "myfs-replicated"
    deadline = time.monotonic() + 30
    while (_get(lab, "c2", "/api/v1/namespaces/default/persistentvolumeclaims/shared").get("status") or {}).get("phase") != "Bound":
        assert time.monotonic() < deadline, "the CephFS claim was not bound"
        time.sleep(0.2)
    volume = _get(lab, "c2", "/api/v1/namespaces/default/persistentvolumeclaims/shared")["spec"]["volumeName"]
    assert _get(lab, "c2", "/api/v1/persistentvolumes/" + volume)["spec"]["csi"]["volumeAttributes"]["pool"] == "myfs-replicated"
    lab.cli("volume", "put", "--cluster", "c2", "--namespace", "default", "--pvc", "shared", "--text", "shared bytes", "/s.txt")
    assert "shared bytes" in lab.cli("volume", "get", "--cluster", "c2", "--namespace", "default", "--pvc", "shared", "/s.txt").stdout
    before = fs["metadata"]["resourceVersion"]
    proc = play(str(files), check_rc=0)
    assert recap(proc)["c2"]["changed"] == 0
    assert _get(lab, "c2", "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephfilesystems/myfs")["metadata"]["resourceVersion"] == before
    drop = play.work / "drop_fs.yml"
    drop.write_text(yaml.safe_dump([{"name": "Drop the filesystem", "hosts": "c2", "gather_facts": False, "tasks": [
        {"name": "Filesystem", "fleetdr.kube.rook_filesystem": dict(auth, name="myfs", state="absent", wait_timeout=30,
                                                                    storage_class={"name": "rook-cephfs"})}]}]))
    proc = play(str(drop), check_rc=2)
    assert "filesystem subvolume groups that contain subvolumes" in proc.stdout
    assert _get(lab, "c2", "/api/v1/persistentvolumes/" + volume) is not None  # nothing of the user's data went
    lab_api = lab.api("c2")
    try:
        lab_api.call_api(*lab_api.param_serialize("DELETE", "/api/v1/namespaces/default/persistentvolumeclaims/shared",
                                                  auth_settings=["BearerToken"])).read()
    finally:
        lab_api.close()
    play(str(drop), check_rc=0)
    assert _get(lab, "c2", "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephfilesystems/myfs") is None
    assert _get(lab, "c2", "/apis/storage.k8s.io/v1/storageclasses/rook-cephfs") is None


def test_an_upgrade_goes_in_waves_and_stops_where_ceph_is_not_healthy(lab, play):
    """New Ceph image everywhere, one cluster at a time: c1 upgrades, c2 (HEALTH_ERR) is refused by
    Rook and fails, c3 is never touched."""
    for cluster, mons, mgrs in (("c1", 3, 1), ("c2", 1, 1), ("c3", 3, 2)):
        path = lab.inventory.parent / "host_vars" / f"{cluster}.yml"
        values = yaml.safe_load(path.read_text())
        values["rook_ceph_cluster"]["ceph_image"] = "quay.io/ceph/ceph:v20.2.5"
        path.write_text(yaml.safe_dump(values))
    lab.cli("rook", "health", "c2", "HEALTH_ERR", "--message", "1 osds down")
    try:
        play("storage", "-e", "rook_ceph_manifests_src=%s" % play.manifests, "-e", "batch=1", "-e", "max_fail_percentage=0",
             "-e", "wait_timeout=20", check_rc=2)
    finally:
        lab.cli("rook", "health", "c2", "HEALTH_OK")
    clusters = dict((c["name"], c) for c in play.report("storage", "rook-ceph")[1]["clusters"])
    assert clusters["c1"]["verdict"] == "succeeded" and clusters["c1"]["details"]["ceph_version"] == "20.2.5-0"
    assert clusters["c2"]["verdict"] == "failed" and "refusing to upgrade" in clusters["c2"]["reason"]
    assert clusters["c3"]["verdict"] == "skipped" and "rollout stopped after wave 2 of 3" in clusters["c3"]["reason"]
    c3 = _get(lab, "c3", "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephclusters/rook-ceph")
    assert c3["spec"]["cephVersion"]["image"] == "quay.io/ceph/ceph:v20.2.4"
    mon = _get(lab, "c1", "/apis/apps/v1/namespaces/rook-ceph/deployments/rook-ceph-mon-a")
    assert mon["spec"]["template"]["spec"]["containers"][0]["image"] == "quay.io/ceph/ceph:v20.2.5"
    # healthy again: the rest of the fleet follows
    play("storage", "-e", "rook_ceph_manifests_src=%s" % play.manifests, "-e", "batch=1", "-e", "max_fail_percentage=0", check_rc=0)
    versions = dict((c["name"], c["details"]["ceph_version"]) for c in play.report("storage", "rook-ceph")[1]["clusters"])
    assert versions == {"c1": "20.2.5-0", "c2": "20.2.5-0", "c3": "20.2.5-0"}


def test_backups_are_gated_on_ceph_health(lab, play):
    """ceph_health_gate: enforce skips a HEALTH_ERR cluster (nothing created there), warn names the health."""
    secrets = play.work / "s3.yml"
    secrets.write_text(yaml.safe_dump({"velero_s3_access_key_id": lab.s3["access_key_id"],
                                       "velero_s3_secret_access_key": lab.s3["secret_access_key"], "velero_node_agent": True}))
    play("install", "-e", "@%s" % secrets, check_rc=0)
    lab.cli("rook", "health", "c2", "HEALTH_ERR", "--message", "Reduced data availability: 4 pgs inactive")
    try:
        play("backup", "-e", "backup_name=gated", "-e", "included_namespaces=default", "-e", "ceph_health_gate=enforce", check_rc=0)
        clusters = dict((c["name"], c) for c in play.report("backup", "gated")[1]["clusters"])
        assert clusters["c2"]["verdict"] == "skipped"
        assert "Ceph HEALTH_ERR on CephCluster rook-ceph/rook-ceph" in clusters["c2"]["reason"]
        assert "4 pgs inactive" in clusters["c2"]["reason"] and "ceph_health_gate=enforce" in clusters["c2"]["reason"]
        assert clusters["c1"]["verdict"] == "succeeded" and clusters["c3"]["verdict"] == "succeeded"
        assert not (_get(lab, "c2", "/apis/velero.io/v1/namespaces/velero/backups") or {}).get("items")
        play("backup", "-e", "backup_name=warned", "-e", "included_namespaces=default", check_rc=0)
        warned = dict((c["name"], c) for c in play.report("backup", "warned")[1]["clusters"])
        assert warned["c2"]["verdict"] == "succeeded"
        assert any("Ceph HEALTH_ERR" in text for text in warned["c2"]["warnings"])
        assert not any("Ceph" in text for text in warned["c1"]["warnings"])
    finally:
        lab.cli("rook", "health", "c2", "HEALTH_OK")


def test_velero_keeps_its_backups_in_the_clusters_own_rook_object_store(lab, play):
    """c2's Velero pointed at c2's RGW (the bucket claim of the object storage test): the location is
    Available, a backup lands in the claim's bucket (read with boto3 and the claim's keys), and the
    reports warn that such backups do not survive the cluster."""
    got = json.loads((play.work / "bucket.json").read_text())
    settings = play.work / "rook-target.yml"
    settings.write_text(yaml.safe_dump({"velero_s3_bucket": got["bucket"]["name"], "velero_s3_url": "http://%s:%s" % (
        got["bucket"]["host"], got["bucket"]["port"]), "velero_s3_access_key_id": got["credentials"]["access_key_id"],
        "velero_s3_secret_access_key": got["credentials"]["secret_access_key"]}))
    play("install", "--limit", "c2", "-e", "@%s" % settings, check_rc=0)
    entry = play.report("install", "velero")[1]["clusters"][0]
    assert entry["details"]["location_phase"] == "Available" and entry["details"]["bucket"] == got["bucket"]["name"]
    assert any("do not survive the loss of this cluster" in text for text in entry["warnings"])
    play("backup", "--limit", "c2", "-e", "backup_name=onrook", "-e", "included_namespaces=default", check_rc=0)
    backup = play.report("backup", "onrook")[1]["clusters"][0]
    assert backup["verdict"] == "succeeded" and any("own object store" in text for text in backup["warnings"])
    import boto3
    from botocore.config import Config
    s3 = boto3.client("s3", endpoint_url=_rgw(lab), region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
                      aws_access_key_id=got["credentials"]["access_key_id"], aws_secret_access_key=got["credentials"]["secret_access_key"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=got["bucket"]["name"], Prefix="c2/backups/").get("Contents", [])]
    assert any(k.endswith("velero-backup.json") for k in keys), keys


def test_a_vault_cluster_keeps_the_other_clusters_backups(lab, play):
    """c2 is the vault: its RGW (store my-store, class rook-ceph-bucket) behind a LoadBalancer Service. Installing Velero
    on c1 and c3 with velero_vault gives each its own bucket claim on c2 and points its location there; backups land in
    those buckets (read with each claim's keys); a second install changes nothing; a cluster-internal endpoint is refused."""
    import base64
    import boto3
    from botocore.config import Config
    from kubernetes import client as kclient
    api = lab.api("c2")
    core = kclient.CoreV1Api(api)
    core.create_namespaced_service(NS, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "rgw-external"},
                                        "spec": {"type": "LoadBalancer", "selector": {"app": "rook-ceph-rgw", "rook_object_store": "my-store"},
                                                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    deadline = time.monotonic() + 30
    while not (core.read_namespaced_service("rgw-external", NS).status.load_balancer.ingress or []):
        assert time.monotonic() < deadline, "no load balancer address"
        time.sleep(0.2)
    address = core.read_namespaced_service("rgw-external", NS).status.load_balancer.ingress[0].ip
    vault = play.work / "vault.json"
    vault.write_text(json.dumps({"velero_vault": {"cluster": "c2", "storage_class": "rook-ceph-bucket",
                                                  "endpoint": "http://%s:80" % address}}))
    proc = play("install", "--limit", "c1,c3", "-e", "@%s" % vault, check_rc=0)
    entries = dict((c["name"], c) for c in play.report("install", "velero")[1]["clusters"])
    buckets = {}
    for cluster in ("c1", "c3"):
        claim = _get(lab, "c2", "/apis/objectbucket.io/v1alpha1/namespaces/velero-vault/objectbucketclaims/velero-" + cluster)
        assert claim["status"]["phase"] == "Bound", claim
        buckets[cluster] = claim["spec"]["bucketName"]
        assert entries[cluster]["details"]["location_phase"] == "Available" and entries[cluster]["details"]["bucket"] == buckets[cluster]
        bsl = _get(lab, cluster, "/apis/velero.io/v1/namespaces/velero/backupstoragelocations/default")
        assert bsl["spec"]["config"]["s3Url"] == "http://%s:80" % address
    keys = dict((cluster, dict((k, base64.b64decode(v).decode()) for k, v in core.read_namespaced_secret(
        "velero-" + cluster, "velero-vault").data.items())) for cluster in ("c1", "c3"))
    assert all(k["AWS_SECRET_ACCESS_KEY"] not in proc.stdout for k in keys.values())
    again = play("install", "--limit", "c1,c3", "-e", "@%s" % vault, check_rc=0)
    assert recap(again)["c1"]["changed"] == 0 and recap(again)["c3"]["changed"] == 0
    play("backup", "--limit", "c1,c3", "-e", "backup_name=tovault", "-e", "included_namespaces=default", check_rc=0)
    for cluster in ("c1", "c3"):
        s3 = boto3.client("s3", endpoint_url=_rgw(lab), region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
                          aws_access_key_id=keys[cluster]["AWS_ACCESS_KEY_ID"], aws_secret_access_key=keys[cluster]["AWS_SECRET_ACCESS_KEY"])
        found = [o["Key"] for o in s3.list_objects_v2(Bucket=buckets[cluster]).get("Contents", [])]
        assert any(k.endswith("tovault-%s/velero-backup.json" % cluster) for k in found), found
    vault.write_text(json.dumps({"velero_vault": {"cluster": "c2", "storage_class": "rook-ceph-bucket",
                                                  "endpoint": "http://rook-ceph-rgw-my-store.rook-ceph.svc:80"}}))
    proc = play("install", "--limit", "c1", "-e", "@%s" % vault, check_rc=2)
    assert "velero_vault: endpoint http://rook-ceph-rgw-my-store.rook-ceph.svc:80 is a cluster-internal Service name" in proc.stdout
    api.close()


def test_the_vaults_ceph_health_gates_the_clusters_that_keep_backups_there(lab, play):
    """c1 and c3 keep their backups on c2's object store: with c2 at HEALTH_ERR, enforce skips their
    backups (none created) naming the vault and its health; warn lets them run and says it."""
    lab.cli("rook", "health", "c2", "HEALTH_ERR", "--message", "Reduced data availability: 8 pgs inactive")
    try:
        play("backup", "--limit", "c1,c3", "-e", "backup_name=vaultgated", "-e", "included_namespaces=default",
             "-e", "ceph_health_gate=enforce", check_rc=0)
        clusters = dict((c["name"], c) for c in play.report("backup", "vaultgated")[1]["clusters"])
        for name in ("c1", "c3"):
            entry = clusters[name]
            assert entry["verdict"] == "skipped", entry
            assert entry["reason"].startswith("the backup vault c2 (location default keeps this cluster's backups there): "
                                              "Ceph HEALTH_ERR on CephCluster rook-ceph/rook-ceph"), entry["reason"]
            assert "8 pgs inactive" in entry["reason"] and "ceph_health_gate=enforce" in entry["reason"]
            assert not [b for b in (_get(lab, name, "/apis/velero.io/v1/namespaces/velero/backups") or {}).get("items") or []
                        if b["metadata"]["name"].startswith("vaultgated")]
        play("backup", "--limit", "c1", "-e", "backup_name=vaultwarned", "-e", "included_namespaces=default", check_rc=0)
        entry = play.report("backup", "vaultwarned")[1]["clusters"][0]
        assert entry["verdict"] == "succeeded" and any(text.startswith("the backup vault c2") and "HEALTH_ERR" in text
                                                       for text in entry["warnings"]), entry
    finally:
        lab.cli("rook", "health", "c2", "HEALTH_OK")


def test_a_migration_between_clusters_with_their_own_vault_buckets(lab, play):
    """c1 and c3 keep their backups in their own bucket claims on the vault (c2), and a claim's keys
    reach only its own bucket. Migrating an app from c1 to c3: c3's read-only location reads c1's
    bucket with c1's keys (a copy in a Secret of its own, removed afterwards with the location)."""
    core = lab.api("c1")
    try:
        from kubernetes import client as kclient
        kclient.CoreV1Api(core).create_namespace({"metadata": {"name": "vaulted"}})
        kclient.CoreV1Api(core).create_namespaced_config_map("vaulted", {"metadata": {"name": "settings"}, "data": {"colour": "blue"}})
    finally:
        core.close()
    proc = play("migrate", "--limit", "c1,c3", "-e", "migrate_name=vaulted", "-e", "source_cluster=c1",
                "-e", "included_namespaces=vaulted", check_rc=0)
    report = play.report("migrate", "vaulted")[1]
    assert report["verdict"] == "succeeded", report
    assert _get(lab, "c3", "/api/v1/namespaces/vaulted/configmaps/settings")["data"] == {"colour": "blue"}
    assert _get(lab, "c3", "/apis/velero.io/v1/namespaces/velero/backupstoragelocations/fleetdr-from-c1") is None
    assert _get(lab, "c3", "/api/v1/namespaces/velero/secrets/fleetdr-from-c1") is None
    c1_keys = _get(lab, "c1", "/api/v1/namespaces/velero/secrets/cloud-credentials")["data"]["cloud"]
    assert c1_keys not in proc.stdout and base64.b64decode(c1_keys).decode() not in proc.stdout
    for cluster in ("c1", "c3"):
        lab.kubectl("delete", "namespace", "vaulted", "--wait=false", context=cluster)


def test_a_ceph_volume_moves_to_a_cluster_of_other_storage_classes_through_the_class_map(lab, play):
    """busybox on c1 with its volume an RBD image of c1's Ceph (class rook-ceph-block) migrates to c3
    with storage_class_mapping rook-ceph-block -> standard: c3's claim is of class standard (not Ceph),
    its bytes are the source's, the report counts the volume and its bytes on both sides, and the
    source keeps its Ceph volume. Velero on c1 and c3 uses the lab's shared bucket here: the vault
    buckets of the test above are per cluster, and a target reads the source's backups."""
    shared = play.work / "shared-bucket.json"
    shared.write_text(json.dumps({"velero_s3_access_key_id": lab.s3["access_key_id"],
                                  "velero_s3_secret_access_key": lab.s3["secret_access_key"], "velero_node_agent": True}))
    play("install", "--limit", "c1,c3", "-e", "@%s" % shared, check_rc=0)
    pool = play.work / "block_pool.yml"
    pool.write_text(yaml.safe_dump([{"name": "A block pool and its class on c1", "hosts": "c1", "gather_facts": False, "tasks": [
        {"name": "Pool", "fleetdr.kube.rook_pool": {"kubeconfig": "{{ fleetdr_kubeconfig }}", "context": "{{ fleetdr_context }}",
                                                    "name": "replicapool", "replicated_size": 3,
                                                    "storage_class": {"name": "rook-ceph-block", "default": False}}}]}]))
    play(str(pool), check_rc=0)
    lab.cli("seed", "busybox", "--cluster", "c1", "--storage-class", "rook-ceph-block")
    claim = "/api/v1/namespaces/busybox/persistentvolumeclaims/busybox-data"
    deadline = time.monotonic() + 30
    while (_get(lab, "c1", claim).get("status") or {}).get("phase") != "Bound":
        assert time.monotonic() < deadline, "busybox's claim on rook-ceph-block was not bound"
        time.sleep(0.2)
    source_pv = _get(lab, "c1", "/api/v1/persistentvolumes/" + _get(lab, "c1", claim)["spec"]["volumeName"])
    assert source_pv["spec"]["csi"]["driver"] == "rook-ceph.rbd.csi.ceph.com"
    payload = "ceph block bytes to another class\n" * 64
    lab.cli("volume", "put", "--cluster", "c1", "-n", "busybox", "--pvc", "busybox-data", "--text", payload, "data.txt")

    play("migrate", "--limit", "c1,c3", "-e", "migrate_name=cephmap", "-e", "source_cluster=c1", "-e", "included_namespaces=busybox",
         "-e", "default_volumes_to_fs_backup=true", "-e", json.dumps({"storage_class_mapping": {"rook-ceph-block": "standard"}}),
         check_rc=0)
    report = play.report("migrate", "cephmap")[1]
    clusters = dict((c["name"], c) for c in report["clusters"])
    assert report["verdict"] == "succeeded", report
    moved = dict((name, [v for v in clusters[name]["volumes"] if (v["namespace"], v["pvc"]) == ("busybox", "busybox-data")])
                 for name in ("c1", "c3"))
    assert len(moved["c1"]) == len(moved["c3"]) == 1, clusters
    assert moved["c1"][0]["moved"] and moved["c3"][0]["moved"] and moved["c1"][0]["bytes"] == moved["c3"][0]["bytes"] == len(payload)
    restored = _get(lab, "c3", claim)
    assert restored["spec"]["storageClassName"] == "standard" and restored["status"]["phase"] == "Bound"
    assert "csi" not in _get(lab, "c3", "/api/v1/persistentvolumes/" + restored["spec"]["volumeName"])["spec"]  # not a Ceph volume

    def sha(cluster):
        out = lab.cli("volume", "ls", "--cluster", cluster, "-n", "busybox", "--pvc", "busybox-data", "--sha256").stdout
        return dict((parts[2], parts[1]) for parts in (line.split() for line in out.splitlines()) if len(parts) == 3)["data.txt"]
    assert sha("c3") == sha("c1")
    assert _get(lab, "c1", claim)["spec"]["storageClassName"] == "rook-ceph-block"  # the source untouched

    # leave c1's pool empty for the teardown test
    for cluster in ("c1", "c3"):
        lab.kubectl("delete", "namespace", "busybox", "--wait=true", "--timeout=60s", context=cluster)
    deadline = time.monotonic() + 60
    while _get(lab, "c1", "/api/v1/persistentvolumes/" + source_pv["metadata"]["name"]) is not None:
        assert time.monotonic() < deadline, "the RBD volume of busybox was not released"
        time.sleep(0.2)


def test_teardown_is_refused_while_storage_is_in_use_then_done_with_destroy_data(lab, play):
    consume = play.work / "consume.yml"
    consume.write_text(yaml.safe_dump([{
        "name": "A pool, its class and a claim on c1", "hosts": "c1", "gather_facts": False,
        "module_defaults": {"group/fleetdr.kube.rook": {"kubeconfig": "{{ fleetdr_kubeconfig }}", "context": "{{ fleetdr_context }}"}},
        "tasks": [
            {"name": "Pool", "fleetdr.kube.rook_pool": {"name": "replicapool", "replicated_size": 3,
                                                        "storage_class": {"name": "rook-ceph-block", "default": False}}},
            {"name": "Claim", "kubernetes.core.k8s": {"kubeconfig": "{{ fleetdr_kubeconfig }}", "context": "{{ fleetdr_context }}",
                                                      "definition": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                                                     "metadata": {"name": "data", "namespace": "default"},
                                                                     "spec": {"accessModes": ["ReadWriteOnce"],
                                                                              "storageClassName": "rook-ceph-block",
                                                                              "resources": {"requests": {"storage": "1Gi"}}}}}}]}]))
    play(str(consume), check_rc=0)
    deadline = time.monotonic() + 30
    while (_get(lab, "c1", "/api/v1/namespaces/default/persistentvolumeclaims/data").get("status") or {}).get("phase") != "Bound":
        assert time.monotonic() < deadline, "the claim on the Rook class was not bound"
        time.sleep(0.2)
    play(str(consume), check_rc=0)  # idempotent
    proc = play("storage_teardown", "--limit", "c1", "-e", "rook_ceph_manifests_src=%s" % play.manifests, check_rc=2)
    entry = play.report("storage", "rook-ceph")[1]["clusters"][0]
    assert entry["verdict"] == "failed" and "CephBlockPool: [replicapool]" in entry["reason"]
    assert _get(lab, "c1", "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephclusters/rook-ceph")["metadata"].get("deletionTimestamp") is None
    # Rook keeps a pool that still holds images: the module fails with Rook's reason instead of waiting
    drop_pool = play.work / "drop_pool.yml"
    drop_pool.write_text(yaml.safe_dump([{"name": "Drop the pool", "hosts": "c1", "gather_facts": False, "tasks": [
        {"name": "Pool", "fleetdr.kube.rook_pool": {"kubeconfig": "{{ fleetdr_kubeconfig }}", "context": "{{ fleetdr_context }}",
                                                    "name": "replicapool", "state": "absent", "wait_timeout": 30,
                                                    "storage_class": {"name": "rook-ceph-block"}}}]}]))
    proc = play(str(drop_pool), check_rc=2)
    assert "cannot be deleted because it is not empty" in proc.stdout
    api_claim = "/api/v1/namespaces/default/persistentvolumeclaims/data"
    lab_api = lab.api("c1")
    try:
        lab_api.call_api(*lab_api.param_serialize("DELETE", api_claim, auth_settings=["BearerToken"])).read()
    finally:
        lab_api.close()
    play(str(drop_pool), check_rc=0)
    play("storage_teardown", "--limit", "c1", "-e", "rook_ceph_manifests_src=%s" % play.manifests, "-e", "rook_ceph_destroy_data=true",
         check_rc=0)
    assert _get(lab, "c1", "/apis/ceph.rook.io/v1/namespaces/rook-ceph/cephclusters/rook-ceph") is None
    jobs = _get(lab, "c1", "/apis/batch/v1/namespaces/rook-ceph/jobs")
    assert jobs is None or all(j["metadata"]["name"].startswith("cluster-cleanup-job-") for j in jobs["items"])
    assert _get(lab, "c1", "/apis/apps/v1/namespaces/rook-ceph/deployments/rook-ceph-operator") is None
    proc = play("storage_teardown", "--limit", "c1", "-e", "rook_ceph_manifests_src=%s" % play.manifests, check_rc=0)
    assert recap(proc)["c1"]["changed"] == 0
