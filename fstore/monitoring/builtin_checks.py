"""The checks ``fstore monitor`` runs by default: freshness, skew and drift as metrics.

Each reads the repository as the CLI would (the applied registry, the readiness servers
use, the offline store, the online store when it exists) and turns the latest result into
the samples of ``checks.MONITOR_METRICS``. Skew and drift look at the services that have a
served-feature log; a service without one is skipped, not an error.

Choices the issue leaves open (docs/monitoring.md, "Metrics"):
- skew compares the monitor's window (``--window``, default the last hour) against the
  offline store, and against the model-received log when the service has one;
- drift compares the window's served values (the logs) with the offline store's rows of
  the ``DRIFT_REFERENCE_DAYS`` days before the window: "what serving sees now" against "what
  the data looked like last week", with no training set to name. A service whose reference
  or current side is empty exports nothing for the run.
"""
from __future__ import annotations

from typing import Iterable

from ..errors import InvalidArgument
from ..offline.engines import make_engine
from ..online.store import OnlineStore
from ..repo.registry import Registry
from .checks import CheckContext, Sample
from .drift import LEVELS, drift
from .freshness import freshness
from .skew import check_skew
from .logread import service_dir

DRIFT_REFERENCE_DAYS = 7
_DAY_US = 86_400_000_000


def _repo(context: CheckContext) -> tuple[Registry, dict, object]:
    registry = Registry(context.config)
    return registry, registry.require(), make_engine(context.config).store


def _logged_services(doc: dict, offline_root: object) -> list[str]:
    return [s for s in doc["feature_services"] if service_dir(offline_root, s).is_dir()]  # type: ignore[arg-type]


def freshness_check(context: CheckContext) -> Iterable[Sample]:
    """Every view's data age per store, its SLA and whether it is breached."""
    registry, doc, offline = _repo(context)
    online = OnlineStore(context.config)
    try:
        result = freshness(doc, registry.readiness(), offline, online, context.until_us)  # type: ignore[arg-type]
    finally:
        online.close()
    per_view: dict[str, tuple[float, float]] = {}  # versioned view -> (SLA, breached on any store)
    for c in result.checks:
        if c["age_seconds"] is not None:
            yield "fstore_freshness_age_seconds", {"view": c["view"], "store": c["store"]}, c["age_seconds"]
        if c["freshness_sla_seconds"] is not None:
            flag = max(per_view.get(c["view"], (0.0, 0.0))[1], float(c["breached"]))
            per_view[c["view"]] = (c["freshness_sla_seconds"], flag)
    for view, (sla, flag) in per_view.items():
        yield "fstore_freshness_sla_seconds", {"view": view}, sla
        yield "fstore_freshness_breached", {"view": view}, flag


def skew_check(context: CheckContext) -> Iterable[Sample]:
    """Each logged service's mismatch rate per feature and rows compared, per comparison."""
    _, doc, offline = _repo(context)
    for service in _logged_services(doc, offline.root):  # type: ignore[attr-defined]
        report = check_skew(doc, offline, service, context.since_us, context.until_us)  # type: ignore[arg-type]
        for comparison in report["comparisons"]:
            against = comparison["against"]
            yield "fstore_skew_rows", {"service": service, "against": against}, float(comparison["rows"])
            for f in comparison["features"]:
                yield ("fstore_skew_mismatch_rate", {"service": service, "feature": f["feature"], "against": against},
                       float(f["mismatch_rate"]))


def drift_check(context: CheckContext) -> Iterable[Sample]:
    """Each logged service's PSI, current null rate and level per feature."""
    registry, doc, offline = _repo(context)
    start = context.since_us - DRIFT_REFERENCE_DAYS * _DAY_US
    for service in _logged_services(doc, offline.root):  # type: ignore[attr-defined]
        try:
            result = drift(context.config, doc, offline, registry.readiness().offline, service,  # type: ignore[arg-type]
                           reference_window=(start, context.since_us), since=context.since_us,
                           until=context.until_us)
        except InvalidArgument:  # an empty side: nothing to compare in this run
            continue
        for f in result.features:
            e, labels = f.entry, {"service": service, "feature": f.entry["feature"]}
            if e["psi"] is not None:
                yield "fstore_drift_psi", labels, float(e["psi"])
            if e["null_rate_cur"] is not None:
                yield "fstore_drift_null_rate", labels, float(e["null_rate_cur"])
            yield "fstore_drift_level", labels, float(LEVELS.index(e["level"]))
