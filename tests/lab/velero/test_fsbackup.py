"""File-system backup with the node-agent: volume selection, PodVolumeBackup /
PodVolumeRestore objects, the content-addressed repository under kopia/<ns>/ (dedup), and restore
of the files into a re-provisioned PVC.

Upstream source: Velero pkg/podvolume/backupper.go, restorer.go,
pkg/controller/pod_volume_backup_controller.go.
"""
from __future__ import annotations

import json
import os
import threading

import pytest
from kubernetes import watch

from helpers import Apis, make_app, put_file, restore, run_backup, tree, unique

GROUP, VERSION = "velero.io", "v1"


def pvbs_of(velero, backup):
    return velero.list("podvolumebackups", label_selector=f"velero.io/backup-name={backup}")


def repo_keys(velero, ns):
    root = f"{velero.prefix.strip('/')}/" if velero.prefix else ""
    return set(velero.bucket_keys(f"{root}kopia/{ns}/"))


@pytest.fixture(scope="module")
def fsapp(velero, lab, tmp_path_factory):
    kube = Apis(velero.api_client)
    ns = unique("fs")
    kube.namespace(ns)
    make_app(kube, ns, volumes=("data", "scratch"), annotations={"backup.velero.io/backup-volumes": "data"})
    tmp = tmp_path_factory.mktemp("fsdata")
    files = {"hello.txt": b"hello from c1\n", "nested/dir/blob.bin": os.urandom(5 * 1024 * 1024 + 17),
             "copy-of-hello.txt": b"hello from c1\n"}
    for path, data in files.items():
        put_file(lab, "c1", ns, "data", path, data, tmp)
    put_file(lab, "c1", ns, "scratch", "not-backed-up.txt", b"x", tmp)
    return {"ns": ns, "kube": kube, "files": files, "tmp": tmp}


def test_fs_backup_creates_pvbs_and_deduplicates(velero, lab, fsapp):
    ns = fsapp["ns"]
    total = sum(len(d) for d in fsapp["files"].values())
    phases_seen = []

    # watch from a resourceVersion taken before the backup exists: no update can be missed
    start_rv = velero.custom.list_namespaced_custom_object(GROUP, VERSION, velero.namespace,
                                                           "podvolumebackups")["metadata"]["resourceVersion"]

    def watch_pvbs(stop):
        w = watch.Watch()
        for ev in w.stream(velero.custom.list_namespaced_custom_object, GROUP, VERSION, velero.namespace,
                           "podvolumebackups", resource_version=start_rv, timeout_seconds=60):
            obj = ev["object"]
            if (obj.get("spec") or {}).get("pod", {}).get("namespace") == ns:
                phases_seen.append((obj.get("status") or {}).get("phase"))
                if phases_seen[-1] == "Completed" or stop.is_set():
                    w.stop()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_pvbs, args=(stop,), daemon=True)
    watcher.start()

    first = unique("fsb")
    b = run_backup(velero, first, {"includedNamespaces": [ns]})
    assert b["status"]["phase"] == "Completed"
    watcher.join(timeout=30)
    stop.set()
    # the node-agent moved it through its phases (observed through a watch)
    order = ["New", "Accepted", "Prepared", "InProgress", "Completed"]
    seen = [p for p in order if p in phases_seen]
    assert seen == order, phases_seen

    pvbs = pvbs_of(velero, first)
    assert [p["spec"]["volume"] for p in pvbs] == ["data"]   # opt-in: only the annotated volume
    pvb = pvbs[0]
    st = pvb["status"]
    assert st["phase"] == "Completed" and st["snapshotID"]
    assert st["progress"] == {"totalBytes": total, "bytesDone": total}
    assert pvb["metadata"]["annotations"]["velero.io/pvc-name"] == "data"
    assert pvb["metadata"]["ownerReferences"][0]["name"] == first
    assert pvb["metadata"]["labels"]["velero.io/backup-uid"] == b["metadata"]["uid"]
    assert pvb["spec"]["uploaderType"] == "kopia" and pvb["spec"]["tags"]["ns"] == ns
    repo = velero.get("backuprepositories", f"{ns}-default-kopia")
    assert repo["status"]["phase"] == "Ready" and repo["spec"]["volumeNamespace"] == ns

    keys = repo_keys(velero, ns)
    root = f"{velero.prefix.strip('/')}/kopia/{ns}/"
    assert f"{root}kopia.repository" in keys and f"{root}udmrepo.Repository" in keys
    contents = {k for k in keys if k[len(root):].startswith("p")}
    # hello.txt and its copy share one content; the 5 MiB file is two 4 MiB chunks
    assert len(contents) == 3

    second = unique("fsb")
    run_backup(velero, second, {"includedNamespaces": [ns]})
    new = repo_keys(velero, ns) - keys
    assert len(new) == 1 and new.pop()[len(root):].startswith("q")   # only the new snapshot manifest
    assert pvbs_of(velero, second)[0]["status"]["incrementalBytes"] == 0

    # changing one small file uploads exactly one new content
    put_file(lab, "c1", ns, "data", "hello.txt", b"changed\n", fsapp["tmp"])
    before = repo_keys(velero, ns)
    third = unique("fsb")
    run_backup(velero, third, {"includedNamespaces": [ns]})
    added = repo_keys(velero, ns) - before
    assert sorted(k[len(root)] for k in added) == ["p", "q"]
    put_file(lab, "c1", ns, "data", "hello.txt", fsapp["files"]["hello.txt"], fsapp["tmp"])
    fsapp["backup"] = first


def test_fs_restore_rebuilds_files_in_new_pvc(velero, lab, fsapp):
    if "backup" not in fsapp:
        pytest.skip("needs the backup of the previous test")
    kube, ns = fsapp["kube"], fsapp["ns"]
    target, name = unique("fsr"), unique("fsrr")
    r = restore(velero, name, {"backupName": fsapp["backup"], "namespaceMapping": {ns: target}})
    assert r["status"]["phase"] == "Completed", r["status"]
    pvrs = velero.list("podvolumerestores", label_selector=f"velero.io/restore-name={name}")
    assert len(pvrs) == 1
    pvr = pvrs[0]
    assert pvr["status"]["phase"] == "Completed"
    assert pvr["spec"]["sourceNamespace"] == ns and pvr["spec"]["pod"]["namespace"] == target
    assert pvr["spec"]["snapshotID"] == pvbs_of(velero, fsapp["backup"])[0]["status"]["snapshotID"]
    assert pvr["metadata"]["labels"]["velero.io/restore-uid"] == r["metadata"]["uid"]

    # the PVC was re-provisioned (new PV) and holds byte-identical files
    pvc = kube.core.read_namespaced_persistent_volume_claim("data", target)
    src_pvc = kube.core.read_namespaced_persistent_volume_claim("data", ns)
    assert pvc.spec.volume_name and pvc.spec.volume_name != src_pvc.spec.volume_name
    expected = {p: __import__("hashlib").sha256(d).hexdigest() for p, d in fsapp["files"].items()}
    assert tree(lab, "c1", target, "data") == expected     # no .velero marker left behind

    # restored pods carry the restore-wait init container
    pods = kube.core.list_namespaced_pod(target).items
    restored = [p for p in pods if (p.metadata.labels or {}).get("velero.io/restore-name") == name]
    assert restored
    init = restored[0].spec.init_containers[0]
    assert init.name == "restore-wait" and init.args == [r["metadata"]["uid"]]
    assert init.image == velero.image and init.command == ["/velero-restore-helper"]
    # the ServiceAccount admission plugin mounts the API token into init containers too
    assert [m.mount_path for m in init.volume_mounts] == ["/restores/data",
                                                          "/var/run/secrets/kubernetes.io/serviceaccount"]


def test_opt_out_mode_respects_excludes_annotation(velero, lab):
    kube = Apis(velero.api_client)
    ns = unique("fsopt")
    kube.namespace(ns)
    make_app(kube, ns, volumes=("keep", "skip"),
             annotations={"backup.velero.io/backup-volumes-excludes": "skip"})
    name = unique("fso")
    run_backup(velero, name, {"includedNamespaces": [ns], "defaultVolumesToFsBackup": True})
    pvbs = pvbs_of(velero, name)
    assert [p["spec"]["volume"] for p in pvbs] == ["keep"]
    # an empty volume completes without a snapshot
    assert pvbs[0]["status"]["phase"] == "Completed"
    assert pvbs[0]["status"]["message"] == "volume was empty so no snapshot was taken"
    assert "snapshotID" not in pvbs[0]["status"]


def test_backup_without_node_agent_is_partially_failed(private_velero):
    """Velero installed without --use-node-agent: an opted-in volume is an error, not a PVB."""
    import gzip
    velero = private_velero
    kube = Apis(velero.api_client)
    ns = unique("fsna")
    kube.namespace(ns)
    pod = make_app(kube, ns, annotations={"backup.velero.io/backup-volumes": "data"})
    name = unique("fsna")
    velero.create_backup(name, {"includedNamespaces": [ns]})
    b = velero.wait_backup(name)
    assert b["status"]["phase"] == "PartiallyFailed"
    assert pvbs_of(velero, name) == []
    results = json.loads(gzip.decompress(velero.read_object(f"{velero.backup_prefix(name)}{name}-results.gz")))
    errors = results["errors"]["namespaces"][ns]
    assert any(f"daemonset pod not found in running state in node {pod.spec.node_name}" in e for e in errors), errors
