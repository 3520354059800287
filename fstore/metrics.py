"""Prometheus metrics of the feature server (prometheus-client, multiprocess mode for workers).

Exposed on the metrics port: request latency per operation, entity rows per request,
value statuses (the hit rate), errors by code, open connections, requests in flight,
the age of the newest data per view, rows pushed and PUSH commits. What each one
means exactly is in docs/protocol.md ("Metrics").
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (25e-6, 50e-6, 100e-6, 200e-6, 400e-6, 800e-6, 1.6e-3, 3.2e-3, 6.4e-3, 12.8e-3, 25.6e-3, 0.1, 1.0)
_ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10000)
_STATUS = ("PRESENT", "NOT_FOUND", "EXPIRED", "DEFAULTED")

REQUEST_SECONDS = Histogram("fstore_request_seconds", "Server time per request", ["op"], buckets=_LATENCY_BUCKETS)
ENTITY_ROWS = Histogram("fstore_entity_rows", "Entity rows per GET", buckets=_ROW_BUCKETS)
VALUES = Counter("fstore_values", "Feature values served, by status", ["status"])
ERRORS = Counter("fstore_errors", "Error replies, by code", ["code"])
CONNECTIONS = Gauge("fstore_open_connections", "Open client connections", multiprocess_mode="livesum")
INFLIGHT = Gauge("fstore_inflight_requests", "Requests received and not yet answered (PUSHes queued or being "
                 "written, and any request being handled)", multiprocess_mode="livesum")
# livemin: the freshest worker wins (a PUSH is seen by one worker only), and a dead worker's
# frozen value, which would soon be the smallest, is dropped
DATA_AGE = Gauge("fstore_data_age_seconds", "Seconds since the newer of the view's materialization watermark and "
                 "the newest event time pushed to it (0 if in the future)", ["view"], multiprocess_mode="livemin")
PUSHED = Counter("fstore_pushed_rows", "Rows written by PUSH", ["view"])
PUSH_COMMITS = Counter("fstore_push_commits", "Online write transactions committed for PUSHes (one per group)")


class ServerMetrics:
    """The hooks the server calls; cheap enough for the hot path (no labels built per call)."""

    def __init__(self) -> None:
        self.connections = CONNECTIONS
        self._latency = {op: REQUEST_SECONDS.labels(op) for op in ("get", "push", "hello", "health", "info")}
        self._status = [VALUES.labels(s) for s in _STATUS]

    def observe(self, op: str, seconds: float) -> None:
        h = self._latency.get(op)
        if h is not None:
            h.observe(seconds)

    def get_done(self, rows: int, status: bytearray) -> None:
        ENTITY_ROWS.observe(rows)
        if status:
            counts = [status.count(i) for i in range(4)]
            for i, c in enumerate(counts):
                if c:
                    self._status[i].inc(c)

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
