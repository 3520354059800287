"""The PSI rule of ``fstore drift``, against hand-computed cases and an independent
brute-force implementation written from the rule's text (docs/monitoring.md, Drift)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from fstore.monitoring.drift import compare_feature, level_of
from fstore.monitoring.drift_data import Output
from fstore.repo.definitions import MONITORING_DEFAULTS

TYPES = {"float64": pa.float64(), "int64": pa.int64(), "string": pa.string(), "bool": pa.bool_()}


def run(dtype: str, ref: list[Any], cur: list[Any], monitoring: dict[str, Any] | None = None) -> dict[str, Any]:
    out = Output("f", {"name": "v", **({"monitoring": monitoring} if monitoring else {})},
                 {"name": "f", "dtype": dtype})
    return compare_feature(out, pa.chunked_array([pa.array(ref, TYPES[dtype])]),
                           pa.chunked_array([pa.array(cur, TYPES[dtype])])).entry


# ---- the oracle: the rule's text, one value at a time --------------------------------------

def brute_quantile(sorted_values: list[float], p: float) -> float:
    """The rule names numpy.quantile's default (linear) for the deciles: one decile at a time
    here (the rounding of the interpolation is numpy's, so the oracle uses it)."""
    return float(np.quantile(np.array(sorted_values), p))


def brute_psi(ref: list[Any], cur: list[Any], numeric: bool) -> float | None:
    ref = [v for v in ref if v is not None and v == v]
    cur = [v for v in cur if v is not None and v == v]
    if not ref or not cur:
        return None
    if numeric:
        s = sorted(ref)
        edges: list[float] = []
        for i in range(1, 10):
            q = brute_quantile(s, i / 10)
            if q not in edges:
                edges.append(q)
        edges.sort()

        def which(x: float) -> int:  # bin 0 below the first edge; bin i: [edges[i-1], edges[i])
            return sum(1 for e in edges if e <= x)
        nbins = len(edges) + 1
    else:
        cats = list(dict.fromkeys(ref))
        nbins = len(cats) + 1

        def which(x: Any) -> int:
            return cats.index(x) if x in cats else len(cats)
    total = 0.0
    for b in range(nbins):
        r = sum(1 for v in ref if which(v) == b) / len(ref) or 0.0001
        c = sum(1 for v in cur if which(v) == b) / len(cur) or 0.0001
        total += (c - r) * math.log(c / r)
    return total


# ---- hand-computed ----------------------------------------------------------------------------

def test_ten_values_against_one_bin() -> None:
    """ref 1..10: edges 1.9, 2.8, ..., 9.1, one value per bin; all current values in the
    last bin: 9 empty bins at 0.0001 and one at 1.0."""
    e = run("float64", [float(i) for i in range(1, 11)], [10.0] * 10)
    expected = 9 * (0.0001 - 0.1) * math.log(0.0001 / 0.1) + (1 - 0.1) * math.log(1 / 0.1)
    assert e["psi"] == pytest.approx(expected, rel=1e-12)
    assert e["bins"] == 10
    assert e["level"] == "alert"


def test_duplicate_edges_are_dropped() -> None:
    """ref nine 0s and a 1: deciles 0 x8 and 0.1 -> edges {0, 0.1}: 3 bins (<0, [0, 0.1), >=0.1)."""
    e = run("float64", [0.0] * 9 + [1.0], [0.0] * 5 + [1.0] * 5)
    assert e["bins"] == 3
    expected = (0.5 - 0.9) * math.log(0.5 / 0.9) + (0.5 - 0.1) * math.log(0.5 / 0.1)
    assert e["psi"] == pytest.approx(expected, rel=1e-12)


def test_bins_are_closed_below_and_open_above() -> None:
    """A value equal to an edge belongs to the bin that starts there."""
    ref = [float(i) for i in range(1, 11)]        # edges 1.9, 2.8, ...
    same = run("float64", ref, [1.9 + 0.9 * i for i in range(9)] + [0.0])
    assert same["psi"] == pytest.approx(0.0, abs=1e-12)  # each edge lands in its own bin, 0.0 in the first


def test_categories_and_the_unseen_bin() -> None:
    e = run("string", ["a", "a", "b", "b"], ["a", "c", "c", "c"])
    expected = ((0.25 - 0.5) * math.log(0.25 / 0.5) + (0.0001 - 0.5) * math.log(0.0001 / 0.5)
                + (0.75 - 0.0001) * math.log(0.75 / 0.0001))
    assert e["psi"] == pytest.approx(expected, rel=1e-12)
    assert e["bins"] == 3 and "mean_ref" not in e


def test_bools_are_categories() -> None:
    e = run("bool", [True, False, False, False], [True, True, False, False])
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.5 - 0.75) * math.log(0.5 / 0.75)
    assert e["psi"] == pytest.approx(expected, rel=1e-12)


def test_nulls_leave_the_psi_and_count_in_the_null_rate() -> None:
    e = run("int64", [1, 2, 3, None], [1, 2, 3, None, None, None])
    assert e["psi"] == pytest.approx(0.0, abs=1e-12)
    assert e["null_rate_ref"] == 0.25 and e["null_rate_cur"] == 0.5
    assert (e["mean_ref"], e["min_cur"], e["max_cur"]) == (2.0, 1.0, 3.0)
    assert e["std_ref"] == pytest.approx(math.sqrt(2 / 3))


def test_nan_counts_as_null() -> None:
    e = run("float64", [1.0, float("nan")], [1.0, 1.0])
    assert e["null_rate_ref"] == 0.5 and e["psi"] == pytest.approx(0.0, abs=1e-12)


def test_a_feature_gone_dark_is_an_alert_without_a_psi() -> None:
    e = run("float64", [1.0, 2.0], [None, None])
    assert e["psi"] is None and e["null_rate_cur"] == 1.0 and e["level"] == "alert"
    assert run("float64", [None], [1.0])["level"] == "ok"   # no reference values: nothing to judge


def test_levels_follow_the_thresholds() -> None:
    limits = dict(MONITORING_DEFAULTS)
    assert level_of(0.09, 0.0, 1, 1, 1, limits) == "ok"
    assert level_of(0.1, 0.0, 1, 1, 1, limits) == "warn"
    assert level_of(0.25, 0.0, 1, 1, 1, limits) == "alert"
    assert level_of(0.0, 0.5, 1, 1, 1, {**limits, "max_null_rate": 0.4}) == "alert"
    assert level_of(0.0, 0.4, 1, 1, 1, {**limits, "max_null_rate": 0.4}) == "ok"
    # the view's thresholds reach the feature
    e = run("float64", [float(i) for i in range(1, 11)], [10.0] * 10, {"psi_alert": 100.0})
    assert e["level"] == "warn" and e["thresholds"]["psi_alert"] == 100.0


# ---- the oracle, on generated data ---------------------------------------------------------------

floats = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, 1.0, 2.5]))


@settings(max_examples=150, deadline=None)
@given(st.lists(floats, min_size=1, max_size=60), st.lists(floats, min_size=1, max_size=60))
def test_numbers_match_the_brute_force_rule(ref: list[Any], cur: list[Any]) -> None:
    got = run("float64", ref, cur)["psi"]
    want = brute_psi(ref, cur, numeric=True)
    assert (got is None) == (want is None)
    if want is not None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from("abcde")), min_size=1, max_size=40),
       st.lists(st.one_of(st.none(), st.sampled_from("abcdefg")), min_size=1, max_size=40))
def test_categories_match_the_brute_force_rule(ref: list[Any], cur: list[Any]) -> None:
    got = run("string", ref, cur)["psi"]
    want = brute_psi(ref, cur, numeric=False)
    assert (got is None) == (want is None)
    if want is not None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
