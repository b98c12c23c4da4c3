"""StatefulSets (Kubernetes pkg/controller/statefulset): ordered pods and their claims."""
from __future__ import annotations

import copy
import re

from ..base import is_deleting, meta, owner_reference, pod_is_ready, pod_is_terminal, template_hash
from .podspec import omit_zero, pod_from_template
from .reconciler import Reconciler


class StatefulSetReconciler(Reconciler):
    """Ordinal pods, one PVC per volumeClaimTemplate and ordinal, rolling updates."""

    def sync(self, ns, name):
        sts = self.store.get_or_none("apps", "statefulsets", ns, name)
        if not sts or is_deleting(sts):
            return
        spec = sts.get("spec") or {}
        want = spec.get("replicas", 1)
        template = spec.get("template") or {}
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        revision = f"{name}-{template_hash(template)}"
        name_re = re.compile(re.escape(name) + r"-(\d+)$")
        pods = self._claim(sts, "", "pods", name_ok=lambda p: bool(name_re.match(meta(p)["name"])))
        by_ordinal = {}
        for p in pods:
            mt = name_re.match(meta(p)["name"])
            if mt:
                by_ordinal[int(mt.group(1))] = p
        # scale up / replace, lowest ordinal first
        for ordinal in range(want):
            pod = by_ordinal.get(ordinal)
            if pod is None:
                self._ensure_claims(sts, ordinal)
                pod_name = f"{name}-{ordinal}"
                pod = self._create_pod(sts, self._sts_pod(sts, ordinal, revision), message=lambda e, p=pod_name: (
                    f"create Pod {p} in StatefulSet {name} failed error: {e.message}"))
                if pod is None:
                    break  # stateful_set_control.go: the set waits for the failed ordinal
                by_ordinal[ordinal] = pod
                if ordered:
                    break
                continue
            if pod_is_terminal(pod) and not is_deleting(pod):
                self._delete("", "pods", pod)  # recreated on the next pass, same name
                if ordered:
                    break
            elif ordered and (is_deleting(pod) or not pod_is_ready(pod)):
                break
        else:
            all_ready = all(pod_is_ready(by_ordinal[i]) and not is_deleting(by_ordinal[i])
                            for i in range(want) if i in by_ordinal)
            condemned = sorted((o for o in by_ordinal if o >= want), reverse=True)
            if condemned:
                if not ordered:
                    for o in condemned:
                        if not is_deleting(by_ordinal[o]):
                            self._delete("", "pods", by_ordinal[o])
                elif all_ready and not any(is_deleting(by_ordinal[o]) for o in condemned):
                    self._delete("", "pods", by_ordinal[condemned[0]])
            elif all_ready and (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") \
                    == "RollingUpdate":
                stale = [o for o in sorted(by_ordinal, reverse=True)
                         if (meta(by_ordinal[o]).get("labels") or {}).get("controller-revision-hash")
                         != revision]
                if stale:
                    self._delete("", "pods", by_ordinal[stale[0]])
        live = [p for p in by_ordinal.values() if not pod_is_terminal(p)]
        self._history(sts, revision[len(name) + 1:], {(meta(p).get("labels") or {}).get("controller-revision-hash") for p in live})
        ready = sum(1 for p in live if pod_is_ready(p))
        updated = sum(1 for p in live if (meta(p).get("labels") or {}).get("controller-revision-hash")
                      == revision)
        old = sts.get("status") or {}
        current_rev = revision if updated == len(live) else (old.get("currentRevision") or revision)
        current = sum(1 for p in live if (meta(p).get("labels") or {}).get("controller-revision-hash")
                      == current_rev)
        status = omit_zero({"observedGeneration": meta(sts).get("generation", 1),
                            "replicas": len(live), "readyReplicas": ready,
                            "currentReplicas": current, "updatedReplicas": updated,
                            "availableReplicas": ready})
        status.update({"replicas": len(live), "currentRevision": current_rev,
                       "updateRevision": revision, "collisionCount": 0})
        self._write_status("apps", "statefulsets", sts, status)

    def _ensure_claims(self, sts, ordinal):
        spec = sts.get("spec") or {}
        ns, name = meta(sts)["namespace"], meta(sts)["name"]
        policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        for tmpl in spec.get("volumeClaimTemplates") or []:
            tm = tmpl.get("metadata") or {}
            claim_name = f"{tm.get('name')}-{name}-{ordinal}"
            if self.store.get_or_none("", "persistentvolumeclaims", ns, claim_name):
                continue
            labels = {**(tm.get("labels") or {}),
                      **((spec.get("selector") or {}).get("matchLabels") or {})}
            md = {"name": claim_name, "namespace": ns, "labels": labels}
            if tm.get("annotations"):
                md["annotations"] = dict(tm["annotations"])
            if policy.get("whenDeleted") == "Delete":
                md["ownerReferences"] = [owner_reference(sts)]
            body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md,
                    "spec": copy.deepcopy(tmpl.get("spec") or {})}
            try:
                self.store.create("", "persistentvolumeclaims", ns, body)
            except Exception as e:
                if getattr(e, "code", None) != 409:
                    raise

    def _sts_pod(self, sts, ordinal, revision):
        spec = sts.get("spec") or {}
        ns, name = meta(sts)["namespace"], meta(sts)["name"]
        pod_name = f"{name}-{ordinal}"
        pod = pod_from_template(spec.get("template"), ns, sts, name=pod_name, labels={
            "controller-revision-hash": revision,
            "statefulset.kubernetes.io/pod-name": pod_name,
            "apps.kubernetes.io/pod-index": str(ordinal)})
        pspec = pod["spec"]
        pspec["hostname"] = pod_name
        if spec.get("serviceName"):
            pspec["subdomain"] = spec["serviceName"]
        volumes = pspec.setdefault("volumes", [])
        for tmpl in spec.get("volumeClaimTemplates") or []:
            vname = (tmpl.get("metadata") or {}).get("name")
            vol = {"name": vname, "persistentVolumeClaim": {"claimName": f"{vname}-{name}-{ordinal}"}}
            for i, v in enumerate(volumes):
                if v.get("name") == vname:
                    volumes[i] = vol
                    break
            else:
                volumes.append(vol)
        return pod
