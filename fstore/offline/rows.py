"""Raw source rows turned into the offline store's typed columns.

Used by ingest (a source file), by bulk loads into the online store and by PUSH (rows
sent to the server), so that one rule types them all and every error names the file
(or push), the row (from 1) and the column. Every bad row of a run is found, not only the
first (fstore.offline.problems).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pyarrow as pa

from ..errors import IngestError
from ..repo.definitions import DTYPES
from .casting import ARROW_ERRORS, TS_TYPE, cast_reason, converter, find_bad_values
from .layout import CREATED_TS, EVENT_TS, KEY_TYPES, UNIT, offline_schema
from .loaders import Loader, SourceUnit
from .problems import RowProblems


def source_columns(view: dict[str, Any], source: dict[str, Any]) -> list[str]:
    """The columns a view reads from its source: keys, timestamps, features."""
    ts_col, created_col = source["timestamp_field"], source["created_timestamp_field"]
    return list(dict.fromkeys([*view["join_keys"], ts_col, *([created_col] if created_col else []),
                               *(f["name"] for f in view["features"])]))


def read_typed(view: dict[str, Any], source: dict[str, Any], loader: Loader, unit: SourceUnit,
               problems: RowProblems, seq: int = 0) -> pa.Table | None:
    """One source unit as the offline store's columns, typed as declared; None when the unit
    has bad rows or cannot be read, which ``problems`` then names (``seq``: the unit's place
    in the run, so problems are shown in reading order)."""
    try:
        raw = loader.read(unit, source_columns(view, source))
    except IngestError as exc:
        problems.add_error(seq, exc)
        return None
    return type_rows(view, source, raw, unit.id, loader.row_label, problems, seq)


def type_rows(view: dict[str, Any], source: dict[str, Any], raw: pa.Table, where: str,
              row_label: Callable[[int], str], problems: RowProblems, seq: int = 0) -> pa.Table | None:
    """Raw rows (source column names) as the offline store's columns, typed as declared.

    Every bad row is recorded in ``problems`` (which names ``where``, a file or a push, and
    each row by ``row_label``) and None is returned. Rows with a null join key are dropped
    and counted in ``problems``, or with ``problems.refuse_null_keys`` are bad rows too.
    """
    ts_col, created_col = source["timestamp_field"], source["created_timestamp_field"]
    missing = [c for c in source_columns(view, source) if c not in raw.column_names]
    if missing:
        problems.add_line(seq, where, f"{where}: column(s) {', '.join(missing)} missing", missing[0])
        return None
    keep = _null_keys(view, raw, problems, seq, where, row_label)
    ok = keep is not False  # refused keyless rows are bad rows: the others are still checked
    origin = None
    if isinstance(keep, np.ndarray):  # skipped rows are not checked further: their other flaws do not matter
        origin = np.flatnonzero(keep)
        raw = raw.filter(pa.array(keep))
    targets = [*((k, k, KEY_TYPES[view["key_dtypes"][k]]) for k in view["join_keys"]), (EVENT_TS, ts_col, TS_TYPE),
               *([(CREATED_TS, created_col, TS_TYPE)] if created_col else []),
               *((f["name"], f["name"], DTYPES[f["dtype"]]) for f in view["features"])]
    out: dict[str, pa.Array] = {}
    for order, (name, col, target) in enumerate(targets):
        arr = raw.column(col).combine_chunks()
        try:
            out[name] = converter(target)(arr)
        except ARROW_ERRORS:
            _record_bad_values(problems, seq, where, row_label, origin, arr, col, order, target,
                               _target_name(view, col, ts_col, created_col))
            ok = False
    ts_nulls = np.flatnonzero(raw.column(ts_col).is_null().to_numpy(zero_copy_only=False))
    problems.add_rows(seq, where, row_label, ts_nulls, ts_col, len(view["join_keys"]),
                      f"with a null event timestamp in column {ts_col!r}", lambda i: "the event timestamp is null",
                      origin=origin)
    if not ok or len(ts_nulls):
        return None
    if not created_col:
        out[CREATED_TS] = pa.nulls(raw.num_rows, TS_TYPE)
    out[UNIT] = pa.nulls(raw.num_rows, pa.int32())  # numbered when the run is written
    return pa.table({f.name: out[f.name] for f in offline_schema(view)}, schema=offline_schema(view))


def _record_bad_values(problems: RowProblems, seq: int, where: str, row_label: Callable[[int], str],
                       origin: np.ndarray | None, arr: pa.Array, col: str, order: int, target: pa.DataType,
                       target_name: str) -> None:
    """Find every value of a column that did not cast, and record it (``origin``: each
    position's row in the file, when rows were skipped)."""
    bad = find_bad_values(arr, target, problems.budget)
    problems.budget -= bad.probes
    if bad.whole is not None:  # the column's type, not a value: shown once, with the first value
        valid = np.flatnonzero(arr.is_valid().to_numpy(zero_copy_only=False))
        first = int(valid[0]) if len(valid) else -1
        holds = f"; {row_label(first if origin is None else int(origin[first]))} holds {arr[first].as_py()!r}" \
            if first >= 0 else ""
        problems.add_line(seq, where, f"{where}, column {col!r}: {arr.type} values cannot be read as "
                          f"{target_name}{holds} ({bad.whole})", col, order)
        return
    problems.add_rows(seq, where, row_label, bad.positions, col, order,
                      f"whose column {col!r} cannot be read as {target_name}",
                      lambda i: f"value {arr[i].as_py()!r} cannot be read as {target_name} "
                                f"({cast_reason(arr.slice(i, 1), target)})", bad.unsearched, origin=origin)


def _null_keys(view: dict[str, Any], raw: pa.Table, problems: RowProblems, seq: int, where: str,
               row_label: Callable[[int], str]) -> np.ndarray | None | bool:
    """The rows to keep (a mask) when some have a null join key (None: all), or False when
    such rows are refused (``problems.refuse_null_keys``) and were recorded as bad."""
    keys = view["join_keys"]
    nulls = {k: raw.column(k).is_null().to_numpy(zero_copy_only=False) for k in keys}
    if not any(m.any() for m in nulls.values()):
        return None
    if problems.refuse_null_keys:
        for order, k in enumerate(keys):
            problems.add_rows(seq, where, row_label, np.flatnonzero(nulls[k]), k, order,
                              f"with a null join key in column {k!r}",
                              lambda i: "the join key is null (a row without a key can never be read)")
        return False
    any_null = np.logical_or.reduce(list(nulls.values()))
    problems.skipped_null_keys(int(any_null.sum()), [k for k in keys if nulls[k].any()])
    return ~any_null


def _target_name(view: dict[str, Any], col: str, ts_col: str, created_col: str | None) -> str:
    if col in (ts_col, created_col):
        return "a timestamp"
    if col in view["key_dtypes"]:
        return view["key_dtypes"][col]
    return next(f["dtype"] for f in view["features"] if f["name"] == col)
