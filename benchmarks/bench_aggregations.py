"""Windowed aggregations: a training set with 3 windows from fstore's tiles against DuckDB's
brute-force join + group by over the raw events, in one run, results compared row by row.

    PYTHONPATH=$PWD python benchmarks/bench_aggregations.py --events 10000000 --rows 1000000

Events: ``--keys`` customers, times uniform over 30 days, a float amount (5 % null).
Entity rows: random customers at random times in the last 23 days. Features: sum of
amount over 1h, count over 1d, mean over 7d (tile grain chosen by fstore: 5m).
Rounds alternate fstore, DuckDB (``--rounds``); medians are reported. Exits 1 if any value
differs between the two.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fstore import FeatureStore

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
DAY = 86_400_000_000
DEFS = """entities:
  - {name: customer, join_keys: [cid]}
sources:
  - {name: tx, path: data/tx, timestamp_field: ts}
feature_views:
  - name: spend
    entities: [customer]
    source: tx
    aggregations:
      - {column: amount, function: sum, window: 1h, name: sum_1h}
      - {column: amount, function: count, window: 1d, name: count_1d}
      - {column: amount, function: mean, window: 7d, name: mean_7d}
"""
SQL = """
SELECT e.rid,
       sum(v.amount) FILTER (WHERE v.ts > e.event_timestamp - INTERVAL 1 HOUR) AS sum_1h,
       count(v.amount) FILTER (WHERE v.ts > e.event_timestamp - INTERVAL 1 DAY) AS count_1d,
       avg(v.amount) AS mean_7d
FROM ent e LEFT JOIN ev v
  ON v.cid = e.cid AND v.ts <= e.event_timestamp AND v.ts > e.event_timestamp - INTERVAL 7 DAY
GROUP BY e.rid ORDER BY e.rid
"""


def make_data(root: Path, n_events: int, n_rows: int, n_keys: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    (root / "data/tx").mkdir(parents=True)
    (root / "features").mkdir()
    (root / "fstore.yaml").write_text("project: bench\n")
    (root / "features/defs.yaml").write_text(DEFS)
    start = int(T0.timestamp() * 1e6)
    parts = 4
    for p in range(parts):
        n = n_events // parts
        amount = pa.array(rng.gamma(2.0, 20.0, n), mask=rng.random(n) < 0.05)
        pq.write_table(pa.table({"cid": rng.integers(0, n_keys, n),
                                 "ts": pa.array(start + rng.integers(0, 30 * DAY, n), pa.int64()).cast(
                                     pa.timestamp("us", tz="UTC")),
                                 "amount": amount}), root / f"data/tx/part-{p}.parquet")
    return pa.table({"cid": rng.integers(0, n_keys, n_rows),
                     "event_timestamp": pa.array(start + 7 * DAY + rng.integers(0, 23 * DAY, n_rows),
                                                 pa.int64()).cast(pa.timestamp("us", tz="UTC"))})


def run_fstore(fs: FeatureStore, ent: pa.Table) -> pa.Table:
    return fs.get_historical_features(ent, ["spend:sum_1h", "spend:count_1d", "spend:mean_7d"])


def run_duckdb(root: Path, ent: pa.Table) -> pa.Table:
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    con.register("ent_arrow", ent.append_column("rid", pa.array(np.arange(ent.num_rows))))
    con.execute("CREATE TEMP VIEW ent AS SELECT * FROM ent_arrow")
    con.execute(f"CREATE TEMP VIEW ev AS SELECT * FROM read_parquet('{root}/data/tx/*.parquet')")
    out = con.sql(SQL).to_arrow_table()
    con.close()
    return out


def same(a: pa.Table, b: pa.Table) -> int:
    """The rows where fstore and DuckDB differ (sums to a relative 1e-9: they add in another order)."""
    bad = 0
    for name in ("sum_1h", "count_1d", "mean_7d"):
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        for u, v in zip(x, y):
            if name == "count_1d":
                bad += u != v
            elif (u is None) != (v is None) or (u is not None and not math.isclose(u, v, rel_tol=1e-9, abs_tol=1e-9)):
                bad += 1
    return bad


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-agg-"))
    try:
        t = time.perf_counter()
        ent = make_data(root, args.events, args.rows, args.keys)
        print(f"data: {args.events:,} events, {args.rows:,} rows, {args.keys:,} keys ({time.perf_counter() - t:.1f}s)")
        fs = FeatureStore(root)
        fs.apply()
        t = time.perf_counter()
        fs.ingest()
        print(f"fstore ingest (events + tiles): {time.perf_counter() - t:.1f}s")
        times: dict[str, list[float]] = {"fstore": [], "duckdb": []}
        differ = 0
        for r in range(args.rounds):
            t = time.perf_counter()
            a = run_fstore(fs, ent)
            times["fstore"].append(time.perf_counter() - t)
            t = time.perf_counter()
            b = run_duckdb(root, ent)
            times["duckdb"].append(time.perf_counter() - t)
            differ += same(a, b)
            print(f"round {r + 1}: fstore {times['fstore'][-1]:.2f}s, duckdb {times['duckdb'][-1]:.2f}s, "
                  f"values that differ: {differ}")
        fm, dm = statistics.median(times["fstore"]), statistics.median(times["duckdb"])
        print(f"median: fstore {fm:.2f}s, duckdb {dm:.2f}s, duckdb/fstore {dm / fm:.2f}x")
        fs.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if differ:
        raise SystemExit(1)  # fstore and DuckDB disagree: the figures mean nothing


if __name__ == "__main__":
    main()
