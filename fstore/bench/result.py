"""A bench run's report: throughput, latency percentiles from the merged histogram, errors,
statuses, the SLA verdict and the CPU figures, as ``to_json`` gives them (docs/benchmarks.md,
"fstore bench": every key is described there).

The SLA rule: a run meets its SLA when at least one request succeeded, no request failed,
p99 <= ``p99_ms`` (when set) and rps >= ``min_rps`` (when set); with neither set ``met`` is
None. ``rps`` counts the successful replies to requests due after the warm-up, per second of
the measured window; errors are counted apart and never in the latencies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._ext._constants import Status
from .._ext._hdr import SUB_BITS, TIMELINE_SUB_BITS, percentile
from .drive import Raw

#: the percentiles reported, by JSON key
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "p999": 0.999}
#: the errors the generator itself counts: a connection lost, a request unanswered, a reply unreadable
TRANSPORT_ERRORS = ("UNREACHABLE", "TIMEOUT", "BAD_REPLY")
#: the statuses a reply can carry (UNAVAILABLE is a client's fallback, never sent)
REPORTED_STATUSES = [s for s in Status if s != Status.UNAVAILABLE]


@dataclass
class Sla:
    """The SLA a run is checked against, and where each bound came from."""

    p99_ms: float | None = None
    min_rps: float | None = None
    source: str | None = None   # "definitions", "command line", or both joined

    @property
    def set(self) -> bool:
        return self.p99_ms is not None or self.min_rps is not None


@dataclass
class BenchResult:
    """One run against one target (an fstore server or a Redis server)."""

    system: str                       # "fstore" or "redis"
    target: str                       # host:port
    service: str | None
    features: list[str] | None
    model: str | None
    entities_per_request: int
    connections: int
    threads: int
    rate: float | None                # the open loop's requests/s; None: a closed loop
    warmup_s: float
    raw: Raw
    sla: Sla = field(default_factory=Sla)
    keys: dict[str, Any] = field(default_factory=dict)
    generator: str = "compiled"
    notes: list[str] = field(default_factory=list)

    # ---- figures ----------------------------------------------------------------------

    @property
    def duration_s(self) -> float:
        return self.raw.measured_s

    @property
    def requests(self) -> int:
        return self.raw.ok

    @property
    def failed(self) -> int:
        """Error replies to measured requests, requests lost with their connection, timeouts."""
        return sum(self.raw.errors.values())

    @property
    def unanswered(self) -> bool:
        """No request succeeded and the server failed to answer some (lost, hung, garbled):
        the bench did not measure the server at all (``fstore bench`` exits 2)."""
        return not self.raw.ok and any(self.raw.errors.get(code) for code in TRANSPORT_ERRORS)

    @property
    def rps(self) -> float:
        return self.raw.ok / self.duration_s if self.duration_s > 0 else 0.0

    def latency_us(self, q: float) -> float | None:
        """The latency at quantile ``q`` in microseconds (None: no successful request)."""
        if q >= 1.0:
            return self.raw.max_ns / 1e3 if self.raw.ok else None
        v = percentile(self.raw.hist, q, SUB_BITS)
        return None if math.isnan(v) else v / 1e3

    def statuses(self) -> dict[str, int]:
        return {s.name: int(self.raw.statuses[int(s)]) for s in REPORTED_STATUSES}

    def hit_rate(self) -> float | None:
        total = sum(self.raw.statuses)
        return self.raw.statuses[int(Status.PRESENT)] / total if total else None

    def cpu_us_per_request(self, seconds: float | None) -> float | None:
        done = self.raw.ok + self.raw.failed
        return None if seconds is None or not done else seconds * 1e6 / done

    def timeline(self) -> list[dict[str, Any]]:
        """Per second of the measured window: successful replies and their p50 and p99 (us)."""
        out = []
        for sec in range(min(len(self.raw.timeline_counts), max(math.ceil(self.duration_s), 1))):
            row = np.ascontiguousarray(self.raw.timeline_hist[sec])
            n = int(self.raw.timeline_counts[sec])
            p50 = percentile(row, 0.5, TIMELINE_SUB_BITS) / 1e3 if n else None
            p99 = percentile(row, 0.99, TIMELINE_SUB_BITS) / 1e3 if n else None
            out.append({"second": sec, "requests": n, "p50_us": p50, "p99_us": p99})
        return out

    @property
    def met(self) -> bool | None:
        """The SLA verdict (module docstring); None when no SLA is set."""
        if not self.sla.set:
            return None
        p99 = self.latency_us(0.99)
        if not self.raw.ok or self.failed or p99 is None:
            return False
        if self.sla.p99_ms is not None and p99 > self.sla.p99_ms * 1e3:
            return False
        return self.sla.min_rps is None or self.rps >= self.sla.min_rps

    def misses(self) -> list[str]:
        """Why the SLA is missed, one phrase per bound (empty when met or unset)."""
        if self.met is not False:
            return []
        out = []
        if not self.raw.ok:
            out.append("no request succeeded")
        if self.failed:
            out.append(f"{self.failed} request(s) failed")
        p99 = self.latency_us(0.99)
        if self.sla.p99_ms is not None and p99 is not None and p99 > self.sla.p99_ms * 1e3:
            out.append(f"p99 {p99 / 1e3:.3f} ms > {self.sla.p99_ms:g} ms")
        if self.sla.min_rps is not None and self.rps < self.sla.min_rps:
            out.append(f"{self.rps:,.0f} req/s < {self.sla.min_rps:,.0f} req/s")
        return out

    # ---- the report -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        lat = {k: _round(self.latency_us(q)) for k, q in QUANTILES.items()}
        lat["max"] = _round(self.latency_us(1.0))
        return {
            "target": self.target, "system": self.system, "service": self.service, "features": self.features,
            "model": self.model, "entities_per_request": self.entities_per_request,
            "connections": self.connections, "threads": self.threads,
            "loop": "open" if self.rate else "closed", "rate": self.rate, "warmup_s": self.warmup_s,
            "duration_s": round(self.duration_s, 3), "requests": self.requests, "sent": self.raw.sent,
            "rps": round(self.rps, 1), "rows_per_s": round(self.rps * self.entities_per_request, 1),
            "latency_us": lat, "errors": dict(sorted(self.raw.errors.items())), "statuses": self.statuses(),
            "hit_rate": _round(self.hit_rate(), 4),
            "sla": {"p99_ms": self.sla.p99_ms, "min_rps": self.sla.min_rps, "met": self.met, "source": self.sla.source,
                    "missed": self.misses()},
            "server_cpu_us_per_request": _round(self.cpu_us_per_request(self.raw.server_cpu_s)),
            "server_pids": self.raw.server_pids,
            "generator": self.generator,
            "generator_cpu_us_per_request": _round(self.cpu_us_per_request(self.raw.generator_cpu_s)),
            "lost_connections": self.raw.lost_connections, "keys": self.keys, "notes": self.notes,
            "timeline": [{k: _round(v) for k, v in row.items()} for row in self.timeline()],
        }


def _round(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(float(v), digits)
