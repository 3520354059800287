"""The offline engine: the small interface behind which ingest, training-set builds and
the reads of materialization run.

The local engine (Parquet files, the Cython as-of join, a thread pool) is the default.
The Spark engine (fstore.offline.spark, ``offline_store: {engine: spark}``) implements
the same methods over the same offline layout, for work past one machine; another is
chosen with ``offline_store: {engine: package.module:Class}`` (fstore.offline.engines picks
one). Every engine gives the same results: the point-in-time rule is fstore.offline.historical's, the newest-row
rule fstore.offline.newest's.
"""
from __future__ import annotations

from typing import Any, Iterator, Protocol

import pyarrow as pa

from ..config import RepoConfig
from ..errors import BadRows
from ..progress import Reporter
from ..repo.aggregations import is_aggregation_view
from ..repo.definitions import Source
from ..repo.resolve import ViewRequest
from .backfill import BackfillResult, backfill
from .historical import get_historical_features
from .loaders import get_loader
from .newest import Reads, newest_by_bucket
from .store import IngestResult, OfflineStore
from .tiles import events_view, sync_tiles
from .windows import one_matrix


class OfflineEngine(Protocol):
    """What FeatureStore needs from an offline engine."""

    store: OfflineStore

    def ingest(self, view: dict[str, Any], source: dict[str, Any], progress: Reporter | None) -> IngestResult:
        """Load the view's new and changed source data into the offline store."""

    def historical(self, requests: list[ViewRequest], entity_df: Any, event_timestamp_column: str,
                   progress: Reporter | None) -> pa.Table:
        """The point-in-time training set (rule in fstore.offline.historical)."""

    def fingerprint(self, view: dict[str, Any]) -> str | None:
        """Identifies the offline data a dataset was built from (lineage)."""

    def source_schema(self, source: Source) -> pa.Schema:
        """The columns and types of a source, which plan and apply check views against."""

    def backfill(self, old: dict[str, Any], new: dict[str, Any], source: dict[str, Any], start_us: int,
                 end_us: int, progress: Reporter | None) -> BackfillResult:
        """Write view version ``new``'s history: ``old``'s rows outside [start, end) and the
        transformation's output inside (fstore.offline.backfill)."""

    def newest(self, view: dict[str, Any], reads: Reads, end_us: int,
               buckets: list[int]) -> Iterator[tuple[int, pa.Table]]:
        """(bucket, the newest row per entity of the rows ``reads`` names in that bucket, event
        time <= ``end_us``), for each of ``buckets`` in that order; the rule is in
        fstore.offline.newest. Materialization writes the online store from these rows."""


class LocalEngine:
    """Parquet on the local file system, joined in process by the compiled kernel."""

    def __init__(self, config: RepoConfig) -> None:
        self.store = OfflineStore(config)

    def ingest(self, view: dict[str, Any], source: dict[str, Any], progress: Reporter | None = None) -> IngestResult:
        if is_aggregation_view(view):
            return ingest_aggregation(self.store, view, source, progress)
        return self.store.ingest(view, source, progress)

    def historical(self, requests: list[ViewRequest], entity_df: Any, event_timestamp_column: str,
                   progress: Reporter | None = None) -> pa.Table:
        return get_historical_features(self.store, requests, entity_df, event_timestamp_column, progress)

    def fingerprint(self, view: dict[str, Any]) -> str | None:
        return self.store.fingerprint(view)

    def backfill(self, old: dict[str, Any], new: dict[str, Any], source: dict[str, Any], start_us: int,
                 end_us: int, progress: Reporter | None = None) -> BackfillResult:
        if is_aggregation_view(new):  # its history is the transformed events; then the new version's tiles
            result = backfill(self.store, events_view(old), events_view(new), source, start_us, end_us, progress)
            sync_tiles(self.store, new, one_matrix(new))
            return result
        return backfill(self.store, old, new, source, start_us, end_us, progress)

    def source_schema(self, source: Source) -> pa.Schema:
        return get_loader(source, self.store.config.root, self.store.config.store_paths).schema()

    def newest(self, view: dict[str, Any], reads: Reads, end_us: int,
               buckets: list[int]) -> Iterator[tuple[int, pa.Table]]:
        return newest_by_bucket(self.store, view, reads, end_us, buckets)


def ingest_aggregation(store: OfflineStore, view: dict[str, Any], source: dict[str, Any],
                       progress: Reporter | None = None) -> IngestResult:
    """An aggregation view's ingest: its raw events, then the tiles of the new runs, in
    process (fstore.offline.tiles; the Spark engine writes each tile file in a task)."""
    result = store.ingest(events_view(view), source, progress)
    sync_tiles(store, view, one_matrix(view))
    return result


def ingest_views(engine: OfflineEngine, views: list[tuple[dict[str, Any], dict[str, Any]]],
                 progress: Reporter | None = None) -> list[IngestResult]:
    """Ingest each (view, source). A view with bad rows writes nothing and the others go on,
    so one run names the bad rows of every view: one BadRows, which also names the views
    that were ingested."""
    results: list[IngestResult] = []
    failed: list[BadRows] = []
    for view, source in views:
        try:
            results.append(engine.ingest(view, source, progress))
        except BadRows as exc:
            failed.append(exc)
    if not failed:
        return results
    text = "\n".join(str(e) for e in failed)
    if len(views) > 1:
        text += f"\nthe other views were ingested: {', '.join(r.view for r in results) or 'none'}"
    first = failed[0]
    raise BadRows(text, file=first.file, row=first.row, column=first.column, count=sum(e.count for e in failed))
