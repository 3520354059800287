"""The compiled passes of ``fstore drift`` (fstore/_ext/_drift.pyx) against numpy and the
brute-force PSI rule: exact order statistics and deciles (bit for bit numpy.quantile's),
exact bin counts, null and NaN counts, statistics, on every column type, chunked and
sliced, with ties, infinities, signed zeros, constant columns and empty sides."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from fstore._ext import _drift
from fstore.monitoring.drift import compare_feature, compare_features
from fstore.monitoring.drift_data import Output
from fstore.monitoring.drift_compare import FeatureComparison
from fstore.monitoring.drift_numbers import Numbers
from fstore.monitoring.psi import Histogram
from fstore.monitoring.psi import DECILES, decile_edges, deciles
from test_psi import brute_psi

# the oracles (numpy's quantile and sum) warn on inf - inf and overflow; the kernels do not
pytestmark = pytest.mark.filterwarnings("ignore:.*encountered:RuntimeWarning")

TYPES = {"int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(), "float64": pa.float64(),
         "timestamp": pa.timestamp("us", tz="UTC")}


def chunked(values: list[Any], typ: pa.DataType, cuts: list[int] | None = None, pad: int = 0) -> pa.ChunkedArray:
    """The values as a ChunkedArray cut at ``cuts``; with ``pad``, every chunk is a slice
    of a longer array (a non-zero offset, values around it that must not be read)."""
    cuts = sorted({c for c in (cuts or []) if 0 < c < len(values)})
    chunks = []
    for a, b in zip([0, *cuts], [*cuts, len(values)]):
        part = values[a:b]
        if pad:
            filler = [None] * pad if typ != pa.float64() else [7.0e300] * pad
            chunks.append(pa.array(filler + part + filler, typ).slice(pad, len(part)))
        else:
            chunks.append(pa.array(part, typ))
    return pa.chunked_array(chunks, typ)


def plain(values: list[Any]) -> np.ndarray:
    """The values the rule bins: neither null nor NaN, as float64."""
    return np.array([float(v) for v in values if v is not None and v == v], dtype=np.float64)


def numeric_histogram(ref: pa.ChunkedArray, cur: pa.ChunkedArray, parts: int = 1
                      ) -> tuple[Histogram, Numbers, Numbers]:
    """A float64 feature's histogram and both sides' numbers, the current side added in
    ``parts`` pieces (as drift adds the logs, file by file)."""
    comparison = FeatureComparison(Output("f", {"name": "v"}, {"name": "f", "dtype": "float64"}), ref)
    step = max(1, -(-len(cur) // parts))
    for start in range(0, len(cur), step):
        comparison.add(cur.slice(start, step))
    return comparison.result().histogram, comparison.ref.numbers(), comparison.cur.numbers()  # type: ignore[union-attr]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, NaN equal to NaN (0.0 and -0.0 are equal values)."""
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


# ---- generated data -------------------------------------------------------------------------

special = st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.0, 1e300, -1e300, 5e-324])
floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), special,
                   st.floats(-1e6, 1e6, allow_nan=False))
finite = st.one_of(st.none(), st.floats(-1e12, 1e12, allow_nan=False), special)
ints = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.integers(-5, 5))
cuts = st.lists(st.integers(0, 80), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(floats, min_size=1, max_size=80), cuts, st.sampled_from([0, 3]))
def test_floats_scan_and_order_statistics(values: list[Any], at: list[int], pad: int) -> None:
    check_column(values, pa.float64(), at, pad)


@settings(max_examples=200, deadline=None)
@given(st.lists(ints, min_size=1, max_size=80), cuts, st.sampled_from([0, 5]))
def test_int64_and_timestamps_scan_and_order_statistics(values: list[Any], at: list[int], pad: int) -> None:
    """Beyond 2**53 an int64 is rounded to float64 as numpy rounds it."""
    check_column(values, pa.int64(), at, pad)
    stamps = [None if v is None else max(min(v, 2**62), -(2**62)) for v in values]
    check_column(stamps, TYPES["timestamp"], at, pad)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1), st.integers(-3, 3)), min_size=1,
                max_size=60), st.lists(st.one_of(st.none(), st.floats(width=32)), min_size=1, max_size=60), cuts)
def test_int32_and_float32(i32: list[Any], f32: list[Any], at: list[int]) -> None:
    check_column(i32, pa.int32(), at, 0)
    check_column(f32, pa.float32(), at, 2)


def check_column(values: list[Any], typ: pa.DataType, at: list[int], pad: int) -> None:
    col = chunked(values, typ, at, pad)
    x = plain(values)
    n, nulls, total, low, high = _drift.scan(col)
    assert (n, nulls) == (len(x), len(values) - len(x))
    if not n:
        assert (low, high) == (None, None)
        return
    assert low == x.min() and high == x.max()
    want = float(np.sum(x))
    if math.isfinite(want) and math.isfinite(total):
        assert total == pytest.approx(want, rel=1e-12, abs=1e-12 * float(np.sum(np.abs(x))))
    else:
        assert same_bits(np.array([total]), np.array([want])), (total, want)
    ranks = np.arange(n)
    assert same_bits(_drift.order_statistics(col, ranks, n, low, high), np.sort(x))
    assert same_bits(deciles(n, lambda r: _drift.order_statistics(col, r, n, low, high)),
                     np.quantile(x, DECILES))
    edges = decile_edges(n, lambda r: _drift.order_statistics(col, r, n, low, high))
    counts, spread = _drift.bins(col, edges, float(np.mean(x)) if math.isfinite(want) else 0.0)
    assert counts.tolist() == [sum(1 for v in x if which(v, edges) == b) for b in range(len(edges) + 1)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(allow_nan=False), max_size=15), st.integers(0, 3), st.lists(floats, max_size=60))
def test_bins_against_any_ascending_edges(edges: list[float], nans: int, values: list[Any]) -> None:
    """0 to 15 edges, ties among them, NaN edges last (never reached)."""
    e = np.array(sorted(edges) + [np.nan] * min(nans, 15 - len(edges)), dtype=np.float64)
    counts, _ = _drift.bins(chunked(values, pa.float64()), e, 0.0)
    x = plain(values)
    assert counts.tolist() == [sum(1 for v in x if which(v, e) == b) for b in range(len(e) + 1)]


def which(v: float, edges: np.ndarray) -> int:
    """The rule's bin of a value: bin 0 below the first edge, bin i in [edges[i-1], edges[i])."""
    return sum(1 for e in edges if e <= v)


# ---- larger columns: many buckets, heavy ties, outliers, huge ranges -----------------------------

def shapes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 200_000
    return {
        "normal": rng.normal(size=n),
        "poisson ties": rng.poisson(3, n).astype(np.float64),
        "timestamps and one outlier": np.append(1.7e15 + rng.integers(0, 3 * 10**13, n - 1), -1.7e15),
        "one value": np.full(n, 42.5),
        "two values": np.where(rng.random(n) < 0.95, 0.0, 1.0),
        "signed zeros": np.where(rng.random(n) < 0.5, 0.0, -0.0),
        "log-uniform magnitudes": np.exp(rng.uniform(-600, 600, n)) * rng.choice([-1, 1], n),
        "infinities": np.concatenate([rng.normal(size=n - 30), [np.inf] * 20, [-np.inf] * 10]),
        "tiny range": 1.0 + rng.integers(0, 5, n) * np.finfo(np.float64).eps,
    }


@pytest.mark.parametrize("shape", list(shapes(np.random.default_rng(0))))
def test_large_columns_match_numpy_bit_for_bit(shape: str) -> None:
    rng = np.random.default_rng(7)
    x = shapes(rng)[shape]
    rng.shuffle(x)
    nan = rng.random(len(x)) < 0.02
    null = rng.random(len(x)) < 0.02
    data = np.where(nan, np.nan, x)
    arr = pa.array(data, mask=null)
    col = pa.chunked_array([arr.slice(0, 70_001), arr.slice(70_001, 1), arr.slice(70_002)])
    kept = data[~null & ~nan]
    n, nulls, total, low, high = _drift.scan(col)
    assert (n, nulls) == (len(kept), len(x) - len(kept))
    values_at = lambda r: _drift.order_statistics(col, r, n, low, high)  # noqa: E731
    ranks = rng.integers(0, n, 50)
    assert same_bits(values_at(ranks), np.sort(kept)[ranks])
    assert same_bits(deciles(n, values_at), np.quantile(kept, DECILES))
    edges = np.unique(np.quantile(kept, DECILES))
    counts, _ = _drift.bins(col, edges, 0.0)
    at_or_above = [len(kept), *(np.count_nonzero(kept >= e) for e in edges), 0]
    assert counts.tolist() == [a - b for a, b in zip(at_or_above, at_or_above[1:])]


@pytest.mark.parametrize("parts", [1, 7, 300_001])
def test_statistics_match_numpy_whole_or_in_parts(parts: int) -> None:
    """A side added in parts (one value each, at the extreme) gives the whole side's counts
    and PSI exactly, and its mean and std (combined part by part) to ~1e-12."""
    rng = np.random.default_rng(3)
    x = rng.normal(1e6, 3.0, 300_001)
    col = pa.chunked_array([pa.array(x[:100_000]), pa.array(x[100_000:])])
    hist, ref, cur = numeric_histogram(col, col, parts)
    for side in (ref, cur):
        assert side.mean == pytest.approx(x.mean(), rel=1e-15) and side.std == pytest.approx(x.std(), rel=1e-12)
        assert (side.low, side.high, side.values, side.nulls) == (x.min(), x.max(), len(x), 0)
    assert hist.ref.tolist() == hist.cur.tolist() and hist.psi == 0.0


# ---- the PSI of the numeric side, against the brute-force rule ---------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=0, max_size=60), st.lists(finite, min_size=0, max_size=60), cuts, cuts)
def test_numeric_psi_matches_the_brute_force_rule(ref: list[Any], cur: list[Any], a: list[int], b: list[int]) -> None:
    hist, r, c = numeric_histogram(chunked(ref, pa.float64(), a, 2), chunked(cur, pa.float64(), b), 1 + len(a))
    want = brute_psi(ref, cur, numeric=True)
    assert (hist.psi is None) == (want is None)
    if want is not None:
        assert hist.psi == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert (r.values, r.nulls, c.values, c.nulls) == (len(plain(ref)), len(ref) - len(plain(ref)),
                                                      len(plain(cur)), len(cur) - len(plain(cur)))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from("abcde")), min_size=1, max_size=40),
       st.lists(st.one_of(st.none(), st.sampled_from("abcdefg")), max_size=40), st.integers(1, 5), st.booleans())
def test_categories_in_parts_and_as_dictionaries(ref: list[Any], cur: list[Any], parts: int, encoded: bool) -> None:
    """Strings as drift reads them from Parquet (dictionaries, one per file) or plain, the
    current side in parts: the brute-force rule's PSI, bins and null rates."""
    def col(values: list[Any]) -> pa.ChunkedArray:
        c = pa.chunked_array([pa.array(values, pa.string())])
        return c.dictionary_encode() if encoded else c
    comparison = FeatureComparison(Output("s", {"name": "v"}, {"name": "s", "dtype": "string"}), col(ref))
    step = max(1, -(-len(cur) // parts))
    for start in range(0, len(cur), step):
        comparison.add(col(cur[start:start + step]))
    e = comparison.result().entry
    want = brute_psi(ref, cur, numeric=False)
    assert (e["psi"] is None) == (want is None)
    if want is not None:
        assert e["psi"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert e["bins"] == len(set(v for v in ref if v is not None)) + 1
    assert e["null_rate_ref"] == ref.count(None) / len(ref)
    assert e["null_rate_cur"] == (cur.count(None) / len(cur) if cur else None) and e["rows_cur"] == len(cur)


@pytest.mark.parametrize("ref, cur, bins, psi", [
    # a constant reference: 9 equal deciles, one edge, 2 bins; the current side below it
    ([5.0] * 10, [1.0] * 4, 2, (1 - 0.0001) * math.log(1 / 0.0001) + (0.0001 - 1) * math.log(0.0001 / 1)),
    ([5.0] * 10, [5.0, 5.0, None, float("nan")], 2, 0.0),
    # duplicate edges dropped: nine 0s and a 1 give edges {0, 0.1}
    ([0.0] * 9 + [1.0], [0.0] * 5 + [1.0] * 5, 3,
     (0.5 - 0.9) * math.log(0.5 / 0.9) + (0.5 - 0.1) * math.log(0.5 / 0.1)),
    # an empty current window (no rows, or only nulls and NaN): no PSI
    ([1.0, 2.0, 3.0], [], 10, None),
    ([1.0, 2.0, 3.0], [None, float("nan")], 10, None),
    # no reference value: no bins, no PSI
    ([None, float("nan")], [1.0, 2.0], 0, None),
])
def test_edge_cases_of_the_rule(ref: list[Any], cur: list[Any], bins: int, psi: float | None) -> None:
    hist, _, c = numeric_histogram(chunked(ref, pa.float64()), chunked(cur, pa.float64()))
    assert len(hist.labels) == len(hist.ref) == len(hist.cur) == bins
    assert (hist.psi is None) if psi is None else hist.psi == pytest.approx(psi, rel=1e-12, abs=1e-15)
    assert c.nulls == sum(1 for v in cur if v is None or v != v)


def test_empty_current_window_in_the_report() -> None:
    """A feature whose current side has no rows: rows_cur 0, null rate null, PSI null, ok."""
    out = Output("x", {"name": "v"}, {"name": "x", "dtype": "float64"})
    e = compare_feature(out, chunked([1.0, 2.0, None], pa.float64()), pa.chunked_array([], pa.float64())).entry
    assert (e["rows_cur"], e["null_rate_cur"], e["psi"], e["level"]) == (0, None, None, "ok")
    assert (e["mean_cur"], e["min_cur"]) == (None, None) and e["mean_ref"] == 1.5 and e["null_rate_ref"] == 1 / 3


# ---- contracts ------------------------------------------------------------------------------------

def test_bad_arguments_are_refused() -> None:
    col = pa.chunked_array([pa.array([3.0, 1.0, 2.0])])
    with pytest.raises(TypeError, match="string"):
        _drift.scan(pa.array(["a"]))
    with pytest.raises(TypeError, match="Array"):
        _drift.scan(np.zeros(3))
    with pytest.raises(ValueError, match="outside"):
        _drift.order_statistics(col, [3], 3, 1.0, 3.0)
    with pytest.raises(ValueError, match="does not match"):
        _drift.order_statistics(col, [0], 3, 1.5, 3.0)  # not the column's min: 1.0 is not counted
    with pytest.raises(ValueError, match="above"):
        _drift.order_statistics(col, [0], 3, 3.0, 1.0)
    with pytest.raises(ValueError, match="at most 15 edges"):
        _drift.bins(col, np.arange(16.0), 0.0)
    assert _drift.order_statistics(col, [], 3, 1.0, 3.0).tolist() == []
    assert _drift.scan(pa.chunked_array([], pa.float64())) == (0, 0, 0.0, None, None)


def test_threads_give_the_sequential_answers() -> None:
    """The passes release the GIL: many features compared at once equal one at a time."""
    rng = np.random.default_rng(5)
    outputs, ref, cur = [], {}, {}
    for i in range(8):
        dtype = ["float64", "int64", "float32", "timestamp"][i % 4]
        outputs.append(Output(f"f{i}", {"name": "v"}, {"name": f"f{i}", "dtype": dtype}))
        mask = rng.random(50_000) < 0.05
        ref[f"f{i}"] = pa.chunked_array([pa.array(rng.poisson(5 + i, 50_000), mask=mask).cast(TYPES[dtype])])
        cur[f"f{i}"] = pa.chunked_array([pa.array(rng.poisson(6 + i, 50_000)).cast(TYPES[dtype])])
    one = [compare_feature(o, ref[o.column], cur[o.column]).entry for o in outputs]
    assert [f.entry for f in compare_features(outputs, ref, cur)] == one
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: _drift.order_statistics(c, [0, 40_000], *_scan_args(c)), ref.values()))
    assert [g.tolist() for g in got] == [np.sort(_floats(c))[[0, 40_000]].tolist() for c in ref.values()]


def _scan_args(col: pa.ChunkedArray) -> tuple[int, float, float]:
    n, _, _, low, high = _drift.scan(col)
    return n, low, high


def _floats(col: pa.ChunkedArray) -> np.ndarray:
    col = col.drop_null()
    return (col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col).to_numpy().astype(np.float64)
