"""Deployments and ReplicaSets (Kubernetes pkg/controller/deployment, pkg/controller/replicaset)."""
from __future__ import annotations

import copy
import datetime as dt

from ..base import (is_deleting, meta, owner_reference, pod_is_active, pod_is_ready, pod_is_terminal,
                    set_condition, template_hash)
from .podspec import int_or_percent, omit_zero, pod_from_template, strip_hash
from .reconciler import Reconciler


class DeploymentReconciler(Reconciler):
    """Rollouts: new ReplicaSet per template hash, surge/unavailable limits, history, status."""

    def sync(self, ns, name):
        d = self.store.get_or_none("apps", "deployments", ns, name)
        if not d or is_deleting(d):
            return
        spec = d.get("spec") or {}
        want = spec.get("replicas", 1)
        template = spec.get("template") or {}
        paused = bool(spec.get("paused"))
        now = self.now()
        rss = self._claim(d, "apps", "replicasets")
        plain = strip_hash(template)
        new_rs = next((rs for rs in rss if not is_deleting(rs)
                       and strip_hash((rs.get("spec") or {}).get("template")) == plain), None)
        revisions = [int(meta(rs).get("annotations", {}).get("deployment.kubernetes.io/revision", "0") or 0)
                     for rs in rss]
        max_rev = max(revisions, default=0)
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            max_surge = int_or_percent(rolling.get("maxSurge", "25%"), want, True)
            max_unavailable = int_or_percent(rolling.get("maxUnavailable", "25%"), want, False)
            if max_surge == 0 and max_unavailable == 0:
                max_unavailable = 1
        else:
            max_surge = max_unavailable = 0
        created = False
        recreate = strategy.get("type") == "Recreate"
        old_pods_left = any((rs.get("status") or {}).get("replicas") for rs in rss
                            if rs is not new_rs)
        if recreate and not paused:
            # Recreate: every old pod goes first, the new ReplicaSet comes up afterwards
            for rs in rss:
                if rs is not new_rs and (rs.get("spec") or {}).get("replicas", 1) != 0:
                    self.store.patch("apps", "replicasets", ns, meta(rs)["name"],
                                     {"spec": {"replicas": 0}}, "merge")
        if new_rs is None and not paused and not (recreate and old_pods_left):
            collisions = (d.get("status") or {}).get("collisionCount", 0)
            h = template_hash(plain, collisions)
            rs_name = f"{name}-{h}"
            labels = {**((template.get("metadata") or {}).get("labels") or {}), "pod-template-hash": h}
            rs_template = copy.deepcopy(plain)
            rs_template.setdefault("metadata", {})["labels"] = labels
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = h
            body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": rs_name, "namespace": ns, "labels": labels,
                                 "annotations": {
                                     "deployment.kubernetes.io/revision": str(max_rev + 1),
                                     "deployment.kubernetes.io/desired-replicas": str(want),
                                     "deployment.kubernetes.io/max-replicas": str(want + max_surge)},
                                 "ownerReferences": [owner_reference(d)]},
                    "spec": {"replicas": want, "minReadySeconds": spec.get("minReadySeconds", 0),
                             "selector": selector, "template": rs_template}}
            try:
                new_rs = self.store.create("apps", "replicasets", ns, body)
            except Exception as e:
                if getattr(e, "code", None) != 409:
                    raise
                # a ReplicaSet of that name with another template: bump collisionCount, retry
                st = dict(d.get("status") or {})
                st["collisionCount"] = collisions + 1
                self._write_status("apps", "deployments", d, st)
                return
            rss.append(new_rs)
            created = True
            max_rev += 1
        if new_rs is not None:
            nm = meta(new_rs)
            rev = int((nm.get("annotations") or {}).get("deployment.kubernetes.io/revision", "0") or 0)
            patch_md = {}
            if not paused and rev < max_rev:  # a rollback makes an old ReplicaSet the newest
                rev = max_rev + 1
                patch_md["deployment.kubernetes.io/revision"] = str(rev)
            if (nm.get("annotations") or {}).get("deployment.kubernetes.io/desired-replicas") != str(want):
                patch_md["deployment.kubernetes.io/desired-replicas"] = str(want)
                patch_md["deployment.kubernetes.io/max-replicas"] = str(want + max_surge)
            rs_patch = {}
            if patch_md:
                rs_patch["metadata"] = {"annotations": patch_md}
            if (new_rs.get("spec") or {}).get("replicas", 1) != want and \
                    not (recreate and old_pods_left and not paused):
                rs_patch["spec"] = {"replicas": want}
            if rs_patch:
                new_rs = self.store.patch("apps", "replicasets", ns, nm["name"], rs_patch, "merge")
            if (meta(d).get("annotations") or {}).get("deployment.kubernetes.io/revision") != str(rev):
                d = self.store.patch("apps", "deployments", ns, name, {"metadata": {"annotations": {
                    "deployment.kubernetes.io/revision": str(rev)}}}, "merge")
        new_available = (new_rs is not None and ((new_rs.get("status") or {})
                                                 .get("availableReplicas", 0) >= want))
        if not paused and new_available:
            # a rolling update in one step: the new ReplicaSet comes up at full size, and the old
            # ones go to zero once it is available (so availability never drops)
            for rs in rss:
                if rs is not new_rs and (rs.get("spec") or {}).get("replicas", 1) != 0 \
                        and not is_deleting(rs):
                    self.store.patch("apps", "replicasets", ns, meta(rs)["name"],
                                     {"spec": {"replicas": 0}}, "merge")
            self._cleanup_history(d, rss, new_rs)
        rss = [self.store.get_or_none("apps", "replicasets", ns, meta(rs)["name"]) for rs in rss]
        rss = [rs for rs in rss if rs]
        self._deployment_status(d, rss, new_rs, want, max_unavailable, paused, created, now)

    def _cleanup_history(self, d, rss, new_rs):
        limit = (d.get("spec") or {}).get("revisionHistoryLimit", 10)
        old = [rs for rs in rss if rs is not new_rs and not is_deleting(rs)
               and (rs.get("spec") or {}).get("replicas", 1) == 0
               and not (rs.get("status") or {}).get("replicas")]
        old.sort(key=lambda rs: int((meta(rs).get("annotations") or {})
                                    .get("deployment.kubernetes.io/revision", "0") or 0))
        for rs in old[:max(0, len(old) - limit)]:
            self._delete("apps", "replicasets", rs)

    def _deployment_status(self, d, rss, new_rs, want, max_unavailable, paused, created, now):
        st_of = [(rs.get("status") or {}) for rs in rss]
        new_name = meta(new_rs)["name"] if new_rs else None
        new_status = next((rs.get("status") or {} for rs in rss if meta(rs)["name"] == new_name), {})
        replicas = sum(s.get("replicas", 0) for s in st_of)
        ready = sum(s.get("readyReplicas", 0) for s in st_of)
        available = sum(s.get("availableReplicas", 0) for s in st_of)
        updated = new_status.get("replicas", 0) if new_rs else 0
        old = d.get("status") or {}
        conditions = old.get("conditions") or []
        if available >= want - max_unavailable:
            conditions = set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                                       "Deployment has minimum availability.", now, True)
        else:
            conditions = set_condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                                       "Deployment does not have minimum availability.", now, True)
        if paused:
            conditions = set_condition(conditions, "Progressing", "Unknown", "DeploymentPaused",
                                       "Deployment is paused", now, True)
        elif new_rs is not None:
            complete = (updated == want and replicas == want and available == want
                        and new_status.get("availableReplicas", 0) == want)
            if complete:
                conditions = set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                           f'ReplicaSet "{new_name}" has successfully progressed.',
                                           now, True)
            elif created:
                conditions = set_condition(conditions, "Progressing", "True", "NewReplicaSetCreated",
                                           f'Created new replica set "{new_name}"', now, True)
            else:
                conditions = self._progress(d, conditions, new_name, now, (updated, ready, available, -replicas),
                                            tuple(old.get(k, 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas"))
                                            + (-old.get("replicas", 0),))
        # deployment/sync.go: the ReplicaFailure of the ReplicaSets shows on the Deployment
        failure = next((c for rs in rss for c in (rs.get("status") or {}).get("conditions") or []
                        if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None)
        if failure:
            conditions = set_condition(conditions, "ReplicaFailure", "True", failure.get("reason", ""),
                                       failure.get("message", ""), now, True)
        else:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
        # the real controller lists Available before Progressing
        order = {"Available": 0, "Progressing": 1}
        conditions.sort(key=lambda c: order.get(c.get("type"), 2))
        status = omit_zero({"observedGeneration": meta(d).get("generation", 1),
                            "replicas": replicas, "updatedReplicas": updated,
                            "readyReplicas": ready, "availableReplicas": available,
                            "unavailableReplicas": max(0, want - available),
                            "collisionCount": old.get("collisionCount")})
        status["conditions"] = conditions
        self._write_status("apps", "deployments", d, status)

    def _progress(self, d, conditions, new_name, now, counts, old_counts):
        """A rollout that makes no progress for spec.progressDeadlineSeconds (lab clock) gets
        Progressing=False ProgressDeadlineExceeded (pkg/controller/deployment/progress.go
        syncRolloutStatus, util.DeploymentProgressing / DeploymentTimedOut): progress is more
        updated, ready or available replicas, or fewer old ones."""
        deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
        current = next((c for c in conditions if c.get("type") == "Progressing"), None)
        progressed = any(n > o for n, o in zip(counts, old_counts))
        if deadline is None or deadline >= 2 ** 31 - 1:  # math.MaxInt32: no deadline
            return set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                                 f'ReplicaSet "{new_name}" is progressing.', now, True)
        if current and current.get("reason") == "ProgressDeadlineExceeded" and not progressed:
            return conditions
        if progressed or not current or current.get("reason") != "ReplicaSetUpdated":
            # progress (or a new rollout phase) restarts the deadline: lastUpdateTime = now
            conditions = set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                                       f'ReplicaSet "{new_name}" is progressing.', now, True)
            current = next(c for c in conditions if c.get("type") == "Progressing")
            current["lastUpdateTime"] = now
        since = dt.datetime.fromisoformat((current.get("lastUpdateTime") or now).replace("Z", "+00:00")).timestamp()
        left = since + deadline - self._lab_time()
        if left > 0:
            self._enqueue_after_lab(left + 0.5, ("Deployment", meta(d)["namespace"], meta(d)["name"]))
            return conditions
        return set_condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                             f'ReplicaSet "{new_name}" has timed out progressing.', now, True)


class ReplicaSetReconciler(Reconciler):
    """Pods to the replica count, adopting orphans that match."""

    def sync(self, ns, name):
        rs = self.store.get_or_none("apps", "replicasets", ns, name)
        if not rs or is_deleting(rs):
            return
        spec = rs.get("spec") or {}
        want = spec.get("replicas", 1)
        pods = self._claim(rs, "", "pods", name_ok=lambda p: not pod_is_terminal(p))
        active = [p for p in pods if pod_is_active(p)]
        if len(active) < want:
            for _ in range(want - len(active)):
                pod = self._create_pod(rs, pod_from_template(spec.get("template"), ns, rs,
                                                             generate_name=f"{name}-"))
                if pod is None:
                    break  # slowStartBatch stops at the first error
                active.append(pod)
        elif len(active) > want:
            # delete the least useful first: unscheduled, not ready, youngest
            active.sort(key=lambda p: (bool((p.get("spec") or {}).get("nodeName")), pod_is_ready(p),
                                       [-ord(c) for c in meta(p).get("creationTimestamp", "")]))
            for p in active[:len(active) - want]:
                self._delete("", "pods", p)
            active = active[len(active) - want:]
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        ready = sum(1 for p in active if pod_is_ready(p))
        status = omit_zero({
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active if all(
                (meta(p).get("labels") or {}).get(k) == v for k, v in template_labels.items())),
            "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": meta(rs).get("generation", 1)})
        status.setdefault("replicas", 0)  # the one field the real API always writes
        # replica_set_utils.go calculateStatus: ReplicaFailure while creates are refused
        conditions = [c for c in (rs.get("status") or {}).get("conditions") or []]
        failure = self.create_error(rs) if len(active) < want else None
        if failure:
            conditions = set_condition(conditions, "ReplicaFailure", "True", "FailedCreate", failure,
                                       self.now())
        else:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
        if conditions:
            status["conditions"] = conditions
        self._write_status("apps", "replicasets", rs, status)
