"""The plain-TCP connection: uvloop reads into the connection's own buffer, frames are cut
and fast GETs decoded and answered in C (fstore.serving.fastconn, fstore._ext._conn,
fstore._ext._request), everything else by the Python logic, replies in request order.

Back pressure with a client that never reads is tested in test_server_protocol.py
(test_a_client_that_never_reads_is_bounded_and_others_are_served), on this connection.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import struct
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from fstore.serving.fastconn import FastConnection
from fstore.serving.server import Limits, ServerState
from server_util import (CUSTOMERS, GET, HEALTH, INFO, MAX_ROWS, PUSH, PUSH_BASE, STATS, UTC, Raw, Server, frame,
                         get_args, raw_frame, repo_copy, stats_rows)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "conn", {"max_rows": MAX_ROWS, "max_frame_bytes": 1 << 20})


def alone(port: int, requests: list[bytes]) -> list[Any]:
    """The replies of ``requests`` sent one at a time, each awaited before the next."""
    out = []
    with Raw(port) as raw:
        for req in requests:
            raw.send(req)
            out.append(raw.read())
    return out


def test_uvloop_takes_it_as_a_buffered_protocol() -> None:
    # uvloop reads into get_buffer only for a protocol that is not an asyncio.Protocol
    assert issubclass(FastConnection, asyncio.BufferedProtocol)
    assert not issubclass(FastConnection, asyncio.Protocol)


@pytest.mark.timeout(60)
def test_pipelined_gets_in_one_packet_are_answered_in_order(server: Server) -> None:
    reqs = [frame([GET, 100 + i, {**get_args([CUSTOMERS[i], CUSTOMERS[-i - 1]], meta=i % 3 != 0),
                                  **({"request_id": f"r{i}"} if i % 4 == 0 else {})}]) for i in range(60)]
    expected = alone(server.port, reqs)  # the first also prepares the shape (Python path)
    assert [r[0] for r in expected] == list(range(100, 160)) and all(r[1] is True for r in expected)
    with Raw(server.port) as raw:
        raw.send(b"".join(reqs))
        got = [raw.read() for _ in reqs]
    assert got == expected


@pytest.mark.timeout(120)
def test_a_frame_split_at_every_byte_boundary(server: Server) -> None:
    reqs = [frame([GET, 7, get_args([CUSTOMERS[3]])]), frame([INFO, 8, {}]),
            frame([GET, 9, {**get_args([CUSTOMERS[5], 10**9]), "request_id": "split"}])]
    expected = alone(server.port, reqs)
    stream = b"".join(reqs)
    with Raw(server.port, timeout=10) as raw:
        for k in range(1, len(stream)):
            raw.send(stream[:k])
            time.sleep(0.002)  # the two parts reach the server in separate reads
            raw.send(stream[k:])
            assert [raw.read() for _ in reqs] == expected, k


@pytest.mark.timeout(60)
def test_a_mixed_packet_keeps_the_order_of_replies(server: Server) -> None:
    push_ids = [PUSH_BASE + 7100, PUSH_BASE + 7101]
    rows = stats_rows(push_ids, dt.datetime.now(UTC) - dt.timedelta(minutes=1))
    new_shape = ["customer_stats:segment", "customer_stats:avg_amount_7d"]  # first seen here: the Python path
    parts = [
        (1, frame([GET, 1, get_args([CUSTOMERS[0]])])),
        (2, frame([GET, 2, get_args([CUSTOMERS[1]], features=new_shape)])),
        (3, frame([GET, 3, get_args([CUSTOMERS[2]])])),
        (4, frame([PUSH, 4, {"view": "customer_stats", "rows": rows}])),
        (5, frame([INFO, 5, {}])),
        (6, frame([GET, 6, get_args([CUSTOMERS[3]], features=["customer_stats:nope"])])),  # an error, not fatal
        (7, frame([HEALTH, 7, {}])),
        (8, frame([GET, 8, {**get_args([CUSTOMERS[4]]), "request_id": "x" * 200}])),  # BAD_REQUEST
        (9, frame([GET, 9, get_args([CUSTOMERS[5], CUSTOMERS[6]])])),
    ]
    with Raw(server.port) as raw:
        raw.send(frame([GET, 99, get_args([1])]))  # the fast shape prepared
        assert raw.read()[1] is True
        raw.send(b"".join(p for _, p in parts))
        got = [raw.read() for _ in parts]
    # a PUSH is answered once its group is committed (the pusher thread): anywhere after it was read
    order = [r[0] for r in got if r[0] != 4]
    assert order == [1, 2, 3, 5, 6, 7, 8, 9] and 4 in [r[0] for r in got]
    by_id = {r[0]: r for r in got}
    assert [by_id[i][1] for i in range(1, 10)] == [True, True, True, True, True, False, True, False, True]
    assert by_id[4][2]["written"] == 2 and by_id[6][2]["code"] == "UNKNOWN_OBJECT"
    assert by_id[8][2]["code"] == "BAD_REQUEST" and by_id[2][2]["names"] == ["segment", "avg_amount_7d"]


@pytest.mark.timeout(60)
def test_a_frame_bigger_than_the_buffer(server: Server) -> None:
    pad = "p" * 300_000  # the connection's buffer starts at 64 KiB
    reqs = [frame([INFO, 1, {"pad": pad}]), frame([GET, 2, {**get_args([CUSTOMERS[8]]), "pad": pad}]),
            frame([GET, 3, get_args([CUSTOMERS[8]])])]
    with Raw(server.port) as raw:
        raw.send(b"".join(reqs))
        got = [raw.read() for _ in reqs]
    assert [r[:2] for r in got] == [[1, True], [2, True], [3, True]]
    assert "views" in got[0][2] and got[1][2] == got[2][2] and got[2][2]["names"] == ["avg_amount_7d", "txn_count_7d",
                                                                                      "segment"]


# ---- the C decoder gives FastGet.answer's bytes, or leaves the request to it ----------------------

def body(rid: bytes, entries: list[bytes]) -> bytes:
    """``[2, rid, {entries}]`` from raw MessagePack parts (any int form the decoder must read)."""
    return b"\x93\x02" + rid + bytes([0x80 | len(entries)]) + b"".join(entries)


def pk(*objs: Any) -> bytes:
    return b"".join(msgpack.packb(o, use_bin_type=True) for o in objs)


def test_the_c_decoder_answers_as_fastget_answer(repo: Path) -> None:
    state = ServerState(str(repo), Limits(max_rows=MAX_ROWS))
    try:
        state.prepared_get(STATS, None, False)
        state.prepared_get(STATS, None, True)
        raw, fast = state.raw_gets, state.fast
        feats, ents = pk("features", STATS), pk("entities", {"customer_id": [CUSTOMERS[1], 10**9]})
        int64 = b"\xa8entities\x81\xabcustomer_id\x92\xd3" + struct.pack(">q", CUSTOMERS[2]) + b"\xcc\x05"
        answered = [
            body(b"\x07", [feats, ents]),
            body(b"\xce\x00\x00\x01\x00", [ents, feats, pk("meta", False)]),
            body(b"\xcd\x01\x00", [feats, ents, pk("request_id", "abc"), pk("meta", True)]),
            body(b"\xd0\x05", [feats, int64]),
            body(b"\x09", [feats, pk("full_names", True), ents, pk("request_id", None)]),
            body(b"\x09", [feats, ents, pk("unknown", {"a": [1.5, b"x", None]})]),
        ]
        for b in answered:
            reply = raw.reply_for(b)
            assert reply is not None and reply == fast.answer(b), b
        left = [
            body(b"\x07", [feats, ents]) + b"\x00",                                # trailing bytes
            body(b"\x07", [feats, ents, pk("entities", {"customer_id": [1]})]),    # entities twice
            body(b"\x07", [feats, pk("entities", {"customer_id": [1.0]})]),        # a float key
            body(b"\x07", [feats, pk("entities", {"customer_id": [1, 2], "x": [1]})]),  # ragged
            body(b"\x07", [feats, pk("entities", {})]),
            body(b"\x00", [feats, ents]),                                          # id 0
            body(b"\x07", [pk("features", ["customer_stats:segment"]), ents]),     # a shape not prepared
            body(b"\x07", [feats, ents, pk("request_id", "")]),
            body(b"\x07", [feats, ents, pk("meta", 1)]),
            b"\x93\x03\x07\x80",
            body(b"\x07", [feats, pk("entities", {"customer_id": list(range(MAX_ROWS + 1))})]),
        ]
        for b in left:
            assert raw.reply_for(b) is None, b
        # those FastGet.answer does answer, it answers as for the same request in the decoder's forms
        assert fast.answer(left[8]) == fast.answer(body(b"\x07", [feats, ents, pk("meta", True)]))
        assert fast.answer(left[6]) is None
    finally:
        state.close()
