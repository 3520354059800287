"""Request-time features in operations: describe / list / INFO, the client's fallback, model
lineage, docs/repository.md's rules, and ``fstore get`` request fields (docs/transformations.md,
"Request-time transformations"). The log and skew checks: tests/test_request_time_log.py.

The repository is tests/test_request_time.py's (stats with on_miss, recent, the request
views score and bad), with the service ``scored`` logged at rate 1.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pytest
import yaml

from conftest import make_views_repo, utc_ts, write_view_source
from server_util import FSTORE, HOST, REPO_ROOT, Server
from test_request_time import FUNCTIONS, ROWS, SERVICES, T0, build_repo
from fstore import FeatureStore
from fstore._ext._constants import Status
from fstore.client import Client
from fstore.errors import ComputedFeatureError, Unavailable

LOGGED = SERVICES.replace('features: ["stats:avg", "stats:count", "stats:tier", "score", "recent:last_amount"]',
                          'features: ["stats:avg", "stats:count", "stats:tier", "score", "recent:last_amount"]\n'
                          '    logging: {sample_rate: 1.0}')


def build(root: Path) -> Path:
    assert LOGGED != SERVICES
    return build_repo(root, LOGGED, {"monitoring": {"logging": {"roll_seconds": 3600}}})


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("rtops") / "repo")


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[Server]:
    srv = Server(repo)
    try:
        yield srv
    finally:
        srv.stop()


# ---- describe / list / INFO / fallback ------------------------------------------------------

def fstore(repo: Path, *args: str) -> str:
    proc = subprocess.run([FSTORE, "-r", str(repo), *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_describe_and_list_show_request_views(repo: Path) -> None:
    doc = json.loads(fstore(repo, "describe", "score", "--json"))
    assert doc["kind"] == "request view" and doc["name"] == "score"
    assert doc["function"]["function"] == "score" and doc["function"]["file"] == "features/fns.py"
    assert re.fullmatch(r"[0-9a-f]{64}", doc["function"]["source_sha256"])
    assert doc["request"] == {"amount": "float64", "channel": "string"}
    assert doc["inputs"] == ["stats:avg", "recent:last_amount"]
    assert doc["features"] == {"ratio": {"dtype": "float64", "default": None}, "big": {"dtype": "bool", "default": None},
                               "label": {"dtype": "string", "default": None}}
    text = fstore(repo, "describe", "score")
    for part in ("request view score", "features/fns.py", doc["function"]["source_sha256"], "amount: float64",
                 "channel: string", "stats:avg", "recent:last_amount", "ratio", "bool"):
        assert part in text, part
    listed = json.loads(fstore(repo, "list", "--json"))
    assert [r["name"] for r in listed["request_views"]] == ["bad", "score"]
    assert "score(amount: float64, channel: string, stats:avg, recent:last_amount) -> ratio: float64, big: bool, " \
           "label: string" in fstore(repo, "list")
    # a view's on_miss is shown with the view
    stats = json.loads(fstore(repo, "describe", "stats", "--json"))
    assert stats["on_miss"]["function"]["function"] == "fill_stats" and stats["on_miss"]["request"] == {"amount": "float64"}
    assert "compute fill_stats(amount: float64)" in fstore(repo, "describe", "stats")


def test_info_lists_request_views_and_the_fallback_answers_them(repo: Path) -> None:
    srv = Server(repo)
    feats = ["stats:avg", "score:ratio", "score:label", "recent:last_amount"]
    c = Client(HOST, srv.port, timeout=0.5, fallback="defaults")
    try:
        info = c.info()
        assert info["request_views"]["score"]["features"]["big"] == {"dtype": "bool", "default": None}
        assert info["request_views"]["score"]["request"] == {"amount": "float64", "channel": "string"}
        assert next(v for v in info["views"] if v["name"] == "stats")["on_miss"]["function"]["function"] == "fill_stats"
        live = c.get_online_features(feats, entity_rows=ROWS)
        assert live.values("ratio")[0] == 1.25 and live.statuses("ratio")[0] == Status.PRESENT
    finally:
        srv.stop()
    try:
        resp = c.get_online_features(feats, entity_rows=ROWS)
        assert resp.feature_names == ["avg", "ratio", "label", "last_amount"]
        for name in resp.feature_names:
            assert resp.values(name) == [None] * len(ROWS), name
            assert resp.statuses(name) == [Status.UNAVAILABLE] * len(ROWS), name
            assert resp.event_timestamps(name) == [None] * len(ROWS), name
        assert resp.to_dict()["customer_id"] == [r["customer_id"] for r in ROWS]
        svc = c.get_online_features(feature_service="scored", entity_rows=ROWS, full_feature_names=True)
        assert svc.values("score__big") == [None] * len(ROWS) and svc.values("stats__tier") == ["none"] * len(ROWS)
        assert set(svc.statuses("score__big")) == {Status.UNAVAILABLE}
        with pytest.raises(Unavailable):  # an output the request view does not have: no guess
            c.get_online_features(["score:nosuch"], entity_rows=ROWS)
    finally:
        c.close()


# ---- lineage -----------------------------------------------------------------------------

def test_a_model_trained_on_request_views_records_their_functions_and_inputs(repo: Path, tmp_path: Path) -> None:
    frame = pa.table({"customer_id": pa.array([r["customer_id"] for r in ROWS], pa.int64()),
                      "amount": [r["amount"] for r in ROWS], "channel": [r["channel"] for r in ROWS],
                      "event_timestamp": utc_ts([T0] * len(ROWS))})
    with FeatureStore(repo) as fs:
        _, lineage_file = fs.build_dataset(frame, tmp_path / "train.parquet", feature_service="scored")
        lineage = json.loads(lineage_file.read_text())
        applied = fs.registry.require()["request_views"]["score"]["function"]
        fs.models.register("scorer", tmp_path / "train.parquet")
        rec = fs.models.get("scorer")
        down = fs.model_lineage("scorer")
    assert applied["function"] == "score" and re.fullmatch(r"[0-9a-f]{64}", applied["source_sha256"])
    [score] = lineage["request_views"]
    assert score == {"name": "score", "function": applied, "request": {"amount": "float64", "channel": "string"},
                     "inputs": ["stats_v1:avg", "recent_v1:last_amount"], "features": ["ratio", "big", "label"],
                     "columns": ["ratio", "big", "label"]}
    views = {v["view"]: v for v in lineage["views"]}
    assert views["stats_v1"]["on_miss"]["function"]["function"] == "fill_stats"
    assert views["stats_v1"]["read_by"] == ["request_view score"]
    assert views["recent_v1"]["read_by"] == ["request_view score"]
    assert rec["request_views"] == [{k: score[k] for k in ("name", "function", "request", "inputs", "features")}]
    assert {v["name"]: v.get("read_by") for v in rec["views"]} == {"stats": ["request_view score"],
                                                                  "recent": ["request_view score"]}
    assert down["request_views"] == rec["request_views"]
    assert next(v for v in down["views"] if v["view"] == "stats_v1")["on_miss"]["function"]["function"] == "fill_stats"
    tree = fstore(repo, "model", "lineage", "scorer")
    assert "request view score: function score in features/fns.py" in tree and applied["source_sha256"][:12] in tree


def test_an_input_only_view_is_in_the_lineage(repo: Path, tmp_path: Path) -> None:
    """A training set asking only for a request view still names the views its function read."""
    frame = pa.table({"customer_id": pa.array([1, 2], pa.int64()), "amount": [1.0, 2.0], "channel": ["a", "b"],
                      "event_timestamp": utc_ts([T0] * 2)})
    with FeatureStore(repo) as fs:
        _, lineage_file = fs.build_dataset(frame, tmp_path / "only.parquet", ["score:label"])
    lineage = json.loads(lineage_file.read_text())
    assert [rv["name"] for rv in lineage["request_views"]] == ["score"]
    assert {v["view"]: (v["features"], v["columns"], v["read_by"]) for v in lineage["views"]} == {
        "stats_v1": (["avg"], [], ["request_view score"]), "recent_v1": (["last_amount"], [], ["request_view score"])}


# ---- docs/repository.md: the request_views section is the rule -------------------------------

def test_repository_doc_has_every_request_view_key_and_on_miss_key() -> None:
    import dataclasses

    from fstore.repo.request_time import ON_MISS_KEYS, RequestView

    doc = (REPO_ROOT / "docs" / "repository.md").read_text()
    section = doc[doc.index("### Request views"):doc.index("### dtypes")]
    for f in dataclasses.fields(RequestView):
        assert f"| `{f.name}` |" in section, f.name
    for key in ON_MISS_KEYS:
        assert f"`{key}`" in section, key
    assert "`request_views`" in doc[:doc.index("### Request views")]


@pytest.mark.parametrize("change, field, message", [
    (lambda rv: rv.update(name="stats"), "name", "a feature view is named 'stats' too"),
    (lambda rv: rv["features"][0].update(default=1.0), "features[x].default", "a computed feature has no default"),
    (lambda rv: (rv.pop("request"), rv.pop("inputs")), "request", "at least one request field or input"),
    (lambda rv: rv.update(inputs=["stats:avg", "other:avg"]), "inputs", "two inputs of the function are named 'avg'"),
    (lambda rv: rv.update(request={"avg": "float64"}), "inputs", "two inputs of the function are named 'avg'"),
    (lambda rv: rv.update(features=[]), "features", "at least one feature is required"),
])
def test_documented_request_view_rules_are_enforced(tmp_path: Path, change: Any, field: str, message: str) -> None:
    root = make_views_repo(tmp_path / "r", {
        "stats": {"keys": [("customer_id", "int")], "created": False, "features": [("avg", "float64", None)]},
        "other": {"keys": [("customer_id", "int")], "created": False, "features": [("avg", "float64", None)]}})
    for view in ("stats", "other"):
        write_view_source(root, view, pa.table({"customer_id": pa.array([1], pa.int64()), "ts": utc_ts([T0]),
                                                "avg": pa.array([1.0])}))
    (root / "features" / "fns.py").write_text("def f(cols):\n    return {'x': cols['amount']}\n")
    rv: dict[str, Any] = {"name": "q", "function": "f", "request": {"amount": "float64"}, "inputs": ["stats:avg"],
                          "features": [{"name": "x", "dtype": "float64"}]}
    change(rv)
    defs = yaml.safe_load((root / "features" / "defs.yaml").read_text())
    defs["request_views"] = [rv]
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(defs, sort_keys=False))
    with FeatureStore(root) as fs, pytest.raises(Exception) as err:
        fs.plan()
    assert message in str(err.value) and f".{field}" in str(err.value), str(err.value)


def test_a_request_view_cannot_be_pinned_and_leaves_with_its_definition(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"stats": {"keys": [("customer_id", "int")], "created": False,
                                                      "features": [("avg", "float64", None)]}}, services="""
request_views:
  - name: q
    function: f
    request: {amount: float64}
    features: [{name: x, dtype: float64}]
""")
    write_view_source(root, "stats", pa.table({"customer_id": pa.array([1], pa.int64()), "ts": utc_ts([T0]),
                                               "avg": pa.array([1.0])}))
    (root / "features" / "fns.py").write_text("def f(cols):\n    return {'x': cols['amount']}\n")
    with FeatureStore(root) as fs:
        fs.apply()
        assert fs.get_online_features(["q:x"], entity_rows=[{"customer_id": 1, "amount": 2.0}]).values("x") == [2.0]
        with pytest.raises(Exception, match="q_v1"):
            fs.get_online_features(["q_v1:x"], entity_rows=[{"customer_id": 1, "amount": 2.0}])
    defs = yaml.safe_load((root / "features" / "defs.yaml").read_text())
    del defs["request_views"]
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(defs, sort_keys=False))
    with FeatureStore(root) as fs:
        assert any(c.kind == "request_views" and c.action == "remove" for c in fs.plan().changes)
        fs.apply()
        assert "q" not in (fs.registry.require().get("request_views") or {})


# ---- fstore get: request fields as their declared dtype -------------------------------------

def test_fstore_get_reads_request_fields_as_their_declared_dtype(repo: Path, server: Server) -> None:
    args = ("get", "--features", "score:ratio,score:label", "customer_id=1", "amount=50.5", "channel=123",
            "customer_id=5", "amount=3", "channel=web")
    with FeatureStore(repo) as fs:  # what the library answers for the same typed rows
        want = fs.get_online_features(["score:ratio", "score:label"], entity_rows=[
            {"customer_id": 1, "amount": 50.5, "channel": "123"}, {"customer_id": 5, "amount": 3.0, "channel": "web"}])
    assert want.values("ratio")[0] == 50.5 / 40.0 and want.values("label") == ["123:12.5", "web:-1"]
    for extra in ((), ("--host", HOST, "--port", str(server.port))):
        out = fstore(repo, *args, *extra)
        for value in ("1.2625", "123:12.5", "web:-1"):  # amount a float, channel the text '123'
            assert value in out, (extra, out)
    bad = subprocess.run([FSTORE, "-r", str(repo), "get", "--features", "score:ratio", "customer_id=1",
                          "amount=abc", "channel=w"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert bad.returncode == 2 and "request field 'amount' is declared float64" in bad.stderr, bad.stderr


def test_parse_value_rules() -> None:
    from fstore.cli_values import info_request_dtypes, parse_value

    assert parse_value("k", "7", None) == 7 and parse_value("k", "-7", None) == -7 and parse_value("k", "x", None) == "x"
    assert parse_value("t", "12.5", "float64") == 12.5 and parse_value("t", "3", "float32") == 3.0
    assert parse_value("n", "12", "int32") == 12 and parse_value("s", "007", "string") == "007"
    assert parse_value("b", "True", "bool") is True and parse_value("b", "0", "bool") is False
    assert parse_value("w", "2026-01-02T03:04:05Z", "timestamp").isoformat() == "2026-01-02T03:04:05+00:00"
    with pytest.raises(Exception, match="declared bool"):
        parse_value("b", "maybe", "bool")
    assert info_request_dtypes({"request_views": {"q": {"request": {"trip_km": "float64", "customer_id": "int64"}}},
                                "views": [{"join_keys": ["customer_id"], "on_miss": {"request": {"x": "bool"}}}]}) == \
        {"trip_km": "float64", "x": "bool"}
    assert info_request_dtypes({"views": []}) == {}


def test_plan_names_a_production_model_s_request_view_change_and_only_that_breaks(tmp_path: Path) -> None:
    """A model trained on a service with a request view: a harmless change of the service is
    not breaking (the request view is no unknown view); a changed function is, named."""
    root = build(tmp_path / "repo")
    frame = pa.table({"customer_id": pa.array([1, 2], pa.int64()), "amount": [1.0, 2.0], "channel": ["a", "b"],
                      "event_timestamp": utc_ts([T0] * 2)})
    with FeatureStore(root) as fs:
        fs.build_dataset(frame, tmp_path / "train.parquet", feature_service="scored")
        fs.models.register("scorer", tmp_path / "train.parquet")
        fs.models.promote("scorer", 1, "production")
    defs_path = root / "features" / "defs.yaml"
    defs = yaml.safe_load(defs_path.read_text())
    next(s for s in defs["feature_services"] if s["name"] == "scored")["description"] = "now described"
    defs_path.write_text(yaml.safe_dump(defs, sort_keys=False))
    with FeatureStore(root) as fs:
        [impact] = fs.plan().impacts
        assert "feature service scored changed" in impact.message and not impact.breaking, impact.message
        fs.apply()
    (root / "features" / "fns.py").write_text(FUNCTIONS.replace("pc.greater(cols[\"amount\"], 100.0)",
                                                                "pc.greater(cols[\"amount\"], 200.0)"))
    with FeatureStore(root) as fs:
        [impact] = fs.plan().impacts
        assert impact.message.startswith("request view score changed: read by scorer:1 (production)")
        assert impact.breaking


def test_lineage_up_finds_a_service_that_reads_a_view_only_through_a_request_view(tmp_path: Path) -> None:
    root = build(tmp_path / "repo")
    defs_path = root / "features" / "defs.yaml"
    defs = yaml.safe_load(defs_path.read_text())
    defs["feature_services"] += [{"name": "only_score", "features": ["score:ratio"]},
                                 {"name": "only_bad", "features": ["bad:x"]}]  # bad reads no stored feature
    defs_path.write_text(yaml.safe_dump(defs, sort_keys=False))
    with FeatureStore(root) as fs:
        fs.apply()
        for view in ("recent", "stats_v1"):
            services = fs.lineage(view)["services"]
            assert "only_score" in services and "only_bad" not in services, (view, services)


def test_a_function_giving_a_table_with_a_column_twice_is_named() -> None:
    """A request-time function returning a pyarrow Table with a column twice is the function's
    error, naming its owner and the feature (was a bare KeyError from Arrow: INTERNAL)."""
    from fstore.repo.request_time import apply

    def twice(cols: dict) -> pa.Table:
        return pa.table([pa.array([1.0]), pa.array([2.0])], names=["ratio", "ratio"])

    with pytest.raises(ComputedFeatureError, match=r"request_view score: function 'twice' gave 'ratio' 2 times") \
            as err:
        apply(twice, {}, [("ratio", "float64")], 1, where="request_view score")
    assert err.value.field == "ratio"
