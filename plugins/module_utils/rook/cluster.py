# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A CephCluster from the options of fleetdr.kube.rook_cluster, checked before any write.

Options mirror Kurator's DistributedStorage (dataDirHostPath, monitor/manager with count, labels
and placement, storage) and map onto the CephCluster the same way Kurator's render does
(kurator pkg/fleet-manager/plugin/render.go): monitor.labels -> spec.labels.mon, placement ->
spec.placement.mon. The checks catch before the first write what Rook would only report later,
or never: Rook's CRD bounds (deploy/examples/crds.yaml), its pre-start node count
(pkg/operator/ceph/cluster/cluster.go preClusterStartValidation), mons or mgrs that no Node can
host (Rook reports "failed to schedule mons" after ~150 s, or waits 300 s for a mgr), storage
node names that are not hostnames (silently no OSDs), and a changed dataDirHostPath.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import posixpath
import re

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import placement as placements

API_VERSION = "ceph.rook.io/v1"
PLURAL = "cephclusters"
DEFAULT_CEPH_IMAGE = "quay.io/ceph/ceph:v20.2.4"
MON_MAX = 9
MGR_MAX = 5
DESTROY_DATA = "yes-really-destroy-data"
# Rook refuses these (pkg/operator/ceph/cluster/cluster.go) but only with a log line and no status.
FORBIDDEN_DATA_DIRS = ("/etc/ceph", "/rook", "/var/log/ceph")
HEALTH_CHOICES = ("HEALTH_OK", "HEALTH_WARN")

DAEMON_ARG_SPEC = {
    "count": {"type": "int"},
    "allow_multiple_per_node": {"type": "bool", "default": False},
    "labels": {"type": "dict"},
    "annotations": {"type": "dict"},
    "placement": {"type": "dict"},
}

STORAGE_NODE_ARG_SPEC = {
    "name": {"type": "str", "required": True},
    "devices": {"type": "list", "elements": "str"},
    "device_filter": {"type": "str"},
    "use_all_devices": {"type": "bool"},
}

CLUSTER_ARG_SPEC = {
    "name": {"type": "str", "default": "rook-ceph"},
    "namespace": {"type": "str", "default": "rook-ceph"},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "data_dir_host_path": {"type": "str", "default": "/var/lib/rook"},
    "monitor": {"type": "dict", "options": DAEMON_ARG_SPEC, "default": {}},
    "manager": {"type": "dict", "options": DAEMON_ARG_SPEC, "default": {}},
    "storage": {"type": "dict", "default": {}, "options": {
        "use_all_nodes": {"type": "bool"},
        "use_all_devices": {"type": "bool", "default": True},
        "device_filter": {"type": "str"},
        "nodes": {"type": "list", "elements": "dict", "options": STORAGE_NODE_ARG_SPEC},
    }},
    "ceph_image": {"type": "str", "default": DEFAULT_CEPH_IMAGE},
    "allow_unsupported": {"type": "bool", "default": False},
    "cleanup_policy": {"type": "dict", "options": {
        "confirmation": {"type": "str", "choices": ["", DESTROY_DATA]},
        "sanitize_disks": {"type": "dict", "options": {
            "method": {"type": "str", "choices": ["quick", "complete"]},
            "data_source": {"type": "str", "choices": ["zero", "random"]},
            "iteration": {"type": "int"},
        }},
        "allow_uninstall_with_volumes": {"type": "bool"},
    }},
    "dashboard": {"type": "bool", "default": False},
    "extra_spec": {"type": "dict", "default": {}},
    "health_ok": {"type": "list", "elements": "str", "choices": list(HEALTH_CHOICES), "default": list(HEALTH_CHOICES)},
    "wait": {"type": "bool", "default": True},
    "wait_timeout": {"type": "int", "default": 900},
}


def _deep_merge(base, extra):
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _daemon_count(options, default, maximum, option):
    count = options.get("count")
    if count is None:
        return default
    if not 1 <= count <= maximum:
        raise ValidationError(option + ".count", "must be between 1 and {0} (Rook's CRD allows 0..{0}, and 0 means a default), got {1}"
                              .format(maximum, count))
    return count


def validate(params):
    """Checks that need no cluster; returns the normalised counts {mon, mgr}."""
    path = params["data_dir_host_path"]
    if not path or not re.match(r"^/(\S+)", path):
        raise ValidationError("data_dir_host_path", "must be an absolute path without spaces, got {0!r}".format(path))
    if posixpath.normpath(path) in FORBIDDEN_DATA_DIRS:
        raise ValidationError("data_dir_host_path", "{0} is reserved by Ceph; Rook would refuse it without saying so in the status"
                              .format(path))
    monitor = params.get("monitor") or {}
    mons = _daemon_count(monitor, 3, MON_MAX, "monitor")
    if mons % 2 == 0:
        raise ValidationError("monitor.count", "must be odd so that a majority of monitors can form a quorum, got {0}".format(mons))
    mgrs = _daemon_count(params.get("manager") or {}, 2, MGR_MAX, "manager")
    storage = params.get("storage") or {}
    for option, pattern in [("storage.device_filter", storage.get("device_filter"))] + [
            ("storage.nodes[{0}].device_filter".format(i), n.get("device_filter")) for i, n in enumerate(storage.get("nodes") or [])]:
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValidationError(option, "is not a valid regular expression: {0}".format(exc))
    if storage.get("use_all_nodes") and storage.get("nodes"):
        raise ValidationError("storage.use_all_nodes", "is true, so Rook would ignore storage.nodes; set it to false to use only "
                              "the nodes listed")
    names = [n["name"] for n in storage.get("nodes") or []]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    if duplicates:
        raise ValidationError("storage.nodes", "names a node more than once: {0}".format(", ".join(duplicates)))
    return {"mon": mons, "mgr": mgrs}


def _daemon_placement(options):
    return options.get("placement") or {}


def build(params):
    """The CephCluster object for ``params`` (validated by ``validate``)."""
    counts = validate(params)
    monitor, manager = params.get("monitor") or {}, params.get("manager") or {}
    storage = params.get("storage") or {}
    spec = {
        "cephVersion": {"image": params["ceph_image"], "allowUnsupported": bool(params.get("allow_unsupported"))},
        "dataDirHostPath": params["data_dir_host_path"],
        "mon": {"count": counts["mon"], "allowMultiplePerNode": bool(monitor.get("allow_multiple_per_node"))},
        "mgr": {"count": counts["mgr"], "allowMultiplePerNode": bool(manager.get("allow_multiple_per_node"))},
        "dashboard": {"enabled": bool(params.get("dashboard"))},
        "storage": {"useAllNodes": not storage.get("nodes") if storage.get("use_all_nodes") is None else storage["use_all_nodes"],
                    "useAllDevices": storage.get("use_all_devices", True)},
    }
    if storage.get("device_filter"):
        spec["storage"]["deviceFilter"] = storage["device_filter"]
    if storage.get("nodes"):
        nodes = []
        for node in storage["nodes"]:
            entry = {"name": node["name"]}
            if node.get("devices"):
                entry["devices"] = [{"name": device} for device in node["devices"]]
            if node.get("device_filter"):
                entry["deviceFilter"] = node["device_filter"]
            if node.get("use_all_devices") is not None:
                entry["useAllDevices"] = node["use_all_devices"]
            nodes.append(entry)
        spec["storage"]["nodes"] = nodes
    for field, source in (("labels", "labels"), ("annotations", "annotations"), ("placement", "placement")):
        for daemon, options in (("mon", monitor), ("mgr", manager)):
            if options.get(source):
                spec.setdefault(field, {})[daemon] = copy.deepcopy(options[source])
    policy = params.get("cleanup_policy") or {}
    if policy:
        cleanup = {}
        if policy.get("confirmation") is not None:
            cleanup["confirmation"] = policy["confirmation"]
        sanitize = dict((key, value) for key, value in (policy.get("sanitize_disks") or {}).items() if value is not None)
        if sanitize:
            cleanup["sanitizeDisks"] = dict((k if k != "data_source" else "dataSource", v) for k, v in sanitize.items())
        if policy.get("allow_uninstall_with_volumes") is not None:
            cleanup["allowUninstallWithVolumes"] = policy["allow_uninstall_with_volumes"]
        spec["cleanupPolicy"] = cleanup
    spec = _deep_merge(spec, params.get("extra_spec"))
    return {"apiVersion": API_VERSION, "kind": "CephCluster",
            "metadata": {"name": params["name"], "namespace": params["namespace"]}, "spec": spec}


def check_against_cluster(obj, nodes, existing=None):
    """Problems Rook would hit on this cluster (its Nodes, the CephCluster already there); raises
    ValidationError naming the option and the numbers."""
    spec = obj["spec"]
    if existing is not None:
        before = (existing.get("spec") or {}).get("dataDirHostPath")
        if before and before != spec["dataDirHostPath"]:
            raise ValidationError("data_dir_host_path", "cannot change from {0} to {1} on an existing CephCluster (Rook: "
                                  "DataDirHostPath is immutable)".format(before, spec["dataDirHostPath"]))
    if (spec.get("cleanupPolicy") or {}).get("confirmation") == DESTROY_DATA and existing is None:
        raise ValidationError("cleanup_policy.confirmation", "{0} on a new cluster stops Rook from ever creating it; set it only "
                              "to tear a cluster down".format(DESTROY_DATA))
    total = len(nodes)
    for daemon, option in (("mon", "monitor"), ("mgr", "manager")):
        wanted = spec[daemon]["count"]
        multiple = spec[daemon].get("allowMultiplePerNode")
        if daemon == "mon" and not multiple and total < wanted:
            # Rook's own pre-check counts every Node (pkg/operator/ceph/cluster/cluster.go).
            raise ValidationError(option + ".count", "cannot start {0} mons on {1} node(s) when allow_multiple_per_node is false"
                                  .format(wanted, total))
        effective = placements.merged(spec.get("placement"), daemon)
        allowed = placements.allowed_nodes(effective, nodes)
        if not allowed:
            raise ValidationError(option + ".placement", "no Node satisfies the {0} placement (node affinity and taints) among "
                                  "{1} node(s)".format(daemon, total))
        if not multiple and len(allowed) < wanted:
            message = "{0} {1}s need {0} nodes their placement allows when allow_multiple_per_node is false; only {2} of {3} node(s) do ({4})"
            raise ValidationError(option + ".count", message.format(wanted, daemon, len(allowed), total, ", ".join(sorted(allowed))))
    storage = spec.get("storage") or {}
    if storage.get("nodes") and not storage.get("useAllNodes"):
        hostnames = set(filter(None, (placements.hostname(n) for n in nodes)))
        unknown = [n["name"] for n in storage["nodes"] if n["name"] not in hostnames]
        if unknown:
            raise ValidationError("storage.nodes", "{0} match no node's {1} label (known: {2}); Rook would create no OSDs there"
                                  .format(", ".join(unknown), placements.HOSTNAME_LABEL, ", ".join(sorted(hostnames)) or "none"))
