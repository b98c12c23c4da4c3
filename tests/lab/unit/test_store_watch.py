"""Watch: initial state, resume from a resourceVersion, 410 for expired history, filtered
watches, bookmarks, slow consumers, synchronous subscribers."""
import asyncio
import copy

import pytest

from fleetdr_lab.store import ApiError
from fleetdr_lab.strategies import new_store


def make_store(**kw):
    s = new_store(**kw)
    s.create("", "namespaces", None, {"metadata": {"name": "app"}})
    s.create("", "namespaces", None, {"metadata": {"name": "other"}})
    return s


def cm(name, labels=None, ns_data="v"):
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {"k": ns_data}}


def drain(w):
    out = []
    while (ev := w.get_nowait()) is not None:
        out.append(ev)
    return out


def kinds(events):
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


def test_watch_without_rv_starts_with_added_for_current_objects():
    s = make_store()
    s.create("", "configmaps", "app", cm("a"))
    s.create("", "configmaps", "other", cm("b"))
    w = s.watch("", "configmaps", namespace="app")
    assert kinds(drain(w)) == [("ADDED", "a")]
    s.create("", "configmaps", "app", cm("c"))
    s.create("", "configmaps", "other", cm("d"))
    ev = drain(w)
    assert kinds(ev) == [("ADDED", "c")]
    assert ev[0]["object"]["kind"] == "ConfigMap" and ev[0]["object"]["apiVersion"] == "v1"


def test_watch_from_resource_version_replays_history():
    s = make_store()
    a = s.create("", "configmaps", "app", cm("a"))
    rv = a["metadata"]["resourceVersion"]
    a["data"] = {"k": "2"}
    s.update("", "configmaps", "app", "a", a)
    s.delete("", "configmaps", "app", "a")
    w = s.watch("", "configmaps", resource_version=rv)
    events = drain(w)
    assert kinds(events) == [("MODIFIED", "a"), ("DELETED", "a")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    # the DELETED event carries the deletion's own resourceVersion
    assert rvs[1] == int(s.current_resource_version())


def test_watch_from_expired_resource_version_is_410():
    s = make_store(history_size=5)
    first = s.create("", "configmaps", "app", cm("a"))
    for i in range(10):
        s.create("", "configmaps", "app", cm(f"x{i}"))
    with pytest.raises(ApiError) as ei:
        s.watch("", "configmaps", resource_version=first["metadata"]["resourceVersion"])
    assert (ei.value.code, ei.value.reason) == (410, "Expired")
    assert ei.value.message.startswith("too old resource version: ")
    # a recent RV is still fine
    recent = int(s.current_resource_version()) - 2
    assert len(drain(s.watch("", "configmaps", resource_version=str(recent)))) == 2


def test_label_filtered_watch_sees_objects_enter_and_leave():
    s = make_store()
    w = s.watch("", "configmaps", namespace="app", label_selector="team=a")
    obj = s.create("", "configmaps", "app", cm("x", {"team": "b"}))
    assert drain(w) == []
    obj["metadata"]["labels"]["team"] = "a"
    obj = s.update("", "configmaps", "app", "x", obj)
    obj["data"] = {"k": "changed"}
    obj = s.update("", "configmaps", "app", "x", obj)
    obj["metadata"]["labels"]["team"] = "c"
    obj = s.update("", "configmaps", "app", "x", obj)
    events = drain(w)
    assert kinds(events) == [("ADDED", "x"), ("MODIFIED", "x"), ("DELETED", "x")]
    assert events[-1]["object"]["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_field_filtered_watch():
    s = make_store()
    w = s.watch("", "configmaps", field_selector="metadata.name=b")
    s.create("", "configmaps", "app", cm("a"))
    s.create("", "configmaps", "app", cm("b"))
    assert kinds(drain(w)) == [("ADDED", "b")]


def test_watch_all_resources_and_versions():
    s = make_store()
    w = s.watch(resource_version=s.current_resource_version())
    s.create("", "configmaps", "app", cm("a"))
    s.create("", "secrets", "app", {"metadata": {"name": "s"}})
    assert [(e["object"]["kind"], e["type"]) for e in drain(w)] == [
        ("ConfigMap", "ADDED"), ("Secret", "ADDED")]


def test_bookmark_carries_current_resource_version():
    s = make_store()
    w = s.watch("", "configmaps", resource_version=s.current_resource_version())
    s.create("", "configmaps", "app", cm("a"))
    w.bookmark()
    events = drain(w)
    assert events[-1]["type"] == "BOOKMARK"
    assert events[-1]["object"]["metadata"]["resourceVersion"] == s.current_resource_version()
    assert events[-1]["object"]["kind"] == "ConfigMap"


def test_slow_watcher_is_closed_with_410_error():
    s = make_store(watch_max_pending=3)
    w = s.watch("", "configmaps", resource_version=s.current_resource_version())
    for i in range(5):
        s.create("", "configmaps", "app", cm(f"c{i}"))
    events = drain(w)
    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["code"] == 410
    assert w.closed


def test_async_iteration_and_close():
    async def main():
        s = make_store()
        w = s.watch("", "configmaps", resource_version=s.current_resource_version())

        async def writer():
            await asyncio.sleep(0)
            s.create("", "configmaps", "app", cm("a"))
            s.create("", "configmaps", "app", cm("b"))
        task = asyncio.create_task(writer())
        got = []
        async for ev in w:
            got.append(ev["object"]["metadata"]["name"])
            if len(got) == 2:
                w.close()
        await task
        return got
    assert asyncio.run(main()) == ["a", "b"]


def test_closed_watch_gets_no_more_events():
    s = make_store()
    w = s.watch("", "configmaps")
    w.close()
    s.create("", "configmaps", "app", cm("a"))
    assert drain(w) == [] and w not in s._watchers


def test_subscribe_is_called_synchronously_and_survives_errors():
    s = make_store()
    seen = []

    def bad(etype, obj):
        raise RuntimeError("boom")
    s.subscribe(bad)
    unsub = s.subscribe(lambda t, o: seen.append((t, o["kind"], o["metadata"]["name"])),
                        "", "configmaps")
    s.create("", "configmaps", "app", cm("a"))
    s.create("", "secrets", "app", {"metadata": {"name": "s"}})
    s.delete("", "configmaps", "app", "a")
    assert seen == [("ADDED", "ConfigMap", "a"), ("DELETED", "ConfigMap", "a")]
    unsub()
    s.create("", "configmaps", "app", cm("b"))
    assert len(seen) == 2


def test_finalizer_removal_emits_modified_then_deleted():
    s = make_store()
    body = cm("a")
    body["metadata"]["finalizers"] = ["example.com/f"]
    s.create("", "configmaps", "app", body)
    w = s.watch("", "configmaps", resource_version=s.current_resource_version())
    s.delete("", "configmaps", "app", "a")
    obj = s.get("", "configmaps", "app", "a")
    obj["metadata"]["finalizers"] = []
    s.update("", "configmaps", "app", "a", obj)
    assert kinds(drain(w)) == [("MODIFIED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_dry_run_and_noop_emit_nothing():
    s = make_store()
    a = s.create("", "configmaps", "app", cm("a"))
    w = s.watch("", "configmaps", resource_version=s.current_resource_version())
    s.create("", "configmaps", "app", cm("b"), dry_run=True)
    s.update("", "configmaps", "app", "a", a)
    s.delete("", "configmaps", "app", "a", dry_run=True)
    assert drain(w) == []


def test_event_stream_replays_to_the_listed_state():
    """Applying every event of a watch to an empty map gives exactly what list returns, and
    resourceVersions in the stream only increase."""
    import random
    rnd = random.Random(7)
    s = make_store()
    w = s.watch("", "configmaps", resource_version=s.current_resource_version())
    filtered = s.watch("", "configmaps", resource_version=s.current_resource_version(),
                       label_selector="team=a")
    for step in range(400):
        name = f"c{rnd.randrange(12)}"
        ns = rnd.choice(["app", "other"])
        live = s.get_or_none("", "configmaps", ns, name)
        op = rnd.random()
        try:
            if live is None:
                body = cm(name, {"team": rnd.choice("ab")})
                if rnd.random() < 0.3:
                    body["metadata"]["finalizers"] = ["example.com/f"]
                s.create("", "configmaps", ns, body)
            elif op < 0.4:
                s.patch("", "configmaps", ns, name,
                        {"metadata": {"labels": {"team": rnd.choice("ab")}},
                         "data": {"k": str(step)}}, "merge")
            elif op < 0.7:
                s.delete("", "configmaps", ns, name)
            else:
                s.patch("", "configmaps", ns, name, {"metadata": {"finalizers": None}}, "merge")
        except ApiError as e:
            assert e.code in (409, 422)
    state, last_rv = {}, 0
    for ev in drain(w):
        m = ev["object"]["metadata"]
        rv = int(m["resourceVersion"])
        assert rv > last_rv
        last_rv = rv
        key = (m["namespace"], m["name"])
        if ev["type"] == "DELETED":
            del state[key]
        else:
            assert (ev["type"] == "ADDED") == (key not in state)
            state[key] = ev["object"]
    listed = {(i["metadata"]["namespace"], i["metadata"]["name"]): i
              for i in s.list("", "configmaps")["items"]}
    assert {k: v["metadata"]["resourceVersion"] for k, v in state.items()} == \
        {k: v["metadata"]["resourceVersion"] for k, v in listed.items()}
    team_a = {}
    for ev in drain(filtered):
        key = (ev["object"]["metadata"]["namespace"], ev["object"]["metadata"]["name"])
        if ev["type"] == "DELETED":
            del team_a[key]
        else:
            team_a[key] = ev["object"]
    assert set(team_a) == {k for k, v in listed.items() if v["metadata"]["labels"]["team"] == "a"}


def _history(s):
    """Writes that exercise every event path a watch renders: create, update, a label-filtered
    view entering and leaving, a status write, delete."""
    a = s.create("", "configmaps", "app", cm("a", {"team": "x"}))
    a["data"] = {"k": "2"}
    a = s.update("", "configmaps", "app", "a", a)
    a["metadata"]["labels"] = {"team": "y"}
    s.update("", "configmaps", "app", "a", a)
    s.create("", "configmaps", "other", cm("b", {"team": "x"}))
    s.patch("", "configmaps", "other", "b", {"metadata": {"labels": {"more": "1"}}}, "merge",
            field_manager="tester")
    s.create("autoscaling", "horizontalpodautoscalers", "app", {
        "metadata": {"name": "h"}, "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}})
    s.patch("autoscaling", "horizontalpodautoscalers", "app", "h", {"spec": {"maxReplicas": 4}},
            "merge")
    s.delete("", "configmaps", "app", "a")


@pytest.mark.parametrize("scope", [
    dict(group="", plural="configmaps"),
    dict(group="", plural="configmaps", label_selector="team=x"),
    dict(group="", plural="configmaps", namespace="other"),
    dict(group="autoscaling", plural="horizontalpodautoscalers", version="v1"),   # converted
    dict(),                                                                       # everything
])
def test_shared_watch_events_equal_copied_ones(scope):
    """A shared watch (the controllers') hands out the stored objects, not copies: its events
    must be exactly what a copying watch renders, initial state and live, and stay so after
    later writes (the store never edits a stored object in place)."""
    s = make_store()
    s.create("", "configmaps", "app", cm("before", {"team": "x"}))
    copied = s.watch(**scope)
    shared = s.watch(**scope, shared=True)
    _history(s)
    events = drain(shared)
    expected = drain(copied)
    assert len(events) > 1 and events == expected
    snapshot = copy.deepcopy(events)
    for name in ("before", "later"):
        s.patch("", "configmaps", "app", name, {"data": {"k": "changed"}}, "merge") \
            if name == "before" else s.create("", "configmaps", "app", cm(name))
    s.delete("", "configmaps", "app", "before")
    assert events == snapshot
    assert drain(shared) == drain(copied)
    # a watch resumed from history renders the same either way too
    rv = str(int(s.current_resource_version()) - 6)
    assert drain(s.watch(**scope, resource_version=rv, shared=True)) == \
        drain(s.watch(**scope, resource_version=rv))
