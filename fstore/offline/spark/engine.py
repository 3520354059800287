"""SparkEngine: the OfflineEngine interface (fstore.offline.engine) run by Spark.

Each method runs a few Spark jobs over the offline layout the local engine uses, and
returns what the local engine returns, exactly (its tests run both and compare). The
session is made on first use (fstore.offline.spark.session), so commands that need no
offline work (plan, serve) start no JVM.

A transformation (issue 14, part 1) runs in Spark too (docs/scaling.md, "Transformations
on this engine"): a SQL one in Spark SQL over the temporary view ``source``, a row-wise
Python one in ``mapInArrow`` tasks, a backfill from both (fstore.offline.spark.ingest,
transform, backfill); their rows go through the same typing, bucketing and part writing
(fstore.offline.spark.typed, write). An aggregation view's events and tiles are made by
Spark tasks (fstore.offline.spark.tiles), and its training-set columns too, a task per few
buckets with the local kernel (fstore.offline.spark.windows).
"""
from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa

from ...config import RepoConfig
from ...progress import Reporter, Silent
from ...repo.definitions import Source
from ...repo.resolve import ViewRequest
from ...repo.aggregations import is_aggregation_view
from ..backfill import BackfillResult
from ..historical import assemble, entity_keys, prepare_entities, require_manifest
from ..loaders import get_loader
from ..newest import Reads
from ..store import IngestResult
from ..tiles import events_view
from .backfill import spark_backfill
from .ingest import SparkStore
from .newest import newest
from .pit import join_view
from .session import spark_session
from .tiles import spark_sync_tiles
from .windows import join_aggregations


class SparkEngine:
    """Offline work in Spark: ``offline_store: {engine: spark, spark: {master, conf}}``."""

    def __init__(self, config: RepoConfig) -> None:
        self.settings = config.offline_spark
        self.store = SparkStore(config, self.spark)

    def spark(self) -> Any:
        """The SparkSession (started on first use, then shared by the process)."""
        return spark_session(self.settings)

    def ingest(self, view: dict[str, Any], source: dict[str, Any], progress: Reporter | None = None) -> IngestResult:
        if is_aggregation_view(view):  # events loaded by Spark, each new tile file made by a task
            result = self.store.ingest(events_view(view), source, progress)
            spark_sync_tiles(self.spark(), self.store, view)
            return result
        return self.store.ingest(view, source, progress)

    def backfill(self, old: dict[str, Any], new: dict[str, Any], source: dict[str, Any], start_us: int,
                 end_us: int, progress: Reporter | None = None) -> BackfillResult:
        """fstore.offline.backfill's rule, the rows made and written by Spark (fstore.offline.spark.backfill).
        An aggregation view's history is its transformed events: they are backfilled, then the
        new version's tiles made by Spark tasks, as its ingest does."""
        if is_aggregation_view(new):
            result = spark_backfill(self.store, events_view(old), events_view(new), source, start_us, end_us, progress)
            spark_sync_tiles(self.spark(), self.store, new)
            return result
        return spark_backfill(self.store, old, new, source, start_us, end_us, progress)

    def historical(self, requests: list[ViewRequest], entity_df: Any, event_timestamp_column: str,
                   progress: Reporter | None = None) -> pa.Table:
        progress = progress or Silent()
        entities, ts = prepare_entities(entity_df, event_timestamp_column, requests)
        joined: list[Any] = []
        done: dict[int, Any] = {}  # aggregation views: answered per bucket by Spark tasks
        progress.start("point-in-time join (Spark)", len(requests))
        try:
            for r in requests:
                if is_aggregation_view(r.view):
                    key_table, valid = entity_keys(r.view, entities)
                    for pos, name, col in join_aggregations(self.spark(), self.store, r,
                                                            require_manifest(self.store, r.view), key_table, valid, ts):
                        done[pos] = (name, col)
                    joined.append(None)
                else:
                    joined.append(join_view(self.spark(), self.store, r, entities, ts))
                progress.advance(1, info=r.view["name"])
        finally:
            progress.stop()
        return assemble(entities, requests, joined, done)

    def fingerprint(self, view: dict[str, Any]) -> str | None:
        return self.store.fingerprint(view)

    def source_schema(self, source: Source) -> pa.Schema:
        # the schema is a footer read: no job is worth starting for it
        return get_loader(source, self.store.config.root, self.store.config.store_paths).schema()

    def newest(self, view: dict[str, Any], reads: Reads, end_us: int,
               buckets: list[int]) -> Iterator[tuple[int, pa.Table]]:
        return newest(self.spark(), self.store, view, reads, end_us, buckets)
