"""In-memory stand-ins for KubeClient, used by unit tests of objects.py and results.py."""
import copy
import itertools

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ApiError


class FakeKube(object):
    """Just enough of KubeClient: custom objects, Secrets, ConfigMaps, write log."""

    def __init__(self, namespace="velero"):
        self.namespace = namespace
        self.context = "ctx"
        self.cluster = "c1"
        self.objects = {}      # (plural, name) -> obj
        self.secrets = {}
        self.configmaps = {}
        self.writes = []       # (verb, kind, name)
        self._rv = itertools.count(1)
        self.on_create = {}    # plural -> fn(obj) hook, e.g. to simulate a controller

    def _stamp(self, obj):
        obj.setdefault("metadata", {})["resourceVersion"] = str(next(self._rv))
        obj["metadata"].setdefault("uid", "uid-" + obj["metadata"]["name"])
        return obj

    def get(self, plural, name, namespace=None):
        obj = self.objects.get((plural, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, plural, label_selector=None, field_selector=None, namespace=None):
        out = []
        for (p, n), obj in sorted(self.objects.items()):
            if p != plural:
                continue
            if label_selector:
                labels = obj["metadata"].get("labels") or {}
                ok = True
                for req in label_selector.split(","):
                    k, dummy, v = req.partition("=")
                    if labels.get(k) != v:
                        ok = False
                if not ok:
                    continue
            out.append(copy.deepcopy(obj))
        return out

    def create(self, plural, body, namespace=None):
        name = body["metadata"]["name"]
        if (plural, name) in self.objects:
            raise ApiError("exists", status=409)
        self.writes.append(("create", plural, name))
        obj = self._stamp(copy.deepcopy(body))
        self.objects[(plural, name)] = obj
        if plural in self.on_create:
            self.on_create[plural](obj)
        return copy.deepcopy(obj)

    def replace(self, plural, name, body, namespace=None):
        self.writes.append(("replace", plural, name))
        self.objects[(plural, name)] = self._stamp(copy.deepcopy(body))
        return copy.deepcopy(self.objects[(plural, name)])

    def delete(self, plural, name, namespace=None):
        self.writes.append(("delete", plural, name))
        return self.objects.pop((plural, name), None)

    def get_secret(self, name, namespace=None):
        return copy.deepcopy(self.secrets.get(name))

    def create_secret(self, body, namespace=None):
        self.writes.append(("create", "secrets", body["metadata"]["name"]))
        self.secrets[body["metadata"]["name"]] = copy.deepcopy(body)

    def replace_secret(self, name, body, namespace=None):
        self.writes.append(("replace", "secrets", name))
        self.secrets[name] = copy.deepcopy(body)

    def delete_secret(self, name, namespace=None):
        self.writes.append(("delete", "secrets", name))
        return self.secrets.pop(name, None)

    def get_configmap(self, name, namespace=None):
        return copy.deepcopy(self.configmaps.get(name))

    def list_configmaps(self, label_selector, namespace=None):
        keys = [r.partition("=")[0] for r in label_selector.split(",")]
        return [copy.deepcopy(c) for c in self.configmaps.values()
                if all(k in (c["metadata"].get("labels") or {}) for k in keys)]

    def create_configmap(self, body, namespace=None):
        self.writes.append(("create", "configmaps", body["metadata"]["name"]))
        self.configmaps[body["metadata"]["name"]] = copy.deepcopy(body)

    def replace_configmap(self, name, body, namespace=None):
        self.writes.append(("replace", "configmaps", name))
        self.configmaps[name] = copy.deepcopy(body)

    def delete_configmap(self, name, namespace=None):
        self.writes.append(("delete", "configmaps", name))
        self.configmaps.pop(name, None)

    def watch_source(self, plural, name, namespace=None):
        return FakeSource(self, plural, name)


class FakeSource(object):
    """A watch source over FakeKube whose state is already final (no events needed)."""

    def __init__(self, kube, plural, name):
        self.kube, self.plural, self.name = kube, plural, name

    def get(self):
        return self.kube.get(self.plural, self.name), "1"

    def stream(self, resource_version, timeout_seconds):
        return iter(())
