"""fstore: a feature store built for inference latency.

Define entities, sources, feature views and feature services as code, apply them,
ingest raw data into the offline store and build point-in-time correct training
sets with :meth:`FeatureStore.get_historical_features`.
"""
from __future__ import annotations

__version__ = "0.1.0"

from .definitions import Entity, Feature, FeatureService, FeatureView, Source  # noqa: E402
from .errors import FstoreError  # noqa: E402
from .feature_store import FeatureStore  # noqa: E402

__all__ = ["Entity", "Feature", "FeatureService", "FeatureStore", "FeatureView", "FstoreError",
           "Source", "__version__"]
