"""The numeric side of ``fstore drift``: decile edges, bin counts, null counts and
statistics of a feature's columns, by the compiled passes of ``fstore._ext._drift``.

The passes read the Arrow buffers in place (no float64 copy, no NaN mask, no sort) and
release the GIL, so that a thread per core really compares features side by side:

- ``scan``: values, nulls (null slots and NaN), sum, min and max;
- the reference only: ``order_statistics`` at the ranks numpy.quantile's linear recipe
  needs (``psi.deciles``), from which the edges are numpy.quantile's exact values;
- ``bins``: the counts per bin against the edges, and the squared deviations from a
  chunk's mean.

A side is tallied chunk by chunk (``NumberTally.add``): the current window is read file
by file and never held whole. The std (population, ddof=0) combines each chunk's squared
deviations about its own mean (Chan, Golub and LeVeque's pairwise update), the mean is
the exact sum of the chunks' sums over the count. Timestamps are their int64
microseconds, read as float64 like every other number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .._ext import _drift
from .psi import decile_edges

Scan = tuple[int, int, float, "float | None", "float | None"]


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


class NumberTally:
    """One side's counts per bin against fixed edges, and its statistics, chunk by chunk."""

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = edges
        self.counts = np.zeros(len(edges) + 1, np.int64)
        self.values = self.nulls = 0
        self._sums: list[float] = []
        self._mean = self._m2 = 0.0
        self._low: float | None = None
        self._high: float | None = None

    def add(self, col: pa.ChunkedArray | pa.Array, scanned: Scan | None = None) -> None:
        """Tally a chunk of the side (``scanned``: its ``_drift.scan``, when already known)."""
        n, nulls, total, low, high = scanned if scanned is not None else _drift.scan(col)
        self.nulls += nulls
        if not n:
            return
        mean = total / n
        counts, m2 = _drift.bins(col, self.edges, mean)
        self.counts += counts
        both = self.values + n
        delta = mean - self._mean
        if self.values:
            self._m2 += m2 + delta * delta * (self.values / both) * n
            self._mean += delta * (n / both)
        else:
            self._m2, self._mean = m2, mean
        self.values = both
        self._sums.append(total)
        self._low = low if self._low is None or low < self._low else self._low  # type: ignore[operator]
        self._high = high if self._high is None or high > self._high else self._high  # type: ignore[operator]

    def numbers(self) -> Numbers:
        if not self.values:
            return Numbers(0, self.nulls, None, None, None, None)
        total = math.fsum(self._sums) if all(map(math.isfinite, self._sums)) else sum(self._sums)
        return Numbers(self.values, self.nulls, total / self.values, math.sqrt(self._m2 / self.values),
                       self._low, self._high)


def reference_tally(ref: pa.ChunkedArray) -> NumberTally:
    """The reference, whole: its decile edges (none without a value) and its tally."""
    scanned = _drift.scan(ref)
    n, _, _, low, high = scanned
    edges = np.zeros(0)
    if n:
        edges = decile_edges(n, lambda ranks: _drift.order_statistics(ref, ranks, n, low, high))
    tally = NumberTally(edges)
    tally.add(ref, scanned)
    return tally
