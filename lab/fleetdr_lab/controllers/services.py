"""Services: the endpoints controller (Endpoints from ready pods) and a LoadBalancer "cloud" that
hands out ingress IPs. clusterIP / nodePort allocation is the Service strategy's
(strategies.py).

Each cluster's load balancers come from its own /24 (10.128.0.0/9 split by cluster index), so an
ingress IP names one cluster, as a cloud's addresses do. When the Service's pods are served by
something the lab runs (a Service of the same selector with an address in the cluster's
`service_addresses`, e.g. a Rook RGW), `http://<ingress IP>:<port>` reaches it from every cluster
of the lab (`Lab.external_addresses`, used by `Cluster.resolve_url`)."""
from __future__ import annotations

import copy
import ipaddress

from .base import Controller, is_deleting, meta, pod_is_ready, pod_is_terminal

LB_SPACE = ipaddress.ip_network("10.128.0.0/9")
ENDPOINTS_BATCH_SECONDS = 0.05


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
            self._route(svc, lb["ingress"][0].get("ip"))
            return
        used = set()
        for s in self.store.list("", "services")["items"]:
            for ing in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
                used.add(ing.get("ip"))
        pool = ipaddress.ip_network((int(LB_SPACE.network_address) + 256 * (self.cluster.index % 32768), 24))
        for off in range(10, pool.num_addresses - 1):
            ip = str(pool.network_address + off)
            if ip not in used:
                break
        body = copy.deepcopy(svc)
        body.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]}
        self.store.update("", "services", meta(svc)["namespace"], meta(svc)["name"], body,
                          subresource="status")
        self._route(svc, ip)

    def _route(self, svc, ip):
        """Make http://<ip>:<port> reach what serves the Service's pods, when the lab runs it."""
        ns, selector = meta(svc)["namespace"], (svc.get("spec") or {}).get("selector")
        if not ip or not selector:
            return
        for other in self.store.list("", "services", namespace=ns)["items"]:
            target = self.cluster.service_addresses.get((ns, meta(other)["name"]))
            if target and (other.get("spec") or {}).get("selector") == selector:
                for port in (svc.get("spec") or {}).get("ports") or []:
                    self.cluster.lab.external_addresses[f"{ip}:{port.get('port')}"] = target
                return

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
