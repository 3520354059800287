"""Faults: SIGKILL in the middle of materialize and of a bulk load, concurrent readers in other
processes, a held writer, and stores written with another encoding or by another program.

Every entity carries a marker (1 = the old version, 2 or 3 = the new one) repeated in
every feature and in its event time, so a torn row or a half-applied batch shows up
as a mix. Subprocesses and loops are bounded in count and time.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import lmdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_views_repo, write_view_source
from fstore import FeatureStore
from fstore._ext._online import encode_rows
from fstore.errors import OnlineStoreError
from fstore.offline.layout import bucket_ids
from fstore.online.store import FORMAT, FORMAT_KEY, META_DB

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000
HOUR = 3600 * 1_000_000
DAY = 24 * HOUR
REPO_ROOT = Path(__file__).resolve().parents[1]
VERSION_TS = {1: T0_US - DAY, 2: T0_US + HOUR, 3: T0_US + 2 * HOUR}
FEATURES = ["marker", "x", "s"]


def at(offset_us: int) -> dt.datetime:
    return T0 + dt.timedelta(microseconds=offset_us)


def version_table(keys: range, marker: int) -> pa.Table:
    """Every feature of entity k at version m is derived from (k, m)."""
    n = len(keys)
    return pa.table({
        "k": pa.array(keys, pa.int64()),
        "ts": pa.array([VERSION_TS[marker]] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "created": pa.nulls(n, pa.timestamp("us", tz="UTC")),
        "marker": pa.array([marker] * n, pa.int64()),
        "x": pa.array([k * 10.0 + marker for k in keys], pa.float64()),
        "s": pa.array([f"{k}:{marker}:" + "p" * (k % 40) for k in keys], pa.string())})


def versioned_repo(root: Path, buckets: int = 16, online: dict[str, Any] | None = None) -> Path:
    return make_views_repo(root, {"v": {"keys": [("k", "int")],
                                        "features": [("marker", "int64", None), ("x", "float64", None),
                                                     ("s", "string", None)]}}, buckets=buckets, online=online)


def markers(fs: FeatureStore, keys: list[int]) -> list[int | None]:
    """Each entity's version, after checking that every feature and the event time agree with it."""
    resp = fs.get_online_features([f"v:{f}" for f in FEATURES], entity_rows=[{"k": k} for k in keys],
                                  now=at(365 * DAY))
    d = resp.to_dict(include_metadata=True)
    out: list[int | None] = []
    for i, k in enumerate(keys):
        m = d["marker"][i]
        if m is None:
            assert d["marker__status"][i] == "NOT_FOUND" and d["x"][i] is None and d["s"][i] is None
            out.append(None)
            continue
        assert m in VERSION_TS, (k, m)
        assert d["x"][i] == k * 10.0 + m and d["s"][i] == f"{k}:{m}:" + "p" * (k % 40), (k, m, d["x"][i], d["s"][i])
        assert d["marker__event_timestamp"][i] == at(VERSION_TS[m] - T0_US), (k, m)
        out.append(m)
    return out


def dump(fs: FeatureStore, view: str = "v_v1") -> dict[bytes, bytes]:
    with fs.online.read() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor(fs.online.db(view)).iternext()}


# ---- subprocesses ------------------------------------------------------------------------------

def spawn(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)


def wait_line(proc: subprocess.Popen, want: Callable[[str], bool], timeout: float) -> str:
    """The first stdout line ``want`` accepts; fails after ``timeout`` seconds or at EOF."""
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                pytest.fail(f"no expected line from the subprocess within {timeout} s")
            if not sel.select(timeout=left):
                continue
            line = proc.stdout.readline()
            if not line:
                proc.wait(timeout=10)
                pytest.fail(f"the subprocess ended (rc {proc.returncode}): {proc.stderr.read()[-2000:]}")
            if want(line.strip()):
                return line.strip()
    finally:
        sel.close()


def kill(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGKILL)
    rc = proc.wait(timeout=20)
    proc.stdout.close()
    proc.stderr.close()
    proc.stdin.close()
    return rc


def run_to_end(code: str, timeout: float = 120) -> str:
    proc = spawn(code)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    return out


REPORTER = """
import sys, time
class Talk:
    def __init__(self, pause):
        self.pause = pause
    def start(self, description, total):
        print("start", description, flush=True)
    def advance(self, n=1, info=""):
        print("advance", info, flush=True)
        time.sleep(self.pause)
    def stop(self):
        pass
"""


# ---- SIGKILL during materialize ------------------------------------------------------------------

def test_sigkill_during_materialize_leaves_old_or_new_rows_and_a_true_watermark(tmp_path: Path) -> None:
    rng = random.Random(7)
    n = 30_000
    keys = list(range(n))
    # a small write buffer: buckets are committed in groups of two or three (about 110 KB each)
    root = versioned_repo(tmp_path / "r", online={"write_buffer_mb": 0.25})
    write_view_source(root, "v", version_table(range(n), 1), part=0)
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(T0)
    write_view_source(root, "v", version_table(range(n), 2), part=1)
    fs.ingest()
    fs.online.close()
    shutil.copytree(root, tmp_path / "copy")
    bucket = bucket_ids(pa.table({"k": pa.array(keys, pa.int64())}), ["k"], 16)
    end = at(2 * HOUR)
    child = REPORTER + f"""
from fstore import FeatureStore
FeatureStore({str(root)!r}).materialize_incremental({end.isoformat()!r}, progress=Talk(0.02))
print("finished", flush=True)
"""
    killed = 0
    done_before: set[int] = set()
    for _ in range(2):
        proc = spawn(child)
        wait_line(proc, lambda line: line.startswith("advance"), timeout=90)
        time.sleep(rng.uniform(0.0, 0.15))
        killed += kill(proc) == -signal.SIGKILL
        # the store opens; every entity holds its old or its new row, whole
        fs = FeatureStore(root)
        got = markers(fs, keys)
        job, wm = fs.online.job("v_v1"), fs.online.watermark("v_v1")
        if job is None and wm == T0_US:  # killed before its first group committed
            assert set(got) == {1} and not done_before
        elif job is None:  # the job finished before the kill
            assert wm == T0_US + 2 * HOUR and set(got) == {2}
        else:
            # the watermark claims nothing new; the job claims exactly the buckets written
            assert wm == T0_US and job["interval"] == [T0_US, T0_US + 2 * HOUR]
            done = set(job["done"])
            assert done >= done_before
            done_before = done
            for k in keys:
                assert got[k] == (2 if bucket[k] in done else 1), (k, bucket[k], done)
        fs.online.close()
    assert killed >= 1
    # a rerun completes the job: the final state is that of an uninterrupted run
    assert "finished" in run_to_end(child)
    fs, other = FeatureStore(root), FeatureStore(tmp_path / "copy")
    other.materialize_incremental(end)
    assert markers(fs, keys) == [2] * n
    assert dump(fs) == dump(other)
    assert fs.online.watermark("v_v1") == other.online.watermark("v_v1") == T0_US + 2 * HOUR
    assert fs.online.job("v_v1") is None


# ---- SIGKILL during a bulk load ---------------------------------------------------------------------

def test_sigkill_during_bulk_load_shows_nothing_of_it_and_a_rerun_completes(tmp_path: Path) -> None:
    rng = random.Random(11)
    n = 50_000
    keys = list(range(n))
    root = versioned_repo(tmp_path / "r", buckets=4)
    write_view_source(root, "v", version_table(range(1), 1))
    pq.write_table(version_table(range(n), 1), tmp_path / "old.parquet")
    pq.write_table(version_table(range(n), 2), tmp_path / "new.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.load("v", [tmp_path / "old.parquet"])
    fs.online.close()
    shutil.copytree(root, tmp_path / "copy")
    child = REPORTER + f"""
from fstore import FeatureStore
FeatureStore({str(root)!r}).load("v", [{str(tmp_path / 'new.parquet')!r}], progress=Talk(PAUSE))
print("finished", flush=True)
"""
    # killed while reading the file, then while its rows sit written in the open transaction
    # (the child reports the load's progress from inside the transaction and pauses there)
    for phase in ("read", "load"):
        proc = spawn(child.replace("PAUSE", "0.0" if phase == "read" else "2.0"))
        wait_line(proc, lambda line: line.startswith(f"start {phase}"), timeout=90)
        if phase == "load":
            wait_line(proc, lambda line: line.startswith("advance"), timeout=90)
        time.sleep(rng.uniform(0.0, 0.05))
        assert kill(proc) == -signal.SIGKILL
        fs = FeatureStore(root)
        assert set(markers(fs, keys)) == {1}  # nothing of the load
        fs.online.close()
    assert "finished" in run_to_end(child.replace("PAUSE", "0.0"))
    fs, other = FeatureStore(root), FeatureStore(tmp_path / "copy")
    other.load("v", [tmp_path / "new.parquet"])
    assert markers(fs, keys) == [2] * n
    assert dump(fs) == dump(other)


# ---- readers in other processes ----------------------------------------------------------------------

READER = """
import sys, time
from fstore import FeatureStore
import datetime as dt
fs = FeatureStore(ROOT)
keys = KEYS
rows = [{"k": k} for k in keys]
now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
def snapshot():
    d = fs.get_online_features(["v:marker", "v:x", "v:s"], entity_rows=rows, now=now).to_dict()
    bad = sum(1 for k, m, x, s in zip(keys, d["marker"], d["x"], d["s"])
              if x != k * 10.0 + m or not s.startswith(f"{k}:{m}:"))
    return set(d["marker"]), bad
seen = {"old": 0, "new": 0, "mixed": 0, "torn": 0}
ms, bad = snapshot()
assert ms == {1} and bad == 0, (ms, bad)
seen["old"] += 1
print("ready", flush=True)
deadline = time.monotonic() + 60
for _ in range(100_000):
    if time.monotonic() > deadline or seen["new"] >= 5:
        break
    ms, bad = snapshot()
    seen["torn"] += bad
    seen["old" if ms == {1} else "new" if ms == {2} else "mixed"] += 1
print("seen", seen["old"], seen["new"], seen["mixed"], seen["torn"], flush=True)
"""


def test_readers_in_other_processes_see_whole_batches_only(tmp_path: Path) -> None:
    n = 60_000
    keys = list(range(n))
    root = versioned_repo(tmp_path / "r", buckets=8)
    write_view_source(root, "v", version_table(range(n), 1), part=0)
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(T0)
    write_view_source(root, "v", version_table(range(n), 2), part=1)
    fs.ingest()
    bucket = bucket_ids(pa.table({"k": pa.array(keys, pa.int64())}), ["k"], 8)
    readers = []
    for b in (0, 5, 7):  # one batch each: a bucket is written in one transaction
        mine = [k for k in keys if bucket[k] == b]
        readers.append(spawn(READER.replace("ROOT", repr(str(root))).replace("KEYS", repr(mine))))
    try:
        for proc in readers:
            wait_line(proc, lambda line: line == "ready", timeout=90)
        [r] = fs.materialize_incremental(at(2 * HOUR))
        assert r.rows_written == n
        results = [wait_line(proc, lambda line: line.startswith("seen"), timeout=120) for proc in readers]
    finally:
        for proc in readers:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=20)
    for line in results:
        old, new, mixed, torn = map(int, line.split()[1:])
        assert mixed == 0 and torn == 0, line
        assert old >= 1 and new >= 1, line


def test_a_held_write_transaction_neither_blocks_readers_nor_shows_them_anything(tmp_path: Path) -> None:
    root = versioned_repo(tmp_path / "r", buckets=2)
    write_view_source(root, "v", version_table(range(10), 1))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(T0)
    fs.online.close()
    reader = spawn(f"""
import sys, datetime as dt
from fstore import FeatureStore
fs = FeatureStore({str(root)!r})
now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
for _ in range(3):
    d = fs.get_online_features(["v:marker", "v:x"], entity_rows=[{{"k": 3}}], now=now).to_dict()
    print("read", d["marker"][0], d["x"][0], flush=True)
    if not sys.stdin.readline():
        break
""")
    try:
        assert wait_line(reader, lambda line: line.startswith("read"), timeout=60) == "read 1 31.0"
        # another writer holds the write lock with an uncommitted new version of entity 3
        env = lmdb.open(str(root / "data" / "online"), max_dbs=4096, map_size=1 << 30)
        db = env.open_db(b"v_v1")
        txn = env.begin(write=True)
        new = version_table(range(3, 4), 2)
        [value] = encode_rows(pa.array([VERSION_TS[2]], pa.int64()).to_numpy(),
                              pa.array([-(2**63)], pa.int64()).to_numpy(),
                              [new.column("marker").combine_chunks(), new.column("x").combine_chunks(),
                               new.column("s").combine_chunks()], [1, 3, 6])
        from fstore._ext._online import key_of
        txn.put(key_of((3,), [1]), value, db=db)
        reader.stdin.write("go\n")
        reader.stdin.flush()
        assert wait_line(reader, lambda line: line.startswith("read"), timeout=30) == "read 1 31.0"
        txn.commit()
        reader.stdin.write("go\n")
        reader.stdin.flush()
        assert wait_line(reader, lambda line: line.startswith("read"), timeout=30) == "read 2 32.0"
        env.close()
    finally:
        reader.kill()
        reader.communicate(timeout=20)


# ---- a store from another version, or another program -------------------------------------------------

@pytest.mark.parametrize("other", [b"fstore-online/0", b"\xff\x00not even text"])
def test_a_store_with_another_encoding_is_refused_not_misread(tmp_path: Path, other: bytes) -> None:
    root = versioned_repo(tmp_path / "r", buckets=2)
    write_view_source(root, "v", version_table(range(10), 1))
    pq.write_table(version_table(range(10), 2), tmp_path / "new.parquet")
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(T0)
    fs.online.close()
    path = root / "data" / "online"
    env = lmdb.open(str(path), max_dbs=4096)
    meta = env.open_db(META_DB)
    with env.begin(write=True) as txn:
        assert txn.get(FORMAT_KEY, db=meta) == FORMAT
        txn.put(FORMAT_KEY, other, db=meta)
    env.close()
    fs = FeatureStore(root)
    calls: list[Callable[[], Any]] = [
        lambda: fs.get_online_features(["v:marker"], entity_rows=[{"k": 1}], now=T0),
        lambda: fs.materialize_incremental(at(HOUR)),
        lambda: fs.load("v", [tmp_path / "new.parquet"]),
    ]
    for call in calls + calls:  # refused every time, not just the first
        with pytest.raises(OnlineStoreError, match="written with encoding") as info:
            call()
        assert FORMAT.decode() in str(info.value) and "rebuild" in str(info.value)
        assert other[-4:].decode() in str(info.value)  # the encoding found is shown
    env = lmdb.open(str(path), max_dbs=4096, readonly=True)
    with env.begin() as txn:
        meta = env.open_db(META_DB, txn=txn, create=False)
        assert txn.get(FORMAT_KEY, db=meta) == other  # left as it was
        assert txn.get(b"v_v1") is not None
    env.close()


def test_an_lmdb_environment_fstore_did_not_write_is_refused_and_left_alone(tmp_path: Path) -> None:
    root = versioned_repo(tmp_path / "r", buckets=2)
    write_view_source(root, "v", version_table(range(10), 1))
    path = root / "data" / "online"
    env = lmdb.open(str(path), max_dbs=8)
    other = env.open_db(b"someone_elses")
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v", db=other)
    env.close()
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    for _ in range(2):
        with pytest.raises(OnlineStoreError, match="did not write"):
            fs.get_online_features(["v:marker"], entity_rows=[{"k": 1}], now=T0)
        with pytest.raises(OnlineStoreError, match="did not write"):
            fs.materialize_incremental(T0)
    fs.online.close()
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    with env.begin() as txn:
        assert [bytes(k) for k, _ in txn.cursor()] == [b"someone_elses"]
    env.close()
