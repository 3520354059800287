"""Windowed aggregations: definitions, plan-time typing, and training sets checked against a
brute-force oracle (a plain loop over the events per training row), through real apply,
real Parquet ingest (two runs, so tiles of several runs merge) and the compiled kernel."""
from __future__ import annotations

import datetime as dt
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fstore import FeatureStore
from fstore._ext._window import build_tiles, newest_in_window, window_aggregate
from fstore.errors import DefinitionErrors, InvalidDefinition
from fstore.offline.layout import bucket_ids
from fstore.repo.aggregations import Aggregation
from fstore.repo.definitions import FeatureView

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)
S = 1_000_000  # microseconds in a second
NO_TIME = -(1 << 63)

# ---- definitions -------------------------------------------------------------------------


def test_parse_names_view_aggregation_and_field() -> None:
    with pytest.raises(InvalidDefinition) as e:
        FeatureView(name="v", entities=["c"], source="s",
                    aggregations=[{"column": "amount", "function": "median", "window": "7d", "name": "m"}])
    assert e.value.obj == "feature_view v" and e.value.field == "aggregations[0:m].function"
    with pytest.raises(InvalidDefinition) as e:
        FeatureView(name="v", entities=["c"], source="s", aggregations=[{"column": "amount", "function": "sum",
                                                                          "window": 0}])
    assert e.value.field == "aggregations[0].window"
    with pytest.raises(InvalidDefinition, match="does not divide"):
        FeatureView(name="v", entities=["c"], source="s",
                    aggregations=[{"column": "a", "function": "sum", "window": "90m", "tile": "1h"}])
    with pytest.raises(InvalidDefinition, match="not an aggregation"):
        FeatureView(name="v", entities=["c"], source="s", features=[{"name": "x", "dtype": "int64"}],
                    aggregations=[{"column": "a", "function": "sum", "window": "1h"}])


def test_python_and_yaml_spellings_agree_and_grain_is_chosen() -> None:
    a = FeatureView(name="v", entities=["c"], source="s",
                    aggregations=[Aggregation(column="amount", function="sum", window="7d"),
                                  {"column": "amount", "function": "MAX", "window": "30d", "name": "big"}])
    b = FeatureView(name="v", entities=["c"], source="s",
                    aggregations=[{"column": "amount", "function": "sum", "window": "7d"},
                                  {"column": "amount", "function": "max", "window": 30 * 86400, "name": "big"}])
    assert a.to_dict() == b.to_dict()
    aggs = a.to_dict()["aggregations"]
    assert [x["name"] for x in aggs] == ["amount_sum_7d", "big"]
    assert {x["tile_us"] for x in aggs} == {3600 * S}  # 1d leaves 7 tiles in 7d (< 12): 1h


def _repo(root: Path, aggs: str, extra: str = "", feature_lines: str = "", ttl: str | None = None,
          keys: tuple[str, ...] = ("cid",)) -> Path:
    if root.exists():
        shutil.rmtree(root)
    (root / "features").mkdir(parents=True)
    (root / "data" / "ev").mkdir(parents=True)
    (root / "fstore.yaml").write_text("project: t\noffline_store: {buckets: 3}\n")
    ents = "\n".join(f"  - {{name: e_{k}, join_keys: [{k}]}}" for k in keys)
    (root / "features" / "defs.yaml").write_text(
        f"entities:\n{ents}\nsources:\n  - {{name: ev, path: data/ev, timestamp_field: ts, "
        f"created_timestamp_field: created}}\nfeature_views:\n  - name: agg\n"
        f"    entities: [{', '.join('e_' + k for k in keys)}]\n    source: ev\n"
        + (f"    ttl: {ttl}\n" if ttl else "") + f"    aggregations:\n{aggs}" + feature_lines + extra)
    return root


def test_plan_types_outputs_and_checks_columns(tmp_path: Path) -> None:
    root = _repo(tmp_path / "r", "      - {column: n, function: sum, window: 1h}\n"
                                 "      - {column: f32, function: min, window: 1h}\n"
                                 "      - {column: f32, function: sum, window: 1h}\n"
                                 "      - {column: s, function: count, window: 1h}\n"
                                 "      - {column: n, function: mean, window: 1h, name: avg}\n",
                 feature_lines="    features:\n      - {name: avg, default: 1, description: mean of n}\n")
    data = pa.table({"cid": [1], "ts": [T0], "created": [T0], "n": pa.array([1], pa.int16()),
                     "f32": pa.array([1.5], pa.float32()), "s": ["x"]})
    pq.write_table(data, root / "data/ev/a.parquet")
    view = FeatureStore(root).plan().new_state["feature_views"]["agg_v1"]
    assert [(f["name"], f["dtype"], f["default"]) for f in view["features"]] == [
        ("n_sum_1h", "int64", None), ("f32_min_1h", "float32", None), ("f32_sum_1h", "float64", None),
        ("s_count_1h", "int64", 0), ("avg", "float64", 1.0)]  # a count's default is 0 (COUNT_DEFAULT)
    assert view["features"][4]["description"] == "mean of n"
    # a count declares no other default: a training set gives 0 where its window has no event
    _repo(root, "      - {column: s, function: count, window: 1h, name: c}\n      - {column: s, function: count, "
                "window: 2h, name: c0}\n", feature_lines="    features:\n      - {name: c, default: -1}\n"
                                                         "      - {name: c0, default: 0}\n")
    pq.write_table(data, root / "data/ev/a.parquet")
    with pytest.raises(DefinitionErrors) as e:
        FeatureStore(root).plan()
    assert [(err.obj, err.field) for err in e.value.errors] == [("feature_view agg", "aggregations[0:c].default")]
    assert "a count's default is 0" in str(e.value)
    _repo(root, "      - {column: nope, function: sum, window: 1h, name: x}\n"
                "      - {column: s, function: max, window: 1h, name: y}\n")
    pq.write_table(data, root / "data/ev/a.parquet")
    with pytest.raises(DefinitionErrors) as e:
        FeatureStore(root).plan()
    fields = sorted((err.obj, err.field) for err in e.value.errors)
    assert fields == [("feature_view agg", "aggregations[0:x].column"), ("feature_view agg", "aggregations[1:y].column")]
    assert "missing from source ev" in str(e.value) and "max needs a numeric, timestamp or bool column" in str(e.value)
    _repo(root, "      - {column: s, function: mean, window: 1h, name: z}\n")  # sum/mean: numbers only
    pq.write_table(data, root / "data/ev/a.parquet")
    with pytest.raises(DefinitionErrors, match=r"aggregations\[0:z\]\.column.*mean needs a numeric column"):
        FeatureStore(root).plan()


# ---- the kernel alone --------------------------------------------------------------------


def test_kernel_refuses_unsorted_events() -> None:
    keys = np.array([[1], [1]], dtype=np.int64)
    with pytest.raises(ValueError, match="not sorted"):
        build_tiles(keys, np.array([5, 1], dtype=np.int64), np.zeros(2, dtype=np.int64),
                    np.zeros(2, dtype=np.int64), np.ones(2, dtype=np.uint8), 10)


def test_kernel_edges_exclusive_start_inclusive_end() -> None:
    keys = np.array([[7]] * 4, dtype=np.int64)
    ts = np.array([0, 10, 15, 20], dtype=np.int64)
    cr = np.full(4, NO_TIME, dtype=np.int64)
    vals = np.array([1, 2, 4, 8], dtype=np.int64)
    valid = np.ones(4, dtype=np.uint8)
    first, start, *parts = build_tiles(keys, ts, cr, vals, valid, 5)
    q = np.array([[7], [7], [8]], dtype=np.int64)
    qts = np.array([20, 10, 20], dtype=np.int64)
    s, count, mn, mx, last = window_aggregate(keys, ts, cr, vals, valid, keys[first], start, *parts, q, qts,
                                              np.ones(3, dtype=np.uint8), 10, 5)
    assert s.tolist()[:2] == [12, 2] and count.tolist() == [2, 1, 0]  # (10, 20] and (0, 10]: 10 and 0 are out
    assert mn.tolist()[:2] == [4, 2] and mx.tolist()[:2] == [8, 2] and last.tolist()[:2] == [8, 2]
    assert newest_in_window(keys, ts, q, qts, np.ones(3, dtype=np.uint8), 10).tolist() == [20, 10, NO_TIME]


# ---- training sets against the oracle ----------------------------------------------------

FUNCS = ("sum", "count", "mean", "min", "max", "last")
WINDOWS = {"w2": 120 * S, "w6": 360 * S}
REGIONS = ("eu", "us")


def oracle(events: list[dict], row: dict, fn: str, window: int, ttl: int | None, default):
    """The rule of docs/transformations.md, with no cleverness."""
    if row["cid"] is None or row["region"] is None:
        inwin = []
    else:
        inwin = [e for e in events if e["cid"] == row["cid"] and e["region"] == row["region"]
                 and row["t"] - window < e["t"] <= row["t"]]
    if ttl is not None and inwin and max(e["t"] for e in inwin) < row["t"] - ttl:
        inwin = []
    vals = [e for e in inwin if e["v"] is not None]
    if fn == "count":
        return len(vals)
    if not vals:
        return default
    xs = [e["v"] for e in vals]
    if fn == "sum":
        return sum(xs)
    if fn == "mean":
        return sum(xs) / len(xs)
    if fn == "min":
        return min(xs)
    if fn == "max":
        return max(xs)
    return max(vals, key=lambda e: (e["t"], e["c"], e["v"]))["v"]


event_st = st.fixed_dictionaries({
    "cid": st.integers(0, 2), "region": st.sampled_from(REGIONS),
    "t": st.integers(0, 40).map(lambda m: m * 15 * S) | st.integers(0, 600 * S),
    "c": st.integers(0, 3).map(lambda x: x * S),
    "v": st.none() | st.integers(-50, 50)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event_st, min_size=0, max_size=40), split=st.integers(0, 40),
       rows=st.lists(st.tuples(st.integers(-1, 2), st.sampled_from((*REGIONS, None)), st.integers(0, 40),
                               st.integers(0, 2)), min_size=1, max_size=25),
       ttl=st.sampled_from([None, 60, 200]), ints=st.booleans())
def test_training_set_matches_oracle(tmp_path: Path, events, split, rows, ttl, ints) -> None:
    aggs = "".join(f"      - {{column: v, function: {fn}, window: {w // S}s, tile: 30s, name: {fn}_{wn}}}\n"
                   for fn in FUNCS for wn, w in WINDOWS.items())
    default = 7 if ints else 0.5
    feature_lines = f"    features:\n      - {{name: min_w2, default: {default}}}\n      - {{name: last_w6, default: {default}}}\n"
    root = _repo(tmp_path / "r", aggs, feature_lines=feature_lines, ttl=f"{ttl}s" if ttl else None,
                 keys=("cid", "region"))
    vtype = pa.int64() if ints else pa.float64()
    for e in events:
        if e["v"] is not None and not ints:
            e["v"] = e["v"] / 4
    fs = FeatureStore(root)
    for i, part in enumerate((events[:split], events[split:])):  # two ingests: two runs whose tiles merge
        pq.write_table(pa.table({
            "cid": pa.array([e["cid"] for e in part], pa.int64()), "region": pa.array([e["region"] for e in part], pa.string()),
            "ts": pa.array([T0 + dt.timedelta(microseconds=e["t"]) for e in part], pa.timestamp("us", tz="UTC")),
            "created": pa.array([T0 + dt.timedelta(microseconds=e["c"]) for e in part], pa.timestamp("us", tz="UTC")),
            "v": pa.array([e["v"] for e in part], vtype)}), root / f"data/ev/p{i}.parquet")
        if i == 0:
            fs.apply()
        fs.ingest()
    # entity rows: on the event times, at their window edges, and elsewhere
    times = sorted({e["t"] for e in events}) or [0]
    erows = []
    for cid, region, pick, shift in rows:
        base = times[pick % len(times)]
        t = base + (0, WINDOWS["w2"], WINDOWS["w6"])[shift] if pick % 3 else pick * 17 * S
        erows.append({"cid": None if cid < 0 else cid, "region": region, "t": t})
    ent = pa.table({"cid": pa.array([r["cid"] for r in erows], pa.int64()),
                    "region": pa.array([r["region"] for r in erows], pa.string()),
                    "event_timestamp": pa.array([T0 + dt.timedelta(microseconds=r["t"]) for r in erows],
                                                pa.timestamp("us", tz="UTC"))})
    names = [f"{fn}_{wn}" for fn in FUNCS for wn in WINDOWS]
    out = fs.get_historical_features(ent, [f"agg:{n}" for n in names])
    fs.close()
    assert out.num_rows == len(erows) and out.column_names[:3] == ["cid", "region", "event_timestamp"]
    for name in names:
        fn, wn = name.split("_")
        d = default if name in ("min_w2", "last_w6") else None
        got = out.column(name).to_pylist()
        want = [oracle(events, r, fn, WINDOWS[wn], ttl * S if ttl else None, d) for r in erows]
        for i, (g, w) in enumerate(zip(got, want)):
            ok = g == w if (g is None or w is None or fn == "count" or ints and fn != "mean") \
                else math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9)
            assert ok, (name, i, erows[i], g, w)
    if ints:
        assert out.schema.field("sum_w2").type == pa.int64() and out.schema.field("min_w6").type == pa.int64()
    assert out.schema.field("mean_w2").type == pa.float64() and out.schema.field("count_w2").type == pa.int64()


def test_second_ingest_adds_tiles_of_new_files_only(tmp_path: Path) -> None:
    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 1h, name: s}\n")
    mk = lambda ts_min, v: pa.table({"cid": [1], "ts": [T0 + dt.timedelta(minutes=ts_min)], "created": [T0],
                                     "v": [v]})
    pq.write_table(mk(0, 1), root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    tiles = root / "data/offline/agg_v1/tiles"
    first = sorted(p.relative_to(tiles) for p in tiles.rglob("*.parquet"))
    pq.write_table(mk(10, 2), root / "data/ev/b.parquet")
    fs.ingest()
    second = sorted(p.relative_to(tiles) for p in tiles.rglob("*.parquet"))
    assert set(first) < set(second) and len(second) == len(first) + 1
    ent = pa.table({"cid": [1, 1], "event_timestamp": [T0 + dt.timedelta(minutes=30), T0 + dt.timedelta(minutes=65)]})
    assert fs.get_historical_features(ent, ["agg:s"]).column("s").to_pylist() == [3, 2]
    pq.write_table(mk(10, 5), root / "data/ev/b.parquet")  # a changed file replaces its run and tiles
    fs.ingest()
    assert fs.get_historical_features(ent, ["agg:s"]).column("s").to_pylist() == [6, 5]
    live = sorted(p.relative_to(tiles) for p in tiles.rglob("*.parquet"))
    assert len(live) == len(first) + 1 and set(live) != set(second)
    fs.close()


def test_last_ties_nulls_and_ttl(tmp_path: Path) -> None:
    """last: newest event time, then newest created time, then the larger value; a null value
    is skipped by last/sum/min and not counted; a ttl expires a window whose newest event
    (null value or not) is older than t - ttl."""
    root = _repo(tmp_path / "r", "      - {column: v, function: last, window: 1h, name: last}\n"
                                 "      - {column: v, function: count, window: 1h, name: n}\n"
                                 "      - {column: v, function: sum, window: 1h, name: s}\n", ttl="10m")
    m = lambda x: T0 + dt.timedelta(minutes=x)
    pq.write_table(pa.table({"cid": [1, 1, 1, 2, 2, 3, 3],
                             "ts": [m(0), m(0), m(0), m(0), m(0), m(0), m(5)],
                             "created": [m(1), m(3), m(2), m(1), m(1), m(0), m(5)],
                             "v": pa.array([10, 20, 30, 5, 4, 9, None], pa.int64())}), root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    ent = pa.table({"cid": [1, 2, 3, 3, 1], "event_timestamp": [m(1), m(1), m(14), m(16), m(11)]})
    out = fs.get_historical_features(ent, ["agg:last", "agg:n", "agg:s"])
    assert out.column("last").to_pylist() == [20, 5, 9, None, None]
    assert out.column("n").to_pylist() == [3, 2, 1, 0, 0]  # cid 3 at 14m: newest event (null) at 5m is within 10m
    assert out.column("s").to_pylist() == [60, 9, 9, None, None]
    fs.close()


def test_online_materialize_and_push_match_training_sets(tmp_path: Path) -> None:
    """Materialization writes each entity's aggregates as of END, equal to a training row at
    END; a push of raw events recomputes the pushed entity as of now, equal to a training row
    at now (and the events are in the offline store for training)."""
    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 1d, name: s}\n"
                                 "      - {column: v, function: count, window: 1d, name: n}\n"
                                 "      - {column: v, function: max, window: 2h, name: mx}\n",
                 feature_lines="    features:\n      - {name: mx, default: -1}\n")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    h = lambda x: now - dt.timedelta(hours=x)
    pq.write_table(pa.table({"cid": [1, 1, 1, 2], "ts": [h(30), h(5), h(1), h(3)], "created": [h(30)] * 4,
                             "v": [100, 2, 3, 40]}), root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    end = h(0.5)
    fs.materialize(h(48), end)
    names = ["agg:s", "agg:n", "agg:mx"]
    online = fs.get_online_features(names, entity_rows=[{"cid": 1}, {"cid": 2}]).to_dict()
    offline = fs.get_historical_features(pa.table({"cid": [1, 2], "event_timestamp": [end, end]}), names)
    assert online["s"] == offline.column("s").to_pylist() == [5, 40]
    assert online["n"] == offline.column("n").to_pylist() == [2, 1]
    assert online["mx"] == offline.column("mx").to_pylist() == [3, -1]  # cid 2: nothing in 2h -> default
    assert fs.push("agg", {"cid": [2, 2], "ts": [h(0.25), h(0.2)], "created": [h(0.1)] * 2, "v": [7, None]}) == 1
    online = fs.get_online_features(names, entity_rows=[{"cid": 2}]).to_dict()
    at = dt.datetime.now(UTC)
    offline = fs.get_historical_features(pa.table({"cid": [2], "event_timestamp": [at]}), names)
    assert online["s"] == offline.column("s").to_pylist() == [47]
    assert online["n"] == offline.column("n").to_pylist() == [2]  # the null value is not counted
    assert online["mx"] == offline.column("mx").to_pylist() == [7]
    fs.close()


def test_server_push_of_raw_events_updates_the_served_aggregate(tmp_path: Path) -> None:
    """Through a real server process: PUSH raw events to an aggregation view, GET the
    aggregates, and they equal the training set at the same time."""
    from fstore.client import Client
    from server_util import HOST, Server

    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 1d, name: s}\n"
                                 "      - {column: v, function: last, window: 1d, name: last}\n")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    pq.write_table(pa.table({"cid": [5], "ts": [now - dt.timedelta(hours=2)], "created": [now], "v": [1.5]}),
                   root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize(now - dt.timedelta(days=2), now)
    fs.close()
    server = Server(root)
    try:
        with Client(HOST, server.port, timeout=10) as c:
            assert c.get_online_features(["agg:s"], entity_rows=[{"cid": 5}]).values("s") == [1.5]
            t = now - dt.timedelta(minutes=1)
            assert c.push("agg", {"cid": [5, 6], "ts": [t, t], "created": [t, t], "v": [2.0, 4.0]}) == 2
            got = c.get_online_features(["agg:s", "agg:last"], entity_rows=[{"cid": 5}, {"cid": 6}])
            assert got.values("s") == [3.5, 4.0] and got.values("last") == [2.0, 4.0]
    finally:
        server.stop()
    with FeatureStore(root) as fs:
        at = dt.datetime.now(UTC)
        out = fs.get_historical_features(pa.table({"cid": [5, 6], "event_timestamp": [at, at]}), ["agg:s", "agg:last"])
        assert out.column("s").to_pylist() == [3.5, 4.0] and out.column("last").to_pylist() == [2.0, 4.0]


def test_changing_a_window_in_place_needs_a_new_version(tmp_path: Path) -> None:
    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 1h, name: s}\n")
    pq.write_table(pa.table({"cid": [1], "ts": [T0], "created": [T0], "v": [1]}), root / "data/ev/a.parquet")
    with FeatureStore(root) as fs:
        fs.apply()
        assert fs.plan().changes == []  # the typed record is stable across plans
    defs = root / "features/defs.yaml"
    defs.write_text(defs.read_text().replace("window: 1h", "window: 2h"))
    with pytest.raises(DefinitionErrors, match="aggregations changed"):
        FeatureStore(root).plan()
    defs.write_text(defs.read_text().replace("    source: ev\n", "    source: ev\n    version: 2\n"))
    with FeatureStore(root) as fs:
        fs.apply()
        assert fs.get_feature_view("agg")["aggregations"][0]["window_us"] == 7200 * S


def test_python_definitions_from_the_top_level_package(tmp_path: Path) -> None:
    """features/defs.py defines an aggregation view with ``fstore.Aggregation``: it applies to
    the same registry record as the YAML spelling, and a training set reads it."""
    import fstore

    assert "Aggregation" in fstore.__all__ and fstore.Aggregation is Aggregation
    yaml_root = _repo(tmp_path / "y", "      - {column: v, function: sum, window: 1h, name: s}\n"
                                      "      - {column: v, function: max, window: 2h}\n")
    root = _repo(tmp_path / "p", "      - {column: v, function: sum, window: 1h}\n")
    (root / "features" / "defs.yaml").unlink()
    (root / "features" / "defs.py").write_text('''
from fstore import Aggregation, Entity, FeatureView, Source

e_cid = Entity(name="e_cid", join_keys=["cid"])
ev = Source(name="ev", path="data/ev", timestamp_field="ts", created_timestamp_field="created")
agg = FeatureView(name="agg", entities=[e_cid], source=ev,
                  aggregations=[Aggregation(column="v", function="sum", window="1h", name="s"),
                                Aggregation(column="v", function="max", window="2h")])
''')
    data = pa.table({"cid": [1, 1], "ts": [T0, T0 + dt.timedelta(minutes=90)], "created": [T0, T0], "v": [3, 4]})
    for r in (root, yaml_root):
        pq.write_table(data, r / "data/ev/a.parquet")
    with FeatureStore(root) as fs, FeatureStore(yaml_root) as fy:
        fs.apply()
        fy.apply()
        assert fs.get_feature_view("agg")["aggregations"] == fy.get_feature_view("agg")["aggregations"]
        fs.ingest()
        ent = pa.table({"cid": [1], "event_timestamp": [T0 + dt.timedelta(minutes=100)]})
        out = fs.get_historical_features(ent, ["agg:s", "agg:v_max_2h"])
        assert out.column("s").to_pylist() == [4] and out.column("v_max_2h").to_pylist() == [4]


class _Died(Exception):
    pass


class _Recorder:
    """A progress reporter that records each step and can kill the job after ``die_after`` steps."""

    def __init__(self, die_after: int | None = None) -> None:
        self.starts: list[tuple[str, int]] = []
        self.infos: list[str] = []
        self.die_after = die_after

    def start(self, description: str, total: int) -> None:
        self.starts.append((description, total))

    def advance(self, n: int = 1, *, info: str = "") -> None:
        self.infos.append(info)
        if self.die_after is not None and len(self.infos) >= self.die_after:
            raise _Died("the job dies here")

    def stop(self) -> None:
        pass


def test_materialize_shows_progress_per_bucket_honours_start_and_resumes(tmp_path: Path) -> None:
    """materialize START END of an aggregation view: one progress step per bucket; only the
    entities with an event in [START, END] are written, each aggregated over its whole window
    as of END (events before START count); a run killed after its first bucket resumes the
    same job, skipping the committed bucket, and ends in the state of an uninterrupted run
    (job cleared); the watermark follows the plain views' rule."""
    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 1d, name: s}\n")
    m = lambda x: T0 + dt.timedelta(minutes=x)
    cids = list(range(24))  # the even ones fall in every one of the 3 buckets
    # every entity has an old event (v=100 at 0m); the even ones also one at 120m (v=cid)
    pq.write_table(pa.table({"cid": cids + cids[::2], "ts": [m(0)] * 24 + [m(120)] * 12, "created": [m(0)] * 36,
                             "v": [100] * 24 + cids[::2]}), root / "data/ev/a.parquet")
    shutil.copytree(root, tmp_path / "copy")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    with pytest.raises(_Died):
        fs.materialize(m(60), m(180), progress=_Recorder(die_after=1), allow_future=True)
    job = fs.online.job("agg_v1")
    assert job is not None and len(job["done"]) == 1 and fs.online.watermark("agg_v1") is None
    rec = _Recorder()
    [r] = fs.materialize(m(60), m(180), progress=rec, allow_future=True)
    assert rec.starts == [("materialize agg_v1", 3)] and rec.infos.count("already done") == 1 and len(rec.infos) == 3
    # finished; a first window that starts after the oldest event claims nothing (as for a plain view)
    assert fs.online.job("agg_v1") is None and fs.online.watermark("agg_v1") is None
    got = fs.get_online_features(["agg:s"], entity_rows=[{"cid": c} for c in cids], now=m(180))
    assert got.values("s") == [100 + c if c % 2 == 0 else None for c in cids]  # odd: no event in [START, END]
    fs.close()
    other = FeatureStore(tmp_path / "copy")
    other.apply()
    other.ingest()
    [whole] = other.materialize(m(60), m(180), allow_future=True)
    in_done = bucket_ids(pa.table({"cid": cids[::2]}), ["cid"], 3) == job["done"][0]
    assert whole.rows_written == 12 and in_done.any() and r.rows_read == 12 - int(in_done.sum())  # the committed bucket was skipped
    assert other.get_online_features(["agg:s"], entity_rows=[{"cid": c} for c in cids], now=m(180)).values("s") \
        == got.values("s")
    [again] = other.materialize(m(-60), m(180), allow_future=True)  # START before every event: all entities
    assert again.rows_written == 12  # the odd ones; the even ones are no newer
    assert other.online.watermark("agg_v1") == int((m(180) - dt.datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * S)
    assert other.get_online_features(["agg:s"], entity_rows=[{"cid": 1}], now=m(180)).values("s") == [100]
    other.close()


def test_many_pushes_stay_exact_and_leave_few_files(tmp_path: Path) -> None:
    """70 pushes to an aggregation view: pushed runs are compacted level by level, so each
    bucket keeps a bounded number of event parts and tile files (not one per push); every
    served row equals the training row as of its computation time, and a training set over
    all the events equals the brute-force oracle. A late event (older than every window) and
    one dated after now are recomputed from the whole history: their rows are still exact."""
    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 1h, name: s}\n"
                                 "      - {column: v, function: count, window: 1d, name: n}\n"
                                 "      - {column: v, function: last, window: 1d, name: last}\n")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    rng = np.random.default_rng(7)
    minutes = [m for m in rng.integers(1, 3000, 260).tolist() if abs(m - 60) > 2 and abs(m - 1440) > 2][:200]
    hist = [{"cid": int(rng.integers(0, 6)), "t": now - dt.timedelta(minutes=m), "v": int(rng.integers(-9, 9))}
            for m in minutes]
    pq.write_table(pa.table({"cid": [e["cid"] for e in hist], "ts": [e["t"] for e in hist],
                             "created": [e["t"] for e in hist], "v": [e["v"] for e in hist]}),
                   root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    events = list(hist)
    late = {"cid": 9, "t": now - dt.timedelta(days=3), "v": 5}        # older than every window
    future = {"cid": 10, "t": now + dt.timedelta(days=1), "v": 6}     # counts from its time on
    pushes = [[{"cid": int(rng.integers(0, 8)), "t": now - dt.timedelta(seconds=int(rng.integers(0, 600))),
                "v": int(rng.integers(-9, 9))} for _ in range(int(rng.integers(1, 4)))] for _ in range(68)]
    pushes[10] = [late]
    pushes[40] = [future, {"cid": 1, "t": now - dt.timedelta(days=2), "v": 1}]
    names = ["agg:s", "agg:n", "agg:last"]
    for batch in pushes:
        fs.push("agg", {"cid": [e["cid"] for e in batch], "ts": [e["t"] for e in batch],
                        "created": [e["t"] for e in batch], "v": [e["v"] for e in batch]})
        events.extend(batch)
    vdir = root / "data/offline/agg_v1"
    for b in range(3):
        parts = list(vdir.glob(f"b{b:04d}/*.parquet"))
        tiles = list(vdir.glob(f"tiles/b{b:04d}/*.parquet"))
        # 1 ingest run + fewer than 8 (fstore.offline.compact.PUSH_FANOUT) runs on each of the
        # levels 0, 1 and 2 (70 pushes < 8^3); without compaction, one per push touching the bucket
        assert len(parts) == len(tiles) <= 1 + 3 * 7, (b, len(parts))
    assert len(list(vdir.glob("b*/*.parquet"))) < 40  # without compaction: one per push and bucket touched
    cids = sorted({e["cid"] for e in events})
    pushed = sorted({e["cid"] for batch in pushes for e in batch})
    online = fs.get_online_features(names, entity_rows=[{"cid": c} for c in pushed]).to_dict()
    oev = [{"cid": e["cid"], "region": "x", "t": int((e["t"] - T0).total_seconds() * S), "c": 0, "v": e["v"]}
           for e in events]
    # each row was computed as of its last push, seconds after `now`; no history event lies
    # within minutes of a window's edge, so the oracle at `now` is the oracle then
    row = lambda c: {"cid": c, "region": "x", "t": int((now - T0).total_seconds() * S)}
    for name, fn, w in (("s", "sum", 3600 * S), ("n", "count", 86400 * S), ("last", "last", 86400 * S)):
        # cid 10: no event at or before now, nothing written: NOT_FOUND, a count DEFAULTED 0 (as trained)
        want = [(0 if fn == "count" else None) if c == future["cid"] else oracle(oev, row(c), fn, w, None, None)
                for c in pushed]
        assert online[name] == want, name
    assert online["n"][pushed.index(late["cid"])] == 0
    ent = pa.table({"cid": cids, "event_timestamp": [now] * len(cids)})
    out = fs.get_historical_features(ent, names)
    assert out.column("s").to_pylist() == [oracle(oev, row(c), "sum", 3600 * S, None, None) for c in cids]
    assert out.column("n").to_pylist() == [oracle(oev, row(c), "count", 86400 * S, None, None) for c in cids]
    fs.close()


def test_push_files_load_skew_and_validate_know_aggregation_views(tmp_path: Path) -> None:
    """push_files takes raw events for an aggregation view (appended offline, aggregates
    written online, equal to the training set); load refuses naming the view; skew compares
    served aggregates with the windowed aggregates at the request time (no crash, no false
    mismatch: an entity with no event is count 0 offline and DEFAULTED 0 online); validate
    passes."""
    from fstore.errors import InvalidArgument
    from fstore.validate.run import validate_repository

    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 1d, name: s}\n"
                                 "      - {column: v, function: count, window: 1d, name: n}\n",
                 extra="feature_services:\n  - name: svc\n    features: [\"agg:s\", \"agg:n\"]\n"
                       "    logging: {sample_rate: 1.0}\n")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    h = lambda x: now - dt.timedelta(hours=x)
    pq.write_table(pa.table({"cid": [1, 1, 2], "ts": [h(5), h(2), h(3)], "created": [h(5)] * 3, "v": [1, 2, 4]}),
                   root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize(h(48), now)
    pq.write_table(pa.table({"cid": [2, 3], "ts": [h(1), h(1)], "created": [h(1)] * 2, "v": [10, 20]}),
                   tmp_path / "more.parquet")
    res = fs.push_files("agg", [tmp_path / "more.parquet"])
    assert res.rows_read == 2 and res.rows_written == 2 and res.offline
    at = dt.datetime.now(UTC)
    offline = fs.get_historical_features(pa.table({"cid": [1, 2, 3], "event_timestamp": [at] * 3}), ["agg:s", "agg:n"])
    assert offline.column("s").to_pylist() == [3, 14, 20]  # the pushed events are offline
    resp = fs.get_online_features(feature_service="svc", entity_rows=[{"cid": c} for c in (1, 2, 3, 4)])
    got = resp.to_dict()
    assert got["s"] == [3, 14, 20, None] and got["n"] == [2, 2, 1, 0]
    assert [s.name for s in resp.statuses("n")] == ["PRESENT", "PRESENT", "PRESENT", "DEFAULTED"]
    with pytest.raises(InvalidArgument, match="agg_v1 is an aggregation view"):
        fs.load("agg", [tmp_path / "more.parquet"])
    fs.close()
    with FeatureStore(root) as fs:
        [cmp] = fs.skew("svc")["comparisons"]
    assert cmp["rows"] == 4
    tallies = {f["feature"]: f for f in cmp["features"]}
    assert tallies["s"]["mismatches"] == 0
    assert tallies["n"]["mismatches"] == 0  # cid 4: no event: 0 served (DEFAULTED) and 0 trained
    assert validate_repository(root).ok


def test_min_max_last_of_timestamps_and_bools_and_strings_refused(tmp_path: Path) -> None:
    """min/max/last take timestamp and bool columns (typed as the column: a timestamp's max
    is a timestamp), equal to the oracle in training sets and online; a string column is
    refused at plan time naming the aggregation and the field (count takes it)."""
    aggs = ("      - {column: seen, function: min, window: 1h, name: seen_min}\n"
            "      - {column: seen, function: max, window: 1h, name: seen_max}\n"
            "      - {column: seen, function: last, window: 1h, name: seen_last}\n"
            "      - {column: flag, function: max, window: 1h, name: any_flag}\n"
            "      - {column: flag, function: min, window: 1h, name: all_flag}\n"
            "      - {column: flag, function: last, window: 1h, name: flag_last}\n"
            "      - {column: label, function: count, window: 1h, name: labels}\n")
    root = _repo(tmp_path / "r", aggs)
    m = lambda x: T0 + dt.timedelta(minutes=x)
    # cid 1: the newest event (30m) has the earliest `seen`; cid 2's newest flag is null
    pq.write_table(pa.table({"cid": [1, 1, 1, 2, 2], "ts": [m(10), m(20), m(30), m(10), m(40)],
                             "created": [m(0)] * 5, "seen": [m(-5), m(-9), m(-20), None, m(1)],
                             "flag": [False, True, False, True, None], "label": ["a", None, "c", "d", "e"]}),
                   root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    view = fs.get_feature_view("agg")
    assert {f["name"]: f["dtype"] for f in view["features"]} == {
        "seen_min": "timestamp", "seen_max": "timestamp", "seen_last": "timestamp", "any_flag": "bool",
        "all_flag": "bool", "flag_last": "bool", "labels": "int64"}
    fs.ingest()
    names = ["seen_min", "seen_max", "seen_last", "any_flag", "all_flag", "flag_last", "labels"]
    ent = pa.table({"cid": [1, 1, 2, 2], "event_timestamp": [m(35), m(75), m(45), m(15)]})
    out = fs.get_historical_features(ent, [f"agg:{n}" for n in names])
    assert out.column("seen_min").to_pylist() == [m(-20), m(-20), m(1), None]
    assert out.column("seen_max").to_pylist() == [m(-5), m(-9), m(1), None]  # 75m: the 20m and 30m events
    assert out.column("seen_last").to_pylist() == [m(-20), m(-20), m(1), None]
    assert out.column("any_flag").to_pylist() == [True, True, True, True]
    assert out.column("all_flag").to_pylist() == [False, False, True, True]
    assert out.column("flag_last").to_pylist() == [False, False, True, True]  # cid 2: the null at 40m is skipped
    assert out.column("labels").to_pylist() == [2, 1, 2, 1]
    assert out.schema.field("seen_max").type == pa.timestamp("us", tz="UTC")
    fs.materialize(m(0), m(45), allow_future=True)
    online = fs.get_online_features([f"agg:{n}" for n in names], entity_rows=[{"cid": 1}, {"cid": 2}],
                                    now=m(45)).to_dict()
    at45 = fs.get_historical_features(pa.table({"cid": [1, 2], "event_timestamp": [m(45)] * 2}),
                                      [f"agg:{n}" for n in names])
    for n in names:
        assert online[n] == at45.column(n).to_pylist(), n
    fs.close()
    _repo(root, "      - {column: label, function: last, window: 1h, name: lab}\n")
    pq.write_table(pa.table({"cid": [1], "ts": [T0], "created": [T0], "label": ["x"]}), root / "data/ev/a.parquet")
    with pytest.raises(DefinitionErrors) as e:
        FeatureStore(root).plan()
    assert [err.field for err in e.value.errors] == ["aggregations[0:lab].column"]
    assert "last needs a numeric, timestamp or bool column" in str(e.value)


def test_backfill_of_an_aggregation_view_with_a_transformation(tmp_path: Path) -> None:
    """An aggregation view may aggregate a transformation's output; its backfill recomputes
    the events in [START, END) (was a bare KeyError: the aggregates were taken for the stored
    columns) and the new version's tiles are built, so its windows are exact."""
    root = _repo(tmp_path / "r", "      - {column: v2, function: sum, window: 1h, name: s}\n",
                 extra="    transform: {sql: \"SELECT cid, ts, created, v * 2 AS v2 FROM source\"}\n")
    m = lambda x: T0 + dt.timedelta(minutes=x)
    pq.write_table(pa.table({"cid": [1, 1, 2], "ts": [m(30), m(40), m(50)], "created": [m(30)] * 3, "v": [1, 2, 3]}),
                   root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    ent = pa.table({"cid": [1, 2], "event_timestamp": [m(60)] * 2})
    assert fs.get_historical_features(ent, ["agg:s"]).column("s").to_pylist() == [6, 6]
    defs = root / "features/defs.yaml"
    defs.write_text(defs.read_text().replace("v * 2", "v * 3"))
    result = fs.backfill("agg", m(0), m(45))  # cid 1's events recomputed, cid 2's (at 50m) copied
    assert (result.view, result.rows_recomputed, result.rows_copied) == ("agg_v2", 2, 1)
    assert fs.get_historical_features(ent, ["agg_v2:s"]).column("s").to_pylist() == [9, 6]
    assert list((root / "data/offline/agg_v2/tiles").rglob("*.parquet"))  # tiles built, not tiled per read
    assert fs.get_historical_features(ent, ["agg_v1:s"]).column("s").to_pylist() == [6, 6]  # untouched
    fs.close()


def test_a_push_refused_for_a_long_key_stores_no_event(tmp_path: Path) -> None:
    """A pushed event whose key is too long for LMDB is refused (BadRequest naming the key
    column) before anything is stored: its event must not reach the offline store, where
    every later training set would count an event the push was refused for."""
    from fstore.errors import BadRequest

    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 1d, name: s}\n", keys=("region",))
    now = dt.datetime.now(UTC).replace(microsecond=0)
    pq.write_table(pa.table({"region": ["eu"], "ts": [now - dt.timedelta(hours=1)], "created": [now], "v": [1]}),
                   root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    long = "x" * 600
    with pytest.raises(BadRequest, match="511") as err:
        fs.push("agg", {"region": ["eu", long], "ts": [now, now], "created": [now, now], "v": [5, 7]})
    assert err.value.field == "rows.region"
    ent = pa.table({"region": ["eu", long], "event_timestamp": [now + dt.timedelta(seconds=1)] * 2})
    assert fs.get_historical_features(ent, ["agg:s"]).column("s").to_pylist() == [1, None]  # nothing stored
    fs.close()
