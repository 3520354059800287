#!/usr/bin/env python
"""Point-in-time training sets: fstore against DuckDB, polars and pandas (issue 2).

Generates the same synthetic feature history for every engine (Parquet, fixed
seed), runs each engine in its own subprocess and times two things:

* ``join``        the point-in-time join alone, over data the engine already holds
                  (fstore: an ingested offline store; DuckDB: tables loaded
                  beforehand into a database file; polars / pandas: data frames
                  read into memory before the clock starts). The entity rows are
                  read from their Parquet file inside the clock for every engine.
* ``ingest_join`` everything from the raw Parquet sources (fstore: apply + ingest +
                  get_historical_features; peers: read the Parquet files and join).

Each peer is written two ways (``--peer-plans``): ``direct``, the as-of join
carrying every feature column, and ``narrow``, the as-of join over keys, time
and a row id followed by fetching the winning rows' features.

Peak memory is the subprocess's own ``ru_maxrss`` (the parent stays small, so
no inherited high-water mark; /proc/self/status VmHWM is recorded as a check).
Every engine writes its result to Parquet and every result must equal fstore's
value for value (same columns, same row order, nulls equal nulls, floats bit
for bit: values are copied, never computed). A disagreement is printed with the
offending rows and the script exits 1.

Semantics every peer reproduces (see fstore/historical.py): for each entity row
and view, candidates are the view rows with equal keys (all columns of a
composite key) and event time t with entity_ts - ttl <= t <= entity_ts; the
newest t wins, ties broken by the newest created time (null created = oldest);
the value is used as stored; no candidate -> the feature's default (or null).

Usage::

    python benchmarks/bench_historical.py --shape big --scale 0.01 --out /tmp/big.json
    python benchmarks/bench_historical.py --shape big,wide --scale 0.002 --wide-scale 0.02

Exit status: 0 all results agree (timeouts are reported, not failures),
1 a result disagrees with fstore's, 2 a worker crashed or fstore produced nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_machine import cpu_model, ram_bytes

# The parent process must stay small (a forked/vforked child inherits the
# parent's RSS high-water mark into ru_maxrss), so heavy imports live in the
# worker functions only.

HERE = Path(__file__).resolve()
REPO_ROOT = HERE.parent.parent
GENERATOR_VERSION = 3
SEED = 20240101

T0_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
DAY_US = 86_400_000_000
SPAN_DAYS = 90

ENGINES = ("fstore", "duckdb", "polars", "pandas", "spark")
# the Spark engine's session in the benchmark (local[2] on the measuring machine; --spark-master changes it)
SPARK_CONF = {"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": 8, "spark.sql.adaptive.enabled": "false"}
MODES = ("join", "ingest_join")

# ----------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------


def shape_spec(shape: str, scale: float) -> dict:
    """Sizes and view definitions of a shape at a scale (1.0 = the full issue size)."""
    if shape == "big":
        n_views_rows = max(1000, round(10_000_000 * scale))
        views = [
            {"name": "customer_stats", "keys": ["customer_id"], "ttl": "7d", "ttl_us": 7 * DAY_US,
             "rows": n_views_rows,
             "features": [
                 {"name": "avg_amount", "dtype": "float64", "default": 0.0},
                 {"name": "txn_count", "dtype": "int64", "default": None},
                 {"name": "segment", "dtype": "string", "default": "unknown"},
             ]},
            {"name": "driver_stats", "keys": ["driver_id"], "ttl": None, "ttl_us": None,
             "rows": n_views_rows,
             "features": [
                 {"name": "rating", "dtype": "float64", "default": None},
                 {"name": "trips_total", "dtype": "int64", "default": 0},
                 {"name": "city", "dtype": "string", "default": None},
             ]},
            {"name": "customer_driver", "keys": ["customer_id", "driver_id"], "ttl": "30d",
             "ttl_us": 30 * DAY_US, "rows": n_views_rows,
             "features": [
                 {"name": "trips_together", "dtype": "int64", "default": 0},
                 {"name": "avg_tip", "dtype": "float64", "default": None},
                 {"name": "last_status", "dtype": "string", "default": "none"},
             ]},
        ]
        return {"shape": "big", "scale": scale, "entity_rows": max(200, round(1_000_000 * scale)),
                "n_customers": max(100, round(100_000 * scale)), "n_drivers": max(20, round(10_000 * scale)),
                "views": views}
    if shape == "wide":
        ttls = [(None, None), ("7d", 7 * DAY_US), ("30d", 30 * DAY_US)]
        views = []
        for i in range(10):
            ttl, ttl_us = ttls[i % 3]
            default = 0.0 if i % 2 == 0 else None
            views.append({"name": f"wide_{i:02d}", "keys": ["customer_id"], "ttl": ttl, "ttl_us": ttl_us,
                          "rows": max(500, round(100_000 * scale)),
                          "features": [{"name": f"f{j:03d}", "dtype": "float64", "default": default}
                                       for j in range(100)]})
        return {"shape": "wide", "scale": scale, "entity_rows": max(100, round(17_000 * scale)),
                "n_customers": max(50, round(10_000 * scale)), "n_drivers": 0, "views": views}
    raise SystemExit(f"unknown shape {shape!r}; expected big or wide")


def feature_refs(spec: dict) -> list[str]:
    return [f"{v['name']}:{f['name']}" for v in spec["views"] for f in v["features"]]


# ----------------------------------------------------------------------------------------
# Data generation (runs in a subprocess)
# ----------------------------------------------------------------------------------------

STRING_VOCAB = {
    "segment": ["bronze", "silver", "gold", "platinum", "", "vip-\u00e9"],
    "city": ["amsterdam", "berlin", "lisbon", "paris", "rome", "oslo", "tallinn"],
    "last_status": ["completed", "cancelled", "no_show", "disputed"],
}
NULL_FRACTION = 0.02
TIE_FRACTION = 0.03


def _usual_driver(cust, j, n_drivers):
    return (cust * 7919 + j * 104729) % n_drivers


def generate(spec: dict, out: Path) -> None:
    """Writes sources/<view>.parquet, entity.parquet and spec.json under ``out``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED + (0 if spec["shape"] == "big" else 1))
    src_dir = out / "sources"
    src_dir.mkdir(parents=True, exist_ok=True)
    ts_type = pa.timestamp("us", tz="UTC")
    n_c, n_d = spec["n_customers"], spec["n_drivers"]
    view_meta = {}

    for vi, v in enumerate(spec["views"]):
        n = v["rows"]
        if n >= 1 << 24:
            raise SystemExit("created-timestamp construction assumes < 2**24 rows per view")
        keys: dict[str, np.ndarray] = {}
        if v["keys"] == ["customer_id"]:
            keys["customer_id"] = rng.integers(0, n_c, n)
        elif v["keys"] == ["driver_id"]:
            keys["driver_id"] = rng.integers(0, n_d, n)
        else:  # (customer, one of their 5 usual drivers)
            cust = rng.integers(0, n_c, n)
            keys["customer_id"] = cust
            keys["driver_id"] = _usual_driver(cust, rng.integers(0, 5, n), n_d)
        ts = T0_US + rng.integers(0, SPAN_DAYS * 86_400, n) * 1_000_000  # whole seconds
        # ties: copy (key, event time) of another row; created times stay distinct
        m = int(n * TIE_FRACTION)
        tie_rows = rng.choice(n, m, replace=False)
        src_rows = rng.integers(0, n, m)
        for k in keys:
            keys[k][tie_rows] = keys[k][src_rows]
        ts[tie_rows] = ts[src_rows]
        # created = ts + delay (steps of 2**24 us, ~17 s) + row number (< 2**24): unique
        # within every (key, ts), and its order is independent of the file order
        created = ts + rng.integers(0, 200, n) * (1 << 24) + np.arange(n)
        cols = {k: pa.array(a, pa.int64()) for k, a in keys.items()}
        cols["event_ts"] = pa.array(ts, pa.int64()).cast(ts_type)
        cols["created_ts"] = pa.array(created, pa.int64()).cast(ts_type)
        for f in v["features"]:
            mask = rng.random(n) < NULL_FRACTION
            if f["dtype"] == "float64":
                vals = rng.normal(100.0, 50.0, n)
                cols[f["name"]] = pa.array(vals, pa.float64(), mask=mask)
            elif f["dtype"] == "int64":
                cols[f["name"]] = pa.array(rng.integers(0, 100_000, n), pa.int64(), mask=mask)
            else:
                vocab = STRING_VOCAB[f["name"]]
                idx = pa.array(rng.integers(0, len(vocab), n).astype(np.int32), mask=mask)
                cols[f["name"]] = pa.DictionaryArray.from_arrays(idx, pa.array(vocab)).cast(pa.string())
        table = pa.table(cols)
        path = src_dir / f"{v['name']}.parquet"
        pq.write_table(table, path, row_group_size=1 << 20, compression="snappy")
        # last event time of every key (for rows exactly at the ttl boundary)
        karr = [keys[k] for k in v["keys"]]
        order = np.lexsort([ts, *reversed(karr)])
        sk = [a[order] for a in karr]
        last = np.ones(n, dtype=bool)
        last[:-1] = np.zeros(n - 1, dtype=bool)
        for a in sk:
            last[:-1] |= a[1:] != a[:-1]
        last_idx = order[last]
        view_meta[v["name"]] = {"keys": {k: keys[k] for k in v["keys"]}, "ts": ts, "tie_rows": tie_rows,
                                "last_rows": last_idx}
        del table, cols

    # ---- entity rows -----------------------------------------------------------------
    n_e = spec["entity_rows"]
    ekeys = sorted({k for v in spec["views"] for k in v["keys"]})
    cols = {}
    cust = rng.integers(0, int(n_c * 1.01) + 1, n_e)  # ~1% unknown customers
    cols["customer_id"] = cust
    if "driver_id" in ekeys:
        usual = _usual_driver(cust, rng.integers(0, 5, n_e), n_d)
        other = rng.integers(0, int(n_d * 1.01) + 1, n_e)
        cols["driver_id"] = np.where(rng.random(n_e) < 0.7, usual, other)
    ets = T0_US + rng.integers(5 * DAY_US, (SPAN_DAYS + 5) * DAY_US, n_e)  # microsecond precision
    free = rng.permutation(n_e)
    pos = 0

    def take(frac: float) -> np.ndarray:
        nonlocal pos
        cnt = max(1, int(n_e * frac))
        sel = free[pos:pos + cnt]
        pos += cnt
        return sel

    special = 0.02 if len(spec["views"]) <= 3 else 0.006
    for v in spec["views"]:
        meta = view_meta[v["name"]]
        # exactly at a view row's event time, preferring rows whose (key, ts) is tied
        sel = take(special)
        src = meta["tie_rows"][rng.integers(0, len(meta["tie_rows"]), len(sel))]
        for k in v["keys"]:
            cols[k][sel] = meta["keys"][k][src]
        ets[sel] = meta["ts"][src]
        if v["ttl_us"]:
            # at ttl after a key's last row: -1 us, exactly, +1 us (only 'exactly' and '-1' match)
            sel = take(special * 1.5)
            src = meta["last_rows"][rng.integers(0, len(meta["last_rows"]), len(sel))]
            for k in v["keys"]:
                cols[k][sel] = meta["keys"][k][src]
            delta = rng.choice(np.array([-1, 0, 0, 0, 1]), len(sel))
            ets[sel] = meta["ts"][src] + v["ttl_us"] + delta
    sel = take(0.005)  # far in the future: only views without ttl can match
    ets[sel] = T0_US + rng.integers(400 * DAY_US, 800 * DAY_US, len(sel))
    sel = take(0.005)  # before any history: nothing matches
    ets[sel] = T0_US - rng.integers(1, 10 * DAY_US, len(sel))
    table = {"request_id": pa.array(rng.permutation(n_e) + 1_000_000, pa.int64())}
    for k in ekeys:
        mask = None
        if k == "driver_id":
            mask = rng.random(n_e) < 0.003  # a null key matches nothing
        table[k] = pa.array(cols[k], pa.int64(), mask=mask)
    table["event_timestamp"] = pa.array(ets, pa.int64()).cast(ts_type)
    table["label"] = pa.array(rng.random(n_e) < 0.1)
    pq.write_table(pa.table(table), out / "entity.parquet", row_group_size=1 << 20)
    spec = dict(spec, generator_version=GENERATOR_VERSION, seed=SEED, entity_columns=list(table))
    (out / "spec.json").write_text(json.dumps(spec, indent=1))


def write_repo(spec: dict, data: Path, buckets: int | None = None) -> Path:
    """The fstore repository (fstore.yaml + features/defs.yaml) over the generated sources."""
    repo = data / "fstore_repo"
    (repo / "features").mkdir(parents=True, exist_ok=True)
    lines = ["project: bench", ""]
    if buckets:
        lines += [f"offline_store: {{buckets: {int(buckets)}}}", ""]
    (repo / "fstore.yaml").write_text("\n".join(lines))
    y = ["entities:", "  - name: customer", "    join_keys: [customer_id]"]
    if any("driver_id" in v["keys"] for v in spec["views"]):
        y += ["  - name: driver", "    join_keys: [driver_id]"]
    y += ["sources:"]
    for v in spec["views"]:
        y += [f"  - name: {v['name']}_src", f"    path: {(data / 'sources' / (v['name'] + '.parquet')).as_posix()}",
              "    timestamp_field: event_ts", "    created_timestamp_field: created_ts"]
    y += ["feature_views:"]
    ent = {"customer_id": "customer", "driver_id": "driver"}
    for v in spec["views"]:
        y += [f"  - name: {v['name']}", "    version: 1",
              f"    entities: [{', '.join(ent[k] for k in v['keys'])}]", f"    source: {v['name']}_src"]
        if v["ttl"]:
            y += [f"    ttl: {v['ttl']}"]
        y += ["    features:"]
        for f in v["features"]:
            d = "" if f["default"] is None else f", default: {json.dumps(f['default'])}"
            y += [f"      - {{name: {f['name']}, dtype: {f['dtype']}{d}}}"]
    (repo / "features" / "defs.yaml").write_text("\n".join(y) + "\n")
    return repo


# ----------------------------------------------------------------------------------------
# Workers (each in its own subprocess)
# ----------------------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _vm_hwm_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _cpu_seconds() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker_fstore(spec: dict, data: Path, mode: str, plan: str, clock):
    from fstore import FeatureStore
    repo = data / "fstore_repo"
    if mode == "ingest_join":
        shutil.rmtree(repo / "data", ignore_errors=True)  # start from nothing
    entity = str(data / "entity.parquet")
    refs = feature_refs(spec)
    clock.start()
    fs = FeatureStore(repo)
    if mode == "ingest_join":
        fs.apply()
        fs.ingest()
    result = fs.get_historical_features(entity, features=refs, full_feature_names=True)
    clock.stop()
    return result


def write_spark_repo(data: Path, master: str, buckets: int | None) -> Path:
    """fstore's repository again, with ``engine: spark``: its own offline store."""
    repo, twin = data / "fstore_repo", data / "fstore_spark_repo"
    (twin / "features").mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / "features" / "defs.yaml", twin / "features" / "defs.yaml")
    conf = {**SPARK_CONF, "spark.sql.shuffle.partitions": max(2, buckets or 8)}
    (twin / "fstore.yaml").write_text(json.dumps({"project": "bench", "offline_store": {
        **({"buckets": int(buckets)} if buckets else {}), "engine": "spark",
        "spark": {"master": master, "conf": conf}}}))
    return twin


def worker_spark(spec: dict, data: Path, mode: str, plan: str, clock):
    """fstore with the Spark engine. The session (a JVM) is started, and warmed up by a small
    job through Python workers, before the clock: a cluster's session outlives one job. In
    *join* the first (cold) join is run untimed and reported apart (``cold_join_s``)."""
    import pyarrow as pa

    from fstore import FeatureStore
    repo = data / "fstore_spark_repo"
    if mode == "ingest_join":
        shutil.rmtree(repo / "data", ignore_errors=True)
    t0 = time.perf_counter()
    fs = FeatureStore(repo)
    spark = fs.engine.spark()
    small = spark.createDataFrame(pa.table({"a": list(range(10_000))}))
    small.mapInArrow(lambda batches: batches, small.schema).groupBy("a").count().toArrow()
    clock.extra = {"session_start_s": time.perf_counter() - t0}
    refs = feature_refs(spec)
    entity = str(data / "entity.parquet")
    if mode == "join":
        t0 = time.perf_counter()
        fs.get_historical_features(entity, features=refs, full_feature_names=True)
        clock.extra["cold_join_s"] = time.perf_counter() - t0
    clock.start()
    if mode == "ingest_join":
        fs.apply()
        fs.ingest()
    result = fs.get_historical_features(entity, features=refs, full_feature_names=True)
    clock.stop()
    clock.extra["jvm_hwm_mib"] = _children_hwm_mib()
    return result


def _children_hwm_mib() -> float | None:
    """Peak resident memory of this process's children (the Spark JVM), while they run."""
    import psutil
    peak = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak or None


def _sql_literal(value, dtype: str) -> str:
    if value is None:
        return "NULL"
    if dtype == "string":
        return "'" + str(value).replace("'", "''") + "'"
    if dtype == "float64":
        return f"CAST({float(value)!r} AS DOUBLE)"
    return f"CAST({int(value)} AS BIGINT)"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _view_src(data: Path, v: dict, from_tables: bool, row_numbers: bool = False) -> str:
    if from_tables:
        return f"src_{v['name']}"
    path = (data / "sources" / (v["name"] + ".parquet")).as_posix()
    return f"read_parquet('{path}'{', file_row_number = true' if row_numbers else ''})"


def duckdb_query(spec: dict, data: Path, from_tables: bool, plan: str) -> str:
    """One query. Per view: dedupe (key, ts) to the newest created row (QUALIFY), ASOF join,
    drop matches older than the ttl, apply defaults.

    plan 'direct': the ASOF LEFT JOIN carries every feature column.
    plan 'narrow': the ASOF join runs over (keys, ts, row id) only; the matched rows'
    features are then fetched by row id (a hash join against the entity-sized match list).
    """
    ent_cols = spec["entity_columns"]
    ctes = [f"e AS (SELECT * FROM read_parquet('{(data / 'entity.parquet').as_posix()}', "
            "file_row_number = true))"]
    joins, selects = [], [f"e.{_q(c)}" for c in ent_cols]
    for i, v in enumerate(spec["views"]):
        keys = ", ".join(_q(k) for k in v["keys"])
        feats = [_q(f["name"]) for f in v["features"]]
        cond = " AND ".join(f"e.{_q(k)} = v{i}.{_q(k)}" for k in v["keys"])
        dedupe = (f"QUALIFY row_number() OVER (PARTITION BY {keys}, event_ts "
                  f"ORDER BY created_ts DESC NULLS LAST) = 1")
        if plan == "direct":
            ctes.append(f"v{i} AS (SELECT {keys}, event_ts, {', '.join(feats)} "
                        f"FROM {_view_src(data, v, from_tables)} {dedupe})")
            joins.append(f"ASOF LEFT JOIN v{i} ON {cond} AND e.event_timestamp >= v{i}.event_ts")
            if v["ttl_us"]:
                ok = f"v{i}.event_ts >= e.event_timestamp - to_microseconds({int(v['ttl_us'])})"
            else:
                ok = f"v{i}.event_ts IS NOT NULL"
            where = f"v{i}"
        else:
            rid = "rowid" if from_tables else "file_row_number"
            ctes.append(f"v{i} AS (SELECT {keys}, event_ts, {rid} AS __rid "
                        f"FROM {_view_src(data, v, from_tables, row_numbers=True)} {dedupe})")
            ttl = (f" WHERE v{i}.event_ts >= e.event_timestamp - to_microseconds({int(v['ttl_us'])})"
                   if v["ttl_us"] else "")
            ctes.append(f"m{i} AS (SELECT e.file_row_number AS __erow, v{i}.__rid FROM e ASOF JOIN v{i} "
                        f"ON {cond} AND e.event_timestamp >= v{i}.event_ts{ttl})")
            ctes.append(f"g{i} AS (SELECT m{i}.__erow, {', '.join('s.' + f for f in feats)} FROM m{i} "
                        f"JOIN {_view_src(data, v, from_tables, row_numbers=True)} s ON s.{rid} = m{i}.__rid)")
            joins.append(f"LEFT JOIN g{i} ON g{i}.__erow = e.file_row_number")
            ok = f"g{i}.__erow IS NOT NULL"
            where = f"g{i}"
        for f in v["features"]:
            out = _q(f"{v['name']}__{f['name']}")
            if f["default"] is None and not v["ttl_us"]:
                selects.append(f"{where}.{_q(f['name'])} AS {out}")
            else:
                selects.append(f"CASE WHEN {ok} THEN {where}.{_q(f['name'])} "
                               f"ELSE {_sql_literal(f['default'], f['dtype'])} END AS {out}")
    return ("WITH " + ",\n".join(ctes) + "\nSELECT " + ",\n  ".join(selects) + "\nFROM e\n"
            + "\n".join(joins) + "\nORDER BY e.file_row_number")


def duckdb_db_path(data: Path) -> Path:
    return data / "duckdb" / "sources.duckdb"


def worker_duckdb_prep(spec: dict, data: Path, mode: str, plan: str, clock):
    """Loads the raw sources into tables of a DuckDB database file (for the 'join' runs)."""
    import duckdb
    db = duckdb_db_path(data)
    shutil.rmtree(db.parent, ignore_errors=True)
    db.parent.mkdir(parents=True)
    clock.start()
    con = duckdb.connect(str(db))
    for v in spec["views"]:
        con.execute(f"CREATE TABLE src_{v['name']} AS SELECT * FROM {_view_src(data, v, False)}")
    con.execute("CHECKPOINT")
    con.close()
    clock.stop()
    return None


def worker_duckdb(spec: dict, data: Path, mode: str, plan: str, clock):
    import duckdb
    sql = duckdb_query(spec, data, from_tables=(mode == "join"), plan=plan)
    tmp = data / "duckdb" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    clock.start()
    if mode == "join":
        con = duckdb.connect(str(duckdb_db_path(data)), read_only=True, config={"temp_directory": str(tmp)})
    else:
        con = duckdb.connect(config={"temp_directory": str(tmp)})
    result = con.sql(sql).to_arrow_table()
    clock.stop()
    con.close()
    return result


def _pl_dtype(dtype: str):
    import polars as pl
    return {"float64": pl.Float64, "int64": pl.Int64, "string": pl.String}[dtype]


def worker_polars(spec: dict, data: Path, mode: str, plan: str, clock):
    """join_asof(by=keys, strategy='backward') after sorting by (event_ts, created_ts).

    'backward' takes the LAST right row with ts <= entity ts (documented), so sorting ts
    ties by created puts the newest created last (null created = oldest = first).
    plan 'direct' joins all feature columns; 'narrow' joins (keys, ts, row index) and
    fetches the features of the matched rows afterwards with a join on the row index.
    """
    import polars as pl
    views = spec["views"]
    paths = [data / "sources" / (v["name"] + ".parquet") for v in views]
    frames = None
    if mode == "join":  # data already in memory
        frames = [pl.read_parquet(p).lazy() for p in paths]
    clock.start()
    if frames is None:
        frames = [pl.scan_parquet(p) for p in paths]
    lf = pl.scan_parquet(data / "entity.parquet").with_row_index("__erow").sort("event_timestamp")
    outs, fetch = [], []
    for i, (v, frame) in enumerate(zip(views, frames)):
        ts, rid = f"__ts{i}", f"__rid{i}"
        renamed = {f["name"]: f"{v['name']}__{f['name']}" for f in v["features"]}
        if plan == "direct":
            right = frame.select([*v["keys"], "event_ts", "created_ts", *renamed])
        else:
            right = frame.with_row_index(rid).select([*v["keys"], "event_ts", "created_ts", rid])
        right = (right.sort(["event_ts", "created_ts"], nulls_last=False).drop("created_ts")
                 .rename({"event_ts": ts, **(renamed if plan == "direct" else {})}))
        lf = lf.join_asof(right, left_on="event_timestamp", right_on=ts, by=v["keys"], strategy="backward",
                          check_sortedness=False)
        if v["ttl_us"]:
            ok = pl.col(ts) >= pl.col("event_timestamp") - pl.duration(microseconds=v["ttl_us"])
        else:
            ok = pl.col(ts).is_not_null()
        if plan == "narrow":  # a row id only where the match counts; features fetched below
            lf = lf.with_columns(pl.when(ok).then(pl.col(rid)).otherwise(None).alias(rid))
            ok = pl.col(rid).is_not_null()
        exprs = []
        for f in v["features"]:
            out = renamed[f["name"]]
            outs.append(out)
            if f["default"] is None and not v["ttl_us"]:
                continue
            exprs.append(pl.when(ok).then(pl.col(out))
                         .otherwise(pl.lit(f["default"], dtype=_pl_dtype(f["dtype"]))).alias(out))
        if plan == "direct":
            if exprs:
                lf = lf.with_columns(exprs)
        else:
            fetch.append((frame, rid, renamed, exprs))  # exprs test the row id, not the time
        lf = lf.drop(ts)
    for frame, rid, renamed, exprs in fetch:  # narrow: the matched rows' features by row index
        feats = frame.with_row_index(rid).select([rid, *renamed]).rename(renamed)
        lf = lf.join(feats, on=rid, how="left")
        if exprs:
            lf = lf.with_columns(exprs)
    lf = lf.sort("__erow").select([*spec["entity_columns"], *outs])
    result = lf.collect().to_arrow()
    clock.stop()
    return result


def worker_pandas(spec: dict, data: Path, mode: str, plan: str, clock):
    """merge_asof(by=keys, direction='backward') after sorting by (event_ts, created_ts);
    'backward' takes the LAST right row with ts <= entity ts (documented). plan 'narrow'
    merges (keys, ts, row number) and then takes the matched rows' features by position."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    views = spec["views"]
    paths = [data / "sources" / (v["name"] + ".parquet") for v in views]

    def read(p):  # nullable dtypes: int64 columns keep their nulls without becoming floats
        return pd.read_parquet(p, dtype_backend="numpy_nullable")

    frames = None
    if mode == "join":
        frames = [read(p) for p in paths]
    clock.start()
    if frames is None:
        frames = [read(p) for p in paths]
    e = read(data / "entity.parquet")
    e["__erow"] = np.arange(len(e))
    e = e.sort_values("event_timestamp", kind="stable")
    outs = []
    for i, (v, frame) in enumerate(zip(views, frames)):
        ts, rid = f"__ts{i}", f"__rid{i}"
        renamed = {f["name"]: f"{v['name']}__{f['name']}" for f in v["features"]}
        if plan == "direct":
            r = frame[[*v["keys"], "event_ts", "created_ts", *renamed]].rename(columns=renamed)
        else:
            r = frame[[*v["keys"], "event_ts", "created_ts"]].copy()
            r[rid] = np.arange(len(frame))
        r = r.sort_values(["event_ts", "created_ts"], kind="stable", na_position="first")
        r = r.drop(columns=["created_ts"]).rename(columns={"event_ts": ts})
        e = pd.merge_asof(e, r, left_on="event_timestamp", right_on=ts, by=v["keys"],
                          direction="backward", allow_exact_matches=True)
        if v["ttl_us"]:
            ok = e[ts] >= e["event_timestamp"] - pd.Timedelta(microseconds=int(v["ttl_us"]))
        else:
            ok = e[ts].notna()
        ok = ok.fillna(False).to_numpy(dtype=bool)
        if plan == "narrow":
            pos = e[rid].to_numpy(dtype="float64", na_value=np.nan)
            pos = np.where(ok, np.nan_to_num(pos, nan=0.0), 0).astype(np.int64)
            got = frame[list(renamed)].iloc[pos].rename(columns=renamed).reset_index(drop=True)
            got.index = e.index
            e = pd.concat([e.drop(columns=[rid]), got], axis=1)
        for f in v["features"]:
            out = renamed[f["name"]]
            outs.append(out)
            if f["default"] is None and not v["ttl_us"] and plan == "direct":
                continue
            col = e[out].copy()
            col[~ok] = pd.NA if f["default"] is None else f["default"]
            e[out] = col
        e = e.drop(columns=[ts])
    e = e.sort_values("__erow", kind="stable")[[*spec["entity_columns"], *outs]]
    result = pa.Table.from_pandas(e, preserve_index=False)
    clock.stop()
    return result


WORKERS = {"fstore": worker_fstore, "duckdb": worker_duckdb, "duckdb_prep": worker_duckdb_prep,
           "polars": worker_polars, "pandas": worker_pandas, "spark": worker_spark}


class Clock:
    def __init__(self) -> None:
        self.t0 = self.t1 = None
        self.cpu0 = self.cpu1 = None

    def start(self) -> None:
        self.cpu0 = _cpu_seconds()
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.t1 = time.perf_counter()
        self.cpu1 = _cpu_seconds()


def run_worker(args) -> int:
    data = Path(args.data)
    spec = json.loads((data / "spec.json").read_text())
    clock = Clock()
    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        orig_start, orig_stop = clock.start, clock.stop

        def start():
            orig_start()
            profiler.enable()

        def stop():
            profiler.disable()
            orig_stop()
        clock.start, clock.stop = start, stop
    result = WORKERS[args.engine](spec, data, args.mode, args.plan, clock)
    peak = _peak_rss_mib()
    hwm = _vm_hwm_mib()
    metrics = {"engine": args.engine, "plan": args.plan, "mode": args.mode, "seconds": clock.t1 - clock.t0,
               "cpu_seconds": clock.cpu1 - clock.cpu0, "peak_rss_mib": peak, "vm_hwm_mib": hwm,
               **getattr(clock, "extra", {})}
    if profiler is not None:
        profiler.dump_stats(args.profile)
    if result is not None:
        import pyarrow.parquet as pq
        metrics["rows"] = result.num_rows
        pq.write_table(result, args.result)
    Path(args.metrics).write_text(json.dumps(metrics))
    return 0


# ----------------------------------------------------------------------------------------
# Comparison (runs in a subprocess)
# ----------------------------------------------------------------------------------------


def compare(reference: Path, others: dict[str, Path], out: Path, max_rows: int = 10) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ref = pq.read_table(reference)
    ref_names = ref.column_names
    ref_cols = [c.combine_chunks() for c in ref.columns]
    report = {"reference": str(reference), "rows": ref.num_rows, "results": {}}
    show_cols = [c for c in ("request_id", "customer_id", "driver_id", "event_timestamp") if c in ref_names]
    for name, path in others.items():
        res = {"agree": True, "problems": [], "type_notes": [], "mismatches": {}}
        report["results"][name] = res
        try:
            t = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001
            res.update(agree=False, problems=[f"cannot read {path}: {exc}"])
            continue
        if t.column_names != ref_names:
            res["agree"] = False
            res["problems"].append(f"columns differ: {t.column_names} vs fstore {ref_names}")
        if t.num_rows != ref.num_rows:
            res["agree"] = False
            res["problems"].append(f"{t.num_rows} rows vs fstore {ref.num_rows}")
            continue
        where = {c: i for i, c in enumerate(t.column_names)}  # (name lookups are O(columns))
        for ci, col in enumerate(ref_names):
            if col not in where:
                continue
            a = ref_cols[ci]
            b = t.column(where[col]).combine_chunks()
            if b.type != a.type:
                res["type_notes"].append(f"{col}: {b.type} (fstore {a.type})")
                try:
                    b = b.cast(a.type, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                    res["agree"] = False
                    res["problems"].append(f"{col}: cannot compare {b.type} with {a.type}: {exc}")
                    continue
            if a.equals(b):
                continue
            null_diff = pc.not_equal(pc.is_null(a), pc.is_null(b))
            val_diff = pc.fill_null(pc.not_equal(a, b), False)
            bad = pc.or_(null_diff, val_diff)
            idx = pc.indices_nonzero(bad).to_pylist()
            if not idx:  # equal by value, unequal by representation (e.g. -0.0): still exact?
                continue
            res["agree"] = False
            rows = []
            for r in idx[:max_rows]:
                row = {c: _jsonable(ref_cols[ref_names.index(c)][r].as_py()) for c in show_cols}
                row.update(row=r, fstore=_jsonable(a[r].as_py()), peer=_jsonable(b[r].as_py()))
                rows.append(row)
            res["mismatches"][col] = {"count": len(idx), "first": rows}
    report["agree"] = all(r["agree"] for r in report["results"].values())
    out.write_text(json.dumps(report, indent=1))


def _jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


# ----------------------------------------------------------------------------------------
# Parent: orchestration, table, JSON
# ----------------------------------------------------------------------------------------


def _sub(cmd: list[str], timeout: float, log: Path, cwd: Path) -> tuple[str, float]:
    """Runs cmd in a new session; returns (status, wall seconds). status: ok|timeout|error."""
    t0 = time.perf_counter()
    with open(log, "w") as lf:
        p = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return "timeout", time.perf_counter() - t0
    if rc == 0:
        status = "ok"
    elif rc < 0:
        try:
            status = f"crashed ({signal.Signals(-rc).name})"
        except ValueError:
            status = f"crashed (signal {-rc})"
    else:
        status = f"error (exit {rc})"
    return status, time.perf_counter() - t0


def _peer_available(name: str) -> bool:
    import importlib.util  # found without importing it: the parent stays small
    return name == "fstore" or importlib.util.find_spec({"spark": "pyspark"}.get(name, name)) is not None


def _machine() -> dict:
    cpu = cpu_model()
    ram = ram_bytes()
    mem = round(ram / 2**30, 1) if ram else None
    from importlib.metadata import PackageNotFoundError, version
    versions = {}
    for mod in ("pyarrow", "numpy", "duckdb", "polars", "pandas"):
        try:
            versions[mod] = version(mod)
        except PackageNotFoundError:
            versions[mod] = None
    init = _fstore_src() / "fstore" / "__init__.py"
    found = re.search(r'__version__\s*=\s*"([^"]+)"', init.read_text()) if init.exists() else None
    versions["fstore"] = found.group(1) if found else None
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": mem, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def _fstore_src() -> Path:
    return Path(os.environ.get("FSTORE_BENCH_SRC") or REPO_ROOT)


def _fstore_provenance() -> dict:
    src = _fstore_src()
    out = {"path": str(src), "git": None}
    r = subprocess.run(["git", "-C", str(src), "describe", "--always", "--dirty", "--abbrev=12"],
                       capture_output=True, text=True)
    if r.returncode == 0 and (src / ".git").exists():
        out["git"] = r.stdout.strip()
    snap = src / "SNAPSHOT"
    if snap.exists():
        out["snapshot"] = snap.read_text().strip()
    return out


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_shape(shape: str, scale: float, args, root: Path, runners: list[str]) -> dict:
    spec = shape_spec(shape, scale)
    data = root / f"{shape}-{scale:g}"
    spec_file = data / "spec.json"
    reuse = False
    if spec_file.exists():
        old = json.loads(spec_file.read_text())
        reuse = (old.get("generator_version") == GENERATOR_VERSION and old.get("seed") == SEED
                 and old.get("entity_rows") == spec["entity_rows"]
                 and [v["rows"] for v in old["views"]] == [v["rows"] for v in spec["views"]]
                 and all((data / "sources" / f"{v['name']}.parquet").exists() for v in spec["views"]))
    me = [sys.executable, str(HERE)]
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    out = {"shape": shape, "scale": scale, "entity_rows": spec["entity_rows"],
           "views": [{"name": v["name"], "rows": v["rows"], "keys": v["keys"], "ttl": v["ttl"],
                      "features": len(v["features"])} for v in spec["views"]],
           "features": sum(len(v["features"]) for v in spec["views"]), "runs": {}}
    if reuse:
        _log(f"{shape}: reusing generated data in {data}")
    else:
        _log(f"{shape}: generating data (scale {scale:g}) in {data}")
        (data / "spec.request.json").write_text(json.dumps(spec))
        st, secs = _sub([*me, "_generate", "--data", str(data)], args.timeout * 2, logs / "generate.log", REPO_ROOT)
        if st != "ok":
            raise SystemExit(f"data generation failed ({st}); see {logs / 'generate.log'}")
        _log(f"{shape}: generated in {secs:.1f}s")
    write_repo(spec, data, args.buckets)
    if "spark" in runners:
        write_spark_repo(data, args.spark_master, args.buckets)
    results = data / "results"
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir()

    plan = [("fstore", "ingest_join"), ("fstore", "join")]
    if any(r.startswith("duckdb-") for r in runners):
        plan.append(("duckdb_prep", "prep"))
    for r in runners:
        # the Spark engine joins over its own store, which its ingest_join run writes
        plan += [(r, "ingest_join"), (r, "join")] if r == "spark" else [(r, "join"), (r, "ingest_join")]
    crashed = []
    skip = set()
    for engine, mode in plan:
        if (engine, mode) in skip:
            continue
        best = None
        attempts = []
        repeat = 1 if engine == "duckdb_prep" else args.repeat
        for rep in range(repeat):
            tag = f"{engine}-{mode}"
            metrics_file = results / f"{tag}.metrics.json"
            metrics_file.unlink(missing_ok=True)
            eng, _, peer_plan = engine.partition("-")
            cmd = [*me, "_worker", "--engine", eng, "--plan", peer_plan or "-", "--mode", mode, "--data", str(data),
                   "--result", str(results / f"{tag}.parquet"), "--metrics", str(metrics_file)]
            if args.profile_fstore and engine == "fstore":
                cmd += ["--profile", str(results / f"{tag}.prof")]
            load = os.getloadavg()[0]
            _log(f"{shape}: {engine} {mode} (run {rep + 1}/{repeat}, load average {load:.2f}) ...")
            st, wall = _sub(cmd, args.timeout, logs / f"{tag}.log", data)
            if st == "ok":
                m = json.loads(metrics_file.read_text())
                m["status"] = "ok"
                m["loadavg_1min_before"] = load
                attempts.append(m)
                _log(f"{shape}: {engine} {mode}: {m['seconds']:.2f}s, peak RSS {m['peak_rss_mib']:.0f} MiB")
                if best is None or m["seconds"] < best["seconds"]:
                    best = m
            else:
                _log(f"{shape}: {engine} {mode}: {st} after {wall:.0f}s (log: {logs / (tag + '.log')})")
                if st != "timeout":
                    crashed.append(f"{engine} {mode}: {st}")
                    tail = (logs / f"{tag}.log").read_text()[-3000:]
                    print(tail, file=sys.stderr)
                attempts.append({"status": st, "seconds": None, "peak_rss_mib": None})
                if best is None:
                    best = {"engine": engine, "mode": mode, "status": st, "seconds": None, "peak_rss_mib": None}
                break  # a timeout or crash is not retried
        best = dict(best)
        if len(attempts) > 1:
            best["all_seconds"] = [a["seconds"] for a in attempts]
        out["runs"][f"{engine}:{mode}"] = best
        if engine == "duckdb_prep" and best.get("status") != "ok":
            for r in runners:
                if r.startswith("duckdb-"):
                    out["runs"][f"{r}:join"] = {"status": "skipped (prep failed)", "seconds": None,
                                                "peak_rss_mib": None}
                    skip.add((r, "join"))

    # agreement: everything against fstore's ingest+join result
    ref = results / "fstore-ingest_join.parquet"
    if not ref.exists():
        ref = results / "fstore-join.parquet"
    produced = {f"{e}:{m}": results / f"{e}-{m}.parquet" for e, m in plan if e != "duckdb_prep"}
    others = {k: p for k, p in produced.items() if p.exists() and p != ref}
    out["crashed"] = crashed
    if not ref.exists():
        out["agree"] = None  # nothing to compare against
        out["comparison"] = {"problems": ["fstore produced no result"]}
        return out
    (results / "compare.request.json").write_text(json.dumps({"reference": str(ref),
                                                               "others": {k: str(v) for k, v in others.items()}}))
    st, _ = _sub([*me, "_compare", "--data", str(data)], args.timeout, logs / "compare.log", REPO_ROOT)
    if st != "ok":
        out["agree"] = None
        out["comparison"] = {"problems": [f"comparison failed: {st}"]}
        crashed.append(f"compare: {st}")
        return out
    comp = json.loads((results / "compare.json").read_text())
    out["comparison"] = comp
    out["compared"] = sorted(comp["results"])
    out["agree"] = comp["agree"]
    return out


def _fmt_s(m):
    if m is None:
        return "-"
    if m.get("seconds") is None:
        return m.get("status", "-").upper()
    return f"{m['seconds']:.2f} s"


def _fmt_mem(m):
    if m is None or m.get("peak_rss_mib") is None:
        return "-"
    v = m["peak_rss_mib"]
    return f"{v / 1024:.2f} GiB" if v >= 1024 else f"{v:.0f} MiB"


def _ratio(a, b, key):
    if not a or not b or a.get(key) is None or b.get(key) is None or b[key] == 0:
        return None
    return a[key] / b[key]


def add_ratios(shape_out: dict, runners: list[str]) -> None:
    runs = shape_out["runs"]
    ratios = {}
    for p in runners:
        r = {}
        for mode in MODES:
            f, q = runs.get(f"fstore:{mode}"), runs.get(f"{p}:{mode}")
            r[f"{mode}_time_peer_over_fstore"] = _ratio(q, f, "seconds")
            r[f"{mode}_mem_fstore_over_peer"] = _ratio(f, q, "peak_rss_mib")
        ratios[p] = r
    shape_out["ratios"] = ratios


def print_table(shape_out: dict, runners: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    n_views = len(shape_out["views"])
    title = (f"{shape_out['shape']} (scale {shape_out['scale']:g}): {shape_out['entity_rows']:,} entity rows x "
             f"{n_views} views ({', '.join(format(v['rows'], ',') for v in shape_out['views'][:3])}"
             f"{', ...' if n_views > 3 else ''} rows), {shape_out['features']} features")
    t = Table(title=title)
    for col in ("engine", "join", "join peak RSS", "ingest+join", "ingest+join peak RSS",
                "time peer/fstore (join | ingest+join)", "mem fstore/peer (join | ingest+join)", "agree"):
        t.add_column(col, justify="right" if col != "engine" else "left")
    runs = shape_out["runs"]
    comp = shape_out.get("comparison", {}).get("results", {})
    for eng in ["fstore", *runners]:
        j, ij = runs.get(f"{eng}:join"), runs.get(f"{eng}:ingest_join")
        if eng == "fstore":
            rt = rm = "1.00 | 1.00"
            ag = "reference"
            if "fstore:join" in comp:
                ag = "yes" if comp["fstore:join"]["agree"] else "[bold red]NO[/]"
        else:
            r = shape_out["ratios"].get(eng, {})

            def f2(x):
                return "-" if x is None else f"{x:.2f}"
            rt = f"{f2(r.get('join_time_peer_over_fstore'))} | {f2(r.get('ingest_join_time_peer_over_fstore'))}"
            rm = f"{f2(r.get('join_mem_fstore_over_peer'))} | {f2(r.get('ingest_join_mem_fstore_over_peer'))}"
            flags = [comp[k]["agree"] for k in (f"{eng}:join", f"{eng}:ingest_join") if k in comp]
            ag = "-" if not flags else ("yes" if all(flags) else "[bold red]NO[/]")
        t.add_row(eng, _fmt_s(j), _fmt_mem(j), _fmt_s(ij), _fmt_mem(ij), rt, rm, ag)
    console.print(t)
    prep = runs.get("duckdb_prep:prep")
    if prep and prep.get("seconds") is not None:
        console.print(f"  duckdb: loading the sources into a database file for the 'join' run took "
                      f"{prep['seconds']:.2f} s (not counted in 'join').")
    if shape_out.get("agree") is None:
        console.print("[bold red]fstore produced no result: nothing was compared[/]")
    elif not shape_out["agree"]:
        console.print("[bold red]DISAGREEMENT between engines[/] (fstore is the reference):")
        c = shape_out.get("comparison", {})
        for p in c.get("problems", []):
            console.print(f"  {p}")
        for name, res in c.get("results", {}).items():
            if res["agree"]:
                continue
            for p in res["problems"]:
                console.print(f"  {name}: {p}")
            for col, mm in res["mismatches"].items():
                console.print(f"  {name}: column {col}: {mm['count']} rows differ; first:")
                for row in mm["first"]:
                    console.print(f"    {row}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_worker", "_generate", "_compare"):
        return internal(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="big", help="big, wide, or both as 'big,wide' (default: big)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the full size (big: 1M entity rows x 3 x 10M view rows; "
                         "wide: 17k entity rows x 10 views x 100k rows x 100 features)")
    ap.add_argument("--wide-scale", type=float, default=None, help="scale of the wide shape (default: --scale)")
    ap.add_argument("--peers", default="duckdb,polars,pandas",
                    help="comma-separated peers: duckdb, polars, pandas, spark (fstore's Spark engine; "
                         "fstore's local engine always runs)")
    ap.add_argument("--spark-master", default="local[2]", help="the Spark engine's master (default local[2])")
    ap.add_argument("--out", default=None, help="write the results as JSON to this path")
    ap.add_argument("--keep-data", default=None, metavar="DIR",
                    help="generate data into DIR and keep it (reused when it matches); default: a temp dir, removed")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per subprocess (default 900)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per engine and mode; the fastest is reported")
    ap.add_argument("--peer-plans", default="narrow,direct",
                    help="how each peer is written (comma-separated; each is run and reported): 'direct' = the "
                         "as-of join carries every feature column; 'narrow' = as-of join over keys, time and a "
                         "row id, then the matched rows' features are fetched (default: narrow,direct)")
    ap.add_argument("--skip-missing-peers", action="store_true",
                    help="skip a peer whose package is not installed instead of failing")
    ap.add_argument("--buckets", type=int, default=None,
                    help="offline_store.buckets for the fstore repository (default: fstore's default)")
    ap.add_argument("--fstore-src", default=None, metavar="DIR",
                    help="import fstore from this source tree (with its extension built in place) instead of "
                         "the repository holding this script, e.g. to compare two versions")
    ap.add_argument("--profile-fstore", action="store_true",
                    help="run the fstore workers under cProfile (results/<run>.prof; slows them down)")
    args = ap.parse_args(argv)
    if args.fstore_src:
        os.environ["FSTORE_BENCH_SRC"] = str(Path(args.fstore_src).resolve())

    shapes = [s.strip() for s in args.shape.split(",") if s.strip()]
    for s in shapes:
        if s not in ("big", "wide"):
            ap.error(f"unknown shape {s!r}")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in ENGINES or p == "fstore":
            ap.error(f"unknown peer {p!r}; expected duckdb, polars, pandas, spark")
    skipped = []
    for p in list(peers):
        if not _peer_available(p):
            if not args.skip_missing_peers:
                ap.error(f"peer {p} is not installed (pass --skip-missing-peers to skip it)")
            peers.remove(p)
            skipped.append(p)
    plans = [x.strip() for x in args.peer_plans.split(",") if x.strip()]
    for x in plans:
        if x not in ("narrow", "direct"):
            ap.error(f"unknown peer plan {x!r}; expected narrow, direct")
    runners = [f"{p}-{x}" for p in peers if p != "spark" for x in plans] + (["spark"] if "spark" in peers else [])
    if not _peer_available("pyarrow"):
        ap.error("pyarrow is required")

    tmp = None
    if args.keep_data:
        root = Path(args.keep_data).resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="fstore-bench-")
        root = Path(tmp)
    command = " ".join([Path(sys.executable).name, os.path.relpath(HERE, Path.cwd()), *argv])
    report = {"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": _machine(),
              "fstore": _fstore_provenance(),
              "peers": peers, "peer_plans": plans, "runners": runners, "skipped_peers": skipped,
              "timeout_s": args.timeout, "repeat": args.repeat,
              "shapes": {}}
    try:
        for s in shapes:
            scale = args.wide_scale if (s == "wide" and args.wide_scale is not None) else args.scale
            res = run_shape(s, scale, args, root, runners)
            add_ratios(res, runners)
            report["shapes"][s] = res
            print_table(res, runners)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    report["agree"] = all(r.get("agree") is True for r in report["shapes"].values())
    disagree = any(r.get("agree") is False for r in report["shapes"].values())
    report["crashed"] = [f"{s}: {c}" for s, r in report["shapes"].items() for c in r.get("crashed", [])]
    report["timeouts"] = [f"{s}:{k}" for s, r in report["shapes"].items() for k, m in r["runs"].items()
                          if m.get("status") == "timeout"]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        _log(f"results written to {args.out}")
    if disagree:
        print("RESULT: engines DISAGREE with fstore; see above", file=sys.stderr)
        return 1
    if report["crashed"] or not report["agree"]:
        print(f"RESULT: worker(s) failed: {report['crashed']}", file=sys.stderr)
        return 2
    _log("RESULT: all results agree with fstore value for value")
    return 0


def internal(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog=f"bench_historical.py {argv[0]}")
    ap.add_argument("--data", required=True)
    if argv[0] == "_worker":
        ap.add_argument("--engine", required=True, choices=sorted(WORKERS))
        ap.add_argument("--mode", required=True)
        ap.add_argument("--plan", default="-")
        ap.add_argument("--result", required=True)
        ap.add_argument("--metrics", required=True)
        ap.add_argument("--profile", default=None)
        args = ap.parse_args(argv[1:])
        sys.path.insert(0, os.environ.get("FSTORE_BENCH_SRC") or str(REPO_ROOT))
        return run_worker(args)
    args = ap.parse_args(argv[1:])
    data = Path(args.data)
    if argv[0] == "_generate":
        spec = json.loads((data / "spec.request.json").read_text())
        generate(spec, data)
        return 0
    req = json.loads((data / "results" / "compare.request.json").read_text())
    compare(Path(req["reference"]), {k: Path(v) for k, v in req["others"].items()}, data / "results" / "compare.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
