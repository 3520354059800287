"""The feature server's duties, against the real ``fstore serve`` in a subprocess.

Raw sockets where the bytes matter (handshake, pipelining, malformed frames, limits,
back pressure, a drain on SIGTERM), the real clients elsewhere. Only 127.0.0.1; every
loop and wait is bounded; no assertion depends on how fast the shared machine is.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import msgpack
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import edit_defs
from fstore import FeatureStore
from fstore.client import AsyncClient, Client
from fstore.errors import FstoreError
from server_util import (CUSTOMERS, FSTORE, HOST, PUSH_BASE, REPO_ROOT, Raw, Server, frame, free_port, raw_frame,
                         repo_copy)

UTC = dt.timezone.utc
HELLO, GET, PUSH, HEALTH, INFO = 1, 2, 3, 4, 5
STATS = ["customer_stats:avg_amount_7d", "customer_stats:txn_count_7d", "customer_stats:segment"]
FATAL = {"BAD_FRAME", "FRAME_TOO_LARGE", "HANDSHAKE_REQUIRED", "UNSUPPORTED_VERSION"}
MAX_ROWS = 1000


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "server", {"max_rows": MAX_ROWS, "max_frame_bytes": 1 << 20})


def stats_rows(ids: list[int], ts: dt.datetime, n: list[int] | None = None) -> dict[str, list[Any]]:
    return {"customer_id": list(ids), "event_timestamp": [ts] * len(ids), "created_timestamp": [None] * len(ids),
            "avg_amount_7d": [i + 0.5 for i in ids], "txn_count_7d": n if n is not None else [i * 3 + 1 for i in ids],
            "segment": [f"s{i}" for i in ids]}


def unique_entities(port: int, start: int, n: int) -> list[int]:
    """Entities pushed with values that belong to them alone (txn_count_7d = 3k+1, segment sk)."""
    ids = [start + i for i in range(n)]
    with Client(HOST, port, timeout=10) as c:
        assert c.push("customer_stats", stats_rows(ids, dt.datetime.now(UTC) - dt.timedelta(minutes=10))) == n
    return ids


def assert_error(reply: Any, rid: int, code: str | None = None) -> dict[str, Any]:
    """A structured error reply for ``rid``."""
    assert type(reply) is list and len(reply) == 3, reply
    assert reply[0] == rid and reply[1] is False, reply
    err = reply[2]
    assert set(err) == {"code", "message", "field"}, err
    assert type(err["code"]) is str and type(err["message"]) is str, err
    assert err["field"] is None or type(err["field"]) is str, err
    if code is not None:
        assert err["code"] == code, err
    return err


def get_args(ids: list[Any], features: list[str] = STATS, meta: bool = True) -> dict[str, Any]:
    return {"features": features, "entities": {"customer_id": ids}, "meta": meta}


# ---- 4. handshake ---------------------------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("first", [GET, HEALTH, INFO, PUSH, 99])
def test_request_before_hello_is_refused_and_closes(server: Server, first: int) -> None:
    push = {"view": "customer_stats", "rows": stats_rows([PUSH_BASE + 9], dt.datetime.now(UTC))}
    args = {GET: get_args([1]), PUSH: push}
    with Raw(server.port, hello=False) as raw:
        raw.request(first, 77, args.get(first, {}))
        raw.request(HELLO, 78, {"version": 1, "client": "late"})  # too late: never answered
        replies = list(raw.read_all())
    assert len(replies) == 1, replies
    assert_error(replies[0], 77, "HANDSHAKE_REQUIRED")
    with Client(HOST, server.port) as c:  # the refused PUSH wrote nothing
        assert c.get_online_features(STATS, entity_rows=[{"customer_id": PUSH_BASE + 9}]).statuses(
            "txn_count_7d")[0].name == "NOT_FOUND"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("hello", [{"version": 2, "client": "x"}, {"version": "1"}, {}, {"version": None}])
def test_unsupported_version_is_refused_and_closes(server: Server, hello: dict[str, Any]) -> None:
    with Raw(server.port, hello=False) as raw:
        raw.request(HELLO, 5, hello)
        raw.request(HEALTH, 6, {})
        replies = list(raw.read_all())
    assert len(replies) == 1, replies
    assert assert_error(replies[0], 5, "UNSUPPORTED_VERSION")["field"] == "version"


@pytest.mark.timeout(30)
def test_hello_announces_limits_and_the_connection_serves(server: Server) -> None:
    with Raw(server.port, hello=False) as raw:
        raw.request(HELLO, 1, {"version": 1, "client": "t"})
        rid, ok, res = raw.read()
        assert (rid, ok) == (1, True)
        assert res["version"] == 1 and res["max_frame"] == 1 << 20 and res["max_rows"] == MAX_ROWS
        assert res["server"].startswith("fstore/")
        raw.request(HEALTH, 2, {})
        rid, ok, res = raw.read()
        assert (rid, ok) == (2, True) and res["live"] and res["ready"] and not res["draining"]
        assert res["registry_version"] == 1


# ---- 2. pipelining on one raw connection ------------------------------------------------------

@pytest.mark.timeout(60)
def test_pipelined_replies_out_of_order_are_matched_by_id(server: Server) -> None:
    ids = unique_entities(server.port, PUSH_BASE + 5000, 200)
    fresh = {}
    expected: dict[int, tuple[str, Any]] = {}
    stream, order = [], []
    t = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    for i, k in enumerate(ids):
        if i % 10 == 3:  # a PUSH, answered from the server's thread: its reply comes late
            rid = 50_000 + i
            fresh[rid] = PUSH_BASE + 6000 + i
            stream.append(frame([PUSH, rid, {"view": "customer_stats", "rows": stats_rows([fresh[rid]], t)}]))
            expected[rid] = ("push", fresh[rid])
            order.append(rid)
        if i % 25 == 11:
            rid = 80_000 + i
            stream.append(frame([GET, rid, get_args([k], ["customer_stats:nope"])]))
            expected[rid] = ("error", None)
            order.append(rid)
        rid = 1000 + i
        stream.append(frame([GET, rid, get_args([k, k + 100_000], meta=i % 2 == 0)]))
        expected[rid] = ("get", k)
        order.append(rid)
    with Raw(server.port, timeout=20) as raw:
        raw.send(b"".join(stream))
        seen = []
        for _ in range(len(expected)):
            reply = raw.read()
            rid = reply[0]
            assert rid in expected and rid not in seen, reply
            seen.append(rid)
            kind, k = expected[rid]
            if kind == "get":
                assert reply[1] is True, reply
                res = reply[2]
                names = res["names"]
                values = dict(zip(names, res["values"]))
                assert values["txn_count_7d"] == [k * 3 + 1, None], (rid, k, values)
                assert values["segment"] == [f"s{k}", None], (rid, k, values)
                assert ("status" in res) == ((rid - 1000) % 2 == 0)
                if "status" in res:  # feature-major; the unknown entity's avg_amount_7d has a default
                    assert res["status"] == bytes([0, 3, 0, 1, 0, 1])
            elif kind == "push":
                assert reply[1] is True and reply[2] == {"written": 1, "offline": False}, reply
            else:
                assert_error(reply, rid, "UNKNOWN_OBJECT")
    assert sorted(seen) == sorted(order)
    assert seen != order  # the PUSH replies came after later GETs' replies
    with Client(HOST, server.port) as c:
        got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in fresh.values()])
        assert got.values("txn_count_7d") == [k * 3 + 1 for k in fresh.values()]


# ---- 5. malformed input never hurts the server --------------------------------------------------

SENTINEL = 0xFFFF_FFF0
MAYBE_OK_OPS = {HELLO, HEALTH, INFO, PUSH}  # a fuzzed PUSH may happen to be a valid one

MSGPACK_INT = st.integers(-(2**63), 2**64 - 1)
junk = st.recursive(
    st.none() | st.booleans() | MSGPACK_INT | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
    | st.datetimes(timezones=st.just(UTC)),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8) | MSGPACK_INT, inner, max_size=5),
    max_leaves=20)
bad_entity = st.sampled_from(["1", 1.5, True, b"1", 2**63, 2**64 - 1, [1], {"a": 1}, float("nan"), -0.0])
bad_get_args = st.one_of(
    st.builds(lambda v, pos: get_args([1, 2, 3][:pos] + [v]), bad_entity, st.integers(0, 3)),
    st.builds(lambda f: get_args([1], [f]), st.sampled_from(["nope:x", "customer_stats:nope", "", ":", "a:b:c",
                                                            "customer_stats_v9:segment", ":segment"])),
    st.integers(MAX_ROWS + 1, MAX_ROWS + 9).map(lambda n: get_args(list(range(n)))),  # too many rows
    st.just({"features": STATS, "service": "fraud_v1", "entities": {"customer_id": [1]}}),
    st.just({"entities": {"customer_id": [1]}}),
    st.just({"features": "customer_stats:segment", "entities": {"customer_id": [1]}}),
    st.just({"features": STATS, "entities": [[1]]}),
    st.just({"features": STATS, "entities": {"customer_id": 1}}),
    st.just({"features": STATS, "entities": {"customer_id": [1, 2], "x": [1]}}),
    st.just({"features": STATS, "entities": {"driver_id": [1]}}),
    st.just({"features": [1, 2], "entities": {"customer_id": [1]}}),
    st.just({"service": 5, "entities": {"customer_id": [1]}}),
    st.just({"service": "no_such", "entities": {"customer_id": [1]}}),
    st.just({"service": "fraud_v1", "entities": {"customer_id": [1]}}),
    st.builds(lambda a: {"features": STATS, "entities": a}, junk).filter(lambda a: not isinstance(a["entities"], dict)),
    st.builds(lambda a: {"features": STATS, "entities": {"customer_id": a}}, junk),
)
bad_push_args = st.one_of(
    st.builds(lambda v, r, o: {"view": v, "rows": r, "offline": o}, junk, junk, junk),
    st.builds(lambda r: {"view": "customer_stats", "rows": r}, st.dictionaries(st.text(max_size=20), junk, max_size=6)),
    st.builds(lambda col, v: {"view": "customer_stats",
                              "rows": {**stats_rows([PUSH_BASE + 99], dt.datetime.now(UTC)), col: [v]}},
              st.sampled_from(["customer_id", "event_timestamp", "created_timestamp", "avg_amount_7d",
                               "txn_count_7d", "segment"]),
              st.sampled_from([[1], {"a": 1}, "x", 2**64 - 1, -(2**63), b"\xff", float("nan"), 1.5, True])
              | junk),
)
bad_id = st.just(0) | st.integers(-(2**63), -1) | st.integers(2**32, 2**64 - 1) | st.text(max_size=3) | st.none() \
    | st.floats() | st.booleans()

part = st.one_of(
    st.tuples(st.just("bytes"), st.binary(min_size=1, max_size=64)),                     # unframed garbage
    st.tuples(st.just("body"), st.binary(min_size=1, max_size=64)),                      # framed, not msgpack (mostly)
    st.tuples(st.just("body"), junk.map(lambda o: msgpack.packb(o, datetime=True))),    # framed msgpack, wrong shape
    st.tuples(st.just("badid"), bad_id, junk),                                           # [op, bad id, args]
    st.tuples(st.just("req"), st.integers(-(2**63), 2**64 - 1), junk),                  # any op, any args
    st.tuples(st.just("req"), st.sampled_from([GET, PUSH, 0, 6, 255, 2**32, -1]), junk),
    st.tuples(st.just("req"), st.just(GET), bad_get_args),
    st.tuples(st.just("req"), st.just(PUSH), bad_push_args),
    st.tuples(st.just("short"), st.sampled_from([0, 1, 2, 4, 5])),                        # not a 3-array
    st.tuples(st.just("huge"), st.integers((1 << 20) + 1, 2**32 - 1)),                    # length above the limit
    st.tuples(st.just("zero"), st.none()),
    st.tuples(st.just("truncated"), st.integers(1, 30)),
)


def build_stream(parts: list[tuple[Any, ...]]) -> tuple[bytes, bool]:
    """(the bytes to send, whether they end with a partial frame)."""
    out, rid = [], 100
    for p in parts:
        kind = p[0]
        if kind == "bytes":
            out.append(p[1])
        elif kind == "body":
            out.append(raw_frame(p[1]))
        elif kind == "badid":
            out.append(frame([GET, p[1], p[2]]))
        elif kind == "req":
            rid += 1
            out.append(frame([p[1], rid, p[2]]))
        elif kind == "short":
            out.append(frame([GET, 1, {}, None, 5][: p[1]]))
        elif kind == "huge":
            out.append(struct.pack(">I", p[1]) + b"\x93\x02\x01")
        elif kind == "zero":
            out.append(b"\x00\x00\x00\x00")
        elif kind == "truncated":
            whole = frame([GET, 99, get_args([1, 2, 3])])
            out.append(whole[: min(p[1], len(whole) - 1)])
            return b"".join(out), True  # then the client goes away
    return b"".join(out), False


def requests_seen(data: bytes, greeted: bool, max_frame: int) -> list[tuple[int, int, Any]]:
    """The (op, id, args) of every request the protocol says the server must read from ``data``
    before it stops at a frame that ends the connection (docs/protocol.md)."""
    out, pos = [], 0
    while len(data) - pos >= 4:
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        if n == 0 or n > max_frame or len(data) - pos - 4 < n:
            break
        try:
            msg = msgpack.unpackb(data[pos + 4:pos + 4 + n], raw=False, timestamp=3, strict_map_key=False)
        except Exception:  # noqa: BLE001
            break
        pos += 4 + n
        if not (type(msg) is list and len(msg) == 3 and type(msg[0]) is int and type(msg[1]) is int
                and 0 < msg[1] < 2**32):
            break
        out.append((msg[0], msg[1], msg[2]))
        if not greeted and msg[0] != HELLO:
            break
        if msg[0] == HELLO:
            if type(msg[2]) is dict and msg[2].get("version") == 1:
                greeted = True
            elif type(msg[2]) is dict:
                break
    return out


def valid_get(args: Any) -> bool:
    """A GET of STATS by customer ids (ints in range, or nulls) within the limits."""
    if type(args) is not dict or args.get("features") != STATS or "service" in args:
        return False
    ents = args.get("entities")
    if type(ents) is not dict or set(ents) - {"customer_id", "driver_id"} or "customer_id" not in ents:
        return False
    cols = list(ents.values())
    return all(type(c) is list and len(c) == len(cols[0]) <= MAX_ROWS for c in cols) and all(
        v is None or type(v) is int and -(2**63) <= v < 2**63 for v in ents["customer_id"])


@pytest.mark.timeout(240)
@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(parts=st.lists(part, min_size=1, max_size=6), greet=st.booleans() | st.just(True))
def test_fuzz_malformed_frames_never_hurt_the_server(server: Server, fs: FeatureStore, parts: list[Any],
                                                     greet: bool) -> None:
    data, partial = build_stream(parts)
    if not partial:
        data += frame([HEALTH, SENTINEL, {}])
    sent = requests_seen(data, greet, 1 << 20)
    may_succeed = {rid for op, rid, args in sent if op in MAYBE_OK_OPS or op == GET and valid_get(args)}
    replies = []
    with Raw(server.port, timeout=15, hello=greet) as raw:
        try:
            raw.send(data)
            raw.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close after a fatal frame while we are still sending
        for _ in range(len(sent) + 2):
            try:
                replies.append(raw.read())
            except socket.timeout:
                pytest.fail(f"no reply and no close within 15 s; got {replies}")
            except (ConnectionError, OSError):
                break
        else:
            assert raw.closed_by_server(), f"more replies than requests: {replies}"
    counts: dict[int, int] = {}
    for _op, rid, _args in sent:
        counts[rid] = counts.get(rid, 0) + 1
    for j, reply in enumerate(replies):
        assert type(reply) is list and len(reply) == 3 and type(reply[0]) is int, reply
        rid, ok = reply[0], reply[1]
        if rid != 0:  # never an id we did not send, never two replies to one request
            assert counts.get(rid, 0) > 0, (rid, sent, replies)
            counts[rid] -= 1
        if ok is True:
            assert rid in may_succeed, reply  # only a HELLO, HEALTH, INFO (or a valid PUSH) may succeed
            continue
        err = assert_error(reply, rid)
        assert err["code"] != "INTERNAL", err  # a malformed request is the client's error, not a server bug
        if rid == 0 or err["code"] in FATAL:
            assert j == len(replies) - 1, replies  # the connection is closed after it
    # a good request on a fresh connection is answered, and answered right
    with Client(HOST, server.port, timeout=10, retries=0) as c:
        got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in (1, 2, 3)])
    assert got.to_dict(include_metadata=True) == _expected_123(fs)
    assert server.alive()


_EXPECTED: list[dict[str, Any]] = []


def _expected_123(fs: FeatureStore) -> dict[str, Any]:
    if not _EXPECTED:
        _EXPECTED.append(fs.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in (1, 2, 3)])
                         .to_dict(include_metadata=True))
    return _EXPECTED[0]


@pytest.mark.timeout(30)
def test_after_the_fuzz_the_server_is_alive_and_logged_no_crash(server: Server) -> None:
    assert server.alive()
    with Client(HOST, server.port) as c:
        assert c.health()["live"] is True
    logs = server.logs()
    assert "Traceback" not in logs and "Exception in callback" not in logs, logs


# ---- 6. back pressure ---------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_client_that_never_reads_is_bounded_and_others_are_served(server: Server, fs: FeatureStore) -> None:
    """A client pipelines big GETs and never reads: the server stops reading from it once
    its unread replies pass the buffer limit, its memory stays bounded, others are served."""
    proc = psutil.Process(server.proc.pid)
    rss0 = proc.memory_info().rss
    expected = fs.get_online_features(STATS, entity_rows=[{"customer_id": 5}]).to_dict()
    req = frame([GET, 7, {"service": "everything",
                          "entities": {"customer_id": CUSTOMERS, "driver_id": [7] * len(CUSTOMERS)}}])
    batch = req * 20
    flood = Raw(server.port, timeout=5)
    flood.sock.setblocking(False)
    sent, stalled_since, answered = 0, None, 0
    start = time.monotonic()
    pending = memoryview(batch)
    with Client(HOST, server.port, timeout=10) as other:
        while time.monotonic() - start < 15:
            try:
                n = flood.sock.send(pending)
                sent += n
                pending = pending[n:] if n < len(pending) else memoryview(batch)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                time.sleep(0.01)
            if answered < (time.monotonic() - start) * 4:  # another client, a few times a second
                assert other.get_online_features(STATS, entity_rows=[{"customer_id": 5}]).to_dict() == expected
                answered += 1
            if time.monotonic() - start > 2 and stalled_since and time.monotonic() - stalled_since > 0.5:
                break
        rss1 = proc.memory_info().rss
        assert stalled_since is not None and time.monotonic() - stalled_since > 0.5, \
            f"the server kept reading from a client that never reads ({sent} bytes sent)"
        assert rss1 - rss0 < 48 << 20, (rss0, rss1, sent)  # measured: ~11 MiB with back pressure, ~150 without
        assert other.get_online_features(STATS, entity_rows=[{"customer_id": 5}]).to_dict() == expected
    flood.close()
    with Client(HOST, server.port, timeout=10) as c:
        assert c.health()["live"]


# ---- 10. the CLI against a running server -------------------------------------------------------

@pytest.mark.timeout(60)
def test_fstore_get_against_the_server_prints_the_vector(server: Server, repo: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    args = ["get", "--service", "fraud_v1", "customer_id=1", "driver_id=7"]
    remote = subprocess.run([FSTORE, "get", "--host", HOST, "--port", str(server.port), *args[1:]], env=env,
                            capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    assert remote.returncode == 0, remote.stderr
    local = subprocess.run([FSTORE, "-r", str(repo), *args], env=env, capture_output=True, text=True, timeout=30)
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout
    with FeatureStore(repo) as fs:
        row = fs.get_online_features(feature_service="fraud_v1", entity_rows=[{"customer_id": 1, "driver_id": 7}]) \
            .to_rows(include_metadata=True)[0]
    for name in ("avg_amount_7d", "trips_together"):
        assert re.search(rf"{name}\s+│\s+{re.escape(repr(row[name]['value']))}\s+│\s+{row[name]['status']}",
                         remote.stdout), remote.stdout
    bad = subprocess.run([FSTORE, "get", "--host", HOST, "--port", str(server.port), "--service", "nope",
                          "customer_id=1"], env=env, capture_output=True, text=True, timeout=30)
    bad_local = subprocess.run([FSTORE, "-r", str(repo), "get", "--service", "nope", "customer_id=1"], env=env,
                               capture_output=True, text=True, timeout=30)
    # the same error, word for word, from the server as in process
    assert bad.returncode == 1 and "unknown feature service 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    assert bad.stderr == bad_local.stderr


# ---- 6. limits: frame size, rows, connections, idle timeout -------------------------------------

LIMITS = {"max_frame_bytes": 4096, "max_rows": 50, "max_connections": 4, "idle_timeout_s": 1.5}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(repo_copy(tmp_path_factory, "limits", LIMITS))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.timeout(30)
def test_max_frame_size(limited: Server) -> None:
    with Raw(limited.port, hello=False) as raw:
        raw.request(HELLO, 1, {"version": 1})
        res = raw.read()[2]
        assert res["max_frame"] == 4096 and res["max_rows"] == 50
        k = 4096 - len(msgpack.packb([HEALTH, 2, {"pad": ""}]))
        body = msgpack.packb([HEALTH, 2, {"pad": "x" * (k - 2)}])
        assert len(body) == 4096
        raw.send(raw_frame(body))  # exactly the limit: served
        assert raw.read()[:2] == [2, True]
        raw.send(struct.pack(">I", 4097))  # one byte more: refused before the body is sent
        replies = list(raw.read_all())
    assert len(replies) == 1
    assert_error(replies[0], 0, "FRAME_TOO_LARGE")
    for prefix in (struct.pack(">I", 2**32 - 1), b"\x00\x00\x00\x00"):
        with Raw(limited.port) as raw:
            raw.send(prefix + b"\x01\x02")
            replies = list(raw.read_all())
        assert len(replies) == 1
        assert_error(replies[0], 0, "FRAME_TOO_LARGE" if prefix != b"\x00\x00\x00\x00" else "BAD_FRAME")
    # a client gets the error and its next requests work
    with Client(HOST, limited.port, timeout=10) as c:
        with pytest.raises(FstoreError) as info:
            c.get_online_features(["customer_stats:segment"] * 1000, entity_rows=[{"customer_id": 1}])
        assert info.value.code == "FRAME_TOO_LARGE"
        assert c.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).values("segment")
        assert c.push("customer_stats", stats_rows([PUSH_BASE + 1], dt.datetime.now(UTC))) == 1

    async def too_large_async() -> None:
        async with AsyncClient(HOST, limited.port, timeout=10) as ac:
            with pytest.raises(FstoreError) as info:
                await ac.get_online_features(["customer_stats:segment"] * 1000, entity_rows=[{"customer_id": 1}])
            assert info.value.code == "FRAME_TOO_LARGE"
            assert (await ac.get_online_features(STATS, entity_rows=[{"customer_id": 1}])).values("segment")

    asyncio.run(asyncio.wait_for(too_large_async(), 30))


@pytest.mark.timeout(30)
def test_max_rows(limited: Server) -> None:
    with Raw(limited.port) as raw:
        raw.request(GET, 3, get_args(list(range(50))))
        assert raw.read()[:2] == [3, True]
        raw.request(GET, 4, get_args(list(range(51))))
        err = assert_error(raw.read(), 4, "TOO_MANY_ROWS")
        assert err["field"] == "entities" and "50" in err["message"]
        raw.request(GET, 5, get_args([1]))  # the connection goes on
        assert raw.read()[:2] == [5, True]
    with Client(HOST, limited.port, timeout=10) as c:
        with pytest.raises(FstoreError) as info:
            c.get_online_features(STATS, entity_rows=[{"customer_id": i} for i in range(51)])
        assert info.value.code == "TOO_MANY_ROWS"


@pytest.mark.timeout(60)
def test_max_connections(limited: Server) -> None:
    conns: list[Raw] = []
    try:
        for attempt in range(5):
            for c in conns:
                c.close()
            conns = [Raw(limited.port) for _ in range(4)]
            for c in conns:  # all four are open and fresh (none reaped as idle meanwhile)
                c.request(HEALTH, 2, {})
                assert c.read()[:2] == [2, True]
            with Raw(limited.port, hello=False) as fifth:
                replies = list(fifth.read_all())
            if replies:
                break
        assert len(replies) == 1, replies
        assert_error(replies[0], 0, "OVERLOADED")
        conns.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the server notices the close; then a new connection is taken
            try:
                with Raw(limited.port) as again:
                    again.request(HEALTH, 2, {})
                    assert again.read()[:2] == [2, True]
                break
            except (ConnectionError, AssertionError, OSError):
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        for c in conns:
            c.close()


@pytest.mark.timeout(60)
def test_idle_connections_are_closed_and_clients_recover(limited: Server) -> None:
    with Raw(limited.port, timeout=15) as idle:
        idle.request(HEALTH, 2, {})  # open after the handshake ...
        assert idle.read()[:2] == [2, True]
        assert idle.closed_by_server()  # ... and closed once idle
    # a connection in use is kept open (unless this machine stalls longer than the timeout)
    with Raw(limited.port, timeout=10) as busy:
        last = time.monotonic()
        for i in range(25):
            try:
                busy.request(HEALTH, 10 + i, {})
                assert busy.read()[:2] == [10 + i, True]
            except (ConnectionError, OSError):
                assert time.monotonic() - last > LIMITS["idle_timeout_s"], "a connection in use was closed as idle"
                break
            last = time.monotonic()
            time.sleep(0.1)
    # a pooled connection the server closed as idle is not used again: GET and PUSH both work
    with Client(HOST, limited.port, timeout=10, retries=0) as c:
        c.health()
        conn = c._pool[0]
        with Raw(limited.port, timeout=15) as probe:  # wait as long as an idle connection lives
            assert probe.closed_by_server()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                conn.sock.setblocking(False)
                if conn.sock.recv(1, socket.MSG_PEEK) == b"":
                    break
            except BlockingIOError:
                pass
            finally:
                conn.sock.setblocking(True)
            time.sleep(0.05)
        k = PUSH_BASE + 2
        assert c.push("customer_stats", stats_rows([k], dt.datetime.now(UTC) - dt.timedelta(seconds=5))) == 1
        assert c.get_online_features(STATS, entity_rows=[{"customer_id": k}]).values("segment") == [f"s{k}"]

    async def idle_async() -> None:  # the same for the asyncio client, whose loop sees the close
        async with AsyncClient(HOST, limited.port, timeout=10, retries=0) as ac:
            await ac.health()
            conn = ac._conns[0]
            deadline = time.monotonic() + 10
            while conn.lost is None:
                assert time.monotonic() < deadline, "the server did not close the idle connection"
                await asyncio.sleep(0.05)
            k = PUSH_BASE + 3
            assert await ac.push("customer_stats", stats_rows([k], dt.datetime.now(UTC))) == 1

    asyncio.run(asyncio.wait_for(idle_async(), 30))


# ---- 7. SIGTERM drains: no request sent before it is lost ----------------------------------------

BIG_GET = {"service": "everything", "entities": {"customer_id": CUSTOMERS, "driver_id": [7] * len(CUSTOMERS)}}


class Pipeliner:
    """One raw connection: a sender pipelining requests (up to ``window`` unanswered), a
    reader matching replies; records when each request's bytes were fully sent.

    ``slow``: big requests, no window, and the reader reads nothing until ``start_reading``
    is set: the server's buffers fill, it stops reading, the sender blocks.
    """

    def __init__(self, port: int, tid: int, stop: threading.Event, pushes: bool = False,
                 slow: threading.Event | None = None) -> None:
        self.raw = Raw(port, timeout=30)
        self.tid, self.stop, self.pushes, self.slow = tid, stop, pushes, slow
        self.sent: dict[int, tuple[str, int, float]] = {}
        self.replies: dict[int, Any] = {}
        self.window = threading.Semaphore(16 if slow is None else 10**6)
        self.last_progress = time.monotonic()
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        ts = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
        for i in range(1, 800 if self.slow else 50_000):
            if self.stop.is_set() or not self.window.acquire(timeout=10):
                return
            if self.slow is not None:
                data, what, k = frame([GET, i, BIG_GET]), "big", 0
            elif self.pushes and i % 4 == 0:
                k = PUSH_BASE + 20_000 + self.tid * 100_000 + i
                data, what = frame([PUSH, i, {"view": "customer_stats", "rows": stats_rows([k], ts)}]), "push"
            else:
                k = CUSTOMERS[(i * 7 + self.tid) % len(CUSTOMERS)]
                data, what = frame([GET, i, get_args([k])]), "get"
            try:
                self.raw.send(data)
            except OSError:
                return
            self.sent[i] = (what, k, time.monotonic())
            self.last_progress = time.monotonic()

    def _read(self) -> None:
        if self.slow is not None:
            self.slow.wait(30)
        while True:
            try:
                reply = self.raw.read()
            except (ConnectionError, OSError):
                return
            self.replies[reply[0]] = reply
            self.window.release()

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)
        self.raw.close()


def unread_by_server(port: int, client: Raw) -> int:
    """Bytes from ``client`` waiting unread in the server's socket (rx_queue in /proc/net/tcp)."""
    peer = client.sock.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == peer:
            return int(fields[4].split(":")[1], 16)
    return 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pushes", [True, False], ids=["with_pushes", "gets_only"])
def test_sigterm_drains_requests_in_flight(tmp_path_factory: pytest.TempPathFactory, pushes: bool) -> None:
    """Four clients pipeline GETs and PUSHes as fast as they can, a fifth sends big GETs and
    does not read until SIGTERM (so its requests wait in the socket buffers): every request
    fully sent before SIGTERM gets its correct reply, every acknowledged PUSH is written,
    and the server exits 0."""
    root = repo_copy(tmp_path_factory, "drain")
    with FeatureStore(root) as fs:
        expected = {k: v for k, v in zip(CUSTOMERS, zip(*[fs.get_online_features(STATS, entity_rows=[
            {"customer_id": k} for k in CUSTOMERS]).values(f.split(":")[1]) for f in STATS]))}
        big = fs.get_online_features(feature_service="everything", entity_rows=[
            {"customer_id": k, "driver_id": 7} for k in CUSTOMERS]).values("nick")
    srv = Server(root)
    stop, reading = threading.Event(), threading.Event()
    clients: list[Pipeliner] = []
    try:
        clients = [Pipeliner(srv.port, tid, stop, pushes=pushes and tid == 0) for tid in range(4)]
        clients.append(Pipeliner(srv.port, 4, stop, slow=reading))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (sum(len(c.replies) for c in clients) < 1000
                                               or time.monotonic() - clients[-1].last_progress < 0.3
                                               or not unread_by_server(srv.port, clients[-1].raw)):
            time.sleep(0.05)
        # the server stopped reading the slow client: its requests wait in the socket buffer
        assert unread_by_server(srv.port, clients[-1].raw) > 0
        t_term = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        reading.set()
        try:
            rc = srv.proc.wait(30)
        finally:
            stop.set()
        for c in clients:
            c.join(20)
    finally:
        stop.set()
        reading.set()
        srv.stop()
    assert rc == 0, srv.logs()  # and it exited within 30 s (DRAIN_SECONDS is 10)
    before = 0
    pushed = []
    for c in clients:
        for rid, (what, k, t_sent) in c.sent.items():
            reply = c.replies.get(rid)
            if t_sent < t_term:
                before += 1
                assert reply is not None, f"client {c.tid}: request {rid} ({what} {k}) was sent before SIGTERM and lost"
            elif reply is None:
                continue
            if reply[1] is False:
                assert t_sent >= t_term and reply[2]["code"] == "SHUTTING_DOWN", reply
                continue
            if what == "get":
                values = dict(zip(reply[2]["names"], reply[2]["values"]))
                assert tuple(values[f.split(":")[1]][0] for f in STATS) == expected[k], (k, reply)
            elif what == "big":
                assert dict(zip(reply[2]["names"], reply[2]["values"]))["nick"] == big
            else:
                assert reply[2]["written"] == 1
                pushed.append(k)
    assert before > 0 and bool(pushed) == pushes
    with FeatureStore(root) as fs:  # every acknowledged push was written
        got = fs.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in pushed])
        assert got.values("txn_count_7d") == [k * 3 + 1 for k in pushed]
    assert "Traceback" not in srv.logs(), srv.logs()


# ---- 8. a new registry and new data without a restart -------------------------------------------

@pytest.mark.timeout(90)
def test_new_registry_and_new_data_are_picked_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "reload")
    srv = Server(root)
    try:
        with Client(HOST, srv.port, timeout=10) as c, FeatureStore(root) as fs:
            with pytest.raises(FstoreError) as info:
                c.get_online_features(feature_service="late", entity_rows=[{"customer_id": 1}])
            assert info.value.code == "UNKNOWN_OBJECT"
            before = c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
            # a new view, a new version of an existing one and a new service, applied by another process
            now = dt.datetime.now(UTC)
            pq.write_table(pa.table({"customer_id": pa.array([1, 2], pa.int64()),
                                     "ts": pa.array([now - dt.timedelta(hours=1)] * 2, pa.timestamp("us", tz="UTC")),
                                     "bonus": pa.array([10, 20], pa.int64())}), root / "data" / "extra.parquet")

            def change(doc: dict[str, Any]) -> None:
                doc["sources"].append({"name": "extra_src", "path": "data/extra.parquet", "timestamp_field": "ts"})
                doc["feature_views"].append({"name": "extra", "version": 1, "entities": ["customer"],
                                             "source": "extra_src", "features": [{"name": "bonus", "dtype": "int64"}]})
                doc["feature_services"].append({"name": "late", "features": ["extra:bonus", "customer_stats:segment"]})
            edit_defs(root, change)
            _, version = fs.apply()
            assert version == 2
            fs.ingest(["extra"])
            fs.materialize("2000-01-01T00:00:00Z", now, views=["extra"])
            expected = fs.get_online_features(feature_service="late",
                                              entity_rows=[{"customer_id": k} for k in (1, 2, 3)])
            deadline = time.monotonic() + 15
            while True:
                try:
                    got = c.get_online_features(feature_service="late",
                                                entity_rows=[{"customer_id": k} for k in (1, 2, 3)])
                    break
                except FstoreError as exc:
                    assert exc.code == "UNKNOWN_OBJECT" and time.monotonic() < deadline
                    time.sleep(0.1)
            assert got.to_dict(include_metadata=True) == expected.to_dict(include_metadata=True)
            assert got.values("bonus") == [10, 20, None]
            assert c.info()["registry_version"] == 2 and c.health()["registry_version"] == 2
            # the old shapes still answer the same
            assert c.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).to_dict(include_metadata=True) == \
                before.to_dict(include_metadata=True)
            # newly materialized rows of an existing view are served at once (no restart, no reload)
            path = root / "data" / "customer_stats.parquet"
            table = pq.read_table(path)
            row = pa.table({"customer_id": pa.array([1], pa.int64()),
                            "event_timestamp": pa.array([now - dt.timedelta(minutes=1)], pa.timestamp("us", tz="UTC")),
                            "created_timestamp": pa.array([now], pa.timestamp("us", tz="UTC")),
                            "avg_amount_7d": [1.25], "txn_count_7d": pa.array([999], pa.int64()), "segment": ["fresh"]})
            pq.write_table(pa.concat_tables([table, row.cast(table.schema)]), path)
            fs.ingest(["customer_stats"])
            fs.materialize("2000-01-01T00:00:00Z", now, views=["customer_stats"])
            got = c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
            assert got.values("segment") == ["fresh"] and got.values("txn_count_7d") == [999]
    finally:
        srv.stop()


# ---- 9. workers and metrics -------------------------------------------------------------------------

def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def worker_pids(server: Server) -> dict[int, int]:
    """Worker pid -> established connections on the server's port."""
    out = {}
    for child in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            conns = child.net_connections("tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == server.port for c in conns):
            out[child.pid] = sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port for c in conns)
    return out


@pytest.mark.timeout(120)
def test_two_workers_share_the_port_and_report_metrics(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "workers")
    with FeatureStore(root) as fs:
        expected = fs.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in (1, 2, 3, 10**9)]) \
            .to_dict(include_metadata=True)
    mport = free_port()
    srv = Server(root, workers=2, metrics_port=mport)
    conns: list[Raw] = []
    try:
        deadline = time.monotonic() + 30
        while len(worker_pids(srv)) < 2:  # both workers listen
            assert time.monotonic() < deadline, worker_pids(srv)
            time.sleep(0.1)
        for i in range(64):  # connections spread over the workers by the kernel
            raw = Raw(srv.port, timeout=10)
            conns.append(raw)
            raw.request(GET, 2, get_args([1, 2, 3, 10**9]))
            rid, ok, res = raw.read()
            assert (rid, ok) == (2, True)
            assert dict(zip(res["names"], res["values"]))["segment"] == expected["segment"]
            if i >= 8 and all(n > 0 for n in worker_pids(srv).values()):
                break
        per_worker = worker_pids(srv)
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
        for raw in conns[:3]:
            raw.request(GET, 3, get_args([1], ["customer_stats:nope"]))
            assert_error(raw.read(), 3, "UNKNOWN_OBJECT")
        deadline = time.monotonic() + 15
        while True:
            m = metrics(mport)
            if m.get("fstore_open_connections") == len(conns):
                break
            assert time.monotonic() < deadline, {k: v for k, v in m.items() if k.startswith("fstore_open")}
            time.sleep(0.1)
        assert m['fstore_request_seconds_count{op="get"}'] >= len(conns)
        assert m['fstore_request_seconds_bucket{le="+Inf",op="get"}'] == m['fstore_request_seconds_count{op="get"}']
        assert m['fstore_values_total{status="PRESENT"}'] > 0
        assert m['fstore_values_total{status="NOT_FOUND"}'] >= len(conns)  # customer 10**9 in every request
        assert m['fstore_errors_total{code="UNKNOWN_OBJECT"}'] >= 3
        for raw in conns:
            raw.close()
        deadline = time.monotonic() + 15
        while metrics(mport).get("fstore_open_connections") != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert srv.terminate(20) == 0
    finally:
        for raw in conns:
            raw.close()
        srv.stop()


# ---- 10. gauges, PUSH groups, the offline append first ----------------------------------------------

@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a metrics port, on its own repository; device_v1 is materialized up to
    an hour ago, customer_stats_v1 up to a day ahead (the fixture data was materialized in a
    window, which sets no watermark)."""
    root = repo_copy(tmp_path_factory, "metered")
    now_us = time.time_ns() // 1000
    marks = {"device_v1": now_us - 3600 * 10**6, "customer_stats_v1": now_us + 86_400 * 10**6}
    with FeatureStore(root) as store:
        store.online.write(lambda txn: [store.online.set_watermark(txn, v, us) for v, us in marks.items()])
    srv = Server(root, metrics_port=free_port())
    try:
        yield srv
    finally:
        srv.stop()


class WriterHeld:
    """Holds the online store's LMDB write lock from this process: the server's PUSHes wait
    for it, so they stay in flight (and queue into one group) until ``release``.

    A PUSH first makes sure the worker has customer_stats' database open: a worker that
    opens one waits for the write lock with the GIL held (py-lmdb's open_db), and would
    freeze whole, its metrics thread included, not just queue its PUSHes."""

    def __init__(self, srv: Server) -> None:
        with Client(HOST, srv.port, timeout=10) as c:
            assert c.push("customer_stats", stats_rows([PUSH_BASE + 39_999], dt.datetime.now(UTC))) == 1
        self.fs = FeatureStore(srv.repo)
        self.txn = self.fs.online.env.begin(write=True)

    def release(self) -> None:
        if self.txn is not None:
            self.txn.abort()
            self.txn = None
            self.fs.close()


def wait_metric(port: int, name: str, ok: Any, timeout: float = 15) -> float | None:
    """The metric's value once ``ok(value)`` holds (None if absent); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = metrics(port).get(name)
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"{name} = {value}"
        time.sleep(0.1)


def push_frame(rid: int, ids: list[int], n: list[Any] | None = None, view: str = "customer_stats",
               rows: dict[str, Any] | None = None, offline: bool = False) -> bytes:
    ts = dt.datetime.now(UTC) - dt.timedelta(minutes=10)
    return frame([PUSH, rid, {"view": view, "rows": rows or stats_rows(ids, ts, n), "offline": offline}])


def device_rows(devices: list[str], ts: dt.datetime) -> dict[str, list[Any]]:
    return {"device_id": devices, "ts": [ts] * len(devices), "risk": [0.5] * len(devices),
            "label": ["pushed"] * len(devices)}


@pytest.mark.timeout(60)
def test_data_age_gauge_follows_the_watermark_and_pushes(metered: Server) -> None:
    """fstore_data_age_seconds: now minus the newer of the view's watermark and the newest
    event time pushed to it; refreshed about once a second without any request."""
    port = metered.metrics_port
    device = 'fstore_data_age_seconds{view="device_v1"}'
    age = wait_metric(port, device, lambda v: v is not None)
    assert 3600 - 5 <= age <= 3600 + 60, age  # the watermark set an hour ago
    # materialized up to a day ahead: no age
    assert wait_metric(port, 'fstore_data_age_seconds{view="customer_stats_v1"}', lambda v: v is not None) == 0
    with Client(HOST, metered.port, timeout=10) as c:
        assert c.push("device", device_rows(["age-1"], dt.datetime.now(UTC) - dt.timedelta(seconds=120))) == 1
    age = wait_metric(port, device, lambda v: v is not None and v < 1000)
    assert 120 <= age <= 180, age
    later = wait_metric(port, device, lambda v: v is not None and v > age)  # it keeps ageing on its own
    assert later <= 180


@pytest.mark.timeout(60)
def test_inflight_gauge_counts_pushes_waiting_for_their_commit(metered: Server) -> None:
    """PUSHes waiting for the LMDB writer are in flight and get no reply before their
    commit; once written, the gauge is back to 0."""
    port = metered.metrics_port
    ids = [PUSH_BASE + 40_000 + i for i in range(3)]
    wait_metric(port, "fstore_inflight_requests", lambda v: v == 0)
    held = WriterHeld(metered)
    try:
        with Raw(metered.port, timeout=20) as raw:
            for i, k in enumerate(ids):
                raw.send(push_frame(10 + i, [k]))
            wait_metric(port, "fstore_inflight_requests", lambda v: v == 3)
            raw.sock.settimeout(0.5)
            with pytest.raises(socket.timeout):
                raw.read()  # nothing is answered before it is committed
            raw.sock.settimeout(20)
            held.release()
            replies = sorted((raw.read() for _ in ids), key=lambda r: r[0])
    finally:
        held.release()
    assert replies == [[10 + i, True, {"written": 1, "offline": False}] for i in range(3)]
    wait_metric(port, "fstore_inflight_requests", lambda v: v == 0)
    with Client(HOST, metered.port, timeout=10) as c:
        assert c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in ids]).values(
            "txn_count_7d") == [k * 3 + 1 for k in ids]


@pytest.mark.timeout(90)
def test_pushes_arriving_during_a_write_share_one_commit_and_fail_alone(metered: Server) -> None:
    """100 PUSHes from 4 connections arrive while the writer is busy: they are committed
    together (at most 2 transactions), each gets its own reply and count, and the bad one
    in the middle of the burst gets its own error while the others are written. Then 4
    threads push concurrently as fast as the replies come: every push lands."""
    port = metered.metrics_port
    base = PUSH_BASE + 41_000
    bad_rid = 2 * 1000 + 12
    sent: dict[tuple[int, int], int] = {}
    held = WriterHeld(metered)
    conns = [Raw(metered.port, timeout=30) for _ in range(4)]
    try:
        for c, raw in enumerate(conns):
            stream = []
            for i in range(25):
                rid, k = (c + 1) * 1000 + i, base + c * 100 + i
                if rid == bad_rid:
                    stream.append(push_frame(rid, [k], n=["many"]))
                else:
                    stream.append(push_frame(rid, [k]))
                    sent[(c, rid)] = k
            raw.send(b"".join(stream))
        wait_metric(port, "fstore_inflight_requests", lambda v: v == 100)  # all read, none written
        commits = metrics(port).get("fstore_push_commits_total", 0.0)
        held.release()
        replies = {(c, r[0]): r for c, raw in enumerate(conns) for r in (raw.read() for _ in range(25))}
    finally:
        held.release()
        for raw in conns:
            raw.close()
    assert len(replies) == 100
    assert assert_error(replies.pop((1, bad_rid)), bad_rid, "BAD_REQUEST")["field"] == "rows.txn_count_7d"
    assert all(r[1:] == [True, {"written": 1, "offline": False}] for r in replies.values()), replies
    assert 1 <= metrics(port)["fstore_push_commits_total"] - commits <= 2
    with Client(HOST, metered.port, timeout=10) as c:
        got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in sent.values()])
        assert got.values("txn_count_7d") == [k * 3 + 1 for k in sent.values()]
        assert c.get_online_features(STATS, entity_rows=[{"customer_id": base + 112}]).statuses(
            "txn_count_7d")[0].name == "NOT_FOUND"  # the bad push wrote nothing

    def pusher(t: int, out: list[int]) -> None:
        with Client(HOST, metered.port, timeout=20) as c:
            for i in range(40):
                k = base + 1000 + t * 100 + i
                assert c.push("customer_stats", stats_rows([k], dt.datetime.now(UTC) - dt.timedelta(minutes=5))) == 1
                out.append(k)

    done: list[list[int]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=pusher, args=(t, done[t])) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    keys = [k for out in done for k in out]
    assert len(keys) == 160
    with Client(HOST, metered.port, timeout=10) as c:
        got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in keys])
        assert got.values("txn_count_7d") == [k * 3 + 1 for k in keys]


@pytest.mark.timeout(60)
def test_failed_offline_append_writes_nothing_online(server: Server, repo: Path, fs: FeatureStore) -> None:
    """offline=True appends offline first: when that fails, the row is not served either
    (training would never see it), the error says so, and a PUSH of the same group fails
    alone."""
    vdir = fs.offline.view_dir(fs.get_feature_view("device"))
    aside = vdir.with_name(vdir.name + ".aside")
    ts = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    vdir.rename(aside)
    vdir.write_text("not a folder")  # the offline append cannot make the view's folder
    try:
        with Raw(server.port, timeout=20) as raw:
            raw.send(push_frame(1, [], view="device", rows=device_rows(["off-1"], ts), offline=True)
                     + push_frame(2, [], view="device", rows=device_rows(["on-1"], ts)))
            replies = {r[0]: r for r in (raw.read(), raw.read())}
    finally:
        vdir.unlink()
        aside.rename(vdir)
    err = assert_error(replies[1], 1, "OFFLINE_STORE_ERROR")
    assert "nothing was written online" in err["message"], err
    assert replies[2] == [2, True, {"written": 1, "offline": False}]
    with Client(HOST, server.port, timeout=10) as c:
        got = c.get_online_features(["device:risk", "device:label"],
                                    entity_rows=[{"device_id": "off-1"}, {"device_id": "on-1"}])
        assert [s.name for s in got.statuses("risk")] == ["NOT_FOUND", "PRESENT"]
        # and with the folder back, the same push is appended offline and served
        assert c.push("device", device_rows(["off-1"], ts), offline=True) == 1
        assert c.get_online_features(["device:label"], entity_rows=[{"device_id": "off-1"}]).values(
            "label") == ["pushed"]


# ---- 11. the metrics folder, worker supervision ---------------------------------------------------

@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_folder_is_removed_when_the_server_exits(tmp_path_factory: pytest.TempPathFactory,
                                                         workers: int) -> None:
    root = repo_copy(tmp_path_factory, f"metricsdir{workers}")
    tmp = root.parent / "tmp"
    tmp.mkdir()
    mport = free_port()
    srv = Server(root, workers=workers, metrics_port=mport, env={"TMPDIR": str(tmp)})
    try:
        with Client(HOST, srv.port, timeout=10) as c:
            c.get_online_features(STATS, entity_rows=[{"customer_id": 1}])
        wait_metric(mport, 'fstore_request_seconds_count{op="get"}', lambda v: v is not None and v >= 1)
        made = list(tmp.glob("fstore-metrics-*"))
        assert len(made) == 1 and any(made[0].glob("*.db")), made
        assert srv.terminate(30) == 0, srv.logs()
        assert not made[0].exists()
    finally:
        srv.stop()


def wait_workers(srv: Server, n: int, timeout: float = 30) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(srv)) != n:
        assert time.monotonic() < deadline, (pids, srv.logs())
        time.sleep(0.1)
    return pids


@pytest.mark.timeout(120)
def test_a_killed_worker_is_replaced(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "restart")
    with FeatureStore(root) as fs:
        expected = fs.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).values("segment")
    srv = Server(root, workers=2)
    try:
        victim, survivor = sorted(wait_workers(srv, 2))
        os.kill(victim, signal.SIGKILL)
        try:  # until it is gone: a connection made while it dies may land in its backlog and be reset
            psutil.Process(victim).wait(10)
        except psutil.NoSuchProcess:
            pass
        deadline = time.monotonic() + 30
        while True:  # the port keeps serving while the replacement starts, on fresh connections
            with Client(HOST, srv.port, timeout=10, retries=1) as c:
                assert c.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).values("segment") == expected
            pids = worker_pids(srv)
            if len(pids) == 2 and victim not in pids:
                break
            assert time.monotonic() < deadline, (pids, srv.logs())
            time.sleep(0.1)
        assert survivor in pids
        assert re.search(rf"worker {victim} exited \(killed by SIGKILL\); started worker \d+", srv.logs()), srv.logs()
        for _ in range(20):  # both answer (the kernel spreads connections)
            with Client(HOST, srv.port, timeout=10, retries=0) as c:
                assert c.get_online_features(STATS, entity_rows=[{"customer_id": 1}]).values("segment") == expected
        assert srv.terminate(30) == 0, srv.logs()
    finally:
        srv.stop()


@pytest.mark.timeout(120)
def test_a_worker_that_dies_at_start_is_not_restarted_forever(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With fstore.yaml gone, a new worker dies at start: after RESTARTS_PER_MINUTE restarts
    the parent stops, the other worker keeps serving, and when it dies too the server exits 1."""
    from fstore.serving.supervisor import RESTARTS_PER_MINUTE

    root = repo_copy(tmp_path_factory, "crashloop")
    srv = Server(root, workers=2)
    try:
        victim, survivor = sorted(wait_workers(srv, 2))
        (root / "fstore.yaml").rename(root / "fstore.yaml.aside")
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while "not restarted" not in srv.logs():
            assert time.monotonic() < deadline and srv.alive(), srv.logs()
            time.sleep(0.2)
        log = srv.log.read_text(errors="replace")  # whole: each dead worker's traceback is long
        assert len(re.findall(r"started worker \d+ in its place", log)) == RESTARTS_PER_MINUTE, log
        assert set(worker_pids(srv)) == {survivor}
        with Client(HOST, srv.port, timeout=10) as c:
            assert c.health()["ready"]
        os.kill(survivor, signal.SIGKILL)
        assert srv.proc.wait(30) == 1, srv.logs()
    finally:
        srv.stop()


def test_pushes_that_grow_the_map_while_gets_run_lose_nothing_and_crash_nothing(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The map is grown by the pusher thread's writes while the event loop keeps reading:
    the remap runs on the loop between callbacks (LMDB must not remap under a reader)."""
    root = repo_copy(tmp_path_factory, "growing")
    doc = yaml.safe_load((root / "fstore.yaml").read_text())
    doc["online_store"] = {"map_size": 65536}  # LMDB starts at the file's size: the first pushes fill it
    (root / "fstore.yaml").write_text(yaml.safe_dump(doc))
    srv = Server(root)
    try:
        before = (root / "data" / "online" / "data.mdb").stat().st_size
        stop = threading.Event()
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                with Client(HOST, srv.port, timeout=30) as c:
                    while not stop.is_set():
                        c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in CUSTOMERS[:50]])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        ts = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
        base, per_push, pushes = PUSH_BASE + 500_000, 2000, 12
        with Client(HOST, srv.port, timeout=60) as c:
            for i in range(pushes):
                ids = list(range(base + i * per_push, base + (i + 1) * per_push))
                assert c.push("customer_stats", stats_rows(ids, ts)) == per_push
            stop.set()
            for t in threads:
                t.join(timeout=60)
            assert not errors, errors
            assert srv.alive()
            probe = [base, base + per_push * pushes // 2, base + per_push * pushes - 1]
            got = c.get_online_features(STATS, entity_rows=[{"customer_id": k} for k in probe]).to_dict()
            assert got["txn_count_7d"] == [k * 3 + 1 for k in probe]
        assert (root / "data" / "online" / "data.mdb").stat().st_size > before  # it did grow
    finally:
        srv.stop()
