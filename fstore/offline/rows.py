"""Raw source rows turned into the offline store's typed columns.

Used by ingest (a source file), by bulk loads into the online store and by PUSH (rows
sent to the server), so that one rule types them all and every error names the file
(or push), the row and the column.
"""
from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import IngestError
from ..repo.definitions import DTYPES
from .casting import TS_TYPE, CastFailure, to_dtype, to_timestamp
from .layout import CREATED_TS, EVENT_TS, KEY_TYPES, UNIT, offline_schema
from .loaders import Loader, SourceUnit


def source_columns(view: dict[str, Any], source: dict[str, Any]) -> list[str]:
    """The columns a view reads from its source: keys, timestamps, features."""
    ts_col, created_col = source["timestamp_field"], source["created_timestamp_field"]
    return list(dict.fromkeys([*view["join_keys"], ts_col, *([created_col] if created_col else []),
                               *(f["name"] for f in view["features"])]))


def read_typed(view: dict[str, Any], source: dict[str, Any], loader: Loader, unit: SourceUnit) -> pa.Table:
    """One source unit as the offline store's columns, typed as declared; IngestError names file, row, column."""
    return type_rows(view, source, loader.read(unit, source_columns(view, source)), unit.id, loader.row_label)


def type_rows(view: dict[str, Any], source: dict[str, Any], raw: pa.Table, where: str,
              row_label: Callable[[int], str]) -> pa.Table:
    """Raw rows (source column names) as the offline store's columns, typed as declared.

    ``where`` names the rows' origin in errors (a file, or a push); ``row_label`` names a row.
    """
    ts_col, created_col = source["timestamp_field"], source["created_timestamp_field"]
    cols = source_columns(view, source)
    missing = [c for c in cols if c not in raw.column_names]
    if missing:
        raise IngestError(f"{where}: column(s) {', '.join(missing)} missing", file=where, column=missing[0])

    def cast(col: str, fn) -> pa.Array:
        try:
            return fn(raw.column(col))
        except CastFailure as exc:
            at = f" at {row_label(exc.index)}" if exc.index >= 0 else ""
            shown = f" value {exc.value!r}" if exc.index >= 0 else ""
            raise IngestError(f"{where}{at}, column {col!r}:{shown} cannot be read as "
                              f"{_target_name(view, col, ts_col, created_col)} ({exc.reason})",
                              file=where, row=exc.index + 1 if exc.index >= 0 else None,
                              column=col) from None

    out: dict[str, pa.Array] = {}
    for k in view["join_keys"]:
        out[k] = cast(k, lambda a, t=KEY_TYPES[view["key_dtypes"][k]]: to_dtype(a, t))
    out[EVENT_TS] = cast(ts_col, to_timestamp)
    if out[EVENT_TS].null_count:
        row = int(pc.index(pc.is_null(out[EVENT_TS]), True).as_py())
        raise IngestError(f"{where} at {row_label(row)}, column {ts_col!r}: the event "
                          "timestamp is null", file=where, row=row + 1, column=ts_col)
    out[CREATED_TS] = cast(created_col, to_timestamp) if created_col else pa.nulls(raw.num_rows, TS_TYPE)
    out[UNIT] = pa.nulls(raw.num_rows, pa.int32())  # numbered when the run is written
    for f in view["features"]:
        out[f["name"]] = cast(f["name"], lambda a, t=DTYPES[f["dtype"]]: to_dtype(a, t))
    return pa.table(out, schema=offline_schema(view))


def _target_name(view: dict[str, Any], col: str, ts_col: str, created_col: str | None) -> str:
    if col in (ts_col, created_col):
        return "a timestamp"
    if col in view["key_dtypes"]:
        return view["key_dtypes"][col]
    return next(f["dtype"] for f in view["features"] if f["name"] == col)
