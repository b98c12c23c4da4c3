# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One way to reach a cluster: kubernetes.core's client factory plus retries.

Authentication is entirely kubernetes.core's (``get_api_client``: kubeconfig
path or dict, context, host, api_key, certificates, proxies, ``K8S_AUTH_*``
environment variables). From the configuration of the ``kubernetes.client.ApiClient``
it builds, ``KubeClient`` sends its requests over transport.py's kept-alive
connections and offers the few typed calls the modules need, each retried with
backoff and jitter on 429, 5xx and connection resets.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import json
import os
import threading
import time

try:
    from urllib.parse import urlparse
    from urllib.request import getproxies
except ImportError:  # pragma: no cover - Python 2 controllers are not supported by kubernetes.core 6
    from urlparse import urlparse
    from urllib import getproxies

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ApiError
from ansible_collections.fleetdr.kube.plugins.module_utils.retries import DEFAULT_RETRIES, with_retries
from ansible_collections.fleetdr.kube.plugins.module_utils.transport import HttpTransport, watch_events

try:
    import kubernetes

    HAS_K8S = True
    K8S_IMPORT_ERROR = None
except ImportError as exc:
    HAS_K8S = False
    K8S_IMPORT_ERROR = exc

try:
    import yaml
except ImportError:  # pragma: no cover - kubernetes needs it; without it kubeconfig paths go to the factory
    yaml = None

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

    HAS_K8S_CORE = True
except ImportError:
    HAS_K8S_CORE = False
    AUTH_ARG_SPEC = {}

VELERO_GROUP = "velero.io"
VELERO_VERSION = "v1"


class _ParamsHolder(object):
    """Stands in for a module when a client is built from plain params (fleet threads)."""

    server_side_dry_run = False
    check_mode = False

    def __init__(self, params):
        self.params = params

    def requires(self, dependency, minimum=None, reason=None):
        return None


class PathWatchSource(object):
    """A ``waiter`` source for one object of any kind (a CRD, a Deployment, a Backup...), by collection
    path and name: read by a list narrowed to its name, followed by a watch."""

    def __init__(self, client, collection_path, name):
        self.client = client
        self.collection_path = collection_path
        self.query = {"fieldSelector": "metadata.name={0}".format(name)}

    def get(self):
        result = self.client._json_request("GET", self.collection_path, query=self.query, _request_timeout=self.client.request_timeout)
        items = (result or {}).get("items") or []
        return (items[0] if items else None), ((result or {}).get("metadata") or {}).get("resourceVersion")

    def stream(self, resource_version, timeout_seconds):
        return self.client.watch(self.collection_path, self.query, resource_version, timeout_seconds)


class CollectionWatchSource(PathWatchSource):
    """A ``waiter`` source for the objects of one collection (narrowed by labels): the waited-on
    "object" is ``{"metadata": {"resourceVersion": rv}, "items": {name: obj}}``, read once and kept
    current from one watch, so "are all of these ready" costs one stream, not one per object."""

    def __init__(self, client, collection_path, label_selector=None):
        self.client = client
        self.collection_path = collection_path
        self.query = {"labelSelector": label_selector} if label_selector else {}
        self.items = {}

    def _state(self, resource_version):
        return {"metadata": {"resourceVersion": resource_version}, "items": dict(self.items)}

    def get(self):
        result = self.client._json_request("GET", self.collection_path, query=self.query, _request_timeout=self.client.request_timeout)
        self.items = dict((item["metadata"]["name"], item) for item in (result or {}).get("items") or [])
        resource_version = ((result or {}).get("metadata") or {}).get("resourceVersion")
        return self._state(resource_version), resource_version

    def stream(self, resource_version, timeout_seconds):
        for event_type, obj in self.client.watch(self.collection_path, self.query, resource_version, timeout_seconds):
            if event_type == "BOOKMARK":
                yield event_type, obj
                continue
            if event_type == "DELETED":
                self.items.pop(obj["metadata"]["name"], None)
            else:
                self.items[obj["metadata"]["name"]] = obj
            yield "MODIFIED", self._state((obj.get("metadata") or {}).get("resourceVersion"))


def _timeout_within(timeout, deadline):
    """A request timeout that ends by ``deadline`` (time.monotonic()) when one is given."""
    if deadline is None:
        return timeout
    return max(min(float(timeout), deadline - time.monotonic()), 1.0)


class KubeClient(object):
    """Typed, retried calls against one cluster, scoped to the Velero namespace."""

    def __init__(self, api_client, namespace="velero", context=None, cluster=None, retries=DEFAULT_RETRIES, request_timeout=30):
        self.api_client = api_client
        self.namespace = namespace
        self.context = context
        self.cluster = cluster
        self.retries = retries
        self.request_timeout = request_timeout
        self._transport = None

    @property
    def transport(self):
        """The wire to this cluster (transport.py), from the kubernetes client's configuration."""
        if self._transport is None:
            self._transport = HttpTransport(self.api_client.configuration, getattr(self.api_client, "user_agent", None))
        return self._transport

    def _json_request(self, method, path, body=None, query=None, _request_timeout=None, content_type="application/json", answer=True):
        """One JSON request on an API path, answered as a dict (None when the ``answer`` is not needed:
        a 1 MB CRD's apply response is not decoded for nothing)."""
        _status, _headers, data = self.transport.request(method, path, query=query, body=body, content_type=content_type,
                                                         timeout=_request_timeout)
        return json.loads(data) if data and answer else None

    def _core(self, action, method, path, body=None, query=None, missing_ok=False, retries=None, timeout=None,
              content_type="application/json", answer=True, deadline=None):
        """A retried request on any API path; None on 404 when ``missing_ok``."""
        try:
            return with_retries(
                lambda: self._json_request(method, path, body=body, query=query, _request_timeout=_timeout_within(
                    timeout or self.request_timeout, deadline), content_type=content_type, answer=answer),
                action, retries=self.retries if retries is None else retries, deadline=deadline)
        except ApiError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise

    def request(self, action, method, path, body=None, query=None, missing_ok=False, content_type="application/json", answer=True,
                deadline=None):
        """A retried request on any API path (the apply engine's); None on 404 when ``missing_ok``."""
        return self._core(action, method, path, body=body, query=query, missing_ok=missing_ok, content_type=content_type,
                          answer=answer, deadline=deadline)

    def watch_path(self, collection_path, name):
        """A ``waiter`` source for one object of any kind, by its collection path and name."""
        return PathWatchSource(self, collection_path, name)

    def watch_collection(self, collection_path, label_selector=None):
        """A ``waiter`` source for every object of a collection (narrowed by ``label_selector``)."""
        return CollectionWatchSource(self, collection_path, label_selector)

    def watch(self, collection_path, query, resource_version, timeout_seconds):
        """(type, object) of the watch events of a collection from ``resource_version``, for at most
        ``timeout_seconds`` (bookmarks included: they carry the resourceVersion to resume from)."""
        query = dict(query or {}, watch="true", allowWatchBookmarks="true", timeoutSeconds=str(timeout_seconds))
        if resource_version:
            query["resourceVersion"] = resource_version
        return watch_events(self.transport, collection_path, query, (self.request_timeout, timeout_seconds + 15))

    def get_raw(self, path, action=None, retries=None, timeout=None, deadline=None):
        """GET any API path (e.g. /apis/apps/v1/namespaces/velero/deployments/velero); None when absent. With
        ``deadline`` (a time.monotonic() value) neither a retry nor a request's read runs past it."""
        return self._core(action or "Reading {0}".format(path), "GET", path, missing_ok=True, retries=retries, timeout=timeout,
                          deadline=deadline)

    # ---- Velero custom objects (no /status subresource: status travels with the object), as plain
    # JSON on their paths: the typed CustomObjectsApi validates every call's arguments (pydantic)
    # and costs its import in every process.
    def _velero_path(self, plural, namespace=None, name=None):
        path = "/apis/{0}/{1}/namespaces/{2}/{3}".format(VELERO_GROUP, VELERO_VERSION, namespace or self.namespace, plural)
        return path + "/" + name if name else path

    def get(self, plural, name, namespace=None):
        return self._core("Reading {0} {1}".format(plural, name), "GET", self._velero_path(plural, namespace, name), missing_ok=True)

    def list(self, plural, label_selector=None, field_selector=None, namespace=None):
        query = dict((key, value) for key, value in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if value)
        result = self._core("Listing {0}".format(plural), "GET", self._velero_path(plural, namespace), query=query or None)
        return (result or {}).get("items") or []

    def create(self, plural, body, namespace=None):
        meta = body.get("metadata", {})
        try:
            return self._core("Creating {0} {1}".format(plural, meta.get("name") or meta.get("generateName")), "POST",
                              self._velero_path(plural, namespace), body=body)
        except ApiError as exc:
            # A create whose answer was lost (a timeout or reset, then retried) finds its own object:
            # the same name carrying every label we set (our ownership labels) is ours, not a conflict.
            labels = meta.get("labels") or {}
            if exc.status != 409 or not meta.get("name") or not labels:
                raise
            existing = self.get(plural, meta["name"], namespace=namespace)
            if existing is None or any(((existing.get("metadata") or {}).get("labels") or {}).get(k) != v for k, v in labels.items()):
                raise
            return existing

    def replace(self, plural, name, body, namespace=None):
        return self._core("Updating {0} {1}".format(plural, name), "PUT", self._velero_path(plural, namespace, name), body=body)

    def delete(self, plural, name, namespace=None):
        return self._core("Deleting {0} {1}".format(plural, name), "DELETE", self._velero_path(plural, namespace, name), missing_ok=True)

    def watch_source(self, plural, name, namespace=None):
        return PathWatchSource(self, self._velero_path(plural, namespace), name)

    def selection_source(self, plural, label_selector, namespace=None):
        return CollectionWatchSource(self, self._velero_path(plural, namespace), label_selector)

    # ---- core objects (Secrets, ConfigMaps, Namespaces)
    def _core_path(self, plural, namespace, name=None):
        path = "/api/v1/namespaces/{0}/{1}".format(namespace or self.namespace, plural)
        return path + "/" + name if name else path

    def get_secret(self, name, namespace=None):
        return self._core("Reading Secret {0}".format(name), "GET", self._core_path("secrets", namespace, name), missing_ok=True)

    def create_secret(self, body, namespace=None):
        # Never echo the body: it holds credentials.
        return self._core("Creating Secret {0}".format(body["metadata"]["name"]), "POST", self._core_path("secrets", namespace), body)

    def replace_secret(self, name, body, namespace=None):
        return self._core("Updating Secret {0}".format(name), "PUT", self._core_path("secrets", namespace, name), body)

    def delete_secret(self, name, namespace=None):
        return self._core("Deleting Secret {0}".format(name), "DELETE", self._core_path("secrets", namespace, name), missing_ok=True)

    def get_configmap(self, name, namespace=None):
        return self._core("Reading ConfigMap {0}".format(name), "GET", self._core_path("configmaps", namespace, name), missing_ok=True)

    def list_configmaps(self, label_selector, namespace=None):
        result = self._core("Listing ConfigMaps", "GET", self._core_path("configmaps", namespace),
                            query={"labelSelector": label_selector} if label_selector else None)
        return (result or {}).get("items") or []

    def create_configmap(self, body, namespace=None):
        return self._core("Creating ConfigMap {0}".format(body["metadata"]["name"]), "POST", self._core_path("configmaps", namespace), body)

    def replace_configmap(self, name, body, namespace=None):
        return self._core("Updating ConfigMap {0}".format(name), "PUT", self._core_path("configmaps", namespace, name), body)

    def delete_configmap(self, name, namespace=None):
        return self._core("Deleting ConfigMap {0}".format(name), "DELETE", self._core_path("configmaps", namespace, name), missing_ok=True)

    def list_core(self, plural, namespace=None, label_selector=None):
        """Built-in objects of one kind (pods, persistentvolumeclaims, ...) in a namespace, or in all
        namespaces when ``namespace`` is ``"*"``."""
        path = "/api/v1/" + plural if namespace == "*" else self._core_path(plural, namespace)
        result = self._core("Listing {0}".format(plural), "GET", path,
                            query={"labelSelector": label_selector} if label_selector else None)
        return (result or {}).get("items") or []

    def namespace_exists(self, name):
        return self._core("Reading Namespace {0}".format(name), "GET", "/api/v1/namespaces/" + name, missing_ok=True) is not None


def current_context(params):
    """The kubeconfig context a module talks to (for results), without secrets."""
    if params.get("context"):
        return params["context"]
    kubeconfig = params.get("kubeconfig")
    try:
        if isinstance(kubeconfig, dict):
            return kubeconfig.get("current-context")
        contexts, active = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
        return active.get("name") if active else None
    except Exception:
        return None


def auth_argspec():
    """kubernetes.core's authentication options (documented by its k8s_auth_options fragment)."""
    return copy.deepcopy(AUTH_ARG_SPEC)


# kubernetes.core's factory loads kubeconfigs into the kubernetes library's *global* default
# Configuration before copying it; two threads building clients at once could swap clusters.
_FACTORY_LOCK = threading.Lock()


def client_from_params(params, module=None, namespace=None, cluster=None):
    """Build a KubeClient from kubernetes.core auth params (``module`` may be None).

    Safe to call from several threads (the fleet runner builds one client per cluster).
    """
    holder = module if module is not None else _ParamsHolder(params)
    with _FACTORY_LOCK:
        k8s_client = get_api_client(module=holder)
    api_client = k8s_client.client.client
    return KubeClient(
        api_client,
        namespace=namespace or params.get("velero_namespace") or "velero",
        context=current_context(params),
        cluster=cluster,
    )


# Inventory host variables -> kubernetes.core auth options (the inventory's way to name a cluster).
HOSTVAR_AUTH = (
    ("fleetdr_kubeconfig", "kubeconfig"),
    ("fleetdr_context", "context"),
    ("fleetdr_host", "host"),
    ("fleetdr_api_key", "api_key"),
    ("fleetdr_ca_cert", "ca_cert"),
    ("fleetdr_validate_certs", "validate_certs"),
)

# Auth options the direct path handles; anything else (client certs given as options,
# username/password, proxies, impersonation) goes through kubernetes.core's factory.
_DIRECT_AUTH = frozenset(option for _var, option in HOSTVAR_AUTH)


def auth_from_hostvars(hostvars):
    """The kubernetes.core auth options among one inventory host's ``fleetdr_*`` variables."""
    return dict((option, hostvars[var]) for var, option in HOSTVAR_AUTH if hostvars.get(var) not in (None, ""))


def _ca_data_inline(kubeconfig, context):
    """(kubeconfig without its context cluster's certificate-authority-data, that CA as PEM text or None).

    The kubernetes loader writes certificate-authority-data to a temporary file that only an atexit
    handler removes; the action plugin runs in an Ansible worker process that ends with os._exit,
    so every run left one PEM file per cluster in the temporary directory. The client takes the CA
    as data (Configuration.ca_cert_data) instead.
    """
    name = context or kubeconfig.get("current-context")
    cluster_name = next(((entry.get("context") or {}).get("cluster") for entry in kubeconfig.get("contexts") or []
                         if entry.get("name") == name), None)
    clusters, ca_pem = [], None
    for entry in kubeconfig.get("clusters") or []:
        cluster = entry.get("cluster") or {}
        if entry.get("name") == cluster_name and cluster.get("certificate-authority-data"):
            cluster = dict(cluster)
            ca_pem = base64.standard_b64decode(cluster.pop("certificate-authority-data")).decode("ascii")
            entry = dict(entry, cluster=cluster)
        clusters.append(entry)
    if ca_pem is None:
        return kubeconfig, None
    return dict(kubeconfig, clusters=clusters), ca_pem


class ClusterClients(object):
    """Builds one KubeClient per cluster of a fleet run; safe to share between the cluster threads.

    Each kubeconfig file is parsed once per run (libyaml when present: the pure-Python parse the
    kubernetes loader does costs ~40 ms per cluster, serialised), the proxy environment is read
    once, and each cluster gets an independent ApiClient without kubernetes.core's factory, which
    loads into the library-wide default configuration (so it must be serialised) and builds a
    DynamicClient whose discovery costs requests per cluster. Auth the direct path does not
    handle falls back to the factory (client_from_params).
    """

    def __init__(self, namespace="velero"):
        self.namespace = namespace
        self.kubeconfigs = {}  # path -> parsed kubeconfig
        self.proxies = getproxies()
        self._lock = threading.Lock()

    def kubeconfig(self, path):
        path = os.path.expanduser(path)
        with self._lock:
            if path not in self.kubeconfigs:
                with open(path) as handle:
                    self.kubeconfigs[path] = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            return self.kubeconfigs[path]

    def _configuration(self):
        """A Configuration that does not read the proxy environment itself.

        kubernetes >= 35 reads it in the constructor and again on every host change (~5 ms per
        cluster with Ansible's environment). Returns (configuration, proxies to apply, or None
        when this kubernetes version leaves proxies to the caller).
        """
        try:
            return kubernetes.client.Configuration(proxy="", no_proxy=""), self.proxies
        except TypeError:  # older clients take no proxy arguments and read no environment
            return kubernetes.client.Configuration(), None

    def _api_client(self, params):
        configuration, proxies = self._configuration()
        kubeconfig = params.get("kubeconfig")
        if kubeconfig:
            if not isinstance(kubeconfig, dict):
                kubeconfig = self.kubeconfig(kubeconfig)
            kubeconfig, ca_pem = _ca_data_inline(kubeconfig, params.get("context"))
            kubernetes.config.load_kube_config_from_dict(
                kubeconfig, context=params.get("context"), client_configuration=configuration, persist_config=False)
            if ca_pem and not params.get("ca_cert"):  # a ca_cert option replaces the kubeconfig's CA
                configuration.ca_cert_data = ca_pem
        if params.get("host"):
            configuration.host = params["host"]
        if params.get("api_key"):
            configuration.api_key = {"authorization": "Bearer " + params["api_key"]}
        if params.get("ca_cert"):
            configuration.ssl_ca_cert = params["ca_cert"]
        if params.get("validate_certs") is not None:
            configuration.verify_ssl = bool(params["validate_certs"])
        if proxies and not configuration.proxy:  # a kubeconfig proxy-url wins, as in the library
            configuration.proxy = proxies.get(urlparse(configuration.host).scheme) or proxies.get("all")
            configuration.no_proxy = proxies.get("no")
        # KubeClient's requests go through transport.py and retries.py; urllib3's own retries stay off
        # for anything that uses this ApiClient directly, so they cannot multiply a bounded wait.
        configuration.retries = False
        return kubernetes.client.ApiClient(configuration)

    def connect(self, cluster):
        """A KubeClient for ``cluster`` ({name, auth}) in this run's namespace."""
        params = dict(cluster.get("auth") or {})
        if (params.get("kubeconfig") or params.get("host")) and set(params) <= _DIRECT_AUTH and yaml is not None:
            context = params.get("context")
            if not context and isinstance(params.get("kubeconfig"), str):
                context = self.kubeconfig(params["kubeconfig"]).get("current-context")
            return KubeClient(self._api_client(params), namespace=self.namespace, context=context, cluster=cluster["name"])
        params["velero_namespace"] = self.namespace
        if isinstance(params.get("kubeconfig"), str) and yaml is not None:
            params["kubeconfig"] = self.kubeconfig(params["kubeconfig"])
        return client_from_params(params, namespace=self.namespace, cluster=cluster["name"])  # serialised there
