"""SparkEngine: the OfflineEngine interface (fstore.offline.engine) run by Spark.

Each method runs a few Spark jobs over the offline layout the local engine uses, and
returns what the local engine returns, exactly (its tests run both and compare). The
session is made on first use (fstore.offline.spark.session), so commands that need no
offline work (plan, serve) start no JVM.

A transformation (issue 14, part 1) plugs in as one more method: it turns the source's
DataFrame into the view's rows (Spark SQL over a temporary view ``source``, or a Python
function through ``mapInArrow``), and its output goes through the same typing, bucketing
and part writing as ``ingest`` (fstore.offline.spark.ingest, from ``_write_parts`` on).
"""
from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa

from ...config import RepoConfig
from ...progress import Reporter, Silent
from ...repo.definitions import Source
from ...repo.resolve import ViewRequest
from ..historical import assemble, prepare_entities
from ..loaders import get_loader
from ..newest import Reads
from ..store import IngestResult
from .ingest import SparkStore
from .newest import newest
from .pit import join_view
from .session import spark_session


class SparkEngine:
    """Offline work in Spark: ``offline_store: {engine: spark, spark: {master, conf}}``."""

    def __init__(self, config: RepoConfig) -> None:
        self.settings = config.offline_spark
        self.store = SparkStore(config, self.spark)

    def spark(self) -> Any:
        """The SparkSession (started on first use, then shared by the process)."""
        return spark_session(self.settings)

    def ingest(self, view: dict[str, Any], source: dict[str, Any], progress: Reporter | None = None) -> IngestResult:
        return self.store.ingest(view, source, progress)

    def historical(self, requests: list[ViewRequest], entity_df: Any, event_timestamp_column: str,
                   progress: Reporter | None = None) -> pa.Table:
        progress = progress or Silent()
        entities, ts = prepare_entities(entity_df, event_timestamp_column, requests)
        joined = []
        progress.start("point-in-time join (Spark)", len(requests))
        try:
            for r in requests:
                joined.append(join_view(self.spark(), self.store, r, entities, ts))
                progress.advance(1, info=r.view["name"])
        finally:
            progress.stop()
        return assemble(entities, requests, joined)

    def fingerprint(self, view: dict[str, Any]) -> str | None:
        return self.store.fingerprint(view)

    def source_schema(self, source: Source) -> pa.Schema:
        # the schema is a footer read: no job is worth starting for it
        return get_loader(source, self.store.config.root, self.store.config.store_paths).schema()

    def newest(self, view: dict[str, Any], reads: Reads, end_us: int,
               buckets: list[int]) -> Iterator[tuple[int, pa.Table]]:
        return newest(self.spark(), self.store, view, reads, end_us, buckets)
