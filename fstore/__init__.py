"""fstore: a feature store built for inference latency.

Define entities, sources, feature views and feature services as code, apply them,
ingest raw data into the offline store, build point-in-time correct training sets
with :meth:`FeatureStore.get_historical_features`, materialize the online store and
serve it (``fstore serve``, :class:`Client`).

The names below are imported on first use, so that ``import fstore.client`` stays light.
"""
from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__

_EXPORTS = {
    "Entity": ".repo.definitions", "Feature": ".repo.definitions", "FeatureService": ".repo.definitions",
    "FeatureView": ".repo.definitions", "Source": ".repo.definitions", "transformation": ".repo.functions",
    "RequestView": ".repo.request_time", "Aggregation": ".repo.aggregations",
    "FeatureStore": ".feature_store",
    "FstoreError": ".errors",
    "OnlineResponse": ".online.response", "Status": ".online.response",
    "Client": ".serving.client", "AsyncClient": ".serving.client",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .errors import FstoreError
    from .feature_store import FeatureStore
    from .online.response import OnlineResponse, Status
    from .repo.aggregations import Aggregation
    from .repo.definitions import Entity, Feature, FeatureService, FeatureView, Source
    from .repo.functions import transformation
    from .repo.request_time import RequestView
    from .serving.client import AsyncClient, Client
