"""fstore skew: served values against the offline store's training-set rule, and against what
the model logged. A real pipeline: apply, ingest, materialize, serve through the real server
(and in process), log every read per the shared layout (tests/plugins/skew_log_listener.py,
until the real logger lands), then inject each fault and check it is found and classified.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import edit_defs, make_demo_repo
from server_util import FSTORE, HOST, PROFILE_SRC, PROFILE_VIEW, REPO_ROOT, Server
from fstore import FeatureStore
from fstore.client import Client
from fstore.errors import InvalidArgument, UnknownObject
from fstore.monitoring import events
from fstore.monitoring.skew_compare import equal_mask, reasons
from fstore.times import NO_TIME, now_us, to_us_relative

pytestmark = pytest.mark.timeout(180)

UTC = dt.timezone.utc
PLUGINS = str(Path(__file__).resolve().parent / "plugins")
SERVICE = "skewsvc"
BASE = list(range(1, 21))
STALE, PUSHED, CHANGED, MISSING, PUSHED_NEW, DEFAULTED = 5, 6, 7, 300, 301, 302
CONTROL = [1, 2]
FEATURES = ["avg_amount_7d", "txn_count_7d", "segment", "age", "score", "vip", "blob", "signup", "nick",
            "trips_together"]


def stats(ids: list[int], when: list[dt.datetime], avg: list[Any], n: list[Any], seg: list[Any]) -> pa.Table:
    return pa.table({"customer_id": pa.array(ids, pa.int64()),
                     "event_timestamp": pa.array(when, pa.timestamp("us", tz="UTC")),
                     "created_timestamp": pa.array([None] * len(ids), pa.timestamp("us", tz="UTC")),
                     "avg_amount_7d": pa.array(avg, pa.float64()), "txn_count_7d": pa.array(n, pa.int64()),
                     "segment": pa.array(seg, pa.string())})


def base_stats(now: dt.datetime) -> pa.Table:
    """Customers 1..20 (one row each, hours old), plus rows past the 7 d ttl and odd floats."""
    ids = BASE + [21, 22]
    when = [now - dt.timedelta(hours=c) for c in BASE] + [now - dt.timedelta(days=40)] * 2
    avg = [c + 0.25 for c in BASE] + [1.0, 2.0]
    avg[2], avg[3], avg[8], avg[9] = -0.0, float("nan"), float("inf"), None
    n = [c for c in BASE] + [1, None]
    seg = [f"s{c}" for c in BASE] + ["old", None]
    return stats(ids, when, avg, n, seg)


def build(root: Path) -> Path:
    make_demo_repo(root)
    (root / "data" / "customer_stats.parquet").unlink()
    (root / "data" / "stats").mkdir()

    def change(doc: dict[str, Any]) -> None:
        doc["sources"][0]["path"] = "data/stats/*.parquet"
        doc["sources"].append(dict(PROFILE_SRC))
        doc["feature_views"].append(dict(PROFILE_VIEW))
        doc["feature_services"].append({"name": SERVICE, "features": ["customer_stats", "profile", "customer_driver"]})
    edit_defs(root, change)
    now = dt.datetime.now(UTC)
    pq.write_table(base_stats(now), root / "data" / "stats" / "base.parquet")
    pids = BASE[:12]
    pq.write_table(pa.table({
        "customer_id": pa.array(pids, pa.int64()),
        "ts": pa.array([now - dt.timedelta(hours=c) for c in pids], pa.timestamp("us", tz="UTC")),
        "age": pa.array([c if c % 3 else None for c in pids], pa.int32()),
        "score": pa.array([[-0.0, 0.5, float("inf"), None, 1e30][c % 5] for c in pids], pa.float32()),
        "vip": pa.array([[True, False, None][c % 3] for c in pids], pa.bool_()),
        "blob": pa.array([[b"", b"\x00\xff", None][c % 3] for c in pids], pa.binary()),
        "signup": pa.array([[None, dt.datetime(1969, 7, 20, tzinfo=UTC)][c % 2] for c in pids],
                           pa.timestamp("us", tz="UTC")),
        "nick": pa.array([["", "🎉", None][c % 3] for c in pids]),
    }), root / "data" / "profile.parquet")
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        fs.materialize("2000-01-01T00:00:00Z", now)
    return root


def entity_rows(ids: list[int]) -> list[dict[str, Any]]:
    return [{"customer_id": c, "driver_id": [501, 502, 503][c % 3]} for c in ids]


def skew_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, "-r", str(root), "skew", "--service", SERVICE, *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT)


def skew_json(root: Path, *args: str) -> dict[str, Any]:
    proc = skew_cli(root, "--json", "--examples", "100", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def by_against(report: dict[str, Any], against: str) -> dict[str, Any]:
    [comp] = [c for c in report["comparisons"] if c["against"] == against]
    return comp


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("skew") / "repo")


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    (repo / "fstore.yaml").write_text("project: demo\nserver:\n  listeners: ['skew_log_listener:write']\n")
    offline = FeatureStore(repo).config.offline_path
    env = {"FSTORE_TEST_LOG_ROOT": str(offline), "PYTHONPATH": PLUGINS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    srv = Server(repo, env=env)
    try:
        yield srv
    finally:
        srv.stop()


def serve(repo: Path, port: int, ids: list[int], rid: str) -> int:
    """Read ``ids`` through the server (twice: new shape and the compiled path) and in process,
    each read logged; returns the entity rows logged."""
    import sys
    sys.path.insert(0, PLUGINS)
    from skew_log_listener import write

    offline = str(FeatureStore(repo).config.offline_path)
    with Client(HOST, port, timeout=10) as c:
        for i in range(2):
            resp = c.get_online_features(entity_rows=entity_rows(ids), feature_service=SERVICE, request_id=f"{rid}-{i}")
            assert len(resp) == len(ids)
    listener = events.subscribe(lambda e: write(e, offline))
    try:
        with FeatureStore(repo) as fs:
            fs.get_online_features(entity_rows=entity_rows(ids), feature_service=SERVICE, request_id=f"{rid}-p")
    finally:
        events.unsubscribe(listener)
    return 3 * len(ids)


@pytest.fixture(scope="module")
def clean(repo: Path, server: Server) -> tuple[int, int]:
    """Reads of an unchanged pipeline; returns (rows logged, a time after them)."""
    rows = serve(repo, server.port, BASE + [21, 22, 400], "clean")
    time.sleep(0.01)
    return rows, now_us()


def test_an_unchanged_pipeline_has_exactly_zero_mismatches(repo: Path, clean: tuple[int, int]) -> None:
    rows, _ = clean
    proc = skew_cli(repo, "--json", "--max-mismatch-rate", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["service"] == SERVICE and set(report) >= {"since", "until", "comparisons"}
    [comp] = report["comparisons"]  # no model log: offline only
    assert comp["against"] == "offline" and comp["rows"] == rows
    assert sorted(f["feature"] for f in comp["features"]) == sorted(FEATURES)
    for f in comp["features"]:
        assert (f["rows"], f["mismatches"], f["mismatch_rate"]) == (rows, 0, 0.0), f
    assert comp["examples"] == []
    num = {f["feature"]: f for f in comp["features"]}
    assert num["avg_amount_7d"]["max_abs_diff"] == 0.0 and num["segment"]["mean_abs_diff"] is None
    table = skew_cli(repo)
    assert table.returncode == 0 and "served vs offline" in table.stdout and "avg_amount_7d" in table.stdout


@pytest.fixture(scope="module")
def faulted(repo: Path, server: Server, clean: tuple[int, int]) -> tuple[int, dict[tuple[str, int], str]]:
    """Every fault of the issue injected on its own customers; returns (--since, expected reasons)."""
    _, since = clean
    now = dt.datetime.now(UTC)
    ten = now - dt.timedelta(minutes=10)
    # stale online row / late materialization: rows ingested, never materialized
    pq.write_table(stats([STALE, MISSING], [ten, ten], [55.5, 12.5], [55, 3], ["late", "z"]),
                   repo / "data" / "stats" / "late.parquet")
    with FeatureStore(repo) as fs:
        fs.ingest(["customer_stats"])
    # a push written online and not offline (an entity with offline rows, and a new one)
    five = now - dt.timedelta(minutes=5)
    with Client(HOST, server.port, timeout=10) as c:
        pushed = {"customer_id": [PUSHED, PUSHED_NEW], "event_timestamp": [five, five],
                  "created_timestamp": [None, None], "avg_amount_7d": [66.5, 7.5], "txn_count_7d": [66, 7],
                  "segment": ["pushed", "new"]}
        assert c.push("customer_stats", pushed) == 2
    serve(repo, server.port, CONTROL + [STALE, PUSHED, CHANGED, MISSING, PUSHED_NEW, DEFAULTED], "faults")
    # after serving: the source changes (same event times) and is re-ingested; a default changes
    path = repo / "data" / "stats" / "base.parquet"
    old = pq.read_table(path).to_pydict()
    k = old["customer_id"].index(CHANGED)
    old["avg_amount_7d"][k], old["txn_count_7d"][k], old["segment"][k] = 999.5, 999, "changed"
    pq.write_table(pa.table(old, schema=pq.read_schema(path)), path)
    with FeatureStore(repo) as fs:
        fs.ingest(["customer_stats"])

        def new_default(doc: dict[str, Any]) -> None:
            doc["feature_views"][0]["features"][0]["default"] = 1.5
        edit_defs(repo, new_default)
        fs.apply()
    expected = {}
    for f in ("avg_amount_7d", "txn_count_7d", "segment"):
        expected.update({(f, STALE): "stale_online", (f, MISSING): "missing_online",
                         (f, PUSHED): "not_in_offline", (f, PUSHED_NEW): "not_in_offline",
                         (f, CHANGED): "value_differs"})
    expected[("avg_amount_7d", DEFAULTED)] = "default_differs"
    return since, expected


def test_each_fault_is_found_and_classified(repo: Path, faulted: tuple[int, dict[tuple[str, int], str]]) -> None:
    since, expected = faulted
    since_iso = dt.datetime.fromtimestamp(since / 1e6, UTC).isoformat()
    report = skew_json(repo, "--since", since_iso, "--against", "offline")
    comp = by_against(report, "offline")
    assert comp["rows"] == 3 * 8
    found: dict[tuple[str, int], str] = {}
    for e in comp["examples"]:
        key = (e["feature"], e["entity"]["customer_id"])
        assert found.setdefault(key, e["reason"]) == e["reason"], e  # same on every path
        assert set(e) >= {"request_time", "served", "expected", "served_status", "served_event_timestamp",
                          "expected_event_timestamp", "entity"}
    assert found == expected
    ex = {(e["feature"], e["entity"]["customer_id"]): e for e in comp["examples"]}
    assert ex[("avg_amount_7d", STALE)]["served"] == STALE + 0.25 and ex[("avg_amount_7d", STALE)]["expected"] == 55.5
    assert ex[("avg_amount_7d", DEFAULTED)]["served"] == 0.0 and ex[("avg_amount_7d", DEFAULTED)]["expected"] == 1.5
    assert ex[("avg_amount_7d", DEFAULTED)]["served_status"] == "DEFAULTED"
    assert ex[("segment", PUSHED_NEW)]["expected_event_timestamp"] is None
    rates = {f["feature"]: f for f in comp["features"]}
    assert rates["avg_amount_7d"]["mismatches"] == 3 * 6 and rates["txn_count_7d"]["mismatches"] == 3 * 5
    assert rates["age"]["mismatches"] == 0 and rates["trips_together"]["mismatches"] == 0
    assert rates["avg_amount_7d"]["max_abs_diff"] == pytest.approx(999.5 - (CHANGED + 0.25))
    # the exit code, for CI and cron
    assert skew_cli(repo, "--since", since_iso, "--max-mismatch-rate", "0.5").returncode == 1
    assert skew_cli(repo, "--since", since_iso, "--max-mismatch-rate", "0.9").returncode == 0


def write_model_log(root: Path, rows: list[dict[str, Any]]) -> Path:
    """The model-received log per the documented layout (the inference service writes it)."""
    offline = FeatureStore(root).config.offline_path
    day = dt.datetime.now(UTC).strftime("%Y-%m-%d")
    folder = offline / "logs" / SERVICE / "model" / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows).cast(pa.schema([
        ("caller_request_id", pa.string()), ("request_time", pa.timestamp("us", tz="UTC")),
        ("customer_id", pa.int64()), ("driver_id", pa.int64()), ("avg_amount_7d", pa.float64()),
        ("txn_count_7d", pa.int64())]))
    pq.write_table(table, folder / "part-model-1.parquet")
    return folder


def test_served_vs_logged_by_the_caller(repo: Path, server: Server, faulted: Any) -> None:
    ids = [1, 2, 3, 500]  # 500: no row, txn_count_7d NOT_FOUND; the model fills in 0
    since = now_us()
    with Client(HOST, server.port, timeout=10) as c:
        resp = c.get_online_features(entity_rows=entity_rows(ids), feature_service=SERVICE, request_id="model-1")
    got = resp.to_dict()
    rows = [{"caller_request_id": "model-1", "request_time": dt.datetime.now(UTC), **entity_rows([i])[0],
             "avg_amount_7d": got["avg_amount_7d"][k], "txn_count_7d": got["txn_count_7d"][k] or 0}
            for k, i in enumerate(ids)]
    rows[1]["avg_amount_7d"] = 1234.0  # the model's own transform changed one value
    write_model_log(repo, rows)
    report = skew_json(repo, "--since", str(dt.datetime.fromtimestamp(since / 1e6, UTC).isoformat()))
    assert [c["against"] for c in report["comparisons"]] == ["offline", "logged"]  # default: both
    comp = by_against(report, "logged")
    assert comp["rows"] == 4 and comp["unmatched_served"] == 0 and comp["unmatched_logged"] == 0
    found = {(e["feature"], e["entity"]["customer_id"]): e["reason"] for e in comp["examples"]}
    assert found == {("avg_amount_7d", 2): "value_differs", ("txn_count_7d", 500): "default_differs"}
    assert {f["feature"]: f["mismatches"] for f in comp["features"]} == {"avg_amount_7d": 1, "txn_count_7d": 1}


def test_bad_input_is_named(repo: Path, clean: Any) -> None:
    proc = skew_cli(repo, "--since", "yesterday-ish")
    assert proc.returncode == 1 and "since 'yesterday-ish'" in proc.stderr and "now-1h" in proc.stderr
    with FeatureStore(repo) as fs:
        with pytest.raises(UnknownObject, match="nosuch"):
            fs.skew("nosuch")
        with pytest.raises(InvalidArgument, match="after"):
            fs.skew(SERVICE, since="now", until="now-1h")
        with pytest.raises(InvalidArgument, match="no model-received log"):
            fs.skew("fraud_v1", against="logged")
        empty = fs.skew("fraud_v1")  # a service with no log yet: zero rows, said so
        assert [c["rows"] for c in empty["comparisons"]] == [0]


def test_relative_times() -> None:
    now = now_us()
    assert abs(to_us_relative("now-1h") - (now - 3_600_000_000)) < 60_000_000
    assert abs(to_us_relative("now + 30m") - (now + 1_800_000_000)) < 60_000_000
    assert to_us_relative("2026-01-31T12:00:00Z") == to_us_relative("2026-01-31T12:00:00+00:00")


def test_values_compare_exactly() -> None:
    a = pa.array([0.0, float("nan"), 1.0, None, None, 1e30], pa.float64())
    b = pa.array([-0.0, float("nan"), 1.0, None, 2.0, math.nextafter(1e30, 2e30)], pa.float64())
    assert equal_mask(a, b, "float64").tolist() == [False, True, True, True, False, False]
    s = pa.array(["x", None, ""]), pa.array(["x", "", None])
    assert equal_mask(*s, "string").tolist() == [True, False, False]


def test_reason_rules() -> None:
    """One row per rule of docs/monitoring.md (status 0 PRESENT, 1 NOT_FOUND, 2 EXPIRED, 3 DEFAULTED)."""
    status = np.array([0, 0, 0, 0, 2, 3, 3, 1, 0])
    served = np.array([5, 5, 5, 9, 1, NO_TIME, NO_TIME, NO_TIME, 5])
    offline = np.array([NO_TIME, 7, 5, 7, 4, 3, NO_TIME, NO_TIME, 5])
    mismatch = np.array([True] * 8 + [False])
    names = [None, "stale_online", "missing_online", "not_in_offline", "default_differs", "value_differs"]
    got = [names[c] for c in reasons(mismatch, status, served, offline)]
    assert got == ["not_in_offline", "stale_online", "value_differs", "not_in_offline", "stale_online",
                   "missing_online", "default_differs", "default_differs", None]
