"""Writing a run's parts in Spark: the rows partitioned by bucket, each bucket sorted by
(keys, event time, created time, unit place, row place), which is the order the local
engine's stable sort gives (fstore.offline.parts), and written as one part per bucket by
the task that holds it. What each part holds comes back to the driver, which records
the run (fstore.offline.store)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..layout import CREATED_TS, EVENT_TS, offline_schema
from ..parts import part_path, write_parquet as write_part
from .frames import BUCKET, POS, bucket_partitions
from .typed import SEQ

WRITTEN = pa.schema([("bucket", pa.int32()), ("rel", pa.string()), ("rows", pa.int64()), ("min", pa.int64()),
                     ("max", pa.int64())])  # what a write task reports of each part


def write_run(spark: Any, rows: Any, view: dict[str, Any], vdir: Path, run_id: str, n_buckets: int,
              written: list[Path]) -> tuple[dict[str, str], int, list[int] | None]:
    """``rows`` (offline columns, ``__bucket``, ``__seq``, ``__pos``) written as run ``run_id``:
    (bucket -> part path, rows, [min, max] event time or None). The parts written are added
    to ``written``, so a failed run can delete them."""
    parts = write_parts(spark, rows, view, vdir, run_id, n_buckets)
    written.extend(vdir / p["rel"] for p in parts)
    n = sum(p["rows"] for p in parts)
    events = [min(p["min"] for p in parts), max(p["max"] for p in parts)] if n else None
    return {str(p["bucket"]): p["rel"] for p in parts}, n, events


def write_parts(spark: Any, rows: Any, view: dict[str, Any], vdir: Path, run_id: str,
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
