"""The AsyncClient's compiled wire helpers (fstore._ext._protocol.RequestFramer and
ReplyDecoder) against the general pack/unpack they stand in for, and its writes: the
requests of many requesters woken together leave in fewer system calls than requests, with
every reply matched to its request. A real server on 127.0.0.1 for the last."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fstore import FeatureStore
from fstore.client import AsyncClient
from fstore.serving.protocol import decoder, framer, pack, unpack
from server_util import CUSTOMERS, HOST, Server, repo_copy

pytestmark = pytest.mark.timeout(120)

_packer = msgpack.Packer(datetime=True, use_bin_type=True)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
           | st.text(max_size=20) | st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
names = st.lists(st.sampled_from(["a", "b", "events:x0", "é"]), max_size=4)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "client_wire")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 2**33),
                          st.dictionaries(st.sampled_from(["features", "entities", "meta", "x", "y"]),
                                          values | names, max_size=6)), min_size=1, max_size=6))
def test_framer_frames_as_pack(requests: list[tuple[int, int, dict[str, Any]]]) -> None:
    frame = framer()
    for op, rid, args in requests * 2:  # the same lists again: their bytes are reused
        assert frame(op, rid, args) == pack([op, rid, args])


def test_framer_never_reuses_bytes_of_an_equal_list_that_packs_differently() -> None:
    frame = framer()
    for value in (["a", "b"], [1, 2], [True, 2], [1.0, 2], ["a", "b"], [1, 2]):  # [1, 2] == [True, 2] == [1.0, 2]
        assert frame(2, 7, {"features": value}) == pack([2, 7, {"features": value}])
    sent = ["a", "b"]
    assert frame(2, 8, {"features": sent}) == pack([2, 8, {"features": ["a", "b"]}])
    sent.append("c")  # the caller's list, changed after it was sent
    assert frame(2, 9, {"features": sent}) == pack([2, 9, {"features": ["a", "b", "c"]}])


shape = st.fixed_dictionaries({"names": names, "dtypes": names, "view_of": st.lists(st.integers(0, 3), max_size=4),
                               "keys": names},
                              optional={"values": values, "status": st.binary(max_size=8) | st.none(),
                                        "ts": st.binary(max_size=16), "request_id": st.text(max_size=8),
                                        "other": values})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32), st.booleans(), shape | values), min_size=1, max_size=6))
def test_decoder_decodes_as_unpack(replies: list[tuple[int, bool, Any]]) -> None:
    decode = decoder()
    for reply in replies * 2:  # the same shapes again: decoded once, reused
        body = _packer.pack(list(reply))
        assert decode(body) == unpack(body)
        assert type(decode(body)) is list


def test_decoder_reuses_a_repeated_shape_and_fails_as_unpack() -> None:
    decode = decoder()
    result = {"names": ["a", "b"], "dtypes": ["int64", "string"], "view_of": [0, 0], "keys": ["k"],
              "values": [[1], ["x"]], "status": b"\x00\x00", "ts": b"\x00" * 8,
              "at": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)}
    one, two = (decode(_packer.pack([r, True, result])) for r in (1, 2))
    assert one == [1, True, result] and two == [2, True, result]
    assert two[2]["names"] is one[2]["names"] and two[2]["values"] is not one[2]["values"]
    other = decode(_packer.pack([3, True, dict(result, names=["a", "c"])]))
    assert other[2]["names"] == ["a", "c"]
    info = _packer.pack([5, True, {"keys": ["a"], "names": ["b"]}])  # not a GET: nothing shared
    first = decode(info)
    first[2]["keys"].append("changed by the caller")
    assert decode(info) == [5, True, {"keys": ["a"], "names": ["b"]}]
    body = _packer.pack([4, True, result])
    for bad in (body[:-1], body + b"\x00", body[:3], b"\x93\x04\xc3\x81\xc1"):
        with pytest.raises(Exception) as want:
            unpack(bad)
        with pytest.raises(want.type):
            decode(bad)


def test_requests_woken_together_share_writes(server: Server) -> None:
    fs = FeatureStore(server.repo)
    keys = CUSTOMERS[:64]
    features = ["customer_stats:avg_amount_7d", "customer_stats:segment"]

    async def main() -> tuple[list[Any], int]:
        async with AsyncClient(HOST, server.port, timeout=10, max_connections=1) as ac:
            await ac.get_online_features(features, entity_rows=[{"customer_id": 1}])  # connected
            conn = ac._conns[0]
            writes = 0
            real = conn.transport.writelines

            def counted(frames: Any) -> None:
                nonlocal writes
                writes += 1
                real(frames)
            transport = conn.transport
            conn.transport = type("Counted", (), {"writelines": staticmethod(counted),
                                                  "is_closing": transport.is_closing})()
            try:
                out = await asyncio.gather(*(ac.get_online_features(features, entity_rows=[{"customer_id": k}])
                                             for k in keys))
            finally:
                conn.transport = transport
            return out, writes

    got, writes = asyncio.run(asyncio.wait_for(main(), 60))
    assert writes == 1  # all 64 were requested on one turn of the loop: one write, not 64
    for k, resp in zip(keys, got):
        assert resp.to_dict() == fs.get_online_features(features, entity_rows=[{"customer_id": k}]).to_dict()
