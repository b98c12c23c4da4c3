"""ServiceAccount tokens of one cluster: JWTs signed with the cluster's own key, as
kube-apiserver's --service-account-signing-key-file signs them, and their validation.

Two shapes, as upstream (pkg/serviceaccount/claims.go, legacy.go):
- bound tokens (TokenRequest, `kubectl create token`): iss/aud the API's issuer, exp/iat/nbf,
  jti and the private `kubernetes.io` claim naming the namespace, ServiceAccount (and the
  object the token is bound to);
- legacy tokens in Secrets of type kubernetes.io/service-account-token (tokens controller):
  iss `kubernetes/serviceaccount` and the `kubernetes.io/serviceaccount/...` claims, no expiry.
Validation looks the ServiceAccount (and Secret / bound object) up in the store, so a token of a
deleted ServiceAccount or Secret stops working at once. The key is an ECDSA P-256 key made on
first use (ES256; cheap to make for 1,000 clusters) and lives as long as the cluster's store.
"""
from __future__ import annotations

import base64
import datetime
import json
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

# kubeadm's --service-account-issuer and --api-audiences
ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER,)
LEGACY_ISSUER = "kubernetes/serviceaccount"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
AUTHENTICATED = "system:authenticated"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sa_username(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def split_sa_username(username: str) -> tuple[str, str] | None:
    """(namespace, name) of a `system:serviceaccount:NS:NAME` user, else None."""
    if not username.startswith(SA_PREFIX):
        return None
    parts = username[len(SA_PREFIX):].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def sa_groups(namespace: str) -> list[str]:
    # pkg/serviceaccount/util.go MakeGroupNames
    return [SA_GROUP, f"{SA_GROUP}:{namespace}"]


class TokenSigner:
    """The signing key of one cluster and the two token shapes it signs."""

    def __init__(self):
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._public = self._key.public_key()
        self.kid = _b64(uuid.uuid4().bytes)

    def sign(self, claims: dict) -> str:
        header = _b64(json.dumps({"alg": "ES256", "kid": self.kid}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        der = self._key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def verify(self, token: str) -> dict | None:
        """The claims of a token this key signed, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = json.loads(_unb64(parts[0]))
            if not isinstance(header, dict) or header.get("alg") != "ES256":
                return None
            raw = _unb64(parts[2])
            if len(raw) != 64:
                return None
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            self._public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, InvalidSignature, TypeError):
            return None
        return claims if isinstance(claims, dict) else None

    def legacy_token(self, sa: dict, secret_name: str) -> str:
        m = sa["metadata"]
        return self.sign({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": m["namespace"],
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": m["name"],
            "kubernetes.io/serviceaccount/service-account.uid": m.get("uid", ""),
            "sub": sa_username(m["namespace"], m["name"]),
        })

    def bound_token(self, sa: dict, now: datetime.datetime, expiration_seconds: int,
                    audiences: list[str], bound: dict | None = None) -> tuple[str, datetime.datetime]:
        m = sa["metadata"]
        iat = int(now.timestamp())
        exp = iat + expiration_seconds
        private = {"namespace": m["namespace"],
                   "serviceaccount": {"name": m["name"], "uid": m.get("uid", "")}}
        if bound:
            private[bound["kind"].lower()] = {"name": bound["name"], "uid": bound["uid"]}
        claims = {"aud": list(audiences), "exp": exp, "iat": iat, "iss": ISSUER,
                  "jti": str(uuid.uuid4()), "kubernetes.io": private, "nbf": iat,
                  "sub": sa_username(m["namespace"], m["name"])}
        return self.sign(claims), datetime.datetime.fromtimestamp(exp, datetime.timezone.utc)


def signer_of(cluster) -> TokenSigner:
    signer = getattr(cluster, "_sa_signer", None)
    if signer is None:
        signer = cluster._sa_signer = TokenSigner()
    return signer


def authenticate_token(cluster, token: str, audiences=API_AUDIENCES) -> dict | None:
    """{username, uid, groups, extra, audiences} of a valid ServiceAccount token, else None
    (pkg/serviceaccount/jwt.go + claims.go / legacy.go validators)."""
    signer = getattr(cluster, "_sa_signer", None)
    if signer is None or token.count(".") != 2:
        return None
    claims = signer.verify(token)
    if claims is None:
        return None
    store = cluster.store
    if claims.get("iss") == LEGACY_ISSUER:
        ns = claims.get("kubernetes.io/serviceaccount/namespace")
        name = claims.get("kubernetes.io/serviceaccount/service-account.name")
        uid = claims.get("kubernetes.io/serviceaccount/service-account.uid")
        secret_name = claims.get("kubernetes.io/serviceaccount/secret.name")
        if not (ns and name and secret_name):
            return None
        secret = store.get_or_none("", "secrets", ns, secret_name)
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            return None
        data = secret.get("data") or {}
        if data.get("token") != base64.b64encode(token.encode()).decode():
            return None
        token_audiences = list(audiences)
        extra = {}
    elif claims.get("iss") == ISSUER:
        now = int(store.clock.now().timestamp())
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now or \
                claims.get("nbf", 0) > now + 60:
            return None
        aud = claims.get("aud") or []
        aud = [aud] if isinstance(aud, str) else aud
        token_audiences = [a for a in aud if a in audiences]
        if not token_audiences:
            return None
        private = claims.get("kubernetes.io") or {}
        ns = private.get("namespace")
        name = (private.get("serviceaccount") or {}).get("name")
        uid = (private.get("serviceaccount") or {}).get("uid")
        if not (ns and name):
            return None
        extra = {"authentication.kubernetes.io/credential-id": [f"JTI={claims.get('jti', '')}"]}
        for kind, plural in (("pod", "pods"), ("secret", "secrets")):
            ref = private.get(kind)
            if ref:
                obj = store.get_or_none("", plural, ns, ref.get("name", ""))
                if obj is None or obj["metadata"].get("uid") != ref.get("uid") or \
                        obj["metadata"].get("deletionTimestamp"):
                    return None
                if kind == "pod":
                    extra["authentication.kubernetes.io/pod-name"] = [ref.get("name", "")]
                    extra["authentication.kubernetes.io/pod-uid"] = [ref.get("uid", "")]
    else:
        return None
    sa = store.get_or_none("", "serviceaccounts", ns, name)
    if sa is None or (uid and sa["metadata"].get("uid") != uid) or sa["metadata"].get("deletionTimestamp"):
        return None
    return {"username": sa_username(ns, name), "uid": sa["metadata"].get("uid", ""),
            "groups": sa_groups(ns) + [AUTHENTICATED], "extra": extra,
            "audiences": token_audiences}
