"""In-process reads and the read's row decoding, each against py-lmdb get + msgpack.unpackb
of the same rows (msgpack-packed copies in the floor LMDB, same keys, same key sequence).

* ``read_1`` / ``read_100``: ``FeatureStore.get_online_features`` of 1 and 100 entities x
  20 features (the whole call: plan reuse, one read transaction, ttl, statuses, timestamps,
  the response object). Floor: one read transaction, ``txn.get`` + ``unpackb`` per key.
* ``decode_1000``: the compiled read alone (``fstore._ext._online.read``, columns of key
  values as the server passes them, values per feature): decoding 1,000 stored rows into
  Python values. Floor: the same 1,000 gets and unpackbs.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np
import pytest

BATCHES = 400  # distinct key batches per shape, cycled


def _batches(data: dict[str, Any], per_call: int) -> list[list[int]]:
    ids = data["ids"]
    rng = np.random.default_rng(data["seed"] + per_call)
    return [ids[rng.integers(0, len(ids), per_call)].tolist() for _ in range(BATCHES)]


@pytest.fixture(scope="session")
def fs(online_data: dict[str, Any]) -> Any:
    from fstore import FeatureStore

    store = FeatureStore(online_data["repo"])
    yield store
    store.online.close()


def floor_read(floor_env: Any, batches: list[list[int]]) -> Callable[[], list[Any]]:
    """py-lmdb + msgpack: one read transaction, a get and an unpackb per key."""
    import msgpack

    from .data import FLOOR_DBS, online_key

    env, db = floor_env, floor_env.open_db(FLOOR_DBS[0], create=False)
    unpackb = msgpack.unpackb
    keys = itertools.cycle([[online_key(i) for i in b] for b in batches])

    def call() -> list[Any]:
        with env.begin() as txn:
            get = txn.get
            return [unpackb(get(k, db=db)) for k in next(keys)]
    return call


def fstore_read(fs: Any, data: dict[str, Any], batches: list[list[int]]) -> Callable[[], Any]:
    get, refs, key = fs.get_online_features, data["refs"], data["key"]
    rows = itertools.cycle([[{key: i} for i in b] for b in batches])
    first = get(features=refs, entity_rows=next(rows))  # plan built, pages touched once
    assert all(s.name == "PRESENT" for s in first.statuses(first.feature_names[2]))
    return lambda: get(features=refs, entity_rows=next(rows))


def test_read_1_fstore(benchmark: Any, gate_pass: int, fs: Any, online_data: dict[str, Any]) -> None:
    benchmark(fstore_read(fs, online_data, _batches(online_data, 1)))


def test_read_1_floor(benchmark: Any, gate_pass: int, floor_env: Any, online_data: dict[str, Any]) -> None:
    benchmark(floor_read(floor_env, _batches(online_data, 1)))


def test_read_100_fstore(benchmark: Any, gate_pass: int, fs: Any, online_data: dict[str, Any]) -> None:
    benchmark(fstore_read(fs, online_data, _batches(online_data, 100)))


def test_read_100_floor(benchmark: Any, gate_pass: int, floor_env: Any, online_data: dict[str, Any]) -> None:
    benchmark(floor_read(floor_env, _batches(online_data, 100)))


def test_decode_1000_fstore(benchmark: Any, gate_pass: int, fs: Any, online_data: dict[str, Any]) -> None:
    from fstore._ext._online import read

    plan = fs.online_service.plan(online_data["refs"], None)
    env, key = fs.online.env, online_data["key"]
    cols = itertools.cycle([{key: b} for b in _batches(online_data, 1000)[:40]])
    values, status, _ = read(env, plan, next(cols), None, None, True)
    assert len(values) == len(online_data["refs"]) and set(status) == {0}
    benchmark(lambda: read(env, plan, next(cols), None, None, True))


def test_decode_1000_floor(benchmark: Any, gate_pass: int, floor_env: Any, online_data: dict[str, Any]) -> None:
    benchmark(floor_read(floor_env, _batches(online_data, 1000)[:40]))
