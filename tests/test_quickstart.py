"""The quickstart's transformations (pricing_v1: a SQL view, 7d windowed aggregations, a
request-time feature), checked against a computation of their own from the raw trip CSVs:
the training set it writes row by row, the vectors it serves in process, and the same
vectors through a real ``fstore serve`` on the repository it leaves behind."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from fstore import FeatureStore
from fstore.client import Client
from fstore.quickstart import run_quickstart
from fstore.times import now_us

DAY_US = 86_400_000_000
WEEK_US = 7 * DAY_US  # driver_fares' window and both views' ttl


@pytest.fixture(scope="module")
def qs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("qs") / "repo"
    out = io.StringIO()
    before = now_us()
    served = run_quickstart(root, customers=300, days=10, console=Console(file=out, width=250))
    return {"root": root, "served": served, "text": out.getvalue(), "before": before, "after": now_us()}


class Trips:
    """The raw trips, read with pyarrow alone, per driver in time order."""

    def __init__(self, root: Path) -> None:
        t = pa.concat_tables([pcsv.read_csv(p) for p in sorted((root / "data" / "trips").glob("*.csv"))])
        ts = pc.cast(t["ts"], pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
        driver, km, fare = (t[c].to_numpy() for c in ("driver_id", "distance_km", "fare"))
        self.by_driver: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for d in np.unique(driver):
            i = np.flatnonzero(driver == d)
            i = i[np.argsort(ts[i], kind="stable")]
            assert np.unique(ts[i]).size == i.size, "two trips of one driver at one time: 'latest' is ambiguous"
            self.by_driver[int(d)] = ts[i], km[i], fare[i]

    def fare_per_km(self, d: int, t: int) -> float | None:
        """The latest completed trip (distance > 0) at or before t, no older than the ttl."""
        ts, km, fare = self.by_driver.get(d, (np.array([], np.int64),) * 3)
        ok = np.flatnonzero((ts <= t) & (ts >= t - WEEK_US) & (km > 0))
        return float(fare[ok[-1]] / km[ok[-1]]) if ok.size else None

    def fares(self, d: int, t: int) -> tuple[float, int]:
        """Sum (0.0 by its default) and count of the fares in (t - 7d, t]."""
        ts, _, fare = self.by_driver.get(d, (np.array([], np.int64),) * 3)
        inside = fare[(ts > t - WEEK_US) & (ts <= t)]
        return float(inside.sum()), int(inside.size)


def test_training_set_equals_an_independent_computation(qs: dict[str, Any]) -> None:
    root = qs["root"]
    table = pq.read_table(root / "datasets" / "pricing_v1.parquet")
    rides = pq.read_table(root / "data" / "rides_to_score.parquet")
    assert table.num_rows == rides.num_rows == 600
    assert table.column_names[-4:] == ["fare_per_km", "fares_7d", "trips_7d", "quoted_fare"]
    trips = Trips(root)
    rows = table.to_pylist()
    # the entity rows come back in their order, with the request field beside them
    assert [r["driver_id"] for r in rows] == rides["driver_id"].to_pylist()
    assert [r["trip_km"] for r in rows] == rides["trip_km"].to_pylist()
    times = pc.cast(table["event_timestamp"], pa.int64()).to_pylist()
    for r, t in zip(rows, times):
        rate = trips.fare_per_km(r["driver_id"], t)
        total, count = trips.fares(r["driver_id"], t)
        assert r["fare_per_km"] == rate, r
        assert r["trips_7d"] == count and r["fares_7d"] == pytest.approx(total, rel=1e-9, abs=1e-9), r
        assert r["quoted_fare"] == (None if rate is None else r["trip_km"] * rate), r
    assert sum(r["trips_7d"] > 0 for r in rows) > 500 and sum(r["fare_per_km"] is not None for r in rows) > 500
    # the cancelled trips are there for the SQL view to leave out
    assert any((km == 0).any() for _, km, _ in trips.by_driver.values())


def test_rows_without_trips_get_the_defaults_and_nulls(qs: dict[str, Any]) -> None:
    """Every quickstart ride's driver has trips in the week before it: the empty window is
    checked here, on a driver with no trips and on a time before the history."""
    trips = Trips(qs["root"])
    first = min(int(ts[0]) for ts, _, _ in trips.by_driver.values())
    driver = next(iter(trips.by_driver))
    frame = pa.table({"driver_id": [driver, 999_999], "trip_km": [5.0, 5.0],
                      "event_timestamp": pa.array([first - 1, qs["before"]], pa.timestamp("us", tz="UTC"))})
    with FeatureStore(qs["root"]) as fs:
        got = fs.get_historical_features(frame, feature_service="pricing_v1").to_pylist()
        served = fs.get_online_features(feature_service="pricing_v1",
                                        entity_rows=[{"driver_id": 999_999, "trip_km": 5.0}]).to_dict(True)
    for r in got:
        assert trips.fares(r["driver_id"], first - 1 if r["driver_id"] == driver else qs["before"]) == (0.0, 0)
        assert (r["fare_per_km"], r["fares_7d"], r["trips_7d"], r["quoted_fare"]) == (None, 0.0, 0, None), r
    assert [served[f"{f}__status"][0] for f in ("fare_per_km", "fares_7d", "trips_7d", "quoted_fare")] == \
        ["NOT_FOUND", "DEFAULTED", "DEFAULTED", "PRESENT"]  # a count's default is 0, as in training
    assert (served["fare_per_km"][0], served["fares_7d"][0], served["trips_7d"][0], served["quoted_fare"][0]) == \
        (None, 0.0, 0, None)


def test_served_vectors_equal_an_independent_computation(qs: dict[str, Any]) -> None:
    resp = qs["served"]["pricing_v1"]
    d = resp.to_dict(include_metadata=True)
    trips = Trips(qs["root"])
    assert resp.feature_names == ["fare_per_km", "fares_7d", "trips_7d", "quoted_fare"]
    for i, sent in enumerate(resp.entity_rows):
        driver, km = sent["driver_id"], sent["trip_km"]
        rate = trips.fare_per_km(driver, qs["after"])
        assert d["fare_per_km"][i] == rate and d["fare_per_km__status"][i] == "PRESENT"
        assert d["quoted_fare"][i] == km * rate and d["quoted_fare__status"][i] == "PRESENT"
        assert d["quoted_fare__event_timestamp"][i] is None  # computed at read time, from no row
        # materialized as of a time a in [before, after]: the window (a - 7d, a] holds the
        # driver's newest n trips, n between the counts at those two bounds
        n = d["trips_7d"][i]
        lo, hi = trips.fares(driver, qs["after"])[1], trips.fares(driver, qs["before"])[1]
        assert 0 < lo <= n <= hi and d["trips_7d__status"][i] == "PRESENT"
        newest = trips.by_driver[driver][2][-n:]
        assert d["fares_7d"][i] == pytest.approx(float(newest.sum()), rel=1e-9)
    # fraud_v1 is still served from stored features alone
    assert qs["served"]["fraud_v1"].feature_names == ["avg_amount_7d", "txn_count_7d", "trips_together"]


def test_printed_output_names_the_new_columns_and_steps(qs: dict[str, Any]) -> None:
    text = qs["text"]
    for piece in ("pricing_v1 training set features", "fare_per_km", "fares_7d", "trips_7d", "quoted_fare",
                  "incremental: a SQL transformation", "online pricing_v1 feature vectors", "trip_km",
                  "/ PRESENT", "online fraud_v1 feature vectors", "fraud_v1 training set features"):
        assert piece in text, piece


def test_the_server_serves_the_same_vectors(qs: dict[str, Any]) -> None:
    from server_util import HOST, Server
    resp = qs["served"]["pricing_v1"]
    rows = [{"driver_id": r["driver_id"], "trip_km": r["trip_km"]} for r in resp.entity_rows]
    server = Server(qs["root"])
    try:
        with Client(HOST, server.port, timeout=10) as c:
            remote = c.get_online_features(feature_service="pricing_v1", entity_rows=rows)
    finally:
        server.stop()
    assert remote.to_dict(include_metadata=True) == resp.to_dict(include_metadata=True)
