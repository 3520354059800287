"""Served-feature logging (fstore.monitoring.logging): sampled reads of logged feature
services written as Parquet under the offline store, on all three paths (in process, the
server's Python path, its compiled fast path), read back with read_logs; the model-received
log; the configuration's checks."""
from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import edit_defs, find
from fstore import FeatureStore
from fstore.client import Client
from fstore.errors import InvalidConfig, InvalidDefinition
from fstore.monitoring.logging import sampled
from fstore.monitoring.logs import log_dir, log_features, log_features_batch, read_logs
from server_util import HOST, Server, free_port, metrics, repo_copy

SERVICE = "everything"  # customer_stats, profile (every dtype) and customer_driver: keys customer_id, driver_id
FIXED = ["request_id", "caller_request_id", "request_time", "service", "model", "registry_version", "path", "worker", "row"]
STATUS_CODES = {"PRESENT": 0, "NOT_FOUND": 1, "EXPIRED": 2, "DEFAULTED": 3, "UNAVAILABLE": 4}


def logged_repo(tmp_path_factory: pytest.TempPathFactory, name: str, rate: float | None = 1.0,
                monitoring: dict[str, Any] | None = None) -> Path:
    """A copy of the test repository with ``everything`` logged at ``rate`` (None: no logging
    mapping on the service) and ``monitoring.logging`` settings, applied."""
    root = repo_copy(tmp_path_factory, name)
    project = {"project": "demo", "monitoring": {"logging": {"roll_seconds": 3600, **(monitoring or {})}}}
    (root / "fstore.yaml").write_text(yaml.safe_dump(project))

    def on(doc: dict[str, Any]) -> None:
        if rate is not None:
            find(doc["feature_services"], SERVICE)["logging"] = {"sample_rate": rate}
    edit_defs(root, on)
    with FeatureStore(root) as fs:
        fs.apply()
    return root


def rows(ids: list[int]) -> list[dict[str, int]]:
    return [{"customer_id": i, "driver_id": 7} for i in ids]


def check_rows_match(table: Any, resp: Any, ids: list[int], request_id: str | None) -> None:
    """The log rows of one read are the read: keys, values, statuses and event times."""
    got = table.to_pylist()
    assert [r["row"] for r in got] == list(range(len(ids)))
    assert [r["customer_id"] for r in got] == ids and all(r["driver_id"] == 7 for r in got)
    assert len({r["request_id"] for r in got}) == 1 and all(r["caller_request_id"] == request_id for r in got)
    for name in resp.feature_names:
        assert [r[name] for r in got] == resp.values(name), name
        assert [r[f"{name}__status"] for r in got] == [STATUS_CODES[s.name] for s in resp.statuses(name)]
        assert [r[f"{name}__event_timestamp"] for r in got] == resp.event_timestamps(name), name


def test_in_process_reads_are_logged_with_every_column_and_the_metadata(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    repo = logged_repo(tmp_path_factory, "log_inproc")
    ids = [1, 2, 3, 777_777]  # the last has no row
    with FeatureStore(repo) as fs:
        resp = fs.get_online_features(feature_service=SERVICE, entity_rows=rows(ids), request_id="caller-1")
        fs.get_online_features(["customer_stats:avg_amount_7d"], entity_rows=[{"customer_id": 1}])  # no service
        version = fs.registry.snapshot().version
        assert read_logs(repo, SERVICE).num_rows == 0  # held until a roll or close
    table = read_logs(repo, SERVICE)  # close() wrote it
    assert table.column_names[:len(FIXED) + 2] == FIXED + ["customer_id", "driver_id"]
    assert table.column_names[len(FIXED) + 2:][:3] == ["avg_amount_7d", "avg_amount_7d__status",
                                                       "avg_amount_7d__event_timestamp"]
    assert str(table.schema.field("age").type) == "int32" and str(table.schema.field("age__status").type) == "int8"
    assert str(table.schema.field("request_time").type) == "timestamp[us, tz=UTC]"
    check_rows_match(table, resp, ids, "caller-1")
    first = table.to_pylist()[0]
    assert first["path"] == "in_process" and first["worker"] == os.getpid() and first["service"] == SERVICE
    assert first["registry_version"] == version and first["request_id"].startswith(f"{os.getpid()}-")
    meta = json.loads(table.schema.metadata[b"fstore.log"])
    assert meta["format"] == 1 and meta["service"] == SERVICE and meta["keys"] == ["customer_id", "driver_id"]
    assert {"column": "trips_together", "view": "customer_driver_v1", "feature": "trips_together",
            "dtype": "int64"} in meta["features"]
    files = list(log_dir(fs.config, SERVICE).glob("date=*/part-*.parquet"))
    assert len(files) == 1 and b"fstore.log" in pq.read_schema(files[0]).metadata


def test_server_paths_are_logged_and_a_graceful_stop_flushes(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A real server with roll_seconds an hour: nothing is written until SIGTERM, which writes
    every row; the Python path (first read of a shape) and the fast path are both logged, each
    row as the client received it, the caller's request id kept; the counters are exported."""
    repo = logged_repo(tmp_path_factory, "log_server")
    srv = Server(repo, metrics_port=free_port())
    try:
        with Client(HOST, srv.port, timeout=5, retries=0) as client:
            first = client.get_online_features(feature_service=SERVICE, entity_rows=rows([1, 2]), request_id="a")
            second = client.get_online_features(feature_service=SERVICE, entity_rows=rows([3]), request_id="b")
            client.get_online_features(feature_service=SERVICE, entity_rows=rows([4]))
        deadline = time.monotonic() + 15
        while metrics(srv.metrics_port).get(f'fstore_log_records_total{{service="{SERVICE}"}}') != 4:
            assert time.monotonic() < deadline, metrics(srv.metrics_port)
            time.sleep(0.1)
        assert metrics(srv.metrics_port).get(f'fstore_log_dropped_total{{service="{SERVICE}"}}') == 0
        assert read_logs(repo, SERVICE).num_rows == 0  # not rolled yet
        assert srv.terminate() == 0
    finally:
        srv.stop()
    table = read_logs(repo, SERVICE)
    paths = table.column("path").to_pylist()
    # the first read of a shape takes the Python path; later ones the fast path, unless the
    # registry check (due once a second) fell between them on a slow machine: then that one
    # read takes the Python path again and the next the fast path
    assert paths[:2] == ["server", "server"] and "server_fast" in paths[2:], paths
    assert set(paths) == {"server", "server_fast"}, paths
    assert table.column("caller_request_id").to_pylist() == ["a", "a", "b", None]
    assert set(table.column("worker").to_pylist()) == {srv.proc.pid}
    check_rows_match(table.slice(0, 2), first, [1, 2], "a")
    check_rows_match(table.slice(2, 1), second, [3], "b")
    assert len(set(table.column("request_id").to_pylist())) == 3


def test_sampling_is_reproducible_from_the_request_id(tmp_path_factory: pytest.TempPathFactory) -> None:
    """At 0.3, the same caller request ids give the same sampled set in two processes' runs
    and on the server, and it is the set the documented hash rule names."""
    repo = logged_repo(tmp_path_factory, "log_sample", rate=0.3)
    ids = [f"req-{i}" for i in range(200)]
    expected = {r for r in ids if sampled(r, 0.3)}
    assert 30 < len(expected) < 90
    for _ in range(2):
        with FeatureStore(repo) as fs:
            for r in ids:
                fs.get_online_features(feature_service=SERVICE, entity_rows=rows([1]), request_id=r)
    got = read_logs(repo, SERVICE).column("caller_request_id").to_pylist()
    assert collections.Counter(got) == {r: 2 for r in expected}
    srv = Server(repo)
    try:
        with Client(HOST, srv.port, timeout=5, retries=0) as client:
            for r in ids:
                client.get_online_features(feature_service=SERVICE, entity_rows=rows([1]), request_id=r)
        assert srv.terminate() == 0
    finally:
        srv.stop()
    table = read_logs(repo, SERVICE)
    served = [c for c, p in zip(table.column("caller_request_id").to_pylist(), table.column("path").to_pylist())
              if p != "in_process"]
    assert sorted(served) == sorted(expected)


def test_a_service_without_logging_is_not_logged_unless_a_default_rate_is_set(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    repo = logged_repo(tmp_path_factory, "log_off", rate=None)
    with FeatureStore(repo) as fs:
        fs.get_online_features(feature_service=SERVICE, entity_rows=rows([1]))
        assert fs._feature_log is None  # nothing subscribed: reads build no event
    assert read_logs(repo, SERVICE).num_rows == 0
    repo = logged_repo(tmp_path_factory, "log_default", rate=None, monitoring={"sample_rate": 1.0})
    with FeatureStore(repo) as fs:
        fs.get_online_features(feature_service=SERVICE, entity_rows=rows([1]))
        fs.get_online_features(feature_service="fraud_v1", entity_rows=rows([1]))
    assert read_logs(repo, SERVICE).num_rows == 1 and read_logs(repo, "fraud_v1").num_rows == 1


def test_a_full_queue_drops_and_counts_and_never_blocks_a_read(tmp_path_factory: pytest.TempPathFactory) -> None:
    """queue_size 1: a burst of pipelined reads overflows it; every read is answered, and the
    rows taken plus the rows dropped are every row read, in the metrics as in the files."""
    repo = logged_repo(tmp_path_factory, "log_drop", monitoring={"queue_size": 1})
    srv = Server(repo, metrics_port=free_port())
    n = 300
    try:
        with Client(HOST, srv.port, timeout=10, retries=0) as client:
            futures = [client.get_online_features(feature_service=SERVICE, entity_rows=rows([1, 2]))
                       for _ in range(n)]
            assert len(futures) == n
        key = f'{{service="{SERVICE}"}}'
        deadline = time.monotonic() + 15
        while True:
            m = metrics(srv.metrics_port)
            taken, dropped = m.get(f"fstore_log_records_total{key}", 0), m.get(f"fstore_log_dropped_total{key}", 0)
            if taken + dropped == 2 * n or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert taken + dropped == 2 * n and taken >= 2 and dropped > 0, m
        assert srv.terminate() == 0
    finally:
        srv.stop()
    assert read_logs(repo, SERVICE).num_rows == taken


def test_a_sigkill_leaves_only_readable_files(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Files rolled every 5 rows while reads go on, then kill -9: every visible file reads,
    and read_logs returns whole reads (no torn file)."""
    repo = logged_repo(tmp_path_factory, "log_kill", monitoring={"roll_rows": 5})
    srv = Server(repo)
    stop = threading.Event()

    errors: list[Exception] = []

    def load() -> None:
        with Client(HOST, srv.port, timeout=5, retries=1) as client:
            for i in range(5000):  # bounded; a read that fails (a loaded machine, or the kill) is
                if stop.is_set():  # noted and the loop goes on until the test stops it
                    return
                try:
                    client.get_online_features(feature_service=SERVICE, entity_rows=rows([1 + i % 50]))
                except Exception as exc:  # noqa: BLE001 - the server is killed under it
                    errors.append(exc)
                    time.sleep(0.05)

    reader = threading.Thread(target=load)
    try:
        reader.start()
        deadline = time.monotonic() + 60
        folder = repo / "data" / "offline" / "logs" / SERVICE
        while len(list(folder.glob("date=*/part-*.parquet"))) < 3:
            assert time.monotonic() < deadline and srv.alive(), (errors[-3:], srv.logs())
            time.sleep(0.02)
        os.killpg(srv.proc.pid, signal.SIGKILL)
    finally:
        stop.set()
        reader.join(10)
        srv.stop()
    for f in folder.glob("date=*/*.parquet"):
        pq.read_table(f)
    table = read_logs(repo, SERVICE)
    assert table.num_rows >= 15
    assert table.column("customer_id").null_count == 0


def test_log_features_writes_the_model_log(tmp_path_factory: pytest.TempPathFactory) -> None:
    repo = logged_repo(tmp_path_factory, "log_model")
    with FeatureStore(repo) as fs:
        path = log_features(fs, SERVICE, "caller-9", {"customer_id": 1, "driver_id": 7},
                            {"avg_amount_7d": 0.0, "segment": "gold"}, time="2026-01-02T03:04:05Z")
        log_features_batch(repo, SERVICE, [
            {"caller_request_id": "caller-10", "entity": {"customer_id": 2, "driver_id": 7},
             "features": {"avg_amount_7d": 1.5, "age": 30}, "time": "2026-01-02T03:04:06Z"}])
    assert path.parent.parent.name == "model" and path.parent.name == "date=2026-01-02"
    model = read_logs(repo, SERVICE, model=True)
    assert model.to_pylist()[0]["caller_request_id"] == "caller-9"
    assert [r["avg_amount_7d"] for r in model.to_pylist()] == [0.0, 1.5]
    assert [r["segment"] for r in model.to_pylist()] == ["gold", None]
    assert [r["age"] for r in model.to_pylist()] == [None, 30]
    assert json.loads(model.schema.metadata[b"fstore.log"])["keys"] == ["customer_id", "driver_id"]
    assert read_logs(repo, SERVICE).num_rows == 0  # the served log is another folder
    assert read_logs(repo, SERVICE, "2026-01-02T03:04:06Z", None, model=True).num_rows == 1
    assert read_logs(repo, SERVICE, None, "2026-01-02T03:04:06Z", model=True).num_rows == 2  # both ends included
    assert read_logs(repo, SERVICE, None, "2026-01-02T03:04:05.999999Z", model=True).num_rows == 1


def test_logging_settings_are_checked(tmp_path: Path) -> None:
    from fstore.config import RepoConfig
    from fstore.repo.definitions import FeatureService, service_sample_rate

    with pytest.raises(InvalidDefinition, match="logging.sample_rate"):
        FeatureService(name="s", features=["v:f"], logging={"sample_rate": 1.5})
    with pytest.raises(InvalidDefinition, match="unknown setting 'rate'"):
        FeatureService(name="s", features=["v:f"], logging={"rate": 1})
    with pytest.raises(InvalidConfig, match="monitoring.logging.sample_rate"):
        RepoConfig.from_dict(tmp_path, {"project": "p", "monitoring": {"logging": {"sample_rate": -0.1}}})
    with pytest.raises(InvalidConfig, match="monitoring.logging.roll_rows"):
        RepoConfig.from_dict(tmp_path, {"project": "p", "monitoring": {"logging": {"roll_rows": 0}}})
    conf = RepoConfig.from_dict(tmp_path, {"project": "p"}).monitoring["logging"]
    assert conf == {"sample_rate": None, "queue_size": 10_000, "roll_rows": 100_000, "roll_seconds": 60}
    assert service_sample_rate({"logging": {"sample_rate": 0.0}}, 1.0) == 0.0  # a service opts out of a default
    assert service_sample_rate({"logging": {}}, None) == 1.0 and service_sample_rate({}, None) == 0.0
    assert service_sample_rate({}, 0.25) == 0.25
    svc = FeatureService(name="s", features=["v:f"], logging={"sample_rate": 1})
    assert svc.to_dict()["logging"] == {"sample_rate": 1.0}
    assert "logging" not in FeatureService(name="s", features=["v:f"]).to_dict()


def test_a_log_that_cannot_be_written_never_fails_a_read_or_close(tmp_path_factory: pytest.TempPathFactory,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    repo = logged_repo(tmp_path_factory, "log_unwritable")
    (repo / "data" / "offline" / "logs").write_text("not a folder")  # every write fails
    with FeatureStore(repo) as fs:
        resp = fs.get_online_features(feature_service=SERVICE, entity_rows=rows([1]))
        assert resp.feature_names
    assert "could not write its last rows" in caplog.text


def test_the_package_face_names_the_log_functions() -> None:
    from fstore import monitoring

    assert monitoring.log_features is log_features and monitoring.read_logs is read_logs
    assert monitoring.log_features_batch is log_features_batch and monitoring.FeatureLog.__name__ == "FeatureLog"
