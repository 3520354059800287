"""The serving gate's one seam to its load generator: ``drive`` runs a closed loop of 1-entity
GETs against one server and returns what the gate compares. Both servers of a run go through
the same generator, so the ratio between them is the generator's, whatever it is.

Two generators, chosen by ``[gate.serving] generator`` in benchmarks/gate.toml (the serving
thresholds are calibrated with that one, so changing it means re-calibrating them):

* ``"fstore-bench"``: issue 13's compiled generator, ``fstore.bench.run`` (epoll, no GIL),
  given the run's key stream as a Parquet file of keys: the servers are the bound;
* ``"asyncclient"``: the AsyncClient harness of benchmarks/bench_server.py (a uvloop event
  loop of C coroutines over fstore's ``AsyncClient``), what the gate used before fstore bench
  was in the tree; ~25 us of client CPU per request on this machine kind, so at 32
  connections it, not the server, is the bound.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

GENERATORS = ("asyncclient", "fstore-bench")


def drive(generator: str, host: str, port: int, server_pid: int, data: dict[str, Any], batches: list[list[int]],
          connections: int, seconds: float, warmup: float, work: Path) -> dict[str, Any]:
    """One run: ``warmup`` seconds discarded, then ``seconds`` timed. Returns requests, rps,
    p50_ms, p99_ms and the server's CPU per request (its /proc utime + stime over the timed
    window, divided by the requests answered in it)."""
    if generator == "fstore-bench":
        from fstore.bench import run

        keys = work / "gate_keys.parquet"
        if not keys.exists():
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({data["key"]: [b[0] for b in batches]}), keys)
        r = run(data["repo"], host=host, port=port, features=data["refs"], entities=1, connections=connections,
                duration=seconds, warmup=warmup, keys=keys).to_json()
        if r["errors"] or not r["requests"]:
            raise RuntimeError(f"fstore bench against port {port}: {r['requests']} requests, errors {r['errors']}")
        return {"requests": r["requests"], "rps": r["rps"], "p50_ms": r["latency_us"]["p50"] / 1e3,
                "p99_ms": r["latency_us"]["p99"] / 1e3, "server_cpu_us": r["server_cpu_us_per_request"],
                "client_cpu_us": r["generator_cpu_us_per_request"], "generator": r["generator"]}
    if generator != "asyncclient":
        raise ValueError(f"[gate.serving] generator must be one of {', '.join(GENERATORS)}, not {generator!r}")
    from bench_server import run_load, summarize

    cfg = {"target": "fstore", "host": host, "port": port, "server_pid": server_pid, "per_request": 1,
           "connections": connections, "warmup": warmup, "seconds": seconds, "max_requests": 10_000_000,
           "timeout": 30.0, "refs": data["refs"], "metadata": True, "batches": batches}
    s = summarize("gate", 1, connections, run_load(cfg, 1), 1.0, 1.0)
    return {"requests": s["requests"], "rps": s["requests_per_s"], "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
            "server_cpu_us": s["server_cpu_us_per_request"], "client_cpu_us": s["client_cpu_us_per_request"],
            "generator": "bench_server.py AsyncClient harness"}
