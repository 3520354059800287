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

Everything is vectorized (``numpy.quantile``, one comparison pass per edge, Arrow's
``value_counts``/``index_in``): no Python loop per value.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def decile_edges(ref: np.ndarray) -> np.ndarray:
    """The reference's 9 deciles (linear interpolation), duplicates dropped, ascending."""
    return np.unique(np.quantile(ref, DECILES))


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: bin 0 is below edges[0], bin i is [edges[i-1], edges[i]), the last
    is at or above edges[-1]. From the counts at or above each edge (one comparison pass
    per edge: 4x faster than searchsorted + bincount over 10M values)."""
    at_or_above = np.array([len(values), *(np.count_nonzero(values >= e) for e in edges), 0], dtype=np.int64)
    return at_or_above[:-1] - at_or_above[1:]


def numeric_histogram(ref: np.ndarray, cur: np.ndarray) -> Histogram:
    """Decile bins of the reference (float64 values, nulls and NaN already removed)."""
    if not len(ref):
        return Histogram([], np.zeros(0, np.int64), np.zeros(0, np.int64))
    edges = decile_edges(ref)
    return Histogram(_edge_labels(edges), bin_counts(ref, edges), bin_counts(cur, edges))


def _edge_labels(edges: np.ndarray) -> list[str]:
    e = [f"{x:.6g}" for x in edges]
    return [f"< {e[0]}", *(f"[{a}, {b})" for a, b in zip(e, e[1:])), f">= {e[-1]}"]


def categorical_histogram(ref: pa.Array, cur: pa.Array) -> Histogram:
    """One bin per reference category (in the order of first appearance), plus ``unseen``.
    Both arrays hold no nulls."""
    counts = pc.value_counts(ref)
    cats = counts.field("values")
    ref_counts = np.append(counts.field("counts").to_numpy(zero_copy_only=False).astype(np.int64), 0)
    idx = pc.index_in(cur, value_set=cats).fill_null(len(cats))
    cur_counts = np.bincount(idx.to_numpy(zero_copy_only=False), minlength=len(cats) + 1)
    return Histogram([_label(v) for v in cats.to_pylist()] + ["(unseen)"], ref_counts, cur_counts)


def _label(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 16 else value[:16].hex() + "..."
    return str(value)
