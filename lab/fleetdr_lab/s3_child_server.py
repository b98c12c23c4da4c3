"""The lab's S3 child process: moto's WSGI app behind a lean HTTP/1.1 server.

`python -m moto.server` (werkzeug's development server) is what this replaces, because at fleet
scale (100 clusters backing up at once) it spent more CPU around moto than in it:
- werkzeug's dev server sends `Connection: close` on every response, so every S3 request was a new
  TCP connection and a new server thread (plus a 10 ms drain wait after each response);
- moto's `DomainDispatcherApplication` looks up the backend of every request by listing moto's
  package directory and `isdir`-ing each entry (`backends.list_of_moto_modules()`);
- every request is logged to stderr (moto.log).

Same moto application (`DomainDispatcherApplication(create_backend_app)`), same request parsing
(moto's `MotoRequestHandler.make_environ`), same IAM authentication and authorization of every
request; only the transport differs: persistent connections (one thread per client connection,
many requests each), the host -> backend lookup memoised (moto's module list and URL patterns are
fixed for the life of the process), no per-request access log (errors are still logged).

Rook object stores (one port each, their own users and buckets) are served by this process too:
see s3_rgw.py.

Usage (what `s3_service.ObjectStore` runs): python -m fleetdr_lab.s3_child_server -H 127.0.0.1 -p PORT
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                           create_backend_app)
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer

from fleetdr_lab import s3_rgw


class CachedDispatcher(DomainDispatcherApplication):
    """moto's dispatcher with `get_backend_for_host` memoised per host string.

    The answer depends only on the host string, moto's installed modules and its URL patterns, none
    of which change while the server runs. Called under the dispatcher's lock (get_application).
    """

    def __init__(self, create_app):
        super().__init__(create_app)
        self._backend_for_host: dict[Any, Any] = {}

    def get_backend_for_host(self, host):
        try:
            return self._backend_for_host[host]
        except KeyError:
            backend = super().get_backend_for_host(host)
            self._backend_for_host[host] = backend
            return backend


class _BodyReader:
    """`wsgi.input` for a request with a Content-Length: never reads past the body, remembers how
    much is left so the server can drain the rest before reading the next request line."""

    def __init__(self, rfile, length: int):
        self._rfile = rfile
        self.remaining = length

    def _take(self, reader, size) -> bytes:
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = reader(size)
        self.remaining -= len(data)
        if not data:
            self.remaining = 0
        return data

    def read(self, size: int = -1) -> bytes:
        return self._take(self._rfile.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._take(self._rfile.readline, size)

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self) -> bool:
        """Read what the application left of the body; False if the client went away."""
        while self.remaining > 0:
            if not self.read(min(self.remaining, 1 << 20)):
                return False
        return True


class KeepAliveRequestHandler(MotoRequestHandler):
    """moto's request handler with HTTP/1.1 persistent connections and no access log.

    werkzeug's `run_wsgi` always closes the connection (it cannot tell where a request body ends);
    this one reads request bodies through a Content-Length-bounded reader, drains what the app did
    not read and keeps the connection open. Requests with a chunked body, or that fail after the
    response started, close the connection as before.
    """

    protocol_version = "HTTP/1.1"

    def run_wsgi(self) -> None:
        # "Expect: 100-continue" was already answered by http.server's parse_request.
        self.environ = environ = self.make_environ()
        reader = None
        if "wsgi.input_terminated" in environ:
            self.close_connection = True          # chunked request body: no reuse
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
                self.close_connection = True
            reader = _BodyReader(self.rfile, max(length, 0))
            environ["wsgi.input"] = reader
        head = environ["REQUEST_METHOD"] == "HEAD"
        state: dict[str, Any] = {"status": None, "headers": None, "sent": False, "chunked": False}

        def write(data: bytes) -> None:
            if not state["sent"]:
                status, headers = state["status"], state["headers"]
                if status is None:
                    raise AssertionError("write() before start_response")
                code_str, _, msg = status.partition(" ")
                code = int(code_str)
                self.send_response(code, msg)
                keys = set()
                for key, value in headers:
                    if key.lower() == "connection":
                        continue
                    self.send_header(key, value)
                    keys.add(key.lower())
                if not ("content-length" in keys or head or 100 <= code < 200 or code in (204, 304)):
                    state["chunked"] = True
                    self.send_header("Transfer-Encoding", "chunked")
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                state["sent"] = True
            if data and not head:
                if state["chunked"]:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                else:
                    self.wfile.write(data)

        def start_response(status, headers, exc_info=None):
            if exc_info:
                try:
                    if state["sent"]:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif state["headers"] is not None:
                raise AssertionError("Headers already set")
            state["status"], state["headers"] = status, headers
            return write

        def execute(app) -> None:
            result = app(environ, start_response)
            try:
                for data in result:
                    write(data)
                if not state["sent"]:
                    write(b"")
                if state["chunked"]:
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            finally:
                if hasattr(result, "close"):
                    result.close()

        try:
            execute(self.server.app)
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
            return
        except Exception as exc:  # as werkzeug: 500 if nothing was sent yet, log the traceback
            self.close_connection = True
            if not state["sent"]:
                state["status"] = state["headers"] = None
                try:
                    execute(InternalServerError())
                except Exception:
                    pass
            from werkzeug.debug.tbtools import DebugTraceback
            self.server.log("error", f"Error on request:\n{DebugTraceback(exc).render_traceback_text()}")
            return
        if reader is not None and not self.close_connection and not reader.drain():
            self.close_connection = True

    def log_request(self, code="-", size="-") -> None:
        pass

    _date = (0, "")

    def date_time_string(self, timestamp=None) -> str:
        """The Date header, formatted once per second instead of once per response."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        second, text = KeepAliveRequestHandler._date
        if second != now:
            text = super().date_time_string(now)
            KeepAliveRequestHandler._date = (now, text)
        return text


def _server(host: str, port: int, app) -> ThreadedWSGIServer:
    return ThreadedWSGIServer(host, port, app, KeepAliveRequestHandler)


def make_server(host: str, port: int) -> ThreadedWSGIServer:
    """The main port (moto, plus the lab's control of the Rook object stores under /_fleetdr-rgw/);
    each object store gets a port of its own (s3_rgw.Stores)."""
    s3_rgw.install_trust()
    moto = CachedDispatcher(create_backend_app)
    stores = s3_rgw.Stores(host, moto, _server)
    return _server(host, port, s3_rgw.ControlApp(moto, stores, s3_rgw.token_from_env()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto S3/IAM for fleetdr-lab (HTTP/1.1 keep-alive)")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))   # as moto.server: moto may call itself

    def stop(signum, frame):
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    server = make_server(args.host, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
