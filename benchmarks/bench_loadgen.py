#!/usr/bin/env python
"""The load generator of ``fstore bench`` checked against redis-benchmark (issue 13).

One repository of one view (20 features, ``--rows`` entities, the shape of bench_server.py,
bulk-loaded; a service ``bench20`` of all 20 features). Servers on 127.0.0.1 pinned to the
server CPU (``--server-cpu``, default 0): ``redis-server --save '' --appendonly no`` and
``fstore serve`` (1 worker). Clients pinned to the client CPU (``--client-cpu``, default 1):
this process (so fstore bench's generator thread) and redis-benchmark.

Per round, in alternating order so noise hits each alike:

* ``redis-benchmark -c C -n N -t get -r KEYS -d SIZE --csv``: GET of random keys among KEYS
  (populated first with SET of SIZE bytes, SIZE the mean size of fstore bench's blobs);
* ``fstore bench --redis``: the same Redis, GET of one entity's blob per request, C connections,
  1 thread (fstore.bench.run);
* ``fstore bench`` against ``fstore serve``: 1 entity x 20 features, C connections;
* with ``--entities 1,100`` (the default) also both fstore bench runs at 100 entities per
  request (an MGET of 100 keys for Redis), for the serving tables.

Each reports requests/s, p50 and p99, the client's CPU per request (redis-benchmark: its
rusage; fstore bench: its own figure) and the server's (utime + stime from /proc over the
run). The ratio that matters: client CPU per request / Redis's CPU per request (a client
that can drive 2x what Redis answers on one core needs at most 0.5).

Usage::

    python benchmarks/bench_loadgen.py --keep /work/bench_loadgen --rounds 3 --seconds 10 --out loadgen.json
    python benchmarks/bench_loadgen.py --rows 2000 --rounds 1 --seconds 1 --out /tmp/l.json   # smoke size
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent))

from bench_online import VIEW, feature_specs, log, machine_info  # noqa: E402
from bench_server import Proc, free_port, prepare  # noqa: E402

from fstore.bench import procs, run  # noqa: E402
from fstore.client import wait_until_ready  # noqa: E402

HOST = "127.0.0.1"
SERVICE = "bench20"


def add_service(repo: Path) -> None:
    """A feature service of the view's 20 features, applied (once)."""
    from fstore import FeatureStore

    defs = repo / "features" / "defs.yaml"
    if f"name: {SERVICE}" not in defs.read_text():
        defs.write_text(defs.read_text() + f"feature_services:\n  - name: {SERVICE}\n    features: [{VIEW}]\n")
    with FeatureStore(repo) as fs:
        fs.apply()


def redis_benchmark(port: int, connections: int, requests: int, keys: int, size: int) -> dict[str, Any]:
    pids = procs.server_pids(HOST, port)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = procs.cpu_seconds(pids)
    out = subprocess.run(["redis-benchmark", "-h", HOST, "-p", str(port), "-c", str(connections), "-n",
                          str(requests), "-t", "get", "-r", str(keys), "-d", str(size), "--csv"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    s1 = procs.cpu_seconds(pids)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = next(r for r in csv.DictReader(io.StringIO(out)) if r["test"] == "GET")
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]), "p99_ms": float(row["p99_latency_ms"]),
            "client_cpu_us": client * 1e6 / requests, "server_cpu_us": (s1 - s0) * 1e6 / requests}


def fstore_bench(repo: Path, connections: int, seconds: float, redis_port: int | None = None,
                 port: int | None = None, entities: int = 1) -> dict[str, Any]:
    r = run(repo, port=port, service=SERVICE, entities=entities, connections=connections, duration=seconds,
            warmup=min(1.0, seconds / 2), redis=f"{HOST}:{redis_port}" if redis_port else None).to_json()
    assert not r["errors"], r["errors"]
    return {"rps": r["rps"], "rows_per_s": r["rows_per_s"], "p50_ms": r["latency_us"]["p50"] / 1e3,
            "p99_ms": r["latency_us"]["p99"] / 1e3, "client_cpu_us": r["generator_cpu_us_per_request"],
            "server_cpu_us": r["server_cpu_us_per_request"], "hit_rate": r["hit_rate"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--entities", default="1,100", help="entities per request of the fstore bench runs")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--keep", default=None, help="keep and reuse the repository here")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    allowed = os.sched_getaffinity(0)
    pinned = {args.server_cpu, args.client_cpu} <= allowed and args.server_cpu != args.client_cpu
    if pinned:
        os.sched_setaffinity(0, {args.client_cpu})  # this process, its generator thread, redis-benchmark
    else:
        log(f"not pinning: CPUs {args.server_cpu} and {args.client_cpu} are not two of the allowed {sorted(allowed)}")
    server_cpus = [args.server_cpu] if pinned else None
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_loadgen_"))
    work.mkdir(parents=True, exist_ok=True)
    repo, _, _ = prepare(work, args.rows, feature_specs(20))
    add_service(repo)
    redis_port, fstore_port = free_port(), free_port()
    servers = [Proc("redis", ["redis-server", "--port", str(redis_port), "--bind", HOST, "--save", "",
                              "--appendonly", "no"], server_cpus, work / "redis.log"),
               Proc("fstore", [str(Path(sys.executable).parent / "fstore"), "-r", str(repo), "serve", "--host", HOST,
                               "--port", str(fstore_port)], server_cpus, work / "fstore.log")]
    results: dict[str, list[dict[str, Any]]] = {"redis-benchmark GET": []}
    for n in [int(x) for x in args.entities.split(",")]:
        results[f"fstore bench --redis, {n} entity(ies)"] = []
        results[f"fstore bench -> fstore serve, {n} entity(ies)"] = []
    try:
        wait_until_ready(HOST, fstore_port, timeout=60)
        time.sleep(0.5)
        import redis
        fstore_bench(repo, args.connections, 0.5, redis_port=redis_port)  # copies rows: their size, below
        client = redis.Redis(HOST, redis_port)
        sample = [client.strlen(k) for k in client.scan_iter(match="fstore:*", count=1000)][:2000]
        size = round(statistics.mean(sample))
        subprocess.run(["redis-benchmark", "-h", HOST, "-p", str(redis_port), "-c", str(args.connections), "-n",
                        str(args.rows), "-t", "set", "-r", str(args.rows), "-d", str(size), "-q"],
                       capture_output=True, timeout=600, check=True)
        log(f"blobs of {size} bytes on average; {args.rounds} round(s)")
        for rnd in range(args.rounds):
            order = list(results)
            if rnd % 2:
                order.reverse()
            for name in order:
                if name.startswith("redis-benchmark"):
                    n = int(max(results[name][-1]["rps"] if results[name] else 40_000, 1000) * args.seconds)
                    res = redis_benchmark(redis_port, args.connections, n, args.rows, size)
                else:
                    n = int(name.rsplit(", ", 1)[1].split()[0])
                    res = fstore_bench(repo, args.connections, args.seconds, entities=n,
                                       **({"redis_port": redis_port} if "--redis" in name else {"port": fstore_port}))
                results[name].append(res)
                log(f"round {rnd + 1} {name}: {json.dumps(res)}")
    finally:
        for s in servers:
            s.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0] if rows[0][k] is not None}
               for name, rows in results.items()}
    print("| client -> server | req/s | rows/s | p50 ms | p99 ms | client CPU us/req | server CPU us/req | "
          "client/server CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in summary.items():
        ratio = m["client_cpu_us"] / m["server_cpu_us"] if m.get("server_cpu_us") else float("nan")
        print(f"| {name} | {m['rps']:,.0f} | {m.get('rows_per_s', m['rps']):,.0f} | {m['p50_ms']:.3f} | "
              f"{m['p99_ms']:.3f} | {m['client_cpu_us']:.2f} | {m.get('server_cpu_us', float('nan')):.2f} | "
              f"{ratio:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine_info(), "args": vars(args), "blob_bytes": size,
                                              "rounds": results, "median": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
