"""Column-at-a-time comparison of served values with what they should have been.

Everything here works on whole columns (NumPy and Arrow kernels), never row by row,
so a check of a million logged rows costs a few array passes per feature. Python
objects are made only for the few mismatches shown as examples.

Equality is exact: a value is copied from the offline store to the online store and
onto the wire, never computed, so floats must match bit for bit in meaning (0.0 and
-0.0 differ; NaN equals NaN); a null equals only a null.
"""
from __future__ import annotations

import base64
import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._ext._constants import Status
from ..times import NO_TIME, from_us

STALE_ONLINE = "stale_online"
MISSING_ONLINE = "missing_online"
NOT_IN_OFFLINE = "not_in_offline"
DEFAULT_DIFFERS = "default_differs"
VALUE_DIFFERS = "value_differs"
COMPUTED_DIFFERS = "computed_differs"
#: the reasons, by the code ``reasons`` returns (0: no mismatch)
REASONS = (None, STALE_ONLINE, MISSING_ONLINE, NOT_IN_OFFLINE, DEFAULT_DIFFERS, VALUE_DIFFERS, COMPUTED_DIFFERS)
_CODE = {name: i for i, name in enumerate(REASONS) if name}
_NUMERIC = ("int32", "int64", "float32", "float64")
_FLOATS = ("float32", "float64")


def equal_mask(served: pa.ChunkedArray | pa.Array, expected: pa.ChunkedArray | pa.Array, dtype: str) -> np.ndarray:
    """True where the two columns hold the same value exactly (null == null; NaN == NaN;
    0.0 != -0.0). ``served`` is cast to ``expected``'s type first (the declared dtype)."""
    if served.type != expected.type:
        served = served.cast(expected.type)
    s_null = _isnull(served)
    e_null = _isnull(expected)
    if dtype in _FLOATS:
        a, b = _floats(served), _floats(expected)
        with np.errstate(invalid="ignore"):
            same = ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))
    else:
        same = pc.fill_null(pc.equal(served, expected), False).to_numpy(zero_copy_only=False)
    return (s_null & e_null) | (~s_null & ~e_null & same)


def abs_diffs(served: pa.ChunkedArray | pa.Array, expected: pa.ChunkedArray | pa.Array, dtype: str,
              equal: np.ndarray) -> np.ndarray | None:
    """|served - expected| where both are non-null numbers and the difference is finite
    (0 where they are equal); None for a dtype that is not a number."""
    if dtype not in _NUMERIC:
        return None
    if served.type != expected.type:
        served = served.cast(expected.type)
    a, b = _floats(served), _floats(expected)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(a - b)
    d[equal] = 0.0
    ok = ~_isnull(served) & ~_isnull(expected) & np.isfinite(d)
    return d[ok]


def reasons(mismatch: np.ndarray, status: np.ndarray, served_ts: np.ndarray, offline_ts: np.ndarray) -> np.ndarray:
    """A reason code (REASONS) per row, 0 where the row matched. ``served_ts`` and
    ``offline_ts`` are int64 microseconds with NO_TIME for "no row" (see docs/monitoring.md)."""
    out = np.zeros(len(mismatch), dtype=np.int8)
    present = status == int(Status.PRESENT)
    off = offline_ts != NO_TIME
    srv = served_ts != NO_TIME
    newer_offline = off & srv & (offline_ts > served_ts)
    rules = [  # first match wins
        (present & ~off, NOT_IN_OFFLINE),
        (present & newer_offline, STALE_ONLINE),
        (present & (offline_ts == served_ts), VALUE_DIFFERS),
        (present, NOT_IN_OFFLINE),                    # the served row is newer than any offline row
        (newer_offline, STALE_ONLINE),                # served an expired (older) row: offline has a newer one
        (off, MISSING_ONLINE),
        (np.ones(len(out), dtype=bool), DEFAULT_DIFFERS),
    ]
    left = mismatch.copy()
    for cond, name in rules:
        hit = left & cond
        out[hit] = _CODE[name]
        left &= ~hit
    return out


def computed_reasons(mismatch: np.ndarray, status: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``codes`` with ``computed_differs`` where a mismatching value was computed at read time:
    a request view's output (the column is all computed: pass zeros) or an on_miss fill's
    COMPUTED value. Training's recomputation from the logged request differs from it."""
    out = codes.copy()
    computed = status == int(Status.COMPUTED)
    out[mismatch & (computed | (codes == 0))] = _CODE[COMPUTED_DIFFERS]
    return out


def logged_reasons(mismatch: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Served vs what the model logged: ``default_differs`` where fstore served no row (the
    model filled in its own value), else ``value_differs``."""
    out = np.zeros(len(mismatch), dtype=np.int8)
    present = status == int(Status.PRESENT)
    out[mismatch & present] = _CODE[VALUE_DIFFERS]
    out[mismatch & ~present] = _CODE[DEFAULT_DIFFERS]
    return out


def times_us(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """int64 microseconds of a timestamp column, NO_TIME for null."""
    arr = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(pc.fill_null(arr, NO_TIME).to_numpy(zero_copy_only=False), dtype=np.int64)


@dataclass
class FeatureTally:
    """One feature's counts over every group of one comparison."""

    feature: str
    rows: int = 0
    mismatches: int = 0
    diff_sum: float = 0.0
    diff_n: int = 0
    diff_max: float | None = None
    numeric: bool = False
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, mismatch: np.ndarray, diffs: np.ndarray | None, codes: np.ndarray) -> None:
        self.rows += len(mismatch)
        self.mismatches += int(mismatch.sum())
        if diffs is not None:
            self.numeric = True
            if len(diffs):
                self.diff_sum += float(diffs.sum())
                self.diff_n += len(diffs)
                top = float(diffs.max())
                self.diff_max = top if self.diff_max is None else max(self.diff_max, top)
        counts = np.bincount(codes, minlength=len(REASONS))
        for i, n in enumerate(counts[1:], start=1):
            if n:
                self.reasons[REASONS[i]] = self.reasons.get(REASONS[i], 0) + int(n)  # type: ignore[index]

    def as_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "rows": self.rows, "mismatches": self.mismatches,
                "mismatch_rate": self.mismatches / self.rows if self.rows else 0.0,
                "mean_abs_diff": self.diff_sum / self.diff_n if self.diff_n else None,
                "max_abs_diff": self.diff_max, "reasons": dict(sorted(self.reasons.items()))}


def json_value(v: Any) -> Any:
    """A value as JSON can hold it: times as ISO 8601 UTC, bytes as base64, non-finite
    floats as the strings 'NaN', 'Infinity', '-Infinity'."""
    if isinstance(v, dt.datetime):
        return iso(v)
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def iso(v: dt.datetime | int | None) -> str | None:
    """ISO 8601 UTC with a 'Z' (microseconds when there are any); None stays None."""
    if v is None or (isinstance(v, int) and v == NO_TIME):
        return None
    if isinstance(v, int):
        v = from_us(v)
    if v.tzinfo is None:
        v = v.replace(tzinfo=dt.timezone.utc)
    return v.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _isnull(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.is_null(col).to_numpy(zero_copy_only=False), dtype=bool)


def _floats(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """float64 NumPy copy (exact for float32 and for int64 up to 2**53), nulls as NaN."""
    return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
