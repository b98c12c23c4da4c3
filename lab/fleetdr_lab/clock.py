"""The lab clock: wall time plus an offset that `fleetdr-lab clock advance` moves forward.

Everything time-driven in the lab (timestamps, TTLs, schedules) reads `Clock.now()`; waiters use
`await clock.sleep_until(t)`, which returns early when an advance moves the clock past `t`.
Callbacks that must run at a lab time (a container's `sleep 600` ending, a CrashLoopBackOff wait)
use `clock.call_at(t, fn, *args)`: one heap of lab-time deadlines for the whole lab with a single
loop timer armed for the earliest, re-armed by each advance (no task or sleeper per waiter).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import inspect
import itertools
import logging
import re
import time

log = logging.getLogger("fleetdr_lab.clock")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Parse a Go-style duration ("90s", "15m", "1h30m", "2h", plus "1d") into seconds."""
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    if text == "0":
        return 0.0
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. 90s, 15m, 1h30m, 2h, 1d)")
    return total


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return "".join(parts)


def _to_epoch(t: float | dt.datetime) -> float:
    if isinstance(t, dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        return t.timestamp()
    return float(t)


class TimerEntry:
    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when, fn, args):
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False

    def cancel(self):
        self.cancelled = True


class TimerHeap:
    """Delayed callbacks on one heap, with a single loop timer armed for the earliest deadline:
    idle clusters cost nothing and 1,000 waiters are not 1,000 sleeping tasks. `now` is the time
    the deadlines are in (the running loop's monotonic time when None, else e.g. the lab clock)."""

    def __init__(self, now=None):
        self._now = now
        self._heap: list = []              # (when, seq, TimerEntry)
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def time(self) -> float:
        return self._now() if self._now is not None else self._loop.time()

    def call_at(self, when: float, fn, *args) -> TimerEntry:
        self._loop = asyncio.get_running_loop()
        entry = TimerEntry(when, fn, args)
        heapq.heappush(self._heap, (when, next(self._seq), entry))
        self.rearm()
        return entry

    def call_later(self, delay: float, fn, *args) -> TimerEntry:
        self._loop = asyncio.get_running_loop()
        return self.call_at(self.time() + max(0.0, delay), fn, *args)

    def pending(self) -> int:
        return sum(1 for _, _, e in self._heap if not e.cancelled)

    def rearm(self, force: bool = False):
        """Arm the loop timer for the earliest deadline; `force` after the time jumped ahead."""
        if self._loop is None:
            return
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if not self._heap:
            return
        when = self._heap[0][0]
        if not force and self._armed_for is not None and self._armed_for <= when:
            return
        if self._handle:
            self._handle.cancel()
        self._armed_for = when
        self._handle = self._loop.call_later(max(0.0, when - self.time()), self._fire)

    def _fire(self):
        self._handle = None
        self._armed_for = None
        now = self.time()
        while self._heap and self._heap[0][0] <= now:
            _, _, entry = heapq.heappop(self._heap)
            if entry.cancelled:
                continue
            try:
                result = entry.fn(*entry.args)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:  # a broken callback must not stop the others
                log.exception("timer callback %r failed", entry.fn)
        self.rearm()


class Clock:
    def __init__(self, offset_seconds: float = 0.0):
        self.offset_seconds = float(offset_seconds)
        self._advanced: asyncio.Event | None = None
        self._timers = TimerHeap(self.time)  # callbacks at lab times

    def time(self) -> float:
        """Lab time as a POSIX timestamp."""
        return time.time() + self.offset_seconds

    def now(self) -> dt.datetime:
        """Lab time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time(), dt.timezone.utc)

    def advance(self, seconds: float) -> dt.datetime:
        if seconds < 0:
            raise ValueError("the lab clock only moves forward")
        self.offset_seconds += seconds
        # Wake every sleeper so each re-checks its deadline against the new time.
        if self._advanced is not None:
            self._advanced.set()
            self._advanced = None
        self._timers.rearm(force=True)  # deadlines the advance passed fire now
        return self.now()

    # -- callbacks at a lab time ---------------------------------------------------------------
    def call_at(self, t: float | dt.datetime, fn, *args) -> TimerEntry:
        """Run fn(*args) on the loop once the lab clock reaches `t` (at once if it has); an
        advance past `t` runs it right away. Returns a handle with .cancel()."""
        return self._timers.call_at(_to_epoch(t), fn, *args)

    def call_later(self, seconds: float, fn, *args) -> TimerEntry:
        """fn(*args) after `seconds` of lab time."""
        return self._timers.call_later(seconds, fn, *args)

    def timers_pending(self) -> int:
        return self._timers.pending()

    def _event(self) -> asyncio.Event:
        if self._advanced is None:
            self._advanced = asyncio.Event()
        return self._advanced

    async def sleep_until(self, t: float | dt.datetime) -> None:
        """Sleep until lab time `t` (datetime or POSIX timestamp); advances wake it early."""
        deadline = _to_epoch(t)
        while True:
            remaining = deadline - self.time()
            if remaining <= 0:
                return
            event = self._event()
            try:
                await asyncio.wait_for(event.wait(), timeout=remaining)
            except asyncio.TimeoutError:
                pass

    async def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of lab time (shortened by advances)."""
        await self.sleep_until(self.time() + seconds)
