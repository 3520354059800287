"""Batch transformations (docs/transformations.md, "SQL and Python transformations"): SQL by
DuckDB and Python pyarrow functions at ingest, incremental when row-wise and full otherwise,
output typed as declared, and `fstore backfill` registering a new view version whose
predecessor keeps its lineage. Real Parquet sources, real offline store, real LMDB."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fstore import FeatureStore
from fstore.errors import InvalidArgument, InvalidDefinition, SchemaChangeRefused, TransformError, UnknownObject

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]

FNS = '''
import pyarrow as pa
import pyarrow.compute as pc
from fstore import transformation


@transformation(row_wise=True)
def tenfold(t: pa.Table) -> pa.Table:
    """Row-wise: one output row per source row."""
    return t.select(["user_id", "ts"]).append_column("amount10", pc.multiply(t["amount"], 10.0))

def per_user_max(t: pa.Table) -> pa.Table:
    """Not declared row-wise: the newest event time and the largest amount per user."""
    g = t.group_by("user_id").aggregate([("ts", "max"), ("amount", "max")])
    return g.rename_columns(["user_id", "ts", "top"])
'''


def _events(day: int, users: list[int], amounts: list[float]) -> pa.Table:
    return pa.table({"user_id": pa.array(users, pa.int64()),
                     "ts": pa.array([T0 + dt.timedelta(days=day, hours=i) for i in range(len(users))],
                                    pa.timestamp("us", tz="UTC")),
                     "amount": pa.array(amounts, pa.float64()),
                     "cat": pa.array(["a", "b", "c", "d"][:len(users)] * (len(users) // 4 or 1), pa.string())[:len(users)]})


def _views(sql_rowwise: str = "SELECT user_id, ts, amount * 2 AS amount2, upper(cat) AS cat_u FROM source "
                              "WHERE amount >= 0") -> list[dict]:
    return [
        {"name": "doubled", "entities": ["user"], "source": "events", "transform": {"sql": sql_rowwise},
         "features": [{"name": "amount2", "dtype": "float64"}, {"name": "cat_u", "dtype": "string"}]},
        {"name": "daily", "entities": ["user"], "source": "events",
         "transform": {"sql": "SELECT user_id, max(ts) AS ts, sum(amount) AS total, count(*) AS n "
                              "FROM source GROUP BY user_id"},
         "features": [{"name": "total", "dtype": "float64"}, {"name": "n", "dtype": "int64"}]},
        {"name": "tenx", "entities": ["user"], "source": "events", "transform": {"python": "tenfold"},
         "features": [{"name": "amount10", "dtype": "float64"}]},
        {"name": "top", "entities": ["user"], "source": "events", "transform": {"python": "per_user_max"},
         "features": [{"name": "top", "dtype": "float64"}]},
    ]


def _write_defs(repo: Path, views: list[dict]) -> None:
    doc = {"entities": [{"name": "user", "join_keys": ["user_id"]}],
           "sources": [{"name": "events", "path": "data/events", "timestamp_field": "ts"}],
           "feature_views": views,
           "feature_services": [{"name": "svc", "features": ["doubled:amount2", "daily:total", "tenx:amount10"]}]}
    (repo / "features" / "defs.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "features").mkdir(parents=True)
    (root / "data" / "events").mkdir(parents=True)
    (root / "fstore.yaml").write_text("project: tx\n")
    (root / "features" / "fns.py").write_text(FNS)
    pq.write_table(_events(0, [1, 2, 3, 1], [1.0, 2.0, -3.0, 4.0]), root / "data" / "events" / "d0.parquet")
    _write_defs(root, _views())
    return root


def _offline(fs: FeatureStore, name: str) -> pa.Table:
    view = fs.get_feature_view(name)
    m = fs.offline.manifest(view)
    tables = [pq.read_table(p) for run in fs.offline.log(view, m) for p in run.parts.values()]
    t = pa.concat_tables(tables)
    return t.sort_by([("user_id", "ascending"), ("__event_ts", "ascending")])


def test_sql_row_wise_ingests_only_new_files_and_group_by_recomputes(repo: Path) -> None:
    fs = FeatureStore(repo)
    plan = fs.plan()
    modes = dict(line.split(": ", 1) for line in plan.ingest)
    assert modes["doubled_v1"].startswith("incremental") and modes["tenx_v1"].startswith("incremental")
    assert modes["daily_v1"].startswith("full (SQL groups rows")
    assert "not declared row-wise" in modes["top_v1"]
    fs.apply()
    first = {r.view: r for r in fs.ingest()}
    assert first["doubled_v1"].mode == "incremental" and first["doubled_v1"].rows == 3  # amount < 0 filtered
    assert first["daily_v1"].mode == "full" and first["daily_v1"].rows == 3
    d = _offline(fs, "doubled")
    assert d.column("amount2").to_pylist() == [2.0, 8.0, 4.0] and d.column("cat_u").to_pylist() == ["A", "D", "B"]

    pq.write_table(_events(1, [1, 4], [10.0, 20.0]), repo / "data" / "events" / "d1.parquet")
    second = {r.view: r for r in fs.ingest()}
    inc = second["doubled_v1"]
    assert (inc.units_read, inc.units_skipped, inc.rows) == (1, 1, 2)  # only the new file was read
    assert (second["tenx_v1"].units_read, second["tenx_v1"].rows) == (1, 2)
    full = second["daily_v1"]
    assert full.mode == "full" and full.units_read == 2 and full.rows == 4  # whole history recomputed
    daily = _offline(fs, "daily")
    assert dict(zip(daily.column("user_id").to_pylist(), daily.column("total").to_pylist())) == \
        {1: 15.0, 2: 2.0, 3: -3.0, 4: 20.0}
    assert len(fs.offline.manifest(fs.get_feature_view("daily"))["runs"]) == 1  # replaced, not appended
    top = _offline(fs, "top")
    assert dict(zip(top.column("user_id").to_pylist(), top.column("top").to_pylist())) == \
        {1: 10.0, 2: 2.0, 3: -3.0, 4: 20.0}
    third = {r.view: r for r in fs.ingest()}
    assert all(r.units_read == 0 and r.rows == 0 for r in third.values())  # up to date, full ones too


def test_training_set_and_online_values_are_the_transformation_output(repo: Path) -> None:
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    ent = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()),
                    "event_timestamp": pa.array([T0 + dt.timedelta(days=2)] * 3, pa.timestamp("us", tz="UTC"))})
    ts = fs.get_historical_features(ent, feature_service="svc")
    assert ts.column("amount2").to_pylist() == [8.0, 4.0, None]     # user 3's only row was filtered out
    assert ts.column("total").to_pylist() == [5.0, 2.0, -3.0]
    assert ts.column("amount10").to_pylist() == [40.0, 20.0, -30.0]
    fs.materialize(T0 - dt.timedelta(days=1), T0 + dt.timedelta(days=2))
    online = fs.get_online_features(feature_service="svc", entity_rows=[{"user_id": k} for k in (1, 2, 3)])
    for name in ("amount2", "total", "amount10"):
        assert online.values(name) == ts.column(name).to_pylist()
    fs.close()


def test_python_transform_given_as_a_function_in_python_definitions(repo: Path) -> None:
    (repo / "features" / "defs.yaml").unlink()
    (repo / "features" / "defs.py").write_text(
        "from fstore import Entity, Feature, FeatureView, Source\n"
        "from fstore import transformation\n"
        "import pyarrow.compute as pc\n"
        "user = Entity(name='user', join_keys=['user_id'])\n"
        "events = Source(name='events', path='data/events', timestamp_field='ts')\n"
        "@transformation(row_wise=True)\n"
        "def halve(t):\n"
        "    return t.select(['user_id', 'ts']).append_column('half', pc.divide(t['amount'], 2.0))\n"
        "v = FeatureView(name='halves', entities=[user], source=events, transform=halve,\n"
        "                features=[Feature(name='half', dtype='float64')])\n")
    fs = FeatureStore(repo)
    _, version = fs.apply()
    record = fs.get_feature_view("halves")["transform"]
    assert record["python"]["function"] == "halve" and record["python"]["file"] == "features/defs.py"
    assert record["row_wise"] is True
    (r,) = fs.ingest()
    assert r.mode == "incremental" and _offline(fs, "halves").column("half").to_pylist() == [0.5, 2.0, 1.0, -1.5]
    # an edited body is a change of the applied version the plan shows, and refuses in place
    defs = repo / "features" / "defs.py"
    defs.write_text(defs.read_text().replace("2.0))", "4.0))"))
    with pytest.raises(SchemaChangeRefused, match="source of function halve changed.*fstore backfill halves"):
        fs.plan()
    # ingest runs only what was applied
    pq.write_table(_events(3, [9], [1.0]), repo / "data" / "events" / "d9.parquet")
    with pytest.raises(InvalidDefinition, match="features/defs.py.*function 'halve' in features/defs.py changed "
                                                "since it was applied"):
        fs.ingest()


@pytest.mark.parametrize("sql, match", [
    ("SELECT user_id, ts, cat AS amount2, cat AS cat_u FROM source",
     r"feature view doubled_v1: column 'amount2' of the transformation's output is string, which cannot be "
     r"stored as the declared float64"),
    ("SELECT user_id, ts, amount AS amount2 FROM source", r"doubled_v1: the transformation's output has no column "
                                                         r"'cat_u'"),
])
def test_output_type_errors_name_the_view_and_column(repo: Path, sql: str, match: str) -> None:
    fs = FeatureStore(repo)
    fs.apply()
    reg = json.loads(fs.config.registry.read_text())
    reg["feature_views"]["doubled_v1"]["transform"]["sql"] = sql  # as if applied by an older check
    fs.config.registry.write_text(json.dumps(reg))
    with pytest.raises(TransformError, match=match) as info:
        fs.ingest(["doubled"])
    assert info.value.view == "doubled_v1"


def test_plan_names_the_view_and_column_and_shows_duckdb_errors(repo: Path) -> None:
    views = _views("SELECT user_id, ts, cat AS amount2, cat AS cat_u FROM source")
    _write_defs(repo, views)
    with pytest.raises(Exception, match=r"feature_view doubled.features\[amount2\].dtype: feature 'amount2' is "
                                        r"declared float64 but column 'amount2' in the output of the transformation"):
        FeatureStore(repo).plan()
    _write_defs(repo, _views("SELECT user_id, ts, nosuch AS amount2, cat AS cat_u FROM source"))
    with pytest.raises(Exception, match=r"feature_view doubled.transform: .*the SQL transformation failed: "
                                        r".*nosuch"):
        FeatureStore(repo).plan()
    _write_defs(repo, _views("SELECT user_id, amount AS amount2, cat AS cat_u FROM source"))
    with pytest.raises(Exception, match=r"must keep the source's timestamp column 'ts'"):
        FeatureStore(repo).plan()


def test_backfill_registers_a_new_version_and_the_old_keeps_its_lineage(repo: Path, tmp_path: Path) -> None:
    pq.write_table(_events(1, [1, 2], [10.0, 20.0]), repo / "data" / "events" / "d1.parquet")
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    ent = pa.table({"user_id": pa.array([1, 2], pa.int64()),
                    "event_timestamp": pa.array([T0 + dt.timedelta(days=3)] * 2, pa.timestamp("us", tz="UTC"))})
    ds = tmp_path / "train.parquet"
    fs.build_dataset(ent, ds, feature_service="svc")
    fs.models.register("m", ds)
    before = fs.model_lineage("m")
    v1 = fs.get_feature_view("doubled_v1")
    old_rows = _offline(fs, "doubled_v1")
    # the transformation changes: amount * 3; recompute day 1 only
    _write_defs(repo, _views("SELECT user_id, ts, amount * 3 AS amount2, upper(cat) AS cat_u FROM source "
                             "WHERE amount >= 0"))
    with pytest.raises(SchemaChangeRefused, match="transformation of applied version 1 changed"):
        fs.plan()
    for args, err, match in ((("nosuch", T0, T0 + dt.timedelta(days=1)), UnknownObject, "unknown feature view"),
                             (("doubled", T0 + dt.timedelta(days=1), T0), InvalidArgument, "not before END"),
                             (("doubled", "yesterday-ish", T0), InvalidArgument, "start")):
        with pytest.raises(err, match=match):
            fs.backfill(*args)
    r = fs.backfill("doubled", T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=2))
    assert (r.view, r.from_view, r.mode, r.rows_recomputed, r.rows_copied) == \
        ("doubled_v2", "doubled_v1", "incremental", 2, 3)
    v2 = _offline(fs, "doubled_v2")
    assert v2.column("amount2").to_pylist() == [2.0, 8.0, 30.0, 4.0, 60.0]  # day 0 copied, day 1 recomputed
    assert _offline(fs, "doubled_v1").equals(old_rows)  # the old version is untouched
    assert fs.get_feature_view("doubled_v1") == v1
    after = fs.model_lineage("m")
    doubled = next(v for v in after["views"] if v["name"] == "doubled")
    assert doubled["version"] == 1 and doubled["offline_fingerprint_now"] == doubled["offline_fingerprint"]
    assert after["views"] == before["views"]
    # the next ingest of v2 reads nothing (its files are recorded), a new file only
    _write_defs(repo, [{**v, "version": 2} if v["name"] == "doubled" else v for v in
                       _views("SELECT user_id, ts, amount * 3 AS amount2, upper(cat) AS cat_u FROM source "
                              "WHERE amount >= 0")])
    assert not [c for c in fs.plan().changes if c.action != "keep"]  # definitions now agree with the registry
    assert next(x for x in fs.ingest(["doubled_v2"])).units_read == 0
    # unpinned training reads move to v2 (it has offline data)
    ts = fs.get_historical_features(ent, ["doubled:amount2"])
    assert ts.column("amount2").to_pylist() == [30.0, 60.0]
    # a view without a transformation has nothing to backfill
    doc = yaml.safe_load((repo / "features" / "defs.yaml").read_text())
    doc["feature_views"].append({"name": "plain", "entities": ["user"], "source": "events",
                                 "features": [{"name": "amount", "dtype": "float64"}]})
    (repo / "features" / "defs.yaml").write_text(yaml.safe_dump(doc))
    fs.apply()
    with pytest.raises(InvalidArgument, match="feature view plain has no transformation"):
        fs.backfill("plain", T0, T0 + dt.timedelta(days=1))


def test_backfill_of_a_full_transformation_and_the_cli(repo: Path) -> None:
    pq.write_table(_events(1, [1, 2], [10.0, 20.0]), repo / "data" / "events" / "d1.parquet")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fstore = [sys.executable, "-c", "from fstore.cli import main; main()"]
    run = lambda *a: subprocess.run([*fstore, "--repo", str(repo), *a], env=env, capture_output=True, text=True)
    assert run("apply").returncode == 0
    out = run("plan")
    assert "ingest daily_v1: full (SQL groups rows (GROUP BY)" in out.stdout
    res = run("ingest", "--json")
    assert res.returncode == 0, res.stderr
    modes = {r["view"]: r["mode"] for r in json.loads(res.stdout)}
    assert modes == {"daily_v1": "full", "doubled_v1": "incremental", "tenx_v1": "incremental", "top_v1": "full"}
    views = _views()
    views[1]["transform"]["sql"] = views[1]["transform"]["sql"].replace("sum(amount)", "sum(amount) * 100")
    _write_defs(repo, views)
    res = run("backfill", "daily", "2024-01-01T12:00:00Z", "2030-01-01", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["view"], doc["mode"], doc["rows_recomputed"], doc["rows_copied"]) == ("daily_v2", "full", 2, 1)
    fs = FeatureStore(repo)
    daily = _offline(fs, "daily_v2")
    # user 3's (day 0) total copied; users 1 and 2 (newest event on day 1) recomputed x100
    assert dict(zip(daily.column("user_id").to_pylist(), daily.column("total").to_pylist())) == \
        {1: 1500.0, 2: 2200.0, 3: -3.0}
    bad = run("backfill", "daily", "2024-01-02", "2024-01-01")
    assert bad.returncode == 1 and "not before END" in bad.stderr


@pytest.mark.parametrize("sql, row_wise, why", [
    ("SELECT user_id, ts, amount * 2 AS x FROM source WHERE amount > 0", True, "is row-wise"),
    ("SELECT user_id, ts, CASE WHEN cat = 'a' THEN 1 ELSE 0 END AS x FROM Source", True, "is row-wise"),
    ("SELECT user_id, max(ts) AS ts, sum(amount) AS x FROM source GROUP BY user_id", False, "groups rows"),
    ("SELECT user_id, ts, count(*) OVER (PARTITION BY user_id) AS x FROM source", False, "window function"),
    ("SELECT DISTINCT user_id, ts, amount AS x FROM source", False, "DISTINCT"),
    ("SELECT user_id, ts, amount AS x FROM source ORDER BY ts LIMIT 10", False, "ORDER BY"),
    ("SELECT s.user_id, s.ts, o.amount AS x FROM source s JOIN other o USING (user_id)", False, "joins"),
    ("SELECT user_id, ts, amount - (SELECT avg(amount) FROM source) AS x FROM source", False, "subquery"),
    ("WITH s AS (SELECT * FROM source) SELECT user_id, ts, amount AS x FROM s", False, "WITH"),
    ("SELECT user_id, ts, amount AS x FROM source UNION ALL SELECT user_id, ts, amount FROM source", False,
     "combines queries"),
    ("SELECT user_id, ts, list_sum([amount, 1.0]) AS x FROM source", True, "is row-wise"),
    ("SELECT user_id, ts, quantile_cont(amount, 0.5) AS x FROM source", False, "aggregate (quantile_cont)"),
])
def test_row_wise_is_read_from_duckdbs_parsed_statement(sql: str, row_wise: bool, why: str) -> None:
    from fstore.repo.transforms import sql_row_wise
    ok, reason = sql_row_wise(sql, obj="feature_view v")
    assert ok is row_wise and why in reason, reason


def test_sql_that_is_not_one_select_is_refused() -> None:
    from fstore.repo.transforms import sql_row_wise
    for sql in ("DELETE FROM source", "SELECT 1; SELECT 2", "SELEC nothing"):
        with pytest.raises(InvalidDefinition, match="feature_view v.transform.sql"):
            sql_row_wise(sql, obj="feature_view v")


def test_created_timestamp_is_kept_through_the_transformation(repo: Path) -> None:
    """as_of: created_timestamp works on a transformed view as on a plain one: the output keeps
    the source's created_timestamp_field, and a training set sees only rows created by then."""
    t = _events(0, [1, 1], [1.0, 2.0])
    t = t.append_column("created", pa.array([T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=5)],
                                            pa.timestamp("us", tz="UTC")))
    (repo / "data" / "events" / "d0.parquet").unlink()
    pq.write_table(t, repo / "data" / "events" / "d0.parquet")
    doc = yaml.safe_load((repo / "features" / "defs.yaml").read_text())
    doc["sources"][0]["created_timestamp_field"] = "created"
    doc["feature_views"] = [{"name": "late", "entities": ["user"], "source": "events", "as_of": "created_timestamp",
                             "transform": {"sql": "SELECT user_id, ts, amount * 2 AS x FROM source"},
                             "features": [{"name": "x", "dtype": "float64"}]}]
    doc["feature_services"] = []
    (repo / "features" / "defs.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(InvalidDefinition, match="must keep the source's timestamp column 'created'"):
        FeatureStore(repo).plan()
    doc["feature_views"][0]["transform"]["sql"] = "SELECT user_id, ts, created, amount * 2 AS x FROM source"
    (repo / "features" / "defs.yaml").write_text(yaml.safe_dump(doc))
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    ent = pa.table({"user_id": pa.array([1, 1], pa.int64()),
                    "event_timestamp": pa.array([T0 + dt.timedelta(days=2), T0 + dt.timedelta(days=6)],
                                                pa.timestamp("us", tz="UTC"))})
    # day 2: the second row (event 01:00) was not created until day 5, so the first one is read
    assert fs.get_historical_features(ent, ["late:x"]).column("x").to_pylist() == [2.0, 4.0]


def test_rows_pushed_offline_survive_a_full_recompute_and_its_backfill(repo: Path) -> None:
    """A row pushed with offline=True to a view whose transformation recomputes the whole
    history is not in any source file: the next full ingest (a source file changed) and a
    backfill must keep it, as an incremental ingest does, never drop it silently."""
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    assert fs.push("daily", {"user_id": [9], "ts": [T0 + dt.timedelta(days=3)], "total": [99.0], "n": [1]},
                   offline=True) == 1
    ent = pa.table({"user_id": pa.array([9, 1], pa.int64()),
                    "event_timestamp": pa.array([T0 + dt.timedelta(days=4)] * 2, pa.timestamp("us", tz="UTC"))})
    assert fs.get_historical_features(ent, ["daily:total"]).column("total").to_pylist() == [99.0, 5.0]
    pq.write_table(_events(1, [1, 4], [10.0, 20.0]), repo / "data" / "events" / "d1.parquet")
    assert {r.view: r.rows for r in fs.ingest()}["daily_v1"] == 4  # recomputed from the source files
    assert fs.get_historical_features(ent, ["daily:total"]).column("total").to_pylist() == [99.0, 15.0]
    assert fs.ingest()[0].units_read == 0  # the kept push does not make every ingest recompute
    views = _views()
    views[1]["transform"]["sql"] = views[1]["transform"]["sql"].replace("sum(amount)", "sum(amount) * 100")
    _write_defs(repo, views)
    fs.backfill("daily", T0, T0 + dt.timedelta(days=30))  # the pushed row lies inside the window
    assert fs.get_historical_features(ent, ["daily_v2:total"]).column("total").to_pylist() == [99.0, 1500.0]
    fs.close()


def test_an_output_with_a_column_twice_is_refused_naming_the_view_and_column(repo: Path) -> None:
    """Which of two same-named output columns is the feature is anyone's guess: refused, at plan
    and at ingest, naming the view and the column (was a bare KeyError)."""
    sql = "SELECT user_id, ts, amount * 2 AS amount2, upper(cat) AS cat_u, amount AS amount2 FROM source"
    _write_defs(repo, _views(sql))
    with pytest.raises(InvalidDefinition, match=r"feature_view doubled.transform: .*doubled_v1: the transformation's "
                                                r"output has column 'amount2' 2 times"):
        FeatureStore(repo).plan()
    _write_defs(repo, _views())
    fs = FeatureStore(repo)
    fs.apply()
    reg = json.loads(fs.config.registry.read_text())
    reg["feature_views"]["doubled_v1"]["transform"]["sql"] = sql  # as if applied by an older check
    fs.config.registry.write_text(json.dumps(reg))
    with pytest.raises(TransformError, match=r"doubled_v1: the transformation's output has column 'amount2' 2 times") \
            as info:
        fs.ingest(["doubled"])
    assert (info.value.view, info.value.column) == ("doubled_v1", "amount2")
    fs.close()
