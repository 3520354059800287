"""A served-read listener (``server.listeners``) that makes a real server export the
metrics other parts of issue 11 add to it (served-feature logging, freshness), until they
exist in this tree: each worker registers them once, as those parts will, so the live
/metrics of a server holds every name the alert rules and the dashboard use.

prometheus_client is imported on the first event, in the worker, after the server has set
PROMETHEUS_MULTIPROC_DIR (the supervisor imports listeners earlier, to check them).
"""
from __future__ import annotations

from typing import Any

_made: list[Any] = []


def listener(event: Any) -> None:
    if _made:
        return
    from prometheus_client import Counter, Gauge

    try:
        dropped = Counter("fstore_log_dropped", "stub: served-feature log records dropped", ["service"])
        records = Counter("fstore_log_records", "stub: served-feature log records written", ["service"])
        sla = Gauge("fstore_freshness_sla_seconds", "stub: freshness_sla", ["view"], multiprocess_mode="max")
        breached = Gauge("fstore_freshness_breached", "stub: breached", ["view"], multiprocess_mode="max")
    except ValueError:  # already registered: the real metrics exist, nothing to stand in for
        _made.append(None)
        return
    service = event.service or "none"
    dropped.labels(service).inc(0)
    records.labels(service).inc(event.rows)
    sla.labels("customer_stats_v1").set(3600)
    breached.labels("customer_stats_v1").set(0)
    _made.append((dropped, records, sla, breached))
