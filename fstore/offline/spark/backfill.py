"""``fstore backfill`` in Spark: fstore.offline.backfill's rule (which rows are copied from
the old version, which recomputed, how units are numbered) with the rows read, transformed
and written by Spark.

The old version's rows are read by Spark from its parts; the transformation's rows come from
the ingest paths (fstore.offline.spark.ingest.SparkStore.typed_rows: Spark SQL, or a row-wise
Python function in tasks). Ties on (keys, event time, created time) are kept in the local
engine's order: the copied rows first, in log order (run, then place in part; for a full
transformation the rows pushed offline after the others), then the recomputed ones in
reading order (unit, then place). A full Python transformation, and
whatever the ingest paths leave to the driver, runs the local engine's backfill on the
driver, over the same store.
"""
from __future__ import annotations

from typing import Any

from ...progress import Reporter, Silent
from ...repo.definitions import Source
from ...repo.names import view_name
from ...repo.transforms import FULL, ingest_mode
from ..backfill import BackfillResult, backfill
from ..layout import EVENT_TS, UNIT, offline_schema
from ..loaders import get_loader
from ..transform import FULL_UNIT, INPUTS, full_unit_id, inputs_fingerprint, inputs_of, pushed_units
from .frames import BUCKET, POS, RUN, read_stored
from .ingest import SparkStore
from .transform import not_portable
from .typed import BAD, DATA, KIND, SEQ
from .write import write_run

FRESH = "__fresh"


def spark_backfill(store: SparkStore, old: dict[str, Any], new: dict[str, Any], source: dict[str, Any],
                   start_us: int, end_us: int, progress: Reporter | None = None) -> BackfillResult:
    """Write ``new``'s offline history (fstore.offline.backfill); the caller registers ``new``."""
    from pyspark.sql import functions as F

    progress = progress or Silent()
    units = get_loader(Source(**source), store.config.root, store.config.store_paths).units()
    mode, _ = ingest_mode(new)
    spark = store._spark()
    n_buckets = store.config.offline_buckets  # a replaced history is always laid out anew
    manifest = store.manifest(old)
    held: list[Any] = []
    progress.start(f"backfill {view_name(new)} (Spark)", len(units))
    try:
        typed = store.typed_rows(new, source, units, n_buckets, held)
        stats = None if typed is None else store.unit_stats(new, typed)
        # old rows in other buckets than the new layout's would be placed again: left to the driver
        moved = manifest is not None and manifest["buckets"] != n_buckets
        if stats is None or moved or any(s[BAD] for s in stats):  # the driver's path names every bad row
            result = backfill(store, old, new, source, start_us, end_us, progress)
            if stats is not None and not moved and "sql" in new["transform"]:
                raise not_portable(new)
            return result
        progress.advance(len(units), info="read by Spark")
        columns = [f.name for f in offline_schema(new)]
        vdir = store.view_dir(old)
        paths = [vdir / p for run in (manifest or {}).get("runs", []) for p in run["parts"].values()]
        event = F.unix_micros(F.col(EVENT_TS))
        in_window = (event >= F.lit(start_us)) & (event < F.lit(end_us))
        fresh = typed.where(F.col(KIND) == DATA)
        n_runs = max([int(r["id"][1:]) for r in (manifest or {}).get("runs", [])], default=0) + 1
        after = n_runs  # the fresh rows' order: after every old run
        if mode == FULL:  # pushed rows are copied whole, after the others kept (fstore.offline.backfill)
            pushed = pushed_units(manifest or {})
            fid = full_unit_id(manifest or {}, pushed)
            pushed_ids = sorted({e["id"] for e in pushed.values()})
            is_pushed = F.col(UNIT).isin(pushed_ids)
            keep, fresh = ~in_window | is_pushed, fresh.where(in_window).withColumn(UNIT, F.lit(fid).cast("int"))
            after = 2 * n_runs  # pushed rows are ordered n_runs + their run: before the fresh ones
            inputs = inputs_of(new, units)
            extra = {INPUTS: inputs}
        else:
            old_units = (manifest or {}).get("units", {})
            current = {u.id: u for u in units}
            same = {uid for uid, e in old_units.items()
                    if uid in current and current[uid].fingerprint == e["fingerprint"]}
            whole = [e["id"] for uid, e in old_units.items() if uid not in current]  # nothing to recompute them from
            keep = (~in_window | F.col(UNIT).isin(whole)) & F.col(UNIT).isin([old_units[u]["id"] for u in same] + whole)
            entries = {uid: dict(e) for uid, e in old_units.items() if uid in same or uid not in current}
            next_id, ids = (manifest or {}).get("next_unit", 0), []
            for unit in units:
                if unit.id in old_units:
                    ids.append(old_units[unit.id]["id"])
                else:
                    ids.append(next_id)
                    next_id += 1
                if unit.id not in same:
                    entries[unit.id] = {"id": ids[-1], "fingerprint": unit.fingerprint, "rows": 0}
            recompute_all = F.lit(True)
            same_seqs = [i for i, u in enumerate(units) if u.id in same]
            if same_seqs:
                recompute_all = ~F.col(SEQ).isin(same_seqs)
            uid = F.element_at(F.create_map(*[F.lit(x) for i, u in enumerate(ids) for x in (i, u)]), F.col(SEQ))
            fresh = fresh.where(recompute_all | in_window).withColumn(UNIT, uid.cast("int"))
            extra = {}
        rows = fresh.select(*columns, BUCKET, (F.col(SEQ) + F.lit(after)).alias(SEQ), POS, F.lit(True).alias(FRESH))
        if paths:
            kept = read_stored(spark, old, paths, [UNIT, *(f["name"] for f in new["features"])]).where(keep)
            kept = kept.withColumn(SEQ, F.col(RUN).cast("int"))
            if mode == FULL:  # the order first: it reads the stored unit
                kept = kept.withColumn(SEQ, F.when(is_pushed, F.col(SEQ) + F.lit(n_runs)).otherwise(F.col(SEQ)))
                kept = kept.withColumn(UNIT, F.when(is_pushed, F.col(UNIT)).otherwise(F.lit(fid)).cast("int"))
            rows = rows.unionByName(kept.select(*columns, BUCKET, SEQ, POS,
                                                F.lit(False).alias(FRESH)))
        counts = rows.groupBy(UNIT, FRESH).count().collect()
        copied = sum(c["count"] for c in counts if not c[FRESH])
        recomputed = sum(c["count"] for c in counts if c[FRESH])
        if mode == FULL:
            n_pushed = sum(c["count"] for c in counts if not c[FRESH] and c[UNIT] in pushed_ids)
            entries = {FULL_UNIT: {"id": fid, "fingerprint": inputs_fingerprint(inputs),
                                   "rows": copied + recomputed - n_pushed}, **pushed}
        else:
            by_id: dict[int, int] = {}
            for c in counts:
                by_id[c[UNIT]] = by_id.get(c[UNIT], 0) + c["count"]
            for e in entries.values():
                e["rows"] = by_id.get(e["id"], 0)
        out = rows.drop(FRESH)
        store.replace_history_written(new, lambda run_id, buckets, written: write_run(
            spark, out, new, store.view_dir(new), run_id, buckets, written), entries, extra)
        return BackfillResult(view_name(new), view_name(old), mode, copied, recomputed, len(units))
    finally:
        progress.stop()
        for frame in held:
            frame.unpersist()
