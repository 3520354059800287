"""Running a batch transformation over Arrow: SQL by DuckDB, Python in process.

Below the offline layer because ``fstore plan`` needs the output's columns and types too:
it runs the transformation over an empty table of the source's schema.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from ..errors import InvalidDefinition, TransformError
from .functions import find_declared, load_function
from .transforms import SOURCE_TABLE, resolve


def run_transform(transform: dict[str, Any], table: pa.Table, root: Path, *, view: str,
                  fn: Callable[..., Any] | None = None) -> pa.Table:
    """The transformation's output for ``table`` (the source's rows); TransformError naming the
    view and showing DuckDB's (or the function's) message when it fails. ``fn``: the function
    already found (definitions not yet applied), else it is loaded from its stored reference."""
    if "sql" in transform:
        return _unique_columns(_run_sql(transform["sql"], table, view), view)
    fn = fn or load_function(transform["python"], root, what=f"feature view {view}")
    name = transform["python"]["function"]
    try:
        out = fn(table)
    except Exception as exc:  # the user's code may raise anything: name it, keep its message
        raise TransformError(f"feature view {view}: Python transformation {name} failed: "
                             f"{type(exc).__name__}: {exc}", view=view) from exc
    if isinstance(out, pa.RecordBatch):
        out = pa.Table.from_batches([out])
    if not isinstance(out, pa.Table):
        raise TransformError(f"feature view {view}: Python transformation {name} returned "
                             f"{type(out).__name__}, not a pyarrow Table", view=view)
    return _unique_columns(out, view)


def _unique_columns(out: pa.Table, view: str) -> pa.Table:
    """``out``, refused when it has a column twice: which one is the feature would be a guess
    (and Arrow's by-name lookups fail on it with a bare KeyError)."""
    seen: set[str] = set()
    for name in out.column_names:
        if name in seen:
            raise TransformError(f"feature view {view}: the transformation's output has column {name!r} "
                                 f"{out.column_names.count(name)} times; give each column one name",
                                 view=view, column=name)
        seen.add(name)
    return out


def _run_sql(sql: str, table: pa.Table, view: str) -> pa.Table:
    import duckdb

    con = _connection()
    try:
        con.register(SOURCE_TABLE, table)
        rel = con.sql(sql)
        if rel is None:  # not a query (DuckDB runs a statement without a result)
            raise TransformError(f"feature view {view}: the SQL transformation returns no rows: write a SELECT",
                                 view=view)
        # DuckDB 1.x names it arrow (a Table), 2.x to_arrow_table
        fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
        return fetch()
    except duckdb.Error as exc:
        raise TransformError(f"feature view {view}: the SQL transformation failed: {exc}", view=view) from None
    finally:
        con.unregister(SOURCE_TABLE)


_LOCAL = threading.local()


def _connection() -> Any:
    """This thread's DuckDB connection, made once: a new one costs ~20 ms, more than the SQL
    over a small source file, and an ingest runs the SQL once per file."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        import duckdb

        con = _LOCAL.con = duckdb.connect(config={"threads": 2})
    return con


def output_schema(transform: dict[str, Any], source_schema: pa.Schema, root: Path, *, view: str,
                  fn: Callable[..., Any] | None = None) -> pa.Schema:
    """The columns and types the transformation gives for a source of ``source_schema``
    (run over no rows)."""
    return run_transform(transform, source_schema.empty_table(), root, view=view, fn=fn).schema


def view_transform(view: Any, source_schema: pa.Schema, root: Path, files: list[Path],
                   *, obj: str) -> tuple[dict[str, Any], pa.Schema]:
    """(the registry record of a FeatureView's transformation, the schema of its output):
    what validation checks the view's keys, times and features against, instead of the
    source's own columns. InvalidDefinition naming the view when it cannot run."""
    record = resolve(view.transform, view._transform_fn, root, files, obj=obj)
    fn = view._transform_fn
    if fn is None and "python" in record:
        fn = find_declared(record["python"]["function"], files, root, obj=obj, field="transform.python")
    try:
        schema = output_schema(record, source_schema, root, view=view.versioned_name, fn=fn)
    except TransformError as exc:
        raise InvalidDefinition(f"the transformation cannot run over the source's columns: {exc}",
                                obj=obj, field="transform") from None
    return record, schema
