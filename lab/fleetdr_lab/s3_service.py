"""The lab's S3 endpoint: moto's server in a child process with IAM authentication on.

The child is `python -m fleetdr_lab.s3_child_server`: moto's own WSGI application behind a keep-alive
HTTP/1.1 server (see s3_child_server.py for why not `python -m moto.server`).

Set-up runs in the first few requests that `INITIAL_NO_AUTH_ACTION_COUNT` lets through
unauthenticated (IAM users, policies, access keys); from then on every request must be signed
with a key moto knows and allowed by that user's policies, so a wrong key really gets 403.

Two IAM users: `velero` (the key handed out in s3.json / credentials-velero, s3:* allowed) and
`fleetdr-lab-admin` (kept in lab.json only; the lab uses it to create the bucket and to revoke or
restore velero's permissions). Revocation is an explicit Deny policy on the velero user, which
moto evaluates like IAM does (explicit deny wins), so requests with that key get 403
AccessDenied until it is restored.

The same child serves the Rook object stores (s3_rgw.py: one port, users and bucket namespace per
CephObjectStore); `rgw()` and the `rgw_*` helpers are the lab's control of them (what Rook does
through RGW's admin ops API), authenticated with a token only the lab process and the child know.
"""
from __future__ import annotations

import asyncio
import ctypes
import http.client
import json
import logging
import os
import secrets
import signal
import socket
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from .s3_rgw import CONTROL_PREFIX, TOKEN_ENV

log = logging.getLogger("fleetdr_lab.s3_service")

BUCKET = "fleetdr"
REGION = "us-east-1"
VELERO_USER = "velero"
ADMIN_USER = "fleetdr-lab-admin"
DENY_POLICY = "fleetdr-lab-revoked"
# Unauthenticated set-up calls: 2 users x (create_user, put_user_policy, create_access_key).
SETUP_CALLS = 6

_ALLOW_S3 = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
_ALLOW_ALL = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": "*"}]}
_DENY_S3 = {"Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # Linux: moto gets SIGTERM if the lab process dies without cleaning up.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class ObjectStore:
    def __init__(self, log_path: Path, port: int | None = None, host: str = "127.0.0.1"):
        self.host = host
        self.port = port
        self.log_path = log_path
        self.bucket = BUCKET
        self.region = REGION
        self.access_key_id: str | None = None
        self.secret_access_key: str | None = None
        self.admin_access_key_id: str | None = None
        self.admin_secret_access_key: str | None = None
        self.revoked = False
        self.latency_ms = 0
        self.process: asyncio.subprocess.Process | None = None
        self.error: str | None = None
        self.rgw_token = secrets.token_urlsafe(24)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def info(self) -> dict:
        """The s3.json document (velero's key, never the admin key)."""
        return {"endpoint": self.endpoint, "bucket": self.bucket, "region": self.region,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key}

    def handle(self) -> dict:
        """What another lab process needs to use this child (`attach`): address, keys, control token."""
        return {"host": self.host, "port": self.port, "rgw_token": self.rgw_token,
                "access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key,
                "admin_access_key_id": self.admin_access_key_id,
                "admin_secret_access_key": self.admin_secret_access_key}

    def attach(self, handle: dict) -> None:
        """Use the child the primary lab process started (a serving process starts none of its own)."""
        for key, value in handle.items():
            setattr(self, key, value)

    def credentials_file(self) -> str:
        return ("[default]\n"
                f"aws_access_key_id={self.access_key_id}\n"
                f"aws_secret_access_key={self.secret_access_key}\n")

    async def start(self, timeout: float = 60.0) -> None:
        # A port picked free here can be taken before the child binds it (a 1,000-cluster lab binds
        # as many ports meanwhile): a child that exits at once then gets a new port, a few times.
        chosen = self.port is None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in range(5 if chosen else 1):
            if chosen:
                self.port = free_port(self.host)
            env = dict(os.environ)
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(SETUP_CALLS)
            env.pop("MOTO_PORT", None)
            env[TOKEN_ENV] = self.rgw_token
            logfile = open(self.log_path, "ab")
            try:
                self.process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "fleetdr_lab.s3_child_server", "-H", self.host, "-p", str(self.port),
                    stdin=asyncio.subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                    env=env, preexec_fn=_die_with_parent,
                )
            finally:
                logfile.close()
            while not await loop.run_in_executor(None, self._answers):
                if self.process.returncode is not None:
                    break
                if loop.time() > deadline:
                    raise RuntimeError(f"moto server did not answer on {self.endpoint}")
                await asyncio.sleep(0.2)
            if self.process.returncode is None:
                break
            log.warning("moto server exited with %s on port %s (attempt %d)", self.process.returncode, self.port, attempt + 1)
        else:
            raise RuntimeError(f"moto server exited with {self.process.returncode}; see {self.log_path}")
        await loop.run_in_executor(None, self._setup)
        log.info("S3 (moto) ready at %s, bucket %s", self.endpoint, self.bucket)

    def _answers(self) -> bool:
        # /moto-api/ is moto's own dashboard: it is not an AWS action, so it does not use up
        # one of the unauthenticated set-up calls.
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def _client(self, service: str, key_id: str = "setup", secret: str = "setup"):
        import boto3
        from botocore.config import Config
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=key_id, aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
        )

    def admin_client(self, service: str):
        return self._client(service, self.admin_access_key_id, self.admin_secret_access_key)

    def _setup(self) -> None:
        iam = self._client("iam")
        keys = {}
        for user, policy in ((VELERO_USER, _ALLOW_S3), (ADMIN_USER, _ALLOW_ALL)):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName=f"{user}-access",
                                PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        self.access_key_id, self.secret_access_key = keys[VELERO_USER]
        self.admin_access_key_id, self.admin_secret_access_key = keys[ADMIN_USER]
        # From here on authentication is enforced; the admin key creates the bucket.
        self.admin_client("s3").create_bucket(Bucket=self.bucket)

    def revoke_credentials(self) -> None:
        """Make every request signed with velero's key fail with 403 (blocking: run in executor)."""
        self.admin_client("iam").put_user_policy(
            UserName=VELERO_USER, PolicyName=DENY_POLICY, PolicyDocument=json.dumps(_DENY_S3))
        self.revoked = True

    def restore_credentials(self) -> None:
        """Undo revoke_credentials (blocking: run in executor)."""
        iam = self.admin_client("iam")
        if DENY_POLICY in iam.list_user_policies(UserName=VELERO_USER)["PolicyNames"]:
            iam.delete_user_policy(UserName=VELERO_USER, PolicyName=DENY_POLICY)
        self.revoked = False

    async def arevoke_credentials(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.revoke_credentials)

    async def arestore_credentials(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.restore_credentials)

    def set_latency(self, ms: int) -> None:
        """Make every request to the store wait `ms` milliseconds (0: none) (blocking: run in executor)."""
        status, answer = self.rgw("PUT", "latency", ms=str(ms))
        if status != 200:
            raise RuntimeError(f"S3 latency {ms}: {status} {answer}")
        self.latency_ms = ms

    async def aset_latency(self, ms: int) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.set_latency, ms)

    # -- Rook object stores (blocking: run in an executor) ---------------------------------------------

    def rgw(self, method: str, *parts: str, **query: str):
        """(status, JSON answer) of one call of the child's object-store control API (s3_rgw.ControlApp)."""
        path = CONTROL_PREFIX + "/".join(urllib.parse.quote(p, safe="") for p in parts)
        if query:
            path += "?" + urllib.parse.urlencode(query)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, headers={"Authorization": "Bearer " + self.rgw_token})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def rgw_store(self, sid: str) -> str:
        """The endpoint (on the lab host) of object store `sid`, started if new."""
        status, answer = self.rgw("PUT", "stores", sid)
        if status != 200:
            raise RuntimeError(f"object store {sid}: {status} {answer}")
        return f"http://{self.host}:{answer['port']}"

    def rgw_user(self, sid: str, uid: str, display_name: str = "") -> tuple[str, str]:
        """An RGW user of store `sid` (created if new): its (access key, secret key)."""
        status, answer = self.rgw("PUT", "stores", sid, "users", uid, **{"display-name": display_name or uid})
        if status != 200:
            raise RuntimeError(f"object store {sid}: user {uid}: {status} {answer}")
        key = answer["keys"][0]
        return key["access_key"], key["secret_key"]

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, timeout: float = 0.5) -> None:
        # moto keeps everything in memory and has nothing to flush: do not wait long for it.
        if not self.running():
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
