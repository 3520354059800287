"""The newest row per entity in Spark, for materialization: fstore.offline.newest's rule.

Each run is read from its own first event time (the materialization's plan), all up to
END; per key the row with the greatest ``(event, created, run, place in part)`` wins, as
one aggregation (a maximum of a struct, no sort of the history). The winners come back
ordered by (bucket, key), and are handed out one bucket at a time, each in key order as
the online writer wants them.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from ..layout import CREATED_TS, EVENT_TS, offline_schema
from ..newest import Reads
from ..store import OfflineStore
from .frames import BUCKET, CR, EV, NULL_CREATED, POS, RUN, read_parts, to_arrow


def newest(spark: Any, store: OfflineStore, view: dict[str, Any], reads: Reads, end_us: int,
           buckets: list[int]) -> Iterator[tuple[int, pa.Table]]:
    from pyspark.sql import functions as F

    keys = view["join_keys"]
    features = [f["name"] for f in view["features"]]
    schema = offline_schema(view)
    out_schema = pa.schema([schema.field(n) for n in [*keys, EVENT_TS, CREATED_TS, *features]])
    wanted = set(buckets)
    paths = [run.parts[b] for run, _ in reads for b in sorted(run.parts) if b in wanted]
    if not paths:
        got = out_schema.empty_table().append_column(BUCKET, pa.array([], pa.int32()))
    else:
        rows = read_parts(spark, view, paths, features).where(F.col(EV) <= F.lit(end_us))
        lows = [(run.seq, lo) for run, lo in reads if lo is not None]
        if lows:
            low = F.lit(None).cast("long")
            for seq, lo in lows:
                low = F.when(F.col(RUN) == F.lit(seq), F.lit(lo)).otherwise(low)
            rows = rows.where(low.isNull() | (F.col(EV) >= low))
        best = F.max(F.struct(EV, CR, RUN, POS, *features)).alias("__best")
        top = rows.groupBy(BUCKET, *keys).agg(best).orderBy(BUCKET, *keys)
        got = to_arrow(top.select(
            *keys, F.timestamp_micros(F.col(f"__best.{EV}")).alias(EVENT_TS),
            F.when(F.col(f"__best.{CR}") == F.lit(NULL_CREATED), None)
             .otherwise(F.timestamp_micros(F.col(f"__best.{CR}"))).alias(CREATED_TS),
            *[F.col(f"__best.{n}").alias(n) for n in features], BUCKET))
    ids = got.column(BUCKET).to_numpy(zero_copy_only=False) if got.num_rows else np.zeros(0, np.int32)
    table = pa.table({f.name: got.column(f.name).cast(f.type) for f in out_schema}, schema=out_schema)
    for b in buckets:
        lo, hi = np.searchsorted(ids, b, side="left"), np.searchsorted(ids, b, side="right")
        yield b, table.slice(int(lo), int(hi - lo))
