"""The Velero server as a whole: install detection, version and flags from the Deployment,
scale-to-zero, start-up behaviour, ServerStatusRequest."""
from __future__ import annotations

import threading

from kubernetes import watch as k8s_watch


def ssr(v) -> dict:
    req = v.create("serverstatusrequests", {"kind": "ServerStatusRequest",
                                            "metadata": {"generateName": "velero-cli-"}, "spec": {}})
    name = req["metadata"]["name"]
    return v.wait_for(lambda: (lambda r: r if (r.get("status") or {}).get("phase") == "Processed" else None)(
        v.get("serverstatusrequests", name)), what="SSR processed")


def server_running(v) -> bool:
    """The lab's on-demand sync answers only while a Velero server runs in the cluster."""
    return v.lab.cli("velero", "sync", "--cluster", v.cluster, check=False).returncode == 0


def phases_of(v, name, create):
    """Create a backup via `create()` and return the sequence of phases seen through a watch."""
    rv = v.custom.list_namespaced_custom_object("velero.io", "v1", v.namespace, "backups")["metadata"]["resourceVersion"]
    seen, done = [], threading.Event()

    def run():
        w = k8s_watch.Watch()
        for ev in w.stream(v.custom.list_namespaced_custom_object, "velero.io", "v1", v.namespace, "backups",
                           resource_version=rv, timeout_seconds=60):
            obj = ev["object"]
            if obj["metadata"]["name"] != name:
                continue
            phase = (obj.get("status") or {}).get("phase", "")
            if not seen or seen[-1] != phase:
                seen.append(phase)
            if phase in ("Completed", "PartiallyFailed", "Failed", "FailedValidation"):
                w.stop()
                break
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    create()
    assert done.wait(60)
    return [p for p in seen if p]


def test_server_status_request(velero):
    st = ssr(velero)["status"]
    assert st["serverVersion"] == "v1.18.0"
    assert st["processedTimestamp"]
    plugins = {(p["name"], p["kind"]) for p in st["plugins"]}
    assert ("velero.io/aws", "ObjectStore") in plugins and ("velero.io/aws", "VolumeSnapshotter") in plugins
    assert ("velero.io/pod", "BackupItemAction") in plugins
    assert ("velero.io/service", "RestoreItemAction") in plugins


def test_velero_crs_outside_the_velero_namespace_are_ignored(velero):
    ns = velero.unique("elsewhere")
    velero.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    velero.custom.create_namespaced_custom_object("velero.io", "v1", ns, "serverstatusrequests", {
        "apiVersion": "velero.io/v1", "kind": "ServerStatusRequest", "metadata": {"name": "ignored"}, "spec": {}})
    ssr(velero)  # a request in the right namespace is processed meanwhile
    got = velero.custom.get_namespaced_custom_object("velero.io", "v1", ns, "serverstatusrequests", "ignored")
    assert "status" not in got or not got["status"]


def test_scaled_to_zero_nothing_progresses_and_restart_fails_in_progress(private_velero):
    v = private_velero
    assert server_running(v)
    v.apps.patch_namespaced_deployment_scale("velero", v.namespace, {"spec": {"replicas": 0}})
    v.wait_for(lambda: not server_running(v), what="velero server stopped")
    waiting = v.unique("waiting")
    v.create_backup(waiting, {"includedNamespaces": ["default"]})
    # a backup a crashed server left InProgress
    stuck = v.unique("stuck")
    v.create("backups", {"kind": "Backup", "metadata": {"name": stuck}, "spec": {},
                         "status": {"phase": "InProgress", "startTimestamp": "2026-01-01T00:00:00Z"}})
    assert not v.get("backups", waiting).get("status")   # no server, no phase
    v.apps.patch_namespaced_deployment_scale("velero", v.namespace, {"spec": {"replicas": 1}})
    assert v.wait_backup(waiting)["status"]["phase"] == "Completed"
    st = v.get("backups", stuck)["status"]
    assert st["phase"] == "Failed"
    assert st["failureReason"] == ('found a backup with status "InProgress" during the server starting, '
                                   'mark it as "Failed"')
    assert st["completionTimestamp"]


def test_version_and_flags_come_from_the_deployment(private_velero):
    v = private_velero
    dep = v.apps.read_namespaced_deployment("velero", v.namespace)
    container = dep.spec.template.spec.containers[0]
    args = list(container.args) + ["--default-backup-ttl=24h", "--default-volumes-to-fs-backup=true"]
    v.apps.patch_namespaced_deployment("velero", v.namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "velero", "image": "velero/velero:v1.17.1", "args": args}]}}}})
    v.wait_for(lambda: ssr(v)["status"]["serverVersion"] == "v1.17.1", what="server restarted as v1.17.1")
    name = v.unique("v117")
    phases = phases_of(v, name, lambda: v.create_backup(name, {"includedNamespaces": ["default"]}))
    assert phases == ["InProgress", "Finalizing", "Completed"]   # no backup queue before 1.18
    b = v.get("backups", name)
    assert b["spec"]["ttl"] == "24h0m0s"
    assert b["spec"]["defaultVolumesToFsBackup"] is True
    keys = {k.rsplit("/", 1)[1] for k in v.bucket_keys(v.backup_prefix(name))}
    assert f"{name}-csi-volumesnapshotclasses.json.gz" in keys          # 1.17 still writes this one
    assert f"{name}-csi-volumesnapshots.json.gz" not in keys


def test_uninstall_stops_the_server(private_velero):
    v = private_velero
    assert server_running(v)
    v.uninstall()
    v.wait_for(lambda: not server_running(v), what="server stopped after uninstall")


def test_processed_status_requests_expire_after_a_minute(private_velero):
    v = private_velero
    name = ssr(v)["metadata"]["name"]
    v.lab.cli("clock", "advance", "2m")
    v.wait_for(lambda: v.get_or_none("serverstatusrequests", name) is None, what="SSR deleted after expiry")


def test_restic_uploader_is_refused_since_1_17(private_velero):
    v = private_velero
    dep = v.apps.read_namespaced_deployment("velero", v.namespace)
    args = [a for a in dep.spec.template.spec.containers[0].args if not a.startswith("--uploader-type")]
    v.apps.patch_namespaced_deployment("velero", v.namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "velero", "args": args + ["--uploader-type=restic"]}]}}}})
    v.wait_for(lambda: not server_running(v), what="server not running with --uploader-type=restic")
    name = v.unique("restic")
    v.create_backup(name, {})
    assert not server_running(v)   # still not running once the Deployment change has settled
    assert not v.get("backups", name).get("status")
