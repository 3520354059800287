"""Pushed rows (a stream's updates): checked against the view, written newer-only,
optionally appended to the offline store so training sees what serving saw."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pyarrow as pa

from .errors import IngestError
from .feature_store import FeatureStore
from .materialize import encode_table, write_batch
from .offline_store import source_columns, type_rows, view_name
from .protocol import BAD_REQUEST, ProtocolError


def push_rows(fs: FeatureStore, args: dict[str, Any]) -> dict[str, Any]:
    """Write ``args["rows"]`` (columns) into view ``args["view"]``; returns the count written.

    Timestamps may be datetimes (MessagePack's Timestamp) or int microseconds UTC.
    Raises ProtocolError naming the field for anything malformed; nothing is written then.
    """
    view_ref, rows, offline = args.get("view"), args.get("rows"), args.get("offline", False)
    if type(view_ref) is not str:
        raise ProtocolError(BAD_REQUEST, "view must be a view name", "view")
    if type(rows) is not dict or not rows:
        raise ProtocolError(BAD_REQUEST, "rows must be a map of columns", "rows")
    if type(offline) is not bool:
        raise ProtocolError(BAD_REQUEST, "offline must be true or false", "offline")
    view = fs.get_feature_view(view_ref)
    source = fs.registry.require()["sources"][view["source"]]
    lengths = {len(v) for v in rows.values() if type(v) is list}
    if len(lengths) != 1 or any(type(v) is not list for v in rows.values()):
        raise ProtocolError(BAD_REQUEST, "rows must be columns (lists) of equal length", "rows")
    time_cols = {source["timestamp_field"], source["created_timestamp_field"]}
    arrays = {}
    for col in source_columns(view, source):
        if col not in rows:
            raise ProtocolError(BAD_REQUEST, f"column {col!r} of view {view_name(view)} is missing", f"rows.{col}")
        values = rows[col]
        if col in time_cols:
            values = [_time(v, col, i) for i, v in enumerate(values)]
        try:
            arrays[col] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise ProtocolError(BAD_REQUEST, f"column {col!r}: {exc}", f"rows.{col}") from None
    try:
        table = type_rows(view, source, pa.table(arrays), "pushed rows", lambda i: f"row {i + 1}")
    except IngestError as exc:
        raise ProtocolError(BAD_REQUEST, str(exc), f"rows.{exc.column}" if exc.column else "rows") from None
    keys, values = encode_table(view, table)
    db = fs.online.db(view_name(view))
    written = fs.online.write(lambda txn: write_batch(txn, db, keys, values))
    if offline:
        fs.offline.append_rows(view, table, f"push:{uuid.uuid4().hex}")
    return {"view": view_name(view), "written": written, "offline": offline}


def _time(value: Any, col: str, i: int) -> Any:
    if value is None or isinstance(value, dt.datetime):
        return value
    if type(value) is int:
        try:
            return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=value)
        except OverflowError:  # outside years 1..9999: the client's mistake, not an INTERNAL error
            raise ProtocolError(BAD_REQUEST, f"row {i + 1}: timestamp {value} is out of range",
                                f"rows.{col}") from None
    raise ProtocolError(BAD_REQUEST, f"row {i + 1}: a timestamp must be a Timestamp or int microseconds",
                        f"rows.{col}")
