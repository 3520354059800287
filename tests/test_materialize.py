"""Filling the online store: materialize (window, newer-only, incremental watermarks, resume), load and gc.

All through real repositories (Parquet sources, the offline store, LMDB). A run that
"dies midway" in-process is simulated by a progress reporter that raises: the same
code path as a crash between two bucket transactions; real SIGKILLs are in
test_online_faults.py.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_views_repo, utc_ts, write_view_source
from fstore import FeatureStore
from fstore.errors import IngestError, InvalidArgument, OfflineStoreError, UnknownObject
from fstore.online.bulk import bulk_load, gc
from fstore.offline.layout import bucket_ids
from fstore.online.store import OnlineStore

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000
SEC = 1_000_000
HOUR = 3600 * SEC
DAY = 24 * HOUR
REPO_ROOT = Path(__file__).resolve().parents[1]


def at(offset_us: int) -> dt.datetime:
    return T0 + dt.timedelta(microseconds=offset_us)


def rows_table(rows: list[tuple], created: bool = True) -> pa.Table:
    """(k, ts offset, created offset or None, x) tuples as a source table."""
    cols = {"k": pa.array([r[0] for r in rows], pa.int64()),
            "ts": utc_ts([T0_US + r[1] for r in rows])}
    if created:
        cols["created"] = pa.array([None if r[2] is None else T0_US + r[2] for r in rows], pa.int64()) \
            .cast(pa.timestamp("us", tz="UTC"))
    cols["x"] = pa.array([r[3] for r in rows], pa.int64())
    return pa.table(cols)


def one_view_repo(root: Path, ttl: str | None = None, buckets: int = 4,
                  online: dict[str, Any] | None = None) -> Path:
    return make_views_repo(root, {"v": {"keys": [("k", "int")], "ttl": ttl, "features": [("x", "int64", None)]}},
                           buckets=buckets, online=online)


def read_x(fs: FeatureStore, keys: list[int], now: dt.datetime = at(365 * DAY)) -> list[Any]:
    return fs.get_online_features(["v:x"], entity_rows=[{"k": k} for k in keys], now=now).values("x")


def dump(fs: FeatureStore, view: str = "v_v1") -> dict[bytes, bytes]:
    """Every stored key and encoded row of a view version."""
    with fs.online.read() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor(fs.online.db(view)).iternext()}


class Died(Exception):
    """The job's process dying between two bucket transactions."""


class Recorder:
    """A progress reporter that records what it is told and can die after ``die_after`` advances."""

    def __init__(self, die_after: int | None = None) -> None:
        self.die_after = die_after
        self.infos: list[str] = []
        self.starts: list[tuple[str, int | None]] = []

    def start(self, description: str, total: int | None) -> None:
        self.starts.append((description, total))

    def advance(self, n: int = 1, *, info: str = "") -> None:
        self.infos.append(info)
        if self.die_after is not None and len(self.infos) >= self.die_after:
            raise Died("the job dies here")

    def stop(self) -> None:
        pass


# ---- materialize: window, ties, newer-only --------------------------------------------------

def test_window_is_inclusive_ties_go_to_created_and_nothing_newer_is_overwritten(tmp_path: Path) -> None:
    root = one_view_repo(tmp_path / "r")
    write_view_source(root, "v", rows_table([
        (1, 10 * SEC, 0, 1), (1, 20 * SEC, 5, 2), (1, 20 * SEC, 6, 3), (1, 20 * SEC, None, 99), (1, 30 * SEC, 0, 4),
        (2, 5 * SEC, 0, 5),
        (3, 30 * SEC + 1, 0, 6),
    ]))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    [r] = fs.materialize(at(10 * SEC), at(20 * SEC))
    assert read_x(fs, [1, 2, 3]) == [3, None, None]  # tie on event time: newest created; 2 is before START
    assert r.rows_written == 1
    [r] = fs.materialize(at(30 * SEC), at(30 * SEC))  # a window of one instant: both ends inclusive
    assert read_x(fs, [1, 2, 3]) == [4, None, None] and r.rows_written == 1
    before = dump(fs)
    # a rerun and an older backfill after the newer run change nothing already stored
    assert fs.materialize(at(30 * SEC), at(30 * SEC))[0].rows_written == 0
    [r] = fs.materialize(at(0), at(20 * SEC))
    assert r.rows_written == 1  # only customer 2, which had nothing stored
    assert read_x(fs, [1, 2, 3]) == [4, 5, None]
    after = dump(fs)
    assert {k: v for k, v in after.items() if k in before} == before  # byte for byte
    assert fs.materialize(at(0), at(30 * SEC + 1))[0].rows_written == 1  # END inclusive to the microsecond
    assert read_x(fs, [3]) == [6]
    with pytest.raises(InvalidArgument, match="after"):
        fs.materialize(at(2 * SEC), at(SEC))


def test_a_restatement_replaces_only_when_created_later(tmp_path: Path) -> None:
    root = one_view_repo(tmp_path / "r")
    write_view_source(root, "v", rows_table([(1, 10 * SEC, 5, 1), (2, 10 * SEC, 5, 2)]))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize(at(0), at(10 * SEC))
    # the same event time, re-stated: later created for 1, earlier created for 2
    write_view_source(root, "v", rows_table([(1, 10 * SEC, 6, 10), (2, 10 * SEC, 4, 20)]), part=1)
    fs.ingest()
    [r] = fs.materialize(at(0), at(10 * SEC))
    assert read_x(fs, [1, 2]) == [10, 2] and r.rows_written == 1


def test_views_none_means_the_online_views_and_unknown_or_uningested_views_fail(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {
        "a": {"keys": [("k", "int")], "features": [("x", "int64", None)]},
        "b": {"keys": [("k", "int")], "features": [("y", "int64", None)]}})
    write_view_source(root, "a", pa.table({"k": [1], "ts": utc_ts([T0]), "created": utc_ts([T0]), "x": [1]}))
    write_view_source(root, "b", pa.table({"k": [1], "ts": utc_ts([T0]), "created": utc_ts([T0]), "y": [2]}))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest(["a"])
    with pytest.raises(OfflineStoreError, match="fstore ingest b"):
        fs.materialize(T0, T0)
    with pytest.raises(UnknownObject):
        fs.materialize(T0, T0, views=["nope"])
    assert [r.view for r in fs.materialize(T0, T0, views=["a"])] == ["a_v1"]
    fs.ingest()
    assert sorted(r.view for r in fs.materialize(T0, T0)) == ["a_v1", "b_v1"]
    got = fs.get_online_features(["a:x", "b:y"], entity_rows=[{"k": 1}], now=T0).to_dict()
    assert got == {"k": [1], "x": [1], "y": [2]}


# ---- incremental: watermarks -------------------------------------------------------------------

def test_incremental_continues_from_each_views_own_watermark(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {
        "v": {"keys": [("k", "int")], "features": [("x", "int64", None)]},
        "w": {"keys": [("k", "int")], "features": [("x2", "int64", None)]}})
    write_view_source(root, "v", rows_table([(k, -DAY + k * SEC, None, k) for k in range(50)]))
    write_view_source(root, "w", pa.table({"k": [1], "ts": utc_ts([T0]), "created": utc_ts([T0]), "x2": [1]}))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    assert fs.online.watermark("v_v1") is None
    [r] = fs.materialize_incremental(T0, views=["v"])  # the first run: all history
    assert r.rows_written == 50 and r.watermark == T0_US
    assert fs.online.watermark("v_v1") == T0_US and fs.online.watermark("w_v1") is None  # its own watermark
    # new rows after the watermark for 10 entities; the next run reads only those
    write_view_source(root, "v", rows_table([(k, HOUR + k, None, 100 + k) for k in range(10)]), part=1)
    fs.ingest()
    [r] = fs.materialize_incremental(at(2 * HOUR), views=["v"])
    assert (r.rows_read, r.rows_written, r.watermark) == (10, 10, T0_US + 2 * HOUR)
    assert read_x(fs, list(range(12))) == [100 + k for k in range(10)] + [10, 11]
    [r] = fs.materialize_incremental(at(2 * HOUR), views=["v"])
    assert (r.rows_read, r.rows_written) == (0, 0)
    # an END before the watermark writes nothing and never moves the watermark back
    [r] = fs.materialize_incremental(at(HOUR), views=["v"])
    assert r.rows_written == 0 and fs.online.watermark("v_v1") == T0_US + 2 * HOUR
    # the watermark lives in the online store itself: a new process-level open sees it
    fs.online.close()
    assert FeatureStore(root).online.watermark("v_v1") == T0_US + 2 * HOUR


def test_the_watermark_never_claims_a_gap_that_was_not_written(tmp_path: Path) -> None:
    root = one_view_repo(tmp_path / "r")
    write_view_source(root, "v", rows_table([(1, 0, None, 1), (2, 2 * DAY, None, 2), (3, 6 * DAY, None, 3)]))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(at(DAY))
    assert fs.online.watermark("v_v1") == T0_US + DAY
    # a window that starts after the watermark leaves (DAY, 5 DAY) unwritten: no claim past DAY
    fs.materialize(at(5 * DAY), at(7 * DAY))
    assert read_x(fs, [1, 2, 3]) == [1, None, 3]
    assert fs.online.watermark("v_v1") == T0_US + DAY
    fs.materialize_incremental(at(7 * DAY))
    assert read_x(fs, [1, 2, 3]) == [1, 2, 3]
    assert fs.online.watermark("v_v1") == T0_US + 7 * DAY
    # a window that joins the watermark extends it
    fs.materialize(at(6 * DAY), at(8 * DAY))
    assert fs.online.watermark("v_v1") == T0_US + 8 * DAY


# a write buffer of 0 bytes commits every bucket on its own: the finest resumable unit
PER_BUCKET = {"write_buffer_mb": 0}


def _two_version_repo(root: Path, n: int = 200, buckets: int = 4,
                      online: dict[str, Any] | None = PER_BUCKET) -> tuple[FeatureStore, list[int]]:
    """Entities 0..n-1 materialized once (x = 1000 + k at -DAY); a second version (x = 2000 + k at +HOUR) ingested."""
    one_view_repo(root, buckets=buckets, online=online)
    keys = list(range(n))
    write_view_source(root, "v", rows_table([(k, -DAY, None, 1000 + k) for k in keys]))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(T0)
    write_view_source(root, "v", rows_table([(k, HOUR, None, 2000 + k) for k in keys]), part=1)
    fs.ingest()
    return fs, keys


def test_a_run_that_dies_midway_is_resumed_and_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    fs, keys = _two_version_repo(tmp_path / "r")
    fs.online.close()
    shutil.copytree(tmp_path / "r", tmp_path / "copy")
    fs = FeatureStore(tmp_path / "r")
    with pytest.raises(Died):
        fs.materialize_incremental(at(2 * HOUR), progress=Recorder(die_after=2))
    # two buckets committed, with the job's progress; the watermark did not move
    assert fs.online.watermark("v_v1") == T0_US
    job = fs.online.job("v_v1")
    assert (job["interval"], job["done"]) == ([T0_US, T0_US + 2 * HOUR], [0, 1]) and job["log"]
    bucket = bucket_ids(pa.table({"k": pa.array(keys, pa.int64())}), ["k"], 4)
    got = read_x(fs, keys)
    assert got == [(2000 if bucket[k] in (0, 1) else 1000) + k for k in keys]
    assert any(b not in (0, 1) for b in bucket)  # something was left to do
    # the rerun skips the committed buckets and finishes the job
    rec = Recorder()
    [r] = fs.materialize_incremental(at(2 * HOUR), progress=rec)
    assert rec.infos.count("already done") == 2 and len(rec.infos) == 4
    assert r.rows_written == sum(1 for k in keys if bucket[k] not in (0, 1))
    assert fs.online.job("v_v1") is None and fs.online.watermark("v_v1") == T0_US + 2 * HOUR
    assert read_x(fs, keys) == [2000 + k for k in keys]
    # byte for byte the state of an uninterrupted run
    other = FeatureStore(tmp_path / "copy")
    other.materialize_incremental(at(2 * HOUR))
    assert dump(fs) == dump(other)
    assert other.online.watermark("v_v1") == fs.online.watermark("v_v1")


def test_buckets_grouped_in_the_write_buffer_commit_together_and_equal_per_bucket_commits(tmp_path: Path) -> None:
    """With the default buffer the buckets are written as one sorted group (an append into
    an empty store): a run that dies before the group commits leaves the store as it was,
    and the result is byte for byte that of bucket-by-bucket commits."""
    fs, keys = _two_version_repo(tmp_path / "g", online=None)
    before = dump(fs)
    with pytest.raises(Died):
        fs.materialize_incremental(at(2 * HOUR), progress=Recorder(die_after=3))
    assert dump(fs) == before and fs.online.job("v_v1") is None and fs.online.watermark("v_v1") == T0_US
    [r] = fs.materialize_incremental(at(2 * HOUR))
    assert r.rows_written == len(keys) and read_x(fs, keys) == [2000 + k for k in keys]
    per_bucket, _ = _two_version_repo(tmp_path / "b")
    per_bucket.materialize_incremental(at(2 * HOUR))
    assert dump(fs) == dump(per_bucket)
    # into an empty store, one group in key order: the pages are filled as by an append
    fresh, _ = _two_version_repo(tmp_path / "f", online=None)
    fresh.online.close()
    shutil.rmtree(tmp_path / "f" / "data" / "online")
    fresh = FeatureStore(tmp_path / "f")
    fresh.materialize_incremental(at(2 * HOUR))
    assert dump(fresh) == dump(fs)


def test_a_stale_job_for_another_interval_is_not_trusted(tmp_path: Path) -> None:
    fs, keys = _two_version_repo(tmp_path / "r")
    with pytest.raises(Died):
        fs.materialize_incremental(at(2 * HOUR), progress=Recorder(die_after=1))
    assert fs.online.job("v_v1")["done"] == [0]
    # a run over another interval must do every bucket itself
    rec = Recorder()
    fs.materialize_incremental(at(3 * HOUR), progress=rec)
    assert "already done" not in rec.infos
    assert read_x(fs, keys) == [2000 + k for k in keys]
    assert fs.online.job("v_v1") is None and fs.online.watermark("v_v1") == T0_US + 3 * HOUR


def test_backfill_reads_the_offline_store_bucket_by_bucket_in_bounded_memory(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"v": {"keys": [("k", "int")],
                                                  "features": [("x", "int64", None), ("s", "string", None)]}},
                           buckets=16, online={"write_buffer_mb": 1})  # memory is bounded by this buffer
    n = 300_000
    write_view_source(root, "v", pa.table({
        "k": pa.array([i % 60_000 for i in range(n)], pa.int64()),
        "ts": pa.array([T0_US + i for i in range(n)], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "created": pa.nulls(n, pa.timestamp("us", tz="UTC")),
        "x": pa.array(range(n), pa.int64()),
        "s": pa.array([f"row-{i:09d}-padding-padding" for i in range(n)])}))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.online.close()
    code = textwrap.dedent(f"""
        import pyarrow as pa, pyarrow.parquet as pq
        from fstore import FeatureStore
        fs = FeatureStore({str(root)!r})
        peaks = []
        class Watch:
            def start(self, d, t): pass
            def advance(self, n=1, info=""): peaks.append(pa.total_allocated_bytes())
            def stop(self): pass
        [r] = fs.materialize("2000-01-01", "2100-01-01", progress=Watch(), allow_future=True)
        peak = pa.default_memory_pool().max_memory()
        whole = pa.concat_tables([pq.read_table(p) for p in (fs.offline.view_dir(fs.get_feature_view("v"))).rglob("*.parquet")])
        print(len(peaks), r.rows_read, r.rows_written, peak, max(peaks), whole.num_rows, whole.nbytes)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    advances, read, written, peak, held, rows, nbytes = map(int, proc.stdout.split())
    assert advances == 16 and read == written == 60_000 and rows == n
    assert peak < nbytes / 2, (peak, nbytes)   # never the whole history at once
    assert held < nbytes / 4, (held, nbytes)
    fresh = FeatureStore(root)
    got = fresh.get_online_features(["v:x"], entity_rows=[{"k": k} for k in (0, 59_999, 12_345)], now=at(DAY))
    assert got.values("x") == [240_000, 299_999, 252_345]


# ---- bulk load ---------------------------------------------------------------------------------

@pytest.fixture()
def loadable(tmp_path: Path) -> FeatureStore:
    root = make_views_repo(tmp_path / "r", {
        "v": {"keys": [("k", "int")], "features": [("x", "int64", None), ("s", "string", "d")]},
        "names": {"keys": [("name", "string")], "features": [("x", "int64", None)]}})
    write_view_source(root, "v", pa.table({"k": [1], "ts": utc_ts([T0]), "created": utc_ts([T0]), "x": [1],
                                           "s": ["a"]}))
    write_view_source(root, "names", pa.table({"name": ["a"], "ts": utc_ts([T0]), "created": utc_ts([T0]),
                                               "x": [1]}))
    fs = FeatureStore(root)
    fs.apply()
    return fs


def read_vs(fs: FeatureStore, keys: list[int]) -> list[tuple[Any, Any]]:
    d = fs.get_online_features(["v:x", "v:s"], entity_rows=[{"k": k} for k in keys], now=at(365 * DAY)).to_dict()
    return list(zip(d["x"], d["s"]))


def test_load_writes_parquet_and_csv_rows_newer_only(loadable: FeatureStore, tmp_path: Path) -> None:
    fs = loadable
    pq.write_table(pa.table({"k": [1, 2, 3], "ts": utc_ts([at(HOUR), at(HOUR), at(HOUR)]),
                             "created": utc_ts([T0, T0, T0]), "x": [10, 20, None], "s": ["p", None, "ü"]}),
                   tmp_path / "a.parquet")
    r = fs.load("v", [tmp_path / "a.parquet"])
    assert (r.view, r.rows_read, r.rows_written) == ("v_v1", 3, 3)
    assert read_vs(fs, [1, 2, 3, 4]) == [(10, "p"), (20, None), (None, "ü"), (None, "d")]
    (tmp_path / "b.csv").write_text(
        "k,ts,created,x,s\n"
        "1,2024-03-01T00:30:00Z,2024-03-01T00:00:00Z,11,older\n"      # older: kept out
        "2,2024-03-01T01:00:00Z,2024-03-01T00:00:01Z,21,restated\n"   # same event time, later created
        "3,2024-03-01T01:00:00Z,2024-03-01T00:00:00Z,31,tie\n"        # a full tie: not newer
        "4,2024-03-01T02:00:00Z,,41,new\n")
    r = fs.load("v", [str(tmp_path / "b.csv")])
    assert (r.rows_read, r.rows_written) == (4, 2)
    assert read_vs(fs, [1, 2, 3, 4]) == [(10, "p"), (21, "restated"), (None, "ü"), (41, "new")]
    # loading the same files again writes nothing
    assert fs.load("v", [tmp_path / "a.parquet", tmp_path / "b.csv"]).rows_written == 0
    with pytest.raises(UnknownObject):
        fs.load("nope", [tmp_path / "a.parquet"])


def test_a_bad_row_names_file_and_row_and_nothing_of_the_batch_is_visible(loadable: FeatureStore,
                                                                            tmp_path: Path) -> None:
    fs = loadable
    pq.write_table(pa.table({"k": [1], "ts": utc_ts([T0]), "created": utc_ts([T0]), "x": [1], "s": ["old"]}),
                   tmp_path / "base.parquet")
    fs.load("v", [tmp_path / "base.parquet"])
    before = dump(fs)
    pq.write_table(pa.table({"k": [1, 5, 6], "ts": utc_ts([at(HOUR)] * 3), "created": utc_ts([T0] * 3),
                             "x": [2, 5, 6], "s": ["new", "new", "new"]}), tmp_path / "good.parquet")
    (tmp_path / "bad.csv").write_text("k,ts,created,x,s\n7,2024-03-01T01:00:00Z,,7,ok\n8,2024-03-01T01:00:00Z,,eight,no\n")
    with pytest.raises(IngestError, match=r"bad\.csv.*line 3 \(row 2\).*'x'.*eight") as info:
        fs.load("v", [tmp_path / "good.parquet", tmp_path / "bad.csv"])
    assert info.value.row == 2 and info.value.column == "x"
    assert dump(fs) == before and read_vs(fs, [1, 5, 6, 7]) == [(1, "old"), (None, "d"), (None, "d"), (None, "d")]
    # a null event time, a missing column, an unreadable time: each named
    pq.write_table(pa.table({"k": [1, 2], "ts": utc_ts([at(HOUR), None]), "created": utc_ts([T0, T0]),
                             "x": [1, 2], "s": ["a", "b"]}), tmp_path / "nullts.parquet")
    with pytest.raises(IngestError, match=r"nullts\.parquet.*row 2.*'ts'"):
        fs.load("v", [tmp_path / "good.parquet", tmp_path / "nullts.parquet"])
    pq.write_table(pa.table({"k": [1], "ts": utc_ts([at(HOUR)]), "x": [1]}), tmp_path / "cols.parquet")
    with pytest.raises(IngestError, match=r"cols\.parquet.*created.*missing|cols\.parquet.*missing.*created"):
        fs.load("v", [tmp_path / "cols.parquet"])
    (tmp_path / "when.csv").write_text("k,ts,created,x,s\n9,yesterday-ish,,9,a\n")
    with pytest.raises(IngestError, match=r"when\.csv.*row 1.*'ts'"):
        fs.load("v", [tmp_path / "when.csv"])
    assert dump(fs) == before


def test_a_key_too_long_for_lmdb_names_file_and_row(loadable: FeatureStore, tmp_path: Path) -> None:
    fs = loadable
    pq.write_table(pa.table({"name": ["a", "b"], "ts": utc_ts([T0] * 2), "created": utc_ts([T0] * 2),
                             "x": [1, 2]}), tmp_path / "ok.parquet")
    pq.write_table(pa.table({"name": ["c", "é" * 300], "ts": utc_ts([T0] * 2), "created": utc_ts([T0] * 2),
                             "x": [3, 4]}), tmp_path / "long.parquet")
    with pytest.raises(IngestError, match=r"long\.parquet.*row 2.*511"):
        fs.load("names", [tmp_path / "ok.parquet", tmp_path / "long.parquet"])
    got = fs.get_online_features(["names:x"], entity_rows=[{"name": "a"}, {"name": "c"}], now=T0)
    assert got.values("x") == [None, None]  # nothing of the failed batch


# ---- gc ------------------------------------------------------------------------------------------

def test_gc_removes_expired_rows_in_small_transactions(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {
        "v": {"keys": [("k", "int")], "ttl": "1h", "features": [("x", "int64", None)]},
        "forever": {"keys": [("k", "int")], "features": [("y", "int64", None)]}})
    # entity k has its row k minutes before T0 (k = 0..119): 60 are older than 1 h at T0
    write_view_source(root, "v", rows_table([(k, -k * 60 * SEC, None, k) for k in range(120)]))
    write_view_source(root, "forever", pa.table({"k": [1], "ts": utc_ts([at(-100 * DAY)]),
                                                 "created": utc_ts([T0]), "y": [1]}))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(T0)
    before = fs.get_online_features(["v:x"], entity_rows=[{"k": 61}, {"k": 60}], now=T0)
    assert [s.name for s in before.statuses("x")] == ["EXPIRED", "PRESENT"]

    writes: list[int] = []

    class Counting(OnlineStore):
        def write(self, fn: Callable) -> Any:
            n = super().write(fn)
            writes.append(n)
            return n

    fs.online.close()
    store = Counting(fs.config)
    deleted = gc(store, fs.get_feature_view("v"), T0_US, batch=7)
    assert deleted == 59  # k = 61..119; k = 60 is exactly on the bound
    assert max(writes) <= 7 and len(writes) == 9
    store.close()
    fs = FeatureStore(root)
    assert fs.gc(now=T0) == {"v_v1": 0, "forever_v1": 0}  # nothing left to do; no ttl: kept forever
    after = fs.get_online_features(["v:x"], entity_rows=[{"k": k} for k in range(120)], now=T0)
    assert after.values("x") == list(range(61)) + [None] * 59
    assert [s.name for s in after.statuses("x")][59:] == ["PRESENT"] * 2 + ["NOT_FOUND"] * 59
    assert fs.online.stats("v_v1")["entries"] == 61
    assert fs.get_online_features(["forever:y"], entity_rows=[{"k": 1}], now=T0).values("y") == [1]
    assert fs.gc(now=at(HOUR + 1)) == {"v_v1": 61, "forever_v1": 0}


def test_gc_keeps_rows_refreshed_meanwhile(tmp_path: Path) -> None:
    root = make_views_repo(tmp_path / "r", {"v": {"keys": [("k", "int")], "ttl": "1h",
                                                  "features": [("x", "int64", None)]}})
    write_view_source(root, "v", rows_table([(k, -2 * HOUR, None, k) for k in range(30)]))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(T0)
    view = fs.get_feature_view("v")
    source = fs.registry.require()["sources"][view["source"]]
    pq.write_table(rows_table([(k, 0, None, 100 + k) for k in range(0, 30, 3)]), tmp_path / "fresh.parquet")
    fs.online.close()

    class RefreshBeforeFirstDelete(OnlineStore):
        """A push lands between gc's scan and its delete transaction."""
        pending = True

        def write(self, fn: Callable) -> Any:
            if self.pending:
                self.pending = False
                bulk_load(self, root, view, source, [tmp_path / "fresh.parquet"])
            return super().write(fn)

    store = RefreshBeforeFirstDelete(fs.config)
    assert gc(store, view, T0_US) == 20
    store.close()
    fs = FeatureStore(root)
    got = fs.get_online_features(["v:x"], entity_rows=[{"k": k} for k in range(30)], now=T0)
    assert got.values("x") == [100 + k if k % 3 == 0 else None for k in range(30)]
