"""Kernel tests: every answer is checked against a brute-force reference.

A wrong row from the as-of join silently leaks or misassigns features, and a
changed key hash silently moves rows to other buckets on disk, so both are
pinned down here independently of the Cython code.
"""
from __future__ import annotations

import bisect
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fstore._ext._asof import asof_indices, bucket_of, hash_keys

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
M64 = 2**64 - 1

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------

def ref_asof(vk, vt, vc, ek, et, ev, ttl):
    """Brute force straight from the spec: no sorting or grouping assumed."""
    out = []
    for i in range(len(et)):
        best = None
        if ev[i]:
            for j in range(len(vt)):
                if tuple(vk[j]) != tuple(ek[i]) or vt[j] > et[i]:
                    continue
                if ttl > 0 and vt[j] < et[i] - ttl:
                    continue
                if best is None or (vt[j], vc[j], j) > best:
                    best = (vt[j], vc[j], j)
        out.append(-1 if best is None else best[2])
    return out


def ref_is_grouped_sorted(vk, vt, vc):
    seen = set()
    for j in range(len(vt)):
        key = tuple(vk[j])
        if j and key == tuple(vk[j - 1]):
            if (vt[j], vc[j]) < (vt[j - 1], vc[j - 1]):
                return False
        else:
            if key in seen:
                return False
            seen.add(key)
    return True


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)


def ref_xxh64(data: bytes, seed: int = 0) -> int:
    def rnd(acc, lane):
        return (_rotl((acc + lane * P2) & M64, 31) * P1) & M64

    n, p = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64]
        while n - p >= 32:
            for i in range(4):
                v[i] = rnd(v[i], int.from_bytes(data[p + 8 * i:p + 8 * i + 8], "little"))
            p += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M64
        for x in v:
            h = ((h ^ rnd(0, x)) * P1 + P4) & M64
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while n - p >= 8:
        h ^= rnd(0, int.from_bytes(data[p:p + 8], "little"))
        h = (_rotl(h, 27) * P1 + P4) & M64
        p += 8
    if n - p >= 4:
        h ^= (int.from_bytes(data[p:p + 4], "little") * P1) & M64
        h = (_rotl(h, 23) * P2 + P3) & M64
        p += 4
    while p < n:
        h ^= (data[p] * P5) & M64
        h = (_rotl(h, 11) * P1) & M64
        p += 1
    h ^= h >> 33
    h = (h * P2) & M64
    h ^= h >> 29
    h = (h * P3) & M64
    return h ^ (h >> 32)


def ref_fmix64(x):
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    return x ^ (x >> 33)


NULL_HASH = 0x13198A2E03707344
ROW_SEED = 0x243F6A8885A308D3


def ref_hash_rows(columns: list[list]) -> list[int]:
    """The documented algorithm, from Python values (None = null)."""
    out = []
    for row in zip(*columns):
        h = ROW_SEED
        for value in row:
            if value is None:
                v = NULL_HASH
            elif isinstance(value, str):
                v = ref_xxh64(value.encode("utf-8"))
            else:
                v = ref_xxh64((value & M64).to_bytes(8, "little"))
            h = ref_fmix64(((h * P1) & M64) ^ v)
        out.append(h)
    return out


# ---------------------------------------------------------------------------
# Helpers and strategies
# ---------------------------------------------------------------------------

def run(vk, vt, vc, ek, et, ev, ttl, k):
    """Call the kernel from Python lists."""
    return asof_indices(
        np.array(vk, dtype=np.int64).reshape(len(vt), k),
        np.array(vt, dtype=np.int64),
        np.array(vc, dtype=np.int64),
        np.array(ek, dtype=np.int64).reshape(len(et), k),
        np.array(et, dtype=np.int64),
        np.array(ev, dtype=np.uint8),
        ttl,
    ).tolist()


# mostly a small range (forces ties), sometimes the int64 extremes (overflow)
TS = st.one_of(st.integers(0, 20), st.sampled_from([I64_MIN, I64_MIN + 1, -1, I64_MAX - 1, I64_MAX]))
CREATED = st.one_of(st.just(I64_MIN), st.integers(0, 3))
TTL = st.one_of(st.integers(-2, 25), st.sampled_from([I64_MAX, 1, 0]))


def key_tuples(k):
    return st.tuples(*[st.integers(-3, 3)] * k)


@st.composite
def sorted_views(draw, k):
    keys = draw(st.lists(key_tuples(k), unique=True, max_size=6))
    groups = []
    for key in keys:
        rows = sorted(draw(st.lists(st.tuples(TS, CREATED), min_size=1, max_size=8)))
        groups.append([(key, t, c) for t, c in rows])
    order = draw(st.permutations(range(len(groups))))
    rows = [r for g in order for r in groups[g]]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


@st.composite
def entities(draw, k, view_keys, view_ts):
    key = key_tuples(k)
    ts = TS
    if view_keys:
        # mostly keys that exist, and times on / next to existing timestamps
        key = st.one_of(st.sampled_from(view_keys), st.sampled_from(view_keys), key_tuples(k))
        near = st.tuples(st.sampled_from(view_ts), st.integers(-1, 1)).map(
            lambda p: min(max(p[0] + p[1], I64_MIN), I64_MAX))
        ts = st.one_of(TS, near, near)
    rows = draw(st.lists(st.tuples(key, ts, st.booleans() | st.just(True)), max_size=12))
    if rows and draw(st.booleans()):
        rows = rows + rows[: draw(st.integers(1, len(rows)))]  # duplicate entity rows
    return [r[0] for r in rows], [r[1] for r in rows], [int(r[2]) for r in rows]


@st.composite
def cases(draw):
    k = draw(st.integers(1, 3))
    vk, vt, vc = draw(sorted_views(k))
    ek, et, ev = draw(entities(k, vk, vt))
    ttl = draw(TTL)
    if vt and et and draw(st.booleans()):
        # a ttl that puts some view row exactly on (or 1us off) the boundary
        d = draw(st.sampled_from(et)) - draw(st.sampled_from(vt)) + draw(st.integers(-1, 1))
        if 0 < d <= I64_MAX:
            ttl = d
    return k, vk, vt, vc, ek, et, ev, ttl


# ---------------------------------------------------------------------------
# asof_indices: property tests
# ---------------------------------------------------------------------------

@SETTINGS
@given(cases())
def test_asof_matches_reference(case):
    k, vk, vt, vc, ek, et, ev, ttl = case
    assert run(vk, vt, vc, ek, et, ev, ttl, k) == ref_asof(vk, vt, vc, ek, et, ev, ttl)


@SETTINGS
@given(st.data())
def test_asof_unsorted_input_raises_or_matches(data):
    k = data.draw(st.integers(1, 2))
    rows = data.draw(st.lists(st.tuples(st.tuples(*[st.integers(0, 2)] * k),
                                        st.integers(0, 4), st.integers(0, 2)), max_size=10))
    vk, vt, vc = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    ek, et, ev = data.draw(entities(k, vk, vt))
    ttl = data.draw(TTL)
    want = ref_asof(vk, vt, vc, ek, et, ev, ttl)
    if ref_is_grouped_sorted(vk, vt, vc):
        assert run(vk, vt, vc, ek, et, ev, ttl, k) == want
    else:
        with pytest.raises(ValueError, match="view rows are not grouped and sorted"):
            run(vk, vt, vc, ek, et, ev, ttl, k)
    # the caller's retry: stable sort by (key, ts, created), map positions back
    order = sorted(range(len(rows)), key=lambda j: (vk[j], vt[j], vc[j]))
    got = run([vk[j] for j in order], [vt[j] for j in order], [vc[j] for j in order],
              ek, et, ev, ttl, k)
    assert [order[j] if j >= 0 else -1 for j in got] == want


# ---------------------------------------------------------------------------
# asof_indices: pinned cases
# ---------------------------------------------------------------------------

def test_ttl_boundaries_to_the_microsecond():
    vk, vt, vc = [[7]], [1_000_000], [0]
    ets = [999_999, 1_000_000, 1_000_010, 1_000_011, 5_000_000]
    for ttl, want in [(10, [-1, 0, 0, -1, -1]), (0, [-1, 0, 0, 0, 0]),
                      (-5, [-1, 0, 0, 0, 0]), (1, [-1, 0, -1, -1, -1])]:
        got = run(vk, vt, vc, [[7]] * 5, ets, [1] * 5, ttl, 1)
        assert got == want, ttl


def test_ttl_at_int64_extremes_does_not_overflow():
    vk, vt, vc = [[1], [1]], [I64_MIN, I64_MAX], [0, 0]
    ek, ev = [[1], [1]], [1, 1]
    assert run(vk, vt, vc, ek, [I64_MAX - 1, I64_MAX], ev, I64_MAX, 1) == [-1, 1]
    assert run(vk, vt, vc, ek, [I64_MAX - 1, I64_MIN], ev, 0, 1) == [0, 0]
    assert run(vk, vt, vc, ek, [I64_MIN, I64_MAX], ev, 1, 1) == [0, 1]


def test_ties_created_then_storage_order():
    # ts ties resolved by created (null created = INT64_MIN sorts first);
    # full ties resolved by the last row in storage order
    vk = [[1]] * 5
    vt = [10, 10, 10, 10, 20]
    vc = [I64_MIN, 3, 5, 5, 0]
    got = run(vk, vt, vc, [[1], [1], [1]], [10, 19, 20], [1, 1, 1], 0, 1)
    assert got == [3, 3, 4]


def test_null_entity_keys_absent_keys_and_duplicates():
    vk, vt, vc = [[5], [5], [9]], [1, 2, 1], [0, 0, 0]
    ek = [[5], [5], [5], [4], [9], [5]]
    et = [2, 2, 2, 100, 0, 1]
    ev = np.array([1, 1, 0, 1, 1, 1], dtype=bool)  # bool masks are accepted
    got = asof_indices(np.array(vk), np.array(vt), np.array(vc), np.array(ek),
                       np.array(et), ev, 0)
    assert got.tolist() == [1, 1, -1, -1, -1, 0]


def test_empty_view_and_empty_entities():
    e = np.empty((0, 2), dtype=np.int64)
    z = np.empty(0, dtype=np.int64)
    got = asof_indices(e, z, z, np.array([[1, 2], [3, 4]]), np.array([1, 2]),
                       np.ones(2, np.uint8), 0)
    assert got.dtype == np.int64 and got.tolist() == [-1, -1]
    got = asof_indices(np.array([[1, 2]]), np.array([1]), np.array([1]), e, z,
                       np.empty(0, np.uint8), 0)
    assert got.dtype == np.int64 and got.shape == (0,)
    assert asof_indices(e, z, z, e, z, np.empty(0, np.uint8), 5).shape == (0,)


def test_unsorted_view_detected_even_without_entities():
    z = np.empty(0, dtype=np.int64)
    with pytest.raises(ValueError, match="not grouped and sorted.*row 2"):
        asof_indices(np.array([[1], [2], [1]]), np.array([1, 1, 1]), np.array([0, 0, 0]),
                     np.empty((0, 1), np.int64), z, np.empty(0, np.uint8), 0)


@pytest.mark.parametrize("vk,vt,vc,bad_row", [
    ([[1], [2], [1]], [1, 1, 1], [0, 0, 0], 2),              # key split in two groups
    ([[1], [1], [2], [2]], [1, 2, 5, 4], [0, 0, 0, 0], 3),    # ts decreases
    ([[1], [1]], [3, 3], [2, 1], 1),                          # created decreases on ts tie
    ([[1, 1], [1, 2], [1, 1]], [0, 0, 0], [0, 0, 0], 2),      # composite key split
])
def test_ungrouped_or_unsorted_view_raises(vk, vt, vc, bad_row):
    k = len(vk[0])
    with pytest.raises(ValueError, match=f"view rows are not grouped and sorted.*row {bad_row}"):
        run(vk, vt, vc, [[1] * k], [10], [1], 0, k)


def test_composite_keys_compare_every_column():
    # tuples that share columns or are permutations of each other stay apart
    vk = [[1, 2], [2, 1], [1, 1], [2, 2]]
    got = run(vk, [0, 0, 0, 0], [0, 0, 0, 0],
              [[2, 1], [1, 2], [2, 2], [1, 1], [1, 3]], [0] * 5, [1] * 5, 0, 2)
    assert got == [1, 0, 3, 2, -1]


# The in-memory tuple hash is murmur3's fmix64 chained over the columns
# (tuple_hash in _asof.pyx). It is invertible, so we can build distinct key
# tuples whose hashes collide and check that the kernel still tells them apart.
TUPLE_SEED = 0x9E3779B97F4A7C15


def fmix64_inv(x):
    x ^= x >> 33
    x = (x * pow(0xC4CEB9FE1A85EC53, -1, 2**64)) & M64
    x ^= x >> 33
    x = (x * pow(0xFF51AFD7ED558CCD, -1, 2**64)) & M64
    return x ^ (x >> 33)


def ref_tuple_hash(key):
    h = TUPLE_SEED
    for v in key:
        h = ref_fmix64(h ^ (v & M64))
    return h


def to_i64(u):
    return u - 2**64 if u >= 2**63 else u


@pytest.mark.parametrize("k", [1, 2])
def test_hash_collisions_never_confuse_keys(k):
    target = 0x0123456789ABCDEF
    if k == 2:
        # every tuple has exactly the same 64-bit hash
        keys = [(a, to_i64(fmix64_inv(target) ^ ref_fmix64(TUPLE_SEED ^ a))) for a in range(40)]
        assert len({ref_tuple_hash(key) for key in keys}) == 1
    else:
        # same tag and same home slot; only bits no small table looks at differ
        keys = [(to_i64(fmix64_inv(target ^ (i << 20)) ^ TUPLE_SEED),) for i in range(40)]
        assert len({ref_tuple_hash(key) >> 32 for key in keys}) == 1
    present = keys[::2]
    vk = [key for key in reversed(present) for _ in range(2)]
    vt = [t for _ in present for t in (0, 5)]
    vc = [0] * len(vt)
    ek = keys + keys[::-1]
    et = [3] * len(ek)
    ev = [1] * len(ek)
    want = ref_asof(vk, vt, vc, ek, et, ev, 0)
    assert sum(w >= 0 for w in want) == len(present) * 2
    assert run(vk, vt, vc, ek, et, ev, 0, k) == want
    with pytest.raises(ValueError, match="not grouped and sorted"):
        run(vk + vk[:1], vt + [9], vc + [0], ek, et, ev, 0, k)


def test_many_groups_against_dict_reference():
    # enough groups to exercise probing chains in the hash table
    rng = np.random.default_rng(7)
    for k in (1, 2):
        n_keys, n_v, n_e = 20_000, 100_000, 30_000
        uniq = np.unique(rng.integers(-(2**62), 2**62, size=(n_keys, k)), axis=0)
        vk = uniq[rng.integers(0, len(uniq), n_v)]
        vt = rng.integers(0, 1000, n_v)
        vc = rng.integers(0, 3, n_v)
        order = np.lexsort((vc, vt) + tuple(vk[:, j] for j in reversed(range(k))))
        vk, vt, vc = np.ascontiguousarray(vk[order]), vt[order], vc[order]
        ek = np.ascontiguousarray(np.concatenate(
            [uniq[rng.integers(0, len(uniq), n_e)], rng.integers(0, 5, size=(100, k))]))
        et = rng.integers(-10, 1010, len(ek))
        ev = rng.random(len(ek)) < 0.95
        ttl = 50
        got = asof_indices(vk, vt, vc, ek, et, ev.astype(np.uint8), ttl)

        groups, ts_of = {}, {}
        for j, key in enumerate(map(tuple, vk.tolist())):
            groups.setdefault(key, [j, j])[1] = j + 1
        vt_l = vt.tolist()
        want = []
        for key, t, ok in zip(map(tuple, ek.tolist()), et.tolist(), ev.tolist()):
            g = groups.get(key) if ok else None
            if g is None:
                want.append(-1)
                continue
            ts = ts_of.setdefault(key, vt_l[g[0]:g[1]])
            pos = bisect.bisect_right(ts, t) - 1
            want.append(g[0] + pos if pos >= 0 and ts[pos] >= t - ttl else -1)
        assert got.tolist() == want


def test_table_larger_than_cache():
    # 300k single-row groups: the table takes the big-allocation path
    rng = np.random.default_rng(11)
    n = 300_000
    keys = rng.permutation(n).astype(np.int64) * 3 - n
    vt = rng.integers(0, 100, n)
    ek = np.concatenate([keys[rng.integers(0, n, 50_000)], keys[:1000] + 1])
    et = rng.integers(0, 100, len(ek))
    got = asof_indices(keys.reshape(-1, 1), vt, np.zeros(n, np.int64), ek.reshape(-1, 1), et,
                       np.ones(len(ek), np.uint8), 0)
    row_of = {key: j for j, key in enumerate(keys.tolist())}
    want = [row_of[key] if key in row_of and vt[row_of[key]] <= t else -1
            for key, t in zip(ek.tolist(), et.tolist())]
    assert got.tolist() == want


def test_threads_share_nothing():
    rng = np.random.default_rng(1)
    vk = np.repeat(np.arange(1000, dtype=np.int64), 50).reshape(-1, 1)
    vt = np.tile(np.arange(50, dtype=np.int64), 1000)
    vc = np.zeros_like(vt)
    ek = rng.integers(0, 1100, (20_000, 1))
    et = rng.integers(-5, 60, 20_000)
    ev = np.ones(20_000, np.uint8)
    want = asof_indices(vk, vt, vc, ek, et, ev, 10)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: asof_indices(vk, vt, vc, ek, et, ev, 10), range(8)))
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_readonly_inputs_are_accepted():
    arrs = [np.array([[1], [1]]), np.array([1, 2]), np.array([0, 0]),
            np.array([[1]]), np.array([5]), np.array([1], np.uint8)]
    for a in arrs:
        a.flags.writeable = False
    assert asof_indices(*arrs, 0).tolist() == [1]


# ---------------------------------------------------------------------------
# asof_indices: argument errors
# ---------------------------------------------------------------------------

def _ok_args():
    return dict(view_keys=np.array([[1], [2]]), view_ts=np.array([1, 2]),
                view_created=np.array([0, 0]), entity_keys=np.array([[1]]),
                entity_ts=np.array([3]), entity_valid=np.array([1], np.uint8), ttl_us=0)


@pytest.mark.parametrize("change,exc,match", [
    (dict(entity_keys=np.array([[1, 2]])), ValueError, "key columns"),
    (dict(view_keys=np.empty((2, 0), np.int64), entity_keys=np.empty((1, 0), np.int64)),
     ValueError, "at least one key column"),
    (dict(view_ts=np.array([1, 2, 3])), ValueError, "one entry per view row"),
    (dict(view_created=np.array([0])), ValueError, "one entry per view row"),
    (dict(entity_ts=np.array([3, 4])), ValueError, "one entry per entity row"),
    (dict(entity_valid=np.array([1, 1], np.uint8)), ValueError, "one entry per entity row"),
    (dict(view_ts=np.array([1, 2], np.int32)), ValueError, "dtype mismatch"),
    (dict(entity_valid=np.array([1], np.int64)), ValueError, "dtype mismatch"),
    (dict(view_keys=np.array([1, 2])), ValueError, "dimensions"),
    (dict(view_keys=np.asfortranarray(np.array([[1, 5], [2, 6]])),
          entity_keys=np.array([[1, 5]])), ValueError, "contiguous"),
    (dict(entity_ts=np.array([3, 9, 4])[::2]), ValueError, "contiguous"),
    (dict(ttl_us=2**63), OverflowError, None),
])
def test_argument_errors(change, exc, match):
    args = _ok_args()
    args.update(change)
    with pytest.raises(exc, match=match):
        asof_indices(**args)


# ---------------------------------------------------------------------------
# hash_keys / bucket_of
# ---------------------------------------------------------------------------

def test_reference_xxh64_matches_published_vectors():
    # covers every XXH64 code path: 1-, 4- and 8-byte tails and 32-byte stripes
    assert ref_xxh64(b"") == 0xEF46DB3751D8E999
    assert ref_xxh64(b"a") == 0xD24EC4F1A98C6E5B
    assert ref_xxh64(b"abc") == 0x44BC2CF5AD770999
    assert ref_xxh64(b"1234") == 0xD8316E61D84F6BA4
    assert ref_xxh64(b"12345678") == 0xD2D02F08CF7CFD4A
    assert ref_xxh64(b"123456789ABCDEF") == 0xA66DF83F00E9202D
    assert ref_xxh64(b"123456789ABCDEF1234567") == 0x847978AEB0358851
    assert ref_xxh64(b"Nobody inspects the spammish repetition") == 0xFBCEA83C8A378BF1


# Persisted layout: these literals must never change without a format version bump.
PINNED = [
    ([pa.array([0, 1, -1, I64_MIN, I64_MAX, None], pa.int64())],
     [0x09CAFD844252A15D, 0xD69C994642A9BF09, 0x04913730953717AC,
      0x80D3794F0C1FAFFB, 0x29528EC0D627A158, 0x8BB15A1BBC4DF65E]),
    ([pa.array(["", "a", "abc", "Nobody inspects the spammish repetition", "é✓", None])],
     [0xD47522B60E964418, 0xF63A31E1A3FF0FCE, 0x7669BDD08705D0C1,
      0x8F727FCCBF440082, 0x3C26F5EB4AD6AF0B, 0x8BB15A1BBC4DF65E]),
    ([pa.array([1, 1, None], pa.int64()), pa.array(["x", None, "x"])],
     [0xB3DD7C1DC6E9F1CC, 0xDA538906880FFF48, 0x7AE3630376BF3B0B]),
]


@pytest.mark.parametrize("cols,want", PINNED)
def test_hash_is_pinned(cols, want):
    got = hash_keys(cols)
    assert got.dtype == np.uint64
    assert [hex(x) for x in got.tolist()] == [hex(x) for x in want]
    assert got.tolist() == ref_hash_rows([c.to_pylist() for c in cols])
    assert bucket_of(got, 16).tolist() == [x % 16 for x in want]


VALUE = st.one_of(st.none(), st.integers(I64_MIN, I64_MAX))
TEXT = st.one_of(st.none(), st.text(max_size=70))


@st.composite
def key_columns(draw):
    n = draw(st.integers(0, 25))
    kinds = draw(st.lists(st.sampled_from(["int", "str", "large"]), min_size=1, max_size=3))
    cols = []
    for kind in kinds:
        strat = VALUE if kind == "int" else TEXT
        cols.append((kind, draw(st.lists(strat, min_size=n, max_size=n))))
    return cols


def _to_arrow(kind, values, pad_left, pad_right, chunks, draw_split):
    typ = {"int": pa.int64(), "str": pa.string(), "large": pa.large_string()}[kind]
    filler = [None if i % 2 else (7 if kind == "int" else "pad") for i in range(pad_left)]
    tail = [1 if kind == "int" else "zz"] * pad_right
    full = pa.array(filler + values + tail, typ)
    sliced = full.slice(pad_left, len(values))  # non-zero offset into shared buffers
    if not chunks or len(values) < 2:
        return sliced
    cut = draw_split
    return pa.chunked_array([sliced.slice(0, cut), sliced.slice(cut)], typ)


@SETTINGS
@given(key_columns(), st.data())
def test_hash_matches_reference_for_any_slicing_and_chunking(cols, data):
    want = ref_hash_rows([values for _, values in cols])
    plain = [pa.array(values, {"int": pa.int64(), "str": pa.string(),
                               "large": pa.large_string()}[kind]) for kind, values in cols]
    assert hash_keys(plain).tolist() == want
    shaped = []
    for kind, values in cols:
        shaped.append(_to_arrow(kind, values, data.draw(st.integers(0, 9)),
                                data.draw(st.integers(0, 3)), data.draw(st.booleans()),
                                data.draw(st.integers(0, max(len(values), 1)))))
    assert hash_keys(shaped).tolist() == want


def test_string_and_large_string_agree_and_slices_match_copies():
    values = ["alpha", None, "", "β" * 40, "x"]
    s = pa.array(values, pa.string())
    ls = pa.array(values, pa.large_string())
    np.testing.assert_array_equal(hash_keys([s]), hash_keys([ls]))
    sl = pa.array(["pre", "fix"] + values, pa.string()).slice(2)
    np.testing.assert_array_equal(hash_keys([sl]), hash_keys([s]))
    ints = pa.array([3, None, 5, 6], pa.int64())
    np.testing.assert_array_equal(hash_keys([ints.slice(1, 2)]), hash_keys([ints])[1:3])


def test_bytes_under_null_slots_are_ignored():
    validity = pa.py_buffer(bytes([0b101]))
    a = pa.Array.from_buffers(pa.int64(), 3, [validity, pa.py_buffer(
        np.array([1, 999, 3], np.int64).tobytes())])
    b = pa.array([1, None, 3], pa.int64())
    np.testing.assert_array_equal(hash_keys([a]), hash_keys([b]))
    s = pa.Array.from_buffers(pa.string(), 2, [pa.py_buffer(bytes([0b10])), pa.py_buffer(
        np.array([0, 7, 8], np.int32).tobytes()), pa.py_buffer(b"garbagey")])
    np.testing.assert_array_equal(hash_keys([s]), hash_keys([pa.array([None, "y"])]))


def test_hash_empty_inputs():
    out = hash_keys([pa.array([], pa.int64()), pa.array([], pa.string())])
    assert out.dtype == np.uint64 and out.shape == (0,)
    out = hash_keys([pa.chunked_array([], pa.large_string())])
    assert out.shape == (0,)
    assert hash_keys([pa.array([None, None], pa.string())]).tolist() == \
        ref_hash_rows([[None, None]])


@pytest.mark.parametrize("col,name", [
    (pa.array([1], pa.int32()), "int32"),
    (pa.array([1.0]), "double"),
    (pa.array([b"x"], pa.binary()), "binary"),
    (pa.array(["x"]).dictionary_encode(), "dictionary"),
    (pa.array(["x"], pa.string_view()), "string_view"),
    (pa.array([None], pa.null()), "null"),
    (np.array([1, 2]), "ndarray"),
    ([1, 2], "list"),
])
def test_hash_rejects_other_types(col, name):
    with pytest.raises(TypeError, match=name):
        hash_keys([pa.array([1], pa.int64()), col] if not isinstance(col, list) else [col])


def test_hash_argument_errors():
    with pytest.raises(ValueError, match="at least one"):
        hash_keys([])
    with pytest.raises(ValueError, match="length"):
        hash_keys([pa.array([1, 2], pa.int64()), pa.array(["a"])])


def test_bucket_of():
    rng = np.random.default_rng(3)
    h = rng.integers(0, 2**64 - 1, 1000, dtype=np.uint64, endpoint=True)
    for n in (1, 2, 7, 64, 1000, 2**31 - 1):
        got = bucket_of(h, n)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, (h % np.uint64(n)).astype(np.int32))
    np.testing.assert_array_equal(bucket_of(h[::3], 10), (h[::3] % np.uint64(10)).astype(np.int32))
    assert bucket_of(np.empty(0, np.uint64), 4).shape == (0,)
    # doubling a power-of-two bucket count only splits buckets
    assert np.all(bucket_of(h, 128) % 64 == bucket_of(h, 64))


@pytest.mark.parametrize("n", [0, -1, 2**31])
def test_bucket_of_rejects_bad_counts(n):
    with pytest.raises(ValueError, match="n_buckets"):
        bucket_of(np.zeros(3, np.uint64), n)


def test_bucket_of_rejects_wrong_dtype():
    with pytest.raises(ValueError, match="dtype mismatch"):
        bucket_of(np.zeros(3, np.int64), 4)
