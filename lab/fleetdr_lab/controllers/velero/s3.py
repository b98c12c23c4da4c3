"""A BSL-scoped object store client (the emulated `velero.io/aws` ObjectStore plugin + BackupStore).

Built from the BackupStorageLocation and its credentials Secret (spec.credential, or the server's
default `cloud-credentials` / key `cloud`, which `velero install` mounts as AWS_SHARED_CREDENTIALS_FILE).
Every method here is blocking (boto3): call them through `run_blocking` so the loop never blocks.
Error texts imitate what Velero puts into BSL messages / failure reasons (the Go SDK's shapes).
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import configparser
import functools
import gzip
import ipaddress
import json
import threading
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions

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


async def run_blocking(fn, *args, **kwargs):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


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
            _clients[cache_key] = client
        return client


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

    def __init__(self, bsl_name: str, bucket: str, prefix: str, client):
        self.bsl_name = bsl_name
        self.bucket = bucket
        self.prefix = prefix
        self.layout = ObjectStoreLayout(prefix)
        self.client = client
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
        self._call("PutObject", self.client.put_object, Bucket=self.bucket, Key=key, Body=data)

    def get_object(self, key: str) -> bytes:
        resp = self._call("GetObject", self.client.get_object, Bucket=self.bucket, Key=key)
        return resp["Body"].read()

    def object_exists(self, key: str) -> bool:
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
        try:
            # the remaining files go up in parallel ("arbitrary order" in Velero too)
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                for f in [pool.submit(self.put_object, k, d) for k, d in side_files.items()]:
                    f.result()
        except ObjectStoreError:
            self._delete_quietly(lay.backup_contents_key(name))
            self._delete_quietly(lay.backup_metadata_key(name))
            raise

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


def make_backup_store(store, namespace: str, bsl: dict,
                      default_secret: tuple[str, str] = DEFAULT_CREDENTIALS_SECRET) -> BackupStore:
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
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise ObjectStoreError(rpc_error(f"failed to load shared credentials file: {exc}")) from None
    section = profile if parser.has_section(profile) else None
    if section is None:
        raise ObjectStoreError(rpc_error(
            f"failed to get shared config profile, {profile}"))
    key_id = parser.get(section, "aws_access_key_id", fallback=None)
    secret = parser.get(section, "aws_secret_access_key", fallback=None)
    token = parser.get(section, "aws_session_token", fallback=None)
    endpoint = config.get("s3Url", "")
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
    return bs
