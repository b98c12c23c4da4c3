"""Per-resource strategies of the built-in kinds, and the Store that has them registered.

The Store knows no kind: everything kind-specific a write goes through lives here, in one
`Strategy` per resource (kube-apiserver's per-resource REST strategies, pkg/registry/<group>/
<resource>/strategy.go: PrepareForCreate/PrepareForUpdate, Validate/ValidateUpdate, the
graceful-deletion and subresource rules) and in the admission plugins of the built-in kinds
(plugin/pkg/admission: NamespaceLifecycle, DefaultStorageClass, ServiceAccount). Service clusterIP / nodePort allocation follows the service REST
(pkg/registry/core/service/ipallocator, portallocator). The per-kind defaulting and validation
functions are in validation.py. `register_builtin(store)` registers them all through
`Store.register`; later kinds (Rook's) plug in the same way.
"""
from __future__ import annotations

import ipaddress
import json
import random

from . import validation
from .store import (Admission, ApiError, Store, Strategy, conflict, details_for, forbidden, invalid,
                    not_found)

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
NODE_PORT_RANGE = (30000, 32767)
UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")


def _meta(obj: dict | None) -> dict:
    return (obj or {}).get("metadata") or {}


def _without(d: dict, keys: set) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


# ---- the common shape of a built-in kind ------------------------------------------------


class BuiltinStrategy(Strategy):
    """Defaulting, validation and create-time status of one built-in resource, from the
    per-kind tables of validation.py."""

    def __init__(self, group: str, plural: str):
        key = (group, plural)
        self._defaulter = validation.DEFAULTERS.get(key)
        self._validator = validation.VALIDATORS.get(key)
        self._initial_status = validation.INITIAL_STATUS.get(key)
        self.zero_fields = validation.ZERO_FIELDS.get(key, validation.ZERO_SPEC_STATUS)
        self._omitempty = validation.OMITEMPTY.get(key)
        self.atomic_fields = validation.ATOMIC_FIELDS.get(key, frozenset())

    def reset_status(self, obj: dict) -> None:
        if self._initial_status is not None:
            obj["status"] = self._initial_status()
        else:
            obj.pop("status", None)

    def default(self, obj: dict) -> None:
        if self._defaulter:
            self._defaulter(obj)
        if self._omitempty:
            validation.prune_empty(obj, self._omitempty)

    def validate(self, obj: dict) -> list:
        return self._validator(obj) if self._validator else []


class ImmutableSelector(BuiltinStrategy):
    """Workloads (Deployment, ReplicaSet, DaemonSet): spec.selector is immutable."""

    def validate_update(self, obj: dict, old: dict) -> list:
        if (obj.get("spec") or {}).get("selector") != (old.get("spec") or {}).get("selector"):
            return [validation.invalid("spec.selector", (obj.get("spec") or {}).get("selector"),
                                       "field is immutable")]
        return []


class StatefulSetStrategy(ImmutableSelector):
    UPDATABLE = {"replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                 "persistentVolumeClaimRetentionPolicy", "minReadySeconds"}

    def validate_update(self, obj: dict, old: dict) -> list:
        errs = super().validate_update(obj, old)
        spec, ospec = obj.get("spec") or {}, old.get("spec") or {}
        if _without(spec, self.UPDATABLE) != _without(ospec, self.UPDATABLE):
            errs.append(validation.forbidden(
                "spec", "updates to statefulset spec for fields other than 'replicas', "
                        "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
                        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                        "forbidden"))
        return errs


class DaemonSetStrategy(ImmutableSelector):
    """apps/v1 DaemonSets carry the internal spec.templateGeneration as an annotation: 1 at
    create, one more each time an update changes the template (pkg/registry/apps/daemonset/strategy.go)."""

    ANNOTATION = "deprecated.daemonset.template.generation"

    def admit(self, store, obj: dict, old: dict | None) -> None:
        super().admit(store, obj, old)
        if old is None:
            generation = 1
        else:
            generation = int(((old.get("metadata") or {}).get("annotations") or {}).get(self.ANNOTATION) or 1)
            if (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
                generation += 1
        obj.setdefault("metadata", {}).setdefault("annotations", {})[self.ANNOTATION] = str(generation)


class JobStrategy(ImmutableSelector):
    def validate_update(self, obj: dict, old: dict) -> list:
        errs = super().validate_update(obj, old)
        spec, ospec = obj.get("spec") or {}, old.get("spec") or {}
        if spec.get("template") != ospec.get("template"):
            errs.append(validation.invalid("spec.template", spec.get("template"),
                                           "field is immutable"))
        return errs


class ConfigDataStrategy(BuiltinStrategy):
    """ConfigMaps and Secrets: base64 decoding of binary data, `immutable` data."""

    def __init__(self, group: str, plural: str, kind: str):
        super().__init__(group, plural)
        self.kind = kind

    def decode(self, obj: dict) -> None:
        if self.kind == "Secret" or obj.get("binaryData"):
            problem = validation.base64_error(self.kind, obj)
            if problem:
                raise ApiError(400, "BadRequest", f'{self.kind} in version "v1" cannot be '
                                                  f'handled as a {self.kind}: {problem}')

    def validate_update(self, obj: dict, old: dict) -> list:
        errs = []
        if self.kind == "Secret" and old.get("type") != obj.get("type"):
            errs.append(validation.invalid("type", obj.get("type"), "field is immutable"))
        if old.get("immutable") and (obj.get("data") != old.get("data")
                                     or obj.get("binaryData") != old.get("binaryData")):
            errs.append(validation.forbidden("data", "field is immutable when `immutable` is set"))
        return errs


class NodeStrategy(BuiltinStrategy):
    def reset_status(self, obj: dict) -> None:
        """A node registers itself with its status (the kubelet's create keeps it)."""


# ---- pods -------------------------------------------------------------------------------


def _pod_spec_core(spec: dict) -> dict:
    """The part of a pod spec an update may not change (images, deadlines, tolerations and
    the node binding are excluded; binding goes through pods/binding)."""
    core = _without(spec, {"activeDeadlineSeconds", "tolerations", "schedulingGates",
                           "terminationGracePeriodSeconds", "nodeName"})
    for field in ("containers", "initContainers"):
        if isinstance(core.get(field), list):
            core[field] = [_without(c, {"image"}) if isinstance(c, dict) else c
                           for c in core[field]]
    return core


class PodStrategy(BuiltinStrategy):
    def admit(self, store, obj: dict, old: dict | None) -> None:
        super().admit(store, obj, old)
        if old is not None:
            return
        spec = obj.setdefault("spec", {})
        # the ServiceAccount admission plugin and the pod strategy's PrepareForCreate
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
        spec["serviceAccount"] = spec["serviceAccountName"]
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        obj.setdefault("status", {})["qosClass"] = validation.qos_class(spec)

    def validate_update(self, obj: dict, old: dict) -> list:
        spec, ospec = obj.get("spec") or {}, old.get("spec") or {}
        if _pod_spec_core(spec) != _pod_spec_core(ospec) or (
                ospec.get("nodeName") and spec.get("nodeName") != ospec["nodeName"]):
            return [validation.forbidden(
                "spec", "pod updates may not change fields other than "
                        "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                        "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it "
                        "to be set to 1 if it was previously negative)")]
        return []

    def grace_period(self, obj: dict, requested: int | None) -> int:
        """Only pods bound to a node and not finished wait (for the kubelet)."""
        spec = obj.get("spec") or {}
        if not spec.get("nodeName") or (obj.get("status") or {}).get("phase") in (
                "Succeeded", "Failed"):
            return 0
        grace = requested if requested is not None else spec.get(
            "terminationGracePeriodSeconds", 30)
        return max(0, int(grace))

    def create_subresource(self, store, rt, namespace, current: dict, body: dict,
                           subresource: str, dry_run: bool) -> dict:
        name = current["metadata"]["name"]
        if subresource == "binding":
            node = (body.get("target") or {}).get("name")
            if (current.get("spec") or {}).get("nodeName"):
                raise conflict(rt.group_resource, name, f"pod {name} is already assigned to "
                               f"node \"{current['spec']['nodeName']}\"")
            current["spec"]["nodeName"] = node
            store.update(rt.group, rt.plural, namespace, name, current, dry_run=dry_run)
        elif subresource == "eviction":
            store.delete(rt.group, rt.plural, namespace, name, dry_run=dry_run,
                         preconditions=(body.get("deleteOptions") or {}).get("preconditions"))
        else:
            return super().create_subresource(store, rt, namespace, current, body, subresource,
                                              dry_run)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}


# ---- namespaces -------------------------------------------------------------------------


class NamespaceStrategy(BuiltinStrategy):
    """spec.finalizers change only through namespaces/finalize and hold the namespace's
    removal; deleting one marks it Terminating; the system namespaces cannot be deleted."""

    def prepare_for_update(self, new: dict, old: dict) -> None:
        new["spec"] = dict(new.get("spec") or {},
                           finalizers=list((old.get("spec") or {}).get("finalizers") or []))

    def update_subresource(self, subresource: str, old: dict, body: dict) -> dict:
        if subresource != "finalize":
            return super().update_subresource(subresource, old, body)
        new = dict(old)
        new["spec"] = dict(old.get("spec") or {},
                           finalizers=list((body.get("spec") or {}).get("finalizers") or []))
        new["metadata"] = dict(old["metadata"])
        return new

    def check_delete(self, rt, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if name in UNDELETABLE_NAMESPACES:
            raise forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                            details_for("namespaces", name))
        if obj["metadata"].get("deletionTimestamp"):
            raise conflict(rt.group_resource, name,
                           "The system is ensuring all content is removed from this namespace. "
                           "Upon completion, this namespace will automatically be purged by the "
                           "system.")

    def holds_removal(self, obj: dict) -> bool:
        return bool((obj.get("spec") or {}).get("finalizers"))

    def mark_deleting(self, new: dict, old: dict) -> None:
        new["status"] = dict(old.get("status") or {}, phase="Terminating")


class NamespaceLifecycle(Admission):
    """The NamespaceLifecycle admission plugin, for every namespaced resource: no content in a
    namespace that does not exist or is being terminated."""

    def check_create(self, store, rt, namespace: str, name: str) -> None:
        nsobj = store.get_or_none("", "namespaces", None, namespace)
        if nsobj is None:
            raise not_found("namespaces", namespace)
        if nsobj["metadata"].get("deletionTimestamp") or \
                (nsobj.get("status") or {}).get("phase") == "Terminating":
            msg = (f'{rt.group_resource} "{name}" is forbidden: unable to create new content in '
                   f"namespace {namespace} because it is being terminated")
            details = details_for(rt.group_resource, name)
            details["causes"] = [{"reason": "NamespaceTerminating", "message": msg.split(
                "forbidden: ", 1)[1], "field": "metadata.namespace"}]
            raise forbidden(msg, details)


# ---- storage ----------------------------------------------------------------------------


def _default_storage_class(store) -> str | None:
    best = None
    for obj in store.list("storage.k8s.io", "storageclasses")["items"]:
        ann = obj["metadata"].get("annotations") or {}
        if (ann.get("storageclass.kubernetes.io/is-default-class") == "true"
                or ann.get("storageclass.beta.kubernetes.io/is-default-class") == "true"):
            # several defaults: the newest wins, as the admission plugin does since 1.28
            key = (obj["metadata"]["creationTimestamp"], obj["metadata"]["name"])
            if best is None or key > best[0]:
                best = (key, obj["metadata"]["name"])
    return best[1] if best else None


class ClaimStrategy(BuiltinStrategy):
    def admit(self, store, obj: dict, old: dict | None) -> None:
        super().admit(store, obj, old)
        if old is not None:
            return
        spec = obj.setdefault("spec", {})
        if "storageClassName" not in spec:   # the DefaultStorageClass admission plugin
            default_sc = _default_storage_class(store)
            if default_sc:
                spec["storageClassName"] = default_sc

    def validate_update(self, obj: dict, old: dict) -> list:
        spec, ospec = obj.get("spec") or {}, old.get("spec") or {}
        allowed = {"resources", "volumeAttributesClassName"}
        if not ospec.get("volumeName"):
            allowed.add("volumeName")      # the binder sets it once
        if ospec.get("storageClassName") is None:
            allowed.add("storageClassName")
        if _without(spec, allowed) != _without(ospec, allowed):
            return [validation.forbidden(
                "spec", "spec is immutable after creation except resources.requests and "
                        "volumeAttributesClassName for bound claims")]
        return []


# ---- services: clusterIP / nodePort allocation ------------------------------------------
# A requested IP or nodePort that is taken or out of range is refused with 422 Invalid and the
# apiserver's messages; NodePort/LoadBalancer ports without a nodePort get a free one in
# 30000-32767, unique in the cluster. On update, allocated values the body left out are kept.

def _invalid(name, field, value, message):
    return invalid("Service", name, [validation.invalid(field, value, message)])


def _used(store, exclude_uid=None):
    ips, ports = set(), set()
    for svc in store.list("", "services")["items"]:
        if _meta(svc).get("uid") == exclude_uid:
            continue
        spec = svc.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None":
                ips.add(ip)
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                ports.add(p["nodePort"])
    return ips, ports


def allocate_service(store, obj: dict, old: dict | None) -> None:
    """Allocate/validate clusterIP and nodePorts in place; raise ApiError 422 when refused."""
    spec = obj.setdefault("spec", {})
    name = _meta(obj).get("name", "")
    stype = spec.get("type") or "ClusterIP"
    ospec = (old or {}).get("spec") or {}
    used_ips, used_ports = _used(store, exclude_uid=_meta(old).get("uid") if old else None)
    if stype == "ExternalName":
        spec.pop("clusterIP", None)
        spec.pop("clusterIPs", None)
        return
    # clusterIP
    ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
    if old is not None and not ip and ospec.get("clusterIP"):
        ip = ospec["clusterIP"]  # PUT without the allocated value keeps it
    if old is not None and ospec.get("clusterIP") and ip != ospec.get("clusterIP"):
        raise _invalid(name, "spec.clusterIPs[0]", ip, "may not change once set")
    if not ip:
        ip = _free_ip(used_ips)
    elif ip != "None" and not (old is not None and ip == ospec.get("clusterIP")):
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise _invalid(name, "spec.clusterIPs[0]", ip,
                           "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        if addr not in SERVICE_CIDR:
            raise _invalid(name, "spec.clusterIPs", [ip],
                           f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the "
                           f"valid range. The range of valid IPs is {SERVICE_CIDR}")
        if ip in used_ips:
            raise _invalid(name, "spec.clusterIPs", [ip],
                           f"failed to allocate IP {ip}: provided IP is already allocated")
    spec["clusterIP"] = ip
    spec["clusterIPs"] = [ip]
    if ip != "None":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    # nodePorts
    wants_node_ports = stype in ("NodePort", "LoadBalancer")
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                 for p in ospec.get("ports") or [] if p.get("nodePort")}
    old_set = set(old_ports.values())
    taken_here = set()
    for i, p in enumerate(spec.get("ports") or []):
        np = p.get("nodePort")
        if not wants_node_ports:
            if np and np in old_set:
                p.pop("nodePort")  # dropTypeDependentFields: type changed away from NodePort
                continue
            if np:
                raise _invalid(name, f"spec.ports[{i}].nodePort", np,
                               "may not be used when `type` is 'ClusterIP'")
            continue
        if not np:
            np = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
        if np:
            if not NODE_PORT_RANGE[0] <= np <= NODE_PORT_RANGE[1]:
                raise _invalid(name, f"spec.ports[{i}].nodePort", np,
                               "provided port is not in the valid range. The range of valid "
                               f"ports is {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}")
            if (np in used_ports and np not in old_set) or np in taken_here:
                raise _invalid(name, f"spec.ports[{i}].nodePort", np,
                               "provided port is already allocated")
        else:
            np = _free_port(used_ports | taken_here)
        p["nodePort"] = np
        taken_here.add(np)
    if wants_node_ports:
        spec.setdefault("externalTrafficPolicy", "Cluster")
    spec.setdefault("internalTrafficPolicy", "Cluster")


def _free_ip(used: set) -> str:
    # random like the real bitmap allocator; .0 and .1 (the `kubernetes` Service) excluded
    size = SERVICE_CIDR.num_addresses
    for _ in range(64):
        ip = str(SERVICE_CIDR.network_address + random.randrange(2, size - 1))
        if ip not in used:
            return ip
    for off in range(2, size - 1):
        ip = str(SERVICE_CIDR.network_address + off)
        if ip not in used:
            return ip
    raise RuntimeError("service IP range exhausted")


def _free_port(used: set) -> int:
    lo, hi = NODE_PORT_RANGE
    for _ in range(64):
        port = random.randint(lo, hi)
        if port not in used:
            return port
    for port in range(lo, hi + 1):
        if port not in used:
            return port
    raise RuntimeError("node port range exhausted")


class ServiceStrategy(BuiltinStrategy):
    def admit(self, store, obj: dict, old: dict | None) -> None:
        super().admit(store, obj, old)
        spec = obj.setdefault("spec", {})
        if spec.get("type") != "ExternalName":
            # set by the service REST (pkg/registry/core/service/storage initIPFamilyFields),
            # not scheme defaulting: the writer does not own them
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        allocate_service(store, obj, old)

    def validate_update(self, obj: dict, old: dict) -> list:
        spec, ospec = obj.get("spec") or {}, old.get("spec") or {}
        if ospec.get("clusterIP") and spec.get("clusterIP") != ospec["clusterIP"] and \
                spec.get("type") != "ExternalName":
            return [validation.invalid("spec.clusterIPs[0]", spec.get("clusterIPs"),
                                       "may not change once set")]
        return []


# ---- CustomResourceDefinitions ----------------------------------------------------------


class CrdStrategy(BuiltinStrategy):
    """A CRD's status (names accepted, established) and the types it serves; its deletion
    removes its objects at once (each with a DELETED event), as the cleanup controller does."""

    def validate_update(self, obj: dict, old: dict) -> list:
        if obj["spec"].get("group") != old["spec"].get("group"):
            return [validation.invalid("spec.group", obj["spec"].get("group"),
                                       "field is immutable")]
        return []

    def finish(self, store, obj: dict, old: dict | None) -> None:
        obj["status"] = self._status(store.timestamp(), obj, old)

    @staticmethod
    def _status(now: str, crd: dict, old: dict | None) -> dict:
        names = crd["spec"]["names"]
        accepted = {k: names[k] for k in ("plural", "singular", "shortNames", "kind", "listKind",
                                          "categories") if names.get(k)}
        prev = {c["type"]: c for c in ((old or {}).get("status") or {}).get("conditions") or []}

        def cond(t, reason, msg):
            c = prev.get(t)
            if c and c.get("status") == "True":
                return c
            return {"type": t, "status": "True", "lastTransitionTime": now, "reason": reason,
                    "message": msg}
        storage = next(v["name"] for v in crd["spec"]["versions"] if v.get("storage"))
        stored = list(((old or {}).get("status") or {}).get("storedVersions") or [])
        if storage not in stored:
            stored.append(storage)
        return {"conditions": [cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                               cond("Established", "InitialNamesAccepted",
                                    "the initial names have been accepted")],
                "acceptedNames": accepted, "storedVersions": stored}

    def written(self, store, obj: dict, old: dict | None) -> None:
        rt = store.registry.types_from_crd(obj)
        if old is not None:
            ospec = old["spec"]
            if ospec["names"]["plural"] != rt.plural:
                store.registry.remove(ospec["group"], ospec["names"]["plural"])
        store.registry.add(rt)

    def removing(self, store, obj: dict) -> None:
        group, plural = obj["spec"]["group"], obj["spec"]["names"]["plural"]
        rt = store.registry.get(group, plural)
        if rt is not None and rt.crd_name == obj["metadata"]["name"]:
            store.drop_type(group, plural)


# ---- autoscaling/v1 HorizontalPodAutoscaler <-> autoscaling/v2 (the storage version) -------
# pkg/apis/autoscaling/v1/conversion.go: v1 has only targetCPUUtilizationPercentage; every
# other metric, the current metrics and the conditions travel in annotations, in v1's
# (v2beta1-shaped) MetricSpec / MetricStatus form, so a v1 client's read-modify-write keeps them.

HPA_METRICS = "autoscaling.alpha.kubernetes.io/metrics"
HPA_CURRENT_METRICS = "autoscaling.alpha.kubernetes.io/current-metrics"
HPA_CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
HPA_BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"


def _some(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def _metric_to_v1(m: dict) -> dict:
    kind = m.get("type")
    out = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        src = m.get("resource" if kind == "Resource" else "containerResource") or {}
        target = src.get("target") or {}
        out["resource" if kind == "Resource" else "containerResource"] = _some(
            name=src.get("name"), container=src.get("container"),
            targetAverageUtilization=target.get("averageUtilization"),
            targetAverageValue=target.get("averageValue"))
    elif kind == "Pods":
        src = m.get("pods") or {}
        metric = src.get("metric") or {}
        out["pods"] = _some(metricName=metric.get("name"), selector=metric.get("selector"),
                            targetAverageValue=(src.get("target") or {}).get("averageValue"))
    elif kind == "Object":
        src = m.get("object") or {}
        metric, target = src.get("metric") or {}, src.get("target") or {}
        out["object"] = _some(target=src.get("describedObject"), metricName=metric.get("name"),
                              selector=metric.get("selector"), targetValue=target.get("value"),
                              averageValue=target.get("averageValue"))
    elif kind == "External":
        src = m.get("external") or {}
        metric, target = src.get("metric") or {}, src.get("target") or {}
        out["external"] = _some(metricName=metric.get("name"),
                                metricSelector=metric.get("selector"),
                                targetValue=target.get("value"),
                                targetAverageValue=target.get("averageValue"))
    return out


def _metric_from_v1(m: dict) -> dict:
    kind = m.get("type")
    out = {"type": kind}
    if kind in ("Resource", "ContainerResource"):
        key = "resource" if kind == "Resource" else "containerResource"
        src = m.get(key) or {}
        util = src.get("targetAverageUtilization")
        out[key] = _some(name=src.get("name"), container=src.get("container"), target=_some(
            type="AverageValue" if util is None else "Utilization", averageUtilization=util,
            averageValue=src.get("targetAverageValue")))
    elif kind == "Pods":
        src = m.get("pods") or {}
        out["pods"] = {"metric": _some(name=src.get("metricName"), selector=src.get("selector")),
                       "target": _some(type="AverageValue",
                                       averageValue=src.get("targetAverageValue"))}
    elif kind == "Object":
        src = m.get("object") or {}
        avg = src.get("averageValue")
        out["object"] = _some(describedObject=src.get("target"),
                              metric=_some(name=src.get("metricName"), selector=src.get("selector")),
                              target=_some(type="Value" if avg is None else "AverageValue",
                                           value=src.get("targetValue"), averageValue=avg))
    elif kind == "External":
        src = m.get("external") or {}
        value = src.get("targetValue")
        out["external"] = {
            "metric": _some(name=src.get("metricName"), selector=src.get("metricSelector")),
            "target": _some(type="AverageValue" if value is None else "Value", value=value,
                            averageValue=src.get("targetAverageValue"))}
    return out


def _status_to_v1(m: dict) -> dict:
    kind = m.get("type")
    out = {"type": kind}
    key = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
           "Object": "object", "External": "external"}.get(kind)
    src = m.get(key) or {} if key else {}
    current = src.get("current") or {}
    metric = src.get("metric") or {}
    if kind in ("Resource", "ContainerResource"):
        out[key] = _some(name=src.get("name"), container=src.get("container"),
                         currentAverageUtilization=current.get("averageUtilization"),
                         currentAverageValue=current.get("averageValue"))
    elif kind == "Pods":
        out[key] = _some(metricName=metric.get("name"), selector=metric.get("selector"),
                         currentAverageValue=current.get("averageValue"))
    elif kind == "Object":
        out[key] = _some(target=src.get("describedObject"), metricName=metric.get("name"),
                         selector=metric.get("selector"), currentValue=current.get("value"),
                         averageValue=current.get("averageValue"))
    elif kind == "External":
        out[key] = _some(metricName=metric.get("name"), metricSelector=metric.get("selector"),
                         currentValue=current.get("value"),
                         currentAverageValue=current.get("averageValue"))
    return out


def _status_from_v1(m: dict) -> dict:
    kind = m.get("type")
    out = {"type": kind}
    key = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
           "Object": "object", "External": "external"}.get(kind)
    src = m.get(key) or {} if key else {}
    if kind in ("Resource", "ContainerResource"):
        out[key] = _some(name=src.get("name"), container=src.get("container"), current=_some(
            averageUtilization=src.get("currentAverageUtilization"),
            averageValue=src.get("currentAverageValue")))
    elif kind == "Pods":
        out[key] = {"metric": _some(name=src.get("metricName"), selector=src.get("selector")),
                    "current": _some(averageValue=src.get("currentAverageValue"))}
    elif kind == "Object":
        out[key] = _some(describedObject=src.get("target"),
                         metric=_some(name=src.get("metricName"), selector=src.get("selector")),
                         current=_some(value=src.get("currentValue"),
                                       averageValue=src.get("averageValue")))
    elif kind == "External":
        out[key] = {"metric": _some(name=src.get("metricName"), selector=src.get("metricSelector")),
                    "current": _some(value=src.get("currentValue"),
                                     averageValue=src.get("currentAverageValue"))}
    return out


def _is_cpu_utilization(m: dict) -> bool:
    res = m.get("resource") or {}
    return m.get("type") == "Resource" and res.get("name") == "cpu" and \
        (res.get("target") or {}).get("averageUtilization") is not None


def hpa_to_v1(obj: dict) -> dict:
    """An autoscaling/v2 HorizontalPodAutoscaler as autoscaling/v1 shows it."""
    spec, status = obj.get("spec") or {}, obj.get("status")
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    meta = out["metadata"] = dict(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    v1spec = _some(scaleTargetRef=spec.get("scaleTargetRef"), minReplicas=spec.get("minReplicas"),
                   maxReplicas=spec.get("maxReplicas"))
    metrics = spec.get("metrics") or []
    cpu = next((m for m in metrics if m.get("type") == "Resource"
                and (m.get("resource") or {}).get("name") == "cpu"), None)
    if cpu is not None and _is_cpu_utilization(cpu):
        v1spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    other = [_metric_to_v1(m) for m in metrics if not _is_cpu_utilization(m)]
    if other:
        annotations[HPA_METRICS] = json.dumps(other, separators=(",", ":"))
    if spec.get("behavior"):
        annotations[HPA_BEHAVIOR] = json.dumps(spec["behavior"], separators=(",", ":"))
    out["spec"] = v1spec
    if status is not None:
        v1status = _some(observedGeneration=status.get("observedGeneration"),
                         lastScaleTime=status.get("lastScaleTime"),
                         currentReplicas=status.get("currentReplicas", 0),
                         desiredReplicas=status.get("desiredReplicas", 0))
        current = status.get("currentMetrics") or []
        for m in current:
            res = m.get("resource") or {}
            if m.get("type") == "Resource" and res.get("name") == "cpu" and \
                    (res.get("current") or {}).get("averageUtilization") is not None:
                v1status["currentCPUUtilizationPercentage"] = res["current"]["averageUtilization"]
        if current:
            annotations[HPA_CURRENT_METRICS] = json.dumps([_status_to_v1(m) for m in current],
                                                          separators=(",", ":"))
        if status.get("conditions"):
            annotations[HPA_CONDITIONS] = json.dumps(status["conditions"], separators=(",", ":"))
        out["status"] = v1status
    if annotations:
        meta["annotations"] = annotations
    return out


def hpa_from_v1(obj: dict) -> dict:
    """An autoscaling/v1 HorizontalPodAutoscaler in the v2 storage form."""
    spec, status = obj.get("spec") or {}, obj.get("status")
    out = {k: v for k, v in obj.items() if k not in ("spec", "status")}
    meta = out["metadata"] = dict(obj.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})

    def take(key):
        raw = annotations.pop(key, None)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "BadRequest", f"error decoding annotation {key}: {raw!r}") from None

    v2spec = _some(scaleTargetRef=spec.get("scaleTargetRef"), minReplicas=spec.get("minReplicas"),
                   maxReplicas=spec.get("maxReplicas"))
    metrics = [_metric_from_v1(m) for m in take(HPA_METRICS) or [] if isinstance(m, dict)]
    if spec.get("targetCPUUtilizationPercentage") is not None:
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization",
            "averageUtilization": spec["targetCPUUtilizationPercentage"]}}})
    if metrics:
        v2spec["metrics"] = metrics  # none: v2 defaulting adds the 80% CPU target
    behavior = take(HPA_BEHAVIOR)
    if behavior:
        v2spec["behavior"] = behavior
    out["spec"] = v2spec
    current = take(HPA_CURRENT_METRICS)
    conditions = take(HPA_CONDITIONS)
    if status is not None:
        v2status = _some(observedGeneration=status.get("observedGeneration"),
                         lastScaleTime=status.get("lastScaleTime"),
                         currentReplicas=status.get("currentReplicas"),
                         desiredReplicas=status.get("desiredReplicas", 0))
        if current is not None:
            v2status["currentMetrics"] = [_status_from_v1(m) for m in current
                                          if isinstance(m, dict)]
        elif status.get("currentCPUUtilizationPercentage") is not None:
            v2status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": "cpu",
                "current": {"averageUtilization": status["currentCPUUtilizationPercentage"]}}}]
        if conditions:
            v2status["conditions"] = conditions
        out["status"] = v2status
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return out


class HpaStrategy(BuiltinStrategy):
    def to_version(self, obj: dict, version: str) -> dict:
        return hpa_to_v1(obj) if version == "v1" else obj

    def from_version(self, obj: dict, version: str) -> dict:
        return hpa_from_v1(obj) if version == "v1" else obj


# ---- registration -----------------------------------------------------------------------


def builtin_strategies() -> dict[tuple[str, str], Strategy]:
    """(group, plural) -> Strategy for every built-in resource with kind-specific rules."""
    table: dict[tuple[str, str], Strategy] = {}
    for key in set(validation.DEFAULTERS) | set(validation.VALIDATORS) | \
            set(validation.INITIAL_STATUS) | set(validation.OMITEMPTY) | \
            set(validation.ZERO_FIELDS) | set(validation.ATOMIC_FIELDS):
        table[key] = BuiltinStrategy(*key)
    for plural in ("deployments", "replicasets"):
        table[("apps", plural)] = ImmutableSelector("apps", plural)
    table[("apps", "daemonsets")] = DaemonSetStrategy("apps", "daemonsets")
    table[("apps", "statefulsets")] = StatefulSetStrategy("apps", "statefulsets")
    table[("batch", "jobs")] = JobStrategy("batch", "jobs")
    table[("", "configmaps")] = ConfigDataStrategy("", "configmaps", "ConfigMap")
    table[("", "secrets")] = ConfigDataStrategy("", "secrets", "Secret")
    table[("", "nodes")] = NodeStrategy("", "nodes")
    table[("", "pods")] = PodStrategy("", "pods")
    table[("", "namespaces")] = NamespaceStrategy("", "namespaces")
    table[("", "persistentvolumeclaims")] = ClaimStrategy("", "persistentvolumeclaims")
    table[("", "services")] = ServiceStrategy("", "services")
    hpa = ("autoscaling", "horizontalpodautoscalers")
    table[hpa] = HpaStrategy(*hpa)
    crds = ("apiextensions.k8s.io", "customresourcedefinitions")
    table[crds] = CrdStrategy(*crds)
    return table


def register_builtin(store: Store) -> Store:
    """Register the built-in kinds' strategies and admission plugins into store."""
    store.register(NamespaceLifecycle())
    table = builtin_strategies()
    for rt in store.registry.all():
        # every other built-in kind: the plain rules, with a built-in kind's field shapes
        if rt.builtin and (rt.group, rt.plural) not in table:
            table[(rt.group, rt.plural)] = BuiltinStrategy(rt.group, rt.plural)
    for (group, plural), strategy in table.items():
        store.register(strategy, group, plural)
    return store


def new_store(**kwargs) -> Store:
    """A Store (Store's keyword arguments) serving the built-in kinds."""
    return register_builtin(Store(**kwargs))
