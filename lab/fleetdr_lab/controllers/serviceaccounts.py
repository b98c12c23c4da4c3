"""Per-namespace defaults a real control plane adds to every namespace: the `default`
ServiceAccount (serviceaccount controller) and the `kube-root-ca.crt` ConfigMap holding the cluster
CA (root-ca-cert-publisher). Both are re-created when deleted while the namespace is Active.
Also the tokens controller (Secrets of type kubernetes.io/service-account-token get their token,
ca.crt and namespace; they go with their ServiceAccount) and the ServiceAccount admission plugin."""
from __future__ import annotations

import base64
import random
from pathlib import Path

from .. import satokens
from ..store import Admission, forbidden
from .base import Controller, is_deleting, meta

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# utilrand.String's alphabet (no vowels, no confusable characters)
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class ServiceAccountAdmission(Admission):
    """plugin/pkg/admission/serviceaccount/admission.go on pod creation: the ServiceAccount
    defaults to `default` and must exist (403 otherwise); unless automounting is switched off
    (pod, else ServiceAccount), every container and init container mounts a projected
    `kube-api-access-xxxxx` volume (bound token, kube-root-ca.crt, namespace) at the token path;
    the ServiceAccount's imagePullSecrets are copied when the pod names none."""

    def admit(self, store, rt, obj, old) -> None:
        if old is not None or rt.plural != "pods" or rt.group != "":
            return
        m = obj.get("metadata") or {}
        if MIRROR_ANNOTATION in (m.get("annotations") or {}):
            return
        spec = obj.setdefault("spec", {})
        name = spec.get("serviceAccountName") or "default"
        spec["serviceAccountName"] = name
        ns = m.get("namespace", "")
        sa = store.get_or_none("", "serviceaccounts", ns, name)
        if sa is None and name != "default":
            # the plugin runs before the name is generated: a generateName pod is named by its prefix
            pod_name = m.get("name", "")
            gen = m.get("generateName")
            if gen and pod_name.startswith(gen[:58]) and len(pod_name) == len(gen[:58]) + 5:
                pod_name = gen
            msg = (f'pods "{pod_name}" is forbidden: error looking up service account {ns}/{name}: '
                   f'serviceaccount "{name}" not found')
            raise forbidden(msg, {"name": pod_name, "kind": "pods"})
        # a missing `default` is created by the serviceaccount controller within the plugin's
        # retries (it looks the default account up ten times), so it is taken as existing
        sa = sa or {}
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken")
        if automount is not False:
            self._mount_token(spec)
        if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [dict(s) for s in sa["imagePullSecrets"]]

    @staticmethod
    def _mount_token(spec: dict) -> None:
        volumes = spec.get("volumes") or []
        volume_name = next((v.get("name") for v in volumes
                            if (v.get("name") or "").startswith("kube-api-access-")), None)
        has_volume = volume_name is not None
        if volume_name is None:
            volume_name = "kube-api-access-" + "".join(random.choice(_NAME_ALPHABET) for _ in range(5))
        needs_volume = False
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                mounts = c.get("volumeMounts") or []
                if any(vm.get("mountPath") == TOKEN_MOUNT_PATH for vm in mounts):
                    continue
                c["volumeMounts"] = mounts + [{"name": volume_name, "readOnly": True,
                                               "mountPath": TOKEN_MOUNT_PATH}]
                needs_volume = True
        if needs_volume and not has_volume:
            spec["volumes"] = volumes + [{"name": volume_name, "projected": {
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": ROOT_CA_CONFIGMAP,
                                   "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                        "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
                "defaultMode": 420}}]


class ServiceAccountController(Controller):
    name = "serviceaccount"
    watches = [("", "namespaces"), ("", "serviceaccounts"), ("", "configmaps"), ("", "secrets")]

    def __init__(self, cluster):
        super().__init__(cluster)
        self._ca_pem: str | None = None

    def keys_for(self, etype, obj):
        m = meta(obj)
        kind = obj.get("kind")
        if kind == "Namespace":
            return [] if etype == "DELETED" else [m.get("name")]
        if kind == "Secret":
            if etype != "DELETED" and obj.get("type") == TOKEN_SECRET_TYPE and not is_deleting(obj):
                return [("token", m.get("namespace"), m.get("name"))]
            return []
        if kind == "ServiceAccount" and etype == "DELETED":
            keys = [("tokens-of", m.get("namespace"), m.get("name"))]
            return keys + ([m.get("namespace")] if m.get("name") == "default" else [])
        if etype == "DELETED" and ((kind == "ServiceAccount" and m.get("name") == "default") or
                                   (kind == "ConfigMap" and m.get("name") == ROOT_CA_CONFIGMAP)):
            return [m.get("namespace")]
        return []

    def _root_ca(self) -> str | None:
        if self._ca_pem is None:
            lab_dir = getattr(getattr(self.cluster, "lab", None), "dir", None)
            path = Path(lab_dir) / "ca.crt" if lab_dir else None
            if path is not None and path.exists():
                self._ca_pem = path.read_text()
        return self._ca_pem

    def reconcile(self, key):
        if isinstance(key, tuple):
            if key[0] == "token":
                self._sync_token_secret(key[1], key[2])
            else:
                self._delete_tokens_of(key[1], key[2])
            return
        namespace = key
        ns = self.store.get_or_none("", "namespaces", None, namespace)
        if ns is None or is_deleting(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.store.get_or_none("", "serviceaccounts", namespace, "default") is None:
            self._create("serviceaccounts", namespace, {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": namespace}})
        ca = self._root_ca()
        if ca and self.store.get_or_none("", "configmaps", namespace, ROOT_CA_CONFIGMAP) is None:
            self._create("configmaps", namespace, {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                             "annotations": {"kubernetes.io/description": (
                                 "Contains a CA bundle that can be used to verify the "
                                 "kube-apiserver when using internal endpoints such as the "
                                 "internal service IP or kubernetes.default.svc. No other usage "
                                 "is guaranteed across distributions of Kubernetes clusters.")}},
                "data": {"ca.crt": ca}})

    def _create(self, plural, namespace, body):
        try:
            self.store.create("", plural, namespace, body)
        except Exception as e:
            # 409: someone was faster; 403: the namespace started terminating meanwhile
            if getattr(e, "code", None) not in (409, 403, 404):
                raise

    # -- tokens controller (pkg/controller/serviceaccount/tokens_controller.go) ---------------
    def _sync_token_secret(self, namespace, name):
        secret = self.store.get_or_none("", "secrets", namespace, name)
        if secret is None or is_deleting(secret) or secret.get("type") != TOKEN_SECRET_TYPE:
            return
        ann = secret["metadata"].get("annotations") or {}
        sa = self.store.get_or_none("", "serviceaccounts", namespace, ann.get(SA_NAME_ANNOTATION, ""))
        if sa is None or is_deleting(sa) or ann.get(SA_UID_ANNOTATION, sa["metadata"]["uid"]) != sa["metadata"]["uid"]:
            # the token of an account that does not exist (any more) is deleted
            self._delete_secret(secret)
            return
        data = dict(secret.get("data") or {})
        ca = self._root_ca() or ""
        want = {"ca.crt": base64.b64encode(ca.encode()).decode(),
                "namespace": base64.b64encode(namespace.encode()).decode()}
        changed = any(data.get(k) != v for k, v in want.items()) or not data.get("token") or \
            SA_UID_ANNOTATION not in ann
        if not changed:
            return
        data.update(want)
        if not data.get("token"):
            token = satokens.signer_of(self.cluster).legacy_token(sa, name)
            data["token"] = base64.b64encode(token.encode()).decode()
        secret["data"] = data
        secret["metadata"]["annotations"] = dict(ann, **{SA_UID_ANNOTATION: sa["metadata"]["uid"]})
        try:
            self.store.update("", "secrets", namespace, name, secret)
        except Exception as e:
            if getattr(e, "code", None) == 409:
                self.enqueue(("token", namespace, name))
            elif getattr(e, "code", None) != 404:
                raise

    def _delete_tokens_of(self, namespace, sa_name):
        for secret in self.store.list("", "secrets", namespace)["items"]:
            ann = secret["metadata"].get("annotations") or {}
            if secret.get("type") == TOKEN_SECRET_TYPE and ann.get(SA_NAME_ANNOTATION) == sa_name:
                self._delete_secret(secret)

    def _delete_secret(self, secret):
        m = secret["metadata"]
        try:
            self.store.delete("", "secrets", m["namespace"], m["name"], preconditions={"uid": m.get("uid")})
        except Exception as e:
            if getattr(e, "code", None) not in (404, 409):
                raise
