"""The numeric side of ``fstore drift``: decile bins, null counts and statistics of a
feature's two columns, by the compiled passes of ``fstore._ext._drift``.

Per side, the passes read the Arrow buffers in place (no float64 copy, no NaN mask, no
sort), and release the GIL, so that a thread per core really compares features side by
side:

- ``scan``: values, nulls (null slots and NaN), sum, min and max;
- the reference only: ``order_statistics`` at the ranks numpy.quantile's linear recipe
  needs (``psi.deciles``), from which the edges are numpy.quantile's exact values;
- ``bins``: the counts per bin against the edges, and the squared deviations from the
  mean (the std, population, ddof=0).

Timestamps are their int64 microseconds, read as float64 like every other number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .._ext import _drift
from .psi import Histogram, decile_edges, edge_labels


@dataclass
class Numbers:
    """One side's non-null, non-NaN values, summarized."""

    values: int
    nulls: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None

    def stats(self, suffix: str) -> dict[str, float | None]:
        """The report's ``mean_<suffix>``, ``std_``, ``min_``, ``max_`` (None without values)."""
        return {f"mean_{suffix}": self.mean, f"std_{suffix}": self.std,
                f"min_{suffix}": self.low, f"max_{suffix}": self.high}


def numeric_histogram(ref: pa.ChunkedArray, cur: pa.ChunkedArray) -> tuple[Histogram, Numbers, Numbers]:
    """Decile bins of the reference (none when it has no value), both sides' counts over
    them, and both sides' summaries."""
    (rv, rn, rsum, rlo, rhi), (cv, cn, csum, clo, chi) = _drift.scan(ref), _drift.scan(cur)
    edges = np.zeros(0)
    if rv:
        edges = decile_edges(rv, lambda ranks: _drift.order_statistics(ref, ranks, rv, rlo, rhi))
    ref_counts, ref_spread = _drift.bins(ref, edges, rsum / rv if rv else 0.0)
    cur_counts, cur_spread = _drift.bins(cur, edges, csum / cv if cv else 0.0)
    if not rv:
        hist = Histogram([], np.zeros(0, np.int64), np.zeros(0, np.int64))
    else:
        hist = Histogram(edge_labels(edges), ref_counts, cur_counts)
    return hist, _numbers(rv, rn, rsum, ref_spread, rlo, rhi), _numbers(cv, cn, csum, cur_spread, clo, chi)


def _numbers(values: int, nulls: int, total: float, spread: float, low: float | None,
             high: float | None) -> Numbers:
    if not values:
        return Numbers(0, nulls, None, None, None, None)
    return Numbers(values, nulls, total / values, math.sqrt(spread / values), low, high)
