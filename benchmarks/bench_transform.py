"""The cost of a SQL transformation at ingest: a view computed by DuckDB from a 1M-row source
against a plain view that ingests the same output, precomputed, in one run.

Two sources of ``--rows`` rows (``--entities`` entities): ``raw`` (key, time, three numbers,
a category) and ``out``, the SQL's output written once (not timed). View ``sqlv`` reads
``raw`` through the SQL (row-wise: incremental); view ``plainv`` reads ``out`` as it is;
``groupv`` (``--group``) reads ``raw`` through a GROUP BY (full). Each round drops the views'
offline data and ingests each view once, the order alternating between rounds; prints one
JSON line with every timing, the medians and the ratio sql/plain::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_transform.py --work /tmp/btx --rounds 7
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from fstore import FeatureStore

SQL = ("SELECT k, ts, a * 2.0 AS f0, b + c AS f1, CASE WHEN a > b THEN 1 ELSE 0 END AS f2, upper(cat) AS f3 "
       "FROM source WHERE a >= 0")
GROUP_SQL = "SELECT k, max(ts) AS ts, sum(a) AS f0, avg(b) AS f1, count(*) AS f2, max(cat) AS f3 FROM source GROUP BY k"
FEATURES = [{"name": "f0", "dtype": "float64"}, {"name": "f1", "dtype": "float64"},
            {"name": "f2", "dtype": "int64"}, {"name": "f3", "dtype": "string"}]


def build(root: Path, rows: int, entities: int) -> None:
    if (root / "data" / "out" / "part-0.parquet").exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    for d in ("features", "data/raw", "data/out"):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(1)
    raw = pa.table({"k": pa.array(rng.integers(0, entities, rows), pa.int64()),
                    "ts": pa.array(1_700_000_000_000_000 + rng.integers(0, 90 * 86400 * 10**6, rows),
                                   pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                    "a": rng.random(rows), "b": rng.random(rows), "c": rng.random(rows),
                    "cat": pa.array(np.array(["north", "south", "east", "west"])[rng.integers(0, 4, rows)])})
    pq.write_table(raw, root / "data" / "raw" / "part-0.parquet")
    con = duckdb.connect()
    con.register("source", raw)
    rel = con.sql(SQL)
    out = (getattr(rel, "to_arrow_table", None) or rel.arrow)()
    pq.write_table(out, root / "data" / "out" / "part-0.parquet")
    (root / "fstore.yaml").write_text(yaml.safe_dump({"project": "btx", "offline_store": {"buckets": 8}}))
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump({
        "entities": [{"name": "e", "join_keys": ["k"]}],
        "sources": [{"name": "raw", "path": "data/raw", "timestamp_field": "ts"},
                    {"name": "out", "path": "data/out", "timestamp_field": "ts"}],
        "feature_views": [
            {"name": "sqlv", "entities": ["e"], "source": "raw", "transform": {"sql": SQL}, "features": FEATURES},
            {"name": "groupv", "entities": ["e"], "source": "raw", "transform": {"sql": GROUP_SQL},
             "features": FEATURES},
            {"name": "plainv", "entities": ["e"], "source": "out", "features": FEATURES}]}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-transform"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--group", action="store_true", help="Also time the GROUP BY (full) view.")
    args = ap.parse_args()
    build(args.work, args.rows, args.entities)
    fs = FeatureStore(args.work)
    fs.apply()
    views = ["sqlv", "plainv", *(["groupv"] if args.group else [])]
    times: dict[str, list[float]] = {v: [] for v in views}
    rows: dict[str, int] = {}
    for r in range(args.rounds):
        order = views if r % 2 == 0 else views[::-1]
        for v in order:
            fs.offline.drop(fs.get_feature_view(v))
            t0 = time.perf_counter()
            (res,) = fs.ingest([v])
            times[v].append(time.perf_counter() - t0)
            rows[v] = res.rows
    med = {v: statistics.median(t) for v, t in times.items()}
    ratios = [s / p for s, p in zip(times["sqlv"], times["plainv"])]
    print(json.dumps({"rows": args.rows, "ingested": rows, "seconds": times, "median_s": med,
                      "ratio_sql_over_plain_median": statistics.median(ratios),
                      "ratio_of_medians": med["sqlv"] / med["plainv"],
                      **({"ratio_group_over_plain": med["groupv"] / med["plainv"]} if args.group else {})}))


if __name__ == "__main__":
    main()
