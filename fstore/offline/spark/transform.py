"""A SQL transformation in Spark: the source's units read by Spark tasks as the temporary
view ``source``, the view's SQL run by ``spark.sql``, its output typed by fstore's rule
(docs/transformations.md, "Engines").

The source is read one partition per unit (``spark.range(n, numPartitions=n)``: partition i
reads unit i), each unit's rows in file order. A row-wise SQL (the one rule,
fstore.repo.transforms.ingest_mode, says which) plans as a projection and a filter, which
keep each partition and its row order, so an output row's partition is its unit and its
place in the partition is its place in that unit's output: what the local engine's per-file
DuckDB run gives (the plan is checked for a shuffle before it is trusted; with one, the driver runs it). Any other SQL
runs once over every unit; its output rows are placed by the SQL's output order (partition,
then place), which only decides ties on (keys, event time, created time), as DuckDB's output
order does in the local engine; an ORDER BY makes it the same on both. (A float sum in such
a SQL adds in Spark's order, not DuckDB's: the last bits may differ; docs/transformations.md.)

What is left to the driver (the caller runs the local engine's path, so results stay its):
a source whose column types Spark would not give back unchanged (nanosecond or non-UTC
timestamps, large strings, dictionaries, unsigned integers...), a unit that cannot be read or whose
column types are not the source's schema (DuckDB would see other types), and bad rows in
the output (the driver names every one as the local engine does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa

from ...errors import IngestError, TransformError
from ...repo.definitions import Source
from ...repo.names import view_name
from ...repo.transforms import SOURCE_TABLE
from ..loaders import SourceUnit, get_loader
from ..problems import RowProblems
from ..rows import type_rows
from ..store import OfflineStore
from ..transform import check_output
from .typed import BAD, DATA, KIND, OUTPUT_ROW, SEQ, STATS, emit, typed_schema

PORTABLE = "docs/transformations.md, \"Engines\", says which SQL runs the same on both"


def sql_rows(spark: Any, store: OfflineStore, view: dict[str, Any], source: dict[str, Any],
             units: list[SourceUnit], n_buckets: int, row_wise: bool, held: list[Any]) -> Any | None:
    """The typed rows (fstore.offline.spark.typed) of the view's SQL over ``units``: one
    partition (``__seq``) per unit when ``row_wise``, else the SQL's own partitions. None:
    the driver must run it (module docstring). Persisted frames are added to ``held``, for
    the caller to release once the rows are written."""
    from pyspark import StorageLevel
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    loader = get_loader(Source(**source), store.config.root, store.config.store_paths)
    found = loader.schema()
    schema = pa.schema([pa.field(f.name, pa.timestamp("us", f.type.tz)) if pa.types.is_timestamp(f.type) else f
                        for f in found])  # Spark's one time unit: read as microseconds when that loses nothing
    raw_schema = pa.schema([*schema, pa.field(SEQ, pa.int32()), pa.field(KIND, pa.int8()), pa.field(BAD, pa.bool_())])
    try:
        spark_schema = from_arrow_schema(raw_schema)
        back = to_arrow_schema(spark_schema, timezone="UTC")
    except (TypeError, ValueError, PySparkException):  # a type Spark has not: DuckDB on the driver
        return None
    if not back.equals(raw_schema, check_metadata=False):  # Spark would change a type (ns, a time zone, ...)
        return None
    ids = [(u.id, u.fingerprint, None if u.path is None else str(u.path)) for u in units]
    reader = _raw_reader(source, store.config.root, store.config.store_paths, ids, found, raw_schema)
    raw = spark.range(0, len(units), 1, max(1, len(units))).mapInArrow(reader, spark_schema)
    raw = raw.persist(StorageLevel.MEMORY_AND_DISK)
    held.append(raw)
    if any(r[BAD] for r in raw.where(F.col(KIND) == STATS).select(BAD).collect()):
        return None
    raw.where(F.col(KIND) == DATA).select(*schema.names).createOrReplaceTempView(SOURCE_TABLE)
    try:  # the plan is made (and the view resolved) here: the name is free again at once
        out = spark.sql(view["transform"]["sql"])
    except PySparkException as exc:
        raise sql_failed(view, exc) from None
    finally:
        spark.catalog.dropTempView(SOURCE_TABLE)
    out_schema = to_arrow_schema(out.schema, timezone="UTC")
    check_output(view, source, out_schema.empty_table())
    if row_wise and (len(units) != out.rdd.getNumPartitions() or "Exchange" in _plan(out)):
        return None  # planned with a shuffle: a row's source file is no longer its partition
    where = [f"{i} (transformed)" for i, _, _ in ids] if row_wise else None
    typer = _output_typer(view, source, where, len(units), n_buckets, out_schema)
    return out.mapInArrow(typer, from_arrow_schema(typed_schema(view)))


def sql_failed(view: dict[str, Any], exc: Exception) -> TransformError:
    """A Spark job's failure while it ran the view's SQL, as the error naming the view."""
    name = view_name(view)
    return TransformError(f"feature view {name}: the SQL transformation failed in Spark SQL "
                          f"(offline_store.engine: spark): {_first_lines(exc)}\nSQL: {view['transform']['sql']}\n"
                          f"({PORTABLE})", view=name)


def not_portable(view: dict[str, Any]) -> TransformError:
    """Spark's output had bad rows where DuckDB's (the driver's re-run) has none."""
    name = view_name(view)
    return TransformError(f"feature view {name}: Spark SQL's output of the transformation has rows that "
                          f"cannot be stored, DuckDB's has none: the SQL means other things in the two "
                          f"dialects: {view['transform']['sql']}\n({PORTABLE})", view=name)


def _raw_reader(source: dict[str, Any], root: Path, exclude: tuple[Path, ...], ids: list[tuple[str, str, str | None]],
                found: pa.Schema, schema: pa.Schema) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The task reading unit i (its partition's one id) as the source's columns, then one
    row saying whether it was read with exactly the source's types ``found`` and, its
    times as microseconds, lost nothing (else: the driver)."""
    names = found.names

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        loader = get_loader(Source(**source), root, exclude)
        for batch in batches:
            for seq in batch.column(0).to_pylist():
                uid, fp, path = ids[seq]
                try:
                    table = loader.read(SourceUnit(uid, fp, None if path is None else Path(path)), names)
                    ok = table.schema.equals(found, check_metadata=False)
                    if ok:
                        table = table.cast(pa.schema(list(schema)[:len(names)]))  # safe: a lost digit raises
                except (IngestError, pa.ArrowInvalid):
                    ok = False
                if ok and table.num_rows:
                    n = table.num_rows
                    tagged = table.append_column(SEQ, pa.nulls(n, pa.int32()).fill_null(seq)) \
                        .append_column(KIND, pa.nulls(n, pa.int8()).fill_null(DATA)) \
                        .append_column(BAD, pa.nulls(n, pa.bool_()))
                    yield from tagged.cast(schema).to_batches(max_chunksize=1 << 16)
                yield pa.RecordBatch.from_pydict({f.name: pa.array([{SEQ: seq, KIND: STATS, BAD: not ok}.get(f.name)],
                                                                   f.type) for f in schema}, schema=schema)

    return read


def _output_typer(view: dict[str, Any], source: dict[str, Any], where: list[str] | None, n_units: int,
                  n_buckets: int, out_schema: pa.Schema) -> Callable[[Iterator[pa.RecordBatch]],
                                                                     Iterator[pa.RecordBatch]]:
    """The task typing one partition of the SQL's output (its partition number is its
    ``__seq``); ``where``: each unit's name (row-wise), else the whole output's."""
    schema = typed_schema(view)
    whole = f"the transformation's output ({n_units} source files)"

    def type_part(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        seq = TaskContext.get().partitionId()
        got = [b for b in batches if b.num_rows]
        problems = RowProblems(f"ingest of {view_name(view)}")
        table = pa.Table.from_batches(got) if got else out_schema.empty_table()
        label = where[seq] if where else whole
        typed = type_rows(view, source, table, label, lambda i: OUTPUT_ROW.format(i + 1), problems, seq)
        yield from emit(typed, problems, seq, n_buckets, view, schema)

    return type_part


def _plan(df: Any) -> str:
    return str(df._jdf.queryExecution().executedPlan().toString())


def _first_lines(exc: Exception, n: int = 3) -> str:
    """Spark's message without its plan dump and stack."""
    text = str(getattr(exc, "getMessage", lambda: None)() or exc)
    return "\n".join(text.strip().splitlines()[:n])
