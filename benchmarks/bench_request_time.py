"""The cost of a request-time feature per GET on the server (1 entity): ``fstore bench`` drives
one ``fstore serve`` worker with the same GET with and without a request view's output, in
alternating rounds of one run; prints each round and the medians' ratio (docs/benchmarks.md).
With ``--log``, the same request shape through two services, one logged at rate 1 (the served-
feature log records it from its answer) and one not, alternating on one server.

    PYTHONPATH=$PWD python benchmarks/bench_request_time.py [--rounds 5] [--duration 5] [--log]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

FSTORE = str(Path(sys.executable).parent / "fstore")
N = 10_000
FUNCTIONS = '''
import pyarrow.compute as pc


def score(cols):
    return {"ratio": pc.divide(cols["amount"], cols["avg"])}
'''


def make_repo(root: Path) -> None:
    (root / "features").mkdir(parents=True)
    (root / "data" / "stats").mkdir(parents=True)
    (root / "fstore.yaml").write_text("project: rt\n")
    (root / "features" / "fns.py").write_text(FUNCTIONS)
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump({
        "entities": [{"name": "customer", "join_keys": ["customer_id"]}],
        "sources": [{"name": "stats_src", "path": "data/stats", "timestamp_field": "ts"}],
        "feature_views": [{"name": "stats", "entities": ["customer"], "source": "stats_src",
                           "features": [{"name": "avg", "dtype": "float64"}, {"name": "count", "dtype": "int64"}]}],
        "request_views": [{"name": "score", "function": "score", "request": {"amount": "float64"},
                           "inputs": ["stats:avg"], "features": [{"name": "ratio", "dtype": "float64"}]}],
        "feature_services": [{"name": "scored", "features": ["stats:avg", "stats:count", "score:ratio"]},
                             {"name": "scored_log", "features": ["stats:avg", "stats:count", "score:ratio"],
                              "logging": {"sample_rate": 1.0}}],
    }, sort_keys=False))
    now = dt.datetime.now(dt.timezone.utc)
    pq.write_table(pa.table({"customer_id": pa.array(range(N), pa.int64()), "ts": pa.array([now] * N),
                             "avg": pa.array([float(i % 97 + 1) for i in range(N)]),
                             "count": pa.array(range(N), pa.int64())}), root / "data" / "stats" / "part-0.parquet")
    pq.write_table(pa.table({"customer_id": pa.array(range(N), pa.int64()),
                             "amount": pa.array([float(i % 13) for i in range(N)])}), root / "keys.parquet")
    for args in (["apply"], ["ingest"], ["materialize", (now - dt.timedelta(days=1)).isoformat(),
                                          (now + dt.timedelta(minutes=1)).isoformat()]):
        subprocess.run([FSTORE, "-r", str(root), *args], check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench(root: Path, port: int, shape: str, duration: float) -> dict:
    kind, _, name = shape.partition("=")
    out = subprocess.run([FSTORE, "-r", str(root), "bench", "--port", str(port), f"--{kind}", name,
                          "--keys", str(root / "keys.parquet"), "--duration", str(duration), "--warmup", "1",
                          "--connections", "8", "--json"], capture_output=True, text=True, timeout=duration + 120)
    if out.returncode not in (0, 1):
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--log", action="store_true", help="A/B: the request shape logged at rate 1 vs not logged")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        make_repo(root)
        port = free_port()
        server = subprocess.Popen([FSTORE, "-r", str(root), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(3)
            shapes = {"plain": "features=stats:avg,stats:count", "request": "features=stats:avg,stats:count,score:ratio"}
            if a.log:  # "plain" is then the request shape unlogged, "request" the same shape logged
                shapes = {"plain": "service=scored", "request": "service=scored_log"}
            got: dict[str, list[dict]] = {k: [] for k in shapes}
            for r in range(a.rounds):
                for name in (shapes if r % 2 == 0 else list(shapes)[::-1]):
                    doc = bench(root, port, shapes[name], a.duration)
                    assert not doc["errors"], doc["errors"]
                    got[name].append(doc)
                    cpu = doc["server_cpu_us_per_request"]
                    print(f"round {r} {name:8s} rps {doc['rps']:>9.0f}  server CPU {cpu:.1f} us/GET  "
                          f"p50 {doc['latency_us']['p50']:.0f} us  p99 {doc['latency_us']['p99']:.0f} us  "
                          f"statuses {doc['statuses']}", flush=True)
            med = {k: statistics.median(d["server_cpu_us_per_request"] for d in v) for k, v in got.items()}
            rps = {k: statistics.median(d["rps"] for d in v) for k, v in got.items()}
            p50 = {k: statistics.median(d["latency_us"]["p50"] for d in v) for k, v in got.items()}
            print(f"medians over {a.rounds} rounds: server CPU per GET plain {med['plain']:.1f} us, request "
                  f"{med['request']:.1f} us (ratio {med['request'] / med['plain']:.2f}x, +{med['request'] - med['plain']:.1f} us); "
                  f"rps plain {rps['plain']:.0f}, request {rps['request']:.0f} (ratio {rps['request'] / rps['plain']:.2f}); "
                  f"p50 plain {p50['plain']:.0f} us, request {p50['request']:.0f} us")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
