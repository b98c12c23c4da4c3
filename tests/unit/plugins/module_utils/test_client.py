"""Retries and error translation of module_utils.client (no cluster needed)."""
import json

import pytest

kubernetes = pytest.importorskip("kubernetes")

from kubernetes.client.rest import ApiException  # noqa: E402

from ansible_collections.fleetdr.kube.plugins.module_utils import client  # noqa: E402
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ApiError  # noqa: E402


def api_exception(status, message="boom", headers=None):
    exc = ApiException(status=status, reason="Reason%d" % status)
    exc.body = json.dumps({"kind": "Status", "message": message})
    exc.headers = headers or {}
    return exc


class Flaky(object):
    def __init__(self, failures, result="ok"):
        self.failures = list(failures)
        self.calls = 0
        self.result = result

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


def test_transient_failures_are_retried_then_succeed():
    sleeps = []
    fn = Flaky([api_exception(503), api_exception(429, headers={"Retry-After": "2"}), ConnectionResetError("reset")])
    assert client.with_retries(fn, "Reading x", sleep=sleeps.append) == "ok"
    assert fn.calls == 4 and len(sleeps) == 3
    assert sleeps[1] >= 2  # Retry-After is honoured


def test_retries_are_bounded():
    fn = Flaky([api_exception(500)] * 10)
    with pytest.raises(ApiError) as err:
        client.with_retries(fn, "Creating backups b1", retries=2, sleep=lambda s: None)
    assert fn.calls == 3
    assert err.value.status == 500 and "Creating backups b1 failed: boom (HTTP 500)" == err.value.msg


def test_client_errors_are_not_retried_and_keep_the_server_message():
    fn = Flaky([api_exception(422, "spec.ttl: Invalid value")])
    with pytest.raises(ApiError) as err:
        client.with_retries(fn, "Creating backups b1", sleep=lambda s: None)
    assert fn.calls == 1 and err.value.status == 422 and "spec.ttl: Invalid value" in err.value.msg


def test_other_exceptions_propagate_unchanged():
    fn = Flaky([KeyError("x")])
    with pytest.raises(KeyError):
        client.with_retries(fn, "x", sleep=lambda s: None)


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
