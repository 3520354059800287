"""The Spark engine (engine: spark, on local[2]) against the local engine: the same stores,
the same training sets and the same online rows, exactly, on the point-in-time test data
of tests/test_historical.py and tests/test_asof_created.py (their oracles too)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyarrow.parquet as pq

from fstore import FeatureStore
from fstore.errors import BadRows, TransformError
from fstore.offline import tiles as offline_tiles
from fstore.offline import transform as offline_transform
from fstore.offline import windows as offline_windows
from fstore.offline.layout import PUSH_PREFIX
from fstore.repo.transform_run import run_transform
from spark_util import needs_spark, spark_twin, stored, sync_sources
from test_aggregations import _repo as agg_repo
from test_asof_created import _created_repo, _source
from test_asof_created import oracle as created_oracle
from test_asof_created import scenario as created_scenario
from test_historical import T0, make_repo, oracle, scenario, ts, write_source
from test_transforms import FNS as TX_FNS, T0 as TX_T0, _events as tx_events, _views as tx_views, _write_defs as write_defs

pytestmark = [pytest.mark.spark, needs_spark]
SLOW = settings(max_examples=6, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def twins(root: Path) -> tuple[FeatureStore, FeatureStore]:
    """(local, spark) stores of one repository, applied."""
    pair = FeatureStore(root), FeatureStore(spark_twin(root))
    for fs in pair:
        fs.apply()
    return pair


def ingest_both(local: FeatureStore, spark: FeatureStore) -> None:
    sync_sources(local.config.root, spark.config.root)
    assert [r.__dict__ for r in local.ingest()] == [r.__dict__ for r in spark.ingest()]


def same_training_set(local: FeatureStore, spark: FeatureStore, ent: pa.Table, *args, **kw) -> pa.Table:
    want = local.get_historical_features(ent, *args, **kw)
    got = spark.get_historical_features(ent, *args, **kw)
    assert got.schema == want.schema and got.equals(want), (got.to_pylist(), want.to_pylist())
    return got


def test_engine_is_spark(tmp_path):
    root = make_repo(tmp_path / "r", {"v": {"keys": [("k", "int")], "features": [("x", "int64", None)]}})
    write_source(root, "v", pa.table({"k": [1], "ts": ts(0), "created": ts(0), "x": [1]}))
    local, spark = twins(root)
    assert type(spark.engine).__name__ == "SparkEngine" and type(local.engine).__name__ == "LocalEngine"


@SLOW
@given(scenario(), st.booleans())
def test_matches_local_engine_and_oracle(tmp_path_factory, case, full_ties):
    """The PIT scenarios of test_historical (two ingest runs, 1 or 3 buckets, composite
    and null keys, ttl edges, created ties); with ``full_ties`` rows also repeat a whole
    (key, event, created) with another value, which the engines break the same way."""
    composite, ttl, rows, ents, split, buckets = case
    if full_ties and rows:
        rows = rows + [dict(r, v=(r["v"] or 0) + 1) for r in rows[::3]]
    root = tmp_path_factory.mktemp("repo") / "r"
    keys = [("k1", "int")] + ([("k2", "string")] if composite else [])
    make_repo(root, {"v": {"keys": keys, "ttl": f"{ttl / 1e6:.6f}" if ttl else None,
                           "features": [("v", "int64", 42)]}}, buckets=buckets)

    def table(part):
        cols = {"k1": pa.array([r["k1"] for r in part], pa.int64())}
        if composite:
            cols["k2"] = pa.array([r["k2"] for r in part], pa.string())
        cols |= {"ts": ts(*[r["ts"] for r in part]), "created": ts(*[r["created"] for r in part]),
                 "v": pa.array([r["v"] for r in part], pa.int64())}
        return pa.table(cols)

    write_source(root, "v", table(rows[:split]), 0)
    local, spark = twins(root)
    ingest_both(local, spark)
    if split < len(rows):
        write_source(root, "v", table(rows[split:]), 1)
        ingest_both(local, spark)
    assert stored(spark, "v_v1") == stored(local, "v_v1")  # the same layout, byte for byte in content
    ent = {"k1": pa.array([e["k1"] for e in ents], pa.int64()), "event_timestamp": ts(*[e["ts"] for e in ents]),
           "label": pa.array(range(len(ents)))}
    if composite:
        ent["k2"] = pa.array([e["k2"] for e in ents], pa.string())
    got = same_training_set(local, spark, pa.table(ent), ["v:v"])
    if not full_ties:
        assert got.column("v").to_pylist() == oracle(rows, ents, [k for k, _ in keys], "v", ttl, 42)


@SLOW
@given(created_scenario(), st.data())
def test_as_of_created_matches_local_engine_and_oracle(tmp_path_factory, case, data):
    ttl, rows, ents = case
    root = _created_repo(tmp_path_factory.mktemp("repo") / "r", ttl)
    split = data.draw(st.integers(0, len(rows)))
    write_source(root, "v", _source(rows[:split]), 0)
    local, spark = twins(root)
    ingest_both(local, spark)
    if split < len(rows):
        write_source(root, "v", _source(rows[split:]), 1)
        ingest_both(local, spark)
    ent = pa.table({"k": pa.array([e["k"] for e in ents], pa.int64()), "event_timestamp": ts(*[e["ts"] for e in ents])})
    got = same_training_set(local, spark, ent, ["v:v"])
    assert got.column("v").to_pylist() == created_oracle(rows, ents, ttl, 42)


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[FeatureStore, FeatureStore]:
    """test_historical's explicit store: ttl 10s, defaults, stored nulls, created ties, a
    composite string key without created times, and every dtype."""
    root = make_repo(tmp_path / "repo", {
        "stats": {"keys": [("customer_id", "int")], "ttl": "10s",
                  "features": [("amount", "float64", 0.0), ("n", "int64", None), ("seg", "string", "none"),
                               ("f32", "float32", 1.5), ("i32", "int32", 7), ("ok", "bool", True),
                               ("raw", "bytes", "zz"), ("when", "timestamp", "2024-01-01T00:00:00+00:00")]},
        "pair": {"keys": [("customer_id", "int"), ("driver_id", "string")], "ttl": None, "created": False,
                 "features": [("trips", "int64", 0)]},
    }, services="feature_services:\n  - name: svc\n    features: [stats:amount, pair]\n")
    s = 1_000_000
    write_source(root, "stats", pa.table({
        "customer_id": [1, 1, 1, 1, 2, 3], "ts": ts(0, 5 * s, 5 * s, 20 * s, 0, 0), "created": ts(0, 1, 2, 0, None, 0),
        "amount": [1.0, 2.0, 3.0, 4.0, None, 6.0], "n": [1, 2, 3, 4, 5, None], "seg": ["a", "b", "c", "d", "e", None],
        "f32": pa.array([0.5, None, 2.5, 3.5, 4.5, 5.5], pa.float32()),
        "i32": pa.array([1, 2, None, 4, 5, 6], pa.int32()), "ok": [True, False, None, True, False, True],
        "raw": [b"a", None, b"c", b"d", b"e", b"f"], "when": ts(1, 2, None, 4, 5, 6)}))
    write_source(root, "pair", pa.table({"customer_id": [1, 1, None], "driver_id": ["x", "y", "z"],
                                         "ts": ts(0, 0, 0), "trips": [7, 8, 9]}))
    local, spark = twins(root)
    ingest_both(local, spark)
    return local, spark


def test_explicit_cases_equal_the_local_engine(pair):
    local, spark = pair
    every = ["stats:amount", "stats:n", "stats:seg", "stats:f32", "stats:i32", "stats:ok", "stats:raw", "stats:when"]
    ents = pa.table({"customer_id": pa.array([1, 1, 1, 1, 1, 1, 2, 3, 99, None], pa.int64()),
                     "event_timestamp": ts(-1, 0, 5_000_000, 15_000_000, 15_000_001, 20_000_000, 0, 0, 0, 0)})
    got = same_training_set(local, spark, ents, every)
    assert got.column("amount").to_pylist() == [0.0, 1.0, 3.0, 3.0, 0.0, 4.0, None, 6.0, 0.0, 0.0]
    ent = pa.table({"customer_id": [1, 1, 2, 1], "driver_id": ["y", "x", "x", None],
                    "event_timestamp": ts(1, 1, 1, 1), "label": [True, False, True, False]})
    got = same_training_set(local, spark, ent, feature_service="svc")
    assert got.column("trips").to_pylist() == [8, 7, 0, 0]
    same_training_set(local, spark, ent, ["stats:amount", "pair:trips"], full_feature_names=True)


def test_each_engine_reads_the_others_store(pair):
    """Swap the offline stores: each engine joins the other's parts to the same table."""
    local, spark = pair
    ents = pa.table({"customer_id": pa.array([1, 2, 3, 1], pa.int64()), "event_timestamp": ts(0, 0, 0, 9_000_000)})
    want = local.get_historical_features(ents, ["stats:amount", "stats:seg"])
    local.engine.store.root, spark.engine.store.root = spark.engine.store.root, local.engine.store.root
    assert spark.get_historical_features(ents, ["stats:amount", "stats:seg"]).equals(want)
    assert local.get_historical_features(ents, ["stats:amount", "stats:seg"]).equals(want)


def online_rows(fs: FeatureStore, view: str) -> dict[bytes, bytes]:
    """Every stored key and encoded row of a view version in the online store."""
    with fs.online.read() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor(fs.online.db(view)).iternext()}


def test_materialize_writes_the_same_online_rows(pair):
    """The online stores the two engines fill are equal byte for byte, after a window and
    after an incremental run that reads only the new ingest run."""
    local, spark = pair
    at = "2024-03-01T00:00:30+00:00"
    for fs in pair:
        [r] = [r for r in fs.materialize("2024-02-01T00:00:00+00:00", at, views=["stats"])]
        assert r.rows_written == 3
    assert online_rows(spark, "stats_v1") == online_rows(local, "stats_v1") and len(online_rows(local, "stats_v1")) == 3
    write_source(local.config.root, "stats", pa.table({
        "customer_id": [1, 5], "ts": ts(25_000_000, 1), "created": ts(0, 0), "amount": [9.0, 5.0], "n": [9, 5],
        "seg": ["z", "y"], "f32": pa.array([1.0, 2.0], pa.float32()), "i32": pa.array([1, 2], pa.int32()),
        "ok": [True, True], "raw": [b"q", b"r"], "when": ts(0, 0)}), part=1)
    ingest_both(local, spark)
    results = [fs.materialize_incremental(at) for fs in pair]
    assert [r.rows_written for r in results[0]] == [r.rows_written for r in results[1]]
    for view in ("stats_v1", "pair_v1"):
        assert online_rows(spark, view) == online_rows(local, view)
    ents = [{"customer_id": k} for k in (1, 2, 3, 4, 5)]
    now = T0 + dt.timedelta(seconds=26)  # ttl 10s: only customer 1's 25 s row is fresh
    assert spark.get_online_features(["stats:amount", "stats:seg"], entity_rows=ents, now=now).to_dict() == \
        {"customer_id": [1, 2, 3, 4, 5], "amount": [9.0, 0.0, 0.0, 0.0, 0.0], "seg": ["z", "none", "none", "none", "none"]}


def test_changed_file_replaces_its_rows_like_the_local_engine(pair):
    local, spark = pair
    write_source(local.config.root, "pair", pa.table({"customer_id": [1, 2], "driver_id": ["x", "x"],
                                                      "ts": ts(0, 0), "trips": [70, 20]}))
    write_source(local.config.root, "pair", pa.table({"customer_id": [3], "driver_id": ["w"], "ts": ts(0),
                                                      "trips": [30]}), part=1)
    ingest_both(local, spark)
    assert stored(spark, "pair_v1") == stored(local, "pair_v1")
    ent = pa.table({"customer_id": [1, 1, 2, 3], "driver_id": ["x", "y", "x", "w"], "event_timestamp": ts(1, 1, 1, 1)})
    assert same_training_set(local, spark, ent, ["pair:trips"]).column("trips").to_pylist() == [70, 0, 20, 30]


def test_bad_rows_are_named_as_the_local_engine_names_them(tmp_path):
    root = make_repo(tmp_path / "r", {"v": {"keys": [("k", "int")], "features": [("x", "int32", None)]}})
    write_source(root, "v", pa.table({"k": [1, 2], "ts": ts(0, 0), "created": ts(0, 0), "x": [1, 2]}), 0)
    write_source(root, "v", pa.table({"k": [1, 2, None], "ts": ts(0, None, 0), "created": ts(0, 0, 0),
                                      "x": [1, 2**40, 3]}), 1)
    local, spark = twins(root)
    sync_sources(root, spark.config.root)
    with pytest.raises(BadRows) as want:
        local.ingest()
    with pytest.raises(BadRows) as got:
        spark.ingest()
    assert str(got.value) == str(want.value) and "row 2" in str(got.value)
    assert spark.engine.store.manifest(spark.registry.load()["feature_views"]["v_v1"]) is None  # nothing written
    assert not list(spark.engine.store.view_dir(spark.registry.load()["feature_views"]["v_v1"]).glob("b*/*.parquet"))


# ---- transformations (docs/transformations.md, "Engines"): made in Spark, stored as the local engine stores them

@pytest.fixture()
def tx_pair(tmp_path: Path, monkeypatch) -> tuple[FeatureStore, FeatureStore]:
    """test_transforms' repository (row-wise and full SQL, row-wise and full Python views)
    applied twice, local and Spark. In this process a transformation may run only where the
    Spark engine says it does: a full Python one on the driver, any other in Spark (whose
    Python workers are other processes), so a silent fall-back to the driver fails."""
    root = tmp_path / "repo"
    (root / "features").mkdir(parents=True)
    (root / "data" / "events").mkdir(parents=True)
    (root / "fstore.yaml").write_text("project: tx\n")
    (root / "features" / "fns.py").write_text(TX_FNS)
    pq.write_table(tx_events(0, [1, 2, 3, 1], [1.0, 2.0, -3.0, 4.0]), root / "data" / "events" / "d0.parquet")
    write_defs(root, tx_views())
    local, spark = twins(root)
    real = offline_transform.run_transform

    def on_the_driver(transform, table, *args, **kw):
        if "python" in transform and not transform.get("row_wise") or not driver_only:
            return real(transform, table, *args, **kw)
        raise AssertionError(f"{transform} ran on the driver under the Spark engine")

    driver_only = False
    monkeypatch.setattr(offline_transform, "run_transform", on_the_driver)

    def guarded(method):
        def run(*a, **kw):
            nonlocal driver_only
            driver_only = True
            try:
                return method(*a, **kw)
            finally:
                driver_only = False
        return run

    for name in ("ingest", "backfill"):
        monkeypatch.setattr(spark, name, guarded(getattr(spark, name)))
    return local, spark


TX_VIEWS = ("doubled_v1", "daily_v1", "tenx_v1", "top_v1")


def test_transformed_views_equal_the_local_engine(tx_pair):
    """Incremental (new file, changed file) and full ingests give the same results, the
    same stores byte for byte in content, and the same training sets."""
    local, spark = tx_pair
    root = local.config.root

    def write(name: str, table: pa.Table) -> None:  # nanosecond times (pandas' unit), read by Spark as us
        ns = table.set_column(1, "ts", table.column("ts").cast(pa.timestamp("ns", tz="UTC")))
        pq.write_table(ns, root / "data" / "events" / name)

    write("d0.parquet", tx_events(0, [1, 2, 3, 1], [1.0, 2.0, -3.0, 4.0]))
    ingest_both(local, spark)
    write("d1.parquet", tx_events(1, [1, 4, 2], [10.0, 20.0, 5.0]))
    nulls = tx_events(2, [5, 6, 7], [1.0, 2.0, 3.0]).set_column(0, "user_id", pa.array([5, None, 7], pa.int64()))
    write("d2.parquet", nulls)  # a null key: skipped and counted
    ingest_both(local, spark)
    write("d0.parquet", tx_events(0, [1, 2, 9], [7.0, -1.0, 2.0]))  # changed
    ingest_both(local, spark)
    for view in TX_VIEWS:
        assert stored(spark, view) == stored(local, view), view
    ent = pa.table({"user_id": pa.array([1, 2, 3, 4, 5, 9, 1], pa.int64()),
                    "event_timestamp": pa.array([TX_T0 + dt.timedelta(days=d) for d in (0, 1, 1, 2, 3, 3, 5)],
                                                pa.timestamp("us", tz="UTC"))})
    got = same_training_set(local, spark, ent, ["doubled:amount2", "doubled:cat_u", "daily:total", "daily:n",
                                                "tenx:amount10", "top:top"])
    assert got.column("amount2").to_pylist()[-1] == 20.0
    # exact ties (key, event, created) from a full SQL keep its ORDER BY on both engines: the last wins
    views = tx_views() + [{"name": "ordered", "entities": ["user"], "source": "events", "features": [
        {"name": "amount", "dtype": "float64"}], "transform": {"sql": "SELECT * FROM source ORDER BY amount"}}]
    write_defs(root, views)
    tie = tx_events(4, [8, 8, 8], [3.0, 1.0, 2.0])
    write("d3.parquet", tie.set_column(1, "ts", pa.array([TX_T0] * 3, pa.timestamp("us", tz="UTC"))))
    sync_sources(root, spark.config.root)
    spark.apply()
    local.apply()
    ingest_both(local, spark)
    assert stored(spark, "ordered_v1") == stored(local, "ordered_v1")
    ent = pa.table({"user_id": pa.array([8], pa.int64()),
                    "event_timestamp": pa.array([TX_T0], pa.timestamp("us", tz="UTC"))})
    assert same_training_set(local, spark, ent, ["ordered:amount"]).column("amount").to_pylist() == [3.0]


def test_sql_that_spark_cannot_run_names_the_view_and_the_sql(tx_pair, monkeypatch):
    """A DuckDB function Spark lacks fails at planning, a value Spark cannot cast fails in
    the job: each is a TransformError naming the view and showing the SQL, and nothing is
    written; the local engine runs the first and refuses the second too. Bad output rows
    are named as the local engine names them."""
    local, spark = tx_pair
    views = tx_views()
    views[0]["version"] = 2
    views[0]["transform"]["sql"] = "SELECT user_id, ts, amount AS amount2, strftime(ts, '%Y') AS cat_u FROM source"
    for fs in tx_pair:
        write_defs(fs.config.root, views)
        fs.apply()
    local.ingest(["doubled_v2"])
    with pytest.raises(TransformError) as err:
        spark.ingest(["doubled_v2"])
    assert "feature view doubled_v2" in str(err.value) and "strftime" in str(err.value) and \
        "Spark SQL" in str(err.value) and err.value.view == "doubled_v2"
    view = spark.registry.load()["feature_views"]["doubled_v2"]
    assert spark.engine.store.manifest(view) is None
    views[0]["version"] = 3
    views[0]["transform"]["sql"] = "SELECT user_id, ts, CAST(cat AS DOUBLE) AS amount2, cat AS cat_u FROM source"
    for fs in tx_pair:
        write_defs(fs.config.root, views)
        fs.apply()
    with pytest.raises(TransformError, match="doubled_v3"):
        local.ingest(["doubled_v3"])
    with pytest.raises(TransformError) as err:
        spark.ingest(["doubled_v3"])
    assert "feature view doubled_v3" in str(err.value) and "CAST(cat AS DOUBLE)" in str(err.value)
    assert spark.engine.store.manifest(spark.registry.load()["feature_views"]["doubled_v3"]) is None
    # output values that do not fit the declared type: Spark's tasks find them, the driver names them
    monkeypatch.setattr(offline_transform, "run_transform", run_transform)
    views[0] |= {"version": 4, "features": [{"name": "amount2", "dtype": "int32"},
                                            {"name": "cat_u", "dtype": "string"}]}
    views[0]["transform"]["sql"] = "SELECT user_id, ts, user_id * 3000000000 AS amount2, cat AS cat_u FROM source"
    for fs in tx_pair:
        write_defs(fs.config.root, views)
        fs.apply()
    with pytest.raises(BadRows) as want:
        local.ingest(["doubled_v4"])
    with pytest.raises(BadRows) as got:
        spark.ingest(["doubled_v4"])
    assert str(got.value) == str(want.value) and "output row 1" in str(got.value)
    assert spark.engine.store.manifest(spark.registry.load()["feature_views"]["doubled_v4"]) is None


def test_backfill_equals_the_local_engine(tx_pair):
    """Backfill of a row-wise SQL, a full SQL and a row-wise Python view: a file the old
    version holds unchanged (its window recomputed), a changed one and a new one (recomputed
    whole); the same results, stores and training sets as the local engine's."""
    local, spark = tx_pair
    root = local.config.root
    pq.write_table(tx_events(1, [1, 2, 4], [10.0, 20.0, 5.0]), root / "data" / "events" / "d1.parquet")
    ingest_both(local, spark)
    pq.write_table(tx_events(2, [1, 5], [3.0, 4.0]), root / "data" / "events" / "d2.parquet")
    pq.write_table(tx_events(0, [1, 2, 9], [7.0, -1.0, 2.0]), root / "data" / "events" / "d0.parquet")
    views = tx_views("SELECT user_id, ts, amount * 3 AS amount2, upper(cat) AS cat_u FROM source WHERE amount >= 0")
    start, end = TX_T0 + dt.timedelta(days=1, hours=1), TX_T0 + dt.timedelta(days=2)
    for i, view in enumerate(("doubled", "daily", "tenx")):  # one changed view at a time, as plan allows
        if view == "daily":
            views[1]["transform"]["sql"] = views[1]["transform"]["sql"].replace("sum(amount)", "sum(amount) * 100")
        if view == "tenx":
            (root / "features" / "fns.py").write_text(TX_FNS.replace("10.0)", "100.0)"))
        write_defs(root, views)
        sync_sources(root, spark.config.root)
        want, got = local.backfill(view, start, end), spark.backfill(view, start, end)
        assert got.__dict__ == want.__dict__ and want.rows_recomputed and want.rows_copied, view
        assert stored(spark, f"{view}_v2") == stored(local, f"{view}_v2"), view
        views[i]["version"] = 2
    ent = pa.table({"user_id": pa.array([1, 2, 4, 5, 9, 3], pa.int64()),
                    "event_timestamp": pa.array([TX_T0 + dt.timedelta(days=d) for d in (1, 2, 2, 3, 3, 3)],
                                                pa.timestamp("us", tz="UTC"))})
    same_training_set(local, spark, ent, ["doubled_v2:amount2", "daily_v2:total", "tenx_v2:amount10"])


def test_aggregations_are_made_by_spark_tasks_as_the_local_engine_makes_them(tmp_path, monkeypatch):
    """Two ingest runs of an aggregation view with a composite (int, string) key and a ttl:
    the tile files hold what the local engine's hold and the training sets are equal, both
    made by Spark tasks (the driver may write no tile and answer no bucket)."""
    aggs = ("      - {column: amount, function: sum, window: 1h}\n"
            "      - {column: amount, function: last, window: 1h}\n"
            "      - {column: n, function: max, window: 2h}\n      - {column: n, function: count, window: 2h}\n")
    root = agg_repo(tmp_path / "r", aggs, keys=("cid", "region"), ttl="30m")
    s = 1_000_000

    def events(start: int, n: int) -> pa.Table:
        return pa.table({"cid": pa.array([i % 3 for i in range(n)], pa.int64()),
                         "region": [["eu", "us"][i % 2] for i in range(n)],
                         "ts": ts(*[(start + 7 * i) * 60 * s for i in range(n)]), "created": ts(*[0] * n),
                         "amount": [0.1 * i if i % 5 else None for i in range(n)], "n": pa.array(range(n), pa.int64())})

    pq.write_table(events(0, 40), root / "data" / "ev" / "a.parquet")
    local, spark = twins(root)
    real, in_spark = offline_tiles.write_tile_file, [False]

    def on_the_driver(*a, **kw):
        assert not in_spark[0], "a tile file was written on the driver under the Spark engine"
        return real(*a, **kw)

    monkeypatch.setattr(offline_tiles, "write_tile_file", on_the_driver)
    real_bucket = offline_windows.bucket_aggregates

    def bucket_on_the_driver(*a, **kw):
        assert not in_spark[0], "a bucket's aggregates were computed on the driver under the Spark engine"
        return real_bucket(*a, **kw)

    monkeypatch.setattr(offline_windows, "bucket_aggregates", bucket_on_the_driver)
    for part in range(2):
        if part:
            pq.write_table(events(30, 25), root / "data" / "ev" / "b.parquet")
        sync_sources(root, spark.config.root)
        want = [r.__dict__ for r in local.ingest()]
        in_spark[0] = True
        assert [r.__dict__ for r in spark.ingest()] == want
        in_spark[0] = False
    tiles = {}
    for fs in (local, spark):
        tdir = fs.offline.view_dir(fs.registry.load()["feature_views"]["agg_v1"]) / "tiles"
        doc = json.loads((tdir / "_tiles.json").read_text())
        tiles[fs is spark] = doc, {str(p.relative_to(tdir)): pq.read_table(p).to_pylist()
                                   for p in sorted(tdir.glob("b*/*"))}
    assert tiles[True] == tiles[False] and len(tiles[True][1]) >= 4
    ent = pa.table({"cid": pa.array([0, 1, 2, 0, 1, None, 7], pa.int64()),
                    "region": ["eu", "us", "eu", "us", "eu", "eu", "us"],
                    "event_timestamp": ts(*[m * 60 * s for m in (30, 90, 200, 250, 400, 30, 30)])})
    features = ["agg:amount_sum_1h", "agg:amount_last_1h", "agg:n_max_2h", "agg:n_count_2h"]
    want = local.get_historical_features(ent, features)
    in_spark[0] = True
    got = spark.get_historical_features(ent, features)
    in_spark[0] = False
    assert got.equals(want), (got.to_pylist(), want.to_pylist())
    assert want.column("n_count_2h").to_pylist()[-2:] == [0, 0] and any(want.column("n_count_2h").to_pylist())


def same_store(a: FeatureStore, b: FeatureStore, view: str) -> bool:
    """``stored`` equal but for the pushed units' names (each push draws its own uuid)."""
    docs = [stored(fs, view) for fs in (a, b)]
    for doc in docs:
        units = doc["manifest"]["units"]
        doc["manifest"]["units"] = {u: e for u, e in units.items() if not u.startswith(PUSH_PREFIX)}
        doc["manifest"]["units"]["pushed"] = sorted((e["id"], e["rows"]) for u, e in units.items()
                                                    if u.startswith(PUSH_PREFIX))
    return docs[0] == docs[1]


def test_rows_pushed_offline_survive_a_full_recompute_and_its_backfill_as_on_the_local_engine(tx_pair):
    """Rows pushed with offline=True to a full-SQL view are in no source file: the full
    ingest after a source change and a backfill keep them, in the local engine's rows and
    order (a pushed row that ties a recomputed one on key and times wins the ingest, the
    recomputed one wins the backfill), with the same manifest."""
    local, spark = tx_pair
    root = local.config.root
    hour = dt.timedelta(hours=1)
    for fs in tx_pair:  # user 1's daily row is at T0 + 3h: the first pushed row ties it
        assert fs.push("daily", {"user_id": [1, 9], "ts": [TX_T0 + 3 * hour, TX_T0 + 72 * hour],
                                 "total": [99.0, 7.0], "n": [1, 1]}, offline=True) == 2
    ingest_both(local, spark)  # the first recompute: the push holds unit 0
    assert same_store(spark, local, "daily_v1")
    pq.write_table(tx_events(1, [4, 2], [10.0, 20.0]), root / "data" / "events" / "d1.parquet")
    ingest_both(local, spark)  # recomputed from the source files again
    assert same_store(spark, local, "daily_v1")
    ent = pa.table({"user_id": pa.array([1, 9, 4], pa.int64()),
                    "event_timestamp": pa.array([TX_T0 + 96 * hour] * 3, pa.timestamp("us", tz="UTC"))})
    assert same_training_set(local, spark, ent, ["daily:total"]).column("total").to_pylist() == [99.0, 7.0, 10.0]
    views = tx_views()
    views[1]["transform"]["sql"] = views[1]["transform"]["sql"].replace("sum(amount)", "sum(amount) * 100")
    write_defs(root, views)
    sync_sources(root, spark.config.root)
    start, end = TX_T0, TX_T0 + dt.timedelta(days=30)  # the pushed rows lie inside the window
    want, got = local.backfill("daily", start, end), spark.backfill("daily", start, end)
    assert got.__dict__ == want.__dict__
    assert same_store(spark, local, "daily_v2")
    assert same_training_set(local, spark, ent, ["daily_v2:total"]).column("total").to_pylist() == [500.0, 7.0, 1000.0]


def test_backfill_of_an_aggregation_view_with_a_transformation_as_on_the_local_engine(tmp_path):
    """An aggregation view over a SQL transformation backfills in Spark (its events, then
    the new version's tiles), to the local engine's events, tiles and training set."""
    root = agg_repo(tmp_path / "r", "      - {column: v2, function: sum, window: 1h, name: s}\n",
                    extra="    transform: {sql: \"SELECT cid, ts, created, v * 2 AS v2 FROM source\"}\n")
    m = lambda x: T0 + dt.timedelta(minutes=x)
    pq.write_table(pa.table({"cid": [1, 1, 2], "ts": [m(30), m(40), m(50)], "created": [m(30)] * 3, "v": [1, 2, 3]}),
                   root / "data/ev/a.parquet")
    local, spark = twins(root)
    ingest_both(local, spark)
    defs = root / "features/defs.yaml"
    defs.write_text(defs.read_text().replace("v * 2", "v * 3"))
    sync_sources(root, spark.config.root)
    want, got = local.backfill("agg", m(0), m(45)), spark.backfill("agg", m(0), m(45))
    assert got.__dict__ == want.__dict__ and (want.rows_recomputed, want.rows_copied) == (2, 1)
    assert stored(spark, "agg_v2") == stored(local, "agg_v2")
    tiles = [{str(p.relative_to(d)): pq.read_table(p).to_pylist() for p in sorted(d.rglob("*.parquet"))}
             for fs in (local, spark) for d in [fs.offline.view_dir(fs.registry.load()["feature_views"]["agg_v2"])
                                                / "tiles"]]
    assert tiles[0] == tiles[1] and tiles[0]
    ent = pa.table({"cid": [1, 2], "event_timestamp": [m(60)] * 2})
    assert same_training_set(local, spark, ent, ["agg_v2:s"]).column("s").to_pylist() == [9, 6]
