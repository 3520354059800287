"""Typed rows made by Spark tasks: the one shape every ingest path of the Spark engine hands
to the writer (fstore.offline.spark.write), whichever made the rows.

A task types its rows with fstore's own rule (fstore.offline.rows, so types, casts and bad
rows are the local engine's) and emits two kinds of rows in one DataFrame: DATA rows (the
offline columns, each row's bucket, its unit's place in the run ``__seq`` and its place in
the unit ``__pos``) and one STATS row per unit (bad rows?, rows, rows skipped for a null
key). Plain units are read by ``read_units`` (fstore.offline.rows.read_typed); a row-wise
Python transformation's units by the local engine's own transformed reader
(fstore.offline.transform.unit_reader), the function loaded on the executor; a SQL
transformation's output is typed by ``type_output`` (fstore.offline.spark.transform).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from ...errors import FstoreError
from ...repo.definitions import Source
from ...repo.names import view_name
from ..layout import bucket_ids, offline_schema
from ..loaders import SourceUnit, get_loader
from ..problems import RowProblems
from ..rows import read_typed
from ..store import OfflineStore
from ..transform import unit_reader
from .frames import BUCKET, POS

SEQ, KIND, BAD, ROWS, NULL_ROWS, NULL_COLS = "__seq", "__kind", "__bad", "__rows", "__null_rows", "__null_cols"
DATA, STATS = 0, 1  # a task's rows: typed rows, then one row of counts per unit
BATCH_ROWS = 1 << 16
OUTPUT_ROW = "output row {}"  # how a transformation's output rows are named (fstore.offline.transform)


def typed_schema(view: dict[str, Any]) -> pa.Schema:
    base = offline_schema(view)
    return pa.schema([*base, pa.field(BUCKET, pa.int32()), pa.field(SEQ, pa.int32()), pa.field(POS, pa.int64()),
                      pa.field(KIND, pa.int8()), pa.field(BAD, pa.bool_()), pa.field(ROWS, pa.int64()),
                      pa.field(NULL_ROWS, pa.int64()), pa.field(NULL_COLS, pa.string())])


def read_units(spark: Any, store: OfflineStore, view: dict[str, Any], source: dict[str, Any],
               todo: list[SourceUnit], n_buckets: int) -> Any:
    """The typed rows of ``todo`` (plain, or through a row-wise Python transformation)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    units = pa.table({SEQ: pa.array(range(len(todo)), pa.int32()), "id": [u.id for u in todo],
                      "fingerprint": [u.fingerprint for u in todo],
                      "path": [None if u.path is None else str(u.path) for u in todo]})
    tasks = max(1, min(len(todo), 4 * spark.sparkContext.defaultParallelism))
    schema = typed_schema(view)
    read = _unit_reader(view, source, store.config.root, store.config.store_paths, n_buckets, schema)
    return spark.createDataFrame(units).repartition(tasks).mapInArrow(read, from_arrow_schema(schema))


def _unit_reader(view: dict[str, Any], source: dict[str, Any], root: Path, exclude: tuple[Path, ...],
                 n_buckets: int, schema: pa.Schema) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The task that reads units (runs on an executor: only picklable state). A fstore error
    of a transformation (its function fails, is missing, or gives unfit output) marks the
    unit bad: the driver then reads the run itself and raises the local engine's error."""

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        loader = get_loader(Source(**source), root, exclude)
        reader: Callable[[SourceUnit, RowProblems, int], pa.Table | None] | None = None
        for batch in batches:
            for row in batch.to_pylist():
                unit = SourceUnit(row["id"], row["fingerprint"], None if row["path"] is None else Path(row["path"]))
                problems = RowProblems(f"ingest of {view_name(view)}")
                try:
                    if reader is None:
                        reader = unit_reader(view, source, loader, root) if view.get("transform") else \
                            (lambda u, p, s: read_typed(view, source, loader, u, p, s))
                    table = reader(unit, problems, row[SEQ])
                except FstoreError:
                    table = None
                yield from emit(table, problems, row[SEQ], n_buckets, view, schema)

    return read


def emit(table: pa.Table | None, problems: RowProblems, seq: int, n_buckets: int, view: dict[str, Any],
         schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """A unit's typed rows (None: bad, or failed) and its STATS row, as ``schema``'s batches."""
    bad = table is None or bool(problems)
    if not bad:
        yield from tagged(table, seq, n_buckets, view, schema)
    yield stats(schema, seq, bad, 0 if bad else table.num_rows, problems)


def tagged(table: pa.Table, seq: int, n_buckets: int, view: dict[str, Any],
           schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    n = table.num_rows
    extra = {BUCKET: pa.array(bucket_ids(table, view["join_keys"], n_buckets), pa.int32()),
             SEQ: pa.array(np.full(n, seq, np.int32)), POS: pa.array(np.arange(n, dtype=np.int64)),
             KIND: pa.array(np.full(n, DATA, np.int8)), BAD: pa.nulls(n, pa.bool_()), ROWS: pa.nulls(n, pa.int64()),
             NULL_ROWS: pa.nulls(n, pa.int64()), NULL_COLS: pa.nulls(n, pa.string())}
    full = pa.table({f.name: table.column(f.name) if f.name in table.column_names else extra[f.name]
                     for f in schema}, schema=schema)
    yield from full.to_batches(max_chunksize=BATCH_ROWS)


def stats(schema: pa.Schema, seq: int, bad: bool, rows: int, problems: RowProblems) -> pa.RecordBatch:
    values = {SEQ: seq, KIND: STATS, BAD: bad, ROWS: rows, NULL_ROWS: problems.null_key_rows,
              NULL_COLS: "\0".join(problems.null_key_columns)}
    return pa.RecordBatch.from_pydict({f.name: pa.array([values.get(f.name)], f.type) for f in schema}, schema=schema)
