"""Request-time features in the served-feature log and in skew checks (docs/monitoring.md,
"Served-feature logging" and "Skew"): a request shape's reads are logged with their request
fields, request-view outputs and COMPUTED fills, on every path (in process and a real
server), and skew compares them with what training recomputes from the logged request.

The repository is tests/test_request_time_ops.py's (``build``): the service ``scored`` logged
at rate 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from conftest import utc_ts, write_view_source
from server_util import HOST, Server
from test_request_time import FUNCTIONS, H, ROWS, T0
from test_request_time_ops import build
from fstore import FeatureStore
from fstore._ext._constants import Status
from fstore.client import Client
from fstore.monitoring.logread import read_logs


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("rtlog") / "repo")


def _served(repo: Path, port: int) -> dict[str, Any]:
    """One read in process (at T0) and one over the server, each logged; the server is left
    running (its log is written when it stops)."""
    rows = [dict(r) for r in ROWS]
    with FeatureStore(repo) as fs:
        local = fs.get_online_features(feature_service="scored", entity_rows=rows, now=T0, request_id="p-1")
        for r in rows:  # the caller reuses its rows: the log keeps what was read
            r["amount"], r["channel"], r["customer_id"] = -1.0, "changed", 99
    with Client(HOST, port, timeout=10) as c:
        remote = c.get_online_features(feature_service="scored", entity_rows=ROWS, request_id="s-1")
    return {"local": local.to_dict(include_metadata=True), "remote": remote}


def test_request_shapes_are_logged_with_request_fields_and_computed_values(repo: Path) -> None:
    srv = Server(repo)
    try:
        got = _served(repo, srv.port)
    finally:
        srv.stop()  # a graceful stop writes the log
    with FeatureStore(repo) as fs:
        table = read_logs(fs.config, "scored")
    assert sorted(set(table.column("caller_request_id").to_pylist())) == ["p-1", "s-1"]
    meta = yaml.safe_load(table.schema.metadata[b"fstore.log"])
    assert meta["request"] == [{"column": "amount", "field": "amount", "dtype": "float64"},
                               {"column": "channel", "field": "channel", "dtype": "string"}]
    flagged = {f["column"] for f in meta["features"] if f.get("request_view")}
    assert flagged == {"ratio", "big", "label"}
    for rid, expected in (("p-1", got["local"]), ("s-1", got["remote"].to_dict(include_metadata=True))):
        rows = [r for r in table.to_pylist() if r["caller_request_id"] == rid]
        assert [r["row"] for r in rows] == list(range(len(ROWS)))
        assert [r["amount"] for r in rows] == [r["amount"] for r in ROWS]
        assert [r["channel"] for r in rows] == [r["channel"] for r in ROWS]
        for name in ("avg", "count", "ratio", "big", "label", "last_amount"):
            assert [r[name] for r in rows] == expected[name], (rid, name)
        # COMPUTED (5) is logged as served; a request view's value is PRESENT with no event time
        assert [r["avg__status"] for r in rows] == [Status[s] for s in expected["avg__status"]]
        assert [r["avg__status"] for r in rows].count(Status.COMPUTED) == 2
        assert {r["ratio__status"] for r in rows} == {Status.PRESENT}
        assert {r["ratio__event_timestamp"] for r in rows} == {None}


def test_skew_recomputes_request_time_features_from_the_logged_request(repo: Path) -> None:
    """An unchanged pipeline: zero mismatches, request views and on_miss fills included; then
    a changed (and applied) function: its outputs and fills are ``computed_differs``."""
    with FeatureStore(repo) as fs:
        report = fs.skew("scored", against="offline")
    [comp] = report["comparisons"]
    tallies = {f["feature"]: f for f in comp["features"]}
    assert comp["rows"] >= 2 * len(ROWS)
    assert {"avg", "count", "tier", "ratio", "big", "label", "last_amount"} <= set(tallies)
    assert {n: t["mismatches"] for n, t in tallies.items()} == dict.fromkeys(tallies, 0), comp["examples"]

    fns = repo / "features" / "fns.py"
    fns.write_text(FUNCTIONS.replace('pc.multiply(cols["amount"], 0.5)', 'pc.multiply(cols["amount"], 0.25)')
                   .replace('pc.greater(cols["amount"], 100.0)', 'pc.greater(cols["amount"], 1000.0)'))
    try:
        with FeatureStore(repo) as fs:
            fs.apply()
            changed = fs.skew("scored", against="offline")
    finally:
        fns.write_text(FUNCTIONS)
        with FeatureStore(repo) as fs:
            fs.apply()
    [comp] = changed["comparisons"]
    tallies = {f["feature"]: f for f in comp["features"]}
    # each read: avg COMPUTED for 2 rows (3, 5); big True for amounts 250 and 300; ratio reads the fill
    reads = comp["rows"] // len(ROWS)
    assert tallies["avg"]["mismatches"] == 2 * reads and tallies["avg"]["reasons"] == {"computed_differs": 2 * reads}
    assert tallies["big"]["mismatches"] == 2 * reads and tallies["big"]["reasons"] == {"computed_differs": 2 * reads}
    assert tallies["ratio"]["mismatches"] == 2 * reads  # rows 3 and 5 divide by the (changed) fill
    assert tallies["last_amount"]["mismatches"] == 0 and tallies["tier"]["mismatches"] == 0
    example = next(e for e in comp["examples"] if e["feature"] == "big")
    assert example["served"] is True and example["expected"] is False and example["served_status"] == "PRESENT"


def test_skew_reads_a_request_view_input_from_the_version_that_was_served(tmp_path: Path) -> None:
    """stats v2 (other data) is applied and ingested but not materialized: serving read v1, so
    the recomputation of score:ratio (input stats:avg) must read v1 too: zero mismatches."""
    root = build(tmp_path / "repo")
    with FeatureStore(root) as fs:
        fs.get_online_features(feature_service="scored", entity_rows=ROWS, now=T0, request_id="v1-read")
    defs = yaml.safe_load((root / "features" / "defs.yaml").read_text())
    defs["sources"].append({"name": "stats2_src", "path": "data/stats2", "timestamp_field": "ts"})
    stats = next(v for v in defs["feature_views"] if v["name"] == "stats")
    stats["version"], stats["source"] = 2, "stats2_src"
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(defs, sort_keys=False))
    write_view_source(root, "stats2", pa.table({
        "customer_id": pa.array([1, 2, 3, 4], pa.int64()), "ts": utc_ts([T0 - 1 * H] * 4),
        "avg": pa.array([400.0, 1000.0, 70.0, 1.0]), "count": pa.array([1, 1, 1, 1], pa.int64()),
        "tier": pa.array(["x", "x", "x", "x"])}))
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        assert fs.get_historical_features(pa.table({"customer_id": pa.array([1], pa.int64()), "amount": [1.0],
                                                    "channel": ["w"], "event_timestamp": utc_ts([T0])}),
                                          ["stats:avg"]).column("avg").to_pylist() == [400.0]  # training reads v2
        [comp] = fs.skew("scored", against="offline")["comparisons"]
    tallies = {f["feature"]: f["mismatches"] for f in comp["features"]}
    assert comp["rows"] == len(ROWS) and tallies["ratio"] == 0 and tallies["avg"] == 0, comp["examples"]


def test_drift_compares_request_view_outputs_as_served(tmp_path: Path) -> None:
    """fstore drift takes a request view's outputs like stored features where both sides hold
    them (a training set file, the served-feature logs): the same request data give PSI 0,
    amounts a hundred times larger move ``ratio`` to alert. Against an offline window (no
    stored rows of them) they are left out and named in ``skipped``."""
    from test_request_time import _entity_frame

    root = build(tmp_path / "repo")
    shifted = [{**r, "amount": r["amount"] * 100} for r in ROWS]
    with FeatureStore(root) as fs:
        fs.build_dataset(_entity_frame(ROWS, T0), tmp_path / "usual.parquet", feature_service="scored")
        fs.build_dataset(_entity_frame(shifted, T0), tmp_path / "shifted.parquet", feature_service="scored")
        fs.get_online_features(feature_service="scored", entity_rows=shifted, now=T0)  # logged when closed
    with FeatureStore(root) as fs:
        same = {f["feature"]: f for f in fs.drift("scored", reference=tmp_path / "shifted.parquet").to_json()["features"]}
        moved = {f["feature"]: f for f in fs.drift("scored", reference=tmp_path / "usual.parquet").to_json()["features"]}
        offline = fs.drift("scored", reference_window=(T0 - 1000 * H, T0), current="offline").to_json()
    assert {"ratio", "big", "label"} <= set(same) and same["ratio"]["view"] == "score"
    assert same["ratio"]["psi"] == 0 and same["ratio"]["level"] == "ok" and same["ratio"]["null_rate_cur"] == 0.2
    assert moved["ratio"]["level"] == "alert" and moved["big"]["psi"] > 0
    assert [s["feature"] for s in offline["skipped"]] == ["ratio", "big", "label"]
    assert "ratio" not in {f["feature"] for f in offline["features"]} and "avg" in {f["feature"] for f in offline["features"]}
    # the CLI's table says so too
    from test_drift import fstore
    out = fstore(root, "drift", "--service", "scored", "--reference-window", (T0 - 1000 * H).isoformat(),
                 T0.isoformat(), "--current", "offline")
    assert "not compared: ratio (request view score): computed at read time" in out.stdout, out.stdout + out.stderr
