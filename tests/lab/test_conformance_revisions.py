"""ControllerRevisions of DaemonSets and StatefulSets (Kubernetes pkg/controller/history) and the
DaemonSet template generation annotation (pkg/registry/apps/daemonset/strategy.go): what
`kubectl rollout history` and `kubectl rollout undo` read, and what a backup of a namespace holds."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from helpers import wait_for

LABELS = {"app": "agent"}


def _template(image):
    return {"metadata": {"labels": dict(LABELS)}, "spec": {"containers": [{"name": "agent", "image": image}]}}


def _revisions(apis, ns):
    return sorted(((r.metadata.name, r.revision, r.metadata.labels.get("controller-revision-hash"))
                   for r in apis.apps.list_namespaced_controller_revision(ns).items), key=lambda item: item[1])


def test_daemonset_revisions_and_template_generation(lab, apis, ns):
    apis.apps.create_namespaced_daemon_set(ns, {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                                                "spec": {"selector": {"matchLabels": dict(LABELS)}, "template": _template("busybox:1.36")}})
    ds = apis.apps.read_namespaced_daemon_set("agent", ns)
    assert ds.metadata.annotations["deprecated.daemonset.template.generation"] == "1"
    (first,) = wait_for(lambda: _revisions(apis, ns), "the first revision")
    name, number, hash_ = first
    assert (name, number) == ("agent-" + hash_, 1)
    revision = apis.apps.read_namespaced_controller_revision(name, ns)
    assert revision.data["spec"]["template"]["$patch"] == "replace"
    assert revision.data["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert revision.metadata.owner_references[0].kind == "DaemonSet" and revision.metadata.owner_references[0].controller
    pods = wait_for(lambda: apis.core.list_namespaced_pod(ns, label_selector="app=agent").items, "a daemon pod")
    assert {(p.metadata.labels["controller-revision-hash"], p.metadata.labels["pod-template-generation"]) for p in pods} == {(hash_, "1")}

    # a change that is not the template keeps the template generation
    apis.apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"minReadySeconds": 1}})
    assert apis.apps.read_namespaced_daemon_set("agent", ns).metadata.annotations["deprecated.daemonset.template.generation"] == "1"
    apis.apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"template": _template("busybox:1.37")}})
    assert apis.apps.read_namespaced_daemon_set("agent", ns).metadata.annotations["deprecated.daemonset.template.generation"] == "2"
    second = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(_revisions(apis, ns)), "a second revision")
    assert [number for _name, number, _hash in second] == [1, 2]
    wait_for(lambda: {p.metadata.labels["pod-template-generation"] for p in apis.core.list_namespaced_pod(
        ns, label_selector="app=agent").items if not p.metadata.deletion_timestamp} == {"2"}, "daemon pods of generation 2")

    # back to the first template: its revision is renumbered, none is added
    apis.apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"template": _template("busybox:1.36")}})
    third = wait_for(lambda: (lambda r: r if r and r[-1][0] == name else None)(_revisions(apis, ns)), "the first revision renumbered")
    assert [(n, number) for n, number, _hash in third] == [(second[1][0], 2), (name, 3)]
    if shutil.which("kubectl"):
        history = subprocess.run(["kubectl", "--kubeconfig", str(lab.kubeconfig), "--context", "c1", "-n", ns, "rollout", "history",
                                  "daemonset/agent"], capture_output=True, text=True, timeout=60)
        assert history.returncode == 0, history.stderr
        assert [line.split()[0] for line in history.stdout.splitlines()[2:] if line.strip()] == ["2", "3"]


def test_statefulset_revisions_name_its_current_and_update_revision(apis, ns):
    apis.apps.create_namespaced_stateful_set(ns, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                                                  "spec": {"selector": {"matchLabels": dict(LABELS)}, "serviceName": "db",
                                                           "replicas": 1, "template": _template("postgres:16")}})
    status = wait_for(lambda: (lambda s: s if s.ready_replicas == 1 else None)(apis.apps.read_namespaced_stateful_set("db", ns).status),
                      "db ready")
    (name, number, hash_), = _revisions(apis, ns)
    assert status.current_revision == status.update_revision == name == "db-" + hash_ and number == 1
    assert apis.core.read_namespaced_pod("db-0", ns).metadata.labels["controller-revision-hash"] == name
    apis.apps.patch_namespaced_stateful_set("db", ns, {"spec": {"template": _template("postgres:17")}})
    status = wait_for(lambda: (lambda s: s if s.current_revision == s.update_revision != name and s.ready_replicas == 1 else None)(
        apis.apps.read_namespaced_stateful_set("db", ns).status), "rolled to the new revision")
    revisions = _revisions(apis, ns)
    assert [(n, number) for n, number, _hash in revisions] == [(name, 1), (status.update_revision, 2)]


@pytest.mark.parametrize("limit", [1])
def test_revisions_beyond_the_history_limit_are_deleted(apis, ns, limit):
    apis.apps.create_namespaced_daemon_set(ns, {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                                                "spec": {"selector": {"matchLabels": dict(LABELS)}, "revisionHistoryLimit": limit,
                                                         "template": _template("busybox:1.30")}})
    for minor in (31, 32, 33):
        wait_for(lambda: _revisions(apis, ns), "a revision")
        apis.apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"template": _template("busybox:1.%d" % minor)}})
        wait_for(lambda: {p.spec.containers[0].image for p in apis.core.list_namespaced_pod(ns, label_selector="app=agent").items
                          if not p.metadata.deletion_timestamp} == {"busybox:1.%d" % minor}, "rolled to 1.%d" % minor)
    revisions = wait_for(lambda: (lambda r: r if len(r) <= 1 + limit else None)(_revisions(apis, ns)), "history trimmed")
    assert revisions[-1][1] == 4  # the current one, numbered after every earlier revision
