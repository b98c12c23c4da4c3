"""module_utils.client: how each cluster's API client is built, and plain-JSON requests on built-in objects
(no cluster needed)."""
import json
import ssl

import pytest

kubernetes = pytest.importorskip("kubernetes")

from ansible_collections.fleetdr.kube.plugins.module_utils import client  # noqa: E402
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ApiError  # noqa: E402


class _ApiServer(object):
    """A loopback HTTP server answering a few core API paths, recording what it was asked."""

    def __init__(self):
        import http.server
        import threading

        self.requests = []
        self.objects = {"/api/v1/namespaces/velero/secrets/creds": {"kind": "Secret", "metadata": {"name": "creds"}, "data": {"cloud": "eA=="}},
                        "/apis/apps/v1/namespaces/velero/deployments/velero": {"kind": "Deployment", "status": {"availableReplicas": 1}}}
        self.fail_next = []  # statuses to answer before the real answer
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                outer.requests.append((self.command, self.path, self.headers.get("Authorization"), body))
                path = self.path.split("?")[0]
                if outer.fail_next:
                    status, payload = outer.fail_next.pop(0), {"kind": "Status", "message": "try later"}
                elif self.command == "POST":
                    status, payload = 201, dict(body, metadata=dict(body["metadata"], resourceVersion="7"))
                elif path in outer.objects:
                    status, payload = 200, outer.objects[path]
                elif path == "/api/v1/namespaces/velero/configmaps":
                    status, payload = 200, {"kind": "ConfigMapList", "items": [{"metadata": {"name": "m"}}]}
                else:
                    status, payload = 404, {"kind": "Status", "message": "not found", "code": 404}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        configuration = kubernetes.client.Configuration()
        configuration.host = "http://127.0.0.1:%d" % self.server.server_address[1]
        configuration.api_key = {"authorization": "Bearer t0ken"}
        self.kube = client.KubeClient(kubernetes.client.ApiClient(configuration), namespace="velero", retries=2)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_server():
    server = _ApiServer()
    yield server
    server.close()


def test_builtin_objects_are_plain_json_requests(api_server):
    kube = api_server.kube
    assert kube.get_secret("creds")["data"] == {"cloud": "eA=="}
    assert kube.get_secret("absent") is None
    assert kube.get_raw("/apis/apps/v1/namespaces/velero/deployments/velero")["status"]["availableReplicas"] == 1
    assert [m["metadata"]["name"] for m in kube.list_configmaps("app=x")] == ["m"]
    created = kube.create_configmap({"metadata": {"name": "n"}, "data": {"a": "b"}})
    assert created["metadata"]["resourceVersion"] == "7"
    assert kube.delete_configmap("gone") is None
    assert kube.namespace_exists("nowhere") is False
    methods_paths = [(m, p) for m, p, auth, body in api_server.requests]
    assert ("GET", "/api/v1/namespaces/velero/configmaps?labelSelector=app%3Dx") in methods_paths
    assert ("POST", "/api/v1/namespaces/velero/configmaps") in methods_paths
    assert ("DELETE", "/api/v1/namespaces/velero/configmaps/gone") in methods_paths
    assert all(auth == "Bearer t0ken" for m, p, auth, body in api_server.requests)
    assert api_server.requests[4][3] == {"metadata": {"name": "n"}, "data": {"a": "b"}}


def test_builtin_requests_retry_transient_errors_and_report_others(api_server):
    api_server.fail_next = [503, 429]
    assert api_server.kube.get_secret("creds")["metadata"]["name"] == "creds"
    assert len(api_server.requests) == 3
    api_server.fail_next = [403]
    with pytest.raises(ApiError) as err:
        api_server.kube.get_secret("creds")
    assert err.value.status == 403 and "Reading Secret creds" in err.value.msg and "try later" in err.value.msg


def kubeconfig(server="https://10.0.0.1:6443", proxy_url=None):
    cluster = {"server": server, "insecure-skip-tls-verify": False}
    if proxy_url:
        cluster["proxy-url"] = proxy_url
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "c1",
        "clusters": [{"name": "c1", "cluster": cluster}],
        "users": [{"name": "u1", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u1"}}],
    }


def clients_with(proxies):
    clients = client.ClusterClients()
    clients.proxies = proxies
    return clients


def test_kubeconfig_server_and_token_reach_the_client():
    api = clients_with({})._api_client({"kubeconfig": kubeconfig()})
    assert api.configuration.host == "https://10.0.0.1:6443"
    assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer secret-token"
    assert not api.configuration.proxy


def test_overrides_are_applied_before_the_connection_pool_is_built():
    api = clients_with({})._api_client({"kubeconfig": kubeconfig(), "validate_certs": False, "host": "https://10.9.9.9"})
    assert api.configuration.host == "https://10.9.9.9"
    assert api.rest_client.pool_manager.connection_pool_kw["cert_reqs"] == ssl.CERT_NONE


def test_proxy_environment_read_once_per_run_applies_by_scheme_and_kubeconfig_proxy_wins():
    proxies = {"https": "http://proxy:3128", "no": "internal.example"}
    api = clients_with(proxies)._api_client({"kubeconfig": kubeconfig()})
    assert api.configuration.proxy == "http://proxy:3128" and api.configuration.no_proxy == "internal.example"
    api = clients_with(proxies)._api_client({"kubeconfig": kubeconfig(proxy_url="http://kc-proxy:8080")})
    assert api.configuration.proxy == "http://kc-proxy:8080"
    api = clients_with(proxies)._api_client({"host": "http://10.0.0.2:8080", "api_key": "t"})
    assert not api.configuration.proxy  # only an https proxy was given
    assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer t"


CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"


def test_kubeconfig_ca_data_reaches_the_client_as_data_and_no_file_is_written(tmp_path, monkeypatch):
    import base64
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the kubernetes loader would write it
    config = kubeconfig()
    config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(CA_PEM.encode()).decode()
    api = clients_with({})._api_client({"kubeconfig": config})
    assert api.configuration.ca_cert_data == CA_PEM and not api.configuration.ssl_ca_cert
    assert api.rest_client.pool_manager.connection_pool_kw["ca_cert_data"] == CA_PEM
    assert list(tmp_path.iterdir()) == []  # Ansible's worker processes skip the loader's atexit clean-up
    assert "certificate-authority-data" in config["clusters"][0]["cluster"]  # the caller's dict is not changed

    api = clients_with({})._api_client({"kubeconfig": config, "ca_cert": "/etc/other-ca.pem"})
    assert api.configuration.ssl_ca_cert == "/etc/other-ca.pem" and not api.configuration.ca_cert_data


def _existing(obj):
    """The API as a create whose answer was lost sees it: POST is a conflict, GET finds ``obj``."""
    def request(method, path, body=None, **kwargs):
        from ansible_collections.fleetdr.kube.plugins.module_utils.transport import HttpStatusError
        assert path.startswith("/apis/velero.io/v1/namespaces/velero/backups")
        if method == "POST":
            raise HttpStatusError(409, "AlreadyExists")
        return obj
    return request


def test_a_create_that_finds_its_own_object_returns_it_and_a_stranger_is_a_conflict():
    body = {"metadata": {"name": "nightly-c1", "labels": {"fleetdr.kube/operation-name": "nightly"}}, "spec": {}}
    kube = client.KubeClient(None)
    kube._json_request = _existing({"metadata": {"name": "nightly-c1", "labels": {"fleetdr.kube/operation-name": "nightly", "x": "y"}}})
    assert kube.create("backups", body)["metadata"]["labels"]["x"] == "y"
    kube._json_request = _existing({"metadata": {"name": "nightly-c1", "labels": {"fleetdr.kube/operation-name": "other"}}})
    with pytest.raises(ApiError) as caught:
        kube.create("backups", body)
    assert caught.value.status == 409
