"""Request-time transformations (docs/transformations.md, "Request-time transformations"):
request views and ``on_miss: compute``, in process, over a real server and client, and in
training sets; the rows a training set gives equal the served vectors row by row.

The data are dated relative to the test's start (T0), so that the server, which reads at
its own "now", sees the same rows fresh or expired as a read at T0 does: margins are hours.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgpack
import pyarrow as pa
import pytest
import yaml

from conftest import make_views_repo, utc_ts, write_view_source
from fstore import FeatureStore
from fstore._ext._constants import Status
from fstore.errors import ComputedFeatureError, DefinitionErrors, EntityDataError, FunctionNotFound, MissingRequestData

UTC = dt.timezone.utc
T0 = dt.datetime.now(UTC).replace(microsecond=0)
H = dt.timedelta(hours=1)

FUNCTIONS = '''
import pyarrow as pa
import pyarrow.compute as pc


def fill_stats(cols):
    """on_miss: an estimate from the request's amount (avg and count have no default)."""
    return {"avg": pc.multiply(cols["amount"], 0.5), "count": pa.array([-1] * len(cols["amount"]), pa.int64())}


def score(cols):
    last = pc.fill_null(cols["last_amount"], -1.0)
    return {"ratio": pc.divide(cols["amount"], cols["avg"]), "big": pc.greater(cols["amount"], 100.0),
            "label": pc.binary_join_element_wise(cols["channel"], pc.cast(last, pa.string()), ":")}


def broken(cols):
    return {"x": pa.array([1] * len(cols["amount"]), pa.int64())}
'''

REQUEST = {"amount": "float64", "channel": "string"}
SERVICES = """
request_views:
  - name: score
    function: score
    request: {amount: float64, channel: string}
    inputs: ["stats:avg", "recent:last_amount"]
    features:
      - {name: ratio, dtype: float64}
      - {name: big, dtype: bool}
      - {name: label, dtype: string}
  - name: bad
    function: broken
    request: {amount: float64}
    features: [{name: x, dtype: float64}]
feature_services:
  - name: scored
    features: ["stats:avg", "stats:count", "stats:tier", "score", "recent:last_amount"]
"""
ROWS = [{"customer_id": c, "amount": a, "channel": ch}
        for c, a, ch in [(1, 50.0, "web"), (2, 250.0, "app"), (3, 20.0, "web"), (4, 10.0, "app"), (5, 300.0, "web")]]


def build_repo(root: Path, services: str, project: dict[str, Any] | None = None) -> Path:
    """stats (ttl 7d, on_miss: compute): 1 and 2 fresh, 3 expired, 4 a stored null avg, 5 none;
    recent (ttl 1d): 1 and 2 fresh, 3 expired. ``project``: keys added to fstore.yaml."""
    root = make_views_repo(root, {
        "stats": {"keys": [("customer_id", "int")], "ttl": "7d", "created": False,
                  "features": [("avg", "float64", None), ("count", "int64", None), ("tier", "string", "none")]},
        "recent": {"keys": [("customer_id", "int")], "ttl": "1d", "created": False,
                   "features": [("last_amount", "float64", None)]},
    }, services=services)
    if project:
        config = yaml.safe_load((root / "fstore.yaml").read_text())
        (root / "fstore.yaml").write_text(yaml.safe_dump({**config, **project}))
    defs = yaml.safe_load((root / "features" / "defs.yaml").read_text())
    stats = next(v for v in defs["feature_views"] if v["name"] == "stats")
    stats["on_miss"] = {"compute": "fill_stats", "request": {"amount": "float64"}}
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(defs, sort_keys=False))
    (root / "features" / "fns.py").write_text(FUNCTIONS)
    write_view_source(root, "stats", pa.table({
        "customer_id": pa.array([1, 2, 3, 4], pa.int64()),
        "ts": utc_ts([T0 - 1 * H, T0 - 2 * H, T0 - 240 * H, T0 - 3 * H]),
        "avg": pa.array([40.0, 100.0, 7.0, None]), "count": pa.array([4, 9, 1, 2], pa.int64()),
        "tier": pa.array(["gold", None, "bronze", "silver"])}))
    write_view_source(root, "recent", pa.table({
        "customer_id": pa.array([1, 2, 3], pa.int64()), "ts": utc_ts([T0 - 0.5 * H, T0 - 0.5 * H, T0 - 120 * H]),
        "last_amount": pa.array([12.5, 80.0, 3.0])}))
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        fs.materialize(T0 - 1000 * H, T0)
    return root


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repo(tmp_path_factory.mktemp("rt") / "repo", SERVICES)


def _entity_frame(rows: list[dict[str, Any]], when: dt.datetime) -> pa.Table:
    return pa.table({"customer_id": pa.array([r["customer_id"] for r in rows], pa.int64()),
                     "amount": [r["amount"] for r in rows], "channel": [r["channel"] for r in rows],
                     "event_timestamp": utc_ts([when] * len(rows))})


def test_in_process_values_and_statuses(fs: FeatureStore) -> None:
    resp = fs.get_online_features(feature_service="scored", entity_rows=ROWS, now=T0)
    d = resp.to_dict(include_metadata=True)
    # on_miss fills NOT_FOUND (5) and EXPIRED (3) from the request (avg = amount / 2, count = -1) as COMPUTED;
    # a stored null (4) is PRESENT and never computed; tier has a default: DEFAULTED where missed, never computed
    assert d["avg"] == [40.0, 100.0, 10.0, None, 150.0]
    assert d["avg__status"] == ["PRESENT", "PRESENT", "COMPUTED", "PRESENT", "COMPUTED"]
    assert d["count"] == [4, 9, -1, 2, -1] and d["count__status"][2:] == ["COMPUTED", "PRESENT", "COMPUTED"]
    assert d["tier"] == ["gold", None, "none", "silver", "none"]
    assert d["tier__status"] == ["PRESENT", "PRESENT", "DEFAULTED", "PRESENT", "DEFAULTED"]
    # the expired row keeps its event time; the missing one has none
    assert d["avg__event_timestamp"][2] == T0 - 240 * H and d["avg__event_timestamp"][4] is None
    # the request view reads the filled avg and the stored (or expired: null) last_amount
    assert d["ratio"] == [1.25, 2.5, 2.0, None, 2.0]
    assert d["big"] == [False, True, False, False, True]
    assert d["label"] == ["web:12.5", "app:80", "web:-1", "app:-1", "web:-1"]
    assert set(d["ratio__status"]) == {"PRESENT"} and set(d["ratio__event_timestamp"]) == {None}
    assert resp.status_matrix.shape == (7, 5) and int(resp.status_matrix[0, 2]) == Status.COMPUTED == 5


def test_a_plain_read_of_the_same_view_is_not_computed_without_request_data(fs: FeatureStore) -> None:
    """on_miss needs its request field only when a row missed."""
    resp = fs.get_online_features(["stats:avg"], entity_rows=[{"customer_id": 1}], now=T0)
    assert resp.values("avg") == [40.0] and resp.statuses("avg") == [Status.PRESENT]
    with pytest.raises(MissingRequestData) as err:
        fs.get_online_features(["stats:avg"], entity_rows=[{"customer_id": 5}], now=T0)
    assert err.value.field == "amount" and "feature_view stats_v1 on_miss" in str(err.value)


def test_missing_request_field_and_dtype_errors_in_process(fs: FeatureStore) -> None:
    rows = [{k: v for k, v in r.items() if k != "channel"} for r in ROWS]
    with pytest.raises(MissingRequestData) as err:
        fs.get_online_features(feature_service="scored", entity_rows=rows, now=T0)
    assert err.value.field == "channel" and "request_view score" in str(err.value)
    with pytest.raises(ComputedFeatureError) as bad:
        fs.get_online_features(["bad:x"], entity_rows=ROWS, now=T0)
    assert bad.value.field == "x" and "declared float64" in str(bad.value) and "int64" in str(bad.value)
    # a row without a field others have is a null (as the network clients send it)
    partial = [dict(ROWS[0]), {"customer_id": 2, "amount": 1.0}]
    assert fs.get_online_features(["score:label"], entity_rows=partial, now=T0).values("label") == ["web:12.5", None]


def test_training_set_equals_the_served_vectors_row_by_row(fs: FeatureStore, server: Any) -> None:
    from server_util import HOST
    from fstore.client import Client

    table = fs.get_historical_features(_entity_frame(ROWS, T0), feature_service="scored")
    served = fs.get_online_features(feature_service="scored", entity_rows=ROWS, now=T0).to_rows()
    with Client(HOST, server.port, timeout=10) as c:
        remote = c.get_online_features(feature_service="scored", entity_rows=ROWS)
    names = [n for n in table.column_names if n not in ("customer_id", "amount", "channel", "event_timestamp")]
    assert names == remote.feature_names == list(served[0])[1:]
    for i, row in enumerate(table.to_pylist()):
        assert {n: row[n] for n in names} == {n: served[i][n] for n in names} == \
            {n: remote.to_rows()[i][n] for n in names}, i
    # the server's statuses too (its "now" is seconds after T0: the same rows fresh or expired)
    local = fs.get_online_features(feature_service="scored", entity_rows=ROWS, now=T0)
    for n in names:
        assert remote.statuses(n) == local.statuses(n), n


def test_a_request_view_alone_reads_its_inputs_filled(fs: FeatureStore, server: Any) -> None:
    """Only score:ratio asked for: its input stats:avg is still what serving answers, the
    on_miss fill where stats missed (3 expired, 5 none: avg = amount / 2, so ratio 2.0), in
    process, on the server's Python path and in a training set alike."""
    from server_util import HOST
    from fstore.client import Client

    expected = [1.25, 2.5, 2.0, None, 2.0]  # 4: a stored null avg is PRESENT, never filled
    local = fs.get_online_features(["score:ratio"], entity_rows=ROWS, now=T0)
    with Client(HOST, server.port, timeout=10) as c:
        remote = c.get_online_features(["score:ratio"], entity_rows=ROWS).values("ratio")
    trained = fs.get_historical_features(_entity_frame(ROWS, T0), ["score:ratio"]).column("ratio").to_pylist()
    assert {"in process": local.values("ratio"), "server": remote, "training set": trained} == \
        {"in process": expected, "server": expected, "training set": expected}
    assert set(local.statuses("ratio")) == {Status.PRESENT}


def test_a_fill_reads_its_inputs_as_stored_whatever_the_order(tmp_path: Path) -> None:
    """No chains (docs/transformations.md): other's on_miss reads stats:avg as stored (null for
    a miss), not stats' own fill, whether stats comes first in the request or not, online and
    in a training set."""
    from fstore.bench.target import Ask, Repository

    root = make_views_repo(tmp_path / "r", {
        "stats": {"keys": [("customer_id", "int")], "created": False, "features": [("avg", "float64", None)]},
        "other": {"keys": [("customer_id", "int")], "created": False, "features": [("y", "float64", None)]}},
        services="request_views:\n- {name: passed, function: pass_y, inputs: ['other:y'], features: [{name: z, dtype: float64}]}\n")
    defs = yaml.safe_load((root / "features" / "defs.yaml").read_text())
    on_miss = {"stats": {"compute": "half", "request": {"amount": "float64"}},
               "other": {"compute": "copy", "request": {"bump": "float64"}, "inputs": ["stats:avg"]}}
    for v in defs["feature_views"]:
        v["on_miss"] = on_miss[v["name"]]
    (root / "features" / "defs.yaml").write_text(yaml.safe_dump(defs, sort_keys=False))
    (root / "features" / "fns.py").write_text(
        "import pyarrow.compute as pc\n"
        "def half(cols):\n    return {'avg': pc.divide(cols['amount'], 2.0)}\n"
        "def copy(cols):\n    return {'y': pc.fill_null(cols['avg'], -1.0)}\n"
        "def pass_y(cols):\n    return {'z': cols['y']}\n")
    for name, col in (("stats", "avg"), ("other", "y")):
        write_view_source(root, name, pa.table({"customer_id": pa.array([1], pa.int64()), "ts": utc_ts([T0 - H]),
                                                col: pa.array([3.0])}))
    rows = [{"customer_id": c, "amount": 8.0, "bump": 0.0} for c in (1, 2)]  # 2: in neither view
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        fs.materialize(T0 - 10 * H, T0)
        frame = pa.table({"customer_id": pa.array([1, 2], pa.int64()), "amount": [8.0, 8.0], "bump": [0.0, 0.0],
                          "event_timestamp": utc_ts([T0, T0])})
        for features in (["stats:avg", "other:y"], ["other:y", "stats:avg"]):
            online = fs.get_online_features(features, entity_rows=rows, now=T0).to_dict()
            trained = fs.get_historical_features(frame, features).to_pydict()
            assert {k: online[k] for k in ("avg", "y")} == {k: trained[k] for k in ("avg", "y")} == \
                {"avg": [3.0, 4.0], "y": [3.0, -1.0]}, features
        # a request view alone: other is filled for it, and the lineage names what that fill read
        table, lineage = fs.build_dataset(frame, tmp_path / "set.parquet", ["passed:z"])
        assert table.column("z").to_pylist() == [3.0, -1.0]
        views = {v["view"]: v for v in json.loads(lineage.read_text())["views"]}
        assert views["stats_v1"]["read_by"] == ["feature_view other_v1 on_miss"] and "on_miss" in views["other_v1"]
        # and fstore bench sends the request fields of that fill too
        assert Repository(root).resolve(Ask(features=["passed:z"])).request_fields == {"bump": "float64"}


def test_server_errors_name_the_field(server: Any) -> None:
    from server_util import HOST
    from fstore.client import Client

    with Client(HOST, server.port, timeout=10) as c:
        with pytest.raises(MissingRequestData) as err:
            c.get_online_features(["score:ratio"], entity_rows=[{"customer_id": 1, "amount": 1.0}])
        assert err.value.field == "channel"
        with pytest.raises(ComputedFeatureError) as bad:
            c.get_online_features(["bad:x"], entity_rows=ROWS)
        assert bad.value.field == "x"
        assert c.get_online_features(["stats:avg"], entity_rows=[{"customer_id": 1}]).values("avg") == [40.0]


def test_historical_missing_request_column_is_named(fs: FeatureStore) -> None:
    frame = _entity_frame(ROWS, T0).drop(["channel"])
    with pytest.raises(MissingRequestData) as err:
        fs.get_historical_features(frame, ["score:label"])
    assert err.value.field == "channel" and isinstance(err.value, EntityDataError)
    with pytest.raises(ComputedFeatureError):
        fs.get_historical_features(_entity_frame(ROWS, T0), ["bad:x"])


def test_the_fast_path_declines_request_shapes_and_keeps_plain_ones(repo: Path) -> None:
    """The compiled FastGet answers a plain GET, and returns None (the Python path) for a shape
    with request-time features; the Python path answers that one."""
    from fstore.serving.server import Limits, ServerState
    from fstore._ext._constants import Op

    st = ServerState(str(repo), Limits())
    try:
        plain = {"features": ["recent:last_amount"], "entities": {"customer_id": [1, 2]}}
        request = {"features": ["score:ratio"], "entities": {"customer_id": [1], "amount": [5.0], "channel": ["w"]}}
        for args in (plain, request):
            st.prepared_get(args["features"], None, False)
        assert st.fast.answer(msgpack.packb([int(Op.OP_GET), 7, plain])) is not None
        assert st.fast.answer(msgpack.packb([int(Op.OP_GET), 8, request])) is None
        prepared = st.prepared_get(request["features"], None, False)
        assert prepared.request is not None and st.prepared_get(plain["features"], None, False).request is None
    finally:
        st.close()
        st.online.close()


def test_definition_errors_name_file_object_field(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"stats": {"keys": [("customer_id", "int")], "created": False,
                                                      "features": [("avg", "float64", None)]}}, services="""
request_views:
  - name: s
    function: nope
    request: {amount: float64}
    inputs: ["stats:nothing"]
    features: [{name: y, dtype: float64}]
""")
    write_view_source(root, "stats", pa.table({"customer_id": pa.array([1], pa.int64()), "ts": utc_ts([T0]),
                                               "avg": pa.array([1.0])}))
    (root / "features" / "fns.py").write_text("def other(cols):\n    return cols\n")
    with FeatureStore(root) as fs, pytest.raises(DefinitionErrors) as err:
        fs.plan()
    text = str(err.value)
    assert "features/defs.yaml: request_view s.function: no function 'nope'" in text
    assert "request_view s.inputs[0]: feature view 'stats' has no feature 'nothing'" in text


def test_a_changed_function_is_refused_until_applied(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"stats": {"keys": [("customer_id", "int")], "created": False,
                                                      "features": [("avg", "float64", None)]}}, services="""
request_views:
  - name: s
    function: twice
    request: {amount: float64}
    features: [{name: y, dtype: float64}]
""")
    write_view_source(root, "stats", pa.table({"customer_id": pa.array([1], pa.int64()), "ts": utc_ts([T0]),
                                               "avg": pa.array([1.0])}))
    fns = root / "features" / "fns.py"
    fns.write_text("import pyarrow.compute as pc\ndef twice(cols):\n    return {'y': pc.multiply(cols['amount'], 2.0)}\n")
    with FeatureStore(root) as fs:
        fs.apply()
        assert fs.get_online_features(["s:y"], entity_rows=[{"customer_id": 1, "amount": 2.0}]).values("y") == [4.0]
    fns.write_text("import pyarrow.compute as pc\ndef twice(cols):\n    return {'y': pc.multiply(cols['amount'], 3.0)}\n")
    with FeatureStore(root) as fs:
        assert any(c.kind == "request_views" and c.action == "change" for c in fs.plan().changes)
        with pytest.raises(FunctionNotFound) as err:
            fs.get_online_features(["s:y"], entity_rows=[{"customer_id": 1, "amount": 2.0}])
        assert "changed since it was applied" in str(err.value) and "features/fns.py" in str(err.value)


def test_python_definitions_take_the_function_itself(tmp_path: Path) -> None:
    """RequestView(function=fn) and on_miss={"compute": fn} in features/*.py: stored by name,
    file and source hash, found again by the reading process."""
    root = make_views_repo(tmp_path / "r", {"stats": {"keys": [("customer_id", "int")], "created": False,
                                                      "features": [("avg", "float64", None)]}})
    (root / "features" / "defs.yaml").unlink()
    (root / "features" / "defs.py").write_text('''
import pyarrow.compute as pc
from fstore import Entity, Feature, FeatureView, RequestView, Source

def half(cols):
    return {"avg": pc.divide(cols["amount"], 2.0)}

def plus_one(cols):
    return {"y": pc.add(cols["avg"], 1.0)}

customer = Entity(name="e_customer_id", join_keys=["customer_id"])
stats = FeatureView(name="stats", entities=[customer], source=Source(name="s", path="data/stats", timestamp_field="ts"),
                    features=[Feature(name="avg", dtype="float64")], on_miss={"compute": half, "request": {"amount": "float64"}})
bumped = RequestView(name="bumped", function=plus_one, inputs=stats[["avg"]], features=[Feature(name="y", dtype="float64")])
''')
    write_view_source(root, "stats", pa.table({"customer_id": pa.array([1], pa.int64()), "ts": utc_ts([T0 - H]),
                                               "avg": pa.array([3.0])}))
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        fs.materialize(T0 - 10 * H, T0)
        doc = fs.registry.require()
        assert doc["request_views"]["bumped"]["function"]["file"] == "features/defs.py"
        assert doc["feature_views"]["stats_v1"]["on_miss"]["function"]["function"] == "half"
        resp = fs.get_online_features(["stats:avg", "bumped:y"], entity_rows=[{"customer_id": 1, "amount": 8.0},
                                                                              {"customer_id": 2, "amount": 8.0}], now=T0)
        assert resp.values("avg") == [3.0, 4.0] and resp.values("y") == [4.0, 5.0]
        assert resp.statuses("avg") == [Status.PRESENT, Status.COMPUTED]


def test_computed_values_are_counted_by_status(repo: Path) -> None:
    """fstore_values_total counts COMPUTED like every status (metrics sized by the Status enum)."""
    import time

    from server_util import HOST, Server, free_port, metrics
    from fstore.client import Client

    srv = Server(repo, metrics_port=free_port())
    try:
        with Client(HOST, srv.port, timeout=10) as c:
            resp = c.get_online_features(["stats:avg", "score:ratio"], entity_rows=ROWS)
        computed = resp.statuses("avg").count(Status.COMPUTED)
        assert computed == 2  # customer 3 (expired) and 5 (no row)
        key = 'fstore_values_total{status="COMPUTED",view="stats_v1"}'
        for _ in range(100):  # counters may be flushed on a timer: bounded wait
            got = {k.replace(" ", ""): v for k, v in metrics(srv.metrics_port).items()}
            if any(k.startswith("fstore_values_total{") and 'status="COMPUTED"' in k and "stats_v1" in k and v
                   for k, v in got.items()):
                break
            time.sleep(0.05)
        found = {k: v for k, v in got.items() if 'status="COMPUTED"' in k and "stats_v1" in k}
        assert list(found.values()) == [computed], (key, found)
    finally:
        srv.stop()
