"""``FeatureStore``'s online work: which view versions to serve, materialization, bulk loads,
pushes, garbage collection, a view's status, and online reads (the same ``OnlineService``
the server reads through). Each method delegates to fstore.online.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .errors import InvalidArgument
from .online.bulk import bulk_load, gc
from .online.entities import entity_columns
from .online.materialize import WriteResult, check_end, materialize
from .online.push import FilePush, push_files, push_group
from .online.response import OnlinePlan, OnlineResponse
from .online.status import view_status
from .progress import Reporter
from .repo.names import view_name
from .repo.resolve import find_view
from .store_core import StoreCore
from .times import to_us


class OnlineWork(StoreCore):
    """Materialize, load, push, gc, status and online reads (a base of ``FeatureStore``)."""

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

    def online_plan(self, features: Sequence[str] | None, feature_service: str | None,
                    full_feature_names: bool = False) -> OnlinePlan:
        """The compiled read plan of a request shape under the current registry (cached)."""
        return self.online_service.plan(features, feature_service, full_feature_names)
