"""Point-in-time training sets in Spark: fstore.offline.historical's rule, computed as a
sorted sweep per entity key instead of the compiled kernel's binary searches.

For one view: the view's rows and the entity rows are put in one DataFrame, partitioned
by entity-key bucket and, inside a bucket, by key; each key's rows are ordered by time,
a view row before an entity row of the same time (the time bound is inclusive). An
entity row's winner is then the maximum, over the view rows before it, of
``(event, created, run, place in part)``: the newest row by event time, ties to the
newest created time, an exact tie to the later run and row (the local engine's storage
order). Its ttl is checked after: the winner is the newest row not after the entity
time, so if it is older than ``time - ttl`` every candidate is. The time a view row is
ordered by is its event time, or for ``as_of: created_timestamp`` its *ready time*
``max(created or event, event)`` (fstore.offline.asof_created gives the proof).

The features ride in the maximum's struct, so no join back is needed; only the entity
rows' winners come back to the driver, where fstore.offline.historical.assemble puts
them in entity order and fills defaults, as for the local engine.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ...repo.definitions import AS_OF_CREATED, DTYPES
from ...repo.resolve import ViewRequest
from ..historical import entity_keys, require_manifest
from ..layout import bucket_ids
from ..store import OfflineStore
from .frames import BUCKET, CR, EV, NULL_CREATED, POS, RUN, bucket_partitions, read_parts, to_arrow

ROW, T, KIND, WIN = "__row", "__t", "__kind", "__win"
VIEW_ROW, ENTITY_ROW = 0, 1  # at equal times a view row sorts first: the bound is inclusive


def join_view(spark: Any, store: OfflineStore, req: ViewRequest, entities: pa.Table,
              ts: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """The winner's ``req.features`` per entity row (entity order, nulls where none) and
    whether one won: what fstore.offline.historical.assemble takes."""
    view = req.view
    manifest = require_manifest(store, view)
    keys = view["join_keys"]
    wanted = list(dict.fromkeys(req.features))
    key_table, valid = entity_keys(view, entities)
    rows = np.flatnonzero(valid)  # a null key matches nothing: such rows never go to Spark
    ent = key_table.take(pa.array(rows)).append_column(ROW, pa.array(rows, pa.int64())) \
        .append_column(T, pa.array(ts[rows], pa.int64())) \
        .append_column(BUCKET, pa.array(bucket_ids(key_table, keys, manifest["buckets"])[rows], pa.int32()))
    paths = [p for b in range(manifest["buckets"]) for p in store.parts(view, manifest, b)]
    got = _winners(spark, view, ent, paths, wanted, manifest["buckets"]) if len(ent) and paths else None
    by_name = {f["name"]: f for f in view["features"]}
    schema = pa.schema([pa.field(n, DTYPES[by_name[n]["dtype"]]) for n in wanted])
    index = np.full(len(ts), -1, dtype=np.int64)
    if got is None or not got.num_rows:
        return schema.empty_table().take(pa.array(index, mask=index < 0)), np.zeros(len(ts), dtype=bool)
    index[got.column(ROW).to_numpy()] = np.arange(got.num_rows)
    taken = pa.table({n: got.column(n).cast(schema.field(n).type) for n in wanted}, schema=schema)
    hit = np.zeros(len(ts), dtype=bool)
    hit[got.column(ROW).to_numpy()] = got.column("__hit").to_numpy(zero_copy_only=False)
    return taken.take(pa.array(index, mask=index < 0)), hit


def _winners(spark: Any, view: dict[str, Any], ent: pa.Table, paths: list, wanted: list[str],
             n_buckets: int) -> pa.Table:
    """(__row, __hit, features) of every entity row sent, collected from Spark."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    keys = view["join_keys"]
    rows = read_parts(spark, view, paths, wanted)
    if view.get("as_of") == AS_OF_CREATED:  # ready time: available (created, or event) and happened
        t = F.greatest(F.when(F.col(CR) == F.lit(NULL_CREATED), F.col(EV)).otherwise(F.col(CR)), F.col(EV))
    else:
        t = F.col(EV)
    win = F.struct(F.col(EV).alias(EV), F.col(CR).alias(CR), F.col(RUN).alias(RUN), F.col(POS).alias(POS),
                   *[F.col(n) for n in wanted])
    view_side = rows.select(*keys, F.col(BUCKET), t.alias(T), F.lit(VIEW_ROW).alias(KIND),
                            F.lit(None).cast("long").alias(ROW), win.alias(WIN))
    ent_df = spark.createDataFrame(ent)
    ent_side = ent_df.select(*keys, F.col(BUCKET), F.col(T), F.lit(ENTITY_ROW).alias(KIND), F.col(ROW),
                             F.lit(None).cast(win_type(view_side)).alias(WIN))
    both = view_side.unionByName(ent_side).repartition(bucket_partitions(spark, n_buckets), BUCKET)
    sweep = Window.partitionBy(BUCKET, *keys).orderBy(T, KIND).rowsBetween(Window.unboundedPreceding, 0)
    best = both.withColumn("__best", F.max(WIN).over(sweep)).where(F.col(KIND) == ENTITY_ROW)
    ttl = view.get("ttl_us") or 0
    hit = F.col("__best").isNotNull()
    if ttl > 0:
        hit = hit & (F.col(T) - F.col(f"__best.{EV}") <= F.lit(ttl))
    out = best.select(F.col(ROW), hit.alias("__hit"),
                      *[F.when(hit, F.col(f"__best.{n}")).alias(n) for n in wanted])
    return to_arrow(out)


def win_type(df: Any) -> Any:
    return df.schema[WIN].dataType
