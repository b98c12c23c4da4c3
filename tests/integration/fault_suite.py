# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fault and bad-input suite, shared by tests/integration/test_fault_suite.py and `make reliability`
(tools/reliability.py): the same scenarios, the test with one round, the tool with ten and a table.

Each scenario takes a lab with Velero on every cluster and a PlaybookRunner and returns a row of
figures; it clears the faults it injected, whatever happens.
"""

import base64
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from fleet_helpers import ANSIBLE_PLAYBOOK

# (what runs, arguments, the option the message must name). A playbook name or "module:<name>".
# Velero is installed on every cluster when these run: an input that slipped through would write.
BAD_INPUTS = [
    ("backup", [], "backup_name"),
    ("backup", ["-e", "backup_name=Not_A_Name"], "backup_name"),
    ("backup", ["-e", "backup_name=ok", "-e", "wait_timeout=soon"], "wait_timeout"),
    ("backup", ["-e", "backup_name=ok", "-e", "wait_timeout=-5"], "wait_timeout"),
    ("backup", ["-e", "backup_name=ok", "-e", "fleet_deadline=0"], "fleet_deadline"),
    ("backup", ["-e", "backup_name=ok", "-e", "ttl=forever"], "ttl"),
    ("backup", ["-e", "backup_name=ok", "-e", "includd_namespaces=database"], "includd_namespaces"),
    ("backup", ["-e", "backup_name=ok", "-e", "report_dir=/proc/nope"], "report_dir"),
    ("backup", ["-e", "backup_name=ok", "-e", "fail_on=sometimes"], "fail_on"),
    ("backup", ["-e", "backup_name=ok", "-e", "ceph_health_gate=maybe"], "ceph_health_gate"),
    ("backup", ["-e", "backup_name=ok", "-e", "on_timeout=explode"], "on_timeout"),
    ("backup", ["-e", "backup_name=ok", "-e", "progress_interval=-1"], "progress_interval"),
    ("backup", ["-e", "backup_name=ok", "-e", "fleetdr_cluster_selector=prod"], "fleetdr_cluster_selector"),
    ("backup", ["-e", "backup_name=ok", "-e", '{"labels": {"bad key!": "x"}}'], "labels"),
    ("backup", ["-e", "backup_name=ok", "-e", "fleetdr_targets=no_such_group"], "no_such_group"),
    ("restore", [], "backup_name"),
    ("restore", ["-e", "backup_name=a", "-e", "schedule_name=b"], "schedule_name"),
    ("restore", ["-e", "backup_name=a", "-e", "existing_resource_policy=replace"], "existing_resource_policy"),
    ("restore", ["-e", "backup_name=a", "-e", "restore_name=Bad_Name"], "restore_name"),
    ("restore", ["-e", "backup_name=a", "-e", "max_fail_percentage=5"], "max_fail_percentage"),
    ("migrate", ["-e", "migrate_name=mv"], "source_cluster"),
    ("migrate", ["-e", "migrate_name=mv", "-e", "source_cluster=nowhere"], "source_cluster"),
    ("migrate", ["-e", "migrate_name=MV", "-e", "source_cluster=c1"], "migrate_name"),
    ("migrate", ["-e", "migrate_name=mv", "-e", "source_cluster=c1", "-e", "wait_timout=30"], "wait_timout"),
    ("schedule", [], "schedule_name"),
    ("schedule", ["-e", "schedule_name=nightly", "-e", "schedule='61 * * * *'"], "schedule"),
    ("schedule", ["-e", "schedule_name=nightly", "-e", "schedule='@daily'", "-e", "state=gone"], "state"),
    ("schedule", ["-e", "schedule_name=nightly", "-e", "schedule='@daily'", "-e", "max_fail_percentage=150"],
     "max_fail_percentage"),
    ("schedule", ["-e", "schedule_name=nightly", "-e", "schedule='@daily'", "-e", "batch=some"], "batch"),
    ("status", ["-e", "max_backup_age_s=-1"], "max_backup_age_s"),
    ("status", ["-e", "wait_timeout=0"], "wait_timeout"),
    ("install", ["-e", "velero_state=gone"], "velero_state"),
    ("install", ["-e", '{"velero_vault": {"cluster": "c1"}}'], "velero_vault"),
    ("drill", [], "drill_name"),
    ("drill", ["-e", "drill_name=d1", "-e", "scratch_suffix=Bad_Suffix"], "scratch_suffix"),
    ("storage", ["-e", "batch=some"], "batch"),
    ("storage_status", ["-e", "fail_on=maybe"], "fail_on"),
    ("storage_teardown", ["-e", "rook_ceph_destroy_data=perhaps"], "rook_ceph_destroy_data"),
    ("module:velero_backup", {"name": "Bad_Name"}, "name"),
    ("module:velero_backup", {"name": "ok", "ttl": "forever"}, "ttl"),
    ("module:velero_restore", {"name": "r1"}, "backup_name"),
    ("module:velero_schedule", {"name": "s1", "schedule": "61 * * * *"}, "schedule"),
    ("module:rook_pool", {"name": "replicapool", "replicated_size": 0}, "replicated_size"),
    ("module:rook_bucket", {"name": "Bad_Bucket", "storage_class": "rook-ceph-bucket"}, "name"),
]

# Kinds whose objects a run could create or change. An object counts by uid and everything but its
# status: Velero's CRDs have no status subresource, so a location's periodic validation bumps its
# generation (as on a real cluster) without anything of ours having written.
WATCHED = [
    "/api/v1/namespaces", "/api/v1/secrets", "/api/v1/configmaps", "/api/v1/persistentvolumeclaims",
    "/api/v1/services", "/api/v1/serviceaccounts", "/apis/apps/v1/deployments", "/apis/apps/v1/daemonsets",
    "/apis/storage.k8s.io/v1/storageclasses",
] + ["/apis/velero.io/v1/" + plural for plural in (
    "backups", "restores", "schedules", "backupstoragelocations", "volumesnapshotlocations",
    "deletebackuprequests", "serverstatusrequests", "downloadrequests", "podvolumebackups", "podvolumerestores")
] + ["/apis/ceph.rook.io/v1/" + plural for plural in (
    "cephclusters", "cephblockpools", "cephobjectstores", "cephfilesystems", "cephobjectstoreusers")
] + ["/apis/objectbucket.io/v1alpha1/objectbucketclaims"]


def snapshot(lab):
    """{cluster: {(path, namespace, name): (uid, digest of all but status)}}: any create, delete or
    change of spec, data, labels or annotations shows; a kind the cluster does not serve is empty."""
    from kubernetes.client.rest import ApiException

    state = {}
    for cluster in lab.clusters:
        api = lab.api(cluster)
        objects = {}
        for path in WATCHED:
            request = api.param_serialize("GET", path, header_params={"Accept": "application/json"},
                                          auth_settings=["BearerToken"])
            response = api.call_api(*request)
            response.read()
            if response.status == 404:
                continue
            if response.status != 200:
                raise ApiException(http_resp=response)
            data = response.data
            for item in json.loads(data)["items"]:
                meta = item["metadata"]
                content = dict((key, value) for key, value in item.items() if key not in ("metadata", "status"))
                content["labels"], content["annotations"] = meta.get("labels"), meta.get("annotations")
                digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
                objects[(path, meta.get("namespace", ""), meta["name"])] = (meta["uid"], digest)
        state[cluster] = objects
    return state


def changes(before, after):
    """What differs between two snapshots, as 'cluster: path ns/name' lines."""
    lines = []
    for cluster in before:
        for key in sorted(set(before[cluster]) | set(after.get(cluster, {}))):
            if before[cluster].get(key) != after.get(cluster, {}).get(key):
                lines.append("%s: %s %s/%s" % (cluster, key[0], key[1], key[2]))
    return lines


def run_module(play, module, args):
    """`ansible localhost -m fleetdr.kube.<module>` with the lab's c1 kubeconfig."""
    args = dict(args, kubeconfig=str(play.lab.kubeconfig), context="c1")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(play.collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_NOCOLOR="1")
    cmd = [str(ANSIBLE_PLAYBOOK.with_name("ansible")), "localhost", "-c", "local",
           "-e", "ansible_python_interpreter=" + str(ANSIBLE_PLAYBOOK.with_name("python")),
           "-m", "fleetdr.kube." + module, "-a", json.dumps(args)]
    proc = subprocess.run(cmd, cwd=play.work, env=env, capture_output=True, text=True, timeout=300, check=False)
    play.outputs.append(proc.stdout + proc.stderr)
    return proc


def try_bad_input(lab, play, case):
    """One bad input: refused (rc != 0), before any write (snapshot unchanged), naming the option."""
    target, args, option = case
    before = snapshot(lab)
    if target.startswith("module:"):
        proc = run_module(play, target.split(":", 1)[1], args)
        shown = "%s %s" % (target, json.dumps(args))
    else:
        proc = play(target, *args)
        shown = "%s %s" % (target, " ".join(args))
    after = snapshot(lab)
    output = proc.stdout + proc.stderr
    message = next((line.strip() for line in output.splitlines()
                    if any(word in line for word in ("Invalid input", "msg", "ERROR!", "no cluster selected"))), "")
    return {"input": shown, "option": option, "refused": proc.returncode != 0,
            "before_any_write": not changes(before, after), "written": changes(before, after)[:5],
            "names_option": option in output, "message": message[:300]}


# --------------------------------------------------------------------------------------------
# Faults


def _backups_named(lab, cluster, prefix):
    from kubernetes import client

    items = client.CustomObjectsApi(lab.api(cluster)).list_namespaced_custom_object(
        "velero.io", "v1", "velero", "backups")["items"]
    return [b["metadata"]["name"] for b in items if b["metadata"]["name"].startswith(prefix + "-")]


def _verdicts(play, name):
    report = play.report("backup", name)[1]
    return dict((c["name"], (c["verdict"], c.get("reason") or "")) for c in report["clusters"])


def backup_rounds(lab, play, fault, rounds, label):
    """`rounds` fleet backups with `fault` (a `fleetdr-lab fault` argument list) on every cluster: each
    cluster's backup must complete, exactly once (duplicates = Backup objects beyond one per cluster and round)."""
    attempted = completed = duplicates = 0
    failures = []
    for number in range(1, rounds + 1):
        name = "%s%d-%d" % (label, number, int(time.time()) % 100000)
        for cluster in lab.clusters:
            lab.cli("fault", cluster, *fault)
        try:
            play("backup", "-e", "backup_name=" + name, "-e", "included_namespaces=default")
        finally:
            for cluster in lab.clusters:
                lab.cli("fault", cluster, "clear")
        verdicts = _verdicts(play, name)
        for cluster in lab.clusters:
            attempted += 1
            verdict, reason = verdicts.get(cluster, ("missing", "not in the report"))
            completed += verdict == "succeeded"
            if verdict != "succeeded":
                failures.append("%s %s: %s" % (name, cluster, reason))
            duplicates += max(0, len(_backups_named(lab, cluster, name)) - 1)
    return {"fault": label, "attempted": attempted, "completed": completed, "duplicates": duplicates,
            "failures": failures[:5]}


def _names(lab, cluster, plural, prefix):
    from kubernetes import client

    items = client.CustomObjectsApi(lab.api(cluster)).list_namespaced_custom_object("velero.io", "v1", "velero", plural)["items"]
    return [item["metadata"]["name"] for item in items if item["metadata"]["name"].startswith(prefix + "-")]


def migrate_rounds(lab, play, fault, rounds, label):
    """`rounds` migrations of namespace rel-app (a ConfigMap) from c1 to every other cluster, each into a
    namespace of its own (namespace_mapping), with `fault` on every cluster: the source and every target
    must complete, the ConfigMap must be on every target, one Backup and one Restore per cluster and round
    (the read-only location fleetdr-from-c1 is created again each round: a 409 on it under faults is ours)."""
    from kubernetes import client

    source = client.CoreV1Api(lab.api("c1"))
    if "rel-app" not in [ns.metadata.name for ns in source.list_namespace().items]:
        source.create_namespace({"metadata": {"name": "rel-app"}})
        source.create_namespaced_config_map("rel-app", {"metadata": {"name": "settings"}, "data": {"colour": "blue"}})
    attempted = completed = duplicates = 0
    failures = []
    for number in range(1, rounds + 1):
        name = "%smv%d-%d" % (label, number, int(time.time()) % 100000)
        for cluster in lab.clusters:
            lab.cli("fault", cluster, *fault)
        try:
            play("migrate", "-e", "migrate_name=" + name, "-e", "source_cluster=c1", "-e", "included_namespaces=rel-app",
                 "-e", json.dumps({"namespace_mapping": {"rel-app": name}}))
        finally:
            for cluster in lab.clusters:
                lab.cli("fault", cluster, "clear")
        report = play.report("migrate", name)[1]
        verdicts = dict((c["name"], (c["verdict"], c.get("reason") or "")) for c in report["clusters"])
        duplicates += max(0, len(_names(lab, "c1", "backups", name)) - 1)
        for cluster in lab.clusters:
            attempted += 1
            verdict, reason = verdicts.get(cluster, ("missing", "not in the report"))
            arrived = True
            if cluster != "c1":
                duplicates += max(0, len(_names(lab, cluster, "restores", name)) - 1)
                maps = client.CoreV1Api(lab.api(cluster)).list_namespaced_config_map(name).items
                arrived = any(m.metadata.name == "settings" and (m.data or {}).get("colour") == "blue" for m in maps)
            if verdict == "succeeded" and arrived:
                completed += 1
            else:
                failures.append("%s %s: %s%s" % (name, cluster, reason, "" if arrived else " (ConfigMap missing)"))
    return {"fault": label + " migrate", "attempted": attempted, "completed": completed, "duplicates": duplicates,
            "failures": failures[:5]}


def one_cluster_fault(lab, play, label, inject, clear, expect_reason, extra=()):
    """A fleet backup with one cluster (c2) broken by `inject`: the others complete, c2 fails naming `expect_reason`."""
    name = "%s-%d" % (label, int(time.time()) % 100000)
    inject()
    started = time.monotonic()
    try:
        play("backup", "-e", "backup_name=" + name, "-e", "included_namespaces=default", *extra)
    finally:
        clear()
    elapsed = time.monotonic() - started
    verdicts = _verdicts(play, name)
    healthy = [c for c in lab.clusters if c != "c2"]
    completed = sum(verdicts.get(c, ("",))[0] == "succeeded" for c in healthy)
    broken_verdict, broken_reason = verdicts.get("c2", ("missing", ""))
    duplicates = sum(max(0, len(_backups_named(lab, c, name)) - 1) for c in healthy)
    return {"fault": label, "attempted": len(lab.clusters), "completed": completed,
            "healthy_completed": completed == len(healthy), "broken_failed": broken_verdict == "failed",
            "reason_named": expect_reason in broken_reason, "reason": broken_reason[:200],
            "duplicates": duplicates, "wall_s": round(elapsed, 1)}


def cluster_down(lab, play):
    return one_cluster_fault(lab, play, "down", lambda: lab.cli("fault", "c2", "down"),
                             lambda: lab.cli("fault", "c2", "clear"), "Connection refused")


def hung_api_server(lab, play):
    return one_cluster_fault(lab, play, "hung", lambda: lab.cli("fault", "c2", "latency", "600000"),
                             lambda: lab.cli("fault", "c2", "clear"), "timed out", extra=("-e", "wait_timeout=10"))


def velero_at_zero(lab, play):
    from kubernetes import client

    apps = client.AppsV1Api(lab.api("c2"))

    def scale(replicas):
        apps.patch_namespaced_deployment_scale("velero", "velero", {"spec": {"replicas": replicas}})

    def restore():
        scale(1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (apps.read_namespaced_deployment("velero", "velero").status.available_replicas or 0):
            time.sleep(0.5)

    return one_cluster_fault(lab, play, "velero-at-0", lambda: scale(0), restore, "Velero")


def location_unavailable(lab, play):
    from kubernetes import client

    custom = client.CustomObjectsApi(lab.api("c2"))
    original = custom.get_namespaced_custom_object("velero.io", "v1", "velero", "backupstoragelocations", "default")
    bucket = original["spec"]["objectStorage"]["bucket"]

    def set_bucket(value, phase):
        custom.patch_namespaced_custom_object("velero.io", "v1", "velero", "backupstoragelocations", "default",
                                              {"spec": {"objectStorage": {"bucket": value}}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            bsl = custom.get_namespaced_custom_object("velero.io", "v1", "velero", "backupstoragelocations", "default")
            if (bsl.get("status") or {}).get("phase") == phase:
                return
            time.sleep(0.5)

    return one_cluster_fault(lab, play, "location-unavailable", lambda: set_bucket("no-such-bucket", "Unavailable"),
                             lambda: set_bucket(bucket, "Available"), "Unavailable")


def latency(lab, play, rounds=1):
    return backup_rounds(lab, play, ["latency", "300"], rounds, "latency300ms")


def wrong_ca(lab, play, work):
    """c2's inventory trusts another CA: c2 fails with a certificate error, the others back up."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "not-the-lab-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    ca_file = Path(work) / "wrong-ca.pem"
    ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    overlay = Path(work) / "wrong-ca-inventory.yml"
    overlay.write_text(json.dumps({"all": {"hosts": {"c2": {"fleetdr_ca_cert": str(ca_file)}}}}))
    return one_cluster_fault(lab, play, "wrong-ca", lambda: None, lambda: None, "CERTIFICATE_VERIFY_FAILED",
                             extra=("-i", str(overlay)))


def secret_occurrences(lab, play):
    """How many times any secret (S3 secret key, cluster tokens, raw or base64) appears in every output
    and report file the runs produced."""
    secrets = [lab.s3["secret_access_key"]] + [c["token"] for c in lab.state["clusters"]]
    secrets += [base64.b64encode(s.encode()).decode() for s in secrets]
    texts = list(play.outputs)
    for path in (play.work / "fleetdr-reports").rglob("*"):
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    return {"texts_scanned": len(texts), "secret_occurrences": sum(text.count(s) for text in texts for s in secrets)}
