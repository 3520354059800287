"""Checks loaded by a real ``fstore monitor`` in tests (``--check stub_checks:NAME``).

They stand in for the skew, drift and freshness checks of fstore.monitoring until those
exist in this tree: ``everything`` returns one sample of every metric a check may
return, so a live monitor exports each name the alert rules and the dashboard use. The
others return what the monitor must refuse, or raise.
"""
from __future__ import annotations

from typing import Any

from fstore.monitoring.checks import CheckContext


def everything(context: CheckContext) -> list[tuple[str, dict[str, str], float]]:
    window_s = (context.until_us - context.since_us) / 1e6
    return [
        ("fstore_skew_mismatch_rate", {"service": "fraud_v1", "feature": "avg_amount_7d", "against": "offline"}, 0.25),
        ("fstore_skew_rows", {"service": "fraud_v1", "against": "offline"}, window_s),
        ("fstore_drift_psi", {"service": "fraud_v1", "feature": "avg_amount_7d"}, 0.3),
        ("fstore_drift_null_rate", {"service": "fraud_v1", "feature": "avg_amount_7d"}, 0.05),
        ("fstore_drift_level", {"service": "fraud_v1", "feature": "avg_amount_7d"}, 2),
        ("fstore_freshness_age_seconds", {"view": "customer_stats_v1", "store": "online"}, 120.0),
        ("fstore_freshness_sla_seconds", {"view": "customer_stats_v1"}, 3600.0),
        ("fstore_freshness_breached", {"view": "customer_stats_v1"}, False),
    ]


class Counting:
    """Stateful (a class is instantiated once): the number of runs so far, as skew rows."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, context: CheckContext) -> list[tuple[str, dict[str, str], float]]:
        self.runs += 1
        return [("fstore_skew_rows", {"service": "counting", "against": "logged"}, self.runs)]


def failing(context: CheckContext) -> Any:
    raise RuntimeError("the offline store is unreachable")


def unknown_metric(context: CheckContext) -> Any:
    return [("fstore_made_up", {}, 1.0)]


def wrong_labels(context: CheckContext) -> Any:
    return [("fstore_drift_psi", {"service": "fraud_v1"}, 1.0)]


def not_a_number(context: CheckContext) -> Any:
    return [("fstore_drift_psi", {"service": "fraud_v1", "feature": "x"}, "high")]


def twice(context: CheckContext) -> Any:
    return [("fstore_drift_level", {"service": "s", "feature": "x"}, 1)] * 2


def same_series(context: CheckContext) -> Any:
    """A series ``everything`` exports too."""
    return [("fstore_freshness_breached", {"view": "customer_stats_v1"}, 1)]


not_callable = 42
