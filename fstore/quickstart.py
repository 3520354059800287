"""The quickstart: a ride-hailing feature repository with generated data, end to end.

It writes the repository of the README (fstore.quickstart_defs: customer spend statistics
as daily Parquet snapshots, trips as daily CSV files), applies it, ingests it, builds two
training sets and prints what came out, materializes the online store and reads vectors
back. ``fraud_v1`` reads stored features; ``pricing_v1`` shows the transformations of
docs/transformations.md: a SQL view (fare per km), 7d windowed aggregations of fares per
driver and a request-time feature (the requested trip_km times the fetched fare per km).
The data is random but shaped like the real thing: late corrections (same event time,
newer created time), gaps longer than the ttl, nulls, cancelled trips.
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
from .online.response import OnlineResponse
from .progress import RichReporter
from .quickstart_defs import DEFS_YAML, FSTORE_YAML, PRICING_PY
from .repo.transforms import PLAIN


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
    (root / "features" / "pricing.py").write_text(PRICING_PY)
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

    # trips: one CSV per day; trips_together is the running count for the pair. Distances and
    # fares come from a generator of their own, so the columns above stay as they were.
    # 3% are cancelled: no distance, a flat fee (driver_trips' SQL leaves them out)
    fares = np.random.default_rng(seed + 1)
    rate = fares.uniform(0.9, 1.6, drivers + 1)  # per km, per driver
    pair_c = rng.integers(1, customers + 1, customers * 3)
    pair_d = rng.integers(1, drivers + 1, customers * 3)
    totals = np.zeros(pair_c.size, dtype=np.int64)
    for d in range(days):
        riding = rng.random(pair_c.size) < 0.15
        totals[riding] += 1
        day_start = start_us + d * day_us  # today's trips lie before now: no two share a time
        when = np.minimum(day_start + rng.integers(0, max(1, min(day_us, now_us - day_start)), int(riding.sum())),
                          now_us)
        km = (fares.lognormal(1.5, 0.6, when.size) + 0.5).round(1)
        km[fares.random(when.size) < 0.03] = 0.0
        fare = np.where(km > 0, 2.5 + km * rate[pair_d[riding]] * fares.uniform(0.9, 1.1, when.size), 3.0)
        pcsv.write_csv(pa.table({
            "customer_id": pair_c[riding], "driver_id": pair_d[riding],
            "ts": pa.array(when, pa.timestamp("us", tz="UTC")), "trips_together": totals[riding],
            "distance_km": km, "fare": fare.round(2)}),
            root / "data" / "trips" / f"{(start + dt.timedelta(days=d)).date()}.csv")

    # entity rows: rides to score, with a label and the requested distance (a request field)
    n = max(100, customers * 2)
    pick = rng.integers(0, pair_c.size, n)
    entities = pa.table({
        "customer_id": pair_c[pick], "driver_id": pair_d[pick],
        "event_timestamp": pa.array(start_us + rng.integers(day_us, days * day_us, n), pa.timestamp("us", tz="UTC")),
        "is_fraud": rng.random(n) < 0.02, "trip_km": (fares.lognormal(1.5, 0.6, n) + 0.5).round(1)})
    path = root / "data" / "rides_to_score.parquet"
    pq.write_table(entities, path)
    return path


def run_quickstart(root: Path, *, customers: int = 2000, days: int = 30,
                   console: Console | None = None) -> dict[str, OnlineResponse]:
    """Run the demo and print each step; returns the online responses it printed, by service."""
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
        console.print(f"[bold]3.[/bold] ingested {r.rows:,} rows into {r.view} from {r.units_read} file(s)"
                      + (f" ({r.mode}: a SQL transformation)" if r.mode != PLAIN else ""))
    for step, service, what in (
            ("4.", "fraud_v1", "stored features"),
            ("5.", "pricing_v1", "a SQL view, a 7d aggregation, a request-time feature")):
        out = root / "datasets" / f"{service}.parquet"
        t1 = time.perf_counter()
        table, lineage = fs.build_dataset(entities, out, feature_service=service)
        console.print(f"[bold]{step}[/bold] built a point-in-time training set for {service} ({what}): "
                      f"{table.num_rows:,} rows in {time.perf_counter() - t1:.2f} s -> {out} (lineage: {lineage.name})")
        console.print(summary_table(table, fs, title=f"{service} training set features"))
    results = fs.materialize_incremental("now", progress=RichReporter(console))
    console.print(f"[bold]6.[/bold] materialized {sum(r.rows_written for r in results):,} rows into the LMDB "
                  f"online store at {fs.config.rel(fs.online.path)}")
    served = {}
    for step, service, fields, what in (("7.", "fraud_v1", ["customer_id", "driver_id"], "three rides"),
                                        ("8.", "pricing_v1", ["driver_id", "trip_km"],
                                         "three ride requests, trip_km sent with the request")):
        rows = table.slice(0, 3).select(fields).to_pylist()
        served[service] = fs.get_online_features(feature_service=service, entity_rows=rows)
        console.print(f"[bold]{step}[/bold] online {service} feature vectors for {what} (value / status):")
        console.print(online_table(served[service], rows))
    console.print(f"done in {time.perf_counter() - t0:.1f} s. Try: fstore -r {root} list; "
                  f"fstore -r {root} describe customer_stats; "
                  f"fstore -r {root} get --service pricing_v1 driver_id=7 trip_km=12.5")
    fs.close()
    return served


def online_table(resp: OnlineResponse, rows: list[dict]) -> Table:
    """The rows as sent (keys and request fields), then each feature's value and status."""
    t = Table()
    for col in [*rows[0], *resp.feature_names]:
        t.add_column(col)
    for sent, row in zip(rows, resp.to_rows(include_metadata=True)):
        t.add_row(*[str(v) for v in sent.values()],
                  *[f"{_show(row[n]['value'])} / {row[n]['status']}" for n in resp.feature_names])
    return t


def _show(value: object) -> str:
    return repr(round(value, 6)) if isinstance(value, float) else repr(value)


def summary_table(table: pa.Table, fs: FeatureStore, title: str = "training set features") -> Table:
    """Per feature (stored or request-time): type, how often it is null, and its range."""
    t = Table(title=title)
    for col in ("feature", "dtype", "nulls", "min", "mean", "max"):
        t.add_column(col, justify="right" if col != "feature" else "left")
    state = fs.registry.load()
    views = {f["name"]: f for kind in ("feature_views", "request_views")
             for v in (state.get(kind) or {}).values() for f in v["features"]}
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
