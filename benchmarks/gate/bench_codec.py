"""Row encoding and reply packing, each against the msgpack work a plain store or server does.

* ``encode_2000``: ``fstore._ext._online.encode_rows`` of 2,000 rows x 20 features from
  their Arrow columns (with event and created times), as every online write encodes them.
  Floor: ``msgpack.packb`` of the same 2,000 rows, given as Python tuples.
* ``reply_1``: the server's compiled fast path, ``FastGet.answer`` on a prepared 1-entity x
  20-feature GET body (decode, checks, one LMDB read, values packed from the stored row,
  statuses, timestamps, the framed reply). Floor: the raw server's whole per-request work
  (benchmarks/gate/raw_server.py ``RawAnswer.answer``: unpack, one get, a reply head packed
  once + the stored bytes, framed), on the same body.
"""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

ROWS = 2_000
GETS = 400  # distinct request bodies, cycled


@pytest.fixture(scope="session")
def encode_input(online_data: dict[str, Any], floor_env: Any) -> dict[str, Any]:
    import msgpack
    import pyarrow.parquet as pq

    from fstore.offline.casting import plain
    from fstore.online.codec import KIND_OF

    from .data import FLOOR_DBS, online_key

    table = pq.read_table(online_data["parquet"]).slice(0, ROWS)
    specs = online_data["specs"]
    ts = table.column("event_timestamp").cast("int64").to_numpy()
    db = floor_env.open_db(FLOOR_DBS[0], create=False)
    with floor_env.begin() as txn:
        rows = [tuple(msgpack.unpackb(txn.get(online_key(i), db=db)))
                for i in table.column(online_data["key"]).to_pylist()]
    return {"ts": np.ascontiguousarray(ts), "created": np.full(ROWS, np.iinfo(np.int64).min, dtype=np.int64),
            "columns": [plain(table.column(s["name"])) for s in specs],
            "kinds": [KIND_OF[s["dtype"]] for s in specs], "rows": rows}


def test_encode_2000_fstore(benchmark: Any, gate_pass: int, encode_input: dict[str, Any]) -> None:
    from fstore._ext._online import encode_rows

    e = encode_input
    assert len(encode_rows(e["ts"], e["created"], e["columns"], e["kinds"])) == ROWS
    benchmark(encode_rows, e["ts"], e["created"], e["columns"], e["kinds"])


def test_encode_2000_floor(benchmark: Any, gate_pass: int, encode_input: dict[str, Any]) -> None:
    import msgpack

    packb, rows = msgpack.packb, encode_input["rows"]
    benchmark(lambda: list(map(packb, rows)))


def _bodies(data: dict[str, Any]) -> list[bytes]:
    import msgpack

    rng = np.random.default_rng(data["seed"] + 7)
    ids = data["ids"][rng.integers(0, len(data["ids"]), GETS)].tolist()
    return [msgpack.packb([2, 1 + n, {"features": data["refs"], "entities": {data["key"]: [i]}}])
            for n, i in enumerate(ids)]


@pytest.fixture(scope="session")
def fast_get(online_data: dict[str, Any]) -> Any:
    from fstore.serving.server import Limits, ServerState

    state = ServerState(str(online_data["repo"]), Limits())
    state.prepared_get(online_data["refs"], None, False)  # what the first GET of the shape does
    state.fast.valid_until = float("inf")  # no registry check falls due inside the timing
    yield state.fast
    state.close()  # the pusher thread and any listener the state subscribed
    state.online.close()


def test_reply_1_fstore(benchmark: Any, gate_pass: int, fast_get: Any, online_data: dict[str, Any]) -> None:
    bodies = _bodies(online_data)
    assert all(fast_get.answer(b) is not None for b in bodies[:20]), "the fast path declined the GET"
    it = itertools.cycle(bodies)
    answer = fast_get.answer
    benchmark(lambda: answer(next(it)))


def test_reply_1_floor(benchmark: Any, gate_pass: int, floor_env: Any, online_data: dict[str, Any]) -> None:
    from .raw_server import RawAnswer

    raw = RawAnswer(floor_env)
    it = itertools.cycle(_bodies(online_data))
    answer = raw.answer
    assert answer(next(it))[:4] != b"\0\0\0\0"
    benchmark(lambda: answer(next(it)))
