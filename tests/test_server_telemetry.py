"""The server's side of telemetry (issue 10): a caller's request_id echoed in the GET reply
and handed to served-read listeners on both server paths, the client name of HELLO, INFO
with every feature's dtype and declared default, the services and the live versions, the
slow-request log, and fstore_values_total by view. The real ``fstore serve`` in a
subprocess with a served-read listener from fstore.yaml; raw frames where the bytes matter.
Only 127.0.0.1; every wait is bounded.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fstore.monitoring.events import SERVER, SERVER_FAST
from conftest import edit_defs
from fstore import FeatureStore
from server_util import (GET, HEALTH, HELLO, INFO, STATS, UTC, Raw, Server, assert_error, free_port, metrics,
                         repo_copy)
from test_events import read_events

pytestmark = pytest.mark.timeout(120)

PLUGINS = str(Path(__file__).resolve().parent / "plugins")
SECRET = "t3lemetry-s3cret"
TOKENS = [{"name": "reader", "scopes": ["read"], "secret_env": "FSTORE_T_TELEMETRY"}]
IDS = [1, 2, 3, 777_777]  # the last has no row


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "telemetry", {"listeners": ["record_listener:record"], "slow_request_ms": 0,
                                                     "auth": {"tokens": TOKENS}})


@pytest.fixture(scope="module")
def events_file(repo: Path) -> Path:
    return repo.parent / "events.jsonl"


@pytest.fixture(scope="module")
def telemetry(repo: Path, events_file: Path) -> Iterator[Server]:
    """A server with a recording listener, every request logged as slow (threshold 0), a
    token, and metrics."""
    env = {"FSTORE_TEST_EVENTS": str(events_file), "FSTORE_T_TELEMETRY": SECRET,
           "PYTHONPATH": PLUGINS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    srv = Server(repo, env=env, metrics_port=free_port(), client={"token": SECRET})
    try:
        yield srv
    finally:
        srv.stop()


def connect(port: int, client: Any = "svc-a\r\n\r\n") -> Raw:
    """A raw connection greeted with the token and ``client`` as its name."""
    raw = Raw(port, hello=False)
    raw.request(HELLO, 1, {"version": 1, "token": SECRET, "client": client})
    rid, ok, result = raw.read()
    assert (rid, ok) == (1, True), result
    return raw


def get(raw: Raw, rid: int, features: list[str], ids: list[int] = IDS, **extra: Any) -> Any:
    raw.request(GET, rid, {"features": features, "entities": {"customer_id": ids}, **extra})
    return raw.read()


# ---- 1. request_id ------------------------------------------------------------------------------

def test_request_id_is_echoed_and_recorded_on_both_paths(telemetry: Server, events_file: Path) -> None:
    """A new shape takes the Python path, the same shape again the compiled one: both echo
    the caller's request_id last in the reply map (with and without metadata) and hand it
    to the listener; a GET without one gets no such key."""
    shape = ["customer_stats:segment", "customer_stats:txn_count_7d"]  # used by no other test here
    before = len(events_file.read_text().splitlines()) if events_file.exists() else 0
    with connect(telemetry.port) as raw:
        python = get(raw, 2, shape, request_id="req-1")
        fast = get(raw, 2, shape, request_id="req-1")
        bare = get(raw, 3, shape, request_id="ü" * 128, meta=False)
        plain = get(raw, 4, shape)
    assert python == fast and python[:2] == [2, True]
    assert list(python[2])[-1] == "request_id" and python[2]["request_id"] == "req-1"
    assert bare[2]["request_id"] == "ü" * 128 and "status" not in bare[2]
    assert "request_id" not in plain[2]
    assert {k: v for k, v in python[2].items() if k != "request_id"} == plain[2]
    assert {k: v for k, v in bare[2].items() if k != "request_id"} == \
        {k: v for k, v in plain[2].items() if k not in ("status", "ts")}
    got = read_events(events_file, before + 4)[before:]
    assert [e["path"] for e in got] == [SERVER, SERVER_FAST, SERVER_FAST, SERVER_FAST]
    assert [e["caller_request_id"] for e in got] == ["req-1", "req-1", "ü" * 128, None]
    assert {e["client"] for e in got} == {"svc-a"}  # HELLO's name, without the CR LF CR LF fstore's clients add


@pytest.mark.parametrize("bad", [17, "", "x" * 129, ["req"], b"req"])
def test_a_bad_request_id_is_refused_naming_the_field(telemetry: Server, bad: Any) -> None:
    """On a shape the compiled path knows, too: it leaves the request to the Python path,
    which refuses it; the connection goes on."""
    with connect(telemetry.port) as raw:
        assert get(raw, 2, STATS)[1] is True
        err = assert_error(get(raw, 3, STATS, request_id=bad), 3, "BAD_REQUEST")
        assert err["field"] == "request_id" and "request_id must be a string of 1 to 128 characters" in \
            err["message"], err
        assert get(raw, 4, STATS, request_id="ok")[2]["request_id"] == "ok"


# ---- 2. the client name of HELLO ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", [7, "", "n" * 129, ["svc"], {"name": "svc"}])
def test_a_bad_client_name_is_refused_naming_the_field(telemetry: Server, bad: Any) -> None:
    """The HELLO is refused (BAD_REQUEST, field client) and the connection is not greeted."""
    with Raw(telemetry.port, hello=False) as raw:
        raw.request(HELLO, 1, {"version": 1, "token": SECRET, "client": bad})
        err = assert_error(raw.read(), 1, "BAD_REQUEST")
        assert err["field"] == "client" and "client must be a string of 1 to 128 characters" in err["message"]
        raw.request(GET, 2, {"features": STATS, "entities": {"customer_id": [1]}})
        assert_error(raw.read(), 2, "UNAUTHENTICATED")


def test_no_client_name_is_fine(telemetry: Server) -> None:
    with Raw(telemetry.port, hello=False) as raw:
        raw.request(HELLO, 1, {"version": 1, "token": SECRET})
        assert raw.read()[1] is True
        assert get(raw, 2, STATS)[1] is True


# ---- 4. the slow-request log ----------------------------------------------------------------------

def test_slow_requests_are_logged_with_their_ids_and_never_the_token(telemetry: Server) -> None:
    """With server.slow_request_ms 0 every request is "slow": one WARNING line each, on both
    GET paths and for the other ops, naming op, rows, ms, features or service, request_id,
    client and peer."""
    with connect(telemetry.port, client="checkout-7\r\n\r\n") as raw:
        peer = "%s:%s" % raw.sock.getsockname()
        get(raw, 2, STATS, request_id="slow-py")  # the first of its shape on this worker? either path logs
        get(raw, 3, STATS, request_id="slow-fast")
        raw.request(GET, 4, {"service": "fraud_v1", "entities": {"customer_id": IDS, "driver_id": [7] * len(IDS)},
                                "request_id": "slow-svc"})
        assert raw.read()[1] is True
        raw.request(HEALTH, 5, {})
        assert raw.read()[1] is True
    log = ""
    for _ in range(200):  # the lines are written after the replies: wait for them, boundedly
        log = telemetry.log.read_text()
        lines = [x for x in log.splitlines() if f"peer={peer}" in x]
        if len(lines) >= 5:
            break
        time.sleep(0.05)
    assert len(lines) == 5, lines  # HELLO, 3 GETs, HEALTH
    assert all(" WARNING slow request: op=" in x and "client='checkout-7'" in x for x in lines), lines
    hello, py, fast, svc, health = lines
    assert "op=hello rows=- ms=" in hello and "request_id=None" in hello
    feats = "features='customer_stats:avg_amount_7d','customer_stats:txn_count_7d','customer_stats:segment'"
    assert "op=get rows=4 ms=" in py and f"{feats} request_id='slow-py'" in py
    assert "op=get rows=4 ms=" in fast and f"{feats} request_id='slow-fast'" in fast
    assert "service='fraud_v1' request_id='slow-svc'" in svc
    assert "op=health rows=- ms=" in health and "request_id=None" in health
    assert SECRET not in log


def test_the_slow_request_log_is_off_by_default(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "no_slow_log")
    srv = Server(root)
    try:
        with Raw(srv.port) as raw:
            get(raw, 2, STATS, request_id="a")
            get(raw, 3, STATS, request_id="b")
        assert srv.terminate(20) == 0
        assert "slow request" not in srv.log.read_text()
    finally:
        srv.stop()


# ---- 3. INFO: dtypes and defaults, services, live versions ---------------------------------------------

def test_info_lists_every_version_s_defaults_the_services_and_the_live_versions(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """customer_stats version 2 is applied but has no online data: INFO lists both versions'
    features with their declared defaults (typed as a GET answers them), while unpinned
    references still read version 1 (``live``)."""
    root = repo_copy(tmp_path_factory, "info")
    stamp = pa.array([dt.datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"customer_id": [1], "event_timestamp": stamp, "avg_amount_7d": [1.0],
                             "txn_count_7d": [1], "segment": ["s"], "flag": [b"x"]}), root / "data" / "stats2.parquet")

    def bump(doc: dict[str, Any]) -> None:
        v1 = next(v for v in doc["feature_views"] if v["name"] == "customer_stats")
        doc["sources"].append({"name": "stats2_src", "path": "data/stats2.parquet",
                               "timestamp_field": "event_timestamp"})
        doc["feature_views"].append({**v1, "version": 2, "source": "stats2_src", "features": [*v1["features"],
                                                                       {"name": "flag", "dtype": "bytes",
                                                                        "default": "ok"}]})
    edit_defs(root, bump)
    with FeatureStore(root) as fs:
        fs.apply()
    srv = Server(root)
    try:
        with Raw(srv.port) as raw:
            raw.request(INFO, 2, {})
            rid, ok, info = raw.read()
    finally:
        srv.stop()
    assert (rid, ok) == (2, True)
    assert {"project", "registry_version", "server", "views", "services", "features", "live"} == set(info)
    assert info["project"] == "demo" and {(v["name"], v["version"]) for v in info["views"]} >= \
        {("customer_stats", 1), ("customer_stats", 2), ("profile", 1)}
    stats = {"avg_amount_7d": {"dtype": "float64", "default": 0.0}, "txn_count_7d": {"dtype": "int64", "default": None},
             "segment": {"dtype": "string", "default": None}}
    assert info["features"]["customer_stats_v1"] == stats
    assert info["features"]["customer_stats_v2"] == {**stats, "flag": {"dtype": "bytes", "default": b"ok"}}
    profile = info["features"]["profile_v1"]
    assert profile["signup"] == {"dtype": "timestamp", "default": dt.datetime(2000, 1, 1, tzinfo=UTC)}
    assert profile["score"] == {"dtype": "float32", "default": -1.0} and profile["age"]["default"] is None
    assert info["features"]["device_v1"]["label"] == {"dtype": "string", "default": "?"}
    assert info["live"] == {"customer_stats": "customer_stats_v1", "customer_driver": "customer_driver_v1",
                            "profile": "profile_v1", "device": "device_v1"}
    assert info["services"] == {"fraud_v1": ["customer_stats:avg_amount_7d", "customer_driver"],
                                "everything": ["customer_stats", "profile", "customer_driver"]}


# ---- 5. fstore_values_total by view -----------------------------------------------------------------

def values_by_view(port: int) -> dict[tuple[str, str], float]:
    out = {}
    for key, value in metrics(port).items():
        if key.startswith("fstore_values_total{"):
            labels = dict(x.split("=") for x in key[len("fstore_values_total{"):-1].split(","))
            if value:  # a labelled counter exists at 0 once its view was seen
                out[(labels["view"].strip('"'), labels["status"].strip('"'))] = value
    return out


def test_values_total_counts_each_view_s_statuses(telemetry: Server) -> None:
    """Features of two views, interleaved, on both GET paths: each view's values are counted
    under its versioned name, by status, exactly as the replies' status bytes say."""
    features = ["profile:age", "customer_stats:segment", "profile:nick", "customer_stats:txn_count_7d",
                "profile:signup"]
    view = ["profile_v1", "customer_stats_v1", "profile_v1", "customer_stats_v1", "profile_v1"]
    names = ["PRESENT", "NOT_FOUND", "EXPIRED", "DEFAULTED"]
    ids = [*range(1, 61), 777_777]
    port = telemetry.metrics_port
    before = values_by_view(port)
    expected = dict(before)
    with connect(telemetry.port) as raw:
        for rid in (2, 3):  # the Python path, then the compiled one
            reply = get(raw, rid, features, ids)
            assert reply[1] is True
            status, n = reply[2]["status"], len(ids)
            for f, v in enumerate(view):
                for s in status[f * n:(f + 1) * n]:
                    expected[(v, names[s])] = expected.get((v, names[s]), 0) + 1
    assert {s for (v, s) in expected if v == "profile_v1"} >= {"PRESENT", "NOT_FOUND"}
    for _ in range(200):
        got = values_by_view(port)
        if got == expected:
            break
        time.sleep(0.05)
    assert got == expected
