"""The population stability index (PSI) rule of ``fstore drift``, exactly as documented
(docs/monitoring.md, Drift), so that anyone can recompute it:

- numbers (ints, floats, timestamps as microseconds): 10 bins whose 9 inner edges are the
  reference's deciles (``numpy.quantile``'s default linear interpolation), duplicate edges
  dropped; bins are ``[edge_i, edge_i+1)``, the first open below and the last open above;
- strings, bytes and bools: one bin per reference category, plus one for unseen values;
- nulls (and NaN) leave the PSI; they are counted in the null rate;
- each side's share of a bin is its count over the side's non-null count, and a share of
  exactly 0 (an empty bin) becomes ``EMPTY_SHARE``; the other shares are left as they are
  (not renormalised);
- ``PSI = sum over bins of (cur - ref) * ln(cur / ref)``.

Numbers go through the compiled passes of ``fstore._ext._drift`` (``drift_numbers.py``):
the deciles are numpy.quantile's exact values, computed from the order statistics they
need (``deciles``), not from a sort. Categories go through Arrow's ``value_counts`` of
each chunk, then a lookup of its (few) distinct values among the reference's: no Python
loop per value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EMPTY_SHARE = 0.0001
DECILES = np.arange(1, 10) / 10   # 0.1, 0.2, ..., 0.9 exactly as the literals (linspace differs by an ulp)


@dataclass
class Histogram:
    """Both sides' counts over the same bins (labels say what each bin holds)."""

    labels: list[str]
    ref: np.ndarray       # int64 counts per bin
    cur: np.ndarray

    @property
    def psi(self) -> float | None:
        """The PSI of the two sides; None when a side has no non-null value."""
        return psi(self.ref, self.cur)


def shares(counts: np.ndarray) -> np.ndarray:
    """Each bin's share of the side's values; an empty bin's share becomes EMPTY_SHARE."""
    out = counts / counts.sum()
    out[counts == 0] = EMPTY_SHARE
    return out


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float | None:
    """``sum((cur - ref) * ln(cur / ref))`` over the shares; None when a side is empty."""
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return None
    ref, cur = shares(ref_counts), shares(cur_counts)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def decile_ranks(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy.quantile's linear recipe for the deciles of ``count`` sorted values: for each
    decile, the rank of the value below it, of the value above it, and the weight of the
    one above (numpy's ``_get_indexes`` and ``_get_gamma``, step by step, so that the
    floating-point results are numpy's: an index at or past the last value is -1)."""
    virtual = (count - 1) * DECILES
    below = np.floor(virtual)
    above = below + 1
    past = virtual >= count - 1
    below[past] = -1
    above[past] = -1
    below, above = below.astype(np.intp), above.astype(np.intp)
    gamma = np.asanyarray(virtual - below, dtype=virtual.dtype)
    return below % count, above % count, gamma


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy.quantile's interpolation (``numpy.lib._function_base_impl._lerp``), operation
    for operation: from ``a`` for weights below 0.5, back from ``b`` for the others."""
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, as numpy's (which also warns)
        diff = b - a
        out = np.add(a, diff * t)
        np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5, casting="unsafe", dtype=out.dtype.type)
    return out


def deciles(count: int, values_at: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``numpy.quantile(x, DECILES)`` of ``count`` values (no NaN) exactly, given
    ``values_at(ranks)``: the values at those 0-based ranks of the ascending order of x."""
    below, above, gamma = decile_ranks(count)
    ranks = np.unique(np.concatenate([below, above]))
    values = np.asarray(values_at(ranks), dtype=np.float64)
    return lerp(values[np.searchsorted(ranks, below)], values[np.searchsorted(ranks, above)], gamma)


def decile_edges(count: int, values_at: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The reference's 9 deciles (linear interpolation), duplicates dropped, ascending."""
    return np.unique(deciles(count, values_at))


def edge_labels(edges: np.ndarray) -> list[str]:
    e = [f"{x:.6g}" for x in edges]
    return [f"< {e[0]}", *(f"[{a}, {b})" for a, b in zip(e, e[1:])), f">= {e[-1]}"]


class CategoryTally:
    """One side's counts per reference category (in the reference's order of first
    appearance), plus ``unseen``, chunk by chunk; nulls are in no bin. Arrow counts each
    chunk's distinct values; only those few are looked up among the reference's."""

    def __init__(self, categories: pa.Array) -> None:
        self.categories = categories
        self.counts = np.zeros(len(categories) + 1, np.int64)
        self.values = self.nulls = 0

    @classmethod
    def reference(cls, ref: pa.ChunkedArray) -> CategoryTally:
        """The reference, whole: its categories and their counts (its unseen bin is empty)."""
        cats, counts = _value_counts(ref)
        tally = cls(cats)
        tally.counts[:-1] = counts
        tally.values, tally.nulls = len(ref) - ref.null_count, ref.null_count
        return tally

    def add(self, col: pa.ChunkedArray | pa.Array) -> None:
        seen, counts = _value_counts(col)
        idx = pc.index_in(seen, value_set=self.categories).fill_null(len(self.categories))
        np.add.at(self.counts, idx.to_numpy(zero_copy_only=False), counts)
        self.values += len(col) - col.null_count
        self.nulls += col.null_count

    def labels(self) -> list[str]:
        return [_label(v) for v in self.categories.to_pylist()] + ["(unseen)"]


def _value_counts(col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The column's distinct non-null values (first appearance first) and their counts."""
    vc = pc.value_counts(col)
    values, counts = vc.field("values"), vc.field("counts")
    if pa.types.is_dictionary(values.type):  # strings read as Parquet stores them
        values = values.dictionary_decode()
    if values.null_count:
        keep = pc.is_valid(values)
        values, counts = values.filter(keep), counts.filter(keep)
    return values, counts.to_numpy(zero_copy_only=False).astype(np.int64)


def _label(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 16 else value[:16].hex() + "..."
    return str(value)
