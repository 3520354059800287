"""An aggregation view's online value is EXPIRED once its window has moved (issue 14).

A value computed as of ``a`` is exact until the oldest event of one of its windows leaves
that window, or the key's next event enters it; from then the reader answers EXPIRED (or
DEFAULTED where a default is declared, as every count has: 0), in process and through the
server's compiled path.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from fstore import FeatureStore
from fstore._ext._window import valid_until
from fstore import Status
from test_aggregations import _repo

UTC = dt.timezone.utc
NO_END = np.iinfo(np.int64).max


def _oracle(events: list[tuple[int, int]], key: int, t: int, windows: list[int]) -> int:
    ts = sorted(e for k, e in events if k == key)
    until = min((e for e in ts if e > t), default=NO_END)
    for w in windows:
        inside = [e for e in ts if t - w < e <= t]
        if inside:
            until = min(until, inside[0] + w)
    return until


@settings(max_examples=60, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 3), st.integers(-50, 50)), max_size=30),
       queries=st.lists(st.tuples(st.integers(0, 4), st.integers(-60, 60)), min_size=1, max_size=10),
       windows=st.lists(st.integers(1, 40), min_size=1, max_size=3, unique=True))
def test_kernel_matches_brute_force(events, queries, windows) -> None:
    events = sorted(events)
    ek = np.array([[k] for k, _ in events], dtype=np.int64).reshape(-1, 1)
    ets = np.array([t for _, t in events], dtype=np.int64)
    qk = np.array([[k] for k, _ in queries], dtype=np.int64).reshape(-1, 1)
    qts = np.array([t for _, t in queries], dtype=np.int64)
    got = valid_until(ek, ets, qk, qts, np.ones(len(queries), dtype=np.uint8), np.array(windows, dtype=np.int64))
    assert got.tolist() == [_oracle(events, k, t, windows) for k, t in queries]


def _store(tmp_path: Path) -> tuple[FeatureStore, dt.datetime, dt.datetime]:
    """cid 1: exact at now; cid 2: its oldest 7d event left the window; cid 3: a newer event
    came after END; cid 4: an event long before any window (count 0, exact forever)."""
    root = _repo(tmp_path / "r", "      - {column: v, function: sum, window: 7d, name: s}\n"
                                 "      - {column: v, function: count, window: 1d, name: n}\n",
                 feature_lines="    features:\n      - {name: s, default: -1}\n")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    d = lambda x: now - dt.timedelta(days=x)
    pq.write_table(pa.table({"cid": [1, 2, 2, 3, 3, 4], "ts": [d(3), d(8), d(5), d(4), d(1), d(40)],
                             "created": [d(40)] * 6, "v": [1, 10, 20, 100, 200, 7]}), root / "data/ev/a.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    end = d(2)
    fs.materialize(d(60), end)
    return fs, end, now


def test_moved_windows_read_as_expired_in_process(tmp_path: Path) -> None:
    fs, end, _ = _store(tmp_path)
    rows = [{"cid": c} for c in (1, 2, 3, 4)]
    got = fs.get_online_features(["agg:s", "agg:n"], entity_rows=rows)
    # s has a default: an expired row answers it (DEFAULTED); so has n, a count (0)
    assert got.statuses("s") == [Status.PRESENT, Status.DEFAULTED, Status.DEFAULTED, Status.PRESENT]
    assert got.statuses("n") == [Status.PRESENT, Status.DEFAULTED, Status.DEFAULTED, Status.PRESENT]
    assert got.values("s") == [1, -1, -1, -1] and got.values("n") == [0, 0, 0, 0]
    # the PRESENT values are the training rows at END
    train = fs.get_historical_features(pa.table({"cid": [1, 4], "event_timestamp": [end, end]}), ["agg:s", "agg:n"])
    assert train.column("s").to_pylist() == [1, -1] and train.column("n").to_pylist() == [0, 0]
    fs.close()


def test_a_push_makes_the_entity_exact_again(tmp_path: Path) -> None:
    fs, _, now = _store(tmp_path)
    t = now - dt.timedelta(minutes=5)
    assert fs.push("agg", {"cid": [2], "ts": [t], "created": [t], "v": [5]}) == 1
    got = fs.get_online_features(["agg:s", "agg:n"], entity_rows=[{"cid": 2}])
    assert got.statuses("s") == [Status.PRESENT] and got.values("s") == [25]  # d(5) + the push; d(8) left
    assert got.values("n") == [1]
    fs.close()


def test_server_answers_expired_on_its_compiled_path(tmp_path: Path) -> None:
    from fstore.client import Client
    from server_util import HOST, Server

    fs, _, _ = _store(tmp_path)
    fs.close()
    server = Server(tmp_path / "r")
    try:
        with Client(HOST, server.port, timeout=10) as c:
            got = c.get_online_features(["agg:s", "agg:n"], entity_rows=[{"cid": c_} for c_ in (1, 2, 3, 4)])
            assert got.statuses("n") == [Status.PRESENT, Status.DEFAULTED, Status.DEFAULTED, Status.PRESENT]
            assert got.values("s") == [1, -1, -1, -1] and got.values("n") == [0, 0, 0, 0]
    finally:
        server.stop()


def test_a_count_answers_what_training_gives_where_no_event_counts(tmp_path: Path) -> None:
    """A count without a declared default has the default 0: online, an entity with no row
    (NOT_FOUND) and one whose row is past the view's ttl (EXPIRED) answer DEFAULTED 0, what
    the training set gives at the same instant (no event in the window, or none after
    t - ttl: count 0); a max, with no default, stays None in both."""
    root = _repo(tmp_path / "r", "      - {column: v, function: count, window: 7d, name: n}\n"
                                 "      - {column: v, function: max, window: 7d, name: mx}\n", ttl="2d")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    d = lambda x: now - dt.timedelta(days=x)
    # cid 1: fresh; cid 2: its newest event is 3 days old (inside the window, past the ttl)
    pq.write_table(pa.table({"cid": [1, 2, 2], "ts": [d(0.5), d(4), d(3)], "created": [d(5)] * 3, "v": [1, 2, 3]}),
                   root / "data/ev/a.parquet")
    with FeatureStore(root) as fs:
        fs.apply()
        fs.ingest()
        fs.materialize(d(10), d(0.25))
        rows = [{"cid": c} for c in (1, 2, 3)]  # 3: no event at all
        got = fs.get_online_features(["agg:n", "agg:mx"], entity_rows=rows, now=now)
        assert got.statuses("n") == [Status.PRESENT, Status.DEFAULTED, Status.DEFAULTED]
        assert got.statuses("mx") == [Status.PRESENT, Status.EXPIRED, Status.NOT_FOUND]
        train = fs.get_historical_features(pa.table({"cid": [1, 2, 3], "event_timestamp": [now] * 3}),
                                           ["agg:n", "agg:mx"])
        assert got.values("n") == train.column("n").to_pylist() == [1, 0, 0]
        assert got.values("mx") == train.column("mx").to_pylist() == [1, None, None]
