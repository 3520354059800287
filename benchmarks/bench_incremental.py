"""materialize-incremental: a no-op and a small delta on a moderate store, for one fstore tree.

Builds (or reuses) a repository of one view (``--rows`` rows over ``--entities`` entities,
five features, 8 buckets), ingests it, materializes it once, then times:

- ``noop``: ``materialize_incremental("now")`` with nothing new (median of ``--repeat``);
- ``delta``: ``--delta`` new rows (a new source file, ingested outside the clock) for random
  existing entities, dated when written (after the previous run's END, so that the event-time
  rule of fstore before the ingest log reads them too), then ``materialize_incremental("now")`` (median).

Run it once per tree to compare (the tree is whatever ``fstore`` PYTHONPATH imports)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_incremental.py --work /tmp/bi-new
    PYTHONPATH=/path/to/old/tree .venv/bin/python benchmarks/bench_incremental.py --work /tmp/bi-old

Prints one JSON line: the tree, the rows, and the seconds and rows read of each timing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

import fstore
from fstore import FeatureStore

FEATURES = 5


def build(root: Path, rows: int, entities: int, seed: int = 1) -> None:
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "data" / "v").mkdir(parents=True, exist_ok=True)
    (root / "fstore.yaml").write_text(yaml.safe_dump({"project": "bench", "offline_store": {"buckets": 8}}))
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump({
        "entities": [{"name": "e", "join_keys": ["k"]}],
        "sources": [{"name": "src", "path": "data/v", "timestamp_field": "ts"}],
        "feature_views": [{"name": "v", "entities": ["e"], "source": "src",
                           "features": [{"name": f"f{i}", "dtype": "float64"} for i in range(FEATURES)]}]}))
    rng = np.random.default_rng(seed)
    now_us = time.time_ns() // 1000
    cols = {"k": pa.array(rng.integers(0, entities, rows), pa.int64()),
            "ts": pa.array(now_us - rng.integers(3600 * 10**6, 90 * 86400 * 10**6, rows),
                           pa.int64()).cast(pa.timestamp("us", tz="UTC"))}
    cols.update({f"f{i}": pa.array(rng.random(rows)) for i in range(FEATURES)})
    pq.write_table(pa.table(cols), root / "data" / "v" / "part-0.parquet")


def delta(root: Path, n: int, entities: int, i: int) -> None:
    rng = np.random.default_rng(100 + i)
    now_us = time.time_ns() // 1000  # after the previous run's END, so that the old rule reads them too
    cols = {"k": pa.array(rng.integers(0, entities, n), pa.int64()),
            "ts": pa.array(np.full(n, now_us), pa.int64()).cast(pa.timestamp("us", tz="UTC"))}
    cols.update({f"f{j}": pa.array(rng.random(n)) for j in range(FEATURES)})
    pq.write_table(pa.table(cols), root / "data" / "v" / f"delta-{i}.parquet")


def timed(fs: FeatureStore) -> tuple[float, int]:
    t0 = time.perf_counter()
    [r] = fs.materialize_incremental("now")
    return time.perf_counter() - t0, r.rows_read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for the repository (recreated)")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--entities", type=int, default=200_000)
    ap.add_argument("--delta", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    root = args.work / "repo"
    build(root, args.rows, args.entities)
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    full = timed(fs)
    noop = [timed(fs) for _ in range(args.repeat)]
    deltas = []
    for i in range(args.repeat):
        delta(root, args.delta, args.entities, i)
        fs.ingest()
        deltas.append(timed(fs))
    print(json.dumps({
        "tree": str(Path(fstore.__file__).parent.parent), "at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "rows": args.rows, "entities": args.entities, "delta_rows": args.delta,
        "first_s": round(full[0], 3), "first_rows_read": full[1],
        "noop_s": round(statistics.median(s for s, _ in noop), 4), "noop_rows_read": noop[-1][1],
        "delta_s": round(statistics.median(s for s, _ in deltas), 4), "delta_rows_read": deltas[-1][1]}))


if __name__ == "__main__":
    main()
