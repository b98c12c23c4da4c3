"""Helpers for the lab and integration tests: typed API handles, unique names, one polling wait,
small object builders, and Velero installed the way `velero install` does it.

Waits poll with a generous deadline: they are waits, never timing assertions.
Upstream source of the Velero install: Velero pkg/install/resources.go, pkg/install/install.go
(`velero install --provider aws --plugins velero/velero-plugin-for-aws:v1.13.0 --bucket B --prefix P
--secret-file credentials-velero --backup-location-config region=...,s3ForcePathStyle=true,s3Url=...
[--use-node-agent] --use-volume-snapshots=false` creates, in that order: the collection's CRDs
(roles/velero/files/crds), Namespace, ClusterRoleBinding, ServiceAccount, Secret `cloud-credentials`
(key `cloud`), BSL `default`, Deployment `velero`, DaemonSet `node-agent`).
"""
from __future__ import annotations

import base64
import gzip
import json
import subprocess
import time
import uuid
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 90.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_for(predicate, what: str = "condition", timeout: float = WAIT_SECONDS, interval: float = 0.05):
    """Poll predicate() until it returns a truthy value and return it; an API error (e.g. 404 while
    the object is not there yet) counts as "not yet". Fails naming `what`, the last value and error."""
    deadline = time.monotonic() + timeout
    last, last_error = None, None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except ApiException as exc:
            last, last_error = None, exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value: {last!r}"
                                 + (f" (last API error: {last_error.status} {last_error.reason})"
                                    if last_error else ""))
        time.sleep(interval)


class Apis:
    def __init__(self, api_client):
        self.client = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ext = client.ApiextensionsV1Api(api_client)
        self.storage = client.StorageV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)

    @property
    def api_client(self):
        return self.client

    def close(self):
        self.client.close()

    def namespace(self, name: str, labels: dict | None = None):
        self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": name, "labels": labels or {}}})

    def configmap(self, ns: str, name: str, data: dict, labels: dict | None = None):
        return self.core.create_namespaced_config_map(ns, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": data})

    def read_configmap(self, ns: str, name: str):
        return self.client.sanitize_for_serialization(self.core.read_namespaced_config_map(name, ns))

    def exists(self, reader, *args) -> bool:
        return not gone(lambda: reader(*args))


def gone(read) -> bool:
    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def make_namespace(core, name: str):
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def delete_namespace(core, name: str):
    try:
        core.delete_namespace(name)
    except ApiException as e:
        if e.status not in (404, 409):
            raise


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.27", labels=None,
               volumes=None, **spec_extra) -> dict:
    labels = labels or {"app": name}
    pod_spec = {"containers": [{"name": "main", "image": image,
                                "ports": [{"containerPort": 8080, "name": "http"}]}]}
    if volumes:
        pod_spec["volumes"] = volumes
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                     **spec_extra}}


def pvc(name: str, size: str = "1Gi", storage_class: str | None = None, volume_name=None) -> dict:
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if volume_name:
        spec["volumeName"] = volume_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": spec}


def cond(obj, ctype):
    """The condition of that type from a kubernetes-client model or dict, or None."""
    status = obj.status if hasattr(obj, "status") else obj.get("status", {})
    conditions = (status.conditions if hasattr(status, "conditions") else
                  status.get("conditions")) or []
    for c in conditions:
        t = c.type if hasattr(c, "type") else c.get("type")
        if t == ctype:
            return c
    return None


def deployment_ready(apps, ns, name, replicas):
    d = apps.read_namespaced_deployment(name, ns)
    s = d.status
    return (s.observed_generation == d.metadata.generation and (s.updated_replicas or 0) == replicas
            and (s.ready_replicas or 0) == replicas and (s.available_replicas or 0) == replicas
            and (s.replicas or 0) == replicas) and d


def owned_pods(core, ns, selector):
    return [p for p in core.list_namespaced_pod(ns, label_selector=selector).items]


# ---------------------------------------------------------------------------------------- Velero
CRD_DIR = REPO / "roles" / "velero" / "files" / "crds"
VELERO_IMAGE = "velero/velero:v1.18.0"
AWS_PLUGIN_IMAGE = "velero/velero-plugin-for-aws:v1.13.0"
TERMINAL_BACKUP_PHASES = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")
TERMINAL_RESTORE_PHASES = TERMINAL_BACKUP_PHASES
GROUP, VERSION = "velero.io", "v1"


def _create(fn, *args, **kwargs):
    """Create, tolerating AlreadyExists (velero install: "already exists, proceeding")."""
    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 409:
            raise
        return None


class VeleroInstall:
    """Velero installed in one cluster of a lab."""

    # Tests that only have the fixture reach the helpers through it.
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
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.rbac = client.RbacAuthorizationV1Api(self.api_client)
        self.ext = client.ApiextensionsV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)

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
        wait_for(ready, timeout=timeout, what=f"velero Deployment ready in {self.cluster}")
        self.wait_bsl("default", "Available", timeout=timeout)
        if self.node_agent:
            def agents():
                pods = self.core.list_namespaced_pod(self.namespace, label_selector="name=node-agent").items
                return pods and all(any(c.type == "Ready" and c.status == "True"
                                        for c in (p.status.conditions or [])) for p in pods)
            wait_for(agents, timeout=timeout, what="node-agent pods ready")

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
            self.get("backups", name)), timeout=timeout, what=f"backup {name} in {phases}")

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
        return wait_for(check, timeout=timeout, what=f"BSL {name} {phase}")

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


def run_backup(velero, name: str, spec: dict, timeout: float = 90.0) -> dict:
    velero.create_backup(name, spec)
    backup = velero.wait_backup(name, timeout=timeout)
    assert backup["status"]["phase"] in ("Completed", "PartiallyFailed"), backup["status"]
    return backup


def create_restore(velero, name: str, spec: dict) -> dict:
    return velero.create("restores", {"kind": "Restore", "metadata": {"name": name}, "spec": spec})


def wait_restore(velero, name: str, timeout: float = 90.0) -> dict:
    return wait_for(lambda: (lambda r: r if (r.get("status") or {}).get("phase") in TERMINAL_RESTORE_PHASES
                         else None)(velero.get("restores", name)), timeout=timeout, what=f"restore {name} terminal")


def restore(velero, name: str, spec: dict, timeout: float = 90.0) -> dict:
    create_restore(velero, name, spec)
    return wait_restore(velero, name, timeout)


def restore_prefix(velero, name: str) -> str:
    root = f"{velero.prefix.strip('/')}/" if velero.prefix else ""
    return f"{root}restores/{name}/"


def restore_file(velero, name: str, suffix: str):
    """A gzip JSON file of restores/<name>/ (suffix e.g. `results.gz`)."""
    key = f"{restore_prefix(velero, name)}restore-{name}-{suffix}"
    return json.loads(gzip.decompress(velero.read_object(key)))


def all_messages(result: dict) -> list[str]:
    out = list(result.get("velero") or []) + list(result.get("cluster") or [])
    for msgs in (result.get("namespaces") or {}).values():
        out += msgs
    return out


# ---------------------------------------------------------------------------------- apps with data
def make_app(kube, ns, name="app", volumes=("data",), annotations=None, storage_class="standard"):
    """A Deployment with one PVC (of ``storage_class``) per volume name, mounted by its container; its Running pod."""
    for vol in volumes:
        kube.core.create_namespaced_persistent_volume_claim(ns, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": vol, "labels": {"app": name}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                     "resources": {"requests": {"storage": "1Gi"}}}})
    kube.apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                              "spec": {"containers": [{
                                  "name": "main", "image": "busybox:1.36", "command": ["sleep", "infinity"],
                                  "volumeMounts": [{"name": v, "mountPath": f"/{v}"} for v in volumes]}],
                                  "volumes": [{"name": v, "persistentVolumeClaim": {"claimName": v}}
                                              for v in volumes]}}}})
    return running_pod(kube, ns, name)


def running_pod(kube, ns, app):
    def check():
        pods = kube.core.list_namespaced_pod(ns, label_selector=f"app={app}").items
        return next((p for p in pods if p.status.phase == "Running"), None)
    return wait_for(check, what=f"pod of {ns}/{app} Running")


def put_file(lab, cluster, ns, pvc, path, data: bytes, tmp_path):
    """Write ``data`` at ``path`` in the volume of a PVC (`fleetdr-lab volume put`)."""
    src = tmp_path / unique("src")
    src.write_bytes(data)
    lab.cli("volume", "put", "--cluster", cluster, "--namespace", ns, "--pvc", pvc, path, "--from", str(src))


def tree(lab, cluster, ns, pvc) -> dict:
    """{path: sha256} of the files in the volume of a PVC."""
    out = lab.cli("volume", "ls", "--cluster", cluster, "--namespace", ns, "--pvc", pvc, "--sha256", "--json")
    return {e["path"]: e["sha256"] for e in json.loads(out.stdout) if e.get("sha256")}


class Kubectl:
    """kubectl against one lab cluster with its own cache directory (a CRD made by the test is never
    hidden by a stale discovery cache); calls raise on a non-zero exit unless check=False."""

    def __init__(self, kubeconfig, cache_dir, context="c1"):
        self.base = ["kubectl", "--kubeconfig", str(kubeconfig), "--context", context, "--cache-dir", str(cache_dir)]

    def __call__(self, *args, stdin=None, check=True):
        proc = subprocess.run(self.base + list(args), input=stdin, capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def popen(self, *args):
        return subprocess.Popen(self.base + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
