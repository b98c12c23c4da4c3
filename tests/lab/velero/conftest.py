"""Velero in lab clusters, installed the way a user does: through the Kubernetes API only.

What `velero install --provider aws --plugins velero/velero-plugin-for-aws:v1.13.0 --bucket B
--prefix P --secret-file credentials-velero --backup-location-config region=...,s3ForcePathStyle=true,
s3Url=... [--use-node-agent] --use-volume-snapshots=false` creates, in that order:
the collection's CRDs (roles/velero/files/crds), Namespace, ClusterRoleBinding, ServiceAccount,
Secret `cloud-credentials` (key `cloud`), BSL `default`, Deployment `velero`, DaemonSet `node-agent`.

Fixtures:
- `velero_factory`: `install(lab, cluster, **options) -> VeleroInstall`; installs done through it are
  uninstalled when the session ends (session-scoped, shared by every Velero test).
- `velero`: Velero (with node-agent) in c1 of the session lab, BSL prefix `velero/c1`.
- `velero_c2`: the same in c2 (prefix `velero/c2`).
`VeleroInstall` has helpers to create/read/wait on Velero objects (waits poll with a deadline;
tests assert on outcomes, never on durations).

Upstream source: Velero pkg/install/resources.go, pkg/install/install.go.
"""
from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "roles" / "velero" / "files" / "crds"
VELERO_IMAGE = "velero/velero:v1.18.0"
AWS_PLUGIN_IMAGE = "velero/velero-plugin-for-aws:v1.13.0"
TERMINAL_BACKUP_PHASES = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")
GROUP, VERSION = "velero.io", "v1"


def _create(fn, *args, **kwargs):
    """Create, tolerating AlreadyExists (velero install: "already exists, proceeding")."""
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 409:
            raise
        return None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(predicate, timeout: float = 90.0, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate()` until it returns a truthy value; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except ApiException as exc:
            if exc.status != 404:
                raise
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


class VeleroInstall:
    """Velero installed in one cluster of a lab."""

    # Test modules use these through the fixture (importing `conftest` by name is ambiguous).
    unique = staticmethod(unique)
    wait_for = staticmethod(wait_for)

    def __init__(self, lab, cluster: str, namespace: str = "velero", prefix: str | None = None,
                 version: str = "v1.18.0", node_agent: bool = False, args: tuple = (),
                 bsl_config: dict | None = None, plugins: tuple = (AWS_PLUGIN_IMAGE,)):
        self.lab = lab
        self.cluster = cluster
        self.namespace = namespace
        self.prefix = prefix if prefix is not None else f"velero/{cluster}"
        self.version = version
        self.image = f"velero/velero:{version}"
        self.node_agent = node_agent
        self.args = tuple(args)
        self.plugins = tuple(plugins)
        s3 = lab.s3
        self.bucket = s3["bucket"]
        self.bsl_config = bsl_config if bsl_config is not None else {
            "region": s3["region"], "s3ForcePathStyle": "true", "s3Url": s3["endpoint"]}
        self.api_client = lab.api(cluster)
        self.core = k8s.CoreV1Api(self.api_client)
        self.apps = k8s.AppsV1Api(self.api_client)
        self.rbac = k8s.RbacAuthorizationV1Api(self.api_client)
        self.ext = k8s.ApiextensionsV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)

    # ------------------------------------------------------------------ install / uninstall
    def install(self, wait: bool = True) -> "VeleroInstall":
        labels = {"component": "velero"}
        for path in sorted(CRD_DIR.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    _create(self.ext.create_custom_resource_definition, doc)
        ns_labels = dict(labels)
        for mode in ("enforce", "audit", "warn"):
            ns_labels[f"pod-security.kubernetes.io/{mode}"] = "privileged"
            ns_labels[f"pod-security.kubernetes.io/{mode}-version"] = "latest"
        _create(self.core.create_namespace, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": self.namespace, "labels": ns_labels}})
        crb_name = "velero" if self.namespace == "velero" else f"velero-{self.namespace}"
        _create(self.rbac.create_cluster_role_binding, {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": crb_name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "velero", "namespace": self.namespace}]})
        _create(self.core.create_namespaced_service_account, self.namespace, {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "velero", "namespace": self.namespace, "labels": labels}})
        secret_file = (Path(self.lab.dir) / "credentials-velero").read_bytes()
        _create(self.core.create_namespaced_secret, self.namespace, {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "cloud-credentials", "namespace": self.namespace, "labels": labels},
            "data": {"cloud": base64.b64encode(secret_file).decode()}})
        bsl = {"apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
               "metadata": {"name": "default", "namespace": self.namespace, "labels": labels},
               "spec": {"provider": "aws", "objectStorage": {"bucket": self.bucket},
                        "config": dict(self.bsl_config), "default": True}}
        if self.prefix:
            bsl["spec"]["objectStorage"]["prefix"] = self.prefix
        _create(self.custom.create_namespaced_custom_object, GROUP, VERSION, self.namespace,
                "backupstoragelocations", bsl)
        _create(self.apps.create_namespaced_deployment, self.namespace, self._deployment())
        if self.node_agent:
            _create(self.apps.create_namespaced_daemon_set, self.namespace, self._daemonset())
        if wait:
            self.wait_ready()
        return self

    def _env(self, with_node: bool = False) -> list[dict]:
        env = [{"name": "VELERO_SCRATCH_DIR", "value": "/scratch"},
               {"name": "VELERO_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
               {"name": "LD_LIBRARY_PATH", "value": "/plugins"}]
        if with_node:
            env.insert(0, {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
        for var in ("GOOGLE_APPLICATION_CREDENTIALS", "AWS_SHARED_CREDENTIALS_FILE",
                    "AZURE_CREDENTIALS_FILE", "ALIBABA_CLOUD_CREDENTIALS_FILE"):
            env.append({"name": var, "value": "/credentials/cloud"})
        return env

    def _deployment(self) -> dict:
        pull = "IfNotPresent" if not self.image.endswith(":latest") else "Always"
        init = []
        for image in self.plugins:
            repo = image.split("/", 1)[1] if "/" in image and "." in image.split("/", 1)[0] else image
            name = repo.rsplit(":", 1)[0]
            for ch in "/_.":
                name = name.replace(ch, "-")
            init.append({"name": name, "image": image, "imagePullPolicy": pull,
                         "volumeMounts": [{"name": "plugins", "mountPath": "/target"}]})
        args = ["server", "--features=", "--uploader-type=kopia", *self.args]
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "velero", "namespace": self.namespace, "labels": {"component": "velero"}},
            "spec": {
                "selector": {"matchLabels": {"deploy": "velero"}},
                "template": {
                    "metadata": {"labels": {"component": "velero", "deploy": "velero"},
                                 "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8085",
                                                 "prometheus.io/path": "/metrics"}},
                    "spec": {
                        "restartPolicy": "Always", "serviceAccountName": "velero",
                        "os": {"name": "linux"},
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "kubernetes.io/os", "operator": "NotIn", "values": ["windows"]}]}]}}},
                        "initContainers": init,
                        "containers": [{
                            "name": "velero", "image": self.image, "imagePullPolicy": pull,
                            "command": ["/velero"], "args": args,
                            "ports": [{"name": "metrics", "containerPort": 8085}],
                            "resources": {"requests": {"cpu": "500m", "memory": "128Mi"},
                                          "limits": {"cpu": "1000m", "memory": "512Mi"}},
                            "env": self._env(),
                            "volumeMounts": [{"name": "plugins", "mountPath": "/plugins"},
                                             {"name": "scratch", "mountPath": "/scratch"},
                                             {"name": "cloud-credentials", "mountPath": "/credentials"}]}],
                        "volumes": [{"name": "plugins", "emptyDir": {}}, {"name": "scratch", "emptyDir": {}},
                                    {"name": "cloud-credentials",
                                     "secret": {"secretName": "cloud-credentials", "defaultMode": 0o444}}]}}}}

    def _daemonset(self) -> dict:
        return {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "node-agent", "namespace": self.namespace, "labels": {"component": "velero"}},
            "spec": {
                "selector": {"matchLabels": {"name": "node-agent"}},
                "template": {
                    "metadata": {"labels": {"component": "velero", "name": "node-agent", "role": "node-agent"}},
                    "spec": {
                        "serviceAccountName": "velero", "securityContext": {"runAsUser": 0},
                        "containers": [{
                            "name": "node-agent", "image": self.image, "command": ["/velero"],
                            "args": ["node-agent", "server", "--features="],
                            "env": self._env(with_node=True),
                            "securityContext": {"privileged": False},
                            "volumeMounts": [
                                {"name": "host-pods", "mountPath": "/host_pods", "mountPropagation": "HostToContainer"},
                                {"name": "host-plugins", "mountPath": "/var/lib/kubelet/plugins",
                                 "mountPropagation": "HostToContainer"},
                                {"name": "scratch", "mountPath": "/scratch"},
                                {"name": "cloud-credentials", "mountPath": "/credentials"}]}],
                        "volumes": [
                            {"name": "host-pods", "hostPath": {"path": "/var/lib/kubelet/pods"}},
                            {"name": "host-plugins", "hostPath": {"path": "/var/lib/kubelet/plugins"}},
                            {"name": "scratch", "emptyDir": {}},
                            {"name": "cloud-credentials", "secret": {"secretName": "cloud-credentials"}}]}}}}

    def wait_ready(self, timeout: float = 60.0):
        def ready():
            d = self.apps.read_namespaced_deployment("velero", self.namespace)
            return (d.status.ready_replicas or 0) >= 1
        wait_for(ready, timeout, what=f"velero Deployment ready in {self.cluster}")
        self.wait_bsl("default", "Available", timeout=timeout)
        if self.node_agent:
            def agents():
                pods = self.core.list_namespaced_pod(self.namespace, label_selector="name=node-agent").items
                return pods and all(any(c.type == "Ready" and c.status == "True"
                                        for c in (p.status.conditions or [])) for p in pods)
            wait_for(agents, timeout, what="node-agent pods ready")

    def uninstall(self):
        """What `velero uninstall` does: delete the namespace, the CRB and the CRDs."""
        for fn, args in ((self.core.delete_namespace, (self.namespace,)),
                         (self.rbac.delete_cluster_role_binding,
                          ("velero" if self.namespace == "velero" else f"velero-{self.namespace}",))):
            try:
                fn(*args)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        for path in sorted(CRD_DIR.glob("*.yaml")):
            doc = yaml.safe_load_all(path.read_text())
            for d in doc:
                if not d:
                    continue
                try:
                    self.ext.delete_custom_resource_definition(d["metadata"]["name"])
                except ApiException as exc:
                    if exc.status != 404:
                        raise
        self.api_client.close()

    # ------------------------------------------------------------------ object helpers
    def create(self, plural: str, body: dict) -> dict:
        body.setdefault("apiVersion", "velero.io/v1")
        body.setdefault("metadata", {}).setdefault("namespace", self.namespace)
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)

    def get(self, plural: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def get_or_none(self, plural: str, name: str) -> dict | None:
        try:
            return self.get(plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, plural: str, label_selector: str | None = None) -> list[dict]:
        kwargs = {"label_selector": label_selector} if label_selector else {}
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, **kwargs)["items"]

    def patch(self, plural: str, name: str, body: dict) -> dict:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, body)

    def delete(self, plural: str, name: str):
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def create_backup(self, name: str, spec: dict | None = None, labels: dict | None = None,
                      kind: str = "Backup") -> dict:
        body = {"kind": kind, "metadata": {"name": name}, "spec": spec or {}}
        if labels:
            body["metadata"]["labels"] = labels
        return self.create("backups", body)

    def wait_backup(self, name: str, phases=TERMINAL_BACKUP_PHASES, timeout: float = 60.0) -> dict:
        return wait_for(lambda: (lambda b: b if (b.get("status") or {}).get("phase") in phases else None)(
            self.get("backups", name)), timeout, what=f"backup {name} in {phases}")

    def backup(self, name: str, spec: dict | None = None, **kw) -> dict:
        self.create_backup(name, spec, **kw)
        return self.wait_backup(name)

    def wait_bsl(self, name: str, phase: str, timeout: float = 30.0, after: str | None = None) -> dict:
        def check():
            b = self.get("backupstoragelocations", name)
            st = b.get("status") or {}
            if st.get("phase") != phase:
                return None
            if after and (st.get("lastValidationTime") or "") < after:
                return None
            return b
        return wait_for(check, timeout, what=f"BSL {name} {phase}")

    # S3 helpers (boto3 on the lab's S3)
    def s3(self):
        return self.lab.s3_client()

    def bucket_keys(self, prefix: str) -> list[str]:
        s3 = self.s3()
        keys, token = [], None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            resp = s3.list_objects_v2(**kw)
            keys += [o["Key"] for o in resp.get("Contents", [])]
            if not resp.get("IsTruncated"):
                return keys
            token = resp["NextContinuationToken"]

    def backup_prefix(self, name: str) -> str:
        return f"{self.prefix.strip('/')}/backups/{name}/" if self.prefix else f"backups/{name}/"

    def read_object(self, key: str) -> bytes:
        return self.s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()


class VeleroFactory:
    def __init__(self):
        self.installs: list[VeleroInstall] = []

    def __call__(self, lab, cluster: str, **options) -> VeleroInstall:
        for inst in self.installs:
            if inst.lab is lab and inst.cluster == cluster:
                return inst
        inst = VeleroInstall(lab, cluster, **options).install()
        self.installs.append(inst)
        return inst

    def close(self):
        for inst in self.installs:
            try:
                inst.uninstall()
            except Exception:
                pass


@pytest.fixture(scope="session")
def velero_factory():
    factory = VeleroFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def velero(lab, velero_factory) -> VeleroInstall:
    return velero_factory(lab, "c1", node_agent=True)


@pytest.fixture(scope="session")
def velero_c2(lab, velero_factory) -> VeleroInstall:
    return velero_factory(lab, "c2", node_agent=True)


@pytest.fixture(scope="session")
def velero_installer():
    """The VeleroInstall class, for tests that install with non-default options themselves."""
    return VeleroInstall


@pytest.fixture(scope="session")
def scratch_lab(tmp_path_factory):
    """One extra 1-cluster lab for tests that revoke S3 keys, move the clock, scale Velero down or
    uninstall it (things that would disturb the shared session lab)."""
    from labctl import LabHandle
    handle = LabHandle.up(tmp_path_factory.mktemp("velero-scratch"), clusters=1)
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture
def private_velero(scratch_lab) -> VeleroInstall:
    """A fresh Velero in c1 of the scratch lab: its own namespace and bucket prefix, uninstalled after."""
    inst = VeleroInstall(scratch_lab, "c1", namespace=unique("velero"), prefix=f"velero/{unique('scratch')}")
    inst.install()
    try:
        yield inst
    finally:
        try:
            inst.uninstall()
        except Exception:
            pass
