#!/usr/bin/env python3
"""`make demo`: a 3-cluster lab, Velero fleet-wide, backup -> migrate -> delete + restore, with reports.

Steps (each one a real `ansible-playbook fleetdr.kube.<name>` run against the lab's inventory):
lab up (.lab, 3 nodes with one raw device each, reused when running) -> Rook-Ceph on every cluster
(different mon counts from host_vars) -> a Ceph block pool and class rook-ceph-block everywhere
(tools/demo_block_storage.yml) -> c3 as the backup vault: a Rook object store reached through a
LoadBalancer (tools/demo_vault.yml) -> install Velero with each cluster's backups in a bucket claim of
its own on the vault (velero_vault; node-agent on for volume data) -> seed busybox
(a file written into its PVC, a Ceph RBD volume) and database on c1 -> back up the fleet -> migrate busybox
c1 -> c2, c3 -> delete busybox on c1 and restore it there -> compare the file's sha256 -> a restore
drill on c1 -> print the report tables and the HTML report paths. `make demo-down` stops the lab.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB_DIR = REPO / ".lab"
BIN = Path(sys.executable).parent
COLLECTIONS = Path(os.environ.get("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections")).split(os.pathsep)[0])
REPORTS = REPO / "fleetdr-reports"
FILE_IN_PVC = "data/demo.txt"


def step(text):
    print("\n==> " + text, flush=True)


def lab(*args, capture=False):
    cmd = [str(BIN / "fleetdr-lab"), "--dir", str(LAB_DIR), *args]
    proc = subprocess.run(cmd, text=True, capture_output=capture)
    if proc.returncode != 0:
        sys.exit("fleetdr-lab %s failed (exit %d)%s" % (" ".join(args), proc.returncode, "\n" + proc.stderr if capture else ""))
    return proc.stdout if capture else None


def core_api(context):
    """CoreV1Api for one lab cluster (the kubernetes client from the venv: kubectl is not required)."""
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(LAB_DIR / "kubeconfig"), context=context))


def wait_namespaced(context, kind, namespace, name, done, timeout):
    """Watch one object until done(obj) (an absent object is None); exit on timeout."""
    from kubernetes import watch

    api = core_api(context)
    list_fn = getattr(api, "list_namespaced_" + kind) if namespace else getattr(api, "list_" + kind)
    args = (namespace,) if namespace else ()
    listed = list_fn(*args, field_selector="metadata.name=" + name)
    if done(listed.items[0] if listed.items else None):
        return
    for event in watch.Watch().stream(list_fn, *args, field_selector="metadata.name=" + name,
                                      resource_version=listed.metadata.resource_version, timeout_seconds=timeout):
        if done(None if event["type"] == "DELETED" else event["object"]):
            return
    sys.exit("%s %s/%s on %s: not done within %ss" % (kind, namespace or "-", name, context, timeout))


def namespace_exists(context, name):
    return bool(core_api(context).list_namespace(field_selector="metadata.name=" + name).items)


def playbook(name, *extra):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false")
    target = name if name.endswith(".yml") else "fleetdr.kube." + name
    cmd = [str(BIN / "ansible-playbook"), "-i", str(LAB_DIR / "inventory.yml"), target, *extra]
    print("$ ansible-playbook " + " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=REPO, env=env, text=True, capture_output=True)
    if proc.returncode != 0:
        print(proc.stdout[-6000:] + proc.stderr[-2000:])
        sys.exit("ansible-playbook %s failed (exit %d)" % (target, proc.returncode))
    return proc


def newest_report(operation, name):
    return sorted(REPORTS.glob("%s-%s-*" % (operation, name)))[-1]


def sha_of(cluster):
    out = lab("volume", "ls", "--cluster", cluster, "-n", "busybox", "--pvc", "busybox-data", "--sha256", capture=True)
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == FILE_IN_PVC:
            return parts[1]
    return None


def volume_outcomes(directory):
    """cluster -> "moved" / the reason, for busybox/busybox-data in a report's volume table."""
    report = json.loads((directory / "report.json").read_text())
    out = {}
    for cluster in report["clusters"]:
        for volume in cluster.get("volumes") or []:
            if (volume["namespace"], volume["pvc"]) == ("busybox", "busybox-data"):
                out[cluster["name"]] = "moved" if volume["moved"] else volume["reason"] or "not moved"
    return out


def print_report(directory):
    sys.path.insert(0, str(COLLECTIONS))
    from ansible_collections.fleetdr.kube.plugins.module_utils.report import render_table

    report = json.loads((directory / "report.json").read_text())
    print(render_table(report))
    print("HTML report: %s" % (directory / "report.html"))


def main():
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S")
    step("Lab: 3 clusters of 3 nodes with a raw device each, in %s (reused when already running)" % LAB_DIR)
    lab("up", "--clusters", "3", "--nodes", "3", "--devices", "1")

    step("Rook-Ceph on every cluster: 3 mons on c1 and c3, 1 on c2 (inventory host_vars)")
    host_vars = LAB_DIR / "host_vars"
    host_vars.mkdir(exist_ok=True)
    for cluster, mons in (("c1", 3), ("c2", 1), ("c3", 3)):
        (host_vars / ("%s.yml" % cluster)).write_text(json.dumps({"rook_ceph_cluster": {
            "monitor": {"count": mons, "labels": {"team": "storage"}}, "manager": {"count": 1}}}) + "\n")
    lab("rook", "manifests", "--out", str(LAB_DIR / "rook-manifests"))
    playbook("storage", "-e", "rook_ceph_manifests_src=%s" % (LAB_DIR / "rook-manifests"))
    storage_report = newest_report("storage", "rook-ceph")
    step("A Ceph block pool and its class rook-ceph-block on every cluster (module rook_pool)")
    playbook(str(REPO / "tools" / "demo_block_storage.yml"))

    step("c3 is the backup vault: a Rook object store with a bucket class, its S3 endpoint on a LoadBalancer (tools/demo_vault.yml)")
    playbook(str(REPO / "tools" / "demo_vault.yml"))
    wait_namespaced("c3", "service", "rook-ceph", "rgw-vault-external",
                    lambda svc: svc is not None and (svc.status.load_balancer.ingress or []), 60)
    address = core_api("c3").read_namespaced_service("rgw-vault-external", "rook-ceph").status.load_balancer.ingress[0].ip
    vault = {"cluster": "c3", "storage_class": "rook-ceph-bucket", "endpoint": "http://%s:80" % address}
    print("vault endpoint %s" % vault["endpoint"])

    step("Install Velero on every cluster, each keeping its backups in a bucket claim of its own on the vault (node-agent on)")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        os.chmod(handle.name, 0o600)
        json.dump({"velero_vault": vault, "velero_node_agent": True}, handle)
    try:
        playbook("install", "-e", "@" + handle.name)
    finally:
        os.unlink(handle.name)
    install_report = newest_report("install", "velero")

    step("Seed busybox (with a file in its PVC on the Ceph class rook-ceph-block) and database on c1")
    lab("seed", "--cluster", "c1", "busybox", "--storage-class", "rook-ceph-block")
    lab("seed", "--cluster", "c1", "database")
    wait_namespaced("c1", "persistent_volume_claim", "busybox", "busybox-data",
                    lambda pvc: pvc is not None and pvc.status.phase == "Bound", 60)
    lab("volume", "put", "--cluster", "c1", "-n", "busybox", "--pvc", "busybox-data",
        "--text", "fleetdr demo %s\n" % stamp, FILE_IN_PVC)
    original = sha_of("c1")
    print("c1 %s sha256 %s" % (FILE_IN_PVC, original))

    backup = "demo-%s" % stamp
    step("Back up the fleet: %s" % backup)
    # Velero's and Rook's own namespaces are left out: their pods' volumes are not app data.
    playbook("backup", "-e", "backup_name=" + backup, "-e", "excluded_namespaces=velero,rook-ceph",
             "-e", "default_volumes_to_fs_backup=true")

    step("Migrate busybox c1 -> c2, c3")
    # A previous demo left busybox on the targets. Velero never overwrites volume data, so restoring
    # over it would keep the old file (the report would say so): clear the targets first.
    for cluster in ("c2", "c3"):
        if namespace_exists(cluster, "busybox"):
            core_api(cluster).delete_namespace("busybox")
            wait_namespaced(cluster, "namespace", None, "busybox", lambda ns: ns is None, 120)
    migrate = "demo-mv-%s" % stamp
    playbook("migrate", "-e", "migrate_name=" + migrate, "-e", "source_cluster=c1", "-e", "included_namespaces=busybox",
             "-e", "default_volumes_to_fs_backup=true")

    step("Delete busybox on c1, then restore it from the fleet backup")
    core_api("c1").delete_namespace("busybox")
    wait_namespaced("c1", "namespace", None, "busybox", lambda ns: ns is None, 120)
    restore = "demo-rs-%s" % stamp
    playbook("restore", "-e", "backup_name=" + backup, "-e", "restore_name=" + restore,
             "-e", "included_namespaces=busybox", "--limit", "c1")

    step("Check the volume data")
    for cluster in ("c1", "c2", "c3"):
        claim = core_api(cluster).read_namespaced_persistent_volume_claim("busybox-data", "busybox")
        driver = core_api(cluster).read_persistent_volume(claim.spec.volume_name).spec.csi
        print("%s busybox-data: class %s, volume %s (%s)" % (cluster, claim.spec.storage_class_name, claim.spec.volume_name,
                                                            driver.driver if driver else "not a Ceph volume"))
        if not driver or not driver.driver.endswith(".rbd.csi.ceph.com"):
            sys.exit("busybox-data on %s is not on the cluster's own Ceph" % cluster)
    results = dict((cluster, sha_of(cluster)) for cluster in ("c1", "c2", "c3"))
    for cluster, digest in results.items():
        print("%s %s sha256 %s %s" % (cluster, FILE_IN_PVC, digest, "OK" if digest == original else "MISMATCH"))

    step("Check the vault: each cluster's backup is in its own bucket on c3, read with that bucket's keys")
    import base64
    import boto3
    from botocore.config import Config
    endpoint = lab("rook", "endpoint", "c3", "vault", capture=True).strip()  # where the lab host reaches c3's RGW
    for cluster in ("c1", "c2", "c3"):
        keys = dict((k, base64.b64decode(v).decode()) for k, v in
                    core_api("c3").read_namespaced_secret("velero-" + cluster, "velero-vault").data.items())
        bucket = core_api("c3").read_namespaced_config_map("velero-" + cluster, "velero-vault").data["BUCKET_NAME"]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}),
                          aws_access_key_id=keys["AWS_ACCESS_KEY_ID"], aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="%s/backups/%s-%s/" % (cluster, backup, cluster)).get("Contents", [])
        print("%s: bucket %s on c3 holds %d objects of backup %s-%s" % (cluster, bucket, len(listed), backup, cluster))
        if not listed:
            sys.exit("the vault has no backup of %s" % cluster)

    step("Restore drill on c1: the fleet backup's busybox restored aside (busybox-drill), checked, RTO/RPO, cleaned up")
    drill = "demo-drill-%s" % stamp
    playbook("drill", "-e", "drill_name=" + drill, "-e", "backup_name=" + backup, "-e", "included_namespaces=busybox",
             "--limit", "c1")

    step("Reports")
    for directory in (storage_report, install_report, newest_report("backup", backup), newest_report("migrate", migrate),
                      newest_report("restore", restore), newest_report("drill", drill)):
        print()
        print_report(directory)
    if any(digest != original for digest in results.values()):
        sys.exit("volume data differs after migrate/restore")
    # The reports must say what the bytes say: busybox-data moved to every target and back to c1.
    said = volume_outcomes(newest_report("migrate", migrate))
    said.update(volume_outcomes(newest_report("restore", restore)))
    wrong = [c for c in ("c1", "c2", "c3") if said.get(c) != "moved"]
    if wrong:
        sys.exit("the report's volume table disagrees with the data on %s: %s" % (", ".join(wrong), said))
    print("Report volume table agrees: busybox/busybox-data moved to c2, c3 and restored on c1")
    print("\nDone. The lab keeps running (make demo-down stops it).")


if __name__ == "__main__":
    main()
