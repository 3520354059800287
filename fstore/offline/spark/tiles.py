"""An aggregation view's tiles built by Spark tasks (fstore.offline.tiles).

A tile file is the partial aggregates of one ingest run's part (one bucket), so each is one
task's work: the task reads the part and tiles it with the compiled kernel the local engine
uses (fstore.offline.tiles.write_tile_file), and the files are the local engine's byte for
byte in content. A Spark ``groupBy(key, tile)`` would add the floats in another order, so its
sums would not be the local engine's exactly. The driver keeps the tiles document, under the
view's lock, as fstore.offline.tiles.sync_tiles does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa

from ...errors import OfflineStoreError
from ...repo.names import view_name
from ..store import OfflineStore
from ..tiles import events_view, sync_tiles, write_tile_file
from ..windows import one_matrix

DONE = pa.schema([("out", pa.string())])


def spark_sync_tiles(spark: Any, store: OfflineStore, view: dict[str, Any]) -> int:
    """``sync_tiles`` with each new tile file written by a Spark task; files written."""
    vdir = store.view_dir(events_view(view))

    def build_all(jobs: list[tuple[str, str]]) -> None:
        from pyspark.sql.pandas.types import from_arrow_schema

        frame = spark.createDataFrame(pa.table({"part": [j[0] for j in jobs], "out": [j[1] for j in jobs]}))
        tasks = max(1, min(len(jobs), 4 * spark.sparkContext.defaultParallelism))
        done = frame.repartition(tasks).mapInArrow(_tiler(view, vdir), from_arrow_schema(DONE)).collect()
        if len(done) != len(jobs):  # never expected: each task reports every file it wrote
            raise OfflineStoreError(f"{view_name(view)}: {len(jobs) - len(done)} tile file(s) were not written")

    return sync_tiles(store, view, one_matrix(view), build_all)


def _tiler(view: dict[str, Any], vdir: Path) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def tile(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        matrix = one_matrix(view)
        for batch in batches:
            for row in batch.to_pylist():
                write_tile_file(view, vdir, row["part"], row["out"], matrix)
                yield pa.RecordBatch.from_pydict({"out": [row["out"]]}, schema=DONE)

    return tile
