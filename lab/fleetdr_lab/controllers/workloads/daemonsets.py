"""DaemonSets (Kubernetes pkg/controller/daemon): one pod per fitting node."""
from __future__ import annotations

from ..base import is_deleting, meta, pod_is_ready, pod_is_terminal, template_hash
from .podspec import DS_TOLERATIONS, node_fits, omit_zero, pod_from_template
from .reconciler import Reconciler

TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


class DaemonSetReconciler(Reconciler):
    """A daemon pod on every node the template fits, with the daemon tolerations."""

    def sync(self, ns, name):
        ds = self.store.get_or_none("apps", "daemonsets", ns, name)
        if not ds or is_deleting(ds):
            return
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        tspec = dict(template.get("spec") or {})
        tspec["tolerations"] = list(tspec.get("tolerations") or []) + DS_TOLERATIONS
        revision = template_hash(template)
        # the template generation the API server keeps in this annotation (apps/v1 DaemonSet)
        generation = (meta(ds).get("annotations") or {}).get(TEMPLATE_GENERATION) or str(meta(ds).get("generation", 1))
        nodes = self.store.list("", "nodes")["items"]
        eligible = {meta(n)["name"] for n in nodes if node_fits(tspec, n)}
        pods = [p for p in self._claim(ds, "", "pods") if not is_deleting(p)]
        by_node: dict[str, list] = {}
        for p in pods:
            by_node.setdefault(self._daemon_pod_node(p), []).append(p)
        rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        for node_name in sorted(eligible):
            on_node = [p for p in by_node.get(node_name, []) if not pod_is_terminal(p)]
            stale = [p for p in on_node
                     if (meta(p).get("labels") or {}).get("controller-revision-hash") != revision]
            if rolling and stale:
                for p in stale:
                    self._delete("", "pods", p)
                on_node = [p for p in on_node if p not in stale]
            for p in by_node.get(node_name, []):
                if pod_is_terminal(p):
                    self._delete("", "pods", p)
            if not on_node:
                self._create_pod(ds, self._daemon_pod(ds, node_name, revision, generation))
            for extra in on_node[1:]:
                self._delete("", "pods", extra)
        for node_name, node_pods in by_node.items():
            if node_name not in eligible:
                for p in node_pods:
                    self._delete("", "pods", p)
        pods = [p for p in self._claim(ds, "", "pods") if not is_deleting(p) and not pod_is_terminal(p)]
        self._history(ds, revision, {(meta(p).get("labels") or {}).get("controller-revision-hash") for p in pods})
        scheduled = {self._daemon_pod_node(p) for p in pods}
        ready_pods = [p for p in pods if pod_is_ready(p)]
        status = omit_zero({
            "currentNumberScheduled": len(scheduled & eligible),
            "numberMisscheduled": len(scheduled - eligible),
            "desiredNumberScheduled": len(eligible),
            "numberReady": len(ready_pods), "numberAvailable": len(ready_pods),
            "updatedNumberScheduled": sum(1 for p in pods if (meta(p).get("labels") or {})
                                          .get("controller-revision-hash") == revision),
            "numberUnavailable": max(0, len(eligible) - len(ready_pods)),
            "observedGeneration": meta(ds).get("generation", 1)})
        for k in ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
                  "numberReady"):
            status.setdefault(k, 0)  # not omitempty in the real API
        self._write_status("apps", "daemonsets", ds, status)

    @staticmethod
    def _daemon_pod_node(pod):
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            return spec["nodeName"]
        terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
                  .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
                 .get("nodeSelectorTerms") or [])
        for t in terms:
            for f in t.get("matchFields") or []:
                if f.get("key") == "metadata.name" and f.get("values"):
                    return f["values"][0]
        return ""

    def _daemon_pod(self, ds, node_name, revision, generation):
        ns, name = meta(ds)["namespace"], meta(ds)["name"]
        pod = pod_from_template((ds.get("spec") or {}).get("template"), ns, ds,
                                generate_name=f"{name}-",
                                labels={"controller-revision-hash": revision,
                                        "pod-template-generation": generation})
        spec = pod["spec"]
        spec["tolerations"] = list(spec.get("tolerations") or []) + DS_TOLERATIONS
        # the real controller pins a daemon pod to its node through node affinity
        affinity = spec.setdefault("affinity", {})
        affinity["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}
        return pod
