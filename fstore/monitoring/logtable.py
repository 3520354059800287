"""Served reads as rows of the feature log: one Arrow table per batch of reads of one shape.

The layout (docs/monitoring.md, "Served-feature logging") is one row per entity row of
a logged read: the read's identity (``FIXED`` columns), its join keys, then for each
served feature ``F`` its value, ``F__status`` and ``F__event_timestamp``. A batch is
converted at once, off the serving thread: the statuses and event times of every read
in it are joined into one buffer and reshaped with NumPy, and the server's packed
values are decoded by one MessagePack call for the whole batch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from typing import Any, Sequence

import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..repo.definitions import DTYPES
from ..repo.names import view_name
from ..repo.resolve import resolve
from ..times import NO_TIME

UTC_US = pa.timestamp("us", tz="UTC")
#: the columns every served-log row starts with, in order, and their types
FIXED: tuple[tuple[str, pa.DataType], ...] = (
    ("request_id", pa.string()), ("caller_request_id", pa.string()), ("request_time", UTC_US),
    ("service", pa.string()), ("model", pa.string()), ("registry_version", pa.int64()), ("path", pa.string()),
    ("worker", pa.int64()), ("row", pa.int32()),
)
STATUS_SUFFIX, TIME_SUFFIX, VALUE_SUFFIX = "__status", "__event_timestamp", "__value"
META_KEY = b"fstore.log"   # Parquet key-value metadata: the JSON of LogShape.meta
FORMAT = 1
KEY_TYPES = {"int64": pa.int64(), "string": pa.string()}


@dataclass
class LogShape:
    """The columns of one request shape's log rows, worked out once per plan."""

    keys: list[tuple[str, pa.DataType]]      # join key columns and their types
    columns: list[str]                        # each output's value column (its output name, or F__value)
    types: list[pa.DataType]                  # each output's value type
    schema: pa.Schema                         # the whole table's, with the metadata


def log_shape(plan: Any, service: str, full: bool, snapshot: Any) -> LogShape:
    """The log columns of a read of ``service`` answered by ``plan`` under ``snapshot``
    (the registry version the read was served under, or the closest one known)."""
    doc = snapshot.doc if snapshot is not None else None
    views = {view_name(v): v for v in doc["feature_views"].values()} if doc else {}
    in_view = _feature_names(plan, service, full, snapshot)
    key_types = {}
    for v in plan.views:
        for k, t in (views.get(v) or {}).get("key_dtypes", {}).items():
            key_types.setdefault(k, KEY_TYPES.get(t, pa.string()))
    keys = [(k, key_types.get(k, pa.string())) for k in plan.key_columns]
    taken = {name for name, _ in FIXED} | set(plan.key_columns)
    columns = [f"{n}{VALUE_SUFFIX}" if n in taken else n for n in plan.names]
    types = [DTYPES[d] for d in plan.dtypes]
    fields = [pa.field(n, t) for n, t in (*FIXED, *keys)]
    for col, t in zip(columns, types):
        fields += [pa.field(col, t), pa.field(col + STATUS_SUFFIX, pa.int8()), pa.field(col + TIME_SUFFIX, UTC_US)]
    meta = {"format": FORMAT, "service": service, "keys": list(plan.key_columns),
            "features": [{"column": col, "view": plan.views[plan.view_of[i]], "feature": in_view[i],
                          "dtype": plan.dtypes[i]} for i, col in enumerate(columns)]}
    schema = pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})
    return LogShape(keys, columns, types, schema)


def _feature_names(plan: Any, service: str, full: bool, snapshot: Any) -> list[str]:
    """Each output's feature name in its view (resolved again from the registry; the output
    name, less a ``view__`` prefix, when the registry no longer resolves it the same way)."""
    names = [n.rpartition("__")[2] if "__" in n else n for n in plan.names]
    if snapshot is None:
        return names
    try:
        requests = resolve(snapshot.doc, None, service, full, snapshot.ready.online)
    except Exception:  # noqa: BLE001 - a registry changed since: the names above stand
        return names
    for req in requests:
        if view_name(req.view) not in plan.views:
            return names
        for pos, feat in zip(req.positions, req.features):
            if pos < len(names):
                names[pos] = feat
    return names


def to_table(shape: LogShape, plan: Any, reads: Sequence[tuple[int, Any]], rows: int, pid: int) -> pa.Table:
    """The log rows of ``reads`` ((per-process sequence number, ServedRead) pairs of one plan,
    path and service, each of ``rows`` > 0 entity rows), logged by process ``pid``."""
    e, n = len(reads), rows
    events = [ev for _, ev in reads]
    first = events[0]
    seqs = pa.array(np.repeat(np.fromiter((s for s, _ in reads), np.int64, e), n))
    cols: list[pa.Array] = [
        pc.binary_join_element_wise(f"{pid}", pc.cast(seqs, pa.string()), "-"),
        _repeat([ev.caller_request_id for ev in events], n, pa.string()),
        pa.array(np.repeat(np.fromiter((ev.time_us for ev in events), np.int64, e), n), UTC_US),
        pa.repeat(pa.scalar(first.service, pa.string()), e * n),
        _repeat([getattr(ev, "model", None) for ev in events], n, pa.string()),  # the model a read named
        pa.repeat(pa.scalar(first.registry_version, pa.int64()), e * n),
        pa.repeat(pa.scalar(first.path, pa.string()), e * n),
        pa.repeat(pa.scalar(first.worker, pa.int64()), e * n),
        pa.array(np.tile(np.arange(n, dtype=np.int32), e)),
    ]
    cols += [pa.array(_key_column(events, k, n), t) for k, t in shape.keys]
    n_out, n_views = len(plan.names), len(plan.views)
    status = np.frombuffer(b"".join([ev.status for ev in events]), np.int8)
    status = status.reshape(e, n_out, n).transpose(1, 0, 2).reshape(n_out, e * n)
    stamps = np.frombuffer(b"".join([ev.stamps for ev in events]), np.int64)
    stamps = stamps.reshape(e, n_views, n).transpose(1, 0, 2).reshape(n_views, e * n)
    missing = stamps == NO_TIME
    values = _value_columns(events, n_out, n)
    times = [pa.array(stamps[v], UTC_US, mask=missing[v]) if missing[v].any() else pa.array(stamps[v], UTC_US)
             for v in range(n_views)]
    for i, t in enumerate(shape.types):
        cols += [pa.array(values[i], t), pa.array(status[i]), times[plan.view_of[i]]]
    return pa.Table.from_arrays(cols, schema=shape.schema)


def _repeat(items: list[Any], n: int, type_: pa.DataType) -> pa.Array:
    return pa.array(items if n == 1 else [x for x in items for _ in range(n)], type_)


def _key_column(events: list[Any], key: str, n: int) -> list[Any]:
    """One join key over every read: the server's entity columns, or in process its rows."""
    if type(events[0].entities) is dict:  # the server: one list per key
        if n == 1:
            return [(ev.entities.get(key) or (None,))[0] for ev in events]
        return list(chain.from_iterable(ev.entities.get(key) or [None] * n for ev in events))
    if n == 1:
        return [ev.entities[0].get(key) for ev in events]
    return [r.get(key) for ev in events for r in ev.entities]


def _value_columns(events: list[Any], n_out: int, n: int) -> list[list[Any]]:
    """Each output's values over every read: the server's MessagePack decoded in one call
    (an array header before the reads' packed lists), in process the flat lists sliced."""
    first = events[0].values
    if isinstance(first, (bytes, bytearray)):
        header = b"\xdd" + len(events).to_bytes(4, "big")
        # tuples, not lists: half the time (fewer objects for the collector to track)
        decoded = msgpack.unpackb(header + b"".join([ev.values for ev in events]), raw=False, timestamp=3,
                                  use_list=False)
        if n == 1:
            return [[c[0] for c in col] for col in zip(*decoded)] if decoded else [[] for _ in range(n_out)]
        return [list(chain.from_iterable(d[i] for d in decoded)) for i in range(n_out)]
    flat = list(chain.from_iterable([ev.values for ev in events]))  # reads x outputs x rows
    if n == 1:
        return [flat[i::n_out] for i in range(n_out)]  # strided slices: C speed
    return [list(chain.from_iterable(ev.values[i * n:(i + 1) * n] for ev in events)) for i in range(n_out)]
