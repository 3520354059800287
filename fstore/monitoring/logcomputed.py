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


def answered_table(a: Answered, pid: int) -> pa.Table:
    """The log rows of one answered read, in its shape's schema."""
    n = a.n
    schema = a.shape.schema
    fixed = {"request_id": [f"{pid}-{a.seq}"] * n, "caller_request_id": [a.caller] * n,
             "request_time": [a.time_us] * n, "service": [a.service] * n, "model": [a.model] * n,
             "registry_version": [a.version] * n, "path": [a.path] * n, "worker": [pid] * n,
             "row": list(range(n))}
    cols: list[pa.Array] = [pa.array(fixed[name], pa.int64() if t == UTC_US else t).cast(t) for name, t in FIXED]
    types = [t for _, t in a.shape.keys] + [schema.field(column).type for _, column in a.shape.request]
    cols += [_column(values, t) for values, t in zip(a.columns, types)]
    stamps = memoryview(a.stamps).cast("q") if a.stamps else memoryview(b"").cast("q")
    for i, t in enumerate(a.shape.types):
        cols.append(_column(a.values[i * n:(i + 1) * n], t))
        cols.append(pa.array(list(a.status[i * n:(i + 1) * n]), pa.int8()))
        v = a.view_of[i]
        cols.append(pa.array([None if s == NO_TIME else s for s in stamps[v * n:(v + 1) * n]], pa.int64())
                    .cast(UTC_US))
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
