# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The HTTP/1.1 an API server speaks, on kept-alive connections: JSON requests and watch streams.

Who to reach and how to authenticate stays the kubernetes library's (its Configuration, built from
a kubeconfig by kubernetes.core or ClusterClients); only the wire is here. Through the kubernetes
client and urllib3 a request cost about 0.6 ms of controller CPU (0.28 ms through http.client, most
of it parsing headers with the email package), and a fresh install makes about 25 per cluster; on
one kept-alive connection with only what the API server uses (Content-Length or chunked bodies,
JSON, keep-alive) it costs about 0.1 ms. TLS verification, client certificates, the server name
and HTTP(S) or SOCKS proxies follow the Configuration as the kubernetes client applies them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools
import json
import os
import socket
import ssl
import threading
import time

try:
    from urllib.parse import urlencode, urlsplit
    from urllib.request import proxy_bypass_environment
except ImportError:  # pragma: no cover - Python 2 controllers are not supported
    from urllib import urlencode, proxy_bypass_environment
    from urlparse import urlsplit

_MAX_LINE = 65536
_NO_BODY_STATUSES = (204, 304)
# The Configuration's auth settings call the kubeconfig loader's refresh hook, which re-copies every
# setting onto the Configuration (about 0.1 ms, most of a request's cost). The headers it gives are
# kept this long: the loader itself renews a token 5 minutes before it expires
# (kubernetes/config/kube_config.py, EXPIRY_SKEW_PREVENTION_DELAY).
AUTH_REUSE_SECONDS = 1.0


class HttpStatusError(Exception):
    """The API server answered outside 2xx: ``status``, ``reason``, ``body`` (text) and ``headers``."""

    def __init__(self, status, reason, body=None, headers=None):
        super(HttpStatusError, self).__init__("({0}) {1}".format(status, reason))
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = headers or {}


class _CutShort(ConnectionResetError):
    """The server closed the connection in the middle of an answer (not an idle connection it closed)."""


class _Connection(object):
    """One socket (TLS or not) and the buffered reader over it."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.timeout = sock.gettimeout()

    def set_timeout(self, timeout):
        if timeout != self.timeout:  # each change is a system call
            self.sock.settimeout(timeout)
            self.timeout = timeout

    def close(self):
        for closing in (self.reader.close, self.sock.close):
            try:
                closing()
            except (OSError, ValueError):
                pass

    def readline(self):
        line = self.reader.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise ConnectionError("an HTTP header line from the API server is longer than {0} bytes".format(_MAX_LINE))
        return line

    def _head_lines(self):
        """The lines of one answer head, without their line ends. An API server's head arrives in one
        piece: it is split out of the read buffer whole (reading it line by line was about a tenth
        of a request's CPU); a head split across reads is read line by line."""
        buffered = self.reader.peek(_MAX_LINE)
        end = buffered.find(b"\r\n\r\n")
        if end >= 0 and b"\n\n" not in buffered[:end]:  # not a bare-LF head ending before it
            self.reader.read(end + 4)
            return buffered[:end].split(b"\r\n")
        lines = []
        while True:
            line = self.readline()
            if not line:
                if lines:
                    raise _CutShort("the API server closed the connection in the middle of an answer")
                raise ConnectionResetError("the API server closed the connection before answering")
            if line in (b"\r\n", b"\n"):
                return lines
            lines.append(line.rstrip(b"\r\n"))

    def read_head(self):
        """(status, reason, headers with lower-case names, keep-alive?); 1xx answers are skipped."""
        while True:
            lines = self._head_lines()
            parts = lines[0].split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise ConnectionError("not an HTTP answer from the API server: {0!r}".format(lines[0][:80]))
            status = int(parts[1])
            headers = {}
            for line in lines[1:]:
                name, _sep, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip()
                headers[name] = headers[name] + ", " + value if name in headers else value
            if 100 <= status < 200:
                continue
            connection = headers.get("connection", "").lower()
            keep_alive = "keep-alive" in connection if parts[0] == b"HTTP/1.0" else "close" not in connection
            return status, parts[2].strip().decode("latin-1") if len(parts) > 2 else "", headers, keep_alive

    def chunks(self, headers):
        """The body's pieces as they arrive; None ends them, with the connection reusable."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size = int(self.readline().split(b";", 1)[0].strip() or b"x", 16)
                if size == 0:
                    while self.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return
                data = self.reader.read(size)
                if len(data) < size or self.reader.read(2) not in (b"\r\n", b"\n"):
                    raise _CutShort("the API server closed the connection in the middle of an answer")
                yield data
        elif "content-length" in headers:
            length = int(headers["content-length"])
            data = self.reader.read(length) if length else b""
            if len(data) < length:
                raise _CutShort("the API server closed the connection in the middle of an answer")
            yield data
        else:
            while True:  # until the server closes the connection
                data = self.reader.read1(65536)
                if not data:
                    return
                yield data


class HttpTransport(object):
    """Requests to one API server on kept-alive connections (safe to share between threads).

    Watches take a connection of their own, closed when the watch ends, so a request made while a
    watch runs never waits behind it."""

    def __init__(self, configuration, user_agent=None):
        self.configuration = configuration
        url = urlsplit(configuration.host)
        self.secure = url.scheme == "https"
        self.hostname = url.hostname
        self.port = url.port or (443 if self.secure else 80)
        self.base_path = url.path.rstrip("/")
        self.host_header = url.netloc.rpartition("@")[2]
        self.proxy = None
        proxy = getattr(configuration, "proxy", None)
        if proxy and not _bypass_proxy(self.hostname, self.port, getattr(configuration, "no_proxy", None)):
            self.proxy = urlsplit(proxy)
        self._context = None
        self._idle = []
        self._lock = threading.Lock()
        self._auth = (None, "")  # (monotonic time read, the auth header lines)
        # The first connection's TLS session: later connections (each watch has its own) resume it
        # instead of verifying the server's certificate again (about 0.5 ms of CPU each side).
        self._tls_session = None
        self._fixed_head = "\r\nHost: {0}{1}".format(self.host_header, "\r\nUser-Agent: " + user_agent if user_agent else "")

    # ---- connections
    def _ssl_context(self):
        if self._context is None:
            configuration = self.configuration
            trust = (bool(configuration.verify_ssl), _path(configuration.ssl_ca_cert), configuration.ca_cert_data or None,
                     configuration.assert_hostname is False, _path(configuration.cert_file), _path(configuration.key_file))
            self._context = _CONTEXTS.get(trust) or _CONTEXTS.setdefault(trust, _new_ssl_context(*trust))
        return self._context

    def _dial(self, connect_timeout):
        if self.proxy is None:
            return socket.create_connection((self.hostname, self.port), connect_timeout)
        if self.proxy.scheme.startswith("socks"):
            import socks  # PySocks, as urllib3's SOCKS support needs it too
            return socks.create_connection((self.hostname, self.port), connect_timeout, proxy_type=socks.PROXY_TYPE_SOCKS5
                                           if self.proxy.scheme.startswith("socks5") else socks.PROXY_TYPE_SOCKS4,
                                           proxy_addr=self.proxy.hostname, proxy_port=self.proxy.port or 1080,
                                           proxy_rdns=self.proxy.scheme in ("socks5h", "socks4a"),
                                           proxy_username=self.proxy.username, proxy_password=self.proxy.password)
        sock = socket.create_connection((self.proxy.hostname, self.proxy.port or (443 if self.proxy.scheme == "https" else 80)),
                                        connect_timeout)
        if self.proxy.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.proxy.hostname)
        # A tunnel (CONNECT) for TLS and plain HTTP alike: the request target stays the API path.
        tunnel = _Connection(sock)
        lines = ["CONNECT {0}:{1} HTTP/1.1".format(self.hostname, self.port), "Host: {0}:{1}".format(self.hostname, self.port)]
        lines += ["{0}: {1}".format(k, v) for k, v in (getattr(self.configuration, "proxy_headers", None) or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        status, reason, _headers, _keep = tunnel.read_head()
        if status != 200:
            tunnel.close()
            raise ConnectionError("the proxy {0} refused a tunnel to {1}:{2}: {3} {4}".format(
                self.proxy.hostname, self.hostname, self.port, status, reason))
        return sock

    def _connect(self, connect_timeout):
        sock = self._dial(connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.secure:
                server_name = getattr(self.configuration, "tls_server_name", None) or self.hostname
                sock = self._ssl_context().wrap_socket(sock, server_hostname=server_name, session=self._resumable_session())
        except Exception:
            sock.close()
            raise
        return _Connection(sock)

    def _resumable_session(self):
        """The TLS session of a connection that has had an answer (a TLS 1.3 ticket comes after the
        handshake), read when a second connection is opened: reading it costs about 0.2 ms (Python
        copies it), which a cluster reached over one connection does not pay."""
        if self._tls_session is None:
            with self._lock:
                answered = self._idle[-1] if self._idle else None
            if answered is not None:
                self._tls_session = answered.sock.session
        return self._tls_session

    def _take(self, connect_timeout):
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(connect_timeout), False

    def _give_back(self, connection):
        with self._lock:
            self._idle.append(connection)

    # ---- requests
    def _auth_lines(self):
        read_at, lines = self._auth
        now = time.monotonic()
        if read_at is None or now - read_at >= AUTH_REUSE_SECONDS:
            lines = "".join("\r\n{0}: {1}".format(setting["key"], setting["value"])
                            for setting in self.configuration.auth_settings().values()
                            if setting.get("in") == "header" and setting.get("value"))
            self._auth = (now, lines)
        return lines

    def _head(self, method, path, query, content_type, length, accept):
        target = self.base_path + path + ("?" + _query_string(query) if query else "")
        body_lines = "" if length is None else "\r\nContent-Type: {0}\r\nContent-Length: {1}".format(content_type, length)
        return "{0} {1} HTTP/1.1{2}\r\nAccept: {3}{4}{5}\r\n\r\n".format(
            method, target, self._fixed_head, accept, self._auth_lines(), body_lines).encode("latin-1")

    @staticmethod
    def _timeouts(timeout):
        if isinstance(timeout, (tuple, list)):
            return timeout[0], timeout[1]
        return timeout, timeout

    def _send(self, method, path, query, body, content_type, accept, timeout, dedicated=False):
        """Send one request; (connection, status, reason, headers, keep-alive) once the head is read."""
        connect_timeout, read_timeout = self._timeouts(timeout)
        if body is not None and not isinstance(body, bytes):
            body = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
        data = self._head(method, path, query, content_type, None if body is None else len(body), accept) + (body or b"")
        while True:
            connection, reused = (self._connect(connect_timeout), False) if dedicated else self._take(connect_timeout)
            try:
                connection.set_timeout(read_timeout)
                connection.sock.sendall(data)
                return (connection,) + connection.read_head()
            except (ConnectionError, ssl.SSLEOFError) as exc:
                connection.close()
                # A kept-alive connection the server closed while it was idle: once more on a new one.
                if not reused or isinstance(exc, _CutShort):
                    raise
            except BaseException:
                connection.close()
                raise

    def request(self, method, path, query=None, body=None, content_type="application/json", timeout=None, accept="application/json"):
        """(status, headers, body bytes) of one request; raises HttpStatusError outside 2xx."""
        connection, status, reason, headers, keep_alive = self._send(method, path, query, body, content_type, accept, timeout)
        try:
            data = b"".join(connection.chunks(headers)) if method != "HEAD" and status not in _NO_BODY_STATUSES else b""
        except BaseException:
            connection.close()
            raise
        if keep_alive and ("content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()):
            self._give_back(connection)
        else:
            connection.close()
        if not 200 <= status <= 299:
            raise HttpStatusError(status, reason, data.decode("utf-8", "replace"), headers)
        return status, headers, data

    def lines(self, path, query=None, timeout=None):
        """The lines of a streamed GET (a watch), on a connection of its own closed at the end."""
        connection, status, reason, headers, _keep_alive = self._send("GET", path, query, None, None, "application/json", timeout,
                                                                      dedicated=True)
        try:
            if not 200 <= status <= 299:
                raise HttpStatusError(status, reason, b"".join(connection.chunks(headers)).decode("utf-8", "replace"), headers)
            pending = b""
            for chunk in connection.chunks(headers):
                pending += chunk
                if b"\n" not in chunk:
                    continue
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    if line.strip():
                        yield line
            if pending.strip():
                yield pending
        finally:
            connection.close()


# One SSLContext per distinct trust setting for the run: creating one and loading its CA costs about
# 0.4 ms, and clusters reached through one gateway or issued by one CA share it (contexts are
# thread-safe; each connection still checks its own server name).
_CONTEXTS = {}


def _new_ssl_context(verify, cafile, cadata, no_hostname_check, cert_file, key_file):
    if verify:
        context = ssl.create_default_context(cafile=cafile, cadata=cadata)
        if no_hostname_check:
            context.check_hostname = False
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


@functools.lru_cache(maxsize=512)
def _encoded(items):
    return urlencode(items)


def _query_string(query):
    """``query`` URL-encoded; the ones a run repeats (fieldManager, label selectors) encoded once."""
    try:
        return _encoded(tuple(query.items()))
    except TypeError:  # a list value
        return urlencode(query)


def _path(value):
    """A file option as a path (``~`` expanded, as the kubernetes client's urllib3 pool did), or None."""
    return os.path.expanduser(value) if value else None


def _bypass_proxy(hostname, port, no_proxy):
    """True when ``no_proxy`` (comma-separated hosts, domains, ``*``) exempts the API server."""
    if not no_proxy:
        return False
    return bool(proxy_bypass_environment("{0}:{1}".format(hostname, port), {"no": no_proxy}))


def watch_events(transport, path, query, timeout):
    """(type, object) of each watch event; an ERROR event raises HttpStatusError with its code (410: re-list)."""
    for line in transport.lines(path, query, timeout):
        event = json.loads(line)
        if event.get("type") == "ERROR":
            status = event.get("object") or {}
            raise HttpStatusError(status.get("code") or 500, status.get("reason") or "watch error", json.dumps(status))
        yield event.get("type"), event.get("object")
