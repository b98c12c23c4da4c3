"""module_utils.transport: HTTP/1.1 requests and watch streams on kept-alive connections, against a
loopback server that answers exactly as scripted (no cluster needed)."""
import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
import types

import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils.retries import is_transient
from ansible_collections.fleetdr.kube.plugins.module_utils.transport import HttpStatusError, HttpTransport, watch_events


def _listen(handler):
    """A loopback listener that ``handler(listener)`` serves on a thread of its own."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    threading.Thread(target=handler, args=(listener,), daemon=True).start()
    return listener, listener.getsockname()[1]


class ScriptedServer(object):
    """Accepts connections; each request gets the next raw answer of ``answers`` (bytes, or a
    callable given the request that returns bytes; None closes the connection without answering)."""

    def __init__(self, answers, close_after_each=False, tls=None):
        self.answers = list(answers)
        self.close_after_each = close_after_each
        self.tls = tls  # a server-side SSLContext: TLS on every connection
        self.requests = []  # (connection number, request head text, body bytes)
        self.connections = 0
        self.resumed = []  # per TLS connection: did the client resume an earlier TLS session?
        self.listener, self.port = _listen(self._serve)

    def _serve(self, listener):
        while True:
            try:
                conn, _addr = listener.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):  # the client refused our certificate, or we refused its
                    conn.close()
                    continue
                self.resumed.append(conn.session_reused)
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn, self.connections), daemon=True).start()

    def _connection(self, conn, number):
        reader = conn.makefile("rb")
        with conn:
            while self.answers:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                text = head.decode("latin-1")
                length = next((int(line.split(":", 1)[1]) for line in text.split("\r\n") if line.lower().startswith("content-length:")), 0)
                body = reader.read(length) if length else b""
                self.requests.append((number, text, body))
                answer = self.answers.pop(0)
                if callable(answer):
                    answer = answer(text)
                if answer is None:
                    return
                for piece in answer if isinstance(answer, list) else [answer]:  # a list: pieces sent apart
                    conn.sendall(piece)
                    if isinstance(answer, list):
                        time.sleep(0.05)
                if self.close_after_each:
                    return

    def close(self):
        self.listener.close()


def transport_for(port, **settings):
    values = dict(host="http://127.0.0.1:%d" % port, verify_ssl=True, ssl_ca_cert=None, ca_cert_data=None, assert_hostname=None,
                  cert_file=None, key_file=None, tls_server_name=None, proxy=None, no_proxy=None, proxy_headers=None)
    values.update(settings)
    configuration = types.SimpleNamespace(**values)
    configuration.auth_settings = lambda: {"BearerToken": {"in": "header", "key": "authorization", "value": "Bearer t0ken"}}
    return HttpTransport(configuration, user_agent="fleetdr-test/1")


def json_answer(obj, status="200 OK", extra=""):
    data = json.dumps(obj).encode()
    return ("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (status, len(data), extra)).encode() + data


def chunked_answer(pieces, status="200 OK"):
    out = ("HTTP/1.1 %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % status).encode()
    for piece in pieces:
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


@pytest.fixture
def serve():
    servers = []

    def start(answers, **kwargs):
        server = ScriptedServer(answers, **kwargs)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.close()


def test_requests_share_one_kept_alive_connection_and_carry_auth_and_body(serve):
    server = serve([json_answer({"a": 1}), chunked_answer([b'{"items": [', b'1, 2]}']), json_answer({"ok": True}, "201 Created")])
    transport = transport_for(server.port)
    assert json.loads(transport.request("GET", "/api/v1/namespaces", query={"labelSelector": "app=x"})[2]) == {"a": 1}
    assert json.loads(transport.request("GET", "/api/v1/pods")[2]) == {"items": [1, 2]}
    status, _headers, data = transport.request("PATCH", "/apis/x/v1/things/t", body={"spec": {"n": 1}},
                                               content_type="application/apply-patch+yaml")
    assert status == 201 and json.loads(data) == {"ok": True}
    assert server.connections == 1
    first, _second, patch = [head for _n, head, _body in server.requests]
    assert first.startswith("GET /api/v1/namespaces?labelSelector=app%3Dx HTTP/1.1\r\n")
    assert "authorization: Bearer t0ken" in first and "Host: 127.0.0.1:%d" % server.port in first and "User-Agent: fleetdr-test/1" in first
    assert "Content-Type: application/apply-patch+yaml" in patch and json.loads(server.requests[2][2]) == {"spec": {"n": 1}}


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(serve):
    server = serve([json_answer({"n": 1}), json_answer({"n": 2})], close_after_each=True)
    transport = transport_for(server.port)
    assert json.loads(transport.request("GET", "/a")[2]) == {"n": 1}
    assert json.loads(transport.request("GET", "/b")[2]) == {"n": 2}
    assert server.connections == 2 and [head.split()[1] for _n, head, _b in server.requests] == ["/a", "/b"]


def test_http_1_0_and_close_delimited_answers_are_read_to_the_end_and_not_reused(serve):
    server = serve([b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"old": true}', json_answer({"new": True})],
                   close_after_each=True)
    transport = transport_for(server.port)
    assert json.loads(transport.request("GET", "/a")[2]) == {"old": True}
    assert transport._idle == []
    assert json.loads(transport.request("GET", "/b")[2]) == {"new": True}


def test_an_error_answer_carries_status_body_and_headers_and_keeps_the_connection(serve):
    server = serve([json_answer({"kind": "Status", "message": "slow down"}, "429 Too Many Requests", "Retry-After: 3\r\n"),
                    json_answer({"fine": 1})])
    transport = transport_for(server.port)
    with pytest.raises(HttpStatusError) as caught:
        transport.request("GET", "/x")
    assert caught.value.status == 429 and caught.value.reason == "Too Many Requests"
    assert json.loads(caught.value.body)["message"] == "slow down" and caught.value.headers["retry-after"] == "3"
    assert json.loads(transport.request("GET", "/x")[2]) == {"fine": 1} and server.connections == 1


def test_a_head_split_across_reads_with_bare_line_ends_and_a_1xx_before_it_is_read_whole(serve):
    # The head usually arrives in one piece and is split out of the read buffer; here it comes in
    # three, so the line-by-line path reads it.
    server = serve([[b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Ty",
                     b"pe: application/json\nX-Seen: 1\r\nX-Seen: 2\r\nContent-Length: 8\r\n",
                     b"\r\n{\"a\": 1}"], json_answer({"b": 2})])
    transport = transport_for(server.port)
    status, headers, data = transport.request("GET", "/split")
    assert (status, headers["x-seen"], headers["content-type"], json.loads(data)) == (200, "1, 2", "application/json", {"a": 1})
    assert json.loads(transport.request("GET", "/whole")[2]) == {"b": 2} and server.connections == 1


def test_a_bare_lf_head_is_not_taken_to_end_at_a_crlf_pair_in_its_body(serve):
    body = b'{"a": 1}\r\n\r\n'
    server = serve([b"HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: %d\n\n" % len(body) + body])
    transport = transport_for(server.port)
    status, headers, data = transport.request("GET", "/lf")
    assert (status, headers["content-type"], data) == (200, "application/json", body)


def test_an_answer_cut_short_is_a_connection_error_not_a_short_body(serve):
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\"", None], close_after_each=True)
    transport = transport_for(server.port)
    with pytest.raises(ConnectionError):
        transport.request("GET", "/x")
    assert server.connections == 1  # not sent again: the server may have acted on it


def test_watch_lines_are_whole_events_across_chunks_and_an_error_event_is_raised(serve):
    added = json.dumps({"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}}).encode()
    gone = json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}).encode()
    server = serve([chunked_answer([added[:10], added[10:] + b"\n" + added[:4], added[4:] + b"\n"]), chunked_answer([gone + b"\n"])])
    transport = transport_for(server.port)
    events = list(watch_events(transport, "/api/v1/pods", {"watch": "true"}, 5))
    assert [(kind, obj["metadata"]["name"]) for kind, obj in events] == [("ADDED", "a"), ("ADDED", "a")]
    with pytest.raises(HttpStatusError) as caught:
        list(watch_events(transport, "/api/v1/pods", {"watch": "true", "resourceVersion": "1"}, 5))
    assert caught.value.status == 410
    assert server.connections == 2  # each watch on a connection of its own


def test_requests_go_through_an_http_proxy_tunnel_with_its_headers_unless_no_proxy_exempts_the_host(serve):
    api = serve([json_answer({"via": "tunnel"})])
    seen = []

    def tunnel(head):
        seen.append(head)
        relay = socket.create_connection(("127.0.0.1", api.port))
        return b"HTTP/1.1 200 Connection established\r\n\r\n", relay

    proxy = _TunnelProxy(tunnel)
    try:
        transport = transport_for(api.port, proxy="http://127.0.0.1:%d" % proxy.port, proxy_headers={"Proxy-Authorization": "Basic eDp5"})
        assert json.loads(transport.request("GET", "/through")[2]) == {"via": "tunnel"}
        assert seen[0].startswith("CONNECT 127.0.0.1:%d HTTP/1.1" % api.port) and "Proxy-Authorization: Basic eDp5" in seen[0]
        assert transport_for(api.port, proxy="http://127.0.0.1:1", no_proxy="127.0.0.1").proxy is None
    finally:
        proxy.close()


class _TunnelProxy(object):
    """A CONNECT proxy: answers the CONNECT head with what ``decide`` returns, then relays bytes."""

    def __init__(self, decide):
        self.decide = decide
        self.listener, self.port = _listen(self._serve)

    def _serve(self, listener):
        try:
            client, _addr = listener.accept()
        except OSError:
            return
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += client.recv(1)
        answer, upstream = self.decide(head.decode("latin-1"))
        client.sendall(answer)
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source, target):
        while True:
            data = source.recv(65536)
            if not data:
                return
            target.sendall(data)

    def close(self):
        self.listener.close()


def _pki(tmp_path):
    """A CA, a serving certificate for 127.0.0.1 and api.internal, and a client certificate (files in tmp_path)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(name, issuer=None, ca=False, sans=(), usage=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer[0].subject if issuer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
        return cert, key

    def write(name, cert, key):
        (tmp_path / (name + ".crt")).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp_path / (name + ".key")).write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                                   serialization.NoEncryption()))
        return str(tmp_path / (name + ".crt")), str(tmp_path / (name + ".key"))

    ca = issue("test-ca", ca=True)
    server = issue("apiserver", ca, sans=(x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("api.internal")),
                   usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = issue("fleet-operator", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = issue("another-ca", ca=True)
    paths = {"ca": write("ca", *ca), "server": write("server", *server), "client": write("client", *client),
             "stranger": write("stranger", *stranger)}
    return paths, ca[0].public_bytes(serialization.Encoding.PEM).decode()


def test_tls_verifies_the_server_presents_a_client_certificate_and_a_wrong_ca_is_not_retried(serve, tmp_path):
    paths, ca_pem = _pki(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*paths["server"])
    tls.load_verify_locations(paths["ca"][0])
    tls.verify_mode = ssl.CERT_REQUIRED  # like an API server that takes client certificates
    server = serve([json_answer({"tls": 1}), json_answer({"tls": 2}), json_answer({"tls": 2}), json_answer({"tls": 3})], tls=tls)
    host = "https://127.0.0.1:%d" % server.port
    # CA as data (a kubeconfig's certificate-authority-data), client certificate and key as files
    transport = transport_for(server.port, host=host, ca_cert_data=ca_pem, cert_file=paths["client"][0], key_file=paths["client"][1])
    assert json.loads(transport.request("GET", "/version")[2]) == {"tls": 1}
    # a second connection (a watch has its own) resumes the first one's TLS session
    assert list(transport.lines("/api/v1/pods", {"watch": "true"})) == [b'{"tls": 2}']
    assert server.resumed == [False, True]
    # the certificate names api.internal, not the address dialled: tls_server_name checks that name instead
    named = transport_for(server.port, host=host, ssl_ca_cert=paths["ca"][0], tls_server_name="api.internal",
                          cert_file=paths["client"][0], key_file=paths["client"][1])
    assert json.loads(named.request("GET", "/version")[2]) == {"tls": 2}
    wrong = transport_for(server.port, host=host, ssl_ca_cert=paths["stranger"][0], cert_file=paths["client"][0],
                          key_file=paths["client"][1])
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        wrong.request("GET", "/version")
    assert not is_transient(caught.value)  # a server we must not trust is not worth retrying
    unverified = transport_for(server.port, host=host, verify_ssl=False, cert_file=paths["client"][0], key_file=paths["client"][1])
    assert json.loads(unverified.request("GET", "/version")[2]) == {"tls": 3}
    # Clusters with the same trust settings share one SSLContext (the wrong CA above was still refused
    # after one for the right CA existed); other settings get contexts of their own.
    again = transport_for(server.port, host=host, ca_cert_data=ca_pem, cert_file=paths["client"][0], key_file=paths["client"][1])
    assert again._ssl_context() is transport._ssl_context()
    assert len(set(id(t._ssl_context()) for t in (transport, named, wrong, unverified))) == 4


def test_auth_headers_are_read_again_once_the_reuse_window_has_passed(serve, monkeypatch):
    """The Configuration's auth settings (the kubeconfig loader's refresh hook renews tokens) are read
    at most once per AUTH_REUSE_SECONDS; a token renewed after that is the one sent."""
    from ansible_collections.fleetdr.kube.plugins.module_utils import transport as transport_module
    now = [1000.0]
    monkeypatch.setattr(transport_module.time, "monotonic", lambda: now[0])
    server = serve([json_answer({})] * 3)
    transport = transport_for(server.port)
    reads = []

    def auth_settings():
        reads.append(now[0])
        return {"BearerToken": {"in": "header", "key": "authorization", "value": "Bearer token-%d" % len(reads)}}
    transport.configuration.auth_settings = auth_settings
    transport.request("GET", "/api/v1/pods")
    now[0] += transport_module.AUTH_REUSE_SECONDS / 2
    transport.request("GET", "/api/v1/pods")
    now[0] += transport_module.AUTH_REUSE_SECONDS
    transport.request("GET", "/api/v1/pods")
    assert reads == [1000.0, 1000.0 + 1.5 * transport_module.AUTH_REUSE_SECONDS]
    sent = [text.split("authorization: ", 1)[1].split("\r\n", 1)[0] for _n, text, _body in server.requests]
    assert sent == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]
