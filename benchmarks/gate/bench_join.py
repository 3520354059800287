"""Point-in-time joins against DuckDB's ASOF JOIN at small scale, on the same data.

* ``asof_join``: ``FeatureStore.get_historical_features`` over bench_historical.py's big
  shape at scale 0.004 (4,000 entity rows, three views of 40,000 rows, one with a composite
  key, ttl 7 d / none / 30 d, defaults), from the ingested offline store. Floor: the same
  join written for DuckDB (bench_historical's ``direct`` plan: QUALIFY dedupe, ASOF LEFT
  JOIN, ttl filter, defaults) over the sources loaded beforehand into in-memory tables.
  The two results are checked equal, column by column, before timing.
* ``asof_kernel``: the compiled kernel alone, ``asof_indices`` over 200,000 view rows
  (20,000 keys, distinct times) and 100,000 entity rows, no ttl. Floor: DuckDB's ASOF JOIN
  of the same int64 columns (Arrow tables, zero-copy) returning the matched row ids, checked
  equal to the kernel's.

DuckDB runs on one thread: the process is pinned to one core (conftest.py).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

KERNEL_VIEW_ROWS, KERNEL_KEYS, KERNEL_ENTITIES = 200_000, 20_000, 100_000


@pytest.fixture(scope="session")
def duck() -> Any:
    import duckdb

    con = duckdb.connect(config={"threads": 1})
    yield con
    con.close()


@pytest.fixture(scope="session")
def join_sides(history_data: dict[str, Any], duck: Any) -> dict[str, Any]:
    import bench_historical as bh

    from fstore import FeatureStore

    spec, data = history_data["spec"], history_data["data"]
    for v in spec["views"]:
        duck.execute(f"CREATE OR REPLACE TABLE src_{v['name']} AS SELECT * FROM {bh._view_src(data, v, False)}")
    sql = bh.duckdb_query(spec, data, from_tables=True, plan="direct")
    fs = FeatureStore(history_data["repo"])
    entity, refs = str(history_data["entity"]), history_data["refs"]

    def fstore_join() -> Any:
        return fs.get_historical_features(entity, features=refs, full_feature_names=True)

    def duck_join() -> Any:
        return duck.sql(sql).to_arrow_table()

    ours, theirs = fstore_join(), duck_join()
    assert ours.num_rows == theirs.num_rows == spec["entity_rows"]
    for name in theirs.column_names:
        a, b = ours.column(name).combine_chunks(), theirs.column(name).combine_chunks()
        assert a.equals(b.cast(a.type)), f"fstore and DuckDB disagree on {name}"
    return {"fstore": fstore_join, "floor": duck_join}


def test_asof_join_fstore(benchmark: Any, gate_pass: int, join_sides: dict[str, Any]) -> None:
    benchmark(join_sides["fstore"])


def test_asof_join_floor(benchmark: Any, gate_pass: int, join_sides: dict[str, Any]) -> None:
    benchmark(join_sides["floor"])


@pytest.fixture(scope="session")
def kernel_input(duck: Any) -> dict[str, Any]:
    import pyarrow as pa

    rng = np.random.default_rng(20240505)
    keys = np.sort(rng.integers(0, KERNEL_KEYS, KERNEL_VIEW_ROWS))
    ts = np.empty(KERNEL_VIEW_ROWS, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    times = rng.permutation(KERNEL_VIEW_ROWS).astype(np.int64) * 1_000  # distinct: no tie to break
    for lo, hi in zip(starts, np.r_[starts[1:], KERNEL_VIEW_ROWS]):
        ts[lo:hi] = np.sort(times[lo:hi])  # grouped by key, sorted by time inside a group
    ekeys = rng.integers(0, int(KERNEL_KEYS * 1.05), KERNEL_ENTITIES)  # ~5 % unknown keys
    ets = rng.integers(0, KERNEL_VIEW_ROWS * 1_000, KERNEL_ENTITIES).astype(np.int64)
    duck.register("kv", pa.table({"k": keys, "ts": ts, "rid": np.arange(KERNEL_VIEW_ROWS, dtype=np.int64)}))
    duck.register("ke", pa.table({"k": ekeys, "ts": ets, "erow": np.arange(KERNEL_ENTITIES, dtype=np.int64)}))
    return {"args": (np.ascontiguousarray(keys.reshape(-1, 1)), ts, np.full(KERNEL_VIEW_ROWS, np.iinfo(np.int64).min),
                     np.ascontiguousarray(ekeys.reshape(-1, 1)), ets, np.ones(KERNEL_ENTITIES, dtype=np.uint8), 0),
            "sql": "SELECT ke.erow, kv.rid FROM ke ASOF LEFT JOIN kv ON ke.k = kv.k AND ke.ts >= kv.ts "
                   "ORDER BY ke.erow"}


def test_asof_kernel_fstore(benchmark: Any, gate_pass: int, kernel_input: dict[str, Any], duck: Any) -> None:
    from fstore._ext._asof import asof_indices

    ours = asof_indices(*kernel_input["args"])
    theirs = duck.sql(kernel_input["sql"]).to_arrow_table().column("rid").to_numpy(zero_copy_only=False)
    assert np.array_equal(ours, np.nan_to_num(theirs, nan=-1).astype(np.int64)), "kernel and DuckDB disagree"
    benchmark(asof_indices, *kernel_input["args"])


def test_asof_kernel_floor(benchmark: Any, gate_pass: int, kernel_input: dict[str, Any], duck: Any) -> None:
    sql = kernel_input["sql"]
    benchmark(lambda: duck.sql(sql).to_arrow_table())
