"""The serving gate's one seam to its load generator: ``drive`` runs a closed loop of 1-entity
GETs against one server and returns what the gate compares. Both servers of a run go through
the same generator, so the ratio between them is the generator's, whatever it is.

The generator here is the AsyncClient harness of benchmarks/bench_server.py (a uvloop event
loop of C coroutines over fstore's ``AsyncClient``; about 20-80 us of client CPU per request
on this machine kind, so at 32 connections it, not the server, is usually the bound). The
compiled ``fstore bench`` of issue 13 is the generator meant here: when it is in the tree,
this function is the only place to change.
"""
from __future__ import annotations

from typing import Any

GENERATOR = "bench_server.py AsyncClient harness"


def drive(host: str, port: int, server_pid: int, refs: list[str], batches: list[list[int]], connections: int,
          seconds: float, warmup: float) -> dict[str, Any]:
    """One run: ``warmup`` seconds discarded, then ``seconds`` timed. Returns requests, rps,
    p50_ms, p99_ms and the server's CPU per request (its /proc utime + stime over the timed
    window, its worker processes included, divided by the requests answered in it)."""
    from bench_server import run_load, summarize

    cfg = {"target": "fstore", "host": host, "port": port, "server_pid": server_pid, "per_request": 1,
           "connections": connections, "warmup": warmup, "seconds": seconds, "max_requests": 10_000_000,
           "timeout": 30.0, "refs": refs, "metadata": True, "batches": batches}
    r = summarize("gate", 1, connections, run_load(cfg, 1), 1.0, 1.0)
    return {"requests": r["requests"], "rps": r["requests_per_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "server_cpu_us": r["server_cpu_us_per_request"], "client_cpu_us": r["client_cpu_us_per_request"],
            "bound": r["bound"], "generator": GENERATOR}
