"""Waiter behaviour with a fake watch source (our own seam): no real sleeping, no cluster."""
import pytest

from ansible_collections.fleetdr.kube.plugins.module_utils import retries, waiter
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import WaitTimeout


class ApiErr(Exception):
    def __init__(self, status, headers=None):
        super(ApiErr, self).__init__("HTTP %s" % status)
        self.status = status
        self.headers = headers or {}


class FakeClock(object):
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def obj(phase, rv):
    return {"metadata": {"name": "b", "resourceVersion": str(rv)}, "status": {"phase": phase}}


class ScriptedSource(object):
    """get() and stream() follow scripts; each stream item is an event, an exception, or 'end'."""

    def __init__(self, gets, streams, clock=None):
        self.gets = list(gets)
        self.streams = list(streams)
        self.stream_calls = []
        self.get_calls = 0
        self.clock = clock

    def get(self):
        self.get_calls += 1
        item = self.gets.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def stream(self, resource_version, timeout_seconds):
        self.stream_calls.append((resource_version, timeout_seconds))
        script = self.streams.pop(0) if self.streams else []
        for item in script:
            if isinstance(item, Exception):
                raise item
            if isinstance(item, (int, float)):  # time passes while the stream is idle
                self.clock.now += item
                continue
            yield item


def done(o):
    return o is not None and o["status"]["phase"] == "Completed"


def make(source, clock, timeout=60):
    return waiter.Waiter(source, done, timeout, "backup b", clock=clock.clock, sleep=clock.sleep,
                         backoff=retries.Backoff(base=0.5, cap=4, rand=lambda: 1.0))


def test_returns_at_once_when_already_done():
    clock = FakeClock()
    source = ScriptedSource([(obj("Completed", 5), "5")], [])
    assert make(source, clock).wait()["status"]["phase"] == "Completed"
    assert source.stream_calls == []


def test_follows_watch_events_until_predicate():
    clock = FakeClock()
    source = ScriptedSource([(obj("InProgress", 5), "5")],
                            [[("MODIFIED", obj("InProgress", 6)), ("MODIFIED", obj("Completed", 7))]])
    w = make(source, clock)
    assert w.wait()["metadata"]["resourceVersion"] == "7"
    assert source.stream_calls[0][0] == "5"
    assert clock.sleeps == []  # no polling


def test_dropped_stream_resumes_from_last_resource_version():
    clock = FakeClock()
    reset = ConnectionResetError("peer reset")
    source = ScriptedSource([(obj("InProgress", 5), "5")],
                            [[("MODIFIED", obj("InProgress", 8)), reset],
                             [("MODIFIED", obj("Completed", 9))]])
    w = make(source, clock)
    assert w.wait()["status"]["phase"] == "Completed"
    assert [c[0] for c in source.stream_calls] == ["5", "8"]
    assert source.get_calls == 1  # resumed, not re-read
    assert w.reconnects == 1


def test_stream_ending_normally_reconnects_from_last_version():
    clock = FakeClock()
    source = ScriptedSource([(obj("InProgress", 5), "5")],
                            [[("MODIFIED", obj("InProgress", 6))], [("BOOKMARK", {"metadata": {"resourceVersion": "10"}})],
                             [("MODIFIED", obj("Completed", 11))]])
    make(source, clock).wait()
    assert [c[0] for c in source.stream_calls] == ["5", "6", "10"]


def test_gone_re_reads_the_object():
    clock = FakeClock()
    source = ScriptedSource([(obj("InProgress", 5), "5"), (obj("InProgress", 50), "50")],
                            [[ApiErr(410)], [("MODIFIED", obj("Completed", 51))]])
    make(source, clock).wait()
    assert source.get_calls == 2
    assert [c[0] for c in source.stream_calls] == ["5", "50"]


def test_transient_errors_are_retried_with_backoff():
    clock = FakeClock()
    source = ScriptedSource([ApiErr(503), ApiErr(429, {"Retry-After": "3"}), (obj("InProgress", 5), "5")],
                            [[ApiErr(500)], [("MODIFIED", obj("Completed", 6))]])
    w = make(source, clock)
    w.wait()
    # exponential with jitter factor 1.0: 0.5, then max(1.0, Retry-After 3), then reset after success -> 0.5
    assert clock.sleeps == [0.5, 3.0, 0.5]
    assert w.retries == 3


def test_non_transient_errors_propagate():
    clock = FakeClock()
    source = ScriptedSource([ApiErr(403)], [])
    with pytest.raises(ApiErr):
        make(source, clock).wait()


def test_deadline_raises_timeout_with_last_state():
    clock = FakeClock()
    source = ScriptedSource([(obj("InProgress", 5), "5")], [[("MODIFIED", obj("InProgress", 6)), 30], [40]], clock=clock)
    with pytest.raises(WaitTimeout) as err:
        make(source, clock, timeout=60).wait()
    assert err.value.last["metadata"]["resourceVersion"] == "6"
    assert "backup b" in err.value.msg


def test_transient_errors_until_deadline_time_out():
    clock = FakeClock()
    source = ScriptedSource([(obj("InProgress", 5), "5")], [[ApiErr(502)]] * 100)
    with pytest.raises(WaitTimeout):
        make(source, clock, timeout=10).wait()
    assert clock.now <= 10.0001


def test_deleted_event_satisfies_absence_predicate():
    clock = FakeClock()
    source = ScriptedSource([(obj("Deleting", 5), "5")], [[("DELETED", obj("Deleting", 6))]])
    w = waiter.Waiter(source, lambda o: o is None, 30, clock=clock.clock, sleep=clock.sleep)
    assert w.wait() is None


def test_empty_streams_back_off_instead_of_spinning():
    clock = FakeClock()
    source = ScriptedSource([(obj("InProgress", 5), "5")], [[], [], [("MODIFIED", obj("Completed", 6))]])
    make(source, clock).wait()
    assert len(clock.sleeps) == 2


def test_stream_timeout_is_the_remaining_time():
    clock = FakeClock()
    clock.now = 100.0
    source = ScriptedSource([(obj("InProgress", 5), "5")], [[("MODIFIED", obj("Completed", 6))]])
    make(source, clock, timeout=42).wait()
    assert source.stream_calls[0][1] == 42


def test_initial_object_starts_the_watch_without_a_read():
    clock = FakeClock()
    source = ScriptedSource([], [[("MODIFIED", obj("InProgress", 6)), ("MODIFIED", obj("Completed", 7))]])
    w = waiter.Waiter(source, done, 60, "backup b", clock=clock.clock, sleep=clock.sleep, initial=obj("New", 5))
    assert w.wait()["metadata"]["resourceVersion"] == "7"
    assert source.get_calls == 0 and source.stream_calls[0][0] == "5"


def test_initial_object_already_done_returns_at_once():
    clock = FakeClock()
    source = ScriptedSource([], [])
    w = waiter.Waiter(source, done, 60, "backup b", clock=clock.clock, sleep=clock.sleep, initial=obj("Completed", 5))
    assert w.wait()["status"]["phase"] == "Completed"
    assert source.get_calls == 0 and source.stream_calls == []


def test_initial_object_then_gone_re_reads():
    clock = FakeClock()
    source = ScriptedSource([(obj("Completed", 9), "9")], [[waiter.Gone("too old")]])
    w = waiter.Waiter(source, done, 60, "backup b", clock=clock.clock, sleep=clock.sleep, initial=obj("New", 5))
    assert w.wait()["metadata"]["resourceVersion"] == "9"
    assert source.get_calls == 1
