# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleetdr.kube.install: one controller-side step through the apply engine, against a private lab.

Tests run in file order on one 3-cluster lab:
1. --check on a fresh fleet: every cluster "WouldChange", nothing written anywhere.
2. install on 3 clusters, then a second run: changed=0 and no object written again.
3. --check on the installed fleet: no change.
4. an upgrade with one cluster down: the others upgrade, that one fails with the reason.
5. the role's per-host path and the fleet path produce the same objects.
6. uninstall: everything the install made is gone, the bucket is untouched.
"""

import json
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402
from fleet_helpers import PlaybookRunner, recap  # noqa: E402

# What the install makes in the velero namespace and cluster-wide (kind, namespaced, plural).
NAMESPACED = (("apps/v1", "deployments"), ("apps/v1", "daemonsets"), ("v1", "secrets"), ("v1", "serviceaccounts"),
              ("velero.io/v1", "backupstoragelocations"))
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    handle = LabHandle.up(tmp_path_factory.mktemp("install-lab"), clusters=3)
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def play(lab, collections, tmp_path_factory):
    work = tmp_path_factory.mktemp("install-work")
    runner = PlaybookRunner(lab, collections, work)
    runner.vars_file = work / "velero.yml"
    runner.vars_file.write_text(yaml.safe_dump({
        "velero_s3_access_key_id": lab.s3["access_key_id"], "velero_s3_secret_access_key": lab.s3["secret_access_key"],
        "velero_node_agent": True}))
    return runner


_APIS = {}


def _raw(lab, cluster, path):
    """GET an API path as a dict (None when absent)."""
    if (str(lab.dir), cluster) not in _APIS:
        _APIS[(str(lab.dir), cluster)] = lab.api(cluster)
    api = _APIS[(str(lab.dir), cluster)]
    request = api.param_serialize("GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
    response = api.call_api(*request)
    response.read()
    if response.status == 404:
        return None
    assert 200 <= response.status < 300, (path, response.status, response.data)
    return json.loads(response.data)


def _state(lab, cluster):
    """Every object the install makes, by path, as stored (None when absent)."""
    out = {"/api/v1/namespaces/velero": _raw(lab, cluster, "/api/v1/namespaces/velero")}
    for group, plural in NAMESPACED:
        prefix = "/api/" if group == "v1" else "/apis/"
        listing = _raw(lab, cluster, "{0}{1}/namespaces/velero/{2}".format(prefix, group, plural)) or {}
        for item in listing.get("items") or []:
            out["{0}/{1}".format(plural, item["metadata"]["name"])] = item
    crds = _raw(lab, cluster, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions") or {}
    for item in crds.get("items") or []:
        if item["spec"]["group"] == "velero.io":
            out["crd/" + item["metadata"]["name"]] = item
    binding = _raw(lab, cluster, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/velero")
    if binding is not None:
        out["clusterrolebinding/velero"] = binding
    return dict((k, v) for k, v in out.items() if v is not None)


def _versions(state):
    """What says an object was written: its resourceVersion where only the install writes it (controllers
    write the status of Deployments, DaemonSets and locations), and when field manager fleetdr last applied it."""
    out = {}
    for key, obj in state.items():
        applied = [m.get("time") for m in obj["metadata"].get("managedFields") or [] if m.get("manager") == "fleetdr"]
        controlled = key.split("/")[0] in ("deployments", "daemonsets", "backupstoragelocations")
        out[key] = (None if controlled else obj["metadata"]["resourceVersion"], applied)
    return out


def test_check_mode_on_a_fresh_fleet_writes_nothing(lab, play):
    proc = play("install", "--check", "-e", "@%s" % play.vars_file, check_rc=0)
    assert "WouldChange" in proc.stdout
    for cluster in lab.clusters:
        assert _state(lab, cluster) == {}, cluster
    assert not (play.work / "fleetdr-reports").exists() or not list((play.work / "fleetdr-reports").glob("install-*"))


def test_install_then_a_second_run_changes_nothing(lab, play):
    proc = play("install", "-e", "@%s" % play.vars_file, check_rc=0)
    report = play.report("install", "velero")[1]
    assert report["verdict"] == "succeeded"
    # progress on the normal output while the clusters run: phases, results, the closing summary
    lines = proc.stdout.splitlines()
    for cluster in lab.clusters:
        assert any(line.strip().startswith(cluster + " Applying ") for line in lines), proc.stdout
        assert any(line.strip().startswith(cluster + " Installed ") for line in lines), proc.stdout
    assert any(line.strip() == "install velero: 3/3 done, 0 failed, 0 in progress" for line in lines), proc.stdout
    for entry in report["clusters"]:
        assert entry["phase"] == "Installed" and entry["details"]["velero_version"] == "v1.18.1"
        assert entry["details"]["location_phase"] == "Available" and entry["details"]["prefix"] == entry["name"]
        actions = dict((c["object"], c["action"]) for c in entry["details"]["changes"])
        assert actions["Deployment velero/velero"] == "create" and actions["DaemonSet velero/node-agent"] == "create"
        assert len([a for a in actions if a.startswith("CustomResourceDefinition")]) == 13
    before = dict((c, _versions(_state(lab, c))) for c in lab.clusters)
    made = ("/api/v1/namespaces/velero", "deployments/velero", "daemonsets/node-agent", "secrets/cloud-credentials",
            "serviceaccounts/velero", "backupstoragelocations/default", "clusterrolebinding/velero")
    for versions in before.values():
        assert set(made) <= set(versions) and len([k for k in versions if k.startswith("crd/")]) == 13, versions

    proc = play("install", "-e", "@%s" % play.vars_file, "-e", "progress=false", check_rc=0)
    assert recap(proc)["c1"]["changed"] == 0
    assert " Applying " not in proc.stdout and "in progress" not in proc.stdout
    report = play.report("install", "velero")[1]
    assert all(entry["details"]["changes"] == [] for entry in report["clusters"])
    assert dict((c, _versions(_state(lab, c))) for c in lab.clusters) == before


def test_check_mode_on_an_installed_fleet_reports_no_change(lab, play):
    before = _versions(_state(lab, "c1"))
    proc = play("install", "--check", "--diff", "-e", "@%s" % play.vars_file, check_rc=0)
    assert recap(proc)["c1"]["changed"] == 0 and "WouldChange" not in proc.stdout
    proc = play("install", "--check", "--diff", "-e", "@%s" % play.vars_file, "-e", "velero_version=v1.18.0", "--limit", "c1", check_rc=0)
    assert "WouldChange" in proc.stdout and '+                        "image": "velero/velero:v1.18.0"' in proc.stdout
    assert lab.s3["secret_access_key"] not in proc.stdout
    assert _versions(_state(lab, "c1")) == before


def test_a_down_cluster_fails_alone(lab, play):
    lab.cli("fault", "c2", "down")
    try:
        proc = play("install", "-e", "@%s" % play.vars_file, "-e", "velero_version=v1.18.0", "-e", "wait_timeout=30", check_rc=2)
    finally:
        lab.cli("fault", "c2", "clear")
    assert recap(proc)["c2"]["failed"] == 1
    clusters = dict((c["name"], c) for c in play.report("install", "velero")[1]["clusters"])
    assert clusters["c2"]["verdict"] == "failed" and clusters["c2"]["reason"]
    for name in ("c1", "c3"):
        assert clusters[name]["verdict"] == "succeeded" and clusters[name]["details"]["velero_version"] == "v1.18.0"
        assert {"object": "Deployment velero/velero", "action": "update"} in clusters[name]["details"]["changes"]


def _image(lab, cluster):
    deployment = _raw(lab, cluster, "/apis/apps/v1/namespaces/velero/deployments/velero")
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def test_waves_stop_at_the_failure_budget_and_leave_the_rest_untouched(lab, play):
    """batch=1, max_fail_percentage=0: c1 upgrades, c2 (down) fails, c3 is never touched and says why."""
    before = _versions(_state(lab, "c3"))
    assert _image(lab, "c3") == "velero/velero:v1.18.0"
    lab.cli("fault", "c2", "down")
    try:
        proc = play("install", "-e", "@%s" % play.vars_file, "-e", "velero_version=v1.18.1", "-e", "batch=1",
                    "-e", "max_fail_percentage=0", "-e", "wait_timeout=30", check_rc=2)
    finally:
        lab.cli("fault", "c2", "clear")
    clusters = dict((c["name"], c) for c in play.report("install", "velero")[1]["clusters"])
    assert clusters["c1"]["verdict"] == "succeeded" and _image(lab, "c1") == "velero/velero:v1.18.1"
    assert clusters["c2"]["verdict"] == "failed"
    assert clusters["c3"]["verdict"] == "skipped"
    assert "rollout stopped after wave 2 of 3: 1 of 1 clusters failed (c2)" in clusters["c3"]["reason"]
    assert _image(lab, "c3") == "velero/velero:v1.18.0" and _versions(_state(lab, "c3")) == before
    proc = play("install", "-e", "@%s" % play.vars_file, "-e", "velero_version=v1.18.1", "-e", "batch=bad", check_rc=2)
    assert "batch must be a number of clusters or a percentage" in proc.stdout
    assert _image(lab, "c3") == "velero/velero:v1.18.0"


def _comparable(obj):
    obj = dict(obj)
    obj.pop("status", None)
    meta = dict((k, v) for k, v in obj["metadata"].items() if k not in SERVER_FIELDS)
    # annotations the API server and controllers keep (deployment revision, DaemonSet template generation)
    server_set = ("kubectl.kubernetes.io/", "deployment.kubernetes.io/", "deprecated.daemonset.")
    annotations = dict((k, v) for k, v in (meta.get("annotations") or {}).items() if not k.startswith(server_set))
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    obj["metadata"] = meta
    return obj


def test_role_path_and_fleet_path_make_the_same_objects(lab, play):
    per_host = play.work / "per_host.yml"
    per_host.write_text(yaml.safe_dump([{
        "name": "Install Velero with the role, one host at a time", "hosts": "c3", "gather_facts": False,
        "tasks": [{"name": "Role", "ansible.builtin.include_role": {"name": "fleetdr.kube.velero"}}]}]))
    settings = ["-e", "@%s" % play.vars_file, "-e", "velero_bsl_prefix=parity", "-e", "velero_version=v1.18.1"]
    play("install", "-e", "velero_state=absent", "--limit", "c3", check_rc=0)
    assert _state(lab, "c3") == {}
    play(str(per_host), *settings, check_rc=0)
    play("install", *settings, "--limit", "c1", check_rc=0)
    role_made, fleet_made = _state(lab, "c3"), _state(lab, "c1")
    assert sorted(role_made) == sorted(fleet_made)
    for key in fleet_made:
        assert _comparable(role_made[key]) == _comparable(fleet_made[key]), key


def test_a_run_sliced_like_awx_merges_into_one_report(lab, play):
    """AWX job slicing: one job per slice of the inventory (here --limit per cluster, c3 down), each
    with its own report; fleetdr.kube.report_merge makes the fleet's report and exit status."""
    from ansible_collections.fleetdr.kube.plugins.module_utils.report import stats_data

    lab.cli("seed", "busybox", "--cluster", "c1")
    slices = []
    for cluster in lab.clusters:
        if cluster == "c3":
            lab.cli("fault", "c3", "down")
        try:
            play("backup", "-e", "backup_name=sliced", "-e", "included_namespaces=default", "-e", "wait_timeout=30",
                 "--limit", cluster, check_rc=2 if cluster == "c3" else 0)
        finally:
            lab.cli("fault", "c3", "clear")
        slices.append(play.report("backup", "sliced")[0])
    assert len(set(slices)) == 3
    paths = "[%s]" % ", ".join('"%s"' % path for path in slices)
    proc = play(str(REPO / "playbooks" / "report_merge.yml"), "-e", '{"report_paths": %s}' % paths, "-e", "report_dir=merged", check_rc=2)
    merged_dir = sorted((play.work / "merged").glob("merged-*"))[-1]
    merged = json.loads((merged_dir / "report.json").read_text())
    assert merged["operation"] == "backup" and merged["name"] == "sliced" and merged["options"]["merged_slices"] == 3
    assert merged["totals"] == {"clusters": 3, "succeeded": 2, "partially_failed": 0, "failed": 1, "skipped": 0}
    assert merged["verdict"] == "partially_failed"
    assert [c["name"] for c in merged["clusters"]] == ["c1", "c2", "c3"]
    assert (merged_dir / "report.html").exists() and (merged_dir / "junit.xml").exists()
    assert "merged from 3 slices" in proc.stdout
    # The same from the slices' published summaries (AWX artifacts handed on as extra vars).
    artifacts = dict(("fleetdr_report_slice_" + path.name.split("-")[0] + str(index), stats_data(json.loads((path / "report.json").read_text())))
                     for index, path in enumerate(slices))
    (play.work / "artifacts.json").write_text(json.dumps(artifacts))
    play(str(REPO / "playbooks" / "report_merge.yml"), "-e", "@%s" % (play.work / "artifacts.json"), "-e", "report_dir=merged2",
         "-e", "fail_on=never", check_rc=0)
    again = json.loads((sorted((play.work / "merged2").glob("merged-*"))[-1] / "report.json").read_text())
    assert again["totals"] == merged["totals"] and again["verdict"] == "partially_failed"
    # Slices of another run, or a cluster twice, are refused.
    proc = play(str(REPO / "playbooks" / "report_merge.yml"), "-e", '{"report_paths": ["%s", "%s"]}' % (slices[0], slices[0]), check_rc=2)
    assert "cluster c1 is in slice 1 and slice 2" in proc.stdout


def test_a_restore_of_a_backup_a_cluster_does_not_have_fails_there(lab, play):
    """Selected clusters that cannot run the operation are failed with the reason (not skipped), and the
    run exits non-zero."""
    proc = play("restore", "-e", "backup_name=does-not-exist", "--limit", "c1,c2", check_rc=2)
    report = play.report("restore", "does-not-exist")[1]
    assert report["verdict"] == "failed" and report["totals"]["failed"] == 2 and report["totals"]["skipped"] == 0
    for entry in report["clusters"]:
        assert entry["verdict"] == "failed"
        assert "no Backup does-not-exist-%s on this cluster" % entry["name"] in entry["reason"]
    assert recap(proc)["c2"]["failed"] == 1


def test_uninstall_removes_the_install_and_leaves_the_bucket(lab, play):
    s3 = lab.s3_client()
    lab.cli("seed", "busybox", "--cluster", "c1")
    play("backup", "-e", "backup_name=keep1", "-e", "included_namespaces=busybox", "--limit", "c1", check_rc=0)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="fleetdr").get("Contents", []))
    assert any("keep1-c1" in k for k in keys)
    play("install", "-e", "velero_state=absent", check_rc=0)
    for cluster in lab.clusters:
        assert _state(lab, cluster) == {}, cluster
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="fleetdr").get("Contents", [])) == keys
    proc = play("install", "-e", "velero_state=absent", check_rc=0)
    assert recap(proc)["c1"]["changed"] == 0
