"""Log rows of the reads answered in Python: request shapes (fstore.online.request).

The compiled recorder (fstore._ext._logbuf) logs a read from the stored rows it used; a
request shape's values are partly computed at read time (request-view outputs, and the
COMPUTED values of an ``on_miss`` fill), so there is no stored row to decode them from. Its
read is logged from what it answered instead: the values, statuses and event times as the
caller got them, and the request fields it was sent (the log's schema: fstore.monitoring.
logtable, ``log_shape(..., request=...)``). The columns are the same as a compiled read's,
so readers (skew, drift, ``read_log``) need no second format.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ..times import NO_TIME
from .logtable import FIXED, LogShape, UTC_US


@dataclass(slots=True)
class Answered:
    """One sampled read of a request shape, held until the writer thread makes its rows."""

    shape: LogShape
    view_of: list[int]
    seq: int
    time_us: int
    service: str
    model: str | None
    caller: str | None
    version: int
    path: str
    n: int                           # entity rows
    columns: list[list[Any]]         # the join keys', then the request fields' values (copied at the read)
    values: list[Any]                # flat, output-major (outputs x rows)
    status: bytes                    # outputs x rows
    stamps: bytes                    # views x rows, int64 (NO_TIME: none)


def answered_tables(held: list[Answered], pid: int) -> list[tuple[str, pa.Table]]:
    """The log rows of answered reads: one table per request shape (its schema), each column
    built once for all its reads (an Arrow array per column and read would cost the writer
    thread, and so the serving thread waiting for the GIL, tens of microseconds a read)."""
    shapes: dict[int, list[Answered]] = {}
    for a in held:
        shapes.setdefault(id(a.shape), []).append(a)
    return [(same[0].service, _table(same, pid)) for same in shapes.values()]


def _table(same: list[Answered], pid: int) -> pa.Table:
    shape = same[0].shape
    schema = shape.schema
    ns = np.fromiter((a.n for a in same), dtype=np.int64, count=len(same))
    which = pa.array(np.repeat(np.arange(len(same)), ns))         # each row's read
    starts = np.cumsum(ns) - ns
    per_read = {"request_id": [f"{pid}-{a.seq}" for a in same], "caller_request_id": [a.caller for a in same],
                "request_time": [a.time_us for a in same], "service": [a.service for a in same],
                "model": [a.model for a in same], "registry_version": [a.version for a in same],
                "path": [a.path for a in same], "worker": [pid] * len(same)}
    cols: list[pa.Array] = []
    for name, t in FIXED:
        if name == "row":
            cols.append(pa.array(np.arange(int(ns.sum()), dtype=np.int32) - np.repeat(starts, ns).astype(np.int32)))
        else:
            cols.append(pa.array(per_read[name], pa.int64() if t == UTC_US else t).cast(t).take(which))
    types = [t for _, t in shape.keys] + [schema.field(column).type for _, column in shape.request]
    cols += [_column([v for a in same for v in a.columns[c]], t) for c, t in enumerate(types)]
    stamps = [np.frombuffer(a.stamps, dtype=np.int64).reshape(-1, a.n) for a in same]
    for i, t in enumerate(shape.types):
        v = same[0].view_of[i]
        ts = np.concatenate([st[v] for st in stamps])
        cols += [_column([x for a in same for x in a.values[i * a.n:(i + 1) * a.n]], t),
                 pa.array(np.frombuffer(b"".join(a.status[i * a.n:(i + 1) * a.n] for a in same), dtype=np.int8)),
                 pa.array(ts, mask=ts == NO_TIME).cast(UTC_US)]
    return pa.Table.from_arrays(cols, schema=schema)


def entity_columns(shape: LogShape, rows: list[Any]) -> list[list[Any]]:
    """The join keys' and request fields' values of a read's rows, in the shape's order: taken
    on the serving thread, as the caller's rows may change once the read returned."""
    return [[_get(r, name) for r in rows] for name in [k for k, _ in shape.keys] + [f for f, _ in shape.request]]


def _get(row: Any, name: str) -> Any:
    try:
        return row.get(name) if type(row) is dict else row[name]
    except Exception:  # noqa: BLE001 - a row without it is a null, as the compiled log has it
        return None


def _column(values: list[Any], t: pa.DataType) -> pa.Array:
    """``values`` as ``t``; a value that is not one is a null (the compiled log's rule for keys)."""
    try:
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        out = []
        for v in values:
            try:
                out.append(pa.scalar(v, t).as_py())
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                out.append(None)
        return pa.array(out, t)
