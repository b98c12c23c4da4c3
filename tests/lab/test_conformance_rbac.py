"""RBAC authorization of ServiceAccount tokens, impersonation and the review APIs, seen through the
kubernetes client and kubectl (`kubectl auth can-i --as`, `kubectl auth whoami`)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from helpers import Apis, make_namespace, unique
from kubernetes import client
from kubernetes.client.rest import ApiException

CONTEXT = "c1"
RBAC = "rbac.authorization.k8s.io"
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@pytest.fixture(scope="module")
def admin(apis):
    """The lab's admin (system:masters) clients."""
    return apis


@pytest.fixture
def space(admin):
    """A namespace with ServiceAccount `sa` and a token for it: (namespace, token)."""
    name = unique("rbac")
    make_namespace(admin.core, name)
    admin.core.create_namespaced_service_account(name, {"metadata": {"name": "sa"}})
    tr = admin.core.create_namespaced_service_account_token("sa", name, {"spec": {}})
    yield name, tr.status.token
    try:
        admin.core.delete_namespace(name)
    except ApiException:
        pass


def as_token(lab, token: str) -> Apis:
    info = lab.cluster_info(CONTEXT)
    cfg = client.Configuration()
    cfg.host = info.get("server") or f"https://127.0.0.1:{info['port']}"
    cfg.ssl_ca_cert = str(lab.dir / "ca.crt")
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return Apis(client.ApiClient(cfg))


def kubectl(lab, *args, token=None):
    cmd = ["kubectl", "--kubeconfig", str(lab.kubeconfig), "--context", CONTEXT]
    if token:
        cmd += ["--token", token]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, check=False)


def forbidden(call) -> dict:
    with pytest.raises(ApiException) as exc:
        call()
    assert exc.value.status == 403, exc.value.body
    return json.loads(exc.value.body)


def role(ns, name, rules):
    return {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns}, "rules": rules}


def binding(ns, name, role_name, kind="Role", sa="sa"):
    return {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]}


def test_unbound_account_is_forbidden_with_the_real_message(lab, space):
    ns, token = space
    user = f"system:serviceaccount:{ns}:sa"
    sa = as_token(lab, token)
    try:
        body = forbidden(lambda: sa.core.list_namespaced_pod(ns))
        assert body["reason"] == "Forbidden" and body["details"] == {"kind": "pods"}
        assert body["message"] == (f'pods is forbidden: User "{user}" cannot list resource "pods" in API group "" '
                                   f'in the namespace "{ns}"')
        body = forbidden(lambda: sa.apps.read_namespaced_deployment("web", ns))
        assert body["message"] == (f'deployments.apps "web" is forbidden: User "{user}" cannot get resource '
                                   f'"deployments" in API group "apps" in the namespace "{ns}"')
        body = forbidden(lambda: sa.core.list_node())
        assert body["message"] == (f'nodes is forbidden: User "{user}" cannot list resource "nodes" in API group "" '
                                   "at the cluster scope")
        # discovery and the self reviews are for every authenticated user (system:discovery, system:basic-user)
        assert client.ApisApi(sa.client).get_api_versions().groups
        assert client.CoreApi(sa.client).get_api_versions().versions == ["v1"]
    finally:
        sa.close()
    out = kubectl(lab, "get", "pods", "-n", ns, token=token)
    assert out.returncode == 1
    assert (f'Error from server (Forbidden): pods is forbidden: User "{user}" cannot list resource "pods" in API '
            f'group "" in the namespace "{ns}"') in out.stderr


def test_role_binding_grants_verbs_subresources_and_names(lab, admin, space):
    ns, token = space
    user = f"system:serviceaccount:{ns}:sa"
    admin.rbac.create_namespaced_role(ns, role(ns, "reader", [
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get", "update"]}]))
    admin.rbac.create_namespaced_role_binding(ns, binding(ns, "reader", "reader"))
    admin.core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    admin.core.create_namespaced_config_map(ns, {"metadata": {"name": "other"}})
    sa = as_token(lab, token)
    try:
        assert sa.core.list_namespaced_pod(ns).items == []
        assert sa.core.read_namespaced_config_map("settings", ns).data == {"a": "1"}
        body = forbidden(lambda: sa.core.read_namespaced_config_map("other", ns))
        assert body["message"].startswith(f'configmaps "other" is forbidden: User "{user}" cannot get resource '
                                          '"configmaps"')
        forbidden(lambda: sa.core.list_namespaced_config_map(ns))  # resourceNames never grant list
        body = forbidden(lambda: sa.core.create_namespaced_pod(ns, {"metadata": {"name": "x"}, "spec": {
            "containers": [{"name": "a", "image": "b"}]}}))
        assert f'cannot create resource "pods" in API group "" in the namespace "{ns}"' in body["message"]
        body = forbidden(lambda: sa.core.list_namespaced_pod("default"))
        assert body["message"].endswith('in the namespace "default"')
        body = forbidden(lambda: sa.core.create_namespaced_pod_eviction("p", ns, {
            "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}}))
        assert 'cannot create resource "pods/eviction" in API group ""' in body["message"]
    finally:
        sa.close()
    # a ClusterRole bound in the namespace (the bootstrap `view`) grants its rules there only
    admin.rbac.create_namespaced_role_binding(ns, binding(ns, "viewer", "view", kind="ClusterRole"))
    assert kubectl(lab, "get", "deployments,services", "-n", ns, token=token).returncode == 0
    assert kubectl(lab, "get", "deployments", "-n", "kube-system", token=token).returncode == 1


def test_binding_to_a_missing_role_says_so(lab, admin, space):
    ns, token = space
    admin.rbac.create_namespaced_role_binding(ns, binding(ns, "dangling", "not-there"))
    sa = as_token(lab, token)
    try:
        body = forbidden(lambda: sa.core.list_namespaced_secret(ns))
    finally:
        sa.close()
    assert body["message"].endswith(': RBAC: role.rbac.authorization.k8s.io "not-there" not found')


def test_can_i_with_as(lab, admin, space):
    ns, _ = space
    user = f"system:serviceaccount:{ns}:sa"
    no = kubectl(lab, "auth", "can-i", "list", "pods", "-n", ns, f"--as={user}")
    assert (no.returncode, no.stdout.strip()) == (1, "no")
    admin.rbac.create_namespaced_role(ns, role(ns, "lister", [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]))
    admin.rbac.create_namespaced_role_binding(ns, binding(ns, "lister", "lister"))
    yes = kubectl(lab, "auth", "can-i", "list", "pods", "-n", ns, f"--as={user}")
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes")
    assert kubectl(lab, "auth", "can-i", "delete", "pods", "-n", ns, f"--as={user}").stdout.strip() == "no"
    assert kubectl(lab, "auth", "can-i", "list", "pods", "-n", "default", f"--as={user}").stdout.strip() == "no"
    assert kubectl(lab, "auth", "can-i", "*", "*").stdout.strip() == "yes"  # the admin
    listed = kubectl(lab, "auth", "can-i", "--list", "-n", ns, f"--as={user}")
    assert listed.returncode == 0 and "pods " in listed.stdout and "[list]" in listed.stdout
    # SubjectAccessReview through the client
    sar = client.AuthorizationV1Api(admin.client).create_subject_access_review({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts"],
                 "resourceAttributes": {"namespace": ns, "verb": "list", "resource": "pods"}}})
    assert sar.status.allowed is True
    assert sar.status.reason == (f'RBAC: allowed by RoleBinding "lister/{ns}" of Role "lister" to '
                                 f'ServiceAccount "sa/{ns}"')


def test_impersonation_needs_the_impersonate_verb(lab, admin, space):
    ns, token = space
    user = f"system:serviceaccount:{ns}:sa"
    out = kubectl(lab, "get", "pods", "-n", ns, "--as=jane", token=token)
    assert out.returncode == 1
    assert (f'Error from server (Forbidden): users "jane" is forbidden: User "{user}" cannot impersonate '
            'resource "users" in API group "" at the cluster scope') in out.stderr
    out = kubectl(lab, "get", "pods", "-n", ns, f"--as=system:serviceaccount:{ns}:default", token=token)
    assert (f'serviceaccounts "default" is forbidden: User "{user}" cannot impersonate resource '
            f'"serviceaccounts" in API group "" in the namespace "{ns}"') in out.stderr
    # the admin may impersonate; the impersonated user is then authorized as itself
    out = kubectl(lab, "get", "secrets", "-n", ns, f"--as={user}")
    assert out.returncode == 1 and f'User "{user}" cannot list resource "secrets"' in out.stderr
    # granted `impersonate` on users, the account may act as that user
    admin.rbac.create_cluster_role({"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole",
                                    "metadata": {"name": f"{ns}-imp"},
                                    "rules": [{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"],
                                               "resourceNames": ["jane"]}]})
    try:
        admin.rbac.create_cluster_role_binding({
            "apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": f"{ns}-imp"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": f"{ns}-imp"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": ns}]})
        me = kubectl(lab, "auth", "whoami", "-o", "json", "--as=jane", token=token)
        assert me.returncode == 0, me.stderr
        assert json.loads(me.stdout)["status"]["userInfo"] == {"username": "jane",
                                                               "groups": ["system:authenticated"]}
    finally:
        admin.rbac.delete_cluster_role(f"{ns}-imp")
        try:
            admin.rbac.delete_cluster_role_binding(f"{ns}-imp")
        except ApiException:
            pass


def test_whoami(lab, space):
    ns, token = space
    me = json.loads(kubectl(lab, "auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert "system:masters" in me["groups"] and "system:authenticated" in me["groups"]
    me = json.loads(kubectl(lab, "auth", "whoami", "-o", "json", token=token).stdout)["status"]["userInfo"]
    assert me["username"] == f"system:serviceaccount:{ns}:sa"
    assert me["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    assert me["extra"]["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
    plain = kubectl(lab, "auth", "whoami", f"--as=system:serviceaccount:{ns}:sa")
    assert plain.returncode == 0 and f"system:serviceaccount:{ns}:sa" in plain.stdout


def test_escalation_is_refused(lab, admin, space):
    ns, token = space
    user = f"system:serviceaccount:{ns}:sa"
    admin.rbac.create_namespaced_role(ns, role(ns, "role-writer", [
        {"apiGroups": [RBAC], "resources": ["roles", "rolebindings"], "verbs": ["create", "get"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]))
    admin.rbac.create_namespaced_role_binding(ns, binding(ns, "role-writer", "role-writer"))
    sa = as_token(lab, token)
    try:
        # what it holds it may grant
        sa.rbac.create_namespaced_role(ns, role(ns, "cm-reader", [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]))
        body = forbidden(lambda: sa.rbac.create_namespaced_role(ns, role(ns, "secret-reader", [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}])))
        assert body["message"].startswith(
            f'roles.rbac.authorization.k8s.io "secret-reader" is forbidden: user "{user}" (groups=['
            f'"system:serviceaccounts" "system:serviceaccounts:{ns}" "system:authenticated"]) is attempting to '
            'grant RBAC permissions not currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}')
        # binding the bootstrap `edit` role would grant far more than it holds
        body = forbidden(lambda: sa.rbac.create_namespaced_role_binding(ns, binding(ns, "edit", "edit", "ClusterRole")))
        assert "is attempting to grant RBAC permissions not currently held" in body["message"]
        sa.rbac.create_namespaced_role_binding(ns, binding(ns, "cm", "cm-reader", sa="default"))
    finally:
        sa.close()


def test_bootstrap_roles_are_served(admin):
    names = {r.metadata.name for r in admin.rbac.list_cluster_role().items}
    assert {"cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user"} <= names
    crb = admin.rbac.read_cluster_role_binding("cluster-admin")
    assert [(s.kind, s.name) for s in crb.subjects] == [("Group", "system:masters")]


def test_apply_that_creates_needs_create(lab, admin, space, tmp_path):
    ns, token = space
    user = f"system:serviceaccount:{ns}:sa"
    admin.rbac.create_namespaced_role(ns, role(ns, "patcher", [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]}]))
    admin.rbac.create_namespaced_role_binding(ns, binding(ns, "patcher", "patcher"))
    admin.core.create_namespaced_config_map(ns, {"metadata": {"name": "present"}, "data": {"a": "1"}})
    for name in ("present", "absent"):
        (tmp_path / f"{name}.yaml").write_text(json.dumps({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"a": "2"}}))
    ok = kubectl(lab, "apply", "--server-side", "--force-conflicts", "-f", str(tmp_path / "present.yaml"), token=token)
    assert ok.returncode == 0, ok.stderr
    assert admin.core.read_namespaced_config_map("present", ns).data == {"a": "2"}
    refused = kubectl(lab, "apply", "--server-side", "-f", str(tmp_path / "absent.yaml"), token=token)
    assert refused.returncode == 1
    assert (f'configmaps "absent" is forbidden: User "{user}" cannot create resource "configmaps" in API group "" '
            f'in the namespace "{ns}"') in refused.stderr


def test_aggregated_cluster_roles(lab, admin, space):
    ns, _ = space
    user = f"system:serviceaccount:{ns}:sa"
    admin.rbac.create_namespaced_role_binding(ns, binding(ns, "viewer", "view", kind="ClusterRole"))
    authz = client.AuthorizationV1Api(admin.client)

    def allowed():
        return authz.create_subject_access_review({"spec": {"user": user, "resourceAttributes": {
            "namespace": ns, "verb": "list", "group": "example.com", "resource": "widgets"}}}).status.allowed

    assert allowed() is False
    name = f"{ns}-widgets"
    admin.rbac.create_cluster_role({"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {
        "name": name, "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]})
    try:
        assert allowed() is True  # view aggregates the ClusterRoles labelled aggregate-to-view
    finally:
        admin.rbac.delete_cluster_role(name)
    assert allowed() is False
