"""The LMDB online store and online reads, end to end through apply, ingest, materialize and load.

Everything runs against real repositories: real Parquet sources, a real offline
store and a real LMDB environment. The central test builds a generated dataset and
checks, entity by entity, that the online vector at T equals the training-set row
built at T.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_views_repo, utc_ts, write_view_source
from fstore import FeatureStore
from fstore._ext._online import read
from fstore._ext._wire import read_packed
from fstore._ext import _online
from fstore.repo.definitions import DTYPES
from fstore.errors import EntityRowError, UnknownObject

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000
SEC = 1_000_000
HOUR = 3600 * SEC
DAY = 24 * HOUR
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
REPO_ROOT = Path(__file__).resolve().parents[1]


def at(offset_us: int) -> dt.datetime:
    return T0 + dt.timedelta(microseconds=offset_us)


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and tells -0.0 from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b if isinstance(a, (bool, bytes, str)) else a == b


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def close(fs: FeatureStore) -> None:
    """Release the LMDB handle: one process must not hold one environment open twice."""
    fs.online.close()


# ---- the codec: every dtype, nulls, extremes ----------------------------------------------

ALL_FEATURES = [("i32", "int32", None), ("i64", "int64", None), ("f32", "float32", None),
                ("f64", "float64", None), ("b", "bool", None), ("s", "string", None),
                ("by", "bytes", None), ("t", "timestamp", None),
                # past eight features the null bitmap takes a second byte
                ("i32b", "int32", None), ("sb", "string", None), ("bb", "bool", None)]


def every_dtype_table() -> pa.Table:
    big = "ünïcødé ✓ 日本語 🎉 " * 20
    rows = [
        # id, i32, i64, f32, f64, b, s, by, t
        (I64_MIN, I32_MIN, I64_MIN, -3.4028234663852886e38, float("-inf"), False, "", b"",
         dt.datetime(1, 1, 1, tzinfo=UTC)),
        (I64_MAX, I32_MAX, I64_MAX, 3.4028234663852886e38, float("inf"), True, big, bytes(range(256)),
         dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (0, 0, 0, -0.0, -0.0, False, "\x00nul\x00", b"\x00", dt.datetime(1970, 1, 1, tzinfo=UTC)),
        (-1, -1, -1, 1.5, 5e-324, True, "a", b"\xff\xfe", dt.datetime(1969, 12, 31, 23, 59, 59, 999999,
                                                                      tzinfo=UTC)),
        (1, None, None, None, None, None, None, None, None),
        (2, 7, 2**53 + 1, float("nan"), float("nan"), None, "", None, at(1)),
        (3, None, 5, 1e-45, 1.7976931348623157e308, False, None, b"", None),
    ]
    cols = list(zip(*rows))
    return pa.table({
        "id": pa.array(cols[0], pa.int64()),
        "ts": utc_ts([T0] * len(rows)),
        "created": utc_ts([T0] * len(rows)),
        "i32": pa.array(cols[1], pa.int32()),
        "i64": pa.array(cols[2], pa.int64()),
        "f32": pa.array(cols[3], pa.float32()),
        "f64": pa.array(cols[4], pa.float64()),
        "b": pa.array(cols[5], pa.bool_()),
        "s": pa.array(cols[6], pa.string()),
        "by": pa.array(cols[7], pa.binary()),
        "t": pa.array(cols[8], pa.timestamp("us", tz="UTC")),
        # the same values one row on, so that the nulls fall elsewhere
        "i32b": pa.array(cols[1][1:] + cols[1][:1], pa.int32()),
        "sb": pa.array(cols[6][1:] + cols[6][:1], pa.string()),
        "bb": pa.array(cols[5][1:] + cols[5][:1], pa.bool_()),
    })


@pytest.mark.parametrize("route", ["materialize", "load"])
def test_every_dtype_round_trips_with_nulls_and_extremes(tmp_path: Path, route: str) -> None:
    root = make_views_repo(tmp_path / "r", {"allt": {"keys": [("id", "int")], "features": ALL_FEATURES}})
    table = every_dtype_table()
    write_view_source(root, "allt", table)
    fs = FeatureStore(root)
    fs.apply()
    if route == "materialize":
        fs.ingest()
        fs.materialize(T0, T0)
    else:
        path = tmp_path / "rows.parquet"
        pq.write_table(table, path)
        assert fs.load("allt", [path]).rows_written == table.num_rows
    ids = table.column("id").to_pylist()
    resp = fs.get_online_features([f"allt:{f}" for f, _, _ in ALL_FEATURES],
                                  entity_rows=[{"id": i} for i in ids], now=at(SEC))
    got = resp.to_dict(include_metadata=True)
    for name, _, _ in ALL_FEATURES:
        expected = table.column(name).to_pylist()
        for row, (e, g) in enumerate(zip(expected, got[name])):
            assert same(g, e), (name, ids[row], g, e)
        assert got[f"{name}__status"] == ["PRESENT"] * len(ids)  # a stored null is PRESENT
        assert got[f"{name}__event_timestamp"] == [T0] * len(ids)
    # the Arrow form keeps the declared types and the values
    arrow = resp.to_arrow()
    for name, dtype, _ in ALL_FEATURES:
        col = arrow.column(name)
        assert col.type == table.column(name).type
        assert [same(a, b) for a, b in zip(col.to_pylist(), table.column(name).to_pylist())] == [True] * len(ids)


def test_composite_and_string_keys_never_collide(tmp_path: Path) -> None:
    pairs = [("ab", "c"), ("a", "bc"), ("", "abc"), ("abc", ""), ("", ""), ("a\x00", "b"), ("a", "\x00b"),
             ("é", "e"), ("e", "é"), ("x" * 200, "y" * 200)]
    singles = ["", "a", "ab", "é", "🎉", "a\x00", "\x00", "z" * 400]
    root = make_views_repo(tmp_path / "r", {
        "two": {"keys": [("k1", "string"), ("k2", "string")], "features": [("v", "int64", None)]},
        "one": {"keys": [("name", "string")], "features": [("v", "int64", -1)]},
        "mixed": {"keys": [("k1", "string"), ("n", "int")], "features": [("v", "int64", None)]},
    })
    write_view_source(root, "two", pa.table({
        "k1": [a for a, _ in pairs], "k2": [b for _, b in pairs], "ts": utc_ts([T0] * len(pairs)),
        "created": utc_ts([T0] * len(pairs)), "v": list(range(len(pairs)))}))
    write_view_source(root, "one", pa.table({
        "name": singles, "ts": utc_ts([T0] * len(singles)), "created": utc_ts([T0] * len(singles)),
        "v": list(range(len(singles)))}))
    write_view_source(root, "mixed", pa.table({
        "k1": ["1", "", "a"], "n": [1, 11, I64_MIN], "ts": utc_ts([T0] * 3), "created": utc_ts([T0] * 3),
        "v": [0, 1, 2]}))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize(T0, T0)
    got = fs.get_online_features(["two:v"], entity_rows=[{"k1": a, "k2": b} for a, b in pairs], now=T0)
    assert got.values("v") == list(range(len(pairs)))
    got = fs.get_online_features(["one:v"], entity_rows=[{"name": s} for s in singles + ["zz", "b"]], now=T0)
    assert got.values("v") == list(range(len(singles))) + [-1, -1]
    assert [s.name for s in got.statuses("v")] == ["PRESENT"] * len(singles) + ["DEFAULTED"] * 2
    got = fs.get_online_features(["mixed:v"], entity_rows=[{"k1": "1", "n": 1}, {"k1": "", "n": 11},
                                                           {"k1": "11", "n": 1}, {"k1": "a", "n": I64_MIN}],
                                 now=T0)
    assert got.values("v") == [0, 1, None, 2]
    assert fs.online.stats("two_v1")["entries"] == len(pairs)
    assert fs.online.stats("one_v1")["entries"] == len(singles)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(I64_MIN, I64_MAX), st.text(max_size=12)), min_size=1, max_size=30))
def test_key_encoding_is_injective_ordered_and_agrees_with_reads(rows: list[tuple[int, str]]) -> None:
    """The batch encoder (materialize, load) and the per-row one (reads) give the same keys."""
    ints, strs = [r[0] for r in rows], [r[1] for r in rows]
    from fstore.online.codec import KIND_OF

    K_INT, K_STR = KIND_OF["int64"], KIND_OF["string"]
    for cols, kinds, values in [([pa.array(ints, pa.int64())], [K_INT], [(i,) for i in ints]),
                                ([pa.array(strs, pa.string())], [K_STR], [(s,) for s in strs]),
                                ([pa.array(ints, pa.int64()), pa.array(strs, pa.string())], [K_INT, K_STR], rows),
                                ([pa.array(strs, pa.string()), pa.array(strs[::-1], pa.string())], [K_STR, K_STR],
                                 list(zip(strs, strs[::-1])))]:
        batch = _online.encode_keys(cols, kinds)
        assert batch == [_online.key_of(v, kinds) for v in values]
        assert all(isinstance(k, bytes) and 0 < len(k) <= 511 for k in batch)  # LMDB takes no empty key
        assert len(set(batch)) == len(set(values))
    # int keys sort as numbers: a sorted batch is appended in order
    enc = _online.encode_keys([pa.array(sorted(ints), pa.int64())], [K_INT])
    assert enc == sorted(enc)


# ---- map growth -----------------------------------------------------------------------------

def _wide_rows(lo: int, hi: int, marker: str) -> pa.Table:
    n = hi - lo
    return pa.table({"id": pa.array(range(lo, hi), pa.int64()), "ts": utc_ts([T0] * n),
                     "created": utc_ts([T0] * n), "s": [f"{marker}{i}-" + "x" * 150 for i in range(lo, hi)]})


def test_map_grows_by_itself_and_loses_no_write(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"w": {"keys": [("id", "int")], "features": [("s", "string", None)]}},
                           online={"map_size": 65536})
    write_view_source(root, "w", _wide_rows(0, 20_000, "m"))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    result = fs.materialize(T0, T0)
    assert result[0].rows_written == 20_000
    size_after_materialize = fs.online.env.info()["map_size"]
    assert size_after_materialize >= 65536 * 16  # several doublings
    pq.write_table(_wide_rows(20_000, 40_000, "l"), tmp_path / "more.parquet")
    assert fs.load("w", [tmp_path / "more.parquet"]).rows_written == 20_000
    close(fs)
    # a fresh process-level open reads everything back
    fresh = FeatureStore(root)
    got = fresh.get_online_features(["w:s"], entity_rows=[{"id": i} for i in range(40_000)], now=T0)
    expected = [f"m{i}-" + "x" * 150 for i in range(20_000)] + [f"l{i}-" + "x" * 150 for i in range(20_000, 40_000)]
    assert got.values("s") == expected
    assert fresh.online.stats("w_v1")["entries"] == 40_000


def test_map_grown_by_another_process_is_adopted_by_readers_and_writers(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"w": {"keys": [("id", "int")], "features": [("s", "string", None)]}},
                           online={"map_size": 65536})
    write_view_source(root, "w", _wide_rows(0, 1, "unused"))
    pq.write_table(_wide_rows(0, 10, "a"), tmp_path / "a.parquet")
    pq.write_table(_wide_rows(10, 20_010, "b"), tmp_path / "b.parquet")
    pq.write_table(_wide_rows(20_010, 30_010, "c"), tmp_path / "c.parquet")
    pq.write_table(_wide_rows(30_010, 50_010, "d"), tmp_path / "d.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.load("w", [tmp_path / "a.parquet"])  # this process maps 64 KiB
    assert fs.get_online_features(["w:s"], entity_rows=[{"id": 0}], now=T0).values("s") == ["a0-" + "x" * 150]
    proc = run_python(f"""
        from fstore import FeatureStore
        fs = FeatureStore({str(root)!r})
        print(fs.load("w", [{str(tmp_path / 'b.parquet')!r}]).rows_written, fs.online.env.info()["map_size"])
    """)
    assert proc.returncode == 0, proc.stderr
    written, grown = map(int, proc.stdout.split())
    assert written == 20_000 and grown > 65536 * 16
    # this process still maps 64 KiB: its next write must adopt the new size ...
    assert fs.load("w", [tmp_path / "c.parquet"]).rows_written == 10_000
    assert proc.returncode == 0
    proc = run_python(f"""
        from fstore import FeatureStore
        fs = FeatureStore({str(root)!r})
        print(fs.load("w", [{str(tmp_path / 'd.parquet')!r}]).rows_written)
    """)
    assert proc.returncode == 0 and proc.stdout.split() == ["20000"], proc.stderr
    # ... and so must its next read, after another process grew the map again
    info = fs.online.env.info()
    assert (info["last_pgno"] + 1) * 4096 > info["map_size"]  # the data now lies beyond this process's map
    got = fs.get_online_features(["w:s"], entity_rows=[{"id": i} for i in (0, 10, 20_009, 30_009, 50_009)], now=T0)
    assert got.values("s") == ["a0-" + "x" * 150, "b10-" + "x" * 150, "b20009-" + "x" * 150,
                               "c30009-" + "x" * 150, "d50009-" + "x" * 150]
    close(fs)
    fresh = FeatureStore(root)
    got = fresh.get_online_features(["w:s"], entity_rows=[{"id": i} for i in range(50_010)], now=T0)
    assert [s.split("-")[0] for s in got.values("s")] == \
        [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(10, 20_010)] + \
        [f"c{i}" for i in range(20_010, 30_010)] + [f"d{i}" for i in range(30_010, 50_010)]


def test_two_stores_of_one_repository_share_the_process_environment(tmp_path: Path) -> None:
    """LMDB must not open one environment twice in a process; two FeatureStores may coexist."""
    root = make_views_repo(tmp_path / "r", {"w": {"keys": [("id", "int")], "features": [("s", "string", None)]}})
    write_view_source(root, "w", _wide_rows(0, 5, "a"))
    first = FeatureStore(root)
    first.apply()
    first.ingest()
    first.materialize(T0, T0)
    second = FeatureStore(root)
    assert second.get_online_features(["w:s"], entity_rows=[{"id": 4}], now=T0).values("s") == ["a4-" + "x" * 150]
    pq.write_table(_wide_rows(5, 10, "b"), tmp_path / "b.parquet")
    assert second.load("w", [tmp_path / "b.parquet"]).rows_written == 5
    close(second)  # closing one store leaves the other working
    assert first.get_online_features(["w:s"], entity_rows=[{"id": 9}], now=T0).values("s") == ["b9-" + "x" * 150]
    close(first)
    env = lmdb.open(str(root / "data" / "online"), max_dbs=8)  # raises if a store still held it open
    env.close()


# ---- online reads: statuses, defaults, ttl, conversions ---------------------------------------

@pytest.fixture()
def small(tmp_path: Path) -> FeatureStore:
    root = make_views_repo(tmp_path / "r", {
        "stats": {"keys": [("customer_id", "int")], "ttl": "10s",
                  "features": [("amount", "float64", 0.0), ("n", "int64", None), ("seg", "string", "none"),
                               ("flag", "bool", None)]},
        "pair": {"keys": [("customer_id", "int"), ("driver_id", "string")], "created": False,
                 "features": [("trips", "int64", 0)]},
    }, services="feature_services:\n  - name: svc\n    features: [stats:amount, pair]\n")
    write_view_source(root, "stats", pa.table({
        "customer_id": [1, 1, 1, 2, 3, 4],
        "ts": utc_ts([T0_US, T0_US + 5 * SEC, T0_US + 5 * SEC, T0_US + 8 * SEC, T0_US - 10 * SEC, T0_US + 30 * SEC]),
        "created": utc_ts([T0_US, T0_US + 1, T0_US + 2, None, T0_US, T0_US]),
        "amount": [1.0, 2.0, 3.0, None, 6.0, 7.0],
        "n": [1, 2, 3, 5, None, 7],
        "seg": ["a", "b", "c", "e", None, "g"],
        "flag": [True, False, True, None, False, True]}))
    write_view_source(root, "pair", pa.table({
        "customer_id": [1, 1], "driver_id": ["x", "y"], "ts": utc_ts([T0_US, T0_US]), "trips": [7, 8]}))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize(T0 - dt.timedelta(days=1), at(10 * SEC))  # customer 4's row at +30 s is not materialized
    return fs


def test_statuses_values_and_timestamps(small: FeatureStore) -> None:
    rows = [{"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}, {"customer_id": 4},
            {"customer_id": None}]
    resp = small.get_online_features(["stats:amount", "stats:n", "stats:seg", "stats:flag"], entity_rows=rows,
                                     now=at(15 * SEC))
    d = resp.to_dict(include_metadata=True)
    # 1: newest (tie on event time -> newest created); 2: stored nulls; 3: expired (ttl 10 s);
    # 4: never materialized; None key: not found
    assert d["amount"] == [3.0, None, 0.0, 0.0, 0.0]
    assert d["amount__status"] == ["PRESENT", "PRESENT", "DEFAULTED", "DEFAULTED", "DEFAULTED"]
    assert d["n"] == [3, 5, None, None, None]
    assert d["n__status"] == ["PRESENT", "PRESENT", "EXPIRED", "NOT_FOUND", "NOT_FOUND"]
    assert d["seg"] == ["c", "e", "none", "none", "none"]
    assert d["flag"] == [True, None, None, None, None]
    stamps = [at(5 * SEC), at(8 * SEC), at(-10 * SEC), None, None]
    assert d["n__event_timestamp"] == stamps and d["amount__event_timestamp"] == stamps
    assert d["customer_id"] == [1, 2, 3, 4, None]
    # the ttl bound is inclusive to the microsecond, as offline
    edge = small.get_online_features(["stats:n"], entity_rows=[{"customer_id": 1}], now=at(15 * SEC))
    assert edge.values("n") == [3]
    late = small.get_online_features(["stats:n"], entity_rows=[{"customer_id": 1}], now=at(15 * SEC + 1))
    assert late.values("n") == [None] and late.statuses("n")[0].name == "EXPIRED"
    assert late.event_timestamps("n") == [at(5 * SEC)]
    # a stored row newer than "now" is not visible (never a value from the future)
    early = small.get_online_features(["stats:n", "stats:amount"], entity_rows=[{"customer_id": 1}],
                                      now=at(5 * SEC - 1))
    assert early.values("n") == [None] and early.statuses("n")[0].name == "NOT_FOUND"
    assert early.values("amount") == [0.0] and early.statuses("amount")[0].name == "DEFAULTED"


def test_response_conversions(small: FeatureStore) -> None:
    rows = [{"customer_id": 1, "driver_id": "y"}, {"customer_id": 3, "driver_id": "x"},
            {"customer_id": 9, "driver_id": "x"}]
    resp = small.get_online_features(feature_service="svc", entity_rows=rows, now=at(15 * SEC))
    assert len(resp) == 3 and resp.feature_names == ["amount", "trips"]
    assert resp.to_dict() == {"customer_id": [1, 3, 9], "driver_id": ["y", "x", "x"], "amount": [3.0, 0.0, 0.0],
                              "trips": [8, 0, 0]}
    out = resp.to_rows(include_metadata=True)
    assert out[0] == {"customer_id": 1, "driver_id": "y",
                      "amount": {"value": 3.0, "status": "PRESENT", "event_timestamp": at(5 * SEC)},
                      "trips": {"value": 8, "status": "PRESENT", "event_timestamp": T0}}
    assert out[2]["trips"] == {"value": 0, "status": "DEFAULTED", "event_timestamp": None}
    assert resp.to_rows()[1] == {"customer_id": 3, "driver_id": "x", "amount": 0.0, "trips": 0}
    table = resp.to_arrow()
    assert table.column("amount").to_pylist() == [3.0, 0.0, 0.0]
    assert table.column("trips").type == pa.int64()
    assert table.column("amount__status").to_pylist() == ["PRESENT", "DEFAULTED", "DEFAULTED"]
    assert table.column("trips__event_timestamp").to_pylist() == [T0, None, None]
    matrix = resp.to_numpy()
    assert matrix.shape == (3, 2) and matrix.tolist() == [[3.0, 8.0], [0.0, 0.0], [0.0, 0.0]]
    empty = small.get_online_features(feature_service="svc", entity_rows=[], now=T0)
    assert empty.to_dict(include_metadata=True)["amount__status"] == [] and empty.to_numpy().shape == (0, 2)
    assert empty.to_arrow().num_rows == 0 and empty.to_rows() == []
    nulls = small.get_online_features(["stats:n", "stats:flag"], entity_rows=[{"customer_id": 2}, {"customer_id": 1}],
                                      now=at(15 * SEC)).to_numpy()
    assert np.isnan(nulls[0, 1]) and nulls[0, 0] == 5.0 and nulls[1].tolist() == [3.0, 1.0]
    with pytest.raises(ValueError, match="seg"):
        small.get_online_features(["stats:seg"], entity_rows=rows, now=T0).to_numpy(["seg"])
    # full feature names and a dict of columns as entity rows
    full = small.get_online_features(["stats:amount", "pair:trips"], full_feature_names=True,
                                     entity_rows={"customer_id": [1, 1], "driver_id": ["x", "y"]}, now=at(15 * SEC))
    assert full.to_dict() == {"customer_id": [1, 1], "driver_id": ["x", "y"], "stats__amount": [3.0, 3.0],
                              "pair__trips": [7, 8]}


def test_response_to_df(small: FeatureStore) -> None:
    import pandas as pd

    rows = [{"customer_id": 1, "driver_id": "y"}, {"customer_id": 9, "driver_id": "x"}]
    resp = small.get_online_features(["stats:n", "stats:seg", "pair:trips"], entity_rows=rows, now=at(15 * SEC))
    df = resp.to_df()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["customer_id", "driver_id", "n", "seg", "trips"]
    assert df["customer_id"].tolist() == [1, 9] and df["seg"].tolist() == ["c", "none"]
    assert df["n"].iloc[0] == 3 and pd.isna(df["n"].iloc[1]) and df["trips"].tolist() == [8, 0]
    meta = resp.to_df(include_metadata=True)
    assert meta["n__status"].tolist() == ["PRESENT", "NOT_FOUND"]
    assert meta["seg__status"].tolist() == ["PRESENT", "DEFAULTED"]
    stamps = meta["trips__event_timestamp"]
    assert str(stamps.dtype) == "datetime64[ns, UTC]" or str(stamps.dtype).startswith("datetime64[")
    assert stamps.iloc[0] == pd.Timestamp(T0) and pd.isna(stamps.iloc[1])
    empty = small.get_online_features(feature_service="svc", entity_rows=[], now=T0).to_df(include_metadata=True)
    assert len(empty) == 0 and "amount__status" in empty.columns


def test_to_df_without_pandas_names_what_to_install() -> None:
    """pandas is optional: without it to_df says how to get it, and the module still imports."""
    proc = run_python("""
        import sys
        sys.modules["pandas"] = None  # as if not installed
        from fstore.errors import MissingDependency
        from fstore.online.response import OnlinePlan, OnlineResponse
        plan = OnlinePlan(["x"], ["int64"], [0], [None], ["v_v1"], ["k"])
        resp = OnlineResponse([{"k": 1}], plan, [[5]], None, None)
        assert resp.to_dict() == {"k": [1], "x": [5]}
        try:
            resp.to_df()
        except ImportError as exc:
            assert isinstance(exc, MissingDependency) and exc.code == "MISSING_DEPENDENCY"
            print(exc)
        else:
            raise SystemExit("no error")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "pip install pandas" in proc.stdout and "fstore[pandas]" in proc.stdout


def test_bad_entity_rows_name_the_row_and_key(small: FeatureStore) -> None:
    fs = small
    with pytest.raises(EntityRowError, match=r"entity row 2 \(rows are numbered from 1\).*customer_id"):
        fs.get_online_features(["stats:n"], entity_rows=[{"customer_id": 1}, {"driver_id": "x"}], now=T0)
    with pytest.raises(EntityRowError, match=r"entity row 1 .*driver_id"):
        fs.get_online_features(["pair:trips"], entity_rows=[{"customer_id": 1}], now=T0)
    for bad in ["1", 1.0, True, 2**63, b"1"]:
        with pytest.raises(EntityRowError, match=r"entity row 3 ") as info:
            fs.get_online_features(["stats:n"], entity_rows=[{"customer_id": 1}, {"customer_id": 2},
                                                             {"customer_id": bad}], now=T0)
        assert "stats" in str(info.value)
    with pytest.raises(EntityRowError, match=r"entity row 1 .*driver_id|entity row 1 .*string"):
        fs.get_online_features(["pair:trips"], entity_rows=[{"customer_id": 1, "driver_id": 7}], now=T0)
    with pytest.raises(EntityRowError, match=r"entity row 2 "):
        fs.get_online_features(["stats:n"], entity_rows=[{"customer_id": 1}, [1]], now=T0)
    with pytest.raises(EntityRowError, match="differ in length"):
        fs.get_online_features(["pair:trips"], entity_rows={"customer_id": [1, 2], "driver_id": ["x"]}, now=T0)
    # numpy integers are integers
    assert fs.get_online_features(["stats:n"], entity_rows=[{"customer_id": np.int64(1)}],
                                  now=at(5 * SEC)).values("n") == [3]


def test_a_newly_applied_registry_is_picked_up(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"v": {"keys": [("k", "int")], "features": [("x", "int64", None)]}})
    write_view_source(root, "v", pa.table({"k": [1], "ts": utc_ts([T0]), "created": utc_ts([T0]), "x": [10]}))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize(T0, T0)
    assert fs.get_online_features(["v:x"], entity_rows=[{"k": 1}], now=T0).values("x") == [10]
    with pytest.raises(UnknownObject):
        fs.get_online_features(feature_service="svc", entity_rows=[{"k": 1}], now=T0)
    # a second view version and a service appear in the registry (applied by another store object)
    defs = (root / "features" / "defs.yaml").read_text().replace("version: 1", "version: 2")
    defs = defs.replace("dtype: int64", "dtype: float64\n    default: -1.0")
    (root / "features" / "defs.yaml").write_text(defs + "feature_services:\n- name: svc\n  features: [v_v1:x]\n")
    other = FeatureStore(root)
    other.apply()
    time.sleep(1.1)  # the in-process store re-reads the registry at most once a second
    # v2 has no online data yet: unpinned references keep reading v1 (docs/repository.md, Versions)
    live = fs.get_online_features(["v:x"], entity_rows=[{"k": 1}], now=T0)
    assert live.values("x") == [10] and live.statuses("x")[0].name == "PRESENT"
    v2 = fs.get_online_features(["v_v2:x"], entity_rows=[{"k": 1}], now=T0)
    assert v2.values("x") == [-1.0] and v2.statuses("x")[0].name == "DEFAULTED"  # pinned: not materialized
    assert fs.get_online_features(feature_service="svc", entity_rows=[{"k": 1}], now=T0).values("x") == [10]
    fs.ingest()
    fs.materialize(T0, T0, views=["v"])
    assert fs.get_online_features(["v:x"], entity_rows=[{"k": 1}], now=T0).values("x") == [10.0]


# ---- online == offline, entity by entity ------------------------------------------------------

CUST_FEATURES = [("spend", "float64", 0.0), ("n", "int32", None), ("seg", "string", "none"), ("vip", "bool", None),
                 ("last_seen", "timestamp", "2000-01-01T00:00:00Z"), ("blob", "bytes", "zz"),
                 ("score", "float32", -1.0), ("big", "int64", 7)]
PAIR_FEATURES = [("trips", "int64", 0), ("note", "string", None)]
MERCH_FEATURES = [("risk", "float64", None), ("tag", "string", "?")]
DRIVERS = ["d1", "d2", "", "δρ", "d1 "]
MERCHANTS = ["m0", "m1", "", "ünï", "m0\x00", "m" * 100, "🎉", "m10", "m2"]


def _generate(rng: random.Random, keys: list[tuple], ttl_us: int | None, features: list[tuple],
              with_created: bool, t_end: int) -> list[dict[str, Any]]:
    """Rows for each key: event times on a coarse grid (so ties happen), created times unique per tie."""
    rows = []
    grid = [T0_US + h * HOUR for h in range(-5 * 24, 12 * 24)]
    for key in keys:
        n = rng.choice([0, 1, 1, 2, 3, 5, 8])
        seen: set[tuple[int, Any]] = set()
        for _ in range(n):
            t = rng.choice(grid)
            created = rng.choice([None, t, t + SEC, t + 2 * SEC]) if with_created else None
            if (t, created) in seen:
                continue
            seen.add((t, created))
            row = {"key": key, "ts": t, "created": created}
            for name, dtype, _ in features:
                row[name] = None if rng.random() < 0.15 else _value(rng, dtype)
            rows.append(row)
        if ttl_us and rng.random() < 0.1:  # rows exactly on, and just past, the ttl bound
            for t, created in ((t_end - ttl_us, T0_US - 1), (t_end - ttl_us - 1, T0_US)):
                created = created if with_created else None
                if (t, created) not in seen:
                    seen.add((t, created))
                    row = {"key": key, "ts": t, "created": created}
                    row.update({name: _value(rng, dtype) for name, dtype, _ in features})
                    rows.append(row)
    return rows


def _value(rng: random.Random, dtype: str) -> Any:
    if dtype in ("int32", "int64"):
        return rng.choice([0, -1, 1, rng.randint(-1000, 1000), I32_MAX if dtype == "int32" else I64_MAX])
    if dtype == "float64":
        return rng.choice([0.0, -0.0, rng.uniform(-1e6, 1e6), 1e300])
    if dtype == "float32":
        return float(np.float32(rng.uniform(-100, 100)))
    if dtype == "bool":
        return rng.random() < 0.5
    if dtype == "string":
        return rng.choice(["", "a", "gold", "ünïcødé", "x" * rng.randint(0, 50)])
    if dtype == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))
    if dtype == "timestamp":
        return T0 + dt.timedelta(microseconds=rng.randint(-10**12, 10**12))
    raise AssertionError(dtype)


def _table(rows: list[dict[str, Any]], key_cols: list[tuple[str, str]], features: list[tuple],
           with_created: bool) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for i, (col, kind) in enumerate(key_cols):
        cols[col] = pa.array([r["key"][i] for r in rows], pa.int64() if kind == "int" else pa.string())
    cols["ts"] = utc_ts([r["ts"] for r in rows]) if rows else pa.array([], pa.timestamp("us", tz="UTC"))
    if with_created:
        cols["created"] = pa.array([r["created"] for r in rows], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    for name, dtype, _ in features:
        cols[name] = pa.array([r[name] for r in rows], DTYPES[dtype])
    return pa.table(cols)


def _expected(rows: list[dict[str, Any]], key: tuple | None, now: int, ttl_us: int | None,
              features: list[tuple]) -> dict[str, tuple[Any, str, dt.datetime | None]]:
    """(value, status, event timestamp) per feature, by the rule of the issue, row by row."""
    cands = [] if key is None or None in key else [r for r in rows if r["key"] == key and r["ts"] <= now]
    best = max(cands, key=lambda r: (r["ts"], -2**63 if r["created"] is None else r["created"]), default=None)
    out = {}
    for name, dtype, default in features:
        d = default
        if dtype == "timestamp" and d is not None:
            d = dt.datetime.fromisoformat(d.replace("Z", "+00:00"))
        elif dtype == "bytes" and d is not None:
            d = d.encode()
        if best is None:
            out[name] = (d, "NOT_FOUND" if d is None else "DEFAULTED", None)
        elif ttl_us and best["ts"] < now - ttl_us:
            out[name] = (d, "EXPIRED" if d is None else "DEFAULTED", at(best["ts"] - T0_US))
        else:
            out[name] = (best[name], "PRESENT", at(best["ts"] - T0_US))
    return out


def test_online_vector_equals_training_vector_entity_by_entity(tmp_path: Path) -> None:
    rng = random.Random(20240301)
    T = T0_US + 3 * DAY + 7 * HOUR
    cust_ttl, merch_ttl = 2 * DAY, 12 * HOUR
    customers = [(c,) for c in range(400)]
    pairs = [(c, rng.choice(DRIVERS)) for c in range(0, 400, 2)]
    merchants = [(m,) for m in MERCHANTS]
    cust_rows = _generate(rng, customers, cust_ttl, CUST_FEATURES, True, T)
    pair_rows = _generate(rng, pairs, None, PAIR_FEATURES, False, T)
    merch_rows = _generate(rng, merchants, merch_ttl, MERCH_FEATURES, True, T)
    for m in merchants:  # every merchant has history, and some an exact tie on event time
        merch_rows.append({"key": m, "ts": T - HOUR, "created": T0_US, "risk": 0.5, "tag": "tie-old"})
        merch_rows.append({"key": m, "ts": T - HOUR, "created": T0_US + 1, "risk": 0.75, "tag": "tie-new"})
    root = make_views_repo(tmp_path / "r", {
        "cust": {"keys": [("customer_id", "int")], "ttl": "2d", "features": CUST_FEATURES},
        "pair": {"keys": [("customer_id", "int"), ("driver_id", "string")], "created": False,
                 "features": PAIR_FEATURES},
        "merch": {"keys": [("merchant_id", "string")], "ttl": "12h", "features": MERCH_FEATURES},
    }, buckets=5)
    # two source files per view, so that buckets hold several offline parts
    for name, rows, keys, feats, created in [
            ("cust", cust_rows, [("customer_id", "int")], CUST_FEATURES, True),
            ("pair", pair_rows, [("customer_id", "int"), ("driver_id", "string")], PAIR_FEATURES, False),
            ("merch", merch_rows, [("merchant_id", "string")], MERCH_FEATURES, True)]:
        half = len(rows) // 2
        write_view_source(root, name, _table(rows[:half], keys, feats, created), 0)
        write_view_source(root, name, _table(rows[half:], keys, feats, created), 1)
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    # materialize in two steps up to T: a backfill, then the incremental continuation
    fs.materialize(at(-30 * DAY), at(T - T0_US - DAY))
    fs.materialize_incremental(at(T - T0_US))

    entity_rows = []
    for c in range(430):  # 30 customers without any history
        entity_rows.append({"customer_id": c, "driver_id": rng.choice(DRIVERS), "merchant_id": rng.choice(MERCHANTS)})
    for c, d in pairs:
        entity_rows.append({"customer_id": c, "driver_id": d, "merchant_id": rng.choice(MERCHANTS + ["nope"])})
    entity_rows.append({"customer_id": None, "driver_id": "d1", "merchant_id": None})
    entity_rows.append({"customer_id": 2, "driver_id": None, "merchant_id": "m1"})
    features = ([f"cust:{f}" for f, _, _ in CUST_FEATURES] + [f"pair:{f}" for f, _, _ in PAIR_FEATURES]
                + [f"merch:{f}" for f, _, _ in MERCH_FEATURES])

    online = fs.get_online_features(features, entity_rows=entity_rows, now=at(T - T0_US))
    entity_df = pa.table({"customer_id": pa.array([e["customer_id"] for e in entity_rows], pa.int64()),
                          "driver_id": pa.array([e["driver_id"] for e in entity_rows], pa.string()),
                          "merchant_id": pa.array([e["merchant_id"] for e in entity_rows], pa.string()),
                          "event_timestamp": utc_ts([T] * len(entity_rows))})
    offline = fs.get_historical_features(entity_df, features)
    on_rows = online.to_rows(include_metadata=True)
    off_rows = offline.to_pylist()
    assert len(on_rows) == len(off_rows) == len(entity_rows)
    statuses: dict[str, int] = {}
    for i, (e, on, off) in enumerate(zip(entity_rows, on_rows, off_rows)):
        expect = {}
        expect.update(_expected(cust_rows, (e["customer_id"],), T, cust_ttl, CUST_FEATURES))
        expect.update(_expected(pair_rows, (e["customer_id"], e["driver_id"]), T, None, PAIR_FEATURES))
        expect.update(_expected(merch_rows, (e["merchant_id"],), T, merch_ttl, MERCH_FEATURES))
        for ref in features:
            name = ref.split(":")[1]
            got = on[name]
            assert same(got["value"], off[name]), (i, e, name, got, off[name])
            value, status, stamp = expect[name]
            assert same(got["value"], value), (i, e, name, got, value)
            assert (got["status"], got["event_timestamp"]) == (status, stamp), (i, e, name, got, expect[name])
            statuses[status] = statuses.get(status, 0) + 1
    # the dataset exercises every status
    assert set(statuses) == {"PRESENT", "NOT_FOUND", "EXPIRED", "DEFAULTED"}, statuses


def test_stats_on_first_use_in_a_fresh_process(tmp_path):
    """stats() must open the view's database before its read transaction (it failed on first call)."""
    import subprocess
    import sys

    from conftest import make_demo_repo

    root = make_demo_repo(tmp_path / "r")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize("2000-01-01", "now")
    fs.close()
    code = ("import sys; from fstore import FeatureStore; fs = FeatureStore(sys.argv[1]); "
            "s = fs.online.stats('customer_stats_v1'); assert s['entries'] > 0 and s['bytes'] > 0, s; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def _wire_equals_decoded(fs: FeatureStore, features: list[str], columns: dict[str, list[Any]], now_us: int) -> None:
    """read_packed (the server's path: MessagePack written from the stored rows) decodes to
    exactly what the in-process path returns, statuses and timestamps included."""
    plan = fs.online_plan(features, None)
    env = fs.online.env
    packed, status, stamps = read_packed(env, plan, columns, now_us)
    values, status2, stamps2 = read(env, plan, columns, now_us, None, True)
    decoded = msgpack.unpackb(packed, timestamp=3, raw=False)
    assert bytes(status) == bytes(status2) and bytes(stamps) == bytes(stamps2)
    assert len(decoded) == len(values)
    for name, got, want in zip(plan.names, decoded, values):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert same(g, w) and type(g) is type(w), (name, g, w)
    # and it is what msgpack-python itself makes of those values, byte for byte
    assert packed == msgpack.packb(values, datetime=True, use_bin_type=True)


def test_wire_encoding_equals_decoded_values_for_every_dtype(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"allt": {"keys": [("id", "int")], "features": ALL_FEATURES}})
    table = every_dtype_table()
    write_view_source(root, "allt", table)
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize(T0, T0)
    ids = table.column("id").to_pylist() + [12345, None]  # and a missing entity, and a null key
    _wire_equals_decoded(fs, [f"allt:{f}" for f, _, _ in ALL_FEATURES], {"id": ids}, T0_US + SEC)
    close(fs)


def test_wire_encoding_equals_decoded_values_for_every_status(small: FeatureStore) -> None:
    cols = {"customer_id": [1, 2, 3, 4, None, 1], "driver_id": ["x", "y", "x", "z", "x", "zz"]}
    for offset in (-10 * SEC, 5 * SEC - 1, 15 * SEC, 15 * SEC + 1, 100 * SEC):
        _wire_equals_decoded(small, ["stats:amount", "stats:n", "pair:trips", "stats:seg", "stats:flag"], cols,
                             T0_US + offset)
    assert read_packed(small.online.env, small.online_plan(["stats:n"], None), {"customer_id": []}, T0_US)[0] == b"\x91\x90"


def test_opening_a_database_while_another_process_writes_does_not_freeze_this_process(tmp_path: Path) -> None:
    """Opening a view's database waits for LMDB's write lock; it must wait with the GIL
    released, or every thread of a server worker stops until the other writer commits.
    Measured in a fresh process, so that nothing else the test session runs takes turns."""
    root = make_views_repo(tmp_path / "r", {"w": {"keys": [("id", "int")], "features": [("s", "string", None)]}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    opener = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, threading, time
        from fstore import FeatureStore
        fs = FeatureStore({str(root)!r})
        fs.online.env  # opened before the other process takes the write lock
        print("open", flush=True)
        sys.stdin.readline()  # until the other process holds the lock
        ticks, stop = [0], threading.Event()
        def tick():
            while not stop.is_set():
                ticks[0] += 1
                time.sleep(0.01)
        t = threading.Thread(target=tick)
        t.start()
        t0 = time.monotonic()
        fs.online.db("fresh_v1")  # waits for the holder's write transaction
        waited = time.monotonic() - t0
        stop.set()
        t.join()
        print(waited, ticks[0], flush=True)
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert opener.stdout.readline().strip() == "open"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time, lmdb
        env = lmdb.open({str(root / 'data' / 'online')!r}, max_dbs=64)
        txn = env.begin(write=True)
        print("holding", flush=True)
        time.sleep(1.5)
        txn.abort()
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        opener.stdin.write("go\n")
        opener.stdin.flush()
        waited, ticks = opener.stdout.readline().split()
        assert opener.wait(timeout=30) == 0
        assert float(waited) > 0.5, waited  # it did wait for the lock ...
        assert int(ticks) > 20, ticks  # ... and its other thread ran meanwhile (about 100 ticks a second)
    finally:
        for proc in (opener, holder):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def test_a_response_pickles_with_its_values_statuses_and_timestamps(small: FeatureStore) -> None:
    import pickle

    rows = [{"customer_id": 1}, {"customer_id": 3}, {"customer_id": 4}]
    resp = small.get_online_features(["stats:amount", "stats:n", "stats:seg"], entity_rows=rows, now=at(15 * SEC))
    back = pickle.loads(pickle.dumps(resp))
    assert back.to_dict(include_metadata=True) == resp.to_dict(include_metadata=True)
    assert back.to_arrow().equals(resp.to_arrow())
    np.testing.assert_array_equal(back.to_numpy(), resp.to_numpy())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(
    st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.sampled_from(
        [-2**63, -2**31 - 1, -2**31, -32769, -32768, -129, -128, -33, -32, -1, 0, 127, 128, 255, 256, 65535, 65536,
         2**32 - 1, 2**32, 2**63 - 1])),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    st.one_of(st.none(), st.integers(-62135596800000000, 253402300799999999)),  # timestamps, years 1-9999
    st.one_of(st.none(), st.text(max_size=70)),
    st.one_of(st.none(), st.binary(max_size=300)),
    st.one_of(st.none(), st.booleans())), min_size=1, max_size=12))
def test_wire_bytes_equal_msgpack_python_for_any_values(tmp_path_factory: pytest.TempPathFactory,
                                                        rows: list[tuple]) -> None:
    """read_packed's MessagePack, byte for byte, is what msgpack-python makes of the values
    the in-process read decodes: every integer width, float, timestamp form and length class."""
    from types import SimpleNamespace

    from fstore._ext._online import ViewReader, encode_keys, encode_rows
    from fstore.online.codec import KIND_OF as KINDS

    kinds = [KINDS[k] for k in ("int64", "float64", "timestamp", "string", "bytes", "bool")]
    n = len(rows)
    cols = list(zip(*rows))
    arrays = [pa.array(cols[0], pa.int64()), pa.array(cols[1], pa.float64()), pa.array(cols[2], pa.int64()),
              pa.array(cols[3], pa.string()), pa.array(cols[4], pa.binary()), pa.array(cols[5], pa.bool_())]
    ids = pa.array(range(n), pa.int64())
    keys = encode_keys([ids], [KINDS["int64"]])
    ts = np.full(n, T0_US, dtype=np.int64)
    values = encode_rows(ts, ts, arrays, kinds)
    env = lmdb.open(str(tmp_path_factory.mktemp("wire")), max_dbs=2, map_size=1 << 26)
    db = env.open_db(b"v")
    with env.begin(write=True) as txn:
        for k, v in zip(keys, values):
            txn.put(k, v, db=db)
    reader = ViewReader(db, ["id"], [KINDS["int64"]], kinds, list(range(6)), [None] * 6, 0, list(range(6)))
    plan = SimpleNamespace(readers=[reader], names=[f"f{i}" for i in range(6)])
    columns = {"id": list(range(n)) + [n + 5]}  # and one entity with no row
    packed, status, stamps = read_packed(env, plan, columns, T0_US)
    decoded, status2, stamps2 = read(env, plan, columns, T0_US, None, True)
    env.close()
    assert packed == msgpack.packb(decoded, datetime=True, use_bin_type=True)
    assert bytes(status) == bytes(status2) and bytes(stamps) == bytes(stamps2)


def test_encoding_a_sliced_batch_equals_encoding_the_same_rows_unsliced() -> None:
    """Materialize and load encode sorted tables chunk by chunk (Arrow slices with offsets):
    bit-packed bools and validity bitmaps at an odd offset must encode as a fresh array does."""
    from fstore._ext._online import encode_keys, encode_rows
    from fstore.online.codec import KIND_OF as KINDS

    n = 37
    cols = [pa.array([None if i % 5 == 0 else i % 3 == 0 for i in range(n)], pa.bool_()),
            pa.array([None if i % 7 == 0 else f"s{i}" for i in range(n)], pa.string()),
            pa.array([None if i % 4 == 0 else i * 1.5 for i in range(n)], pa.float64()),
            pa.array([None if i % 6 == 0 else bytes([i]) * i for i in range(n)], pa.binary())]
    kinds = [KINDS[k] for k in ("bool", "string", "float64", "bytes")]
    ids = pa.array(range(n), pa.int64())
    for off in (1, 3, 11):
        sliced = [c.slice(off) for c in cols]
        fresh = [pa.array(c.to_pylist(), c.type) for c in sliced]
        ts = np.arange(off, n, dtype=np.int64)
        assert encode_rows(ts, ts, sliced, kinds) == encode_rows(ts, ts, fresh, kinds)
        assert encode_keys([ids.slice(off)], [KINDS["int64"]]) == encode_keys([pa.array(range(off, n), pa.int64())],
                                                                              [KINDS["int64"]])
