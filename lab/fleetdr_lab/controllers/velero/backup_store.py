"""A BSL-scoped object store client (the emulated `velero.io/aws` ObjectStore plugin + BackupStore).

Built from the BackupStorageLocation and its credentials Secret (spec.credential, or the server's
default `cloud-credentials` / key `cloud`, which `velero install` mounts as AWS_SHARED_CREDENTIALS_FILE).
Every method here is blocking: call them through `run_blocking` (one bounded thread pool shared by
all clusters) so the loop never blocks. Single-object calls go out as SigV4-signed HTTP on kept-alive
connections (`SignedHttp`); everything else, and every call that did not succeed that way, is boto3.
Error texts imitate what Velero puts into BSL messages / failure reasons (the Go SDK's shapes).
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import configparser
import functools
import gzip
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import select
import socket
import threading
import time
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions
import botocore.handlers
from botocore.utils import percent_encode

from .layout import VALID_TOP_LEVEL_DIRS, ObjectStoreLayout, normalize_bucket_prefix

# aws:velero-plugin-for-aws/object_store.go, plus the keys Velero injects (bucket, prefix, caCert).
AWS_CONFIG_KEYS = [
    "region", "s3Url", "publicUrl", "kmsKeyId", "customerKeyEncryptionFile", "customerKeyEncryptionSecret",
    "s3ForcePathStyle", "signatureVersion", "credentialsFile", "profile", "serverSideEncryption",
    "insecureSkipTLSVerify", "enableSharedConfig", "tagging", "checksumAlgorithm",
]
INJECTED_KEYS = ["bucket", "prefix", "caCert"]
DEFAULT_CREDENTIALS_SECRET = ("cloud-credentials", "cloud")


class ObjectStoreError(Exception):
    """An error as Velero would report it (already formatted)."""


# One bounded pool for the blocking object-store work of every emulated cluster (100 clusters
# backing up at once share it): a few threads keep the S3 child busy without piling up runnable
# threads on a small machine; requests beyond that queue here instead of in the S3 server.
S3_WORKERS = max(4, min(8, (os.cpu_count() or 2) + 2))
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def s3_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=S3_WORKERS,
                                                              thread_name_prefix="velero-s3")
        return _executor


async def run_blocking(fn, *args, **kwargs):
    """Run a blocking BackupStore call (or other blocking object-store work) off the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(s3_executor(), functools.partial(fn, *args, **kwargs))


def rpc_error(desc: str) -> str:
    # Plugin errors cross the go-plugin gRPC boundary and arrive wrapped like this.
    return f"rpc error: code = Unknown desc = {desc}"


def _sdk_error(exc: Exception, operation: str) -> ObjectStoreError:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode", 0)
        req = meta.get("RequestId") or meta.get("HTTPHeaders", {}).get("x-amz-request-id", "")
        op = getattr(exc, "operation_name", operation) or operation
        return ObjectStoreError(rpc_error(
            f"operation error S3: {op}, https response error StatusCode: {status}, RequestID: {req}, "
            f"api error {err.get('Code', 'Unknown')}: {err.get('Message', '')}"))
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return ObjectStoreError(rpc_error(
            f"operation error S3: {operation}, exceeded maximum number of attempts, 1, "
            f"https response error StatusCode: 0, RequestID: , request send failed, {exc}"))
    return ObjectStoreError(rpc_error(f"operation error S3: {operation}, {exc}"))


_clients: dict[tuple, object] = {}
_clients_lock = threading.Lock()


def _client_for(endpoint, region, key_id, secret, token, path_style, verify, signature="s3v4"):
    cache_key = (endpoint, region, key_id, secret, token, path_style, verify, signature)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            session = boto3.session.Session()
            client = session.client(
                "s3", endpoint_url=endpoint, region_name=region or "us-east-1",
                aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token,
                verify=verify,
                config=botocore.config.Config(
                    signature_version=signature,
                    s3={"addressing_style": "path" if path_style else "auto"},
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=3, read_timeout=30, max_pool_connections=32,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
            # No "Expect: 100-continue" round trip before each PUT body (the AWS Go SDK v2 that
            # Velero uses sends it only for bodies over 2 MB); the request itself is unchanged.
            client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
            _clients[cache_key] = client
        return client


class _Connection:
    """One kept-alive HTTP/1.1 connection (owned by one thread)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self._poll = select.poll()   # not select(): the lab process has far more than 1024 fds
        self._poll.register(self.sock, select.POLLIN)

    def idle_closed(self) -> bool:
        """Readable while idle = the server closed it (or sent junk): do not reuse."""
        try:
            return bool(self._poll.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        for c in (self.rfile, self.sock):
            try:
                c.close()
            except OSError:
                pass

    def roundtrip(self, head: bytes, body: bytes | None, method: str):
        """Send one request, read its response: (status, {lower-case header: value}, body, keep)."""
        if body and len(body) > 65536:
            self.sock.sendall(head)
            self.sock.sendall(body)
        else:
            self.sock.sendall(head + body if body else head)
        line = self.rfile.readline(65537)
        version, status, _ = line.split(b" ", 2) + [b""] * (3 - len(line.split(b" ", 2)))
        if not version.startswith(b"HTTP/1."):
            raise http.client.BadStatusLine(line)
        status = int(status)
        headers: dict[str, str] = {}
        while True:
            h = self.rfile.readline(65537)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise http.client.RemoteDisconnected("connection closed in the response headers")
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        keep = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self._read_exactly(size))
                self.rfile.readline(65537)
            data = b"".join(parts)
        elif "content-length" in headers:
            data = self._read_exactly(int(headers["content-length"]))
        else:
            data = self.rfile.read()
            keep = False
        return status, headers, data, keep

    def _read_exactly(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise http.client.IncompleteRead(data, n - len(data))
        return data


class SignedHttp:
    """The hot path of a BackupStore: PUT/GET/HEAD/DELETE of one object as plain SigV4-signed HTTP.

    boto3 costs ~2 ms of CPU per call (parameter validation, event hooks, endpoint rules, retry
    bookkeeping, response parsing), which at fleet scale dominated the lab process. Here a request
    is signed with AWS Signature Version 4 exactly as botocore's `S3SigV4Auth` signs boto3's request
    to a plain-http endpoint (headers host, x-amz-content-sha256 = SHA-256 of the payload,
    x-amz-date [, x-amz-security-token]; tests/lab/test_s3_transport.py checks the two agree) and
    sent on a kept-alive connection owned by the calling thread (the S3 executor's threads). The
    S3 server still authenticates and authorizes every request.

    Only successes (and HEAD's 404) are answered here. Anything else - an error status, a dropped
    or refused connection - returns None and the caller repeats the call through the boto3 client,
    which then produces exactly what Velero's messages are built from (ClientError shapes,
    retries, redirects, connection errors). Every operation here is idempotent.
    """

    def __init__(self, endpoint: str, region: str, key_id: str, secret: str, token: str | None):
        parts = urlparse(endpoint)
        self.endpoint = endpoint.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        # what botocore signs as `host` (default port dropped) and what the Host header carries
        self.host_header = parts.hostname if self.port == 80 else f"{parts.hostname}:{self.port}"
        self.region = region or "us-east-1"
        self.key_id, self.secret, self.token = key_id, secret, token
        self._keys: dict[str, bytes] = {}
        self._local = threading.local()

    @staticmethod
    def usable(endpoint: str, path_style: bool, signature: str, key_id, secret) -> bool:
        """Where boto3 would send a path-style SigV4 request to `endpoint` as given."""
        parts = urlparse(endpoint)
        if parts.scheme != "http" or parts.path not in ("", "/") or parts.query or not key_id or not secret:
            return False
        if parts.username or parts.password or signature != "s3v4":
            return False
        if path_style:
            return True
        try:   # addressing "auto": boto3 uses path style for an IP-address endpoint
            ipaddress.ip_address(parts.hostname or "")
            return True
        except ValueError:
            return False

    def _signing_key(self, datestamp: str) -> bytes:
        key = self._keys.get(datestamp)
        if key is None:
            key = ("AWS4" + self.secret).encode()
            for part in (datestamp, self.region, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {datestamp: key}
        return key

    def sign(self, method: str, path: str, body: bytes | None, amz_date: str | None = None) -> dict[str, str]:
        """The SigV4 headers of a request without a query string (path already URI-encoded)."""
        amz_date = amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        datestamp = amz_date[:8]
        payload_hash = hashlib.sha256(body or b"").hexdigest()
        headers = {"host": self.host_header, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        if self.token:
            headers["x-amz-security-token"] = self.token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join([method, path, "", "".join(f"{n}:{headers[n]}\n" for n in names), signed,
                               payload_hash])
        scope = f"{datestamp}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(datestamp), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        return headers

    def request(self, method: str, bucket: str, key: str, body: bytes | None = None):
        """(status, headers, body) of a signed request, or None on a transport failure."""
        path = "/" + percent_encode(bucket) + "/" + percent_encode(key, safe="/~")
        headers = self.sign(method, path, body)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {headers.pop('host')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method in ("PUT", "POST"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.idle_closed():
            conn.close()
            conn = None
        try:
            if conn is None:
                conn = self._local.conn = _Connection(self.host, self.port)
            status, rheaders, data, keep = conn.roundtrip(head, body, method)
        except (OSError, ValueError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            self._local.conn = None
            return None
        if not keep:
            conn.close()
            self._local.conn = None
        return status, rheaders, data

    def put(self, bucket: str, key: str, data: bytes) -> bool:
        r = self.request("PUT", bucket, key, data)
        return r is not None and r[0] == 200

    def get(self, bucket: str, key: str) -> bytes | None:
        r = self.request("GET", bucket, key)
        return r[2] if r is not None and r[0] == 200 else None

    def exists(self, bucket: str, key: str) -> bool | None:
        r = self.request("HEAD", bucket, key)
        if r is None:
            return None
        return True if r[0] == 200 else False if r[0] == 404 else None

    def delete(self, bucket: str, key: str) -> bool:
        r = self.request("DELETE", bucket, key)
        return r is not None and r[0] == 204


_transports: dict[tuple, SignedHttp] = {}


def _transport_for(endpoint, region, key_id, secret, token, path_style, verify, signature="s3v4"):
    if not SignedHttp.usable(endpoint, path_style, signature, key_id, secret):
        return None
    cache_key = (endpoint, region, key_id, secret, token, path_style, signature)
    with _clients_lock:
        transport = _transports.get(cache_key)
        if transport is None:
            transport = _transports[cache_key] = SignedHttp(endpoint, region, key_id, secret, token)
        return transport


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret_value(store, namespace: str, name: str, key: str) -> str:
    secret = store.get_or_none("", "secrets", namespace, name)
    if secret is None:
        raise ObjectStoreError(f'unable to get credentials: secrets "{name}" not found')
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    if key in (secret.get("stringData") or {}):
        return secret["stringData"][key]
    raise ObjectStoreError(f'unable to get credentials: secret "{name}" does not contain key "{key}"')


class BackupStore:
    """Velero's persistence.BackupStore for one BSL: blocking methods over boto3."""

    def __init__(self, bsl_name: str, bucket: str, prefix: str, client, transport: SignedHttp | None = None):
        self.bsl_name = bsl_name
        self.bucket = bucket
        self.prefix = prefix
        self.layout = ObjectStoreLayout(prefix)
        self.client = client
        self.transport = transport   # fast path for single-object calls; boto3 answers the rest
        self.public_url = ""

    # -- primitives
    def _call(self, operation: str, fn, **kwargs):
        try:
            return fn(**kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise _sdk_error(exc, operation) from None

    def list_common_prefixes(self, prefix: str, delimiter: str = "/") -> list[str]:
        out, token = [], None
        while True:
            kwargs = dict(Bucket=self.bucket, Prefix=prefix, Delimiter=delimiter)
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call("ListObjectsV2", self.client.list_objects_v2, **kwargs)
            out.extend(p["Prefix"] for p in resp.get("CommonPrefixes", []))
            if not resp.get("IsTruncated"):
                return out
            token = resp.get("NextContinuationToken")

    def list_keys(self, prefix: str) -> list[str]:
        out, token = [], None
        while True:
            kwargs = dict(Bucket=self.bucket, Prefix=prefix)
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call("ListObjectsV2", self.client.list_objects_v2, **kwargs)
            out.extend(o["Key"] for o in resp.get("Contents", []))
            if not resp.get("IsTruncated"):
                return out
            token = resp.get("NextContinuationToken")

    def put_object(self, key: str, data: bytes) -> None:
        if self.transport is not None and self.transport.put(self.bucket, key, data):
            return
        self._call("PutObject", self.client.put_object, Bucket=self.bucket, Key=key, Body=data)

    def get_object(self, key: str) -> bytes:
        if self.transport is not None:
            data = self.transport.get(self.bucket, key)
            if data is not None:
                return data
        resp = self._call("GetObject", self.client.get_object, Bucket=self.bucket, Key=key)
        return resp["Body"].read()

    def object_exists(self, key: str) -> bool:
        if self.transport is not None:
            found = self.transport.exists(self.bucket, key)
            if found is not None:
                return found
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise _sdk_error(exc, "HeadObject") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise _sdk_error(exc, "HeadObject") from None

    def delete_object(self, key: str) -> None:
        if self.transport is not None and self.transport.delete(self.bucket, key):
            return
        self._call("DeleteObject", self.client.delete_object, Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for i in range(0, len(keys), 1000):
            chunk = keys[i:i + 1000]
            self._call("DeleteObjects", self.client.delete_objects, Bucket=self.bucket,
                       Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
        return len(keys)

    # -- Velero's BackupStore operations
    def is_valid(self) -> None:
        """BSL validation: only the six known top-level dirs may exist under the root."""
        prefixes = self.list_common_prefixes(self.layout.root)
        invalid = []
        for p in prefixes:
            name = p[len(self.layout.root):].rstrip("/")
            if name not in VALID_TOP_LEVEL_DIRS:
                invalid.append(name)
        if invalid:
            shown = invalid[:3] + (["..."] if len(invalid) > 3 else [])
            raise ObjectStoreError(f"Backup store contains invalid top-level directories: [{' '.join(shown)}]")

    def list_backups(self) -> list[str]:
        base = self.layout.backups_dir()
        return [p[len(base):].rstrip("/") for p in self.list_common_prefixes(base)]

    def backup_exists(self, name: str) -> bool:
        return self.object_exists(self.layout.backup_metadata_key(name))

    def get_backup_metadata(self, name: str) -> dict:
        obj = json.loads(self.get_object(self.layout.backup_metadata_key(name)))
        if obj.get("apiVersion") != "velero.io/v1" or obj.get("kind") != "Backup":
            raise ObjectStoreError(
                f"unexpected object type in {self.layout.backup_metadata_key(name)}: "
                f"{obj.get('apiVersion')}/{obj.get('kind')}")
        return obj

    def get_backup_contents(self, name: str) -> bytes:
        return self.get_object(self.layout.backup_contents_key(name))

    def get_gzip_json(self, key: str, default=None):
        if not self.object_exists(key):
            return default
        return json.loads(gzip.decompress(self.get_object(key)))

    def get_pod_volume_backups(self, name: str) -> list[dict]:
        return self.get_gzip_json(self.layout.backup_pod_volume_backups_key(name), []) or []

    def put_backup(self, name: str, metadata: bytes, contents: bytes | None, log: bytes | None,
                   side_files: dict[str, bytes]) -> None:
        """PutBackup order: log (errors ignored), metadata (hard stop), tarball (metadata removed on
        failure), then the side files (tarball + metadata removed on failure)."""
        lay = self.layout
        if log is not None:
            try:
                self.put_object(lay.backup_log_key(name), log)
            except ObjectStoreError:
                pass
        if metadata is None:
            return
        self.put_object(lay.backup_metadata_key(name), metadata)
        if contents is not None:
            try:
                self.put_object(lay.backup_contents_key(name), contents)
            except ObjectStoreError:
                self._delete_quietly(lay.backup_metadata_key(name))
                raise
        # The remaining files ("arbitrary order" in Velero): each one is attempted even when
        # another failed, then the first error removes tarball + metadata and is raised. One after
        # the other on this worker's kept-alive connection: small objects, no pool per backup.
        first_error = None
        for key, data in side_files.items():
            try:
                self.put_object(key, data)
            except ObjectStoreError as exc:
                first_error = first_error or exc
        if first_error is not None:
            self._delete_quietly(lay.backup_contents_key(name))
            self._delete_quietly(lay.backup_metadata_key(name))
            raise first_error

    def _delete_quietly(self, key: str) -> None:
        try:
            self.delete_object(key)
        except ObjectStoreError:
            pass

    def presign(self, key: str, ttl_seconds: int = 600) -> str:
        """A presigned GET URL (DownloadURLTTL = 10 minutes); publicUrl replaces the endpoint."""
        url = self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                 ExpiresIn=ttl_seconds)
        if self.public_url:
            parts = urlparse(url)
            public = urlparse(self.public_url)
            url = parts._replace(scheme=public.scheme, netloc=public.netloc).geturl()
        return url

    def delete_backup(self, name: str) -> int:
        return self.delete_prefix(self.layout.backup_dir(name))


@functools.lru_cache(maxsize=64)
def _shared_credentials(text: str, profile: str) -> tuple[str | None, str | None, str | None]:
    """(key id, secret, session token) of a profile in an AWS shared-credentials file.

    Memoised on the file's text: every backup of every cluster reads the same Secret."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ObjectStoreError(rpc_error(f"failed to load shared credentials file: {exc}")) from None
    if not parser.has_section(profile):
        raise ObjectStoreError(rpc_error(
            f"failed to get shared config profile, {profile}"))
    return (parser.get(profile, "aws_access_key_id", fallback=None),
            parser.get(profile, "aws_secret_access_key", fallback=None),
            parser.get(profile, "aws_session_token", fallback=None))


def make_backup_store(store, namespace: str, bsl: dict,
                      default_secret: tuple[str, str] = DEFAULT_CREDENTIALS_SECRET, resolve=None) -> BackupStore:
    """Build a BackupStore the way Velero initialises the plugin for a BSL.

    Raises ObjectStoreError with Velero's messages for what plugin Init rejects. Reads the Secret
    through the Store (cheap, on the loop); the boto3 client is created lazily (cached).
    """
    spec = bsl.get("spec", {}) or {}
    name = bsl["metadata"]["name"]
    provider = spec.get("provider", "")
    if "/" not in provider:
        provider = f"velero.io/{provider}"
    if provider != "velero.io/aws":
        raise ObjectStoreError(f'unable to locate ObjectStore plugin named {provider}')
    obj_storage = spec.get("objectStorage") or {}
    if obj_storage.get("caCert") and obj_storage.get("caCertRef"):
        raise ObjectStoreError("cannot specify both caCert and caCertRef in objectStorage")
    bucket, prefix = normalize_bucket_prefix(obj_storage.get("bucket", ""), obj_storage.get("prefix", ""))
    if "/" in bucket and not bucket.startswith("arn:aws:s3:"):
        raise ObjectStoreError(f"backup storage location's bucket name {obj_storage.get('bucket')!r} must not contain a '/' (if using a prefix, put it in the 'Prefix' field instead)")
    config = dict(spec.get("config") or {})
    invalid = sorted(k for k in config if k not in AWS_CONFIG_KEYS + INJECTED_KEYS)
    if invalid:
        valid = AWS_CONFIG_KEYS + INJECTED_KEYS
        raise ObjectStoreError(rpc_error(
            f"config has invalid keys [{' '.join(invalid)}]; valid keys are [{' '.join(valid)}]"))
    cred = spec.get("credential") or {}
    if cred.get("name"):
        secret_name, secret_key = cred["name"], cred.get("key", "")
    else:
        secret_name, secret_key = default_secret
    text = _secret_value(store, namespace, secret_name, secret_key)
    profile = config.get("profile") or "default"
    key_id, secret, token = _shared_credentials(text, profile)
    endpoint = config.get("s3Url", "")
    if endpoint and resolve is not None:
        endpoint = resolve(endpoint)  # the cluster's DNS: an in-cluster Service URL to where it answers
    if not endpoint:
        # Without s3Url the plugin asks AWS for the bucket region; the lab never leaves loopback.
        raise ObjectStoreError(rpc_error(
            "unable to determine bucket's region: operation error S3: HeadBucket, "
            "failed to resolve service endpoint (lab: s3Url is required)"))
    if not endpoint.startswith(("http://", "https://")):
        raise ObjectStoreError(rpc_error(f"invalid s3Url {endpoint}, URL must start with http(s)://"))
    if not _is_loopback(endpoint):
        raise ObjectStoreError(rpc_error(f"lab: refusing non-loopback s3Url {endpoint}"))
    path_style = str(config.get("s3ForcePathStyle", "false")).lower() in ("1", "t", "true")
    verify = str(config.get("insecureSkipTLSVerify", "false")).lower() not in ("1", "t", "true")
    bs = BackupStore(name, bucket, prefix, None)
    bs.public_url = config.get("publicUrl", "")
    # signatureVersion "1" = SigV2 presigned URLs; the default (4) signs with SigV4
    signature = "s3" if str(config.get("signatureVersion", "4")) == "1" else "s3v4"
    params = (endpoint, config.get("region", ""), key_id, secret, token, path_style, verify, signature)

    class _LazyClient:
        def __getattr__(self, attr):
            client = _client_for(*params)
            bs.client = client
            return getattr(client, attr)

    bs.client = _LazyClient()
    bs.transport = _transport_for(*params)
    return bs
