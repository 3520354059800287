"""Ingest in Spark: source units read (and transformed) and typed by Spark tasks, bucketed,
sorted and written as the local engine's parts, so that either engine reads the other's store.

One Spark job makes the typed rows (fstore.offline.spark.typed): plain units and a row-wise
Python transformation's units are read by tasks (one per few units), a SQL transformation
runs in Spark SQL (fstore.offline.spark.transform). A second job partitions the rows by
bucket, sorts and writes them (fstore.offline.spark.write). The driver keeps the manifest:
the run is recorded, and swapped in, exactly as the local engine does it (OfflineStore.ingest).
A full (not row-wise) SQL transformation replaces the history with one run, as
fstore.offline.transform.ingest_full does (the rows pushed offline copied into it, after the
recomputed ones, their units found by that module's rule); a full Python one runs on the driver (it takes
the whole table in one process whichever process that is: docs/scaling.md).

Bad rows: a unit with any is reported by its task; the driver then reads the run's
units itself to raise the local engine's BadRows, every bad row named (the rare path,
so the message is the one rule's, not a copy of it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ...progress import Reporter
from ...repo.transforms import INCREMENTAL, ingest_mode
from ..layout import UNIT, offline_schema
from ..loaders import Loader, SourceUnit
from ..problems import RowProblems
from ..store import OfflineStore
from ..transform import FULL_UNIT, INPUTS, full_unit_id, ingest_full, inputs_fingerprint, inputs_of, pushed_units
from .frames import BUCKET, POS, RUN, read_stored
from .transform import not_portable, sql_failed, sql_rows
from .typed import BAD, DATA, KIND, NULL_COLS, NULL_ROWS, ROWS, SEQ, STATS, read_units
from .write import write_run


class SparkStore(OfflineStore):
    """The offline store whose ingest runs in Spark; reading is the local store's."""

    def __init__(self, config: Any, spark: Callable[[], Any]) -> None:
        super().__init__(config)
        self._spark = spark

    def typed_rows(self, view: dict[str, Any], source: dict[str, Any], units: list[SourceUnit], n_buckets: int,
                   held: list[Any]) -> Any | None:
        """The typed rows of ``units`` made in Spark (fstore.offline.spark.typed), persisted
        (in ``held``); None when the driver must make them (a full Python transformation, or
        what fstore.offline.spark.transform leaves to it)."""
        from pyspark import StorageLevel

        spark = self._spark()
        t = view.get("transform") or {}
        row_wise = ingest_mode(view)[0] == INCREMENTAL
        if "sql" in t:
            typed = sql_rows(spark, self, view, source, units, n_buckets, row_wise, held)
        elif t and not row_wise:
            typed = None
        else:
            typed = read_units(spark, self, view, source, units, n_buckets)
        if typed is not None:
            typed = typed.persist(StorageLevel.MEMORY_AND_DISK)
            held.append(typed)
        return typed

    def unit_stats(self, view: dict[str, Any], typed: Any) -> list[Any]:
        """Each unit's (or SQL output partition's) STATS row, in ``__seq`` order; this job
        makes the rows. A Spark error while a SQL transformation runs names the view."""
        from pyspark.errors import PySparkException
        from pyspark.sql import functions as F

        try:
            got = typed.where(F.col(KIND) == STATS).select(SEQ, BAD, ROWS, NULL_ROWS, NULL_COLS).collect()
        except PySparkException as exc:
            if "sql" not in (view.get("transform") or {}):
                raise
            raise sql_failed(view, exc) from None
        return sorted(got, key=lambda s: s[SEQ])

    def _load(self, view: dict[str, Any], source: dict[str, Any], loader: Loader, todo: list[SourceUnit],
              manifest: dict[str, Any], problems: RowProblems, written: list[Path], replaced: list[Path],
              progress: Reporter) -> int:
        from pyspark.sql import functions as F

        held: list[Any] = []
        try:
            typed = self.typed_rows(view, source, todo, manifest["buckets"], held)
            stats = None if typed is None else self.unit_stats(view, typed)
            if stats is None or any(s[BAD] for s in stats):  # the driver's path: it names every bad row
                n = super()._load(view, source, loader, todo, manifest, problems, written, replaced, progress)
                if stats is not None and "sql" in view["transform"]:
                    raise not_portable(view)
                return n
            progress.advance(len(todo), info="read by Spark")
            for s in stats:
                if s[NULL_ROWS]:
                    problems.skipped_null_keys(s[NULL_ROWS], s[NULL_COLS].split("\0"))
            run_id, unit_ids, gone, affected = self.begin_run(manifest, todo)
            uid = F.element_at(F.create_map(*[F.lit(x) for i, u in enumerate(todo) for x in (i, unit_ids[u.id])]),
                               F.col(SEQ))
            rows = typed.where(F.col(KIND) == DATA).withColumn(UNIT, uid.cast("int"))
            columns = [f.name for f in offline_schema(view)] + [BUCKET, SEQ, POS]
            rows = rows.select(*columns)
            vdir = self.view_dir(view)
            spark = self._spark()
            for i, run in enumerate(affected):  # a changed unit's run: its other rows are kept, after the new
                old = read_stored(spark, view, [vdir / p for p in run["parts"].values()],
                                  [UNIT, *(f["name"] for f in view["features"])])
                old = old.where(~F.col(UNIT).isin(sorted(gone))).withColumn(SEQ, F.lit(len(todo) + i))
                rows = rows.unionByName(old.select(*columns))
            parts, n, events = write_run(spark, rows, view, vdir, run_id, manifest["buckets"], written)
            by_seq = {s[SEQ]: s[ROWS] for s in stats}
            unit_rows = [(u, by_seq[i]) for i, u in enumerate(todo)]
            self.end_run(view, manifest, run_id, unit_ids, affected, unit_rows, parts, n, events, replaced)
            return sum(r for _, r in unit_rows)
        finally:
            for frame in held:
                frame.unpersist()

    def _ingest_full(self, view: dict[str, Any], source: dict[str, Any], manifest: dict[str, Any], loader: Loader,
                     units: list[SourceUnit], problems: RowProblems) -> tuple[int, int]:
        """fstore.offline.transform.ingest_full with the rows made and written by Spark: the
        whole history replaced by one run, when an input changed: the recomputed rows (one
        unit) and, copied as they are, the rows pushed offline (their units), after them."""
        from pyspark.sql import functions as F

        inputs = inputs_of(view, units)
        if manifest.get(INPUTS) == inputs:
            return 0, 0
        pushed = pushed_units(manifest)
        if pushed and manifest["buckets"] != self.config.offline_buckets:  # pushed rows placed anew: the driver
            return ingest_full(self, view, source, manifest, loader, units, problems)
        held: list[Any] = []
        try:
            # a replaced history is laid out anew, in the configured buckets (OfflineStore.replace_written)
            typed = self.typed_rows(view, source, units, self.config.offline_buckets, held)
            stats = None if typed is None else self.unit_stats(view, typed)
            if stats is None or any(s[BAD] for s in stats):
                done = ingest_full(self, view, source, manifest, loader, units, problems)
                if stats is not None:
                    raise not_portable(view)
                return done
            self.null_keys(view, stats, problems)
            fid = full_unit_id(manifest, pushed)
            columns = [f.name for f in offline_schema(view)]
            rows = typed.where(F.col(KIND) == DATA).withColumn(UNIT, F.lit(fid).cast("int"))
            rows = rows.select(*columns, BUCKET, SEQ, POS)
            spark, vdir = self._spark(), self.view_dir(view)
            ids = sorted({e["id"] for e in pushed.values()})
            paths = [vdir / p for run in manifest["runs"] if set(ids) & set(run["units"]) for p in run["parts"].values()]
            if paths:  # pushed rows after the recomputed ones (a tie keeps them last), in log order, as locally
                after = max((s[SEQ] for s in stats), default=-1) + 1
                old = read_stored(spark, view, paths, [UNIT, *(f["name"] for f in view["features"])])
                rows = rows.unionByName(old.where(F.col(UNIT).isin(ids)).select(
                    *columns, BUCKET, (F.col(RUN) + F.lit(after)).cast("int").alias(SEQ), POS))
            n = sum(s[ROWS] for s in stats)
            entry = {"id": fid, "fingerprint": inputs_fingerprint(inputs), "rows": n}
            self.replace_written(view, manifest, lambda run_id, buckets, written: write_run(
                spark, rows, view, vdir, run_id, buckets, written), {FULL_UNIT: entry, **pushed}, {INPUTS: inputs})
            return len(units), n
        finally:
            for frame in held:
                frame.unpersist()

    @staticmethod
    def null_keys(view: dict[str, Any], stats: list[Any], problems: RowProblems) -> None:
        """Rows skipped for a null key over a whole output typed in pieces: counted, and the
        key columns named in key order (as one typing of the whole output names them)."""
        cols = {c for s in stats if s[NULL_ROWS] for c in s[NULL_COLS].split("\0")}
        n = sum(s[NULL_ROWS] or 0 for s in stats)
        if n:
            problems.skipped_null_keys(n, [k for k in view["join_keys"] if k in cols])
