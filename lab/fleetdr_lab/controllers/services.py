"""Services: clusterIP / nodePort allocation (a synchronous admission step) and the endpoints
controller (Endpoints from ready pods), plus a LoadBalancer "cloud" that hands out ingress IPs.

Allocation follows the apiserver's service REST: clusterIP from 10.96.0.0/12 unless None
(headless) or requested; a requested IP or nodePort that is taken or out of range is refused with
422 Invalid and the apiserver's messages; NodePort/LoadBalancer ports without a nodePort get a free
one in 30000-32767, unique in the cluster. On update, allocated values the body left out are kept.
"""
from __future__ import annotations

import copy
import ipaddress
import random

from .base import Controller, is_deleting, meta, pod_is_ready, pod_is_terminal

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
NODE_PORT_RANGE = (30000, 32767)
LB_POOL = ipaddress.ip_network("172.18.255.0/24")
ENDPOINTS_BATCH_SECONDS = 0.05


def _invalid(name, field, value, message):
    from ..store import invalid
    from .. import validation
    return invalid("Service", name, [validation.invalid(field, value, message)])


def _used(store, exclude_uid=None):
    ips, ports = set(), set()
    for svc in store.list("", "services")["items"]:
        if meta(svc).get("uid") == exclude_uid:
            continue
        spec = svc.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None":
                ips.add(ip)
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                ports.add(p["nodePort"])
    return ips, ports


def admit_service(store, obj: dict, old: dict | None) -> None:
    """Allocate/validate clusterIP and nodePorts in place; raise ApiError 422 when refused."""
    spec = obj.setdefault("spec", {})
    name = meta(obj).get("name", "")
    stype = spec.get("type") or "ClusterIP"
    ospec = (old or {}).get("spec") or {}
    used_ips, used_ports = _used(store, exclude_uid=meta(old).get("uid") if old else None)
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


class ServiceController(Controller):
    """Endpoints for Services with a selector; LoadBalancer ingress IPs."""

    name = "services"
    watches = [("", "services"), ("", "pods")]

    def keys_for(self, etype, obj):
        m = meta(obj)
        ns = m.get("namespace")
        if obj.get("kind") == "Service":
            return [(ns, m.get("name"))]
        # a pod changed (its labels may have, too): every service with a selector in its
        # namespace, batched like the endpoints controller's update batching
        for s in self.store.list("", "services", namespace=ns)["items"]:
            if (s.get("spec") or {}).get("selector"):
                self.enqueue_soon((ns, meta(s)["name"]), ENDPOINTS_BATCH_SECONDS)
        return []

    def reconcile(self, key):
        ns, name = key
        svc = self.store.get_or_none("", "services", ns, name)
        if svc is None or is_deleting(svc):
            ep = self.store.get_or_none("", "endpoints", ns, name)
            if ep is not None and svc is None:
                try:
                    self.store.delete("", "endpoints", ns, name)
                except Exception as e:
                    if getattr(e, "code", None) != 404:
                        raise
            return
        spec = svc.get("spec") or {}
        if spec.get("type") == "LoadBalancer":
            self._load_balancer(svc)
        selector = spec.get("selector")
        if not selector:
            return  # endpoints of selector-less services are the user's
        self._endpoints(svc, selector)

    def _load_balancer(self, svc):
        lb = (svc.get("status") or {}).get("loadBalancer") or {}
        if lb.get("ingress"):
            return
        used = set()
        for s in self.store.list("", "services")["items"]:
            for ing in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
                used.add(ing.get("ip"))
        for off in range(10, LB_POOL.num_addresses - 1):
            ip = str(LB_POOL.network_address + off)
            if ip not in used:
                break
        body = copy.deepcopy(svc)
        body.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
        self.store.update("", "services", meta(svc)["namespace"], meta(svc)["name"], body,
                          subresource="status")

    def _endpoints(self, svc, selector):
        ns, name = meta(svc)["namespace"], meta(svc)["name"]
        pods = [p for p in self.store.list("", "pods", namespace=ns, label_selector=",".join(
                    f"{k}={v}" for k, v in sorted(selector.items())))["items"]
                if not pod_is_terminal(p) and not is_deleting(p)
                and (p.get("status") or {}).get("podIP")]
        subsets: dict[tuple, dict] = {}
        for pod in sorted(pods, key=lambda p: meta(p)["name"]):
            ports = []
            for sp in (svc.get("spec") or {}).get("ports") or []:
                target = sp.get("targetPort", sp.get("port"))
                if isinstance(target, str):
                    target = next((cp.get("containerPort")
                                   for c in (pod.get("spec") or {}).get("containers") or []
                                   for cp in c.get("ports") or [] if cp.get("name") == target), None)
                    if target is None:
                        continue
                port = {"port": target, "protocol": sp.get("protocol", "TCP")}
                if sp.get("name"):
                    port["name"] = sp["name"]
                if sp.get("appProtocol"):
                    port["appProtocol"] = sp["appProtocol"]
                ports.append(port)
            if not ports and (svc.get("spec") or {}).get("ports"):
                continue
            key = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
            subset = subsets.setdefault(key, {"ports": ports})
            pm = meta(pod)
            address = {"ip": pod["status"]["podIP"],
                       "targetRef": {"kind": "Pod", "namespace": ns, "name": pm["name"],
                                     "uid": pm["uid"]}}
            if (pod.get("spec") or {}).get("nodeName"):
                address["nodeName"] = pod["spec"]["nodeName"]
            if (pod.get("spec") or {}).get("hostname") and (pod.get("spec") or {}).get("subdomain") == name:
                address["hostname"] = pod["spec"]["hostname"]
            bucket = "addresses" if pod_is_ready(pod) else "notReadyAddresses"
            subset.setdefault(bucket, []).append(address)
        body = {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns,
                             "labels": dict(meta(svc).get("labels") or {})}}
        if subsets:
            body["subsets"] = list(subsets.values())
        existing = self.store.get_or_none("", "endpoints", ns, name)
        if existing is None:
            self.store.create("", "endpoints", ns, body)
        elif existing.get("subsets") != body.get("subsets") or \
                (meta(existing).get("labels") or {}) != body["metadata"]["labels"]:
            body["metadata"]["resourceVersion"] = meta(existing)["resourceVersion"]
            if meta(existing).get("annotations"):
                body["metadata"]["annotations"] = meta(existing)["annotations"]
            self.store.update("", "endpoints", ns, name, body)
