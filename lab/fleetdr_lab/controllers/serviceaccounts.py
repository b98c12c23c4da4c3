"""Per-namespace defaults a real control plane adds to every namespace: the `default`
ServiceAccount (serviceaccount controller) and the `kube-root-ca.crt` ConfigMap holding the cluster
CA (root-ca-cert-publisher). Both are re-created when deleted while the namespace is Active."""
from __future__ import annotations

from pathlib import Path

from .base import Controller, is_deleting, meta

ROOT_CA_CONFIGMAP = "kube-root-ca.crt"


class ServiceAccountController(Controller):
    name = "serviceaccount"
    watches = [("", "namespaces"), ("", "serviceaccounts"), ("", "configmaps")]

    def __init__(self, cluster):
        super().__init__(cluster)
        self._ca_pem: str | None = None

    def keys_for(self, etype, obj):
        m = meta(obj)
        kind = obj.get("kind")
        if kind == "Namespace":
            return [] if etype == "DELETED" else [m.get("name")]
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

    def reconcile(self, namespace):
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
