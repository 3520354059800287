"""The clients against the real server (``fstore serve`` in a subprocess, 127.0.0.1 only).

What a client returns must equal what ``FeatureStore.get_online_features`` returns in
process for the same request: values, statuses, event timestamps and every conversion.
Pipelined requests are matched by id whatever order the replies come in. PUSH is
visible to the next GET, newer-only, optionally appended offline, refused whole when
a row is bad, and never sent twice by a client.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack
import numpy as np
import pyarrow as pa
import pytest

from fstore import FeatureStore
from fstore.client import AsyncClient, Client
from fstore.errors import EntityRowError
from fstore.online.response import OnlineResponse
from fstore.errors import FstoreError, ShuttingDown
from server_util import CUSTOMERS, DEVICES, DRIVERS, HOST, PUSH_BASE, Server, repo_copy

pytestmark = pytest.mark.timeout(90)  # a server that hangs fails the test, never the run

UTC = dt.timezone.utc
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
UNKNOWN = [0, -1, 401, I64_MAX, I64_MIN]

FEATURES = ["customer_stats:avg_amount_7d", "profile:signup", "customer_stats:segment",
            "customer_driver:trips_together", "profile:age", "profile:score", "profile:vip", "profile:blob",
            "profile:nick", "customer_stats:txn_count_7d"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "client", {"max_rows": 2000})


@pytest.fixture()
def client(server: Server) -> Iterator[Client]:
    with Client(HOST, server.port, timeout=10) as c:
        yield c


# ---- comparing responses ---------------------------------------------------------------------

def same(a: Any, b: Any) -> bool:
    """Equality that tells -0.0 from 0.0, NaN equals NaN, and bool/bytes/str keep their type."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (bool, bytes, str)) or isinstance(b, (bool, bytes, str)):
        return type(a) is type(b) and a == b
    return a == b


def assert_same_response(remote: OnlineResponse, local: OnlineResponse, meta: bool = True) -> None:
    assert remote.feature_names == local.feature_names
    assert remote.plan.dtypes == local.plan.dtypes
    assert remote.plan.view_of == local.plan.view_of
    assert remote.plan.key_columns == local.plan.key_columns
    assert len(remote) == len(local)
    for name in local.feature_names:
        for row, (r, l) in enumerate(zip(remote.values(name), local.values(name))):
            assert same(r, l), (name, remote.entity_rows[row], r, l)
    assert remote.to_dict() == local.to_dict()
    assert remote.to_rows() == local.to_rows()
    assert remote.to_arrow(include_metadata=False).equals(local.to_arrow(include_metadata=False))
    np.testing.assert_array_equal(remote.to_numpy(), local.to_numpy())
    if not meta:  # no statuses were sent: the response says so rather than claim PRESENT
        with pytest.raises(ValueError, match="include_metadata=False"):
            remote.statuses(local.feature_names[0])
        with pytest.raises(ValueError, match="include_metadata=False"):
            remote.to_dict(include_metadata=True)
        return
    for name in local.feature_names:
        assert remote.statuses(name) == local.statuses(name), name
        assert remote.event_timestamps(name) == local.event_timestamps(name), name
    assert remote.to_dict(include_metadata=True) == local.to_dict(include_metadata=True)
    assert remote.to_rows(include_metadata=True) == local.to_rows(include_metadata=True)
    assert remote.to_arrow().equals(local.to_arrow())


def requests() -> list[dict[str, Any]]:
    """Request shapes: feature lists across views, services, full names, string keys."""
    rows = [{"customer_id": c, "driver_id": DRIVERS[i % len(DRIVERS)]} for i, c in enumerate(CUSTOMERS + UNKNOWN)]
    columns = {"customer_id": [r["customer_id"] for r in rows], "driver_id": [r["driver_id"] for r in rows]}
    pairs = [{"customer_id": c, "driver_id": d} for c in CUSTOMERS[:150] for d in DRIVERS]
    return [
        {"features": FEATURES, "entity_rows": rows},
        {"features": FEATURES, "entity_rows": columns},  # a dict of columns
        {"feature_service": "everything", "entity_rows": rows},
        {"feature_service": "fraud_v1", "entity_rows": pairs},
        {"features": ["profile_v1:age", "customer_stats:segment", "profile:nick"], "entity_rows": rows,
         "full_feature_names": True},
        {"feature_service": "everything", "entity_rows": rows[::-1] + rows[:7], "full_feature_names": True},
        {"features": ["device:risk", "device:label"], "entity_rows": [{"device_id": d} for d in DEVICES + ["zz"]]},
        {"features": ["customer_stats:segment"], "entity_rows": [{"customer_id": 3}]},
        {"features": ["customer_stats:segment"], "entity_rows": []},
    ]


def present_statuses(resp: OnlineResponse) -> set[str]:
    return {s.name for n in resp.feature_names for s in resp.statuses(n)}


# ---- 1. values over the network equal the in-process read ------------------------------------

def test_client_equals_in_process_read(client: Client, fs: FeatureStore) -> None:
    seen: set[str] = set()
    for req in requests():
        remote = client.get_online_features(**req)
        local = fs.get_online_features(**req)
        assert_same_response(remote, local)
        seen |= present_statuses(local)
        bare = client.get_online_features(**req, include_metadata=False)
        assert_same_response(bare, local, meta=False)
    assert seen == {"PRESENT", "NOT_FOUND", "EXPIRED", "DEFAULTED"}  # the data covers every status


def test_async_client_equals_in_process_read(server: Server, fs: FeatureStore) -> None:
    async def main() -> list[tuple[OnlineResponse, OnlineResponse]]:
        async with AsyncClient(HOST, server.port, timeout=10) as ac:
            out = []
            for req in requests():
                out.append((await ac.get_online_features(**req),
                            await ac.get_online_features(**req, include_metadata=False)))
            return out

    results = asyncio.run(asyncio.wait_for(main(), 60))
    for req, (remote, bare) in zip(requests(), results):
        local = fs.get_online_features(**req)
        assert_same_response(remote, local)
        assert_same_response(bare, local, meta=False)


def test_errors_come_back_as_protocol_errors(client: Client, server: Server) -> None:
    with pytest.raises(FstoreError) as info:
        client.get_online_features(["customer_stats:nope"], entity_rows=[{"customer_id": 1}])
    assert info.value.code == "UNKNOWN_OBJECT" and "nope" in info.value.message
    with pytest.raises(FstoreError) as info:
        client.get_online_features(feature_service="no_such", entity_rows=[{"customer_id": 1}])
    assert info.value.code == "UNKNOWN_OBJECT"
    with pytest.raises(FstoreError) as info:
        client.get_online_features(["customer_stats:segment"], entity_rows=[{"customer_id": 1}, {"customer_id": "2"}])
    assert info.value.code == "BAD_ENTITY_ROW" and "entity row 2 (rows are numbered from 1)" in info.value.message
    with pytest.raises(FstoreError) as info:
        client.get_online_features(["customer_driver:trips_together"], entity_rows=[{"customer_id": 1}])
    assert info.value.code == "BAD_ENTITY_ROW" and "driver_id" in info.value.message
    # ragged columns: the same error as in process, raised before anything is sent
    with pytest.raises(EntityRowError, match="differ in length"):
        client.get_online_features(["customer_driver"], entity_rows={"customer_id": [1, 2], "driver_id": [7]})
    # the connection that carried the errors is still good
    assert client.get_online_features(["customer_stats:segment"], entity_rows=[{"customer_id": 2}]).values("segment")
    assert client.health()["ready"] is True
    info_ = client.info()
    assert info_["project"] == "demo" and {v["name"] for v in info_["views"]} >= {"customer_stats", "profile"}


# ---- pushes -----------------------------------------------------------------------------------

def stats_rows(ids: list[int], ts: Any, *, created: Any = None, n: list[Any] | None = None,
               avg: list[Any] | None = None, seg: list[Any] | None = None) -> dict[str, list[Any]]:
    k = len(ids)
    return {"customer_id": list(ids),
            "event_timestamp": ts if isinstance(ts, list) else [ts] * k,
            "created_timestamp": created if isinstance(created, list) else [created] * k,
            "avg_amount_7d": avg if avg is not None else [float(i) + 0.5 for i in ids],
            "txn_count_7d": n if n is not None else [i * 3 + 1 for i in ids],
            "segment": seg if seg is not None else [f"s{i}" for i in ids]}


STATS = ["customer_stats:avg_amount_7d", "customer_stats:txn_count_7d", "customer_stats:segment"]


def read_stats(client: Client, ids: list[int]) -> dict[str, list[Any]]:
    return client.get_online_features(STATS, entity_rows=[{"customer_id": i} for i in ids]).to_dict(
        include_metadata=True)


def now_us() -> int:
    return time.time_ns() // 1000


def test_push_is_visible_to_the_next_get_with_status_and_timestamp(client: Client) -> None:
    base = PUSH_BASE + 100
    t1 = dt.datetime.now(UTC).replace(microsecond=123457) - dt.timedelta(hours=1)
    assert client.push("customer_stats", stats_rows([base, base + 1], t1)) == 2
    got = read_stats(client, [base, base + 1, base + 2])
    assert got["txn_count_7d"] == [base * 3 + 1, base * 3 + 4, None]
    assert got["segment"] == [f"s{base}", f"s{base + 1}", None]
    assert got["avg_amount_7d"] == [base + 0.5, base + 1.5, 0.0]
    assert got["txn_count_7d__status"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    assert got["avg_amount_7d__status"] == ["PRESENT", "PRESENT", "DEFAULTED"]
    assert got["txn_count_7d__event_timestamp"] == [t1, t1, None]
    # int microseconds work as timestamps too; a list of dicts works as rows
    t2_us = now_us() - 1_000_000
    written = client.push("customer_stats", [{"customer_id": base + 2, "event_timestamp": t2_us,
                                              "created_timestamp": None, "avg_amount_7d": None,
                                              "txn_count_7d": 5, "segment": "z"}])
    assert written == 1
    got = read_stats(client, [base + 2])
    assert got["txn_count_7d"] == [5] and got["avg_amount_7d"] == [None]  # a pushed null is PRESENT
    assert got["avg_amount_7d__status"] == ["PRESENT"]
    assert got["segment__event_timestamp"] == [dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=t2_us)]
    # a versioned view name works, and an empty push writes nothing
    assert client.push("customer_stats_v1", stats_rows([base + 3], t1)) == 1
    assert client.push("customer_stats", stats_rows([], t1)) == 0


def test_push_is_newer_only(client: Client) -> None:
    k = PUSH_BASE + 200
    now = dt.datetime.now(UTC)
    t = now - dt.timedelta(hours=2)
    assert client.push("customer_stats", stats_rows([k], t, created=t, n=[10])) == 1
    # older event time: not written
    assert client.push("customer_stats", stats_rows([k], t - dt.timedelta(seconds=1), created=now, n=[11])) == 0
    # same event time, same created time: not newer, not written
    assert client.push("customer_stats", stats_rows([k], t, created=t, n=[12])) == 0
    assert read_stats(client, [k])["txn_count_7d"] == [10]
    # same event time, later created time (a correction): written
    assert client.push("customer_stats", stats_rows([k], t, created=t + dt.timedelta(microseconds=1), n=[13])) == 1
    assert read_stats(client, [k])["txn_count_7d"] == [13]
    # newer event time: written; in one batch only the rows that are newer are written
    t3 = now - dt.timedelta(hours=1)
    assert client.push("customer_stats", stats_rows([k, k + 1], [t3, t3], n=[14, 15])) == 2
    assert client.push("customer_stats", stats_rows([k, k + 1], [t, now - dt.timedelta(minutes=1)], n=[16, 17])) == 1
    got = read_stats(client, [k, k + 1])
    assert got["txn_count_7d"] == [14, 17]
    assert got["txn_count_7d__event_timestamp"][0] == t3


def test_push_offline_is_seen_by_training_sets(client: Client, fs: FeatureStore) -> None:
    k_off, k_on = PUSH_BASE + 300, PUSH_BASE + 301
    t = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(minutes=30)
    assert client.push("customer_stats", stats_rows([k_off], t, n=[42], seg=["off"]), offline=True) == 1
    assert client.push("customer_stats", stats_rows([k_on], t, n=[43], seg=["on"])) == 1
    entity_df = pa.table({"customer_id": pa.array([k_off, k_on, k_off], pa.int64()),
                          "event_timestamp": pa.array([t + dt.timedelta(seconds=1), t + dt.timedelta(seconds=1),
                                                       t - dt.timedelta(seconds=1)], pa.timestamp("us", tz="UTC"))})
    table = fs.get_historical_features(entity_df, ["customer_stats:txn_count_7d", "customer_stats:segment"])
    assert table.column("txn_count_7d").to_pylist() == [42, None, None]  # online-only push: not in training
    assert table.column("segment").to_pylist() == ["off", None, None]
    # and online both are served
    assert read_stats(client, [k_off, k_on])["segment"] == ["off", "on"]


def offline_rows(fs: FeatureStore) -> int:
    manifest = fs.offline.manifest(fs.get_feature_view("customer_stats"))
    return manifest["rows"] if manifest else 0


@pytest.mark.parametrize("case", ["missing_column", "wrong_type", "wrong_key_type", "null_timestamp",
                                  "bad_timestamp", "huge_timestamp", "ragged", "unknown_view", "nested"])
def test_bad_push_names_the_field_and_writes_nothing(client: Client, fs: FeatureStore, case: str) -> None:
    ids = [PUSH_BASE + 400 + i for i in range(3)]
    t = dt.datetime.now(UTC) - dt.timedelta(hours=1)
    rows: Any = stats_rows(ids, t)
    view, field, code = "customer_stats", None, "BAD_REQUEST"
    if case == "missing_column":
        del rows["segment"]
        field = "rows.segment"
    elif case == "wrong_type":
        rows["txn_count_7d"][1] = "many"  # only the second row is bad: the first is not written either
        field = "rows.txn_count_7d"
    elif case == "wrong_key_type":
        rows["customer_id"][2] = "x"
        field = "rows.customer_id"
    elif case == "null_timestamp":
        rows["event_timestamp"][1] = None
        field = "rows.event_timestamp"
    elif case == "bad_timestamp":
        rows["created_timestamp"][0] = "yesterday"
        field = "rows.created_timestamp"
    elif case == "huge_timestamp":
        rows["event_timestamp"][2] = 2**62
        field = "rows.event_timestamp"
    elif case == "ragged":
        rows["segment"] = rows["segment"][:2]
        field = "rows"
    elif case == "unknown_view":
        view, code = "no_such_view", "UNKNOWN_OBJECT"
    elif case == "nested":
        rows["segment"] = [["a"], {"b": 1}, None]
        field = "rows.segment"
    before = offline_rows(fs)
    for offline in (False, True):
        with pytest.raises(FstoreError) as info:
            client.push(view, rows, offline=offline)
        assert info.value.code == code, info.value
        assert info.value.field == field, info.value
        assert info.value.message
    got = read_stats(client, ids)
    assert got["txn_count_7d__status"] == ["NOT_FOUND"] * 3
    assert offline_rows(fs) == before
    # the pooled connection that carried the error is still good
    assert client.push("customer_stats", stats_rows([ids[0] + 50], t)) == 1


# ---- 2. pipelining through the clients ---------------------------------------------------------

def unique_entities(client: Client, start: int, n: int) -> list[int]:
    """Entities pushed with values that belong to them alone."""
    ids = [start + i for i in range(n)]
    t = dt.datetime.now(UTC) - dt.timedelta(minutes=10)
    assert client.push("customer_stats", stats_rows(ids, t)) == n
    return ids


def test_client_pipeline_matches_replies_to_requests(client: Client) -> None:
    ids = unique_entities(client, PUSH_BASE + 1000, 300)
    reqs: list[dict[str, Any]] = []
    for i, k in enumerate(ids):
        if i % 50 == 7:
            reqs.append({"features": ["customer_stats:nope"], "entity_rows": [{"customer_id": k}]})
        elif i % 3 == 0:
            reqs.append({"features": STATS, "entity_rows": [{"customer_id": k}, {"customer_id": k + 10_000}],
                         "include_metadata": i % 2 == 0})
        else:
            reqs.append({"feature_service": "fraud_v1", "entity_rows": {"customer_id": [k], "driver_id": [7]}})
    out = client.pipeline(reqs)
    assert len(out) == len(reqs)
    for i, (k, req, resp) in enumerate(zip(ids, reqs, out)):
        if i % 50 == 7:
            assert isinstance(resp, FstoreError) and resp.code == "UNKNOWN_OBJECT", resp
        elif i % 3 == 0:
            assert isinstance(resp, OnlineResponse)
            assert resp.values("txn_count_7d") == [k * 3 + 1, None], (i, k)
            assert resp.values("segment") == [f"s{k}", None]
        else:
            assert isinstance(resp, OnlineResponse)
            assert resp.to_dict() == {"customer_id": [k], "driver_id": [7], "avg_amount_7d": [k + 0.5],
                                      "trips_together": [0]}, (i, k)
    # the connection goes back to the pool in a clean state
    assert read_stats(client, [ids[5]])["segment"] == [f"s{ids[5]}"]


def test_async_client_many_concurrent_calls_on_one_connection(server: Server, client: Client) -> None:
    ids = unique_entities(client, PUSH_BASE + 2000, 300)
    fresh = [PUSH_BASE + 3000 + i for i in range(40)]
    t = dt.datetime.now(UTC) - dt.timedelta(minutes=5)

    async def get(ac: AsyncClient, k: int) -> tuple[int, OnlineResponse]:
        return k, await ac.get_online_features(STATS, entity_rows=[{"customer_id": k}])

    async def push(ac: AsyncClient, k: int) -> tuple[int, int]:
        return k, await ac.push("customer_stats", stats_rows([k], t, n=[-k]))

    async def main() -> tuple[list[Any], int]:
        async with AsyncClient(HOST, server.port, timeout=20, pool_size=1) as ac:
            calls = [get(ac, k) for k in ids]
            for j, k in enumerate(fresh):  # pushes in between, answered from the server's thread
                calls.insert(j * 7, push(ac, k))
            results = await asyncio.gather(*calls)
            conns = sum(c is not None for c in ac._conns)
            return results, conns

    results, conns = asyncio.run(asyncio.wait_for(main(), 60))
    assert conns == 1
    for k, res in results:
        if isinstance(res, int):
            assert res == 1, k
        else:
            assert res.values("txn_count_7d") == [k * 3 + 1], k
            assert res.values("segment") == [f"s{k}"], k
    assert read_stats(client, fresh)["txn_count_7d"] == [-k for k in fresh]


# ---- 3. a client never sends a PUSH twice ------------------------------------------------------

def test_push_not_retried_when_the_server_stalls(server: Server, fs: FeatureStore) -> None:
    """The server is stopped (SIGSTOP) while a PUSH is in flight: the client times out and
    raises; when the server resumes it applies the push exactly once (one offline run),
    although the client had a second connection ready and retries=3."""
    k = PUSH_BASE + 500
    t = dt.datetime.now(UTC) - dt.timedelta(minutes=3)
    before = offline_rows(fs)
    with Client(HOST, server.port, timeout=1.0, retries=3) as c:
        first, second = c._take(time.monotonic() + 5), c._take(time.monotonic() + 5)  # two greeted connections in the pool: a resend
        c._give(first)                         # would go out at once on the other one and be
        c._give(second)                        # applied when the server resumes
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ConnectionError):
                c.push("customer_stats", stats_rows([k], t, n=[77]), offline=True)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
    with Client(HOST, server.port, timeout=10) as c:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and read_stats(c, [k])["txn_count_7d"] != [77]:
            time.sleep(0.05)
        assert read_stats(c, [k])["txn_count_7d"] == [77]
        c.health()  # the server has answered everything it received before this
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and offline_rows(fs) == before:
        time.sleep(0.05)
    time.sleep(0.3)
    assert offline_rows(fs) == before + 1  # exactly one run appended: the push was sent once


class FakeServer:
    """A server that greets, then drops the connection on the first GET or PUSH it reads,
    counting every request by op. ``draining``: instead, on the first connection it answers
    a GET or PUSH with SHUTTING_DOWN (not run) and closes, and on later ones it answers."""

    def __init__(self, draining: bool = False) -> None:
        self.draining, self.connections = draining, 0
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.counts: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(5)
            self.connections += 1
            try:
                self._serve(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        for _ in range(100):
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            n = struct.unpack(">I", buf[:4])[0]
            op, rid, _args = msgpack.unpackb(buf[4:4 + n], raw=False)
            buf = buf[4 + n:]
            self.counts[op] = self.counts.get(op, 0) + 1
            if op == 1:
                body = msgpack.packb([rid, True, {"version": 1, "server": "fake", "max_frame": 1 << 20,
                                                  "max_rows": 100}])
                conn.sendall(struct.pack(">I", len(body)) + body)
            elif op in (2, 3) and self.draining and self.connections > 1:
                result = {"written": 1, "offline": False} if op == 3 else \
                    {"names": [], "dtypes": [], "view_of": [], "keys": [], "values": []}
                body = msgpack.packb([rid, True, result])
                conn.sendall(struct.pack(">I", len(body)) + body)
            elif op in (2, 3) and self.draining:
                body = msgpack.packb([rid, False, {"code": "SHUTTING_DOWN", "message": "not run", "field": None}])
                conn.sendall(struct.pack(">I", len(body)) + body)
                return
            elif op in (2, 3):
                conn.shutdown(socket.SHUT_RDWR)  # the connection dies mid-request
                return
            else:
                body = msgpack.packb([rid, True, {"live": True, "ready": True, "draining": False,
                                                  "registry_version": 1}])
                conn.sendall(struct.pack(">I", len(body)) + body)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture()
def fake() -> Iterator[FakeServer]:
    srv = FakeServer()
    try:
        yield srv
    finally:
        srv.close()


def test_push_never_retried_get_retried_when_the_connection_dies(fake: FakeServer) -> None:
    rows = stats_rows([1], 0)
    with Client(HOST, fake.port, timeout=5, retries=2) as c:
        with pytest.raises(ConnectionError):
            c.push("customer_stats", rows)
        assert fake.counts.get(3) == 1
        with pytest.raises(ConnectionError):
            c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
        assert fake.counts.get(2) == 3  # a GET is retried (retries=2)
        assert fake.counts.get(3) == 1

    async def main() -> None:
        async with AsyncClient(HOST, fake.port, timeout=5, retries=2) as ac:
            with pytest.raises(ConnectionError):
                await ac.push("customer_stats", rows)
            with pytest.raises(ConnectionError):
                await ac.get_online_features(STATS, entity_rows=[{"customer_id": 1}])

    asyncio.run(asyncio.wait_for(main(), 30))
    assert fake.counts.get(3) == 2  # one each from the two clients
    assert fake.counts.get(2) == 6


def test_a_request_a_draining_server_did_not_run_is_sent_again() -> None:
    """SHUTTING_DOWN means not run: a GET, and a PUSH too (it was not written), goes to a
    fresh connection, so clients ride through a restart or a takeover."""
    for op, call in ((3, lambda c: c.push("customer_stats", stats_rows([1], 0))),
                     (2, lambda c: c.get_online_features(STATS, entity_rows=[]))):
        srv = FakeServer(draining=True)
        try:
            with Client(HOST, srv.port, timeout=5, retries=1) as c:
                call(c)
            assert srv.counts[op] == 2 and srv.connections == 2
        finally:
            srv.close()
    srv = FakeServer(draining=True)
    try:
        with Client(HOST, srv.port, timeout=5, retries=0) as c:  # no retry left: the refusal is raised
            with pytest.raises(ShuttingDown):
                c.push("customer_stats", stats_rows([1], 0))

        async def main() -> None:
            async with AsyncClient(HOST, srv.port, timeout=5, retries=1) as ac:
                assert await ac.push("customer_stats", stats_rows([1], 0)) == 1
        asyncio.run(asyncio.wait_for(main(), 30))
        assert srv.counts[3] == 2
    finally:
        srv.close()


# ---- the server's compiled fast path --------------------------------------------------------

def test_fast_path_replies_equal_the_python_path_byte_for_byte(repo: Path, fs: FeatureStore) -> None:
    """A GET of a prepared shape is answered by fstore._ext._serve; its reply must be the
    Python path's, byte for byte, for every request shape, with and without metadata."""
    from fstore.serving.client import _columns, _get_args
    from fstore.serving.connection import Connection
    from fstore.serving.server import Limits, ServerState

    state = ServerState(str(repo), Limits(max_rows=2000))
    try:
        conn = Connection(state)
        for rid, req in enumerate(requests(), start=1):
            cols, _ = _columns(req["entity_rows"])
            for meta in (True, False):
                args = _get_args(req.get("features"), req.get("feature_service"), cols,
                                 req.get("full_feature_names", False), meta)
                body = msgpack.packb([2, rid, args])
                slow = conn.op_get(rid, args, 0.0)  # the Python path, which also prepares the shape
                fast = state.fast.answer(body)
                if not any(cols.values()):  # no entity rows: left to the Python path
                    assert fast is None
                    continue
                assert fast is not None, req
                assert fast == slow, (req, meta)
                assert state.fast.rows == len(next(iter(cols.values())))
        # what the fast path leaves to the Python path: a registry check that is due, a new
        # shape, another op, a request over the row limit, a malformed one
        args = _get_args(STATS, None, {"customer_id": [CUSTOMERS[0]]}, False, True)
        assert state.fast.answer(msgpack.packb([2, 9, args])) is None  # a shape not seen yet
        conn.op_get(9, args, 0.0)
        assert state.fast.answer(msgpack.packb([2, 9, args])) is not None
        # a key column missing: the Python path explains it
        assert state.fast.answer(msgpack.packb([2, 9, {**args, "entities": {"driver_id": ["d1"]}}])) is None
        assert state.fast.answer(msgpack.packb([3, 9, args])) is None
        assert state.fast.answer(msgpack.packb([2, 0, args])) is None
        assert state.fast.answer(msgpack.packb([2, 9, {**args, "features": STATS[:1]}])) is None
        assert state.fast.answer(msgpack.packb([2, 9, {**args, "entities": {"customer_id": [1] * 2001}}])) is None
        assert state.fast.answer(msgpack.packb([2, 9, {**args, "entities": {"customer_id": "x"}}])) is None
        assert state.fast.answer(msgpack.packb([2, 9, {**args, "entities": {"customer_id": ["x"]}}])) is None
        assert state.fast.answer(b"\xc1") is None
        state.fast.valid_until = 0.0
        assert state.fast.answer(msgpack.packb([2, 9, args])) is None
    finally:
        state.pusher.shutdown(wait=True)
