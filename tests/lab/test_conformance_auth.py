"""Authentication, TLS and injected faults of a lab cluster, seen by real HTTPS clients."""
from __future__ import annotations

import datetime
import json

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes.client.rest import ApiException


@pytest.fixture(scope="module")
def target(lab):
    """(server URL, token, CA path) of the last cluster, so faults spare c1."""
    info = lab.cluster_info(lab.clusters[-1])
    server = info.get("server") or f"https://127.0.0.1:{info['port']}"
    return server, info["token"], str(lab.dir / "ca.crt"), lab.clusters[-1]


def http(ca_path=None, verify=True):
    if not verify:
        return urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False)
    return urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=ca_path, retries=False)


def get(pool, url, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = pool.request("GET", url, headers=headers, timeout=10)
    return resp.status, resp.headers, resp.data.decode()


def test_requests_without_token_are_unauthorized(target):
    server, token, ca, _ = target
    status, headers, body = get(http(ca), f"{server}/api/v1/namespaces")
    assert status == 401
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": "Unauthorized",
                                "reason": "Unauthorized", "code": 401}


def test_wrong_token_is_unauthorized_everywhere(target):
    server, token, ca, _ = target
    for path in ("/api/v1/namespaces", "/apis", "/version"):
        status, _, body = get(http(ca), f"{server}{path}", token="not-the-token")
        assert status == 401 and json.loads(body)["reason"] == "Unauthorized"


def test_public_info_is_readable_anonymously(target):
    server, token, ca, _ = target
    status, _, body = get(http(ca), f"{server}/version")
    assert status == 200 and json.loads(body)["gitVersion"].startswith("v1.32.")
    for path in ("/healthz", "/livez", "/readyz"):
        assert get(http(ca), f"{server}{path}")[::2] == (200, "ok")


def test_right_token_and_ca_work_through_the_typed_client(target):
    server, token, ca, _ = target
    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = server, ca
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as api:
        names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert "kube-system" in names


def _other_ca(path) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-lab-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_with_wrong_ca_fails_and_verify_off_works(target, tmp_path):
    server, token, _, _ = target
    with pytest.raises(urllib3.exceptions.SSLError):
        get(http(_other_ca(tmp_path / "other-ca.crt")), f"{server}/version")
    status, _, _ = get(http(verify=False), f"{server}/api/v1/namespaces", token=token)
    assert status == 200

    cfg = client.Configuration()
    cfg.host, cfg.verify_ssl = server, False
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as api:
        assert client.VersionApi(api).get_code().minor == "32"


@pytest.fixture
def faulty(lab, target):
    name = target[3]
    yield lambda *args: lab.cli("fault", name, *args)
    lab.cli("fault", name, "clear")


def test_injected_error_faults(target, faulty):
    server, token, ca, _ = target
    faulty("errors", "1", "429")
    status, headers, body = get(http(ca), f"{server}/api/v1/namespaces", token=token)
    assert status == 429 and headers["Retry-After"] == "1"
    assert json.loads(body)["reason"] == "TooManyRequests"

    faulty("errors", "1", "503")
    status, _, body = get(http(ca), f"{server}/api/v1/namespaces", token=token)
    assert status == 503 and json.loads(body)["code"] == 503

    faulty("errors", "0")
    assert get(http(ca), f"{server}/api/v1/namespaces", token=token)[0] == 200


def test_latency_fault_still_answers(target, faulty):
    server, token, ca, _ = target
    faulty("latency", "50")
    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = server, ca
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as api:
        assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"


def test_typed_client_sees_fault_as_api_exception(target, faulty):
    server, token, ca, _ = target
    faulty("errors", "1", "500")
    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = server, ca
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as api:
        with pytest.raises(ApiException) as exc:
            client.CoreV1Api(api).list_namespace()
    assert exc.value.status == 500
    assert json.loads(exc.value.body)["reason"] == "InternalError"
