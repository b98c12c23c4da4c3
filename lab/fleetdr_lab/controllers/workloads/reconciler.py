"""The part every owner reconciler shares: adopting and listing owned objects, status writes,
guarded deletes. One reconciler per kind; all run on the WorkloadController's one queue."""
from __future__ import annotations

import copy

from ...selectors import selector_string
from ...store import ApiError
from ..base import controller_ref, is_deleting, meta, owned_by, owner_reference, selector_matches, timers


class Reconciler:
    """Reconciles one kind for the WorkloadController that owns the queue, the store and the clock."""

    def __init__(self, controller):
        self.controller = controller
        self.store = controller.store

    def now(self):
        return self.controller.now()

    def _lab_time(self) -> float:
        clock = self.store.clock
        return clock.time() if hasattr(clock, "time") else clock.now().timestamp()

    def _enqueue_after_lab(self, seconds: float, key):
        """Reconcile key again after `seconds` of lab clock (one pending wake-up per key)."""
        pending = self.__dict__.setdefault("_lab_wakeups", {})
        when = self._lab_time() + seconds
        if key in pending and pending[key][0] <= when and not pending[key][1].cancelled:
            return
        if key in pending:
            pending[key][1].cancel()

        def wake():
            pending.pop(key, None)
            self.controller.enqueue(key)
        clock = self.store.clock
        timer = clock.call_at(when, wake) if hasattr(clock, "call_at") else timers().call_later(seconds, wake)
        pending[key] = (when, timer)

    # what records this kind's events (source.component), as the real controllers name themselves
    EVENT_SOURCES = {"ReplicaSet": "replicaset-controller", "StatefulSet": "statefulset-controller",
                     "DaemonSet": "daemonset-controller", "Job": "job-controller"}

    def _create_pod(self, owner: dict, body: dict, message=None) -> dict | None:
        """Create one of owner's pods; a refused create (admission, quota, validation) is what the
        real controllers make of it (pkg/controller/controller_utils.go createPods): a Warning
        FailedCreate event on the owner, the error kept for the owner's status, and a retry with
        exponential back-off. Returns None when refused."""
        m = meta(owner)
        key = (owner.get("kind"), m["namespace"], m["name"])
        failures = self.controller.__dict__.setdefault("create_failures", {})
        try:
            pod = self.store.create("", "pods", m["namespace"], body)
        except ApiError as e:
            if e.code >= 500 or e.code == 409:
                raise
            text = message(e) if message else f"Error creating: {e.message}"
            self.controller.event(owner, "Warning", "FailedCreate", text,
                                  source=self.EVENT_SOURCES.get(owner.get("kind")))
            count, _ = failures.get(key, (0, ""))
            failures[key] = (count + 1, e.message)
            self.controller.enqueue_after(min(2.0 ** count, 60.0), key)
            return None
        failures.pop(key, None)
        return pod

    def create_error(self, owner: dict) -> str | None:
        """The message of owner's last refused pod create, while it has not created one since."""
        m = meta(owner)
        entry = self.controller.__dict__.get("create_failures", {}).get((owner.get("kind"), m["namespace"], m["name"]))
        return entry[1] if entry else None

    def _claim(self, owner: dict, group: str, plural: str, name_ok=None) -> list[dict]:
        """Objects of group/plural controlled by owner, adopting matching orphans (as real)."""
        ns = meta(owner)["namespace"]
        selector = (owner.get("spec") or {}).get("selector")
        # only what the selector selects: copies stay proportional to the owner's own objects
        label_selector = selector_string(selector) if selector and (
            selector.get("matchLabels") or selector.get("matchExpressions")) else None
        out = []
        for obj in self.store.list(group, plural, namespace=ns,
                                   label_selector=label_selector)["items"]:
            if owned_by(obj, owner):
                out.append(obj)
            elif (controller_ref(obj) is None and not is_deleting(obj)
                  and selector_matches(selector, meta(obj).get("labels"))
                  and (name_ok is None or name_ok(obj))):
                refs = list(meta(obj).get("ownerReferences") or []) + [owner_reference(owner)]
                out.append(self.store.patch(group, plural, ns, meta(obj)["name"],
                                            {"metadata": {"ownerReferences": refs}}, "merge"))
        return out

    def _write_status(self, group, plural, obj, status: dict):
        if (obj.get("status") or {}) == status:
            return obj
        body = copy.deepcopy(obj)
        body["status"] = status
        m = meta(obj)
        return self.store.update(group, plural, m.get("namespace"), m["name"], body,
                                 subresource="status")

    def _delete(self, group, plural, obj, **kw):
        m = meta(obj)
        try:
            self.store.delete(group, plural, m.get("namespace"), m["name"],
                              preconditions={"uid": m.get("uid")}, **kw)
        except Exception as e:
            if getattr(e, "code", None) not in (404, 409):
                raise

    def _history(self, owner: dict, hash_: str, pod_label_values: set) -> dict:
        """The owner's ControllerRevisions (Kubernetes pkg/controller/history, used by the DaemonSet and
        StatefulSet controllers): `<owner>-<hash>` holds the pod template as the patch that restores it,
        numbered after the newest; an owner going back to an older template renumbers that revision;
        beyond spec.revisionHistoryLimit (10) the oldest revisions no live pod uses are deleted.
        ``pod_label_values``: the controller-revision-hash labels of the owner's live pods."""
        ns, owner_name = meta(owner)["namespace"], meta(owner)["name"]
        spec = owner.get("spec") or {}
        name = f"{owner_name}-{hash_}"
        revisions = sorted(self._claim(owner, "apps", "controllerrevisions"), key=lambda r: r.get("revision", 0))
        newest = revisions[-1].get("revision", 0) if revisions else 0
        current = next((r for r in revisions if meta(r)["name"] == name), None)
        if current is None:
            template = copy.deepcopy(spec.get("template") or {})
            template["$patch"] = "replace"
            labels = dict(((spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
            labels["controller-revision-hash"] = hash_
            current = self.store.create("apps", "controllerrevisions", ns, {
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(owner)]},
                "data": {"spec": {"template": template}}, "revision": newest + 1})
            revisions.append(current)
        elif current.get("revision", 0) != newest:
            current = self.store.patch("apps", "controllerrevisions", ns, name, {"revision": newest + 1}, "merge")
        limit = spec.get("revisionHistoryLimit", 10)
        old = [r for r in revisions if meta(r)["name"] != name and meta(r)["name"] not in pod_label_values
               and (meta(r).get("labels") or {}).get("controller-revision-hash") not in pod_label_values]
        for stale in old[:max(0, len(old) - limit)]:
            self._delete("apps", "controllerrevisions", stale)
        return current
