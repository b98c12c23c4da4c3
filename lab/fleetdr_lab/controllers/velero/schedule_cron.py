"""Cron expressions as robfig/cron/v3 `ParseStandard` reads them: 5 fields,
`@yearly`-style descriptors, `@every <go-duration>`, optional `CRON_TZ=`/`TZ=` prefix.
Validation reproduces robfig's error texts (Velero puts them in `invalid schedule: <err>`);
the next-tick arithmetic of field expressions is croniter's.

Upstream source: Velero pkg/controller/schedule_controller.go,
pkg/apis/velero/v1/schedule_types.go.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (min, max, names) per field, robfig bounds
FIELDS = [
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}),
    (0, 6, {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
]
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class CronError(ValueError):
    pass


def parse_go_duration(text: str) -> timedelta:
    """time.ParseDuration: e.g. `1h30m`, `90s`, `1.5h`; raises CronError with Go's message."""
    s = text.strip()
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return timedelta(0)
    if not s:
        raise CronError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _GO_DURATION_PART.match(s, pos)
        if not m:
            if re.match(r"(\d+(?:\.\d*)?|\.\d+)", s[pos:]):
                unit = re.sub(r"^(\d+(?:\.\d*)?|\.\d+)", "", s[pos:])
                if not unit:
                    raise CronError(f'time: missing unit in duration "{text}"')
                raise CronError(f'time: unknown unit "{re.match(r"[^0-9.]+", unit).group(0)}" in duration "{text}"')
            raise CronError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return timedelta(seconds=sign * total)


def _parse_int(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", text):
        raise CronError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _value(text: str, names: dict) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    return _parse_int(text)


def _check_range(expr: str, lo: int, hi: int, names: dict) -> None:
    """robfig getRange checks, one comma-separated part."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    if low_and_high[0] in ("*", "?"):
        start, end = lo, hi
    else:
        start = _value(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _value(low_and_high[1], names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 2:
        step = _parse_int(range_and_step[1])
        if single and low_and_high[0] not in ("*", "?"):
            end = hi  # "N/step" means N-max/step
        if step <= 0:
            raise CronError(f"step of range should be a positive number: {expr}")
    elif len(range_and_step) > 2:
        raise CronError(f"too many slashes: {expr}")
    if start < lo:
        raise CronError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
    if end > hi:
        raise CronError(f"end of range ({end}) above maximum ({hi}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")


class CronSchedule:
    """`next(after)` = the first activation strictly after `after` (aware datetimes)."""

    def __init__(self, expression: str):
        spec = expression
        self.zone = None
        if spec.startswith(("TZ=", "CRON_TZ=")):
            head, _, spec = spec.partition(" ")
            zone_name = head.split("=", 1)[1]
            try:
                self.zone = ZoneInfo(zone_name)
            except (ZoneInfoNotFoundError, ValueError):
                raise CronError(f"provided bad location {zone_name}: unknown time zone {zone_name}") from None
        spec = spec.strip()
        self.every = None
        if spec.startswith("@"):
            if spec.startswith("@every "):
                duration = parse_go_duration(spec[len("@every "):])
                # robfig: truncated to whole seconds, minimum one second
                self.every = max(timedelta(seconds=int(duration.total_seconds())), timedelta(seconds=1))
                return
            if spec not in DESCRIPTORS:
                raise CronError(f"unrecognized descriptor: {spec}")
            spec = DESCRIPTORS[spec]
        fields = spec.split()
        if len(fields) != 5:
            raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
        for text, (lo, hi, names) in zip(fields, FIELDS):
            for part in text.split(","):
                _check_range(part, lo, hi, names)
        # croniter wants `*` for robfig's `?`
        self.fields = " ".join(f.replace("?", "*") for f in fields)

    def next(self, after: datetime) -> datetime:
        if self.every is not None:
            # ConstantDelaySchedule: after + delay - sub-second part of after
            return after.replace(microsecond=0) + self.every
        zone = self.zone or timezone.utc  # the stock Velero image runs in UTC
        local = after.astimezone(zone)
        return croniter(self.fields, local).get_next(datetime).astimezone(timezone.utc)


def validate_schedule(expression: str | None) -> tuple[CronSchedule | None, list[str]]:
    """Velero's parseCronSchedule: (schedule, validationErrors)."""
    if not expression:
        return None, ["Schedule must be a non-empty valid Cron expression"]
    try:
        return CronSchedule(expression), []
    except CronError as exc:
        return None, [f"invalid schedule: {exc}"]
