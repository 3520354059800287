"""The served-feature log's compiled path (fstore._ext._logbuf, fstore.monitoring.logroll):
the files it writes hold exactly what each read answered, for every dtype (nulls, empty and
non-ASCII strings, bytes, timestamps before 1970, -0.0 and inf), every status (PRESENT,
NOT_FOUND, EXPIRED, DEFAULTED: the declared defaults), multi-entity reads, int, string and
composite keys (a null key part included), in process and on both server paths.

The oracle is independent of the code under test: the log as it was first written, by
converting the Python values a read answered to Arrow one column at a time
(``pa.array(values, type)``), rebuilt here from the responses the readers got. Floats are
compared bit for bit."""
from __future__ import annotations

import datetime as dt
import os
import re
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import edit_defs, find
from fstore import FeatureStore
from fstore._ext._logbuf import LogBuffer
from fstore.client import Client
from fstore.monitoring import events
from fstore.monitoring import logging as feature_logging
from fstore.monitoring.logs import log_dir, read_logs
from server_util import CUSTOMERS, DEVICES, DRIVERS, HOST, Server, repo_copy

UTC = dt.timezone.utc
UTC_US = pa.timestamp("us", tz="UTC")
ARROW = {"int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(), "float64": pa.float64(),
         "bool": pa.bool_(), "timestamp": UTC_US, "string": pa.string(), "bytes": pa.binary()}
STATUS = {"PRESENT": 0, "NOT_FOUND": 1, "EXPIRED": 2, "DEFAULTED": 3}
# the features of each logged service, and their dtypes (tests/server_util.py, tests/conftest.py)
EVERYTHING = {"avg_amount_7d": "float64", "txn_count_7d": "int64", "segment": "string", "age": "int32",
              "score": "float32", "vip": "bool", "blob": "bytes", "signup": "timestamp", "nick": "string",
              "trips_together": "int64"}
COMBO = {"hits": "int64", "note": "string", "label": "string", "avg_amount_7d": "float64"}
KEYS = {"everything": {"customer_id": pa.int64(), "driver_id": pa.int64()},
        "combo": {"device_id": pa.string(), "customer_id": pa.int64()}}


def decode_repo(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """The test repository with ``everything`` and ``combo`` (a composite string + int key,
    a string key, an int key) logged at rate 1, applied, ingested and materialized."""
    root = repo_copy(tmp_path_factory, name)
    (root / "fstore.yaml").write_text(yaml.safe_dump({"project": "demo",
                                                      "monitoring": {"logging": {"roll_seconds": 3600}}}))
    now = dt.datetime.now(UTC)
    pq.write_table(pa.table({
        "device_id": ["dev-1", "", "ünï", "a\x00b", "dev-1"],
        "customer_id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "ts": pa.array([now - dt.timedelta(hours=h) for h in (1, 2, 3, 4, 5)], UTC_US),
        "hits": pa.array([5, None, -7, 2**40, 0], pa.int64()),
        "note": ["x" * 70000, None, "", "é🎉", "n"],
    }), root / "data" / "device_customer.parquet")

    def edit(doc: dict[str, Any]) -> None:
        doc["sources"].append({"name": "dc_src", "path": "data/device_customer.parquet", "timestamp_field": "ts"})
        doc["feature_views"].append({"name": "device_customer", "version": 1, "entities": ["device", "customer"],
                                     "source": "dc_src", "features": [{"name": "hits", "dtype": "int64", "default": 0},
                                                                      {"name": "note", "dtype": "string"}]})
        doc["feature_services"].append({"name": "combo", "features": ["device_customer", "device:label",
                                                                      "customer_stats:avg_amount_7d"],
                                        "logging": {}})
        find(doc["feature_services"], "everything")["logging"] = {"sample_rate": 1.0}
    edit_defs(root, edit)
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        fs.materialize("2000-01-01T00:00:00Z", now + dt.timedelta(days=2), allow_future=True)
    return root


def everything_rows() -> list[list[dict[str, Any]]]:
    """Reads of 1, 7 and 804 entity rows: every customer with two drivers (rows present,
    expired, missing, in the future), unknown ids, driver 0, a null key part, repeats."""
    many = [{"customer_id": c, "driver_id": DRIVERS[i % len(DRIVERS)]} for i, c in enumerate(CUSTOMERS * 2)]
    few = [{"customer_id": 1, "driver_id": 7}, {"customer_id": 777_777, "driver_id": 7},
           {"customer_id": 2, "driver_id": None}, {"customer_id": 3, "driver_id": 0},
           {"customer_id": 3, "driver_id": 0}, {"customer_id": -(2**63), "driver_id": 2**63 - 1},
           {"customer_id": 150, "driver_id": 501}]
    return [[{"customer_id": 5, "driver_id": 7}], few, many + [{"customer_id": 9, "driver_id": 502}] * 4]


def combo_rows() -> list[list[dict[str, Any]]]:
    rows = [{"device_id": d, "customer_id": c} for d in DEVICES + ["nope"] for c in (1, 2, 3, 4, 5, 999)]
    return [rows, [{"device_id": None, "customer_id": 1}, {"device_id": "a\x00b", "customer_id": None}]]


def bits(value: Any, type_: pa.DataType) -> Any:
    """A value as compared: floats by their bits (so -0.0 differs from 0.0, and NaN equals NaN)."""
    if value is None:
        return None
    if pa.types.is_float64(type_):
        return struct.pack("<d", value)
    if pa.types.is_float32(type_):
        return struct.pack("<f", value)
    return value


def reference(resp: Any, rows: list[dict[str, Any]], service: str, caller: str | None) -> dict[str, pa.Array]:
    """The log columns of one read as the first (Python) conversion made them: each answered
    value, status and event time, and each join key as the caller gave it."""
    dtypes = EVERYTHING if service == "everything" else COMBO
    out = {"caller_request_id": pa.array([caller] * len(rows), pa.string()),
           "row": pa.array(range(len(rows)), pa.int32())}
    for key, type_ in KEYS[service].items():
        out[key] = pa.array([r.get(key) for r in rows], type_)
    for name in resp.feature_names:
        out[name] = pa.array(resp.values(name), ARROW[dtypes[name]])
        out[f"{name}__status"] = pa.array([STATUS[s.name] for s in resp.statuses(name)], pa.int8())
        out[f"{name}__event_timestamp"] = pa.array(resp.event_timestamps(name), UTC_US)
    return out


def check_read(got: pa.Table, expected: dict[str, pa.Array], path: str, pid: int, when: tuple[int, int]) -> None:
    """One read's log rows against the reference, column by column and type by type."""
    for name, column in expected.items():
        have = got.column(name)
        assert have.type == column.type, name
        assert [bits(v, column.type) for v in have.to_pylist()] == [bits(v, column.type) for v in column.to_pylist()], \
            name
    assert set(got.column("path").to_pylist()) == {path} and set(got.column("worker").to_pylist()) == {pid}
    ids = set(got.column("request_id").to_pylist())
    assert len(ids) == 1 and re.fullmatch(rf"{pid}-\d+", ids.pop())
    times = set(got.column("request_time").cast(pa.int64()).to_pylist())
    assert len(times) == 1 and when[0] <= times.pop() <= when[1]


def logged_reads(table: pa.Table) -> list[pa.Table]:
    """The log rows of each read, in the order of the reads (request ids are per-process sequences)."""
    table = table.sort_by([("request_id", "ascending"), ("row", "ascending")])
    ids = table.column("request_id").to_pylist()
    order = sorted(set(ids), key=lambda r: (int(r.split("-")[0]), int(r.split("-")[1])))
    return [table.filter(pc.equal(table.column("request_id"), r)) for r in order]


def us(t: dt.datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def test_in_process_logs_are_the_reads_for_every_dtype_status_and_key(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    repo = decode_repo(tmp_path_factory, "decode_inproc")
    done: list[tuple[str, Any, list[dict[str, Any]], str | None, tuple[int, int]]] = []
    seen: set[str] = set()
    with FeatureStore(repo) as fs:
        for service, reads in (("everything", everything_rows()), ("combo", combo_rows())):
            for i, rows in enumerate(reads):
                caller = f"{service}-{i}" if i % 2 == 0 else None
                before = us(dt.datetime.now(UTC))
                resp = fs.get_online_features(feature_service=service, entity_rows=rows, request_id=caller)
                done.append((service, resp, rows, caller, (before, us(dt.datetime.now(UTC)) + 1)))
                seen |= {s.name for name in resp.feature_names for s in resp.statuses(name)}
        at = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)  # an explicit now: the request time
        resp = fs.get_online_features(feature_service="everything", entity_rows=everything_rows()[1], now=at)
        done.append(("everything", resp, everything_rows()[1], None, (us(at), us(at))))
        fs.get_online_features(["customer_stats:segment"], entity_rows=[{"customer_id": 1}])  # no service: not logged
    assert seen == set(STATUS), seen  # the reads saw every status
    with FeatureStore(repo) as fs:
        version = fs.registry.snapshot().version
    for service in ("everything", "combo"):
        reads = logged_reads(read_logs(repo, service))
        mine = [d for d in done if d[0] == service]
        assert len(reads) == len(mine)
        for got, (_, resp, rows, caller, when) in zip(reads, mine):
            check_read(got, reference(resp, rows, service, caller), "in_process", os.getpid(), when)
            assert set(got.column("service").to_pylist()) == {service}
            assert set(got.column("registry_version").to_pylist()) == {version}
            assert got.column("model").null_count == got.num_rows


def test_server_logs_are_the_replies_on_both_paths(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A shape's first read takes the Python path, the next ones the compiled path (while the
    registry is fresh); both are logged from the stored rows the read used, as the client
    received them."""
    repo = decode_repo(tmp_path_factory, "decode_server")
    srv = Server(repo)
    done = []
    try:
        with Client(HOST, srv.port, timeout=10, retries=0) as client:
            for service, reads in (("everything", everything_rows()), ("combo", combo_rows())):
                for i, rows in enumerate(reads * 2):
                    caller = f"{service}-{i}"
                    before = us(dt.datetime.now(UTC))
                    resp = client.get_online_features(feature_service=service, entity_rows=rows, request_id=caller)
                    done.append((service, resp, rows, caller, (before, us(dt.datetime.now(UTC)) + 1)))
        assert srv.terminate() == 0
    finally:
        srv.stop()
    paths = set()
    for service in ("everything", "combo"):
        table = read_logs(repo, service)
        mine = [d for d in done if d[0] == service]
        assert sorted(set(table.column("caller_request_id").to_pylist())) == sorted(d[3] for d in mine)
        for _, resp, rows, caller, when in mine:
            got = table.filter(pc.equal(table.column("caller_request_id"), caller)).sort_by("row")
            path = got.column("path")[0].as_py()
            paths.add(path)
            check_read(got, reference(resp, rows, service, caller), path, srv.proc.pid, when)
    assert paths == {"server", "server_fast"}, paths


def test_row_groups_go_into_one_hidden_file_until_the_roll(tmp_path_factory: pytest.TempPathFactory,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows are written as they make a row group, into a file readers do not see; the roll
    renames it, and it holds every row once, in the log's schema and metadata."""
    monkeypatch.setattr(feature_logging, "GROUP_ROWS", 5)
    repo = decode_repo(tmp_path_factory, "decode_groups")
    with FeatureStore(repo) as fs:
        rows = everything_rows()[1]  # 7 rows a read: each read makes a row group
        for _ in range(3):
            fs.get_online_features(feature_service="everything", entity_rows=rows)
            fs._feature_log.flush(due_only=True)
        folder = log_dir(fs.config, "everything")
        hidden = list(folder.glob("date=*/.part-*.parquet.tmp"))
        assert len(hidden) == 1 and not list(folder.glob("date=*/part-*.parquet"))
        assert read_logs(repo, "everything").num_rows == 0
    files = list(folder.glob("date=*/part-*.parquet"))
    assert len(files) == 1 and not list(folder.glob("date=*/.part-*"))
    meta = pq.ParquetFile(files[0]).metadata
    assert meta.num_row_groups == 3 and meta.num_rows == 21
    assert b"fstore.log" in pq.read_schema(files[0]).metadata
    assert read_logs(repo, "everything").num_rows == 21


def test_a_full_queue_drops_whole_reads_and_counts_their_rows(tmp_path_factory: pytest.TempPathFactory) -> None:
    repo = decode_repo(tmp_path_factory, "decode_drop")
    conf = yaml.safe_load((repo / "fstore.yaml").read_text())
    conf["monitoring"]["logging"]["queue_size"] = 2
    (repo / "fstore.yaml").write_text(yaml.safe_dump(conf))
    rows = everything_rows()[1]
    with FeatureStore(repo) as fs:
        fs.get_online_features(["customer_stats:segment"], entity_rows=[{"customer_id": 1}])  # opens the log
        flog = fs._feature_log
        flog._stop.set()  # the writer thread stops: nothing is collected until close
        flog._due.set()
        flog._thread.join(10)
        flog._stop.clear()
        for _ in range(5):
            fs.get_online_features(feature_service="everything", entity_rows=rows)
        assert flog.pending == 2
        assert flog.stats()["everything"]["dropped"] == 3 * len(rows)
    assert read_logs(repo, "everything").num_rows == 2 * len(rows)


def test_a_recorder_that_raises_is_counted_and_never_fails_a_read(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A recorder is subscribed like a listener but called by the compiled reads: no event is
    built for it (``hook.active`` stays false), and its errors are counted as a listener's."""
    class Broken(LogBuffer):
        def describe(self, plan: Any, path: str, service: str, full: bool, version: int) -> Any:
            raise RuntimeError("broken recorder")

    repo = repo_copy(tmp_path_factory, "decode_broken")
    broken = Broken(10)
    name = type(broken).__qualname__
    active = events.hook.active
    events.subscribe(broken)
    try:
        assert broken in events.hook.recorders and broken not in events.hook.listeners
        assert events.hook.active == active
        before = events.hook.errors.get(name, 0)
        with FeatureStore(repo) as fs:
            resp = fs.get_online_features(feature_service="fraud_v1", entity_rows=[{"customer_id": 1, "driver_id": 7}])
            assert resp.values("avg_amount_7d") is not None
        assert events.hook.errors[name] == before + 1
    finally:
        events.unsubscribe(broken)
    assert broken not in events.hook.recorders


def test_the_compiled_sampling_rule_is_blake2b_of_the_request_key() -> None:
    """The rule of docs/monitoring.md, computed by hashlib here: keys of every length around
    BLAKE2b's 128-byte block, non-ASCII ones, and rates exactly at a digest."""
    import hashlib
    import random

    def rule(key: str, rate: float) -> bool:
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return rate >= 1.0 or int.from_bytes(digest, "big") < rate * 2**64

    rng = random.Random(11)
    keys = ["", "req-1", "é🎉" * 40] + ["".join(rng.choice("ab-09é") for _ in range(n)) for n in range(0, 300, 7)]
    for key in keys:
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
        for rate in (0.0, 1e-12, 0.1, 0.5, 0.99, 1.0, digest / 2**64, (digest + 1) / 2**64, -1.0):
            assert feature_logging.sampled(key, rate) == rule(key, rate), (key, rate)
