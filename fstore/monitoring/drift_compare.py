"""One feature's comparison in ``fstore drift``: a reference column, whole, against a
current side added part by part; then the PSI, null rates, statistics and level.

Features are compared side by side on a thread per core: the compiled passes
(``drift_numbers``) and Arrow's kernels (categories) release the GIL. The current side
comes in parts (a log file each): while the threads tally one part, the caller reads the
next.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from ..repo.definitions import MONITORING_DEFAULTS
from .drift_data import Output, Part
from .drift_numbers import NumberTally, reference_tally
from .psi import CategoryTally, Histogram, edge_labels

LEVELS = ("ok", "warn", "alert")        # the order matters: the worst level is the largest index
NUMBER_DTYPES = frozenset({"int32", "int64", "float32", "float64"})
NUMERIC_BINS = NUMBER_DTYPES | {"timestamp"}   # binned by deciles; the rest by category


@dataclass
class FeatureDrift:
    """One feature's comparison: the JSON entry and the histogram the HTML report draws."""

    entry: dict[str, Any]
    histogram: Histogram


def thresholds(out: Output) -> dict[str, float | None]:
    """The feature's thresholds: its own, else its view's, else the defaults."""
    return {**MONITORING_DEFAULTS, **out.view.get("monitoring", {}), **out.feature.get("monitoring", {})}


def level_of(psi: float | None, null_rate_cur: float | None, ref_values: int, cur_rows: int,
             cur_values: int, limits: dict[str, float | None]) -> str:
    """The level of one feature (rule in fstore.monitoring.drift's docstring)."""
    max_null = limits["max_null_rate"]
    if psi is not None and psi >= limits["psi_alert"]:  # type: ignore[operator]
        return "alert"
    if max_null is not None and null_rate_cur is not None and null_rate_cur > max_null:
        return "alert"
    if ref_values and cur_rows and not cur_values:
        return "alert"
    if psi is not None and psi >= limits["psi_warn"]:  # type: ignore[operator]
        return "warn"
    return "ok"


class FeatureComparison:
    """A feature's reference, tallied whole (its decile edges or its categories), and its
    current side, tallied as parts are added."""

    def __init__(self, out: Output, ref: pa.ChunkedArray) -> None:
        self.out = out
        self.rows_ref, self.rows_cur = len(ref), 0
        self.ref: NumberTally | CategoryTally
        self.cur: NumberTally | CategoryTally
        if out.dtype in NUMERIC_BINS:
            self.ref = reference_tally(ref)
            self.cur = NumberTally(self.ref.edges)
        else:
            self.ref = CategoryTally.reference(ref)
            self.cur = CategoryTally(self.ref.categories)

    def add(self, cur: pa.ChunkedArray) -> None:
        """Tally a part of the current side."""
        self.rows_cur += len(cur)
        self.cur.add(cur)

    def result(self) -> FeatureDrift:
        out, ref, cur = self.out, self.ref, self.cur
        entry: dict[str, Any] = {"feature": out.column, "view": out.view.get("name"), "dtype": out.dtype}
        if isinstance(ref, NumberTally):
            hist = Histogram(edge_labels(ref.edges), ref.counts, cur.counts) if ref.values else \
                Histogram([], np.zeros(0, np.int64), np.zeros(0, np.int64))
            if out.dtype in NUMBER_DTYPES:
                entry.update(ref.numbers().stats("ref"))
                entry.update(cur.numbers().stats("cur"))  # type: ignore[union-attr]
        else:
            hist = Histogram(ref.labels(), ref.counts, cur.counts)
        psi, limits = hist.psi, thresholds(out)
        null_ref = ref.nulls / self.rows_ref if self.rows_ref else None
        null_cur = cur.nulls / self.rows_cur if self.rows_cur else None
        entry.update({"psi": psi, "null_rate_ref": null_ref, "null_rate_cur": null_cur,
                      "level": level_of(psi, null_cur, ref.values, self.rows_cur, cur.values, limits),
                      "rows_ref": self.rows_ref, "rows_cur": self.rows_cur, "bins": len(hist.labels),
                      "thresholds": limits})
        return FeatureDrift(entry, hist)


def compare_parts(outputs: list[Output], ref: dict[str, pa.ChunkedArray],
                  parts: Iterable[Part]) -> tuple[int, list[FeatureDrift]]:
    """Every feature's comparison, in output order, and the current side's rows. The
    references are tallied side by side, then each part's columns are; the next part is
    read while the threads tally the one before it (a feature's parts never overlap)."""
    rows = 0
    with ThreadPoolExecutor(max_workers=max(1, min(len(outputs), os.cpu_count() or 1))) as pool:
        comparisons = list(pool.map(lambda o: FeatureComparison(o, ref[o.column]), outputs))
        pending: list[Future[None]] = []
        for n, columns in parts:
            for f in pending:
                f.result()
            rows += n
            pending = [pool.submit(c.add, columns[c.out.column]) for c in comparisons]
        for f in pending:
            f.result()
    return rows, [c.result() for c in comparisons]


def compare_features(outputs: list[Output], ref: dict[str, Any], cur: dict[str, Any]) -> list[FeatureDrift]:
    """Every feature's comparison of two sides held whole."""
    rows = len(next(iter(cur.values()))) if cur else 0
    return compare_parts(outputs, ref, [(rows, cur)])[1]


def compare_feature(out: Output, ref: pa.ChunkedArray, cur: pa.ChunkedArray) -> FeatureDrift:
    """The PSI, null rates, statistics and level of one feature."""
    comparison = FeatureComparison(out, ref)
    comparison.add(cur)
    return comparison.result()
