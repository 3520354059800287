"""FeatureStore: the small Python API over a feature repository.

It holds no logic of its own: each method resolves names against the applied
registry and delegates to the module that owns the concept (registry,
offline_store, historical, lineage).
"""
from __future__ import annotations

import os
from time import monotonic
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .config import RepoConfig
from .errors import InvalidArgument, UnknownObject
from .engine import make_engine
from .materialize import WriteResult, bulk_load, gc, materialize, to_us
from ._ext._online import read
from .online import OnlinePlan, OnlineResponse, build_plan, explain_bad_rows, normalize_entity_rows
from .online_store import OnlineStore
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
        self._online: OnlineStore | None = None
        self._reg_cache: dict[str, Any] | None = None
        self._reg_stamp: tuple[int, int] | None = None
        self._reg_checked = 0.0
        self._plans: dict[tuple[Any, ...], OnlinePlan] = {}
        self._last_plan: tuple[Any, ...] | None = None

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

    # ---- online ----------------------------------------------------------------------

    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            self._online = OnlineStore(self.config)
        return self._online

    def close(self) -> None:
        """Release the online store (plans holding its handles are dropped with it)."""
        self._plans.clear()
        self._last_plan = None
        if self._online is not None:
            self._online.close()
            self._online = None

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def online_views(self, views: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The view versions to serve: as named, else the newest version of every online
        view plus every version a feature service pins."""
        reg = self.registry.require()
        if views:
            return [self.get_feature_view(v) for v in views]
        chosen = {}
        for record in reg["feature_views"].values():
            newest = find_view(record["name"], reg["feature_views"])
            if record["online"] and newest is record:
                chosen[f"{record['name']}_v{record['version']}"] = record
        for svc in reg["feature_services"].values():
            for ref in svc["features"]:
                view_ref = ref.partition(":")[0]
                if view_ref in reg["feature_views"]:
                    chosen[view_ref] = reg["feature_views"][view_ref]
        return list(chosen.values())

    def materialize(self, start: Any, end: Any, views: Sequence[str] | None = None,
                    progress: Reporter | None = None) -> list[WriteResult]:
        """Write the newest row per entity with event time in [start, end] into the online store.

        Never overwrites a stored row with an older one (by event time, then created time).
        """
        start_us, end_us = to_us(start, what="start"), to_us(end, what="end")
        if start_us > end_us:
            raise InvalidArgument(f"start {start} is after end {end}")
        return materialize(self.offline, self.online, self.online_views(views), start_us, end_us,
                           progress=progress)

    def materialize_incremental(self, end: Any, views: Sequence[str] | None = None,
                                progress: Reporter | None = None) -> list[WriteResult]:
        """Materialize each view from its own watermark (all history the first time) up to ``end``."""
        return materialize(self.offline, self.online, self.online_views(views), None, to_us(end, what="end"),
                           incremental=True, progress=progress)

    def load(self, view: str, files: Sequence[str | Path], progress: Reporter | None = None) -> WriteResult:
        """Bulk-load Parquet/CSV rows straight into the online store (one transaction)."""
        record = self.get_feature_view(view)
        source = self.registry.require()["sources"][record["source"]]
        return bulk_load(self.online, self.config.root, record, source, files, progress)

    def gc(self, views: Sequence[str] | None = None, now: Any = None) -> dict[str, int]:
        """Delete online rows older than their view's ttl; returns rows deleted per view."""
        now_us = to_us(now if now is not None else "now")
        records = [self.get_feature_view(v) for v in views] if views else \
            list(self.registry.require()["feature_views"].values())
        return {f"{r['name']}_v{r['version']}": gc(self.online, r, now_us) for r in records}

    def get_online_features(self, features: Sequence[str] | None = None, *, entity_rows: Any,
                            feature_service: str | None = None, full_feature_names: bool = False,
                            now: Any = None) -> OnlineResponse:
        """Feature vectors for ``entity_rows`` (a list of dicts of join key values).

        Each value comes with a status (PRESENT, NOT_FOUND, EXPIRED, DEFAULTED) and the
        event timestamp of its row; see fstore.online for the exact rule, which is the
        training-set rule with ``now`` as the entity timestamp.
        """
        plan = self.online_plan(features, feature_service, full_feature_names)
        rows = entity_rows if type(entity_rows) is list else normalize_entity_rows(entity_rows)
        try:
            return read(self.online.env, plan, rows, None if now is None else to_us(now), OnlineResponse)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise explain_bad_rows(rows, plan, exc) from None

    def online_plan(self, features: Sequence[str] | None, feature_service: str | None,
                    full_feature_names: bool = False) -> OnlinePlan:
        """The compiled read plan of a request shape under the current registry (cached)."""
        registry = self._current_registry()
        last = self._last_plan  # a service calls with one shape again and again: no hashing then
        if last is not None and last[0] is registry and last[1] == features and last[2] == feature_service \
                and last[3] == full_feature_names:
            return last[4]
        key = (registry["version"], tuple(features) if features is not None else None, feature_service,
               full_feature_names)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 1024:  # shapes come from clients: keep the cache bounded
                self._plans.clear()
            plan = self._plans[key] = build_plan(registry, self.online, features, feature_service,
                                                 full_feature_names)
        self._last_plan = (registry, list(features) if features is not None else None, feature_service,
                           full_feature_names, plan)
        return plan

    def _current_registry(self) -> dict[str, Any]:
        """The applied registry, re-read when the file changed (checked at most once a second)."""
        clock = monotonic()
        if self._reg_cache is not None and clock - self._reg_checked < 1.0:
            return self._reg_cache
        self._reg_checked = clock
        try:
            st = self.registry.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._reg_cache is None or stamp != self._reg_stamp:
            self._reg_cache = self.registry.require()
            self._reg_stamp = stamp
            self._plans.clear()
        return self._reg_cache


def write_table(table: pa.Table, out: Path) -> None:
    """Write a dataset atomically: Parquet, or CSV when the name ends in .csv."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix.lower() == ".csv":
        pcsv.write_csv(table, tmp)
    else:
        pq.write_table(table, tmp)
    os.replace(tmp, out)
