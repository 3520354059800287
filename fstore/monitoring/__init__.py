"""Monitoring: what was served, and whether it is what training sees.

``fstore.monitoring.events`` is the served-read hook every serving path reports to
(it sits low in the layers, so that they can import it); the checks built on it
(logging, skew, drift, freshness) attach to it as listeners.
"""
from .._lazy import lazy_exports

_EXPORTS = {"ServedRead": ".events", "subscribe": ".events", "unsubscribe": ".events", "hook": ".events",
            "FeatureLog": ".logging", "read_logs": ".logs", "log_features": ".logs", "log_features_batch": ".logs"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
