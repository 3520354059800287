"""The model registry round trip: build a training set, register it, list, describe and
promote (one production version at a time), bump a view (plan names the impact, --strict
refuses it until the service pins the trained version), lineage down and up, and reads
that name a model in process, through a real server and on the command line."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fstore import FeatureStore
from fstore.client import AsyncClient, Client
from fstore.errors import BadRequest, MissingLineage, NoProductionVersion, UnknownObject
from fstore.monitoring.events import hook
from server_util import FSTORE, HOST, Server

UTC = dt.timezone.utc
PLUGINS = str(Path(__file__).resolve().parent / "plugins")
NOW = dt.datetime.now(UTC).replace(microsecond=0)
KEYS = [1, 2, 3]


def _defs(*, bump: bool = False, pin: bool = False) -> dict[str, Any]:
    v1 = {"name": "stats", "version": 1, "entities": ["thing"], "source": "src1", "ttl": "30d",
          "features": [{"name": "x", "dtype": "float64", "default": -1.0}]}
    views = [v1]
    if bump:
        views.append({**v1, "version": 2, "features": [*v1["features"],
                                                        {"name": "y", "dtype": "int64", "default": -2}]})
    return {"entities": [{"name": "thing", "join_keys": ["k"]}],
            "sources": [{"name": "src1", "path": "data/one.parquet", "timestamp_field": "ts"}],
            "feature_views": views,
            "feature_services": [{"name": "fraud_v1", "features": ["stats_v1:x" if pin else "stats:x"]}]}


def _set_defs(root: Path, **kw: bool) -> None:
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(_defs(**kw), sort_keys=False))


def _cli(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([FSTORE, "-r", str(root), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "features").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "fstore.yaml").write_text("project: models\n")
    pq.write_table(pa.table({"k": pa.array(KEYS, pa.int64()),
                             "ts": pa.array([NOW - dt.timedelta(hours=1)] * 3, pa.timestamp("us", tz="UTC")),
                             "x": pa.array([1.5 * k for k in KEYS], pa.float64()),
                             "y": pa.array([10 * k for k in KEYS], pa.int64())}), root / "data" / "one.parquet")
    pq.write_table(pa.table({"k": pa.array(KEYS, pa.int64()),
                             "event_timestamp": pa.array([NOW] * 3, pa.timestamp("us", tz="UTC")),
                             "label": [0, 1, 0]}), root / "entities.parquet")
    _set_defs(root)
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        fs.materialize_incremental(NOW)
    _cli(root, "build-dataset", "--entities", str(root / "entities.parquet"), "--service", "fraud_v1",
         "--out", str(root / "train.parquet"))
    return root


def _register_two(root: Path) -> None:
    _cli(root, "model", "register", "fraud_model", "--dataset", str(root / "train.parquet"),
         "--metric", "auc=0.91", "--param", "depth=3", "--artifact", "file:///m/1", "--description", "first")
    _cli(root, "model", "register", "fraud_model", "--dataset", str(root / "train.parquet"))


def test_register_list_describe_and_promote_one_production_at_a_time(repo: Path) -> None:
    _register_two(repo)
    listed = json.loads(_cli(repo, "model", "list", "--json").stdout)
    assert [m["name"] for m in listed] == ["fraud_model"]
    assert [v["version"] for v in listed[0]["versions"]] == [1, 2]
    one = json.loads(_cli(repo, "model", "describe", "fraud_model:1", "--json").stdout)
    assert one["model"] == one["name"] == "fraud_model"
    assert one["version"] == 1 and one["stage"] == "none" and one["service"] == "fraud_v1"
    assert one["dataset"] == str((repo / "train.parquet").resolve()) and len(one["dataset_sha256"]) == 64
    assert one["metrics"] == {"auc": 0.91} and one["params"] == {"depth": 3} and one["artifact"] == "file:///m/1"
    assert one["views"][0]["name"] == "stats" and one["views"][0]["version"] == 1
    for key in ("registered_at", "promoted_at", "description"):
        assert key in one
    assert json.loads(_cli(repo, "model", "describe", "fraud_model", "--json").stdout)["version"] == 2

    _cli(repo, "model", "promote", "fraud_model:1", "--stage", "production")
    _cli(repo, "model", "promote", "fraud_model:2", "--stage", "production")
    with FeatureStore(repo) as fs:
        stages = {v["version"]: v["stage"] for v in fs.models.list()[0]["versions"]}
        assert stages == {1: "archived", 2: "production"}
        assert fs.models.list()[0]["production"] == 2
        # each write is a registry version with its history copy
        assert fs.registry.require()["version"] == 5
        assert len(fs.registry.history()) == 5
    bad = _cli(repo, "model", "promote", "fraud_model:7", "--stage", "staging", check=False)
    assert bad.returncode == 1 and "no version 7" in bad.stderr


def test_a_file_without_lineage_is_refused_naming_it(repo: Path) -> None:
    other = repo / "other.parquet"
    pq.write_table(pa.table({"a": [1]}), other)
    proc = _cli(repo, "model", "register", "m", "--dataset", str(other), check=False)
    assert proc.returncode == 1 and "other.parquet" in proc.stderr and "lineage" in proc.stderr
    with FeatureStore(repo) as fs, pytest.raises(MissingLineage, match="other.parquet"):
        fs.models.register("m", other)
    # a training set changed after it was built is refused too
    with (repo / "train.parquet").open("ab") as f:
        f.write(b"x")
    with FeatureStore(repo) as fs, pytest.raises(MissingLineage, match="changed since"):
        fs.models.register("m", repo / "train.parquet")


def test_bump_plan_strict_pin_lineage_and_serving_by_model(repo: Path) -> None:
    _register_two(repo)
    _cli(repo, "model", "promote", "fraud_model:2", "--stage", "production")

    _set_defs(repo, bump=True)
    plan = _cli(repo, "plan")
    assert "stats v1 -> v2: read by fraud_model:2 (production) through fraud_v1" in plan.stdout
    strict = _cli(repo, "plan", "--strict", check=False)
    assert strict.returncode == 1 and "production model" in strict.stderr

    _set_defs(repo, bump=True, pin=True)  # the service pins the version the model was trained on
    plan = _cli(repo, "plan", "--strict")
    assert "read by fraud_model:2 (production)" in plan.stdout
    _cli(repo, "apply")
    with FeatureStore(repo) as fs:  # apply carries the models over
        assert [v["version"] for v in fs.models.list()[0]["versions"]] == [1, 2]

    down = json.loads(_cli(repo, "model", "lineage", "fraud_model:2", "--json").stdout)
    assert (down["model"], down["version"], down["stage"], down["service"]) == ("fraud_model", 2, "production",
                                                                                "fraud_v1")
    assert down["dataset"].endswith("train.parquet") and down["training_set"]["rows"] == 3
    assert down["training_set"]["entities_sha256"]
    [view] = down["views"]
    assert (view["name"], view["version"]) == ("stats", 1)
    [src] = view["sources"]
    assert src["name"] == "src1" and src["path"] == "data/one.parquet"
    assert src["files"] and src["files"][0]["fingerprint"] and src["ingest_runs"][0]["rows"] == 3
    assert "digraph" in _cli(repo, "model", "lineage", "fraud_model:2", "--dot").stdout
    assert "training set" in _cli(repo, "model", "lineage", "fraud_model").stdout

    up = json.loads(_cli(repo, "lineage", "stats", "--json").stdout)
    assert up["view"] == "stats" and up["services"] == ["fraud_v1"]
    assert up["datasets"] == [down["dataset"]]
    assert [(m["name"], m["version"], m["stage"]) for m in up["models"]] == [("fraud_model", 1, "none"),
                                                                              ("fraud_model", 2, "production")]
    assert json.loads(_cli(repo, "lineage", "stats_v2", "--json").stdout)["models"] == []
    by_source = json.loads(_cli(repo, "lineage", "src1", "--json").stdout)
    assert by_source["source"] == "src1" and len(by_source["models"]) == 2
    assert "fraud_model:2 (production)" in _cli(repo, "lineage", "stats", "--dot").stdout
    assert _cli(repo, "lineage", "nope", check=False).returncode == 1

    rows = [{"k": k} for k in KEYS]
    seen: list[Any] = []
    listener = hook.subscribe(seen.append)
    try:
        with FeatureStore(repo) as fs:
            want = fs.get_online_features(feature_service="fraud_v1", entity_rows=rows).values("x")
            assert want == [1.5, 3.0, 4.5]
            assert fs.get_online_features(model="fraud_model", entity_rows=rows).values("x") == want
            assert fs.get_online_features(model="fraud_model:1", entity_rows=rows).values("x") == want
            with pytest.raises(UnknownObject, match="known: fraud_model"):
                fs.get_online_features(model="nope", entity_rows=rows)
            fs.models.promote("fraud_model", 2, "archived")
            fs.registry.checked_at = float("-inf")
            with pytest.raises(NoProductionVersion):
                fs.get_online_features(model="fraud_model", entity_rows=rows)
            fs.models.promote("fraud_model", 2, "production")
    finally:
        hook.unsubscribe(listener)
    assert [e.model for e in seen[:3]] == [None, "fraud_model", "fraud_model:1"]
    assert seen[1].service == "fraud_v1"

    (repo / "fstore.yaml").write_text("project: models\nserver: {listeners: ['record_listener:record']}\n")
    events_out = repo.parent / "events.jsonl"
    server = Server(repo, env={"FSTORE_TEST_EVENTS": str(events_out),
                               "PYTHONPATH": PLUGINS + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        with Client(HOST, server.port) as client:
            assert client.get_online_features(model="fraud_model", entity_rows=rows).values("x") == want
            with pytest.raises(UnknownObject, match="nope"):
                client.get_online_features(model="nope", entity_rows=rows)
            with pytest.raises(BadRequest, match="exactly one"):
                client.get_online_features(model="fraud_model", feature_service="fraud_v1", entity_rows=rows)
            [resp] = client.pipeline([{"model": "fraud_model:1", "entity_rows": rows}])
            assert resp.values("x") == want

        async def read_async() -> list[Any]:
            async with AsyncClient(HOST, server.port, timeout=10) as ac:
                return (await ac.get_online_features(model="fraud_model", entity_rows=rows)).values("x")
        assert asyncio.run(read_async()) == want
        got = _cli(repo, "get", "--model", "fraud_model:2", "--host", HOST, "--port", str(server.port), "k=2")
        assert "3.0" in got.stdout
        # the server's served-read events name the model beside the service it resolved to
        deadline = time.monotonic() + 30  # a listener runs just after the reply is written
        while len(events_out.read_text().splitlines()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        logged = [json.loads(line) for line in events_out.read_text().splitlines()]
        assert [(e["model"], e["service"]) for e in logged] == [("fraud_model", "fraud_v1"),
                                                                ("fraud_model:1", "fraud_v1"),
                                                                ("fraud_model", "fraud_v1"),
                                                                ("fraud_model:2", "fraud_v1")]
    finally:
        server.stop()
    assert "1.5" in _cli(repo, "get", "--model", "fraud_model", "k=1").stdout


def test_concurrent_registers_each_get_their_own_version(repo: Path) -> None:
    """Registers race under the registry lock: none is lost, versions are 1..n, and every
    registry version has its history copy."""
    cmd = [FSTORE, "-r", str(repo), "model", "register", "m", "--dataset", str(repo / "train.parquet")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        assert p.wait(120) == 0, p.stderr.read()
    with FeatureStore(repo) as fs:
        assert [v["version"] for v in fs.models.list()[0]["versions"]] == [1, 2, 3]
        assert [h["version"] for h in fs.registry.history()] == [1, 2, 3, 4]


def test_a_pinned_service_is_not_broken_and_a_changed_source_is_named(repo: Path) -> None:
    with FeatureStore(repo) as fs:
        fs.models.register("m", repo / "train.parquet")
        fs.models.promote("m", 1, "production")
        _set_defs(repo, bump=True)
        [impact] = fs.plan().impacts
        assert impact.breaking and (impact.model, impact.version, impact.service) == ("m", 1, "fraud_v1")
        defs = _defs(pin=True)
        defs["sources"][0]["description"] = "changed"
        (repo / "features" / "defs.yaml").write_text(yaml.safe_dump(defs, sort_keys=False))
        impacts = fs.plan().impacts
        assert [i.message for i in impacts] == [
            "feature service fraud_v1 changed: read by m:1 (production) through fraud_v1; "
            "fraud_v1 still reads the trained versions",
            "source src1 (of stats_v1) changed: read by m:1 (production) through fraud_v1; "
            "fraud_v1 still reads the trained versions"]
        assert not any(i.breaking for i in impacts)
        fs.models.promote("m", 1, "archived")  # only production versions are looked at
        assert fs.plan().impacts == []


def test_served_logs_and_skew_are_grouped_by_model(repo: Path) -> None:
    """A read by model is logged with the model it named; `fstore skew --model` checks only those."""
    doc = _defs()
    doc["feature_services"][0]["logging"] = {"sample_rate": 1.0}
    (repo / "features" / "defs.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    _register_two(repo)
    _cli(repo, "model", "promote", "fraud_model:2", "--stage", "production")
    with FeatureStore(repo) as fs:
        fs.apply()
        rows = [{"k": k} for k in KEYS]
        fs.get_online_features(model="fraud_model", entity_rows=rows)          # 3 rows by the model
        fs.get_online_features(model="fraud_model:1", entity_rows=rows[:1])   # 1 row by version 1
        fs.get_online_features(feature_service="fraud_v1", entity_rows=rows)  # 3 rows by the service
    from fstore.monitoring import read_logs
    logged = read_logs(repo, "fraud_v1")
    assert sorted(m or "-" for m in logged.column("model").to_pylist()) == ["-"] * 3 + ["fraud_model"] * 3 + \
        ["fraud_model:1"]
    every = json.loads(_cli(repo, "skew", "--service", "fraud_v1", "--json").stdout)
    by_model = json.loads(_cli(repo, "skew", "--service", "fraud_v1", "--model", "fraud_model", "--json").stdout)
    by_v1 = json.loads(_cli(repo, "skew", "--service", "fraud_v1", "--model", "fraud_model:1", "--json").stdout)
    assert [c["rows"] for c in every["comparisons"]] == [7]
    assert by_model["model"] == "fraud_model" and [c["rows"] for c in by_model["comparisons"]] == [4]
    assert [c["rows"] for c in by_v1["comparisons"]] == [1]
    assert all(f["mismatches"] == 0 for c in by_model["comparisons"] for f in c["features"])
    drift = json.loads(_cli(repo, "drift", "--service", "fraud_v1", "--model", "fraud_model:1", "--json",
                            "--reference", str(repo / "train.parquet"), check=False).stdout)
    assert drift["current"]["rows"] == 1 and drift["current"]["model"] == "fraud_model:1"
