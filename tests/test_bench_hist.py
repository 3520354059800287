"""fstore bench's compiled parts that need no server: the latency histogram (percentiles within
1 % of NumPy's on known samples), the reply parsers of the load generator (against msgpack and
hand-written RESP), and the online store's key decoding the bench samples keys with."""
from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from fstore._ext import _hdr
from fstore._ext._constants import Kind
from fstore._ext._online import key_of
from fstore._ext._replies import fstore_reply, redis_reply
from fstore.online.codec import decode_int_keys, decode_key

QS = [0.5, 0.9, 0.99, 0.999]


def _hist(values: np.ndarray, sub_bits: int = _hdr.SUB_BITS) -> np.ndarray:
    counts = np.zeros(_hdr.buckets(sub_bits), dtype=np.int64)
    _hdr.record(counts, values.astype(np.int64), sub_bits)
    return counts


@pytest.mark.parametrize("name, make", [
    ("lognormal", lambda r: r.lognormal(11.5, 1.2, 200_000)),        # ~100 us, a long tail
    ("exponential", lambda r: r.exponential(40_000, 100_000) + 8_000),
    ("uniform", lambda r: r.uniform(1, 2e9, 50_000)),                 # up to 2 s
    ("bimodal", lambda r: np.concatenate([r.normal(60_000, 5_000, 90_000), r.normal(5e6, 1e6, 10_000)])),
    ("small", lambda r: r.integers(0, 300, 10_000)),                  # nanoseconds: exact buckets
])
def test_percentiles_are_within_one_percent_of_numpy(name: str, make) -> None:
    values = np.maximum(make(np.random.default_rng(7)), 0).astype(np.int64)
    counts = _hist(values)
    for q in QS:
        want = float(np.percentile(values, q * 100, method="inverted_cdf"))  # the nearest-rank definition
        got = _hdr.percentile(counts, q)
        assert abs(got - want) <= 0.01 * want + 1, (name, q, got, want)
    assert _hdr.percentile(counts, 1.0) == pytest.approx(values.max(), rel=0.01, abs=1)


def test_the_bound_holds_for_every_bucket() -> None:
    """Each bucket's midpoint is within 0.4 % (half of 1/128) of every value it holds."""
    mids = _hdr.bucket_values()
    for v in np.unique(np.geomspace(1, 2 ** 39, 20_000).astype(np.int64)):
        mid = mids[_hdr.bucket_index(int(v))]
        assert abs(mid - v) <= v / 256 + 0.5, (v, mid)
    assert np.all(np.diff(mids) > 0)


def test_merging_is_adding_counts_and_empty_is_nan() -> None:
    r = np.random.default_rng(1)
    a, b = r.lognormal(10, 1, 5_000).astype(np.int64), r.lognormal(12, 1, 7_000).astype(np.int64)
    assert np.array_equal(_hist(a) + _hist(b), _hist(np.concatenate([a, b])))
    assert math.isnan(_hdr.percentile(np.zeros(_hdr.buckets(), np.int64), 0.5))
    with pytest.raises(ValueError):
        _hdr.percentile(np.zeros(10, np.int64), 0.5)
    with pytest.raises(ValueError):
        _hdr.percentile(_hist(a), 0.0)


def test_the_timeline_histogram_is_coarser_but_bounded() -> None:
    values = np.random.default_rng(3).lognormal(11, 1, 20_000).astype(np.int64)
    counts = _hist(values, _hdr.TIMELINE_SUB_BITS)
    want = float(np.percentile(values, 99, method="inverted_cdf"))
    assert abs(_hdr.percentile(counts, 0.99, _hdr.TIMELINE_SUB_BITS) - want) <= want / 32 + 1


# ---- the reply parsers -------------------------------------------------------------------------

@pytest.mark.parametrize("rid", [1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1])
def test_fstore_reply_reads_the_id_in_any_form_and_the_status_bin(rid: int) -> None:
    result = {"names": ["a", "b"], "dtypes": ["float64", "string"], "view_of": [0, 0],
              "values": [[1.5, None, -(2 ** 40)], ["x" * 40, "ü", {"nested": [b"\x00" * 300, True]}]],
              "status": bytes([0, 1, 3, 0, 2, 0]), "ts": b"\x00" * 24, "request_id": "r"}
    assert fstore_reply(msgpack.packb([rid, True, result])) == (rid, True, bytes([0, 1, 3, 0, 2, 0]))


def test_fstore_reply_reads_an_error_code_and_tolerates_a_result_without_status() -> None:
    err = {"code": "UNKNOWN_OBJECT", "message": "no such feature", "field": "features"}
    assert fstore_reply(msgpack.packb([9, False, err])) == (9, False, b"UNKNOWN_OBJECT")
    assert fstore_reply(msgpack.packb([0, False, {"message": "m", "code": "OVERLOADED"}])) == (0, False, b"OVERLOADED")
    assert fstore_reply(msgpack.packb([3, True, {"names": [], "values": []}])) == (3, True, None)  # meta: false
    assert fstore_reply(msgpack.packb([3, True, 7])) == (3, True, None)
    big = {f"k{i}": list(range(20)) for i in range(40)} | {"status": b"\x00" * 70_000}  # map16, bin32
    assert fstore_reply(msgpack.packb([4, True, big]))[2] == b"\x00" * 70_000


@pytest.mark.parametrize("body", [b"", b"\x92\x01\xc3", msgpack.packb([1, 2, {}]), msgpack.packb(["x", True, {}]),
                                  msgpack.packb([1, True, {"status": "not bin"}]),
                                  msgpack.packb([1, True, {"a": [1, 2, 3], "status": b"ab"}])[:-5]])
def test_fstore_reply_refuses_what_is_not_a_reply(body: bytes) -> None:
    with pytest.raises(ValueError):
        fstore_reply(body)


def test_redis_reply_counts_keys_by_weight_and_waits_for_the_whole_reply() -> None:
    assert redis_reply(b"$5\r\nhello\r\n", [20]) == (11, 20, 0, None)
    assert redis_reply(b"$-1\r\n", [20]) == (5, 0, 20, None)
    mget = b"*4\r\n$1\r\na\r\n$-1\r\n$4\r\nb\r\nc\r\n$-1\r\n"  # a value may hold CR LF
    assert redis_reply(mget, [2, 3]) == (len(mget), 2 + 2, 3 + 3, None)  # key j weighs weights[j % 2]
    assert redis_reply(mget + b"$1\r\nz", [2, 3])[0] == len(mget)  # the next reply is not read
    for cut in range(len(mget)):
        assert redis_reply(mget[:cut], [1])[0] == 0, cut
    error = b"-WRONGTYPE Operation against a key\r\n"
    assert redis_reply(error) == (len(error), 0, 0, "WRONGTYPE")
    assert redis_reply(b"+PONG\r\n")[0] == 7
    with pytest.raises(ValueError):
        redis_reply(b"?what\r\n")


def test_mget_weights_follow_the_views_of_each_entity() -> None:
    """An MGET of 2 entities x 2 views: keys e1/v1, e1/v2, e2/v1, e2/v2; v1 has 3 features, v2 one."""
    reply = b"*4\r\n$1\r\nx\r\n$-1\r\n$-1\r\n$1\r\ny\r\n"
    used, present, missing, err = redis_reply(reply, [3, 1])
    assert (used, present, missing, err) == (len(reply), 3 + 1, 1 + 3, None)


# ---- keys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, kinds", [
    ((5,), [Kind.K_INT64]), ((-(2 ** 63),), [Kind.K_INT64]), ((2 ** 63 - 1,), [Kind.K_INT64]),
    (("",), [Kind.K_STRING]), (("ü-ß",), [Kind.K_STRING]),
    ((3, "", "ab"), [Kind.K_INT64, Kind.K_STRING, Kind.K_STRING]), ((-1, 7), [Kind.K_INT64, Kind.K_INT64]),
])
def test_decode_key_inverts_key_of(values: tuple, kinds: list) -> None:
    kinds = [int(k) for k in kinds]
    assert decode_key(key_of(values, kinds), kinds) == values


def test_decode_int_keys_reads_many_at_once() -> None:
    ids = [-5, 0, 1, 2 ** 40, -(2 ** 63)]
    joined = b"".join(key_of((i,), [int(Kind.K_INT64)]) for i in ids)
    assert decode_int_keys(joined).tolist() == ids
