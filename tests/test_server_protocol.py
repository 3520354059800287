"""The feature server's wire protocol, against the real ``fstore serve`` in a subprocess.

Raw sockets where the bytes matter: the handshake, pipelining on one connection,
malformed frames (fuzzed), back pressure on a client that never reads, and the limits
(frame size, rows, connections, idle timeout). Only 127.0.0.1; every loop and wait is
bounded; no assertion depends on how fast the shared machine is.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import socket
import struct
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fstore import FeatureStore
from fstore.client import AsyncClient, Client
from fstore.errors import FstoreError
from server_util import (CUSTOMERS, GET, HEALTH, HELLO, HOST, INFO, MAX_ROWS, PUSH, PUSH_BASE, STATS, UTC, Raw,
                         Server, assert_error, frame, get_args, raw_frame, repo_copy, stats_rows)

FATAL = {"BAD_FRAME", "FRAME_TOO_LARGE", "HANDSHAKE_REQUIRED", "UNSUPPORTED_VERSION"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "server", {"max_rows": MAX_ROWS, "max_frame_bytes": 1 << 20})


def unique_entities(port: int, start: int, n: int) -> list[int]:
    """Entities pushed with values that belong to them alone (txn_count_7d = 3k+1, segment sk)."""
    ids = [start + i for i in range(n)]
    with Client(HOST, port, timeout=10) as c:
        assert c.push("customer_stats", stats_rows(ids, dt.datetime.now(UTC) - dt.timedelta(minutes=10))) == n
    return ids


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
    with Client(HOST, limited.port, timeout=10) as c:  # the client splits by the max_rows of HELLO
        whole = c.get_online_features(STATS, entity_rows=[{"customer_id": i} for i in range(51)]).to_dict()
        head = c.get_online_features(STATS, entity_rows=[{"customer_id": i} for i in range(50)]).to_dict()
        tail = c.get_online_features(STATS, entity_rows=[{"customer_id": 50}]).to_dict()
        assert whole == {k: head[k] + tail[k] for k in head}


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
