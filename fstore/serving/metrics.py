"""Prometheus metrics of the feature server (prometheus-client, multiprocess mode for workers).

Exposed on the metrics port: request latency per operation, entity rows per request,
value statuses (the hit rate), errors by code, open connections, requests in flight,
the age of the newest data per view and its freshness SLA (and breach), rows pushed, PUSH commits and served-read listener
errors. What each one means exactly is in docs/protocol.md ("Metrics").

Served reads are counted by a listener of the served-read hook (fstore.monitoring.events),
like any other; the server calls the rest directly. Import this module only after
PROMETHEUS_MULTIPROC_DIR is set (supervisor.run_worker does).
"""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from .._ext._constants import Status
from ..monitoring.events import ServedRead, hook
from ..online.service import MAX_PLANS
from .protocol import OPS

_LATENCY_BUCKETS = (25e-6, 50e-6, 100e-6, 200e-6, 400e-6, 800e-6, 1.6e-3, 3.2e-3, 6.4e-3, 12.8e-3, 25.6e-3, 0.1, 1.0)
_ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000)

REQUEST_SECONDS = Histogram("fstore_request_seconds", "Server time per request", ["op"], buckets=_LATENCY_BUCKETS)
ENTITY_ROWS = Histogram("fstore_entity_rows", "Entity rows per GET", buckets=_ROW_BUCKETS)
VALUES = Counter("fstore_values", "Feature values served, by versioned view and status", ["view", "status"])
ERRORS = Counter("fstore_errors", "Error replies, by code", ["code"])
CONNECTIONS = Gauge("fstore_open_connections", "Open client connections", multiprocess_mode="livesum")
INFLIGHT = Gauge("fstore_inflight_requests", "Requests received and not yet answered (PUSHes queued or being "
                 "written, and any request being handled)", multiprocess_mode="livesum")
# livemin: the freshest worker wins (a PUSH is seen by one worker only), and a dead worker's
# frozen value, which would soon be the smallest, is dropped
DATA_AGE = Gauge("fstore_data_age_seconds", "Seconds since the newer of the view's materialization watermark and "
                 "the newest event time pushed to it (0 if in the future)", ["view"], multiprocess_mode="livemin")
# beside the data age: the SLA, and 0/1 for in breach (fstore.online.status.freshness_breached);
# livemin for the same reason as the age: a worker that has seen fresher data wins
FRESHNESS_SLA = Gauge("fstore_freshness_sla_seconds", "The view's freshness_sla in seconds (views with one)",
                      ["view"], multiprocess_mode="livemax")
FRESHNESS_BREACHED = Gauge("fstore_freshness_breached", "1 when the view's newest data online is older than its "
                           "freshness_sla (or there is none), else 0", ["view"], multiprocess_mode="livemin")
PUSHED = Counter("fstore_pushed_rows", "Rows written by PUSH", ["view"])
PUSH_COMMITS = Counter("fstore_push_commits", "Online write transactions committed for PUSHes (one per group)")
LISTENER_ERRORS = Counter("fstore_listener_errors", "Served-read listeners that raised (the read was answered)",
                          ["listener"])
LOG_RECORDS = Counter("fstore_log_records", "Entity rows of sampled reads taken by the served-feature log",
                      ["service"])
LOG_DROPPED = Counter("fstore_log_dropped", "Entity rows of sampled reads the served-feature log dropped "
                      "(its queue was full; the read was answered)", ["service"])
_COUNTED = {"log_records": LOG_RECORDS, "log_dropped": LOG_DROPPED}  # hook.on_count's names


class ServerMetrics:
    """The metrics one worker reports; cheap enough for the hot path (no labels built per call).

    ``attach`` subscribes it to the served-read hook: every GET answered, on either
    path, is counted from its event.
    """

    def __init__(self) -> None:
        self.connections = CONNECTIONS
        self._latency = {name: REQUEST_SECONDS.labels(name) for name in OPS.values()}
        self._get = self._latency["get"]
        # per plan (by id, the plan kept so that its id stays its own): per view, its counters
        # by status and the runs of consecutive outputs it answers
        self._by_plan: dict[int, tuple[Any, list[tuple[list[Any], list[tuple[int, int]]]]]] = {}

    def attach(self) -> "ServerMetrics":
        hook.subscribe(self.served)
        hook.on_error = lambda name: LISTENER_ERRORS.labels(name).inc()
        hook.on_count = self.count
        return self

    @staticmethod
    def count(counter: str, label: str, n: int) -> None:
        """What a listener counted (the feature log, from its writer thread), by name."""
        metric = _COUNTED.get(counter)
        if metric is not None:
            metric.labels(label).inc(n)

    def served(self, event: ServedRead) -> None:
        """A served read: its rows, its values' statuses and its latency."""
        n = event.rows
        ENTITY_ROWS.observe(n)
        status = event.status
        if status:
            plan = event.plan
            entry = self._by_plan.get(id(plan))
            if entry is None or entry[0] is not plan:
                entry = self._views_of(plan)
            for counters, runs in entry[1]:
                self._count(status, n, counters, runs)
        self._get.observe(event.seconds)

    @staticmethod
    def _count(status: Any, n: int, counters: list[Any], runs: list[tuple[int, int]]) -> None:
        """Count one view's statuses: bytes.count over its byte ranges, no copy, no loop per value."""
        counts = [0] * len(counters)
        for a, b in runs:
            lo, hi = a * n, b * n
            rest = hi - lo
            for code in range(1, len(counters)):
                c = status.count(code, lo, hi)
                counts[code] += c
                rest -= c
            counts[0] += rest  # PRESENT (0): the rest
        for counter, c in zip(counters, counts):
            if c:
                counter.inc(c)

    def _views_of(self, plan: Any) -> tuple[Any, list[tuple[list[Any], list[tuple[int, int]]]]]:
        """A plan's views: each view's labelled counters and its runs of consecutive outputs."""
        runs: dict[int, list[tuple[int, int]]] = {}
        start = 0
        view_of = list(plan.view_of)
        for i in range(1, len(view_of) + 1):
            if i == len(view_of) or view_of[i] != view_of[start]:
                runs.setdefault(view_of[start], []).append((start, i))
                start = i
        entry = (plan, [([VALUES.labels(plan.views[v], s.name) for s in Status], r) for v, r in runs.items()])
        if len(self._by_plan) >= MAX_PLANS:
            self._by_plan.clear()
        self._by_plan[id(plan)] = entry
        return entry

    def observe(self, op: str, seconds: float) -> None:
        h = self._latency.get(op)
        if h is not None:
            h.observe(seconds)

    def error(self, code: str) -> None:
        ERRORS.labels(code).inc()

    def pushed(self, view: str, rows: int) -> None:
        PUSHED.labels(view).inc(rows)

    def push_committed(self, transactions: int) -> None:
        PUSH_COMMITS.inc(transactions)

    def set_inflight(self, n: int) -> None:
        """Called when the count changes off the GET path (a gauge write is ~2 us in multiprocess mode)."""
        INFLIGHT.set(n)

    def set_data_age(self, ages: dict[str, float]) -> None:
        for view, seconds in ages.items():
            DATA_AGE.labels(view).set(seconds)

    def set_freshness(self, views: dict[str, tuple[float, bool]]) -> None:
        """Per view with an SLA: (the SLA in seconds, whether it is breached)."""
        for view, (sla, breached) in views.items():
            FRESHNESS_SLA.labels(view).set(sla)
            FRESHNESS_BREACHED.labels(view).set(1 if breached else 0)
