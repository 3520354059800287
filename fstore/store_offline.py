"""``FeatureStore``'s offline work: ingesting source files, backfilling a new view version,
and building point-in-time correct training sets (with their lineage). Each method
delegates to fstore.offline (and fstore.repo for what is registered).
"""
from __future__ import annotations

from contextlib import suppress
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from .errors import FstoreError, InvalidArgument
from .offline.backfill import BackfillResult
from .offline.datasets import dataset_lineage, dataset_writer, write_dataset, write_lineage
from .offline.engine import ingest_views
from .offline.request_time import historical as request_time_historical
from .offline.store import IngestResult
from .progress import Reporter
from .repo.backfill import backfill_versions
from .repo.names import view_name
from .repo.resolve import resolve
from .store_core import StoreCore
from .times import to_us


class OfflineWork(StoreCore):
    """Ingest, backfill and training sets (a base of ``FeatureStore``)."""

    def ingest(self, views: Sequence[str] | None = None, progress: Reporter | None = None) -> list[IngestResult]:
        """Load new and changed source files of the named views (default: all, every version).

        Each view is all or nothing; a view with bad rows does not stop the others, and one
        BadRows names every bad row of every view. Rows with a null join key are skipped and
        counted in the results (``null_key_rows``)."""
        sources = self.registry.require()["sources"]
        try:
            results = ingest_views(self.engine, [(r, sources[r["source"]]) for r in self._views(views)], progress)
        except FstoreError:
            with suppress(FstoreError):  # views ingested before the error are ready; the error is the news
                self.readiness()
            raise
        self.readiness()
        return results

    def backfill(self, view: str, start: Any, end: Any, progress: Reporter | None = None) -> BackfillResult:
        """Recompute view history with event time in [start, end) with the current transformation
        (as the definitions give it) and register the result as a NEW view version: rows
        outside the window copied from the newest applied version, inside recomputed. The old
        version is untouched, so models trained on it keep their lineage."""
        start_us, end_us = to_us(start, what="start"), to_us(end, what="end")
        if start_us >= end_us:
            raise InvalidArgument(f"START {start} is not before END {end}: the window [START, END) is empty")
        old, new, source = backfill_versions(self.config, self.registry.require(), view, self.engine.source_schema)
        result = self.engine.backfill(old, new, source, start_us, end_us, progress)
        self.registry.add_view_version(new)
        self.readiness(offline=[view_name(new)])
        return result

    def get_historical_features(self, entity_df: Any, features: Sequence[str] | None = None, *,
                                feature_service: str | None = None, full_feature_names: bool = False,
                                event_timestamp_column: str | None = None,
                                progress: Reporter | None = None) -> pa.Table:
        """A point-in-time correct training set as a pyarrow Table.

        ``entity_df`` (a pyarrow Table, a pandas DataFrame or a Parquet path) holds the
        join keys of every requested view and an event timestamp column (default
        ``event_timestamp``, or ``entity_timestamp_column`` in fstore.yaml). For each
        entity row and view, the value is that of the newest row with the same key and
        ``entity_ts - ttl <= event_ts <= entity_ts``, ties broken by the newest created
        timestamp; with no such row, the feature's default (or null). Rows keep their
        input order and columns; features are named ``feature`` or ``view__feature``.
        """
        return request_time_historical(self.engine, self.registry.require(), self.config, features, feature_service,
                                       full_feature_names, self.readiness(publish=False).offline, entity_df,
                                       event_timestamp_column or self.config.entity_timestamp_column, progress)

    def build_dataset(self, entity_df: Any, out: str | Path, features: Sequence[str] | None = None, *,
                      feature_service: str | None = None, full_feature_names: bool = False,
                      event_timestamp_column: str | None = None,
                      progress: Reporter | None = None) -> tuple[pa.Table, Path]:
        """Build a training set, write it to ``out`` and its lineage beside it.

        The suffix of ``out`` names the format: .parquet, .csv, .arrow or .ipc (Arrow IPC
        file), .feather; any other is refused before the set is built. Returns the table and
        the path of the lineage record (``<out>.lineage.json``).
        """
        out = Path(out)
        dataset_writer(out)
        registry = self.registry.require()
        ready = self.readiness(publish=False).offline
        computed: list[Any] = []  # request views: their functions and inputs go into the lineage too
        requests = resolve(registry, features, feature_service, full_feature_names, ready, computed)
        table = request_time_historical(self.engine, registry, self.config, features, feature_service,
                                        full_feature_names, ready, entity_df,
                                        event_timestamp_column or self.config.entity_timestamp_column, progress)
        write_dataset(table, out)
        record = dataset_lineage(registry=registry, offline=self.engine, requests=requests, table=table,
                                 dataset=out, entity_source=str(entity_df) if isinstance(entity_df, (str, Path))
                                 else None, features=features, feature_service=feature_service,
                                 full_feature_names=full_feature_names, computed=computed, ready=ready)
        return table, write_lineage(out, record)
