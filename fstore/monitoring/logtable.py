"""The columns of the served-feature log: one Arrow schema per request shape.

The layout (docs/monitoring.md, "Served-feature logging") is one row per entity row of
a logged read: the read's identity (``FIXED`` columns), its join keys, then for each
served feature ``F`` its value, ``F__status`` and ``F__event_timestamp``. The rows
themselves are decoded from the recorded reads by fstore._ext._logbuf, in this order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..repo.definitions import DTYPES
from ..repo.names import view_name
from ..repo.resolve import resolve

UTC_US = pa.timestamp("us", tz="UTC")
#: the columns every served-log row starts with, in order, and their types
FIXED: tuple[tuple[str, pa.DataType], ...] = (
    ("request_id", pa.string()), ("caller_request_id", pa.string()), ("request_time", UTC_US),
    ("service", pa.string()), ("model", pa.string()), ("registry_version", pa.int64()), ("path", pa.string()),
    ("worker", pa.int64()), ("row", pa.int32()),
)
STATUS_SUFFIX, TIME_SUFFIX, VALUE_SUFFIX = "__status", "__event_timestamp", "__value"
REQUEST_SUFFIX = "__request"   # a request field's column when its name is taken
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
    request: list[tuple[str, str]] = field(default_factory=list)  # (request field, its column): request shapes


def log_shape(plan: Any, service: str, full: bool, snapshot: Any, request: dict[str, str] | None = None) -> LogShape:
    """The log columns of a read of ``service`` answered by ``plan`` under ``snapshot``
    (the registry version the read was served under, or the closest one known).

    A request shape (fstore.online.request) also logs its ``request`` fields (name ->
    dtype), after the join keys, so that a skew check can recompute what training gives
    from what was sent; its request-view outputs (a plan view without a reader) are marked
    ``"request_view": true`` in the metadata."""
    doc = snapshot.doc if snapshot is not None else None
    views = {view_name(v): v for v in doc["feature_views"].values()} if doc else {}
    in_view = _feature_names(plan, service, full, snapshot)
    key_types = {}
    for v in plan.views:
        for k, t in (views.get(v) or {}).get("key_dtypes", {}).items():
            key_types.setdefault(k, KEY_TYPES.get(t, pa.string()))
    keys = [(k, key_types.get(k, pa.string())) for k in plan.key_columns]
    taken = {name for name, _ in FIXED} | set(plan.key_columns)
    asked = [(f, f"{f}{REQUEST_SUFFIX}" if f in taken or f in plan.names else f, d) for f, d in (request or {}).items()]
    taken |= {col for _, col, _ in asked}
    columns = [f"{n}{VALUE_SUFFIX}" if n in taken else n for n in plan.names]
    types = [DTYPES[d] for d in plan.dtypes]
    fields = [pa.field(n, t) for n, t in (*FIXED, *keys)] + [pa.field(col, DTYPES[d]) for _, col, d in asked]
    for col, t in zip(columns, types):
        fields += [pa.field(col, t), pa.field(col + STATUS_SUFFIX, pa.int8()), pa.field(col + TIME_SUFFIX, UTC_US)]
    meta: dict[str, Any] = {"format": FORMAT, "service": service, "keys": list(plan.key_columns),
                            "features": [_feature_meta(plan, i, col, in_view[i]) for i, col in enumerate(columns)]}
    if asked:
        meta["request"] = [{"column": col, "field": f, "dtype": d} for f, col, d in asked]
    schema = pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})
    return LogShape(keys, columns, types, schema, [(f, col) for f, col, _ in asked])


def _feature_meta(plan: Any, i: int, column: str, feature: str) -> dict[str, Any]:
    out = {"column": column, "view": plan.views[plan.view_of[i]], "feature": feature, "dtype": plan.dtypes[i]}
    if plan.readers[plan.view_of[i]] is None:  # computed at read time by a request view: no stored row
        out["request_view"] = True
    return out


def _feature_names(plan: Any, service: str, full: bool, snapshot: Any) -> list[str]:
    """Each output's feature name in its view (resolved again from the registry; the output
    name, less a ``view__`` prefix, when the registry no longer resolves it the same way)."""
    names = [n.rpartition("__")[2] if "__" in n else n for n in plan.names]
    if snapshot is None:
        return names
    computed: list[Any] = []  # request views' outputs: positions then count every output
    try:
        requests = resolve(snapshot.doc, None, service, full, snapshot.ready.online, computed)
    except Exception:  # noqa: BLE001 - a registry changed since: the names above stand
        return names
    for req in requests + computed:
        if (view_name(req.view) if "version" in req.view else req.view["name"]) not in plan.views:
            return names
        for pos, feat in zip(req.positions, req.features):
            if pos < len(names):
                names[pos] = feat
    return names
