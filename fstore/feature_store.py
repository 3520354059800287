"""FeatureStore: the small Python API over a feature repository.

It holds no logic of its own: each method resolves names against the applied
registry and delegates to the package that owns the concept (fstore.repo for
definitions, fstore.offline for ingest and training sets, fstore.online for
materialization, pushes and reads).

Its methods are written by concept, one class per file, and joined here: the core
(configuration, registry, definitions, readiness, the online service's lifecycle:
fstore.store_core), offline work (fstore.store_offline), online work
(fstore.store_online), and models and monitoring (fstore.store_monitoring).
"""
from __future__ import annotations

from .store_monitoring import ModelsAndMonitoring
from .store_offline import OfflineWork
from .store_online import OnlineWork


class FeatureStore(OfflineWork, OnlineWork, ModelsAndMonitoring):
    """One feature repository: ``FeatureStore("path/to/repo")``."""

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
