"""A version bump never switches live reads or training sets onto a version without data.

Unpinned references read the newest version that has data for their path (offline for
training sets, online for serving) and move by themselves once the new version has its
own; ``plan`` says so before the apply. Through the API, the CLI and a real server.
"""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fstore import FeatureStore
from fstore.client import Client
from server_util import FSTORE, HOST, Server

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=0)
KEYS = [1, 2, 3]


def _write_source(root: Path, name: str, scale: float) -> None:
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"k": pa.array(KEYS, pa.int64()),
                             "ts": pa.array([NOW - dt.timedelta(hours=1)] * len(KEYS), pa.timestamp("us", tz="UTC")),
                             "x": pa.array([scale * k for k in KEYS], pa.float64()),
                             "y": pa.array([10 * k for k in KEYS], pa.int64())}), root / "data" / f"{name}.parquet")


def _defs(version: int, *, y: bool = False) -> dict:
    features = [{"name": "x", "dtype": "float64", "default": -1.0}]
    if y:
        features.append({"name": "y", "dtype": "int64", "default": -2})
    return {
        "entities": [{"name": "thing", "join_keys": ["k"]}],
        "sources": [{"name": "src1", "path": "data/one.parquet", "timestamp_field": "ts"},
                    {"name": "src2", "path": "data/two.parquet", "timestamp_field": "ts"}],
        "feature_views": [{"name": "stats", "version": version, "entities": ["thing"],
                           "source": "src1" if version == 1 else "src2", "ttl": "30d", "features": features}],
        "feature_services": [{"name": "scoring", "features": ["stats:x"]},
                             {"name": "pinned", "features": ["stats_v1:x"]}],
    }


def _repo(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "fstore.yaml").write_text("project: bump\n")
    (root / "features").mkdir()
    _write_source(root, "one", 1.0)   # version 1 reads x = k
    _write_source(root, "two", 100.0)  # version 2 reads x = 100 k
    _set_defs(root, 1)
    return root


def _set_defs(root: Path, version: int, **kw: bool) -> None:
    doc = _defs(version, **kw)
    if version == 2:  # version 1 stays defined: it is what the pinned service reads
        doc["feature_views"].insert(0, _defs(1)["feature_views"][0])
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def _online_x(fs: FeatureStore, service: str = "scoring") -> tuple[list, list]:
    resp = fs.get_online_features(feature_service=service, entity_rows=[{"k": k} for k in KEYS])
    return resp.values("x"), [s.name for s in resp.statuses("x")]


def _training_x(fs: FeatureStore, tmp: Path) -> list:
    ent = pa.table({"k": pa.array(KEYS, pa.int64()),
                    "event_timestamp": pa.array([NOW] * len(KEYS), pa.timestamp("us", tz="UTC"))})
    table, _ = fs.build_dataset(ent, tmp / f"ds-{time.monotonic_ns()}.parquet", feature_service="scoring")
    return table.column("x").to_pylist()


@pytest.fixture
def live(tmp_path: Path) -> FeatureStore:
    root = _repo(tmp_path / "repo")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(NOW)
    yield fs
    fs.close()


def test_training_and_serving_keep_their_version_until_the_new_one_has_data(live: FeatureStore, tmp_path: Path) -> None:
    fs = live
    assert _online_x(fs) == ([1.0, 2.0, 3.0], ["PRESENT"] * 3)
    _set_defs(fs.config.root, 2)
    plan = fs.plan()
    assert any("serving: service scoring" in e and "keep reading stats_v1 until stats_v2 has online data" in e
               and "stats_v2 has no offline data and no online data yet" in e for e in plan.effects), plan.effects
    assert any(e.startswith("training sets: service scoring") and "keep reading stats_v1" in e for e in plan.effects)
    fs.apply()
    assert {k: fs.view_status("stats")[k] for k in ("serving_reads", "training_reads")} == \
        {"serving_reads": "stats_v1", "training_reads": "stats_v1"}
    # applied, nothing ingested: both paths still read version 1, with its data
    assert _online_x(fs) == ([1.0, 2.0, 3.0], ["PRESENT"] * 3)
    assert _training_x(fs, tmp_path) == [1.0, 2.0, 3.0]
    # ingested: training sets move to version 2; serving waits for its online data
    fs.ingest()
    assert _training_x(fs, tmp_path) == [100.0, 200.0, 300.0]
    assert _online_x(fs) == ([1.0, 2.0, 3.0], ["PRESENT"] * 3)
    # materialized: serving moves too; the pinned service stays on version 1
    fs.materialize_incremental(NOW)
    assert _online_x(fs) == ([100.0, 200.0, 300.0], ["PRESENT"] * 3)
    assert _online_x(fs, "pinned") == ([1.0, 2.0, 3.0], ["PRESENT"] * 3)
    described = json.loads(subprocess.run([FSTORE, "-r", str(fs.config.root), "describe", "stats", "--json"],
                                          capture_output=True, text=True, timeout=120, check=True).stdout)
    assert (described["serving_reads"], described["training_reads"]) == ("stats_v2", "stats_v2")
    ready = json.loads((fs.config.registry.parent / "ready.json").read_text())
    assert ready["offline"] == ["stats_v1", "stats_v2"] and ready["online"] == ["stats_v1", "stats_v2"]


def test_the_old_version_stays_fresh_while_serving_still_reads_it(live: FeatureStore) -> None:
    fs = live
    _set_defs(fs.config.root, 2)
    fs.apply()
    # new rows for version 1's source: a default materialization refreshes version 1, which
    # serving reads until version 2 has online data, and then version 2 alone
    pq.write_table(pa.table({"k": pa.array([1], pa.int64()),
                             "ts": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                             "x": pa.array([7.0]), "y": pa.array([0], pa.int64())}),
                   fs.config.root / "data" / "one.parquet")
    assert [(v["name"], v["version"]) for v in fs.online_views()] == [("stats", 1), ("stats", 2)]
    fs.ingest()
    written = {r.view: r.rows_written for r in fs.materialize_incremental(NOW + dt.timedelta(seconds=1))}
    assert written == {"stats_v1": 1, "stats_v2": 3}
    assert _online_x(fs, "pinned")[0] == [7.0, 2.0, 3.0]
    assert _online_x(fs)[0] == [100.0, 200.0, 300.0]
    assert [(v["name"], v["version"]) for v in fs.online_views()] == [("stats", 2), ("stats", 1)]


def test_a_feature_only_the_new_version_has_is_read_from_it(live: FeatureStore) -> None:
    fs = live
    _set_defs(fs.config.root, 2, y=True)
    fs.apply()
    resp = fs.get_online_features(["stats:x", "stats:y"], entity_rows=[{"k": 1}])
    # x from the version with data, y (new) from version 2, which has none yet: its default
    assert resp.values("x") == [1.0] and resp.values("y") == [-2]
    assert [s.name for s in resp.statuses("y")] == ["DEFAULTED"]


def test_plan_on_the_command_line_states_the_effect(live: FeatureStore) -> None:
    root = live.config.root
    _set_defs(root, 2)
    out = subprocess.run([FSTORE, "-r", str(root), "plan"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # rich may wrap long lines
    assert "serving: service scoring and references to 'stats' keep reading stats_v1 until stats_v2 has online " \
           "data (`fstore materialize`); stats_v2 has no offline data and no online data yet" in text, out.stdout


def test_a_new_view_with_no_older_version_has_no_effect_line(tmp_path: Path) -> None:
    fs = FeatureStore(_repo(tmp_path / "repo"))
    assert fs.plan().effects == []


def test_a_server_keeps_serving_across_a_bump_and_switches_when_the_data_is_there(live: FeatureStore) -> None:
    fs = live
    root = fs.config.root
    srv = Server(root)
    try:
        with Client(HOST, srv.port) as c:
            def read() -> list:
                return c.get_online_features(feature_service="scoring", entity_rows=[{"k": k} for k in KEYS]).values("x")
            assert read() == [1.0, 2.0, 3.0]
            _set_defs(root, 2)
            assert subprocess.run([FSTORE, "-r", str(root), "apply"], capture_output=True, timeout=120).returncode == 0
            deadline = time.monotonic() + 3  # the server looks at the registry once a second
            while time.monotonic() < deadline:
                assert read() == [1.0, 2.0, 3.0]
                time.sleep(0.2)
            for cmd in (["ingest"], ["materialize-incremental", NOW.isoformat()]):
                assert subprocess.run([FSTORE, "-r", str(root), *cmd], capture_output=True, timeout=120).returncode == 0
            deadline = time.monotonic() + 10
            while read() != [100.0, 200.0, 300.0] and time.monotonic() < deadline:
                time.sleep(0.2)
            assert read() == [100.0, 200.0, 300.0]
    finally:
        srv.stop()


# ---- a source folder that holds the stores ------------------------------------------------

def test_a_source_folder_never_reads_the_stores_files_and_plan_says_so(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "fstore.yaml").write_text("project: nested\noffline_store: {path: data/offline}\n"
                                      "online_store: {path: data/online}\n")
    (root / "features").mkdir()
    doc = _defs(1)
    doc["sources"] = [{"name": "src1", "path": "data", "timestamp_field": "ts"}]  # a folder: the stores are in it
    doc["feature_services"] = []
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    _write_source(root, "one", 1.0)
    fs = FeatureStore(root)
    warnings = fs.plan().warnings
    assert warnings == ["source src1: path 'data' contains the offline store (data/offline); its files are never "
                        "read as source rows",
                        "source src1: path 'data' contains the online store (data/online); its files are never "
                        "read as source rows"]
    fs.apply()
    [first] = fs.ingest()
    fs.materialize_incremental(NOW)
    assert first.rows == 3 and any((root / "data" / "offline").rglob("*.parquet"))
    _write_source(root, "more", 2.0)  # a second file: only it is new
    [second] = fs.ingest()
    assert (second.units_read, second.rows) == (1, 3)
    assert fs.offline.manifest(fs.get_feature_view("stats"))["rows"] == 6
    out = subprocess.run([FSTORE, "-r", str(root), "plan"], capture_output=True, text=True, timeout=120)
    assert "warning: source src1: path 'data' contains the offline store" in " ".join(out.stdout.split())
