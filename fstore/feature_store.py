"""FeatureStore: the small Python API over a feature repository.

It holds no logic of its own: each method resolves names against the applied
registry and delegates to the module that owns the concept (registry,
offline_store, historical, lineage).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .config import RepoConfig
from .errors import UnknownObject
from .engine import make_engine
from .lineage import dataset_lineage, write_lineage
from .offline_store import IngestResult, OfflineStore
from .progress import Reporter
from .registry import Plan, Registry
from .resolve import find_view, resolve


class FeatureStore:
    """One feature repository: ``FeatureStore("path/to/repo")``."""

    def __init__(self, repo_path: str | Path = ".") -> None:
        self.config = RepoConfig.load(repo_path)
        self.registry = Registry(self.config)
        self.engine = make_engine(self.config)
        self.offline: OfflineStore = self.engine.store

    # ---- definitions -----------------------------------------------------------------

    def plan(self) -> Plan:
        """What ``apply`` would change; raises DefinitionErrors when the definitions are wrong."""
        return self.registry.plan()

    def apply(self) -> tuple[Plan, int]:
        """Validate and store the definitions atomically; returns the plan and the registry version."""
        return self.registry.apply()

    def list_feature_views(self) -> list[dict[str, Any]]:
        return list(self.registry.require()["feature_views"].values())

    def get_feature_view(self, name: str) -> dict[str, Any]:
        """A view by name (newest version) or by versioned name (``customer_stats_v1``)."""
        record = find_view(name, self.registry.require()["feature_views"])
        if record is None:
            raise UnknownObject(f"unknown feature view {name!r}")
        return record

    # ---- offline ---------------------------------------------------------------------

    def ingest(self, views: Sequence[str] | None = None, progress: Reporter | None = None) -> list[IngestResult]:
        """Load new and changed source files of the named views (default: all, every version)."""
        reg = self.registry.require()
        records = [self.get_feature_view(v) for v in views] if views else list(reg["feature_views"].values())
        return [self.engine.ingest(r, reg["sources"][r["source"]], progress) for r in records]

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
        requests = resolve(self.registry.require(), features, feature_service, full_feature_names)
        return self.engine.historical(requests, entity_df,
                                      event_timestamp_column or self.config.entity_timestamp_column, progress)

    def build_dataset(self, entity_df: Any, out: str | Path, features: Sequence[str] | None = None, *,
                      feature_service: str | None = None, full_feature_names: bool = False,
                      event_timestamp_column: str | None = None,
                      progress: Reporter | None = None) -> tuple[pa.Table, Path]:
        """Build a training set, write it to ``out`` (Parquet, or CSV by suffix) and its lineage beside it.

        Returns the table and the path of the lineage record (``<out>.lineage.json``).
        """
        registry = self.registry.require()
        requests = resolve(registry, features, feature_service, full_feature_names)
        table = self.engine.historical(requests, entity_df,
                                       event_timestamp_column or self.config.entity_timestamp_column, progress)
        out = Path(out)
        write_table(table, out)
        record = dataset_lineage(registry=registry, offline=self.engine, requests=requests, table=table,
                                 dataset=out, entity_source=str(entity_df) if isinstance(entity_df, (str, Path))
                                 else None, features=features, feature_service=feature_service,
                                 full_feature_names=full_feature_names)
        return table, write_lineage(out, record)


def write_table(table: pa.Table, out: Path) -> None:
    """Write a dataset atomically: Parquet, or CSV when the name ends in .csv."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        pcsv.write_csv(table, tmp)
    else:
        pq.write_table(table, tmp)
    os.replace(tmp, out)
