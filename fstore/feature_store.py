"""FeatureStore: the small Python API over a feature repository.

It holds no logic of its own: each method resolves names against the applied
registry and delegates to the package that owns the concept (fstore.repo for
definitions, fstore.offline for ingest and training sets, fstore.online for
materialization, pushes and reads).
"""
from __future__ import annotations

from pathlib import Path
from contextlib import suppress
from typing import Any, Iterable, Sequence

import pyarrow as pa

from .config import RepoConfig
from .errors import FstoreError, InvalidArgument, UnknownObject
from .offline.datasets import dataset_lineage, dataset_writer, read_lineage, write_dataset, write_lineage
from .offline.engine import OfflineEngine, ingest_views
from .offline.engines import make_engine
from .offline.request_time import historical as request_time_historical
from .monitoring.logging import FeatureLog
from .offline.store import IngestResult, OfflineStore
from .online.entities import entity_columns
from .online.bulk import bulk_load, gc
from .online.materialize import WriteResult, check_end, materialize
from .online.push import FilePush, push_files, push_group
from .online.readiness import find_readiness
from .online.response import OnlinePlan, OnlineResponse
from .online.service import OnlineService
from .online.status import view_status
from .online.store import OnlineStore
from .progress import Reporter
from .offline.backfill import BackfillResult
from .repo.backfill import backfill_versions
from .repo.names import view_name
from .repo.readiness import Readiness
from .repo.models import ModelRegistry
from .repo.registry import Plan, Registry
from .repo.resolve import find_view, resolve
from .times import to_us, to_us_relative


class FeatureStore:
    """One feature repository: ``FeatureStore("path/to/repo")``."""

    def __init__(self, repo_path: str | Path = ".") -> None:
        self.config = RepoConfig.load(repo_path)
        self.engine: OfflineEngine = make_engine(self.config)
        self.registry = Registry(self.config, self.engine.source_schema)
        self.offline: OfflineStore = self.engine.store
        self._service: OnlineService | None = None
        self._feature_log: Any = None  # the served-feature log of this store's reads, when a service is logged

    # ---- definitions -----------------------------------------------------------------

    def plan(self) -> Plan:
        """What ``apply`` would change; raises DefinitionErrors when the definitions are wrong.

        ``Plan.effects`` says which version unpinned references will read after a version
        bump, and which data the new version still lacks (see fstore.repo.readiness)."""
        return self.registry.plan(self.readiness(publish=False))

    def apply(self) -> tuple[Plan, int]:
        """Validate and store the definitions atomically; returns the plan and the registry version."""
        applied = self.registry.apply(self.readiness(publish=False))
        self.readiness()
        self._attach_feature_log()
        return applied

    def readiness(self, publish: bool = True, *, offline: Iterable[str] = (), online: Iterable[str] = ()) -> Readiness:
        """Which applied view versions have offline and online data: what unpinned references
        read (fstore.repo.readiness). A version that had data stays ready. ``offline`` and
        ``online`` name versions a write just gave rows. With ``publish``, the document
        servers read is brought up to date (written only when it changed); every command
        that writes data calls this."""
        known = self.registry.readiness()
        doc = self.registry.load()
        if doc is None:
            return known
        path = self.config.online_path
        store = self.online if path is not None and path.exists() else None  # a plan creates no store
        found = find_readiness(doc["feature_views"].values(), self.offline, store, known)
        ready = Readiness(known.offline | found.offline | set(offline), known.online | found.online | set(online))
        if publish and ready != known:
            self.registry.save_readiness(ready)
        return ready

    def list_feature_views(self) -> list[dict[str, Any]]:
        return list(self.registry.require()["feature_views"].values())

    def get_feature_view(self, name: str) -> dict[str, Any]:
        """A view by name (newest version) or by versioned name (``customer_stats_v1``)."""
        record = find_view(name, self.registry.require()["feature_views"])
        if record is None:
            raise UnknownObject(f"unknown feature view {name!r}")
        return record

    def _views(self, views: Sequence[str] | None) -> list[dict[str, Any]]:
        """The named view versions, or every applied one."""
        return [self.get_feature_view(v) for v in views] if views else self.list_feature_views()

    # ---- offline ---------------------------------------------------------------------

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

    # ---- online ----------------------------------------------------------------------

    @property
    def online_service(self) -> OnlineService:
        """Plans and reads of the online store (opened on first use)."""
        if self._service is None:
            self._service = OnlineService(self.registry, OnlineStore(self.config))
            self._attach_feature_log()
        return self._service

    def _attach_feature_log(self) -> None:
        """Subscribe the served-feature log of this store's reads if a service is logged (decided
        when the online service opens and after each ``apply``; docs/monitoring.md)."""
        if self._feature_log is None and self._service is not None and self.registry.load() is not None:
            self._feature_log = FeatureLog.attach(self.config, self.registry, self._service)

    @property
    def online(self) -> OnlineStore:
        return self.online_service.store

    def close(self) -> None:
        """Write what the feature log holds, and release the online store (plans holding its
        handles are dropped with it)."""
        if self._feature_log is not None:
            self._feature_log.close()
            self._feature_log = None
        if self._service is not None:
            self._service.close()
            self._service = None

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def online_views(self, views: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The view versions to serve: as named, else the newest version of every online
        view, the version serving reads while the newest has no online data (so it stays
        fresh until the switch), and every version a feature service pins."""
        reg = self.registry.require()
        if views:
            return [self.get_feature_view(v) for v in views]
        chosen = {}
        live = self.readiness(publish=False).online
        for record in reg["feature_views"].values():
            if not record["online"]:
                continue
            for pick in (find_view(record["name"], reg["feature_views"]),
                         find_view(record["name"], reg["feature_views"], live)):
                if pick is record:
                    chosen[view_name(record)] = record
        for svc in reg["feature_services"].values():
            for ref in svc["features"]:
                view_ref = ref.partition(":")[0]
                if view_ref in reg["feature_views"]:
                    chosen[view_ref] = reg["feature_views"][view_ref]
        return list(chosen.values())

    def materialize(self, start: Any, end: Any, views: Sequence[str] | None = None,
                    progress: Reporter | None = None, *, allow_future: bool = False) -> list[WriteResult]:
        """Write the newest row per entity with event time in [start, end] into the online store.

        Never overwrites a stored row with an older one (by event time, then created time).
        An ``end`` later than now plus ``materialize.clock_skew`` raises FutureEnd unless
        ``allow_future``.
        """
        start_us, end_us = to_us(start, what="start"), to_us(end, what="end")
        if start_us > end_us:
            raise InvalidArgument(f"start {start} is after end {end}")
        if not allow_future:
            check_end(end, end_us, self.config.materialize["clock_skew_us"])
        results = materialize(self.engine, self.online, self.online_views(views), start_us, end_us,
                              progress=progress)
        self.readiness(online=[r.view for r in results if r.rows_written])
        return results

    def materialize_incremental(self, end: Any = "now", views: Sequence[str] | None = None,
                                progress: Reporter | None = None, *, allow_future: bool = False) -> list[WriteResult]:
        """Write every row ingested since each view's last materialization, whatever its event
        time, up to ``end`` (all history the first time); newer-only per entity. Rows dated
        after ``end`` stay pending for a later run. An ``end`` later than now plus
        ``materialize.clock_skew`` raises FutureEnd unless ``allow_future``."""
        end_us = to_us(end, what="end")
        if not allow_future:
            check_end(end, end_us, self.config.materialize["clock_skew_us"])
        results = materialize(self.engine, self.online, self.online_views(views), None, end_us,
                              incremental=True, progress=progress)
        self.readiness(online=[r.view for r in results if r.rows_written])
        return results

    def view_status(self, name: str) -> dict[str, Any]:
        """A view version's state: watermark, last materialization, online rows, last ingest,
        offline and pending rows (keys in fstore.online.status), and the versions unpinned
        references to the view read now: ``serving_reads`` and ``training_reads``
        (docs/repository.md, Versions)."""
        record = self.get_feature_view(name)
        views, ready = self.registry.require()["feature_views"], self.readiness(publish=False)
        reads = {f"{path}_reads": view_name(find_view(record["name"], views, frozenset(names)))  # type: ignore[arg-type]
                 for path, names in (("serving", ready.online), ("training", ready.offline))}
        return {**view_status(self.offline, self.online, record), **reads}

    def load(self, view: str, files: Sequence[str | Path], progress: Reporter | None = None) -> WriteResult:
        """Bulk-load Parquet/CSV rows straight into the online store (one transaction)."""
        record = self.get_feature_view(view)
        source = self.registry.require()["sources"][record["source"]]
        result = bulk_load(self.online, self.config.root, record, source, files, progress)
        self.readiness(online=[result.view] if result.rows_written else [])
        return result

    def gc(self, views: Sequence[str] | None = None, now: Any = None) -> dict[str, int]:
        """Delete online rows older than their view's ttl; returns rows deleted per view."""
        now_us = to_us(now if now is not None else "now")
        return {view_name(r): gc(self.online, r, now_us) for r in self._views(views)}

    def push(self, view: str, rows: Any, *, offline: bool = False) -> int:
        """Write rows (a dict of columns or a list of dicts) to ``view`` online, newer-only, as the
        server's PUSH does (and with ``offline``, append them to the offline store first);
        returns the rows written. Refused with the same errors as a remote push."""
        [outcome], _ = push_group(self.registry.snapshot, self.online, self.offline,
                                  [{"view": view, "rows": entity_columns(rows), "offline": offline}])
        if isinstance(outcome, Exception):
            raise outcome
        if outcome["written"] and self._unready(outcome["view"], outcome["offline"]):
            self.readiness(online=[outcome["view"]], offline=[outcome["view"]] if outcome["offline"] else [])
        return outcome["written"]

    def _unready(self, view: str, offline: bool) -> bool:
        """Whether a write to ``view`` is news to the published readiness: a push stream writes
        one view over and over, and only its first write needs ready.json read and rewritten
        (the registry's cached snapshot already says the rest)."""
        ready = self.registry.snapshot().ready
        return view not in ready.online or (offline and view not in ready.offline)

    def push_files(self, view: str, files: Sequence[str | Path], *, offline: bool = False,
                   progress: Reporter | None = None) -> FilePush:
        """Push the rows of Parquet/CSV files (the view's source columns, read as ``load`` reads
        them) to ``view`` online as ``push`` does, without a server; with ``offline``, append
        them to the offline store first. Nothing is written if any row is bad (BadRows)."""
        record = self.get_feature_view(view)
        source = self.registry.require()["sources"][record["source"]]
        result = push_files(self.online, self.offline, self.config.root, record, source, files, offline, progress)
        if result.rows_written:
            self.readiness(online=[result.view], offline=[result.view] if result.offline else [])
        return result

    def get_online_features(self, features: Sequence[str] | None = None, *, entity_rows: Any,
                            feature_service: str | None = None, full_feature_names: bool = False,
                            now: Any = None, request_id: str | None = None, model: str | None = None) -> OnlineResponse:
        """Feature vectors for ``entity_rows`` (a list of dicts of join key values).

        Each value comes with a status (PRESENT, NOT_FOUND, EXPIRED, DEFAULTED, COMPUTED) and the
        event timestamp of its row; see fstore.online.plan for the exact rule, which is the
        training-set rule with ``now`` as the entity timestamp. ``request_id``, the
        caller's own id for the request, is handed to served-read listeners. ``model``
        ('name' for its production version, or 'name:N'), instead of features or a
        service, reads that model version's feature service (fstore.repo.models). Request
        fields of request-time features travel in the entity rows, beside the join keys
        (docs/transformations.md, "Request-time transformations").
        """
        service = self._service or self.online_service
        return service.read(features, entity_rows, feature_service, full_feature_names, now, request_id, model)

    # ---- models --------------------------------------------------------------------------

    @property
    def models(self) -> ModelRegistry:
        """The model registry: ``fs.models.register(...)``, ``.get``, ``.promote``, ``.list``."""
        return ModelRegistry(self.registry, read_lineage)

    def model_lineage(self, model: str) -> dict[str, Any]:
        """Model version ('name:N', or 'name' for its newest) down to its training set, service,
        view versions and source files (fstore.offline.lineage)."""
        from .offline.lineage import model_lineage
        return model_lineage(self.registry.require(), self.offline, model)

    def lineage(self, target: str) -> dict[str, Any]:
        """The services, training sets and model versions that read a view or source
        (fstore.repo.impact.dependents)."""
        from .repo.impact import dependents
        return dependents(self.registry.require(), target)

    def drift(self, feature_service: str, *, reference: str | Path | None = None,
              reference_window: tuple[Any, Any] | None = None, since: Any = None, until: Any = None,
              current: str = "logs", model: str | None = None) -> Any:
        """The service's features of a reference (a training set file, or an offline window)
        against a current window (the served-feature logs, or an offline window): PSI, null
        rates and statistics per feature, with levels (fstore.monitoring.drift). With
        ``model``, the logs' current side holds only the reads that named that model."""
        from .monitoring.drift import drift
        return drift(self.config, self.registry.require(), self.offline, self.readiness(publish=False).offline,
                     feature_service, reference=reference, reference_window=reference_window,
                     since=since, until=until, current=current, model=model)

    def freshness(self, now: Any = None) -> Any:
        """Each view's newest data online and offline against its freshness_sla
        (fstore.monitoring.freshness)."""
        from .monitoring.freshness import freshness
        return freshness(self.registry.require(), self.readiness(publish=False), self.offline, self.online,
                         None if now is None else to_us(now, what="now"))

    def online_plan(self, features: Sequence[str] | None, feature_service: str | None,
                    full_feature_names: bool = False) -> OnlinePlan:
        """The compiled read plan of a request shape under the current registry (cached)."""
        return self.online_service.plan(features, feature_service, full_feature_names)

    # ---- monitoring --------------------------------------------------------------------

    def skew(self, service: str, since: Any = None, until: Any = None, against: str | None = None,
             examples: int = 5, model: str | None = None) -> dict[str, Any]:
        """Training/serving skew of a service's logged reads with request time in [since, until]
        (fstore.monitoring.skew; the report's JSON is documented in docs/monitoring.md); with
        ``model``, only the reads that named that model ('fraud_model' or 'fraud_model:3')."""
        from .monitoring.skew import check_skew

        return check_skew(self.registry.require(), self.offline, service,
                          None if since is None else to_us_relative(since, what="since"),
                          None if until is None else to_us_relative(until, what="until"), against, examples,
                          model)
