"""Controller base class, the process-wide timer heap and helpers shared by the lab's controllers.

A controller sees the cluster the way a real one does: through Store watches (initial ADDED for
every current object, then live events). Most controllers here are level-triggered: events only
enqueue keys, and a single worker per controller reconciles each key from the Store's current
state. Reconcile functions are synchronous on purpose: Store operations run on the loop thread, so a
synchronous read-modify-write cannot interleave with any other writer (no lost updates).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging

from ..clock import TimerHeap
from ..selectors import LabelSelector

log = logging.getLogger("fleetdr_lab.controllers")

FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193
# k8s.io/apimachinery/pkg/util/rand: the alphabet used for generated names and hashes
# (no vowels, no confusable characters).
SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


_timers_by_loop: dict[int, TimerHeap] = {}


def timers() -> TimerHeap:
    """The timer heap of the running event loop (the lab process has exactly one loop), timed by the
    loop's monotonic clock: delayed transitions (a container "starting", a job pod "finishing", a
    namespace re-check) of every cluster share it."""
    loop = asyncio.get_running_loop()
    t = _timers_by_loop.get(id(loop))
    if t is None or t._loop not in (None, loop):
        t = _timers_by_loop[id(loop)] = TimerHeap()
    return t


class Controller:
    """Base controller: one Store watch per `watches` entry, events handed to `on_event`.

    Subclasses either override `on_event`, or override `keys_for(etype, obj)` (which keys an event
    makes dirty) and `reconcile(key)` (bring one key to its desired state); the base then runs a
    de-duplicating work queue with a single worker.

    The objects handed to `on_event`/`keys_for` are the Store's own (a shared watch): read them,
    never modify them or keep parts to modify later - get a copy from the Store for that.
    """

    watches: list[tuple[str | None, str | None]] = []
    name: str = ""

    def __init__(self, cluster):
        self.cluster = cluster
        self.store = cluster.store
        self._queue: asyncio.Queue | None = None
        self._pending: set = set()
        self._soon: set = set()
        self._tasks: list[asyncio.Task] = []
        if not self.name:
            self.name = type(self).__name__

    # ------------------------------------------------------------------ running
    async def run(self):
        self._queue = asyncio.Queue()
        self._pending = set()
        self._tasks = [asyncio.create_task(self._watch_loop(g, p), name=f"{self.name}:{g}/{p}")
                       for g, p in self.watches]
        self._tasks.append(asyncio.create_task(self._work_loop(), name=f"{self.name}:worker"))
        try:
            await asyncio.gather(*self._tasks)
        finally:
            for t in self._tasks:
                t.cancel()

    async def _watch_loop(self, group, plural):
        resource_version = None
        failures = 0
        while True:
            try:
                # shared: keys_for only reads the events (one deep copy per event and watch
                # was the largest single cost of the lab); reconcile reads the store afresh
                watch = self.store.watch(group, plural, resource_version=resource_version,
                                         shared=True)
            except Exception as e:  # e.g. 410 Gone for a resume point that fell out of history
                if getattr(e, "code", None) == 410:
                    resource_version = None
                    continue
                failures += 1
                log.warning("%s/%s: watch %s/%s failed: %s", self.cluster.name, self.name,
                            group, plural, e)
                await asyncio.sleep(min(5.0, 0.2 * failures))
                continue
            failures = 0
            try:
                async for event in watch:
                    etype = event.get("type")
                    obj = event.get("object") or {}
                    if etype == "BOOKMARK":
                        continue
                    if etype == "ERROR":  # dropped as a slow consumer: relist
                        resource_version = None
                        break
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion")
                    try:
                        result = self.on_event(etype, obj)
                        if inspect.isawaitable(result):
                            await result
                    except Exception:
                        log.exception("%s/%s: handling %s %s failed", self.cluster.name,
                                      self.name, etype, describe(obj))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s/%s: watch %s/%s broke", self.cluster.name, self.name,
                              group, plural)
                resource_version = None
                await asyncio.sleep(0.2)
            finally:
                watch.close()

    async def _work_loop(self):
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            try:
                result = self.reconcile(key)
                if inspect.isawaitable(result):
                    await result
            except Exception as e:
                code = getattr(e, "code", None)
                if code in (404, 409):  # raced with another writer: look again shortly
                    self.enqueue_after(0.05, key)
                elif code == 403:  # e.g. its namespace is terminating: nothing to create there
                    log.info("%s/%s: reconcile %s refused: %s", self.cluster.name, self.name,
                             key, e)
                else:
                    log.exception("%s/%s: reconcile %s failed", self.cluster.name, self.name,
                                  key)
                    self.enqueue_after(1.0, key)
            # let API requests and other controllers run between keys
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ queue
    def enqueue(self, key):
        if key is None or key in self._pending or self._queue is None:
            return
        self._pending.add(key)
        self._queue.put_nowait(key)

    def enqueue_after(self, delay: float, key):
        timers().call_later(delay, self.enqueue, key)

    def enqueue_soon(self, key, delay: float = 0.05):
        """Enqueue key once after delay, however many times this is called meanwhile: a burst of
        events (a namespace emptying, 300 pods starting) costs one reconcile, not one each."""
        if key in self._soon:
            return
        self._soon.add(key)

        def fire():
            self._soon.discard(key)
            self.enqueue(key)
        timers().call_later(delay, fire)

    def on_event(self, etype: str, obj: dict):
        for key in self.keys_for(etype, obj) or ():
            self.enqueue(key)

    def keys_for(self, etype: str, obj: dict):
        return ()

    def reconcile(self, key):
        pass

    # ------------------------------------------------------------------ helpers
    event_source = "fleetdr-lab"  # what the controller's events name as source.component

    def now(self) -> str:
        return rfc3339(self.store.clock.now())

    def event(self, obj: dict, etype: str, reason: str, message: str, source: str | None = None):
        """A core/v1 Event about obj, as client-go's recorder writes them (a repeat counts up)."""
        m = obj["metadata"]
        now = self.now()
        name = f"{m['name']}.{abs(hash((reason, message))) % 10 ** 12:x}"
        existing = self.store.get_or_none("", "events", m["namespace"], name)
        if existing:
            existing["count"] = existing.get("count", 1) + 1
            existing["lastTimestamp"] = now
            self.store.update("", "events", m["namespace"], name, existing)
            return
        self.store.create("", "events", m["namespace"], {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": m["namespace"]},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": m["name"],
                               "namespace": m["namespace"], "uid": m.get("uid")},
            "type": etype, "reason": reason, "message": message, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": {"component": source or self.event_source}})


# ---------------------------------------------------------------------- object helpers
async def supervise(ctrl, logger, what: str, delay: float = 1.0):
    """Run a controller until it returns; a crash is logged and the controller restarted after
    `delay`, like a crash-looping pod (the in-cluster software: Velero, Rook)."""
    while True:
        try:
            await ctrl.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s %s crashed; restarting", what, ctrl.name)
            await asyncio.sleep(delay)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def describe(obj: dict) -> str:
    m = meta(obj)
    ns = m.get("namespace")
    return f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{m.get('name', '?')}"


def is_deleting(obj: dict) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def controller_ref(obj: dict) -> dict | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owned_by(obj: dict, owner: dict) -> bool:
    ref = controller_ref(obj)
    return bool(ref) and ref.get("uid") == meta(owner).get("uid")


def owner_reference(owner: dict, block: bool = True) -> dict:
    m = meta(owner)
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": m["name"],
            "uid": m["uid"], "controller": True, "blockOwnerDeletion": block}


def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """A LabelSelector object (matchLabels/matchExpressions). Empty/None selects nothing here:
    workload controllers never adopt with an empty selector."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    return LabelSelector.from_dict(selector).matches(labels or {})


def fnv32a(data: bytes) -> int:
    h = FNV32_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: map each character onto the no-vowel alphabet."""
    return "".join(SAFE_ALPHANUMS[ord(c) % len(SAFE_ALPHANUMS)] for c in text)


def template_hash(template: dict, collision_count: int = 0) -> str:
    """Stable short hash of a pod template, shaped like the real pod-template-hash label."""
    import json
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def set_condition(conditions: list[dict], ctype: str, status: str, reason: str = "",
                  message: str = "", now: str = "", update_time: bool = False) -> list[dict]:
    """Set one condition, keeping lastTransitionTime when the status does not change."""
    out = [dict(c) for c in conditions or []]
    for c in out:
        if c.get("type") == ctype:
            if c.get("status") == status and (not reason or c.get("reason") == reason) and \
                    (not message or c.get("message") == message):
                return out  # unchanged: keep its times (no status churn)
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            c["status"] = status
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            if update_time:
                c["lastUpdateTime"] = now
            return out
    c = {"type": ctype, "status": status}
    if update_time:
        c["lastUpdateTime"] = now
    c["lastTransitionTime"] = now
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    out.append(c)
    return out


def pod_is_ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_is_active(pod: dict) -> bool:
    return not pod_is_terminal(pod) and not is_deleting(pod)
