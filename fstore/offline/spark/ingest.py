"""Ingest in Spark: source units read and typed by Spark tasks, bucketed, sorted and
written as the local engine's parts, so that either engine reads the other's store.

One Spark job reads the units (one task per few units): each task types its units with
fstore's own rule (fstore.offline.rows, so types, casts and bad rows are the local
engine's) and tags every row with its bucket, its unit's place in the run and its place
in the unit. A second job partitions the rows by bucket, sorts each bucket by (keys,
event time, created time, unit, place), which is the order the local engine's stable
sort gives, and writes one part per bucket. The driver keeps the manifest: the run is
recorded, and swapped in, exactly as the local engine does it (OfflineStore.ingest).

Bad rows: a unit with any is reported by its task; the driver then reads the run's
units itself to raise the local engine's BadRows, every bad row named (the rare path,
so the message is the one rule's, not a copy of it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...progress import Reporter
from ...repo.definitions import Source
from ...repo.names import view_name
from ..layout import CREATED_TS, EVENT_TS, UNIT, bucket_ids, offline_schema
from ..loaders import Loader, SourceUnit, get_loader
from ..problems import RowProblems
from ..rows import read_typed
from ..parts import part_path, write_parquet as write_part
from ..store import OfflineStore
from .frames import BUCKET, POS, bucket_partitions, read_stored

SEQ, KIND, BAD, ROWS, NULL_ROWS, NULL_COLS = "__seq", "__kind", "__bad", "__rows", "__null_rows", "__null_cols"
DATA, STATS = 0, 1  # a task's rows: typed rows, then one row of counts per unit
BATCH_ROWS = 1 << 16
WRITTEN = pa.schema([("bucket", pa.int32()), ("rel", pa.string()), ("rows", pa.int64()), ("min", pa.int64()),
                     ("max", pa.int64())])  # what a write task reports of each part


class SparkStore(OfflineStore):
    """The offline store whose ingest runs in Spark; reading is the local store's."""

    def __init__(self, config: Any, spark: Callable[[], Any]) -> None:
        super().__init__(config)
        self._spark = spark

    def _load(self, view: dict[str, Any], source: dict[str, Any], loader: Loader, todo: list[SourceUnit],
              manifest: dict[str, Any], problems: RowProblems, written: list[Path], replaced: list[Path],
              progress: Reporter) -> int:
        if view.get("transform"):  # transformations run in process for now (docs/scaling.md)
            return super()._load(view, source, loader, todo, manifest, problems, written, replaced, progress)
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        spark = self._spark()
        typed = _read_units(spark, self, view, source, todo, manifest["buckets"]).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            stats = typed.where(F.col(KIND) == STATS).select(SEQ, BAD, ROWS, NULL_ROWS, NULL_COLS).collect()
            progress.advance(len(todo), info="read by Spark")
            if any(s[BAD] for s in stats):  # the local reading names every bad row, and raises
                return super()._load(view, source, loader, todo, manifest, problems, written, replaced, progress)
            for s in sorted(stats, key=lambda s: s[SEQ]):
                if s[NULL_ROWS]:
                    problems.skipped_null_keys(s[NULL_ROWS], s[NULL_COLS].split("\0"))
            run_id, unit_ids, gone, affected = self.begin_run(manifest, todo)
            uid = F.element_at(F.create_map(*[F.lit(x) for i, u in enumerate(todo) for x in (i, unit_ids[u.id])]),
                               F.col(SEQ))
            rows = typed.where(F.col(KIND) == DATA).withColumn(UNIT, uid.cast("int"))
            columns = [f.name for f in offline_schema(view)] + [BUCKET, SEQ, POS]
            rows = rows.select(*columns)
            vdir = self.view_dir(view)
            for i, run in enumerate(affected):  # a changed unit's run: its other rows are kept, after the new
                old = read_stored(spark, view, [vdir / p for p in run["parts"].values()],
                                  [UNIT, *(f["name"] for f in view["features"])])
                old = old.where(~F.col(UNIT).isin(sorted(gone))).withColumn(SEQ, F.lit(len(todo) + i))
                rows = rows.unionByName(old.select(*columns))
            parts = _write_parts(spark, rows, view, vdir, run_id, manifest["buckets"])
            written.extend(vdir / p["rel"] for p in parts)
            n = sum(p["rows"] for p in parts)
            events = [min(p["min"] for p in parts), max(p["max"] for p in parts)] if n else None
            by_seq = {s[SEQ]: s[ROWS] for s in stats}
            unit_rows = [(u, by_seq[i]) for i, u in enumerate(todo)]
            self.end_run(view, manifest, run_id, unit_ids, affected, unit_rows,
                         {str(p["bucket"]): p["rel"] for p in parts}, n, events, replaced)
            return sum(r for _, r in unit_rows)
        finally:
            typed.unpersist()


def _read_units(spark: Any, store: OfflineStore, view: dict[str, Any], source: dict[str, Any],
                todo: list[SourceUnit], n_buckets: int) -> Any:
    """The typed rows of ``todo`` (DATA rows: the offline columns, bucket, unit place, row
    place) and one STATS row per unit (bad rows?, rows, rows skipped for a null key)."""
    units = pa.table({SEQ: pa.array(range(len(todo)), pa.int32()), "id": [u.id for u in todo],
                      "fingerprint": [u.fingerprint for u in todo],
                      "path": [None if u.path is None else str(u.path) for u in todo]})
    tasks = max(1, min(len(todo), 4 * spark.sparkContext.defaultParallelism))
    schema = _typed_schema(view)
    read = _unit_reader(view, source, store.config.root, store.config.store_paths, n_buckets, schema)
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.createDataFrame(units).repartition(tasks).mapInArrow(read, from_arrow_schema(schema))


def _typed_schema(view: dict[str, Any]) -> pa.Schema:
    base = offline_schema(view)
    return pa.schema([*base, pa.field(BUCKET, pa.int32()), pa.field(SEQ, pa.int32()), pa.field(POS, pa.int64()),
                      pa.field(KIND, pa.int8()), pa.field(BAD, pa.bool_()), pa.field(ROWS, pa.int64()),
                      pa.field(NULL_ROWS, pa.int64()), pa.field(NULL_COLS, pa.string())])


def _unit_reader(view: dict[str, Any], source: dict[str, Any], root: Path, exclude: tuple[Path, ...],
                 n_buckets: int, schema: pa.Schema) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The task that reads units (runs on an executor: only picklable state)."""

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        loader = get_loader(Source(**source), root, exclude)
        for batch in batches:
            for row in batch.to_pylist():
                unit = SourceUnit(row["id"], row["fingerprint"], None if row["path"] is None else Path(row["path"]))
                problems = RowProblems(f"ingest of {view_name(view)}")
                table = read_typed(view, source, loader, unit, problems, row[SEQ])
                bad = table is None or bool(problems)
                if not bad:
                    yield from _tagged(table, row[SEQ], n_buckets, view, schema)
                yield _stats(schema, row[SEQ], bad, 0 if bad else table.num_rows, problems)

    return read


def _tagged(table: pa.Table, seq: int, n_buckets: int, view: dict[str, Any],
            schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    n = table.num_rows
    extra = {BUCKET: pa.array(bucket_ids(table, view["join_keys"], n_buckets), pa.int32()),
             SEQ: pa.array(np.full(n, seq, np.int32)), POS: pa.array(np.arange(n, dtype=np.int64)),
             KIND: pa.array(np.full(n, DATA, np.int8)), BAD: pa.nulls(n, pa.bool_()), ROWS: pa.nulls(n, pa.int64()),
             NULL_ROWS: pa.nulls(n, pa.int64()), NULL_COLS: pa.nulls(n, pa.string())}
    full = pa.table({f.name: table.column(f.name) if f.name in table.column_names else extra[f.name]
                     for f in schema}, schema=schema)
    yield from full.to_batches(max_chunksize=BATCH_ROWS)


def _stats(schema: pa.Schema, seq: int, bad: bool, rows: int, problems: RowProblems) -> pa.RecordBatch:
    values = {SEQ: seq, KIND: STATS, BAD: bad, ROWS: rows, NULL_ROWS: problems.null_key_rows,
              NULL_COLS: "\0".join(problems.null_key_columns)}
    return pa.RecordBatch.from_pydict({f.name: pa.array([values.get(f.name)], f.type) for f in schema}, schema=schema)


def _write_parts(spark: Any, rows: Any, view: dict[str, Any], vdir: Path, run_id: str,
                 n_buckets: int) -> list[dict[str, Any]]:
    """Sort each bucket's rows as the local engine does and write it as one part of
    ``run_id``; (bucket, path, rows, min and max event time) of each part written."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    keys = view["join_keys"]
    ordered = rows.repartition(bucket_partitions(spark, n_buckets), BUCKET).sortWithinPartitions(
        BUCKET, *keys, F.col(EVENT_TS).asc_nulls_first(), F.col(CREATED_TS).asc_nulls_first(), SEQ, POS)
    stored = [f.name for f in offline_schema(view)]
    schema = offline_schema(view)

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        got = [b for b in batches if b.num_rows]
        if not got:
            return
        table = pa.Table.from_batches(got)
        ids = table.column(BUCKET).to_numpy()
        cuts = np.flatnonzero(np.diff(ids)) + 1
        for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(ids)]))):
            part = table.slice(int(lo), int(hi - lo)).select(stored).cast(schema)
            rel = part_path(int(ids[lo]), run_id)
            (vdir / rel).parent.mkdir(parents=True, exist_ok=True)
            write_part(part, vdir / rel, view)
            ts = pc.min_max(part.column(EVENT_TS).cast(pa.int64()))
            yield pa.RecordBatch.from_pydict({"bucket": [int(ids[lo])], "rel": [rel], "rows": [part.num_rows],
                                              "min": [ts["min"].as_py()], "max": [ts["max"].as_py()]},
                                             schema=WRITTEN)

    return [r.asDict() for r in ordered.mapInArrow(write, from_arrow_schema(WRITTEN)).collect()]
