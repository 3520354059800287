"""Times and durations, one definition for the whole package.

fstore keeps every instant as UTC microseconds since the Unix epoch (an int64: the
offline store's columns, the online rows, the watermarks, the wire protocol) and every
duration (ttl, freshness SLA) as whole microseconds. Naive datetimes are UTC.
"""
from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

from .errors import InvalidArgument, InvalidDefinition

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
#: the "no timestamp" marker of int64 time columns (a null created time, a missing row)
NO_TIME = -(1 << 63)
UNIT_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
           "d": 86_400_000_000, "w": 604_800_000_000}
_DURATION_RE = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>us|ms|s|m|h|d|w)?\s*$")


def now_us() -> int:
    """The wall clock, UTC microseconds."""
    return time.time_ns() // 1000


def from_us(us: int) -> dt.datetime:
    """An aware UTC datetime from microseconds."""
    return EPOCH + dt.timedelta(microseconds=us)


def timedelta_us(delta: dt.timedelta) -> int:
    """Whole microseconds of a timedelta, exactly (no float on the way)."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_us(value: Any, *, what: str = "time") -> int:
    """UTC microseconds of an ISO 8601 string, a datetime or date, 'now' or an int of microseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.strip().lower() == "now":
            return now_us()
        try:
            value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgument(f"{what} {value!r} is not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise InvalidArgument(f"{what} {value!r} is not a time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return timedelta_us(value - EPOCH)


def parse_duration(value: Any, *, obj: str, field: str) -> int | None:
    """Whole microseconds of a duration given as '7d', '1h', '30m', 90 (seconds) or a timedelta.

    None or zero means "no limit" and is returned as None; anything else that is not a
    duration raises InvalidDefinition naming ``obj`` and ``field``.
    """
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        us = timedelta_us(value)
    elif isinstance(value, bool):
        us = -1
    elif isinstance(value, (int, float)):
        us = int(round(value * 1_000_000))
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        us = int(round(float(m["n"]) * UNIT_US[m["unit"] or "s"]))
    else:
        us = -1
    if us < 0:
        raise InvalidDefinition(
            f"bad duration {value!r}; use a number of seconds or e.g. '500ms', '30s', '15m', '1h', '7d', '2w'",
            obj=obj, field=field)
    return us or None


def format_duration(us: int | None) -> str:
    """The shortest exact spelling of a duration, for people ('7d', '90m', 'none')."""
    if not us:
        return "none"
    for unit in ("d", "h", "m", "s", "ms"):
        if us % UNIT_US[unit] == 0:
            return f"{us // UNIT_US[unit]}{unit}"
    return f"{us}us"


_RELATIVE_RE = re.compile(r"^\s*now\s*(?P<sign>[-+])\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>us|ms|s|m|h|d|w)\s*$", re.I)


def to_us_relative(value: Any, *, what: str = "time") -> int:
    """As ``to_us``, also reading times relative to now: 'now-1h', 'now - 30m', 'now+1d'
    (units of ``UNIT_US``). For command-line windows (``--since now-1h``)."""
    if isinstance(value, str) and (m := _RELATIVE_RE.match(value)):
        delta = int(round(float(m["n"]) * UNIT_US[m["unit"].lower()]))
        return now_us() + (delta if m["sign"] == "+" else -delta)
    try:
        return to_us(value, what=what)
    except InvalidArgument:
        raise InvalidArgument(f"{what} {value!r} is neither an ISO 8601 time (e.g. 2026-01-31T12:00:00Z) nor "
                              "relative to now (e.g. now-1h, now-30m, now-7d)") from None
