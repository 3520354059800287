"""The served-GET metrics counted in C (fstore._ext._counters.GetCounters) and their flush
into prometheus_client (fstore.serving.metrics.add_to_histogram): bucket rules, per-view
status counts, deltas reset by take(), and the one use of prometheus_client's internals
checked against what ``observe`` would have left (this fails loudly if they change)."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Histogram

from fstore._ext._constants import Status
from fstore._ext._counters import GetCounters
from fstore.serving.metrics import _LATENCY_BUCKETS, _ROW_BUCKETS, add_to_histogram


def samples(h: Histogram) -> dict[str, float]:
    return {s.name + str(sorted(s.labels.items())): s.value for m in h.collect() for s in m.samples
            if not s.name.endswith("_created")}


def test_added_buckets_equal_observing_one_by_one() -> None:
    rng = random.Random(3)
    observed = Histogram("a", "a", buckets=_LATENCY_BUCKETS, registry=CollectorRegistry())
    added = Histogram("a", "a", buckets=_LATENCY_BUCKETS, registry=CollectorRegistry())
    counters = GetCounters(_LATENCY_BUCKETS, _ROW_BUCKETS)
    plan = SimpleNamespace(view_of=[0], views=["v_1"])
    xs = [*_LATENCY_BUCKETS, 0.0, 2.0, *(rng.expovariate(2000) for _ in range(500))]
    for x in xs:
        observed.observe(x)
        counters.count_get(plan, 1, b"\x00", x)
    lat, lat_sum, rows, rows_sum, values = counters.take()
    add_to_histogram(added, lat, lat_sum)
    assert samples(added) == pytest.approx(samples(observed))
    assert sum(lat) == len(xs) and lat[-1] == 1  # 2.0 s: +Inf only
    assert rows[0] == len(xs) and rows_sum == len(xs) and values == {("v_1", 0): len(xs)}



def test_a_histogram_of_other_buckets_is_refused() -> None:
    h = Histogram("b", "b", buckets=(1, 2), registry=CollectorRegistry())
    add_to_histogram(h, [1, 0, 2], 7.0)
    assert samples(h)["b_count[]"] == 3 and samples(h)["b_sum[]"] == 7.0
    with pytest.raises(ValueError, match="2 bucket counts for a histogram of 3 buckets"):
        add_to_histogram(h, [1, 0], 1.0)


def test_statuses_are_counted_per_view_and_reset_by_take() -> None:
    """Outputs of two views interleaved (view_of), 3 rows: each status byte goes to its
    output's view; rows and latency land in Prometheus's buckets (x <= bound)."""
    counters = GetCounters(_LATENCY_BUCKETS, _ROW_BUCKETS)
    assert counters.take() is None
    plan = SimpleNamespace(view_of=[1, 0, 1], views=["a_1", "b_2"])
    status = bytes([0, 1, 3,  2, 2, 0,  4, 0, 0])  # output-major
    counters.count_get(plan, 3, bytearray(status), 25e-6)
    counters.count_get(plan, 0, b"", 0.5)  # no entities: a GET of 0 rows, no values
    lat, lat_sum, rows, rows_sum, values = counters.take()
    assert values == {("b_2", Status.PRESENT): 3, ("b_2", Status.NOT_FOUND): 1, ("b_2", Status.DEFAULTED): 1,
                      ("b_2", Status.UNAVAILABLE): 1, ("a_1", Status.EXPIRED): 2, ("a_1", Status.PRESENT): 1}
    assert lat[0] == 1 and lat[_LATENCY_BUCKETS.index(1.0)] == 1 and lat_sum == pytest.approx(0.500025)
    assert rows[0] == 1 and rows[_ROW_BUCKETS.index(5)] == 1 and rows_sum == 3  # 0 <= 1; 3 <= 5
    assert counters.gets == 0 and counters.take() is None


def test_many_views_and_plans_keep_their_counts() -> None:
    """More views than the first allocation and plans replaced: nothing counted is lost."""
    counters = GetCounters(_LATENCY_BUCKETS, _ROW_BUCKETS)
    expected: dict[tuple[str, int], int] = {}
    for p in range(50):
        plan = SimpleNamespace(view_of=[0, 1], views=[f"v{p}_1", f"w{p % 7}_1"])
        counters.count_get(plan, 2, bytes([0, 1, 3, 3]), 1e-4)
        for key, n in (((f"v{p}_1", 0), 1), ((f"v{p}_1", 1), 1), ((f"w{p % 7}_1", 3), 2)):
            expected[key] = expected.get(key, 0) + n
    assert counters.take()[4] == expected
