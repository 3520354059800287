"""Prometheus metrics of the feature server (prometheus-client, multiprocess mode for workers).

Exposed on the metrics port: request latency per operation, entity rows per request,
value statuses (the hit rate), errors by code, open connections, requests in flight,
the age of the newest data per view and its freshness SLA (and breach), rows pushed, PUSH commits and served-read listener
errors. What each one means exactly is in docs/protocol.md ("Metrics").

Served GETs (their latency, rows and values by status) are counted in C on both paths
(fstore._ext._counters) and flushed into these metrics by a timer of the worker's event
loop every 25 ms (ServerMetrics.flush): a scrape is at most that far behind. The server
calls the rest directly. Import this module only after PROMETHEUS_MULTIPROC_DIR is set
(supervisor.run_worker does).
"""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from .._ext._constants import Status
from .._ext._counters import GetCounters
from ..monitoring.events import hook
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


def add_to_histogram(histogram: Any, counts: list[int], total: float) -> None:
    """Add bucket counts (``counts[i]`` observations in bucket ``i``, +Inf last) and their sum
    to a Histogram child: what ``observe`` would have left after that many calls, in one
    shared-memory write per non-zero bucket.

    prometheus_client has no public call for it, so this is the one place that uses its
    internals (``_upper_bounds``, ``_buckets``, ``_sum``, stable since long before the lower
    bound in pyproject.toml); tests/test_metrics_flush.py fails loudly if they change."""
    if len(histogram._upper_bounds) != len(counts):
        raise ValueError(f"{len(counts)} bucket counts for a histogram of {len(histogram._upper_bounds)} buckets")
    buckets = histogram._buckets
    for i, c in enumerate(counts):
        if c:
            buckets[i].inc(c)
    histogram._sum.inc(total)


class ServerMetrics:
    """The metrics one worker reports; cheap enough for the hot path (no labels built per call).

    Served GETs are counted in C by ``counters`` (fstore._ext._counters), which the fast
    path (FastGet) and the Python path (Connection._handle) share; a timer of the worker's
    event loop adds what they counted to the Prometheus metrics every
    fstore.serving.server.FLUSH_SECONDS (25 ms) and once more when the worker drains:
    a scrape trails the GETs answered by at most that (plus the scrape's own read of the
    files). The served-read hook is left to other listeners: with none, a fast GET runs no
    Python at all for the metrics.
    """

    def __init__(self) -> None:
        self.connections = CONNECTIONS
        self._latency = {name: REQUEST_SECONDS.labels(name) for name in OPS.values()}
        self._get = self._latency["get"]
        self.counters = GetCounters(_LATENCY_BUCKETS, _ROW_BUCKETS)
        # versioned view -> its labelled counters, by Status code
        self._values: dict[str, list[Any]] = {}

    def attach(self) -> "ServerMetrics":
        """Count the hook's listener errors and what its listeners count (the feature log)."""
        hook.on_error = lambda name: LISTENER_ERRORS.labels(name).inc()
        hook.on_count = self.count
        return self

    @staticmethod
    def count(counter: str, label: str, n: int) -> None:
        """What a listener counted (the feature log, from its writer thread), by name."""
        metric = _COUNTED.get(counter)
        if metric is not None:
            metric.labels(label).inc(n)

    def flush(self) -> None:
        """Add the GETs counted since the last flush to the Prometheus metrics (on the event
        loop, by a timer: never per request)."""
        delta = self.counters.take()
        if delta is None:
            return
        latency, latency_sum, rows, rows_sum, values = delta
        add_to_histogram(self._get, latency, latency_sum)
        add_to_histogram(ENTITY_ROWS, rows, rows_sum)
        for (view, status), n in values.items():
            counters = self._values.get(view)
            if counters is None:  # every status of a view exists (at 0) once the view was served
                counters = self._values[view] = [VALUES.labels(view, s.name) for s in Status]
            counters[status].inc(n)

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
