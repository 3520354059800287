"""An aggregation view's training-set columns in Spark: fstore.offline.windows' rule, each
bucket answered by a Spark task with the local engine's kernel.

The entity rows go to Spark with their bucket (the offline store's entity-key bucket), are
partitioned by it, and each task answers its buckets with fstore.offline.windows.
bucket_aggregates (the bucket's events and tiles read from the store on the executor, the
compiled kernel over them): the values are the local engine's, bit for bit. Only the
answers come back; the driver puts them in entity order and fills defaults
(fstore.offline.windows.aggregate_columns), as for the local engine.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa

from ...config import RepoConfig
from ...repo.definitions import DTYPES
from ...repo.resolve import ViewRequest
from ..layout import bucket_ids
from ..store import OfflineStore
from ..windows import aggregate_columns, bucket_aggregates, wanted_aggregations
from .frames import BUCKET, bucket_partitions, to_arrow

ROW, T, VALID = "__row", "__t", "__valid"


def join_aggregations(spark: Any, store: OfflineStore, req: ViewRequest, manifest: dict[str, Any],
                      key_table: pa.Table, valid: np.ndarray,
                      ts: np.ndarray) -> Iterator[tuple[int, str, pa.ChunkedArray]]:
    """(position, output name, column) of each requested aggregate (fstore.offline.windows)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    view = req.view
    n_buckets = manifest["buckets"]
    wanted = wanted_aggregations(req)
    dtypes = {f["name"]: f["dtype"] for f in view["features"]}
    out_schema = pa.schema([pa.field(ROW, pa.int64())] + [pa.field(a["name"], DTYPES[dtypes[a["name"]]])
                                                          for a in wanted])
    n = len(ts)
    ent = key_table.append_column(ROW, pa.array(np.arange(n, dtype=np.int64))) \
        .append_column(T, pa.array(ts, pa.int64())).append_column(VALID, pa.array(np.asarray(valid, dtype=bool))) \
        .append_column(BUCKET, pa.array(bucket_ids(key_table, view["join_keys"], n_buckets), pa.int32()))
    task = _bucket_task(store.config, view, manifest, wanted, out_schema)
    frame = spark.createDataFrame(ent).repartition(bucket_partitions(spark, n_buckets), BUCKET)
    got = to_arrow(frame.mapInArrow(task, from_arrow_schema(out_schema))) if n else out_schema.empty_table()
    positions = got.column(ROW).to_numpy()
    values = {a["name"]: got.column(a["name"]).combine_chunks() for a in wanted}
    yield from aggregate_columns(req, n, positions, [values] if n else [])


def _bucket_task(config: RepoConfig, view: dict[str, Any], manifest: dict[str, Any], wanted: list[dict[str, Any]],
                 schema: pa.Schema) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The task answering the entity rows of its buckets (runs on an executor)."""
    keys = view["join_keys"]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        got = [b for b in batches if b.num_rows]
        if not got:
            return
        table = pa.Table.from_batches(got)
        store = OfflineStore(config)
        ids = table.column(BUCKET).to_numpy()
        for b in np.unique(ids):
            rows = pa.array(np.flatnonzero(ids == b))
            part = table.take(rows)
            res = bucket_aggregates(store, view, manifest, int(b), wanted, part.select(keys),
                                    part.column(T).to_numpy(),
                                    part.column(VALID).to_numpy(zero_copy_only=False).astype(np.uint8))
            cols = {ROW: part.column(ROW).combine_chunks(), **res}
            yield from pa.table({f.name: cols[f.name].cast(f.type) for f in schema}, schema=schema).to_batches()

    return run
