"""The served-read hook: one event per served read on all three paths (in process, the
server's Python path, its compiled fast path), what an event carries, and listeners that
fail without failing a read."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from fstore import FeatureStore
from fstore.client import Client
from fstore.monitoring import events
from fstore.monitoring.events import IN_PROCESS, SERVER, SERVER_FAST, ServedRead
from fstore.serving.protocol import GET
from server_util import FSTORE, HOST, Server, free_port, metrics, repo_copy

PLUGINS = str(Path(__file__).resolve().parent / "plugins")
STATS = ["customer_stats:avg_amount_7d", "customer_stats:txn_count_7d", "customer_stats:segment"]
IDS = [1, 2, 3, 777_777]  # the last has no row


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "events", server={"listeners": ["record_listener:explode",
                                                                       "record_listener:record"]})


@pytest.fixture
def collected() -> Iterator[list[ServedRead]]:
    got: list[ServedRead] = []
    events.subscribe(got.append)
    try:
        yield got
    finally:
        events.unsubscribe(got.append)
    assert not events.hook.active


def as_columns(resp: Any) -> tuple[list[list[Any]], list[list[str]], list[list[int | None]]]:
    """values, status names and event times (us) per feature of an OnlineResponse."""
    values = [resp.values(n) for n in resp.feature_names]
    statuses = [[s.name for s in resp.statuses(n)] for n in resp.feature_names]
    stamps = [[None if t is None else int(t.timestamp() * 1_000_000) for t in resp.event_timestamps(n)]
              for n in resp.feature_names]
    return values, statuses, stamps


def test_no_listener_no_event(fs: FeatureStore) -> None:
    assert not events.hook.active and events.hook.listeners == ()
    fs.get_online_features(STATS, entity_rows=[{"customer_id": 1}])  # nothing to hand an event to


def test_an_in_process_read_is_one_event(fs: FeatureStore, collected: list[ServedRead]) -> None:
    before = time.time_ns() // 1000
    resp = fs.get_online_features(STATS, entity_rows=[{"customer_id": i} for i in IDS], request_id="req-42")
    fs.get_online_features(feature_service="fraud_v1", entity_rows=[{"customer_id": 1, "driver_id": 7}])
    assert len(collected) == 2
    ev, svc = collected
    assert ev.path == IN_PROCESS and ev.worker == os.getpid() and before <= ev.time_us <= time.time_ns() // 1000
    assert ev.features == STATS and ev.service is None and ev.caller_request_id == "req-42"
    assert ev.registry_version == fs.registry.snapshot().version and ev.rows == len(IDS) and ev.seconds > 0
    assert ev.feature_names == ["avg_amount_7d", "txn_count_7d", "segment"]
    assert ev.entity_columns() == {"customer_id": IDS}
    values, statuses, stamps = as_columns(resp)
    assert ev.value_columns() == values
    assert [[s.name for s in col] for col in ev.status_columns()] == statuses
    assert ev.timestamp_columns() == stamps
    assert statuses[0][-1] == "DEFAULTED" and statuses[1][-1] == "NOT_FOUND" and stamps[0][-1] is None
    assert svc.service == "fraud_v1" and svc.features is None and svc.request_id > ev.request_id
    assert svc.entity_columns() == {"customer_id": [1], "driver_id": [7]}


def test_a_failing_listener_is_counted_and_logged_once(fs: FeatureStore, collected: list[ServedRead],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: ServedRead) -> None:
        raise ValueError("boom")

    events.subscribe(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="fstore.monitoring"):
            for _ in range(3):
                resp = fs.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
                assert resp.values("segment") is not None
    finally:
        events.unsubscribe(broken)
    name = broken.__qualname__
    assert events.hook.errors[name] == 3
    assert len(collected) == 3  # the other listener still saw every read
    assert sum("raised" in r.message for r in caplog.records) == 1


def read_events(path: Path, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return [json.loads(x) for x in lines]
        time.sleep(0.05)
    raise AssertionError(f"{n} events expected in {path}, found {len(lines)}")


def test_both_server_paths_emit_one_event_each(repo: Path, fs: FeatureStore, tmp_path: Path) -> None:
    """A real server with two listeners from fstore.yaml, the first always raising: every GET
    is answered, the second listener gets one event per GET, from the Python path the first
    time a shape is seen and from the fast path after; the listener errors are counted in
    fstore_listener_errors."""
    out = tmp_path / "events.jsonl"
    srv = Server(repo, metrics_port=free_port(),
                 env={"FSTORE_TEST_EVENTS": str(out), "PYTHONPATH": PLUGINS + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        rows = [{"customer_id": i} for i in IDS]
        with Client(HOST, srv.port, timeout=5, retries=0) as client:
            first = client.get_online_features(STATS, entity_rows=rows)
            second = client.get_online_features(STATS, entity_rows=rows)
            bare = client.get_online_features(STATS, entity_rows=rows, include_metadata=False)
            cols = {"customer_id": IDS}
            client._call(GET, {"features": STATS, "entities": cols, "request_id": "caller-7"}, retry=False)
        got = read_events(out, 4)
        assert [e["path"] for e in got] == [SERVER, SERVER_FAST, SERVER_FAST, SERVER_FAST]
        local = fs.get_online_features(STATS, entity_rows=rows)
        values, statuses, stamps = as_columns(local)
        for e in got:
            assert e["worker"] == srv.proc.pid and e["features"] == STATS and e["service"] is None
            assert e["entities"] == {"customer_id": IDS} and e["rows"] == len(IDS)
            assert e["values"] == values and e["statuses"] == statuses and e["timestamps"] == stamps
            assert e["registry_version"] == fs.registry.snapshot().version
        assert [e["caller_request_id"] for e in got] == [None, None, None, "caller-7"]
        assert got[0]["request_id"] != got[1]["request_id"]
        assert first.to_dict() == second.to_dict() and bare.to_dict() == first.to_dict()
        errors = metrics(srv.metrics_port)
        assert errors.get('fstore_listener_errors_total{listener="explode"}') == 4, errors
        assert srv.logs().count("listener explode raised") == 1, srv.logs()
    finally:
        srv.stop()


def test_a_listener_that_cannot_load_stops_serve_with_its_name(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "bad_listener", server={"listeners": ["no_such_module_q:fn"]})
    run = subprocess.run([FSTORE, "-r", str(root), "serve", "--port", str(free_port())], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1 and "server.listeners" in run.stderr and "no_such_module_q" in run.stderr
    assert "Traceback" not in run.stderr
    doc = yaml.safe_load((root / "fstore.yaml").read_text())
    doc["server"]["listeners"] = "record_listener:record"  # not a list
    (root / "fstore.yaml").write_text(yaml.safe_dump(doc))
    run = subprocess.run([FSTORE, "-r", str(root), "serve"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "server.listeners" in run.stderr
