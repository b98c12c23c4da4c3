"""Table output (what `kubectl get` prints): the built-in kinds' printers, CRD printer columns,
ages, and PartialObjectMetadata."""
from __future__ import annotations

import json
import re
from datetime import datetime


# ---- age and Table helpers ------------------------------------------------------------------

def parse_time(value: str | None) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """The apimachinery HumanDuration rendering kubectl shows in AGE columns."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


_JSONPATH_STEP = re.compile(
    r"""\.(?P<key>(?:[^.\[\\]|\\.)+)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[\?\(@\.(?P<fkey>[\w.-]+)\s*==\s*(?P<q>["'])(?P<fval>.*?)(?P=q)\)\]"""
    r"""|\[['"](?P<qkey>[^'"]+)['"]\]"""
)


def jsonpath_value(obj, path: str):
    """Evaluate the simple JSONPaths printer columns use (.a.b, [0], [?(@.k=="v")])."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    pos, current = 0, [obj]
    while pos < len(path):
        m = _JSONPATH_STEP.match(path, pos)
        if not m:
            return None
        pos = m.end()
        nxt = []
        for item in current:
            if m.group("key") is not None or m.group("qkey") is not None:
                key = m.group("qkey") or m.group("key").replace("\\.", ".")
                if isinstance(item, dict) and key in item:
                    nxt.append(item[key])
            elif m.group("index") is not None:
                i = int(m.group("index"))
                if isinstance(item, list) and -len(item) <= i < len(item):
                    nxt.append(item[i])
            else:
                if isinstance(item, list):
                    nxt.extend(e for e in item if isinstance(e, dict)
                               and str(e.get(m.group("fkey"))) == m.group("fval"))
        current = nxt
        if not current:
            return None
    return current[0] if current else None


def _col(name: str, type_: str = "string", fmt: str = "", description: str = "",
         priority: int = 0) -> dict:
    return {"name": name, "type": type_, "format": fmt, "description": description,
            "priority": priority}


NAME_COLUMN = _col("Name", "string", "name",
                   "Name must be unique within a namespace. Is required when creating "
                   "resources, although some resources may allow a client to request the "
                   "generation of an appropriate name automatically.")
AGE_COLUMN = _col("Age", "string", "",
                  "CreationTimestamp is a timestamp representing the server time when this "
                  "object was created.")


def _access_modes(modes) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes or [])


def _pod_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for c in statuses:
        state = c.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason") and reason != "Completed":
            reason = state["terminated"]["reason"]
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [f"{ready}/{total}", reason, str(restarts), age,
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>",
            f"{len(gates)}/{len(gates)}" if gates else "<none>"]


def _deployment_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}",
            int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0),
            age, ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers),
            _selector_string((spec.get("selector") or {}))]


def _selector_string(selector: dict) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _node_cells(obj, age):
    status = obj.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    state = "Unknown" if ready is None else ("Ready" if ready.get("status") == "True"
                                             else "NotReady")
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels
                   if k.startswith("node-role.kubernetes.io/") and "/" in k)
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [state, ",".join(roles) or "<none>", age, info.get("kubeletVersion", ""),
            addresses.get("InternalIP", "<none>"), addresses.get("ExternalIP", "<none>"),
            info.get("osImage", ""), info.get("kernelVersion", ""),
            info.get("containerRuntimeVersion", "")]


def _pvc_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    return [phase, spec.get("volumeName") or "",
            (status.get("capacity") or {}).get("storage", ""),
            _access_modes(status.get("accessModes")), spec.get("storageClassName") or "",
            spec.get("volumeAttributesClassName") or "<unset>", age,
            spec.get("volumeMode") or "Filesystem"]


def _pv_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    claim = spec.get("claimRef") or {}
    return [(spec.get("capacity") or {}).get("storage", ""), _access_modes(spec.get("accessModes")),
            spec.get("persistentVolumeReclaimPolicy") or "", status.get("phase") or "",
            f"{claim['namespace']}/{claim['name']}" if claim.get("name") else "",
            spec.get("storageClassName") or "", spec.get("volumeAttributesClassName") or "<unset>",
            status.get("reason") or "", age, spec.get("volumeMode") or "Filesystem"]


def _service_cells(obj, age):
    spec = obj.get("spec") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = [i.get("ip") or i.get("hostname") for i in ingress] + list(spec.get("externalIPs") or [])
    ports = []
    for p in spec.get("ports") or []:
        s = str(p.get("port"))
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        ports.append(f"{s}/{p.get('protocol', 'TCP')}")
    svc_type = spec.get("type") or "ClusterIP"
    ext = ",".join(e for e in external if e) or ("<pending>" if svc_type == "LoadBalancer"
                                                 else "<none>")
    return [svc_type, spec.get("clusterIP") or "<none>", ext, ",".join(ports) or "<none>", age,
            _selector_string({"matchLabels": spec.get("selector") or {}})]


def _replicated_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [f"{status.get('readyReplicas') or 0}/{spec.get('replicas', 1)}", age]


def _replicaset_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return [int(spec.get("replicas", 1)), int(status.get("replicas") or 0),
            int(status.get("readyReplicas") or 0), age]


def _daemonset_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    node_selector = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [int(status.get(k) or 0) for k in ("desiredNumberScheduled", "currentNumberScheduled",
                                              "numberReady", "updatedNumberScheduled",
                                              "numberAvailable")] + [
        ",".join(f"{k}={v}" for k, v in sorted(node_selector.items())) or "<none>", age]


def _job_cells(obj, age):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    state = ("Complete" if conditions.get("Complete") == "True"
             else "Failed" if conditions.get("Failed") == "True" else "Running")
    start, end = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    duration = human_duration((end - start).total_seconds()) if start and end else ""
    return [state, f"{status.get('succeeded') or 0}/{spec.get('completions', 1)}", duration, age]


def _cronjob_cells(obj, age, now=None):
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    last = parse_time(status.get("lastScheduleTime"))
    return [spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            bool(spec.get("suspend", False)), len(status.get("active") or []),
            "<none>" if last is None or now is None
            else human_duration((now - last).total_seconds()), age]


def _event_cells(obj, age, now=None):
    involved = obj.get("involvedObject") or {}
    source = obj.get("source") or {}
    last = parse_time(obj.get("lastTimestamp") or obj.get("eventTime")
                      or (obj.get("metadata") or {}).get("creationTimestamp"))
    first = parse_time(obj.get("firstTimestamp") or obj.get("eventTime"))

    def since(ts):
        return "<unknown>" if ts is None or now is None else human_duration(
            (now - ts).total_seconds())

    origin = ", ".join(v for v in (source.get("component") or obj.get("reportingComponent"),
                                   source.get("host")) if v)
    return [since(last), obj.get("type", ""), obj.get("reason", ""),
            f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}",
            involved.get("fieldPath", ""), origin, obj.get("message", ""), since(first),
            str(obj.get("count") or 1), (obj.get("metadata") or {}).get("name", "")]


def _serviceaccount_cells(obj, age):
    return [len(obj.get("secrets") or []), age]


def _endpoints_cells(obj, age):
    addresses = []
    for subset in obj.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for addr in subset.get("addresses") or []:
            addresses += [f"{addr.get('ip')}:{p}" if p else addr.get("ip") for p in ports]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..."
                                      if len(addresses) > 3 else "")
    return [shown or "<none>", age]


def _role_cells(obj, age):
    return [(obj.get("metadata") or {}).get("creationTimestamp", "")]


def _rolebinding_cells(obj, age):
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def of(kind):
        return ",".join(
            (f"{s.get('namespace')}/{s.get('name')}" if kind == "ServiceAccount"
             else s.get("name", "")) for s in subjects if s.get("kind") == kind)
    return [f"{ref.get('kind', '')}/{ref.get('name', '')}", age, of("User"), of("Group"),
            of("ServiceAccount")]


def _lease_cells(obj, age):
    return [(obj.get("spec") or {}).get("holderIdentity") or "", age]


def _namespace_cells(obj, age):
    return [(obj.get("status") or {}).get("phase") or "Active", age]


def _configmap_cells(obj, age):
    return [len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), age]


def _secret_cells(obj, age):
    return [obj.get("type") or "Opaque", len(obj.get("data") or {}), age]


def _storageclass_cells(obj, age):
    return [obj.get("provisioner", ""), obj.get("reclaimPolicy") or "Delete",
            obj.get("volumeBindingMode") or "Immediate",
            bool(obj.get("allowVolumeExpansion", False)), age]


# (group, plural) -> (columns after Name, cell function)
BUILTIN_TABLES = {
    ("", "pods"): ([_col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
                    _col("Status", description="The aggregate status of the containers in this pod."),
                    _col("Restarts", description="The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
                    AGE_COLUMN,
                    _col("IP", priority=1), _col("Node", priority=1),
                    _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)],
                   _pod_cells),
    ("apps", "deployments"): ([_col("Ready", description="Number of the pod with ready state"),
                               _col("Up-to-date", "integer", description="Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                               _col("Available", "integer", description="Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                               AGE_COLUMN, _col("Containers", priority=1),
                               _col("Images", priority=1), _col("Selector", priority=1)],
                              _deployment_cells),
    ("apps", "statefulsets"): ([_col("Ready", description="Number of the pod with ready state"),
                                AGE_COLUMN], _replicated_cells),
    ("apps", "replicasets"): ([_col("Desired", "integer"), _col("Current", "integer"),
                               _col("Ready", "integer"), AGE_COLUMN], _replicaset_cells),
    ("apps", "daemonsets"): ([_col("Desired", "integer"), _col("Current", "integer"),
                              _col("Ready", "integer"), _col("Up-to-date", "integer"),
                              _col("Available", "integer"), _col("Node Selector"), AGE_COLUMN],
                             _daemonset_cells),
    ("batch", "jobs"): ([_col("Status"), _col("Completions"), _col("Duration"), AGE_COLUMN],
                        _job_cells),
    ("batch", "cronjobs"): ([_col("Schedule"), _col("Timezone"), _col("Suspend", "boolean"),
                             _col("Active", "integer"), _col("Last Schedule"), AGE_COLUMN],
                            _cronjob_cells),
    ("", "events"): ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"),
                      _col("Subobject", priority=1), _col("Source", priority=1),
                      _col("Message"), _col("First Seen", priority=1),
                      _col("Count", priority=1), _col("Name", fmt="name", priority=1)],
                     _event_cells),
    ("", "serviceaccounts"): ([_col("Secrets", "integer"), AGE_COLUMN], _serviceaccount_cells),
    ("", "endpoints"): ([_col("Endpoints"), AGE_COLUMN], _endpoints_cells),
    ("coordination.k8s.io", "leases"): ([_col("Holder"), AGE_COLUMN], _lease_cells),
    ("rbac.authorization.k8s.io", "roles"): ([_col("Created At", "date")], _role_cells),
    ("rbac.authorization.k8s.io", "clusterroles"): ([_col("Created At", "date")], _role_cells),
    ("rbac.authorization.k8s.io", "rolebindings"): (
        [_col("Role"), AGE_COLUMN, _col("Users", priority=1), _col("Groups", priority=1),
         _col("ServiceAccounts", priority=1)], _rolebinding_cells),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): (
        [_col("Role"), AGE_COLUMN, _col("Users", priority=1), _col("Groups", priority=1),
         _col("ServiceAccounts", priority=1)], _rolebinding_cells),
    ("", "nodes"): ([_col("Status", description="The status of the node"),
                     _col("Roles", description="The roles of the node"), AGE_COLUMN,
                     _col("Version", description="Kubelet Version reported by the node."),
                     _col("Internal-IP", priority=1), _col("External-IP", priority=1),
                     _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
                     _col("Container-Runtime", priority=1)], _node_cells),
    ("", "persistentvolumeclaims"): ([_col("Status"), _col("Volume"), _col("Capacity"),
                                      _col("Access Modes"), _col("StorageClass"),
                                      _col("VolumeAttributesClass"), AGE_COLUMN,
                                      _col("VolumeMode", priority=1)], _pvc_cells),
    ("", "persistentvolumes"): ([_col("Capacity"), _col("Access Modes"), _col("Reclaim Policy"),
                                 _col("Status"), _col("Claim"), _col("StorageClass"),
                                 _col("VolumeAttributesClass"), _col("Reason"), AGE_COLUMN,
                                 _col("VolumeMode", priority=1)], _pv_cells),
    ("", "services"): ([_col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"),
                        AGE_COLUMN, _col("Selector", priority=1)], _service_cells),
    ("", "namespaces"): ([_col("Status", description="The status of the namespace"),
                          AGE_COLUMN], _namespace_cells),
    ("", "configmaps"): ([_col("Data", "integer"), AGE_COLUMN], _configmap_cells),
    ("", "secrets"): ([_col("Type"), _col("Data", "integer"), AGE_COLUMN], _secret_cells),
    ("storage.k8s.io", "storageclasses"): ([_col("Provisioner"), _col("ReclaimPolicy"),
                                            _col("VolumeBindingMode"),
                                            _col("AllowVolumeExpansion"), AGE_COLUMN],
                                           _storageclass_cells),
}


def _json_cell(type_: str, value, now: datetime):
    """apiextensions' cellForJSONValue: CRD printer column values by declared type."""
    if value is None:
        return None
    if type_ == "string":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if type_ == "integer":
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if type_ == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if type_ == "date":
        ts = parse_time(value)
        return "<invalid>" if ts is None else human_duration((now - ts).total_seconds())
    return None


class TableConverter:
    """Builds meta.k8s.io Tables the way kube-apiserver's printers do for kubectl."""

    def __init__(self, rt, version: str, now: datetime):
        self.rt, self.now = rt, now
        self.custom = None
        if (rt.group, rt.plural) in BUILTIN_TABLES:
            columns, cells = BUILTIN_TABLES[(rt.group, rt.plural)]
            self.columns = [NAME_COLUMN] + columns
            self.cells = cells
            if cells in (_cronjob_cells, _event_cells):  # more ages on the lab clock
                self.cells = lambda obj, age: cells(obj, age, self.now)
            if cells is _event_cells:  # kubectl shows events without a leading NAME
                self.columns = columns
        elif not rt.builtin:
            printers = rt.printer_columns.get(version) or []
            if not printers:  # what the CRD server serves when the CRD declares none
                printers = [{"name": "Age", "type": "date",
                             "jsonPath": ".metadata.creationTimestamp"}]
            self.custom = printers
            self.columns = [NAME_COLUMN] + [
                _col(p["name"], p.get("type", "string"), p.get("format", ""),
                     p.get("description", ""), int(p.get("priority", 0))) for p in printers]
        elif rt.plural == "customresourcedefinitions":  # the default table convertor
            self.columns = [NAME_COLUMN, _col("Created At", "date", description=AGE_COLUMN["description"])]
            self.cells = lambda obj, age: [(obj.get("metadata") or {}).get("creationTimestamp", "")]
        else:
            self.columns = [NAME_COLUMN, AGE_COLUMN]
            self.cells = lambda obj, age: [age]

    def row_cells(self, obj: dict) -> list:
        meta = obj.get("metadata") or {}
        created = parse_time(meta.get("creationTimestamp"))
        age = human_duration((self.now - created).total_seconds()) if created else "<unknown>"
        name = meta.get("name", "")
        if self.custom is not None:
            return [name] + [_json_cell(p.get("type", "string"),
                                        jsonpath_value(obj, p.get("jsonPath", "")), self.now)
                             for p in self.custom]
        if (self.rt.group, self.rt.plural) == ("storage.k8s.io", "storageclasses") and \
                (meta.get("annotations") or {}).get(
                    "storageclass.kubernetes.io/is-default-class") == "true":
            name += " (default)"
        if self.columns[0] is not NAME_COLUMN:
            return self.cells(obj, age)
        return [name] + self.cells(obj, age)

    def table(self, objs: list[dict], include: str, api_version: str,
              list_meta: dict | None = None, with_columns: bool = True) -> dict:
        rows = []
        for obj in objs:
            row = {"cells": self.row_cells(obj)}
            if include == "Object":
                row["object"] = obj
            elif include == "Metadata":
                row["object"] = partial_metadata(obj)
            rows.append(row)
        return {"kind": "Table", "apiVersion": api_version, "metadata": list_meta or {},
                "columnDefinitions": self.columns if with_columns else [], "rows": rows}


def partial_metadata(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}
