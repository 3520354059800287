"""``FeatureStore``'s models and monitoring: the model registry, lineage and impact, drift,
freshness and training/serving skew. Each method delegates to fstore.repo.models,
fstore.offline.lineage, fstore.repo.impact or fstore.monitoring.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .offline.datasets import read_lineage
from .repo.models import ModelRegistry
from .store_core import StoreCore
from .times import to_us, to_us_relative


class ModelsAndMonitoring(StoreCore):
    """Models, lineage, drift, freshness and skew (a base of ``FeatureStore``)."""

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
