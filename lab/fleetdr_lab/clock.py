"""The lab clock: wall time plus an offset that `fleetdr-lab clock advance` moves forward.

Everything time-driven in the lab (timestamps, TTLs, schedules) reads `Clock.now()`; waiters use
`await clock.sleep_until(t)`, which returns early when an advance moves the clock past `t`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import re
import time

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


class Clock:
    def __init__(self, offset_seconds: float = 0.0):
        self.offset_seconds = float(offset_seconds)
        self._advanced: asyncio.Event | None = None

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
        return self.now()

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
