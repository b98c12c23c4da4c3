"""Conformance of the lab's API through kubernetes.core modules run by ansible-playbook."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import unique

CONTEXT = "c1"


def collections_path() -> str | None:
    if os.environ.get("ANSIBLE_COLLECTIONS_PATH"):
        return os.environ["ANSIBLE_COLLECTIONS_PATH"]
    try:
        import ansible_collections
    except ImportError:
        return None
    return os.path.dirname(list(ansible_collections.__path__)[0])


PLAYBOOK_BIN = Path(sys.executable).with_name("ansible-playbook")


def run_playbook(lab, tmp_path, tasks, extra_vars=None):
    """Run tasks on localhost against the lab; returns the facts the play saved as JSON."""
    out = tmp_path / "out.json"
    play = [{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "module_defaults": {"group/kubernetes.core.k8s": {
            "kubeconfig": str(lab.kubeconfig), "context": CONTEXT}},
        "vars": {"out": {}},
        "tasks": tasks + [{"ansible.builtin.copy": {"content": "{{ out | to_json }}",
                                                    "dest": str(out)}}],
    }]
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ)
    env.update({"ANSIBLE_COLLECTIONS_PATH": collections_path() or "",
                "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
                "ANSIBLE_NOCOLOR": "1", "TMPDIR": str(tmp_path)})  # private discovery cache
    cmd = [str(PLAYBOOK_BIN), str(book),
           "-e", f"ansible_python_interpreter={sys.executable}"]
    for key, value in (extra_vars or {}).items():
        cmd += ["-e", json.dumps({key: value})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"ansible-playbook failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def save(name, expr):
    """A set_fact task that records `expr` under out[name]."""
    return {"ansible.builtin.set_fact": {"out": "{{ out | combine({'%s': %s}) }}" % (name, expr)}}


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "sprockets.ansible.fleetdr.test"},
    "spec": {"group": "ansible.fleetdr.test", "scope": "Namespaced",
             "names": {"plural": "sprockets", "singular": "sprocket", "kind": "Sprocket"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {
                               "type": "object",
                               "x-kubernetes-preserve-unknown-fields": True}}}]}}


def configmap(name, data=None, labels=None):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": data or {"x": "y"}}


def deployment(ns, image):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": image}]}}}}


@pytest.fixture(scope="module")
def out(lab, tmp_path_factory):
    """One playbook (every module run costs a Python start-up) exercising kubernetes.core;
    the tests below check what it recorded."""
    ns = unique("ans")
    k8s = "kubernetes.core.k8s"
    tasks = [
        {"kubernetes.core.k8s_cluster_info": {"kubeconfig": str(lab.kubeconfig),
                                              "context": CONTEXT}, "register": "info"},
        save("git_version", "info.version.server.kubernetes.gitVersion"),
        save("has_apps", "'apps/v1' in info.apis"),
        # present, twice: created then unchanged
        {k8s: {"state": "present", "definition": {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}}, "register": "n1"},
        {k8s: {"state": "present", "definition": {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}}, "register": "n2"},
        save("ns_changed", "[n1.changed, n2.changed]"),
        {k8s: {"state": "present", "namespace": ns, "definition": [
            configmap("a", labels={"tier": "web", "env": "prod"}),
            configmap("b", labels={"tier": "db", "env": "prod"}),
            configmap("c", labels={"tier": "web", "env": "dev"})]}},
        {k8s: {"state": "present", "namespace": ns, "definition": configmap("a", {"x": "2"},
                                                                             {"tier": "web",
                                                                              "env": "prod"})},
         "register": "changed_cm"},
        save("cm_changed", "[changed_cm.changed, changed_cm.result.data]"),
        # k8s_info with equality, set-based and field selectors
        {"kubernetes.core.k8s_info": {"kind": "ConfigMap", "namespace": ns,
                                      "label_selectors": ["tier=web", "env!=dev"]},
         "register": "web"},
        save("web_prod", "web.resources | map(attribute='metadata.name') | list"),
        {"kubernetes.core.k8s_info": {"kind": "ConfigMap", "namespace": ns,
                                      "label_selectors": ["tier in (web,db)"],
                                      "field_selectors": ["metadata.name!=a"]},
         "register": "set_based"},
        save("set_based", "set_based.resources | map(attribute='metadata.name') | sort"),
        # client-side apply with a wait on a condition, unchanged, then a new image
        {k8s: {"state": "present", "apply": True, "definition": deployment(ns, "nginx:1.27"),
               "wait": True, "wait_condition": {"type": "Available", "status": "True"},
               "wait_timeout": 60}, "register": "d1"},
        {k8s: {"state": "present", "apply": True, "definition": deployment(ns, "nginx:1.27")},
         "register": "d2"},
        {k8s: {"state": "present", "apply": True, "definition": deployment(ns, "nginx:1.28")},
         "register": "d3"},
        save("apply_changed", "[d1.changed, d2.changed, d3.changed]"),
        save("image", "d3.result.spec.template.spec.containers[0].image"),
        save("available", "d1.result.status.conditions | selectattr('type', 'equalto', "
                          "'Available') | map(attribute='status') | first"),
        # server-side apply
        {k8s: {"state": "present", "namespace": ns,
               "server_side_apply": {"field_manager": "conformance", "force_conflicts": True},
               "definition": configmap("ssa", {"k": "v"})}, "register": "ssa"},
        save("ssa_data", "ssa.result.data"),
        # check mode is a server dry run: nothing is created
        {k8s: {"state": "present", "namespace": ns, "definition": configmap("never")},
         "check_mode": True, "register": "dry"},
        {"kubernetes.core.k8s_info": {"kind": "ConfigMap", "namespace": ns, "name": "never"},
         "register": "never"},
        save("dry", "[dry.changed, never.resources | length]"),
        # absent with wait, then absent again
        {k8s: {"state": "absent", "namespace": ns, "kind": "ConfigMap", "name": "b",
               "wait": True, "wait_timeout": 30}, "register": "gone"},
        {k8s: {"state": "absent", "namespace": ns, "kind": "ConfigMap", "name": "b"},
         "register": "gone_again"},
        save("absent_changed", "[gone.changed, gone_again.changed]"),
        # a CRD, waited on until Established, and one of its objects
        {k8s: {"state": "present", "definition": CRD, "wait": True,
               "wait_condition": {"type": "Established", "status": "True"}, "wait_timeout": 30}},
        {k8s: {"state": "present", "namespace": ns, "definition": {
            "apiVersion": "ansible.fleetdr.test/v1", "kind": "Sprocket",
            "metadata": {"name": "s1", "labels": {"size": "big"}}, "spec": {"teeth": 12}}},
         "register": "s1"},
        save("generation", "s1.result.metadata.generation"),
        {"kubernetes.core.k8s_info": {"api_version": "ansible.fleetdr.test/v1",
                                      "kind": "Sprocket", "namespace": ns,
                                      "label_selectors": ["size=big"]}, "register": "found"},
        save("found", "found.resources | map(attribute='spec.teeth') | list"),
        {k8s: {"state": "absent", "kind": "CustomResourceDefinition",
               "name": CRD["metadata"]["name"], "wait": True}},
        {k8s: {"state": "absent", "kind": "Namespace", "name": ns}},
    ]
    return run_playbook(lab, tmp_path_factory.mktemp("ansible"), tasks)


def test_cluster_info(out):
    assert out["git_version"].startswith("v1.32.")
    assert out["has_apps"] is True


def test_present_is_idempotent(out):
    assert out["ns_changed"] == [True, False]
    assert out["cm_changed"] == [True, {"x": "2"}]


def test_info_with_label_and_field_selectors(out):
    assert out["web_prod"] == ["a"]
    assert out["set_based"] == ["b", "c"]


def test_apply_and_wait_for_condition(out):
    assert out["apply_changed"] == [True, False, True]
    assert out["image"] == "nginx:1.28"
    assert out["available"] == "True"


def test_server_side_apply_and_check_mode(out):
    assert out["ssa_data"] == {"k": "v"}
    assert out["dry"] == [True, 0]


def test_absent_is_idempotent(out):
    assert out["absent_changed"] == [True, False]


def test_crd_wait_and_custom_objects(out):
    assert out["generation"] == 1
    assert out["found"] == [12]
