#!/usr/bin/env python
"""Skew check speed (issue 11): N logged reads x F features against the offline store.

Builds a repository with one feature view of F features (float64, int64 and string in
turn) over E entities with H rows of history each, ingests it, and writes N logged reads
of one entity each in the served-feature log layout (docs/monitoring.md), 100,000 rows a
file. The served values are what the training-set rule gives at each request time (so the
log is what an unchanged pipeline serves), with a few rows changed so that the check has
mismatches to find and classify. Not timed.

Timed: ``FeatureStore.skew(service, against="offline")`` in a fresh subprocess (its own
``ru_maxrss`` is the peak memory): reading the logs, the as-of join at request time through
the compiled kernel, the exact comparison and the classification.

Usage::

    python benchmarks/bench_skew.py --rows 1000000 --features 20 --out /tmp/skew.json
    python benchmarks/bench_skew.py --rows 2000 --entities 500      # a smoke run

Exit status: 0 when the check found exactly the mismatches planted, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICE = "bench_svc"
VIEW = "bench_stats"
ROLL = 100_000
PLANTED_EVERY = 10_007  # one planted mismatch (feature f0) per this many logged rows


def build(root: Path, rows: int, features: int, entities: int, history: int) -> int:
    """The repository, ingested, and its served-feature log; returns the mismatches planted."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from fstore import FeatureStore
    from fstore.repo.resolve import resolve

    rng = np.random.default_rng(11)
    now_us = int(time.time() * 1e6)
    day = 86_400_000_000
    (root / "data").mkdir(parents=True)
    (root / "fstore.yaml").write_text("project: bench\n")
    kinds = ["float64", "int64", "string"]
    feats = [{"name": f"f{i}", "dtype": kinds[i % 3]} for i in range(features)]
    (root / "defs.yaml").write_text(yaml.safe_dump({
        "entities": [{"name": "user", "join_keys": ["user_id"]}],
        "sources": [{"name": "src", "path": "data/src.parquet", "timestamp_field": "ts"}],
        "feature_views": [{"name": VIEW, "entities": ["user"], "source": "src", "ttl": "30d", "features": feats}],
        "feature_services": [{"name": SERVICE, "features": [VIEW]}]}))
    n_src = entities * history
    cols = {"user_id": np.repeat(np.arange(entities, dtype=np.int64), history),
            "ts": pa.array(now_us - rng.integers(0, 20 * day, n_src), pa.int64()).cast(pa.timestamp("us", tz="UTC"))}
    for i, f in enumerate(feats):
        if f["dtype"] == "float64":
            cols[f["name"]] = rng.normal(size=n_src).round(3)
        elif f["dtype"] == "int64":
            cols[f["name"]] = rng.integers(0, 1000, n_src)
        else:
            cols[f["name"]] = pa.array(rng.integers(0, 50, n_src).astype(str))
    pq.write_table(pa.table(cols), root / "data" / "src.parquet")
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        req_us = now_us - rng.integers(0, day, rows)
        ent = pa.table({"user_id": rng.integers(0, entities, rows),
                        "event_timestamp": pa.array(req_us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))})
        [view_req] = resolve(fs.registry.require(), feature_service=SERVICE)
        from fstore.offline.historical import point_in_time_view
        values, stamps = point_in_time_view(fs.offline, view_req, ent, req_us)
        offline_dir = fs.config.offline_path
    planted = 0
    meta = {"format": 1, "service": SERVICE, "keys": ["user_id"],
            "features": [{"column": f["name"], "view": f"{VIEW}_v1", "feature": f["name"], "dtype": f["dtype"]}
                         for f in feats]}
    ts_type = pa.timestamp("us", tz="UTC")
    folder = offline_dir / "logs" / SERVICE / "date=2000-01-01"  # dates are only partitions; all days are read
    folder.mkdir(parents=True)
    status = pa.array(np.where(stamps == np.iinfo(np.int64).min, 1, 0).astype(np.int8))
    ev = pa.array(np.where(stamps == np.iinfo(np.int64).min, 0, stamps), pa.int64(),
                  mask=stamps == np.iinfo(np.int64).min).cast(ts_type)
    f0 = values[0].to_numpy(zero_copy_only=False).copy()
    plant = np.arange(0, rows, PLANTED_EVERY)
    f0[plant] = f0[plant] + 1.0  # value_differs (or not_in_offline/missing_online by the row's times)
    planted = int((~np.isnan(f0[plant])).sum())
    values[0] = pa.chunked_array([pa.array(f0, pa.float64(), mask=np.isnan(f0))])
    for start in range(0, rows, ROLL):
        stop = min(rows, start + ROLL)
        n = stop - start
        cols = {"request_id": pa.array([f"1-{i}" for i in range(start, stop)]),
                "caller_request_id": pa.nulls(n, pa.string()),
                "request_time": ent.column("event_timestamp").slice(start, n),
                "service": pa.array([SERVICE] * n), "registry_version": pa.array(np.ones(n, np.int64)),
                "path": pa.array(["server_fast"] * n), "worker": pa.array(np.ones(n, np.int64)),
                "row": pa.array(np.zeros(n, np.int32)), "user_id": ent.column("user_id").slice(start, n)}
        for f, col in zip(feats, values):
            cols[f["name"]] = col.slice(start, n)
            cols[f["name"] + "__status"] = status.slice(start, n)
            cols[f["name"] + "__event_timestamp"] = ev.slice(start, n)
        table = pa.table(cols).replace_schema_metadata({"fstore.log": json.dumps(meta)})
        pq.write_table(table, folder / f"part-20000101T000000-1-{start // ROLL}.parquet")
    return planted


def check(root: str) -> None:
    """The timed part, in its own process: prints one JSON line."""
    import resource

    from fstore import FeatureStore

    start = time.perf_counter()
    with FeatureStore(root) as fs:
        report = fs.skew(SERVICE, against="offline", examples=0)
    seconds = time.perf_counter() - start
    [comp] = report["comparisons"]
    print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rows": comp["rows"], "mismatches": sum(f["mismatches"] for f in comp["features"]),
                      "features": len(comp["features"])}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="logged reads (one entity each)")
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--entities", type=int, default=200_000)
    ap.add_argument("--history", type=int, default=5, help="offline rows per entity")
    ap.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    ap.add_argument("--check", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check:
        check(args.check)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_skew_") as tmp:
        root = Path(tmp) / "repo"
        t0 = time.perf_counter()
        planted = build(root, args.rows, args.features, args.entities, args.history)
        setup = time.perf_counter() - t0
        proc = subprocess.run([sys.executable, __file__, "--check", str(root)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update({"logged_rows": args.rows, "n_features": args.features, "entities": args.entities,
                   "history": args.history, "planted": planted, "setup_seconds": round(setup, 1)})
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    ok = result["rows"] == args.rows and result["mismatches"] == planted and result["features"] == args.features
    if not ok:
        print("the check did not find exactly the planted mismatches", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
