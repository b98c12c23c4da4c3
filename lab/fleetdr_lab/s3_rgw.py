"""Rook object stores (RADOS gateways) inside the lab's S3 child process.

Every CephObjectStore is an S3 endpoint of its own, as each RGW is: its own users and keys, its own
bucket namespace, a bucket owned by the user that created it. Each store is one more listening
socket of the S3 child (port chosen by the kernel, all of them accepted by one thread) whose WSGI
application is `StoreApp`:

- authentication: the request's AWS signature (SigV4 in the Authorization header or a presigned
  query, SigV2 likewise) is checked against the secret of the store user named by its access key:
  an unknown key is 403 InvalidAccessKeyId, a wrong signature 403 SignatureDoesNotMatch, an
  unsigned request is anonymous (403 AccessDenied: no public buckets here). Simplifications: the
  payload hash is taken as the client states it (x-amz-content-sha256, not re-hashed), the request
  time is not checked against a clock skew (a presigned URL's expiry is);
- authorization: a bucket's policy first (an explicit Deny stops even the owner; an Allow lets
  another user, or anybody for Principal "*", do the object and listing actions it names), then
  ownership: only the owner may use the bucket otherwise (403 AccessDenied; ACL grants are not
  emulated). CopyObject/UploadPartCopy also need GetObject on the source; ListBuckets lists the
  caller's own buckets; bucket configuration (policy, versioning, ...) is the owner's only;
- CreateBucket of a name the store holds: 409 BucketAlreadyExists under another owner, 200 for the
  owner (radosgw's default, `rgw_bucket_eexist_override` false: src/rgw/rgw_op.cc
  RGWCreateBucket::send_response);
- everything else is moto's S3: the bucket name in the path (and in x-amz-copy-source) is mapped to
  moto's internal name for it (`rgw-<hash of store and name>`), the request is passed on in-process
  without its signature (moto's IAM check is skipped for requests this layer has authenticated,
  `_trusted`), and the internal name is mapped back in XML answers (ListObjects <Name>, multipart
  <Bucket>/<Location>, errors <BucketName>/<Resource>) and in a Location header. Object GET/HEAD
  answers stream through untouched.

The lab process manages stores, users and buckets through `/_fleetdr-rgw/...` on the child's main
port (bearer token `FLEETDR_RGW_TOKEN`, see `ControlApp`): the RGW admin ops Rook would call.
"""
from __future__ import annotations

import base64
import calendar
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import selectors
import socket
import string
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape

CONTROL_PREFIX = "/_fleetdr-rgw/"       # "_" is in no S3 bucket name: no bucket of the lab endpoint is shadowed
TOKEN_ENV = "FLEETDR_RGW_TOKEN"
# a credential scope moto's dispatcher reads the service (s3) and region from; never verified
_MOTO_AUTH = "AWS4-HMAC-SHA256 Credential=FLEETDRRGW/20000101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
_UNRESERVED = string.ascii_letters + string.digits + "-_.~"
_SIGNING_PARAMS = {"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
                   "x-amz-signature", "x-amz-security-token", "awsaccesskeyid", "signature", "expires"}
# sub-resources SigV2 signs (botocore.utils S3_SIGNING / RGW rgw_auth_s3.cc signed_subresources)
_V2_SUBRESOURCES = {"acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
                    "requestPayment", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning",
                    "versions", "website", "response-content-type", "response-content-language", "response-expires",
                    "response-cache-control", "response-content-disposition", "response-content-encoding", "object-lock",
                    "retention", "legal-hold", "encryption", "replication", "accelerate", "inventory", "analytics", "metrics"}

# src/rgw/rgw_common.cc valid_s3_bucket_name (rgw_relaxed_s3_bucket_names false)
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_LOCATION = re.compile(rb"<Location>[^<]*</Location>")
_trusted = threading.local()


def install_trust() -> None:
    """moto skips its IAM check for a request a store has authenticated (the flag is per thread: one
    request at a time per connection thread)."""
    from moto.core.authorization import ActionAuthenticatorMixin
    original = ActionAuthenticatorMixin._authenticate_and_authorize_action
    if getattr(original, "fleetdr_rgw", False):
        return

    def check(self, iam_request_cls, resource="*"):
        if getattr(_trusted, "on", False):
            return None
        return original(self, iam_request_cls, resource)
    check.fleetdr_rgw = True
    ActionAuthenticatorMixin._authenticate_and_authorize_action = check


class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str = "", bucket: str | None = None):
        super().__init__(code)
        self.status, self.code, self.message, self.bucket = status, code, message, bucket


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict"}


def _error_response(err: S3Error, start_response, request_id: str, head: bool = False):
    bucket = f"<BucketName>{escape(err.bucket)}</BucketName>" if err.bucket else ""
    body = ('<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{err.code}</Code><Message>{escape(err.message)}</Message>{bucket}"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>").encode()
    start_response(f"{err.status} {_REASONS.get(err.status, 'Error')}",
                   [("Content-Type", "application/xml"), ("Content-Length", str(0 if head else len(body))),
                    ("x-amz-request-id", request_id)])
    return [] if head else [body]


def _aws_quote(text: str) -> str:
    return urllib.parse.quote(text, safe=_UNRESERVED)


def _canonical_query(query: str, skip: str | None = None) -> str:
    pairs = []
    for part in query.split("&") if query else ():
        if not part:
            continue
        key, _, value = part.partition("=")
        key, value = urllib.parse.unquote(key), urllib.parse.unquote(value)
        if key == skip:
            continue
        pairs.append((_aws_quote(key), _aws_quote(value)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _header(environ, name: str) -> str | None:
    if name == "content-type":
        return environ.get("CONTENT_TYPE")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


class User:
    __slots__ = ("uid", "display_name", "access_key", "secret_key", "_keys")

    def __init__(self, uid: str, display_name: str):
        self.uid, self.display_name = uid, display_name
        # RGW's key shapes: a 20-character upper-case access key, a 40-character secret
        self.access_key = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _position in range(20))
        self.secret_key = "".join(secrets.choice(string.ascii_letters + string.digits) for _position in range(40))
        self._keys: dict[tuple[str, str, str], bytes] = {}

    def signing_key(self, date: str, region: str, service: str) -> bytes:
        key = self._keys.get((date, region, service))
        if key is None:
            key = ("AWS4" + self.secret_key).encode()
            for part in (date, region, service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._keys = {(date, region, service): key}
        return key

    def info(self) -> dict:
        return {"user_id": self.uid, "display_name": self.display_name,
                "keys": [{"user": self.uid, "access_key": self.access_key, "secret_key": self.secret_key}]}


class Bucket:
    __slots__ = ("name", "owner", "internal", "created")

    def __init__(self, name: str, owner: str, internal: str):
        self.name, self.owner, self.internal = name, owner, internal
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _moto_backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


class Store:
    """One object store: users by id and by access key, buckets by name (with moto's name for each)."""

    def __init__(self, sid: str):
        self.sid = sid
        self.users: dict[str, User] = {}
        self.keys: dict[str, User] = {}
        self.buckets: dict[str, Bucket] = {}
        self.internal: dict[str, str] = {}          # moto's name -> the store's
        self.lock = threading.Lock()
        self.server = None
        self.connections: set = set()
        self.policies: dict[str, tuple] = {}

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def internal_name(self, name: str) -> str:
        return "rgw-" + hashlib.sha256(f"{self.sid}\0{name}".encode()).hexdigest()[:32]

    def add_user(self, uid: str, display_name: str) -> User:
        with self.lock:
            user = self.users.get(uid)
            if user is None:
                user = self.users[uid] = User(uid, display_name or uid)
                self.keys[user.access_key] = user
            return user

    def remove_user(self, uid: str, purge: bool) -> bool:
        with self.lock:
            user = self.users.pop(uid, None)
            if user is None:
                return False
            self.keys.pop(user.access_key, None)
            owned = [b.name for b in self.buckets.values() if b.owner == uid]
        if purge:
            for name in owned:
                self.remove_bucket(name, purge=True)
        return True

    def create_bucket(self, name: str, owner: str) -> None:
        """RGW CreateBucket: 409 BucketAlreadyExists for another owner's name, nothing for the owner's."""
        with self.lock:
            bucket = self.buckets.get(name)
            if bucket is not None:
                if bucket.owner != owner:
                    raise S3Error(409, "BucketAlreadyExists", bucket=name)
                return
            if not _BUCKET_NAME.fullmatch(name):
                raise S3Error(400, "InvalidBucketName", bucket=name)
            internal = self.internal_name(name)
            backend = _moto_backend()
            if internal not in backend.buckets:
                backend.create_bucket(internal, "us-east-1")
            self.buckets[name] = Bucket(name, owner, internal)
            self.internal[internal] = name

    def policy(self, bucket: Bucket) -> dict | None:
        """The bucket's policy (PutBucketPolicy, kept by moto), parsed once per version of it."""
        moto_bucket = _moto_backend().buckets.get(bucket.internal)
        raw = getattr(moto_bucket, "policy", None)
        if not raw:
            return None
        cached = self.policies.get(bucket.internal)
        if cached is None or cached[0] is not raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {}
            cached = self.policies[bucket.internal] = (raw, parsed if isinstance(parsed, dict) else {})
        return cached[1]

    def forget_bucket(self, internal: str) -> None:
        with self.lock:
            name = self.internal.pop(internal, None)
            self.policies.pop(internal, None)
            if name is not None:
                self.buckets.pop(name, None)

    def remove_bucket(self, name: str, purge: bool) -> bool:
        with self.lock:
            bucket = self.buckets.get(name)
            if bucket is None:
                return False
            backend = _moto_backend()
            moto_bucket = backend.buckets.get(bucket.internal)
            if moto_bucket is not None:
                if moto_bucket.keys and not purge:
                    raise S3Error(409, "BucketNotEmpty", bucket=name)
                _purge(backend, moto_bucket)
            self.buckets.pop(name, None)
            self.internal.pop(bucket.internal, None)
            self.policies.pop(bucket.internal, None)
            return True

    def remove_all(self) -> None:
        for name in list(self.buckets):
            self.remove_bucket(name, purge=True)


def _purge(backend, moto_bucket) -> None:
    from moto.s3.models import s3_backends
    for versions in dict.values(moto_bucket.keys):
        for key in versions if isinstance(versions, list) else [versions]:
            dispose = getattr(key, "dispose", None)
            if dispose is not None:
                dispose()
    for upload in list(moto_bucket.multiparts):
        del moto_bucket.multiparts[upload]
    s3_backends.bucket_accounts.pop(moto_bucket.name, None)
    backend.buckets.pop(moto_bucket.name, None)


def _action(method: str, key: str, sub: set) -> str | None:
    """The S3 action a request is, for bucket policies (None: one only the owner may do here)."""
    if key:
        if method in ("GET", "HEAD"):
            if "uploadId" in sub:
                return "s3:ListMultipartUploadParts"
            return "s3:GetObjectTagging" if "tagging" in sub else "s3:GetObjectAcl" if "acl" in sub else "s3:GetObject"
        if method in ("PUT", "POST"):
            return "s3:PutObjectTagging" if "tagging" in sub else "s3:PutObjectAcl" if "acl" in sub else "s3:PutObject"
        if method == "DELETE":
            return "s3:AbortMultipartUpload" if "uploadId" in sub else "s3:DeleteObjectTagging" if "tagging" in sub \
                else "s3:DeleteObject"
        return None
    if method == "HEAD" or method == "GET" and not sub & {"acl", "policy", "versioning", "tagging", "lifecycle", "cors", "website",
                                                          "encryption", "replication", "object-lock", "logging", "notification"}:
        return ("s3:ListBucketVersions" if "versions" in sub else "s3:ListBucketMultipartUploads" if "uploads" in sub
                else "s3:GetBucketLocation" if "location" in sub else "s3:ListBucket")
    if method == "POST" and "delete" in sub:
        return "s3:DeleteObject"
    return None


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _principal_matches(principal, user: User | None) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for arn in _listed(principal.get("AWS", [])):
        if arn == "*" or user is not None and isinstance(arn, str) and arn.endswith(":user/" + user.uid):
            return True
    return False


def _policy_decision(policy: dict, user: User | None, action: str, resource: str) -> str | None:
    """"deny", "allow" or None (no statement applies) - src/rgw/rgw_iam_policy.cc Policy::eval: an explicit
    Deny wins. Statements with a Condition, NotPrincipal, NotAction or NotResource are not evaluated here."""
    decision = None
    for statement in _listed(policy.get("Statement") or []):
        if not isinstance(statement, dict) or {"Condition", "NotPrincipal", "NotAction", "NotResource"} & set(statement):
            continue
        if not _principal_matches(statement.get("Principal"), user):
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), str(a).lower()) for a in _listed(statement.get("Action") or [])):
            continue
        if not any(fnmatch.fnmatchcase(resource, str(r)) for r in _listed(statement.get("Resource") or [])):
            continue
        if statement.get("Effect") == "Deny":
            return "deny"
        if statement.get("Effect") == "Allow":
            decision = "allow"
    return decision


class StoreApp:
    """The S3 API of one store (WSGI), in front of moto's application."""

    def __init__(self, store: Store, moto_app):
        self.store = store
        self.moto = moto_app

    def __call__(self, environ, start_response):
        request_id = "tx" + secrets.token_hex(12)
        head = environ.get("REQUEST_METHOD") == "HEAD"
        try:
            return self._handle(environ, start_response, request_id)
        except S3Error as err:
            return _error_response(err, start_response, request_id, head)

    # -- authentication ---------------------------------------------------------------------------------

    def _authenticate(self, environ, raw_path: str, query: str) -> User | None:
        auth = environ.get("HTTP_AUTHORIZATION")
        if auth:
            if auth.startswith("AWS4-HMAC-SHA256 "):
                return self._sigv4_header(environ, auth, raw_path, query)
            if auth.startswith("AWS "):
                return self._sigv2(environ, auth[4:], raw_path, query, None)
            raise S3Error(400, "InvalidArgument", "Unsupported Authorization Type")
        if "X-Amz-Signature=" in query:
            return self._sigv4_query(environ, raw_path, query)
        if "Signature=" in query and "AWSAccessKeyId=" in query:
            params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
            expires = params.get("Expires", "")
            if expires.isdigit() and int(expires) < time.time():
                raise S3Error(403, "AccessDenied", "Request has expired")
            return self._sigv2(environ, f"{params.get('AWSAccessKeyId', '')}:{params.get('Signature', '')}", raw_path, query,
                               expires)
        return None

    def _user(self, access_key: str) -> User:
        user = self.store.keys.get(access_key)
        if user is None:
            raise S3Error(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
        return user

    def _sigv4(self, environ, method, raw_path, query, credential, signed_headers, signature, amz_date, payload, skip):
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed")
        user = self._user(parts[0])
        date, region, service = parts[1], parts[2], parts[3]
        names = signed_headers.split(";")
        headers = "".join(f"{n}:{' '.join((_header(environ, n) or '').split())}\n" for n in names)
        canonical_query = _canonical_query(query, skip)
        scope = f"{date}/{region}/{service}/aws4_request"
        key = user.signing_key(date, region, service)
        for path in (raw_path, _aws_quote_path(raw_path)):
            canonical = "\n".join((method, path, canonical_query, headers, signed_headers, payload))
            to_sign = "\n".join(("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))
            if hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature):
                return user
        raise S3Error(403, "SignatureDoesNotMatch")

    def _sigv4_header(self, environ, auth, raw_path, query) -> User:
        fields = {}
        for item in auth[len("AWS4-HMAC-SHA256 "):].split(","):
            name, _, value = item.strip().partition("=")
            fields[name] = value
        if not {"Credential", "SignedHeaders", "Signature"} <= set(fields):
            raise S3Error(400, "AuthorizationHeaderMalformed", "The authorization header is malformed")
        amz_date = environ.get("HTTP_X_AMZ_DATE") or ""
        payload = environ.get("HTTP_X_AMZ_CONTENT_SHA256") or "UNSIGNED-PAYLOAD"
        return self._sigv4(environ, environ["REQUEST_METHOD"], raw_path, query, fields["Credential"], fields["SignedHeaders"],
                           fields["Signature"], amz_date, payload, None)

    def _sigv4_query(self, environ, raw_path, query) -> User:
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        amz_date = params.get("X-Amz-Date", "")
        try:
            issued = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
            expires = int(params.get("X-Amz-Expires", "0"))
        except ValueError:
            raise S3Error(403, "AccessDenied", "Query-string authentication requires the X-Amz-Date and X-Amz-Expires parameters")
        if issued + expires < time.time():
            raise S3Error(403, "AccessDenied", "Request has expired")
        payload = params.get("X-Amz-Content-Sha256") or "UNSIGNED-PAYLOAD"
        return self._sigv4(environ, environ["REQUEST_METHOD"], raw_path, query, params.get("X-Amz-Credential", ""),
                           params.get("X-Amz-SignedHeaders", "host"), params.get("X-Amz-Signature", ""), amz_date, payload,
                           "X-Amz-Signature")

    def _sigv2(self, environ, credential: str, raw_path: str, query: str, expires: str | None) -> User:
        access_key, _, signature = credential.rpartition(":")
        user = self._user(access_key)
        amz = {}
        for key, value in environ.items():
            if key.startswith("HTTP_X_AMZ_"):
                amz[key[5:].lower().replace("_", "-")] = " ".join(value.split())
        if expires is not None:
            date = expires
        else:
            date = "" if "x-amz-date" in amz else environ.get("HTTP_DATE", "")
        sub = sorted((k, v) for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k in _V2_SUBRESOURCES)
        suffix = ("?" + "&".join(f"{k}={v}" if v else k for k, v in sub)) if sub else ""
        head = "\n".join([environ["REQUEST_METHOD"], environ.get("HTTP_CONTENT_MD5", ""), environ.get("CONTENT_TYPE", ""), date]
                         + [f"{k}:{amz[k]}" for k in sorted(amz)]) + "\n"
        # botocore signs a bucket's path-style resource with a trailing slash ("/bucket/") whether it sends one or not
        paths = [raw_path] + ([raw_path + "/"] if raw_path.count("/") == 1 and len(raw_path) > 1 else [])
        for path in paths:
            expected = base64.b64encode(hmac.new(user.secret_key.encode(), (head + path + suffix).encode(), hashlib.sha1).digest()).decode()
            if hmac.compare_digest(expected, signature):
                return user
        raise S3Error(403, "SignatureDoesNotMatch")

    # -- authorization and forwarding -------------------------------------------------------------------

    def _authorize(self, name: str, user: User | None, action: str | None, key: str = "") -> Bucket:
        """The bucket if `user` may do `action` on it: its owner may, unless the bucket policy denies it;
        anybody else only where the bucket policy allows it (rgw_op.cc verify_bucket_permission)."""
        bucket = self.store.buckets.get(name)
        if bucket is None:
            raise S3Error(404, "NoSuchBucket", bucket=name)
        decision = None
        if action is not None:
            policy = self.store.policy(bucket)
            if policy is not None:
                decision = _policy_decision(policy, user, action, f"arn:aws:s3:::{name}" + (f"/{key}" if key else ""))
        if decision == "deny" or decision is None and (user is None or bucket.owner != user.uid):
            raise S3Error(403, "AccessDenied", bucket=name)
        return bucket

    def _handle(self, environ, start_response, request_id):
        method = environ["REQUEST_METHOD"]
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        if raw.startswith(("http://", "https://")):
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        raw_path = raw.partition("?")[0] or "/"
        query = environ.get("QUERY_STRING", "")
        user = self._authenticate(environ, raw_path, query)
        name, slash, key = environ.get("PATH_INFO", "/").lstrip("/").partition("/")
        if not name:
            if method != "GET":
                raise S3Error(405, "MethodNotAllowed")
            if user is None:
                raise S3Error(403, "AccessDenied")
            return self._list_buckets(user, start_response, request_id)
        sub = set(k for k, _ in urllib.parse.parse_qsl(query, keep_blank_values=True))
        if not key and method == "PUT" and not sub and user is not None:
            self.store.create_bucket(name, user.uid)
            start_response("200 OK", [("Location", "/" + name), ("Content-Length", "0"), ("x-amz-request-id", request_id)])
            return []
        bucket = self._authorize(name, user, _action(method, key, sub), key.encode("latin-1").decode("utf-8", "replace"))
        forward = dict(environ)
        copy_source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
        if copy_source:
            source_name, _, rest = copy_source.lstrip("/").partition("/")
            source_key = urllib.parse.unquote(rest.partition("?")[0])
            source = self._authorize(urllib.parse.unquote(source_name), user, "s3:GetObject", source_key)
            forward["HTTP_X_AMZ_COPY_SOURCE"] = "/" + source.internal + "/" + rest
        forward["PATH_INFO"] = "/" + bucket.internal + slash + key
        tail = raw_path.lstrip("/").partition("/")
        forward_query = "&".join(p for p in query.split("&") if p and p.partition("=")[0].lower() not in _SIGNING_PARAMS)
        forward["QUERY_STRING"] = forward_query
        forward["RAW_URI"] = forward["REQUEST_URI"] = ("/" + bucket.internal + tail[1] + tail[2]
                                                       + ("?" + forward_query if forward_query else ""))
        forward["HTTP_AUTHORIZATION"] = _MOTO_AUTH
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        _trusted.on = True
        try:
            result = self.moto(forward, capture)
        finally:
            _trusted.on = False
        status, headers = captured["status"], captured["headers"]
        if key and method in ("GET", "HEAD") and "uploadId" not in sub and status[:1] in ("2", "3"):
            start_response(status, headers)     # object data: streamed as moto answers it
            return result
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        if not key and method == "DELETE" and not sub and status.startswith("2"):
            self.store.forget_bucket(bucket.internal)
        body = self._unmap(body, bucket)
        if method == "POST" and "uploadId" in sub and status.startswith("200") and b"<Location>" in body:
            # RGW answers CompleteMultipartUpload with a path-style URL of the gateway
            # (rgw_rest_s3.cc RGWCompleteMultipart_ObjStore_S3::send_response)
            location = escape(f"http://{environ.get('HTTP_HOST', '')}{raw_path}").encode()
            body = _LOCATION.sub(lambda m: b"<Location>" + location + b"</Location>", body, count=1)
        fixed = []
        for k, v in headers:
            low = k.lower()
            if low == "location":
                v = self._unmap(v.encode(), bucket).decode()
            elif low == "content-length" and method != "HEAD":
                v = str(len(body))
            fixed.append((k, v))
        start_response(status, fixed)
        return [body]

    def _unmap(self, body: bytes, bucket: Bucket) -> bytes:
        if b"rgw-" not in body:
            return body
        body = body.replace(bucket.internal.encode(), escape(bucket.name).encode())
        if b"rgw-" in body:
            for internal, name in list(self.store.internal.items()):
                body = body.replace(internal.encode(), escape(name).encode())
        return body

    def _list_buckets(self, user: User, start_response, request_id):
        owned = sorted((b for b in self.store.buckets.values() if b.owner == user.uid), key=lambda b: b.name)
        items = "".join(f"<Bucket><Name>{escape(b.name)}</Name><CreationDate>{b.created}</CreationDate></Bucket>" for b in owned)
        body = ('<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Owner><ID>{escape(user.uid)}</ID><DisplayName>{escape(user.display_name)}</DisplayName></Owner>"
                f"<Buckets>{items}</Buckets></ListAllMyBucketsResult>").encode()
        start_response("200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                                  ("x-amz-request-id", request_id)])
        return [body]


def _aws_quote_path(raw_path: str) -> str:
    """The path re-encoded by AWS's rules (for a client that sent it less encoded than it signed it)."""
    return "/".join(_aws_quote(urllib.parse.unquote(part)) for part in raw_path.split("/"))


class Stores:
    """All object stores of the child, their listening sockets and the one thread that accepts on them."""

    def __init__(self, host: str, moto_app, make_server):
        self.host = host
        self.moto = moto_app
        self.make_server = make_server
        self.stores: dict[str, Store] = {}
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._changes: list[tuple[str, object]] = []
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        threading.Thread(target=self._accept, name="rgw-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    continue
                try:
                    key.data._handle_request_noblock()
                except Exception:   # a closed or failing socket must not stop the other stores
                    pass
            with self.lock:
                changes, self._changes = self._changes, []
            for op, server in changes:
                if op == "add":
                    self.selector.register(server.socket, selectors.EVENT_READ, server)
                else:
                    try:
                        self.selector.unregister(server.socket)
                    except (KeyError, ValueError):
                        pass
                    server.server_close()

    def _change(self, op: str, server) -> None:
        with self.lock:
            self._changes.append((op, server))
        self._wake_w.send(b"x")

    def ensure(self, sid: str) -> Store:
        with self.lock:
            store = self.stores.get(sid)
            if store is not None:
                return store
            store = Store(sid)
            store.server = self.make_server(self.host, 0, StoreApp(store, self.moto))
            _track_connections(store)
            self.stores[sid] = store
        self._change("add", store.server)
        return store

    def remove(self, sid: str) -> bool:
        with self.lock:
            store = self.stores.pop(sid, None)
        if store is None:
            return False
        self._change("remove", store.server)
        for conn in list(store.connections):    # a gateway that is gone drops its kept-alive connections too
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        store.remove_all()
        return True


def _track_connections(store: Store) -> None:
    """Remember the store server's open client connections (socketserver's get_request/shutdown_request)."""
    server = store.server
    accept, done = server.get_request, server.shutdown_request

    def get_request():
        conn, address = accept()
        store.connections.add(conn)
        return conn, address

    def shutdown_request(conn):
        store.connections.discard(conn)
        done(conn)
    server.get_request, server.shutdown_request = get_request, shutdown_request


class ControlApp:
    """WSGI middleware on the child's main port: `/_fleetdr-rgw/...` is the lab's control of the stores
    (bearer token), everything else goes to moto as before.

    PUT    stores/<sid>                          -> {"port"}           (idempotent)
    DELETE stores/<sid>                          -> purge every bucket, close the port
    GET    stores/<sid>/buckets                  -> [{"name", "owner"}]
    PUT    stores/<sid>/users/<uid>?display-name -> user info with keys (the existing user's if any)
    DELETE stores/<sid>/users/<uid>[?purge-data=true]
    PUT    stores/<sid>/buckets/<name>?owner=uid -> 200, 409 BucketAlreadyExists
    DELETE stores/<sid>/buckets/<name>[?purge-objects=true]
    PUT    latency?ms=N                          -> {"latency_ms"}: each S3 request of the lab's own
                                                    store (this port) waits N ms before it is served
    (<sid> and the names are URL-quoted path segments.)
    """

    def __init__(self, moto_app, stores: Stores, token: str | None):
        self.moto = moto_app
        self.stores = stores
        self.token = token
        self.latency_s = 0.0

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(CONTROL_PREFIX):
            if self.latency_s:
                time.sleep(self.latency_s)  # a slow object store (each connection is served on a thread of its own)
            return self.moto(environ, start_response)
        if not self.token or not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", ""), "Bearer " + self.token):
            return self._json(start_response, 401, {"error": "unauthorized"})
        raw = (environ.get("RAW_URI") or path).partition("?")[0]
        parts = [urllib.parse.unquote(p) for p in raw[len(CONTROL_PREFIX):].split("/")]
        query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
        method = environ["REQUEST_METHOD"]
        try:
            return self._json(start_response, *self._dispatch(method, parts, query))
        except S3Error as err:
            return self._json(start_response, err.status, {"error": err.code, "bucket": err.bucket})

    def _dispatch(self, method, parts, query):
        if parts == ["latency"] and method == "PUT":
            try:
                ms = int(query.get("ms", ""))
            except ValueError:
                return 400, {"error": "latency needs ms=<milliseconds>"}
            if ms < 0:
                return 400, {"error": "latency must be >= 0"}
            self.latency_s = ms / 1000.0
            return 200, {"latency_ms": ms}
        if len(parts) < 2 or parts[0] != "stores":
            return 404, {"error": "not found"}
        sid = parts[1]
        if len(parts) == 2:
            if method == "PUT":
                return 200, {"port": self.stores.ensure(sid).port}
            if method == "DELETE":
                return (200 if self.stores.remove(sid) else 404), {}
        store = self.stores.stores.get(sid)
        if store is None:
            return 404, {"error": "NoSuchStore"}
        if parts[2:] == ["buckets"] and method == "GET":
            return 200, [{"name": b.name, "owner": b.owner} for b in sorted(store.buckets.values(), key=lambda b: b.name)]
        if len(parts) == 4 and parts[2] == "users":
            if method == "PUT":
                return 200, store.add_user(parts[3], query.get("display-name", "")).info()
            if method == "DELETE":
                return (200 if store.remove_user(parts[3], query.get("purge-data") == "true") else 404), {}
        if len(parts) == 4 and parts[2] == "buckets":
            if method == "PUT":
                store.create_bucket(parts[3], query.get("owner", ""))
                return 200, {}
            if method == "DELETE":
                return (200 if store.remove_bucket(parts[3], query.get("purge-objects") == "true") else 404), {}
        return 404, {"error": "not found"}

    @staticmethod
    def _json(start_response, status: int, doc) -> list[bytes]:
        body = json.dumps(doc).encode()
        start_response(f"{status} {_REASONS.get(status, 'Error')}", [("Content-Type", "application/json"),
                                                                     ("Content-Length", str(len(body)))])
        return [body]


def token_from_env() -> str | None:
    return os.environ.get(TOKEN_ENV) or None
