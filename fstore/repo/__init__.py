"""The feature repository: definitions as code, their validation, the registry that
holds what is applied, and the resolution of feature references.

The lowest layer above the base modules: it imports nothing of offline, online or
serving (docs/architecture.md).
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "Entity": ".definitions", "Feature": ".definitions", "FeatureService": ".definitions",
    "FeatureView": ".definitions", "Source": ".definitions", "DTYPES": ".definitions",
    "Aggregation": ".aggregations",
    "Registry": ".registry", "Snapshot": ".snapshot", "Plan": ".plan", "Change": ".plan",
    "resolve": ".resolve", "find_view": ".resolve", "ViewRequest": ".resolve", "require_one": ".resolve",
    "versioned_name": ".names", "view_name": ".names",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
