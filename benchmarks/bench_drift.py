"""``fstore drift``'s comparison of 20 features over 10M rows (issue 11: under 10 s): 14
float64, 3 int64 and 3 string features, reference and current 10M rows each, 1% nulls.

Two measurements:

- in memory (default): the PSI, null rates and statistics of ``compare_feature`` (one
  feature at a time, then ``compare_features``' thread per core); reading the sides is
  not counted. One feature's columns are built per dtype and reused, so memory stays
  near 1 GB.
- ``--files DIR``: the command a user runs, end to end, in a fresh process:
  ``fstore -r DIR/repo drift --service bench --reference DIR/repo/train.parquet --json``,
  the reference a training set file of 10M rows (entity key, event time and the 20
  features) and the current side 10M served-feature log rows in the documented layout
  (100 files of 100,000 rows, each with every logged column: request ids, statuses and
  event times of each feature). The data is built once into DIR (about 4.5 GB, not timed)
  and reused by later runs; one warm-up run (not counted: it brings the files into the
  page cache), then each run's wall time, then the median.

    .venv/bin/python benchmarks/bench_drift.py [--rows 10000000] [--features 20]
    .venv/bin/python benchmarks/bench_drift.py --files /tmp/drift-bench [--runs 3] [--warmup 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fstore.monitoring.drift import compare_feature, compare_features
from fstore.monitoring.drift_data import Output

MIX = ["float64"] * 14 + ["int64"] * 3 + ["string"] * 3
SERVICE = "bench"
VIEW = "bench_stats"
LOG_FILE_ROWS = 100_000


def columns(dtype: str, n: int, shift: float, rng: np.random.Generator) -> pa.ChunkedArray:
    """n values of the dtype with 1% nulls; ``shift`` moves the distribution."""
    mask = rng.random(n) < 0.01
    if dtype == "float64":
        return pa.chunked_array([pa.array(rng.normal(shift, 1, n), mask=mask)])
    if dtype == "int64":
        return pa.chunked_array([pa.array(rng.poisson(3 + shift, n), pa.int64(), mask=mask)])
    cats = pa.array([f"segment-{i}" for i in range(12)])
    idx = np.minimum(rng.zipf(1.5 + shift, n) - 1, 11)
    return pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array(idx, mask=mask), cats).cast(pa.string())])


def in_memory(rows: int, features: int) -> None:
    rng = np.random.default_rng(3)
    mix = (MIX * (features // len(MIX) + 1))[:features]
    data = {d: (columns(d, rows, 0.0, rng), columns(d, rows, 0.3, rng)) for d in sorted(set(mix))}
    outputs, ref_cols, cur_cols = [], {}, {}
    for i, dtype in enumerate(mix):
        outputs.append(Output(f"f{i}", {"name": "v"}, {"name": f"f{i}", "dtype": dtype}))
        ref_cols[f"f{i}"], cur_cols[f"f{i}"] = data[dtype]
    t = time.perf_counter()
    sequential = [compare_feature(o, ref_cols[o.column], cur_cols[o.column]).entry for o in outputs]
    one_core = time.perf_counter() - t
    t = time.perf_counter()
    entries = [f.entry for f in compare_features(outputs, ref_cols, cur_cols)]
    total = time.perf_counter() - t
    assert entries == sequential, "the threaded comparison must equal the sequential one"
    for i, entry in enumerate(entries):
        if i < 3 or mix[i] != mix[i - 1]:
            print(f"  f{i:<3d} {mix[i]:8s} psi {entry['psi']:.4f} ({entry['level']})")
    print(f"one feature at a time: {one_core:.2f} s")
    print(f"{features} features x {rows:,} rows (reference and current each): {total:.2f} s")


# ---- end to end: a repository, a training set file and a served-feature log ----------------

def build(root: Path, rows: int, features: int) -> None:
    """The repository (one view of the features, ingested from a small source), the
    reference training set file and the current side's log files."""
    import yaml

    from fstore import FeatureStore

    rng = np.random.default_rng(3)
    mix = (MIX * (features // len(MIX) + 1))[:features]
    names = [f"f{i}" for i in range(features)]
    (root / "data").mkdir(parents=True)
    (root / "fstore.yaml").write_text("project: bench\n")
    (root / "defs.yaml").write_text(yaml.safe_dump({
        "entities": [{"name": "user", "join_keys": ["user_id"]}],
        "sources": [{"name": "src", "path": "data/src.parquet", "timestamp_field": "ts"}],
        "feature_views": [{"name": VIEW, "entities": ["user"], "source": "src",
                           "features": [{"name": f, "dtype": d} for f, d in zip(names, mix)]}],
        "feature_services": [{"name": SERVICE, "features": [VIEW]}]}))
    ts_type = pa.timestamp("us", tz="UTC")
    now_us = int(time.time() * 1e6)
    small = {"user_id": pa.array(np.arange(1000), pa.int64()),
             "ts": pa.array(np.full(1000, now_us - 86_400_000_000), pa.int64()).cast(ts_type)}
    for f, d in zip(names, mix):
        small[f] = columns(d, 1000, 0.0, rng)
    pq.write_table(pa.table(small), root / "data" / "src.parquet")
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
    data = {d: (columns(d, rows, 0.0, rng), columns(d, rows, 0.3, rng)) for d in sorted(set(mix))}
    users = pa.array(rng.integers(0, 1_000_000, rows), pa.int64())
    times = pa.array(now_us - rng.integers(0, 86_400_000_000, rows), pa.int64()).cast(ts_type)
    train = {"user_id": users, "event_timestamp": times, **{f: data[d][0] for f, d in zip(names, mix)}}
    pq.write_table(pa.table(train), root / "train.parquet")
    meta = {"format": 1, "service": SERVICE, "keys": ["user_id"],
            "features": [{"column": f, "view": f"{VIEW}_v1", "feature": f, "dtype": d} for f, d in zip(names, mix)]}
    folder = root / "data" / "offline" / "logs" / SERVICE / "date=2000-01-01"  # the day is only a partition
    folder.mkdir(parents=True)
    for start in range(0, rows, LOG_FILE_ROWS):
        n = min(rows, start + LOG_FILE_ROWS) - start
        seq = pa.array(np.arange(start, start + n)).cast(pa.string())
        cols = {"request_id": pc.binary_join_element_wise("1", seq, "-"),
                "caller_request_id": pa.nulls(n, pa.string()), "request_time": times.slice(start, n),
                "service": pa.array([SERVICE] * n), "model": pa.nulls(n, pa.string()),
                "registry_version": pa.array(np.ones(n, np.int64)), "path": pa.array(["server_fast"] * n),
                "worker": pa.array(np.ones(n, np.int64)), "row": pa.array(np.zeros(n, np.int32)),
                "user_id": users.slice(start, n)}
        for f, d in zip(names, mix):
            values = data[d][1].slice(start, n)
            cols[f] = values
            cols[f + "__status"] = pc.if_else(pc.is_null(values), 1, 0).cast(pa.int8())
            cols[f + "__event_timestamp"] = times.slice(start, n)
        table = pa.table(cols).replace_schema_metadata({"fstore.log": json.dumps(meta)})
        pq.write_table(table, folder / f"part-20000101T000000-1-{start // LOG_FILE_ROWS}.parquet")


def end_to_end(base: Path, rows: int, features: int, runs: int, warmup: int) -> None:
    root = base / "repo"
    if not (root / "train.parquet").exists():
        t = time.perf_counter()
        build(root, rows, features)
        print(f"built {root} in {time.perf_counter() - t:.0f} s (not timed)")
    exe = Path(sys.executable).with_name("fstore")
    cmd = [str(exe), "-r", str(root), "drift", "--service", SERVICE, "--reference", str(root / "train.parquet"),
           "--json"]
    print("$", " ".join(cmd))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    seconds = []
    for i in range(warmup + runs):
        t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        took, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode not in (0, 1):
            sys.exit(proc.stderr)
        doc = json.loads(proc.stdout)
        if i >= warmup:
            seconds.append(took)
        print(f"  {took:.2f} s{' (warm-up: the files into the page cache)' if i < warmup else ''} "
              f"(CPU: user {after.ru_utime - before.ru_utime:.2f} s, system {after.ru_stime - before.ru_stime:.2f} s): "
              f"reference {doc['reference']['rows']:,} rows, current {doc['current']['rows']:,} rows, "
              f"{len(doc['features'])} features, level {doc['level']}")
    print(f"median of {runs}: {statistics.median(seconds):.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--files", type=Path, default=None,
                    help="time `fstore drift` end to end over files built (once) in this folder")
    ap.add_argument("--runs", type=int, default=3, help="--files: runs of the command (the median is reported)")
    ap.add_argument("--warmup", type=int, default=1, help="--files: runs before those, not counted")
    args = ap.parse_args()
    if args.files:
        end_to_end(args.files, args.rows, args.features, args.runs, args.warmup)
    else:
        in_memory(args.rows, args.features)


if __name__ == "__main__":
    main()
