"""Turning source columns into the declared types, and saying exactly where that fails.

Arrow's casts say *that* a value does not fit but not *which*; a feature store
must name the row, so a failed cast is bisected down to the first bad value.
Timestamps always come out as UTC microseconds; a naive timestamp is read as UTC.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..repo.definitions import DTYPES

TS_TYPE = pa.timestamp("us", tz="UTC")
# a zone offset ends the *time* part: the "-01" of a bare date "2024-01-01" is no offset
_OFFSET_RE = r"[Tt ][0-9:.,]*[0-9]\s*(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$"


#: the errors Arrow raises for a value or type that does not cast
ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


class CastFailure(Exception):
    """Internal: a cast failed at ``index`` (0-based) for ``value``."""

    def __init__(self, index: int, value: object, reason: str) -> None:
        self.index, self.value, self.reason = index, value, reason
        super().__init__(reason)


def to_timestamp(arr: pa.Array) -> pa.Array:
    """UTC microsecond timestamps from timestamps of any unit/zone, dates or ISO 8601 strings."""
    return _cast_checked(arr, _to_timestamp_unchecked)


def to_dtype(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """``arr`` cast to a declared feature/key type, refusing lossy casts (overflow, fractions)."""
    if pa.types.is_timestamp(target):
        return to_timestamp(arr)
    return _cast_checked(arr, lambda a: _cast_one(a, target))


def _undictionary(arr: pa.Array) -> pa.Array:
    """A dictionary-encoded array as plain values (casts and checks see the value type)."""
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _cast_one(arr: pa.Array, target: pa.DataType) -> pa.Array:
    if arr.type == target:
        return arr
    arr = _undictionary(arr)
    src = arr.type
    if pa.types.is_null(src):
        return pa.nulls(len(arr), target)
    numeric = pa.types.is_integer(target) or pa.types.is_floating(target)
    if numeric and pa.types.is_boolean(src):
        raise pa.ArrowInvalid(f"a bool column cannot hold {target}")
    if (pa.types.is_string(target) or pa.types.is_large_string(target)) and not (
            pa.types.is_string(src) or pa.types.is_large_string(src)):
        raise pa.ArrowInvalid(f"a {src} column is not text")
    if pa.types.is_boolean(target) and (pa.types.is_string(src) or pa.types.is_large_string(src)):
        arr = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
    return arr.cast(target, safe=True)


def _to_timestamp_unchecked(arr: pa.Array) -> pa.Array:
    arr = _undictionary(arr)
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), TS_TYPE)
    if pa.types.is_timestamp(t):
        if t.tz is None:  # naive: the wall clock is UTC
            arr = arr.cast(pa.timestamp(t.unit, tz="UTC"))
        return arr.cast(TS_TYPE, safe=False) if t.unit == "ns" else arr.cast(TS_TYPE)
    if pa.types.is_date(t):
        return arr.cast(pa.timestamp("s")).cast(pa.timestamp("s", tz="UTC")).cast(TS_TYPE)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        arr = pc.utf8_trim_whitespace(arr)
        has_offset = pc.fill_null(pc.match_substring_regex(arr, _OFFSET_RE), False)
        aware_n = pc.sum(has_offset).as_py() or 0
        if aware_n == 0:
            return arr.cast(pa.timestamp("us")).cast(TS_TYPE)
        if aware_n == len(arr) - arr.null_count:
            return arr.cast(TS_TYPE)
        naive = pc.if_else(has_offset, pa.scalar(None, arr.type), arr).cast(pa.timestamp("us")).cast(TS_TYPE)
        aware = pc.if_else(has_offset, arr, pa.scalar(None, arr.type)).cast(TS_TYPE)
        return pc.if_else(has_offset, aware, naive)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        raise pa.ArrowInvalid("numbers are not read as timestamps, their unit (s, ms, us) would be a guess: "
                              "write ISO 8601 text or a timestamp type")
    raise pa.ArrowInvalid(f"a {t} column does not hold timestamps")


def _cast_checked(arr: pa.Array | pa.ChunkedArray, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    try:
        return fn(arr)
    except ARROW_ERRORS as exc:
        reason = str(exc).split("\n")[0]
        if len(arr) == 0 or _whole_type_problem(arr, fn):
            raise CastFailure(-1, None, reason) from None
        lo, hi = 0, len(arr)  # the first bad value is in [lo, hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _fails(arr.slice(lo, mid - lo), fn):
                hi = mid
            else:
                lo = mid
        value = arr[lo].as_py()
        try:
            fn(arr.slice(lo, 1))
        except Exception as one:  # noqa: BLE001 - we only want its text
            reason = str(one).split("\n")[0]
        raise CastFailure(lo, value, reason) from None


def converter(target: pa.DataType) -> Callable[[pa.Array], pa.Array]:
    """The unchecked cast to a declared type (raises Arrow's error at the first bad value)."""
    if pa.types.is_timestamp(target):
        return _to_timestamp_unchecked
    return lambda a: _cast_one(a, target)


@dataclass
class BadValues:
    """Where a column does not cast: every bad position, or why the whole column cannot."""

    positions: np.ndarray        # 0-based positions of the values that do not cast, ascending
    unsearched: int = 0          # stretches of values left unsearched (budget spent): each holds a bad one
    whole: str | None = None     # set when the column's type cannot be cast at all: Arrow's reason
    probes: int = 0              # casts tried


def find_bad_values(arr: pa.Array | pa.ChunkedArray, target: pa.DataType, budget: int) -> BadValues:
    """Every value of ``arr`` that does not cast to ``target``, found with at most ``budget``
    trial casts (for a column that failed to cast as a whole).

    Distinct values are searched, not rows, so a bad value repeated a million times costs one
    search; the search splits failing stretches in halves, left first, so the first bad values
    are found first. Past the budget, the stretches still failing are counted in
    ``unsearched`` (each holds at least one more bad value)."""
    arr = _undictionary(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
    fn = converter(target)
    if _whole_type_problem(arr, fn):
        try:
            fn(arr)
            reason = "cannot be cast"
        except ARROW_ERRORS as exc:
            reason = str(exc).split("\n")[0]
        return BadValues(np.empty(0, np.int64), whole=reason)
    uniq = pc.unique(arr.drop_null())
    bad: list[int] = []
    stack, probes, unsearched = [(0, len(uniq))], 0, 0
    while stack:
        lo, hi = stack.pop()
        if probes >= budget:
            unsearched += 1
            continue
        probes += 1
        if hi == lo or not _fails(uniq.slice(lo, hi - lo), fn):
            continue
        if hi - lo == 1:
            bad.append(lo)
            continue
        mid = (lo + hi) // 2
        stack += [(mid, hi), (lo, mid)]
    mask = pc.is_in(arr, value_set=uniq.take(pa.array(bad, pa.int64()))) if bad else None
    positions = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False)) if bad \
        else np.empty(0, np.int64)
    return BadValues(positions, unsearched, probes=probes)


def cast_reason(value: pa.Array, target: pa.DataType) -> str:
    """Arrow's reason why a one-value array does not cast to ``target``."""
    try:
        converter(target)(value)
    except ARROW_ERRORS as exc:
        return str(exc).split("\n")[0]
    return "cannot be cast"


def _fails(arr: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> bool:
    try:
        fn(arr)
        return False
    except ARROW_ERRORS:
        return True


def _whole_type_problem(arr: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> bool:
    """True when even an all-null slice fails: the column's type, not a value, is wrong."""
    return _fails(pa.nulls(1, arr.type), fn) or _fails(arr.slice(0, 0), fn)


def plain(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One array in the plain types the compiled codecs read: timestamps as int64, large
    text and binary as their 32-bit-offset forms."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.int64())
    elif pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    elif pa.types.is_large_binary(arr.type):
        arr = arr.cast(pa.binary())
    return arr


def as_int64(col: pa.ChunkedArray | pa.Array, fill: int | None = None) -> np.ndarray:
    """A contiguous int64 NumPy copy of a column (timestamps as microseconds), nulls as ``fill``."""
    arr = plain(col).cast(pa.int64())
    if fill is not None and arr.null_count:
        arr = pc.fill_null(arr, fill)
    return np.ascontiguousarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)


def default_scalar(default: Any, dtype: str) -> pa.Scalar:
    """A feature's declared default (its registry form: timestamps ISO 8601, bytes as text) as
    an Arrow scalar of its dtype: the one rule for defaults, offline and for aggregates online."""
    if dtype == "timestamp":
        return pa.scalar(dt.datetime.fromisoformat(default), type=DTYPES[dtype])
    if dtype == "bytes" and isinstance(default, str):
        return pa.scalar(default.encode(), type=DTYPES[dtype])
    return pa.scalar(default, type=DTYPES[dtype])
