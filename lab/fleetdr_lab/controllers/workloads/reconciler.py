"""The part every owner reconciler shares: adopting and listing owned objects, status writes,
guarded deletes. One reconciler per kind; all run on the WorkloadController's one queue."""
from __future__ import annotations

import copy

from ...selectors import selector_string
from ..base import controller_ref, is_deleting, meta, owned_by, owner_reference, selector_matches


class Reconciler:
    """Reconciles one kind for the WorkloadController that owns the queue, the store and the clock."""

    def __init__(self, controller):
        self.controller = controller
        self.store = controller.store

    def now(self):
        return self.controller.now()

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
