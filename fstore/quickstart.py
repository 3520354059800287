"""The quickstart: a ride-hailing feature repository with generated data, end to end.

It writes the repository of the README (customer spend statistics as daily
Parquet snapshots, customer-driver trip counts as daily CSV files), applies it,
ingests it, builds a training set for the ``fraud_v1`` service and prints what
came out. The data is random but shaped like the real thing: late corrections
(same event time, newer created time), gaps longer than the ttl, nulls.
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from .feature_store import FeatureStore
from .progress import RichReporter


FSTORE_YAML = "project: rides\n"

DEFS_YAML = """\
entities:
  - name: customer
    join_keys: [customer_id]
    description: A rider with a payment card on file
  - name: driver
    join_keys: [driver_id]
sources:
  - name: customer_stats_src
    path: data/customer_stats.parquet
    timestamp_field: event_timestamp
    created_timestamp_field: created_timestamp
  - name: trips_src
    path: data/trips/*.csv
    timestamp_field: ts
feature_views:
  - name: customer_stats
    version: 1
    entities: [customer]
    source: customer_stats_src
    ttl: 7d
    owner: risk-team@example.com
    freshness_sla: 1h
    as_of: created_timestamp   # its late corrections reach training sets only once created
    description: Rolling customer spend statistics
    tags: {team: risk}
    features:
      - {name: avg_amount_7d, dtype: float64, default: 0.0}
      - {name: txn_count_7d, dtype: int64}
      - {name: segment, dtype: string}
  - name: customer_driver
    version: 1
    entities: [customer, driver]
    source: trips_src
    ttl: 90d
    owner: marketplace@example.com
    features:
      - {name: trips_together, dtype: int64, default: 0}
feature_services:
  - name: fraud_v1
    features: [customer_stats:avg_amount_7d, customer_stats:txn_count_7d, customer_driver]
"""


def write_repository(root: Path, *, customers: int, days: int, seed: int = 7) -> Path:
    """Write the repository and its raw data; returns the path of the entity rows file."""
    rng = np.random.default_rng(seed)
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - dt.timedelta(days=days - 1)  # the history ends today, so serving finds fresh rows
    # ... but never after now: a row is not written before it happens (fstore validate, rule L4)
    now_us = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1e6) - 60_000_000
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "data" / "trips").mkdir(parents=True, exist_ok=True)
    (root / "fstore.yaml").write_text(FSTORE_YAML)
    (root / "features" / "defs.yaml").write_text(DEFS_YAML)
    drivers = max(10, customers // 10)
    start_us = int(start.timestamp() * 1e6)
    day_us = 86_400_000_000

    # customer_stats: one snapshot per active customer per day, 3% corrected later
    cid = np.repeat(np.arange(1, customers + 1), days)
    day = np.tile(np.arange(days), customers)
    active = rng.random(cid.size) < 0.8
    cid, day = cid[active], day[active]
    ts = start_us + day * day_us + rng.integers(0, day_us, cid.size)
    created = ts + rng.integers(60, 3600, cid.size) * 1_000_000
    ts, created = np.minimum(ts, now_us), np.minimum(created, now_us)
    spend = rng.lognormal(3.5, 0.8, cid.size).round(2)
    count = rng.poisson(6, cid.size)
    fix = rng.random(cid.size) < 0.03
    cid = np.concatenate([cid, cid[fix]])
    ts = np.concatenate([ts, ts[fix]])
    created = np.concatenate([created, created[fix] + 86_400_000_000])
    spend = np.concatenate([spend, (spend[fix] * 0.9).round(2)])
    count = np.concatenate([count, count[fix]])
    segment = rng.choice(np.array(["new", "regular", "vip"]), cid.size, p=[0.2, 0.7, 0.1])
    spend_arr = pa.array(spend, mask=rng.random(cid.size) < 0.01)
    pq.write_table(pa.table({
        "customer_id": cid, "event_timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "created_timestamp": pa.array(created, pa.timestamp("us", tz="UTC")),
        "avg_amount_7d": spend_arr, "txn_count_7d": count, "segment": segment}),
        root / "data" / "customer_stats.parquet")

    # trips: one CSV per day; trips_together is the running count for the pair
    pair_c = rng.integers(1, customers + 1, customers * 3)
    pair_d = rng.integers(1, drivers + 1, customers * 3)
    totals = np.zeros(pair_c.size, dtype=np.int64)
    for d in range(days):
        riding = rng.random(pair_c.size) < 0.15
        totals[riding] += 1
        when = np.minimum(start_us + d * day_us + rng.integers(0, day_us, int(riding.sum())), now_us)
        pcsv.write_csv(pa.table({
            "customer_id": pair_c[riding], "driver_id": pair_d[riding],
            "ts": pa.array(when, pa.timestamp("us", tz="UTC")), "trips_together": totals[riding]}),
            root / "data" / "trips" / f"{(start + dt.timedelta(days=d)).date()}.csv")

    # entity rows: rides to score, with a label
    n = max(100, customers * 2)
    pick = rng.integers(0, pair_c.size, n)
    entities = pa.table({
        "customer_id": pair_c[pick], "driver_id": pair_d[pick],
        "event_timestamp": pa.array(start_us + rng.integers(day_us, days * day_us, n), pa.timestamp("us", tz="UTC")),
        "is_fraud": rng.random(n) < 0.02})
    path = root / "data" / "rides_to_score.parquet"
    pq.write_table(entities, path)
    return path


def run_quickstart(root: Path, *, customers: int = 2000, days: int = 30, console: Console | None = None) -> None:
    console = console or Console()
    t0 = time.perf_counter()
    entities = write_repository(root, customers=customers, days=days)
    console.print(f"[bold]1.[/bold] wrote a ride-hailing repository with {customers:,} customers and "
                  f"{days} days of history to {root}")
    fs = FeatureStore(root)
    plan, version = fs.apply()
    console.print(f"[bold]2.[/bold] applied registry version {version}: "
                  f"{sum(c.action == 'add' for c in plan.changes)} objects added")
    results = fs.ingest(progress=RichReporter(console))
    for r in results:
        console.print(f"[bold]3.[/bold] ingested {r.rows:,} rows into {r.view} from {r.units_read} file(s)")
    out = root / "datasets" / "fraud_v1.parquet"
    t1 = time.perf_counter()
    table, lineage = fs.build_dataset(entities, out, feature_service="fraud_v1")
    console.print(f"[bold]4.[/bold] built a point-in-time training set for fraud_v1: {table.num_rows:,} rows in "
                  f"{time.perf_counter() - t1:.2f} s -> {out} (lineage: {lineage.name})")
    console.print(summary_table(table, fs))
    results = fs.materialize_incremental("now", progress=RichReporter(console))
    console.print(f"[bold]5.[/bold] materialized {sum(r.rows_written for r in results):,} rows into the LMDB "
                  f"online store at {fs.config.rel(fs.online.path)}")
    rows = table.slice(0, 3).select(["customer_id", "driver_id"]).to_pylist()
    resp = fs.get_online_features(feature_service="fraud_v1", entity_rows=rows)
    console.print("[bold]6.[/bold] online feature vectors for three rides (value / status):")
    console.print(online_table(resp))
    console.print(f"done in {time.perf_counter() - t0:.1f} s. Try: fstore -r {root} list; "
                  f"fstore -r {root} describe customer_stats")


def online_table(resp) -> Table:
    t = Table()
    for col in [*resp.plan.key_columns, *resp.feature_names]:
        t.add_column(col)
    for row in resp.to_rows(include_metadata=True):
        t.add_row(*[str(row[k]) for k in resp.plan.key_columns],
                  *[f"{row[n]['value']!r} / {row[n]['status']}" for n in resp.feature_names])
    return t


def summary_table(table: pa.Table, fs: FeatureStore) -> Table:
    """Per feature: type, how often a value was found, defaulted or null, and its range."""
    t = Table(title="training set features")
    for col in ("feature", "dtype", "nulls", "min", "mean", "max"):
        t.add_column(col, justify="right" if col != "feature" else "left")
    views = {f["name"]: f for v in fs.list_feature_views() for f in v["features"]}
    for name in table.column_names:
        if name not in views:
            continue
        col = table.column(name)
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        mm = pc.min_max(col) if numeric else None
        t.add_row(name, views[name]["dtype"], f"{col.null_count / max(1, len(col)):.1%}",
                  f"{mm['min'].as_py():.4g}" if mm and mm["min"].is_valid else "",
                  f"{pc.mean(col).as_py():.4g}" if numeric and len(col) else "",
                  f"{mm['max'].as_py():.4g}" if mm and mm["max"].is_valid else "")
    return t
