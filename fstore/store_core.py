"""The part of ``FeatureStore`` every other part stands on: the repository's configuration,
its offline engine and registry, the definitions (plan, apply, the views applied), which
versions have data (readiness), and the online service's lifecycle (opened on first use,
closed with the store).

``FeatureStore`` (fstore.feature_store) is this core plus one class per kind of work
(fstore.store_offline, fstore.store_online, fstore.store_monitoring), so that each file
holds one concept; each method resolves names against the applied registry and delegates
to the package that owns the concept.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from .config import RepoConfig
from .errors import UnknownObject
from .monitoring.logging import FeatureLog
from .offline.engine import OfflineEngine
from .offline.engines import make_engine
from .offline.store import OfflineStore
from .online.readiness import find_readiness
from .online.service import OnlineService
from .online.store import OnlineStore
from .repo.readiness import Readiness
from .repo.registry import Plan, Registry
from .repo.resolve import find_view


class StoreCore:
    """A repository's configuration, engine, registry and online service (the base of
    ``FeatureStore``)."""

    def __init__(self, repo_path: str | Path = ".") -> None:
        self.config = RepoConfig.load(repo_path)
        self.engine: OfflineEngine = make_engine(self.config)
        self.registry = Registry(self.config, self.engine.source_schema)
        self.offline: OfflineStore = self.engine.store
        self._service: OnlineService | None = None
        self._feature_log: Any = None  # the served-feature log of this store's reads, when a service is logged

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
