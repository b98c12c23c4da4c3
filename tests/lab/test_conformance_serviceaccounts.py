"""ServiceAccounts as kube-apiserver and kube-controller-manager serve them: the ServiceAccount
admission plugin, FailedCreate of workload pods it refuses, token Secrets filled by the tokens
controller, TokenRequest (`kubectl create token`) and the authentication of those tokens."""
from __future__ import annotations

import base64
import datetime
import json
import shutil
import subprocess

import pytest
from helpers import cond, deployment, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

CONTEXT = "c1"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def admin(apis):
    """The lab's admin (system:masters) clients."""
    return apis


def token_client(lab, token: str) -> client.ApiClient:
    info = lab.cluster_info(CONTEXT)
    cfg = client.Configuration()
    cfg.host = info.get("server") or f"https://127.0.0.1:{info['port']}"
    cfg.ssl_ca_cert = str(lab.dir / "ca.crt")
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def whoami(lab, token: str) -> dict:
    with token_client(lab, token) as api:
        out = client.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        return api.sanitize_for_serialization(out)["status"]["userInfo"]


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def pod(name: str, sa: str | None = None, **spec) -> dict:
    spec = dict({"containers": [{"name": "app", "image": "nginx:1.27"}]}, **spec)
    if sa:
        spec["serviceAccountName"] = sa
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_pod_naming_a_missing_service_account_is_forbidden(admin, ns):
    with pytest.raises(ApiException) as exc:
        admin.core.create_namespaced_pod(ns, pod("p1", sa="ghost"))
    assert exc.value.status == 403
    body = json.loads(exc.value.body)
    assert body["reason"] == "Forbidden"
    assert body["message"] == (f'pods "p1" is forbidden: error looking up service account {ns}/ghost: '
                               'serviceaccount "ghost" not found')
    # a generateName pod is named by its prefix (the plugin runs before the name is generated)
    gen = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"},
           "spec": {"serviceAccountName": "ghost", "containers": [{"name": "a", "image": "x"}]}}
    with pytest.raises(ApiException) as exc:
        admin.core.create_namespaced_pod(ns, gen)
    assert json.loads(exc.value.body)["message"].startswith('pods "web-" is forbidden: error looking up')


def test_pod_gets_the_default_account_and_the_projected_token_volume(admin, ns):
    created = admin.core.create_namespaced_pod(ns, pod(
        "p2", initContainers=[{"name": "init", "image": "busybox"}]))
    spec = admin.client.sanitize_for_serialization(created)["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    (vol,) = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vol["name"]) == len("kube-api-access-") + 5
    assert vol["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                      "fieldPath": "metadata.namespace"}}]}}]}
    for c in spec["containers"] + spec["initContainers"]:
        assert {"name": vol["name"], "readOnly": True, "mountPath": TOKEN_PATH} in c["volumeMounts"]
    # automount switched off on the pod, or on its ServiceAccount: nothing is mounted
    off = admin.core.create_namespaced_pod(ns, pod("p3", automountServiceAccountToken=False))
    assert not off.spec.volumes and not off.spec.containers[0].volume_mounts
    admin.core.create_namespaced_service_account(ns, {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False})
    quiet = admin.core.create_namespaced_pod(ns, pod("p4", sa="quiet"))
    assert not quiet.spec.volumes


def test_deployment_of_a_missing_account_reports_failed_create(admin, ns):
    admin.apps.create_namespaced_deployment(ns, _with_sa(deployment("web", replicas=2), "robot"))

    def failed_rs():
        items = admin.apps.list_namespaced_replica_set(ns).items
        return items and cond(items[0], "ReplicaFailure") and items[0]
    rs = wait_for(failed_rs, "the ReplicaSet's ReplicaFailure condition")
    c = cond(rs, "ReplicaFailure")
    rs_name = rs.metadata.name
    message = (f'pods "{rs_name}-" is forbidden: error looking up service account {ns}/robot: '
               'serviceaccount "robot" not found')
    assert (c.status, c.reason, c.message) == ("True", "FailedCreate", message)
    events = wait_for(lambda: [e for e in admin.core.list_namespaced_event(ns).items
                               if e.reason == "FailedCreate"], "a FailedCreate event")
    assert events[0].type == "Warning" and events[0].involved_object.kind == "ReplicaSet"
    assert events[0].message == f"Error creating: {message}"
    dep = wait_for(lambda: cond(admin.apps.read_namespaced_deployment("web", ns), "ReplicaFailure")
                   and admin.apps.read_namespaced_deployment("web", ns), "the Deployment's ReplicaFailure")
    assert cond(dep, "ReplicaFailure").message == message
    # once the account exists the controller's retry creates the pods and the condition goes
    admin.core.create_namespaced_service_account(ns, {"metadata": {"name": "robot"}})
    wait_for(lambda: len(admin.core.list_namespaced_pod(ns).items) == 2, "the pods", timeout=30)
    wait_for(lambda: not cond(admin.apps.read_namespaced_replica_set(rs_name, ns), "ReplicaFailure"),
             "the ReplicaFailure condition to go")


def _with_sa(dep: dict, sa: str) -> dict:
    dep["spec"]["template"]["spec"]["serviceAccountName"] = sa
    return dep


def test_token_secret_is_filled_and_authenticates_until_deleted(lab, admin, ns):
    sa = admin.core.create_namespaced_service_account(ns, {"metadata": {"name": "builder"}})
    admin.core.create_namespaced_secret(ns, {
        "metadata": {"name": "builder-token", "annotations": {"kubernetes.io/service-account.name": "builder"}},
        "type": "kubernetes.io/service-account-token"})
    secret = wait_for(lambda: (s := admin.core.read_namespaced_secret("builder-token", ns)).data
                      and "token" in s.data and s, "the token Secret to be filled")
    assert set(secret.data) == {"token", "ca.crt", "namespace"}
    assert base64.b64decode(secret.data["namespace"]).decode() == ns
    assert base64.b64decode(secret.data["ca.crt"]).decode() == (lab.dir / "ca.crt").read_text()
    assert secret.metadata.annotations["kubernetes.io/service-account.uid"] == sa.metadata.uid
    token = base64.b64decode(secret.data["token"]).decode()
    assert claims(token)["sub"] == f"system:serviceaccount:{ns}:builder"
    user = whoami(lab, token)
    assert user["username"] == f"system:serviceaccount:{ns}:builder"
    assert user["groups"] == ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    admin.core.delete_namespaced_secret("builder-token", ns)
    with pytest.raises(ApiException) as exc:
        whoami(lab, token)
    assert exc.value.status == 401 and json.loads(exc.value.body)["message"] == "Unauthorized"


def test_token_secret_goes_with_its_account(admin, ns):
    admin.core.create_namespaced_service_account(ns, {"metadata": {"name": "shortlived"}})
    admin.core.create_namespaced_secret(ns, {
        "metadata": {"name": "sl-token", "annotations": {"kubernetes.io/service-account.name": "shortlived"}},
        "type": "kubernetes.io/service-account-token"})
    wait_for(lambda: (admin.core.read_namespaced_secret("sl-token", ns).data or {}).get("token"), "the token")
    admin.core.delete_namespaced_service_account("shortlived", ns)
    wait_for(lambda: not [s for s in admin.core.list_namespaced_secret(ns).items
                          if s.metadata.name == "sl-token"], "the token Secret to be deleted")


def test_token_request_honours_expiration_and_audiences(lab, admin, ns):
    admin.core.create_namespaced_service_account(ns, {"metadata": {"name": "runner"}})
    tr = admin.core.create_namespaced_service_account_token("runner", ns, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 1200}})
    c = claims(tr.status.token)
    assert c["exp"] - c["iat"] == 1200
    assert tr.status.expiration_timestamp == datetime.datetime.fromtimestamp(c["exp"], datetime.timezone.utc)
    assert tr.spec.expiration_seconds == 1200
    assert c["sub"] == f"system:serviceaccount:{ns}:runner"
    assert c["kubernetes.io"]["namespace"] == ns and c["kubernetes.io"]["serviceaccount"]["name"] == "runner"
    assert c["aud"] == tr.spec.audiences == ["https://kubernetes.default.svc.cluster.local"]
    assert whoami(lab, tr.status.token)["username"] == f"system:serviceaccount:{ns}:runner"
    # a token for another audience is not for the API server
    other = admin.core.create_namespaced_service_account_token("runner", ns, {
        "spec": {"audiences": ["vault"]}})
    assert claims(other.status.token)["aud"] == ["vault"]
    with pytest.raises(ApiException) as exc:
        whoami(lab, other.status.token)
    assert exc.value.status == 401
    with pytest.raises(ApiException) as exc:
        admin.core.create_namespaced_service_account_token("runner", ns, {"spec": {"expirationSeconds": 60}})
    assert exc.value.status == 422 and "may not specify a duration less than 10 minutes" in exc.value.body
    with pytest.raises(ApiException) as exc:
        admin.core.create_namespaced_service_account_token("nobody", ns, {"spec": {}})
    assert exc.value.status == 404


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_create_token_and_deleted_account(lab, admin, ns):
    admin.core.create_namespaced_service_account(ns, {"metadata": {"name": "ci"}})
    out = lab.kubectl("create", "token", "ci", "-n", ns, "--duration=20m")
    token = out.stdout.strip()
    c = claims(token)
    assert c["exp"] - c["iat"] == 1200 and c["sub"] == f"system:serviceaccount:{ns}:ci"
    base = ["kubectl", "--kubeconfig", str(lab.kubeconfig), "--context", CONTEXT, "--token", token]
    me = subprocess.run(base + ["auth", "whoami", "-o", "json"], capture_output=True, text=True,
                        timeout=60, check=True)
    assert json.loads(me.stdout)["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:ci"
    admin.core.delete_namespaced_service_account("ci", ns)
    refused = subprocess.run(base + ["auth", "whoami"], capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr
