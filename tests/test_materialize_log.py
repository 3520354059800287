"""Incremental materialization is driven by the ingest log, not by event time alone.

The two stories of issue 9, end to end through the CLI (a subprocess, as people run it)
and the API: a typo'd future END, and late-arriving data. Then the rules under them:
rows dated after END stay pending, a future END is refused unless asked for, a killed
run resumes only the same job, stores from before the log still work, and describe /
list report the state. Event times are relative to the real clock (END 'now').
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from conftest import make_views_repo, utc_ts, write_view_source
from fstore import FeatureStore
from fstore.errors import FutureEnd, InvalidArgument, InvalidConfig
from fstore.offline.layout import MANIFEST

UTC = dt.timezone.utc
MIN = dt.timedelta(minutes=1)
FSTORE = shutil.which("fstore", path=str(Path(sys.executable).parent)) or "fstore"


class Died(Exception):
    """The job's process dying between two bucket transactions."""


class Recorder:
    """A progress reporter that records what it is told, and can die after ``die_after`` advances."""

    def __init__(self, die_after: int | None = None) -> None:
        self.die_after = die_after
        self.starts: list[tuple[str, int | None]] = []
        self.infos: list[str] = []

    def start(self, description: str, total: int | None) -> None:
        self.starts.append((description, total))

    def advance(self, n: int = 1, *, info: str = "") -> None:
        self.infos.append(info)
        if self.die_after is not None and len(self.infos) >= self.die_after:
            raise Died("the job dies here")

    def stop(self) -> None:
        pass


def fstore(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([FSTORE, "-r", str(root), *args], capture_output=True, text=True, timeout=120, env=env)
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def repo(root: Path, buckets: int = 4, config: dict[str, Any] | None = None) -> Path:
    make_views_repo(root, {"v": {"keys": [("k", "int")], "features": [("x", "int64", None)]}}, buckets=buckets)
    if config:
        doc = yaml.safe_load((root / "fstore.yaml").read_text())
        (root / "fstore.yaml").write_text(yaml.safe_dump({**doc, **config}))
    return root


def rows(*items: tuple[int, dt.datetime, int]) -> pa.Table:
    """(key, event time, x) rows as a source table (no created time)."""
    return pa.table({"k": pa.array([k for k, _, _ in items], pa.int64()), "ts": utc_ts([t for _, t, _ in items]),
                     "created": pa.nulls(len(items), pa.timestamp("us", tz="UTC")),
                     "x": pa.array([x for _, _, x in items], pa.int64())})


def served(fs: FeatureStore, keys: list[int]) -> list[Any]:
    return fs.get_online_features(["v:x"], entity_rows=[{"k": k} for k in keys]).values("x")


def cli_served(root: Path, key: int) -> str:
    """The value `fstore get` prints for one key."""
    out = fstore(root, "get", "--features", "v:x", f"k={key}").stdout
    [line] = [ln for ln in out.splitlines() if ln.strip().startswith("│ x ")]
    return line.split("│")[2].strip()


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


# ---- the two stories, through the command line -------------------------------------------------

def test_a_typoed_future_end_is_refused_and_cannot_hide_rows_ingested_later(tmp_path: Path) -> None:
    root = repo(tmp_path / "r")
    t = now()
    write_view_source(root, "v", rows((1, t - 60 * MIN, 1), (2, t - 60 * MIN, 2)))
    fstore(root, "apply")
    fstore(root, "ingest")
    bad = fstore(root, "materialize-incremental", "2099-01-01", ok=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    message = " ".join(bad.stderr.split())
    for text in ("2099-01-01", "later than now", "clock-skew allowance of 5m", "materialize.clock_skew",
                 "--allow-future"):
        assert text in message, message
    assert json.loads(fstore(root, "describe", "v", "--json").stdout)["last_materialized"] is None  # nothing ran
    fstore(root, "materialize-incremental", "2099-01-01", "--allow-future")
    state = json.loads(fstore(root, "describe", "v", "--json").stdout)
    assert state["watermark"].startswith("2099-01-01") and state["pending_rows"] == 0
    assert cli_served(root, 1) == "1"
    # new rows are ingested, dated now: before the watermark the typo set
    write_view_source(root, "v", rows((1, now() - MIN, 10), (3, now() - MIN, 30)), part=1)
    fstore(root, "ingest")
    assert json.loads(fstore(root, "describe", "v", "--json").stdout)["pending_rows"] == 2
    out = fstore(root, "materialize-incremental").stdout  # END defaults to now
    assert "v_v1" in out
    assert (cli_served(root, 1), cli_served(root, 2), cli_served(root, 3)) == ("10", "2", "30")
    state = json.loads(fstore(root, "describe", "v", "--json").stdout)
    # the watermark is what every consumed run was read up to: now, no longer 2099
    assert state["pending_rows"] == 0 and state["watermark"] < "2099" and state["online_rows"] == 3


def test_late_arriving_rows_are_written_when_newer_per_key_and_never_overwrite_newer(tmp_path: Path) -> None:
    root = repo(tmp_path / "r")
    t = now()
    write_view_source(root, "v", rows((1, t - 120 * MIN, 1), (2, t - 120 * MIN, 2), (3, t - 120 * MIN, 3)))
    fstore(root, "apply")
    fstore(root, "ingest")
    fstore(root, "materialize-incremental", "now")
    wm = json.loads(fstore(root, "describe", "v", "--json").stdout)["watermark"]
    # late rows, all dated before the watermark: newer than online for 1, older for 2, a new key 4
    write_view_source(root, "v", rows((1, t - 60 * MIN, 10), (2, t - 180 * MIN, 20), (4, t - 90 * MIN, 40)), part=1)
    fstore(root, "ingest")
    assert json.loads(fstore(root, "describe", "v", "--json").stdout)["pending_rows"] == 3
    out = fstore(root, "materialize-incremental", "now").stdout
    [line] = [ln for ln in out.splitlines() if "v_v1" in ln]
    assert [c.strip() for c in line.split("│")[2:4]] == ["3", "2"]  # 3 read, 2 written
    assert [cli_served(root, k) for k in (1, 2, 3, 4)] == ["10", "2", "3", "40"]
    state = json.loads(fstore(root, "describe", "v", "--json").stdout)
    assert state["pending_rows"] == 0 and state["watermark"] > wm and state["online_rows"] == 4


# ---- the same rules through the API -------------------------------------------------------------

def test_late_rows_through_the_api_and_a_noop_reads_nothing(tmp_path: Path) -> None:
    root = repo(tmp_path / "r", buckets=8)
    t = now()
    write_view_source(root, "v", rows(*[(k, t - 120 * MIN, k) for k in range(40)]))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    [r] = fs.materialize_incremental()
    assert r.rows_written == 40
    write_view_source(root, "v", rows((1, t - 60 * MIN, 100), (2, t - 180 * MIN, 200)), part=1)
    fs.ingest()
    rec = Recorder()
    [r] = fs.materialize_incremental("now", progress=rec)
    assert (r.rows_read, r.rows_written) == (2, 1) and served(fs, [1, 2, 3]) == [100, 2, 3]
    assert rec.starts[0][1] <= 2  # only the buckets the new run touched were read
    rec = Recorder()
    [r] = fs.materialize_incremental("now", progress=rec)  # nothing new: no part is read
    assert (r.rows_read, r.rows_written) == (0, 0) and rec.starts == [("materialize v_v1", 0)]
    assert fs.view_status("v")["pending_rows"] == 0


def test_rows_dated_after_end_stay_pending_until_an_end_reaches_them(tmp_path: Path) -> None:
    root = repo(tmp_path / "r")
    t = now()
    write_view_source(root, "v", rows((1, t - 120 * MIN, 1), (1, t - 30 * MIN, 2), (2, t - 10 * MIN, 3)))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    [r] = fs.materialize_incremental(t - 60 * MIN)
    assert served(fs, [1, 2]) == [1, None]
    status = fs.view_status("v")
    assert status["pending_rows"] == 2 and status["watermark"] == (t - 60 * MIN).isoformat()
    [r] = fs.materialize_incremental(t - 20 * MIN)
    assert served(fs, [1, 2]) == [2, None] and fs.view_status("v")["pending_rows"] == 1
    [r] = fs.materialize_incremental()
    assert served(fs, [1, 2]) == [2, 3] and fs.view_status("v")["pending_rows"] == 0
    # an END before the watermark reads nothing and leaves the watermark where it was
    wm = fs.online.watermark("v_v1")
    [r] = fs.materialize_incremental(t - 200 * MIN)
    assert r.rows_read == 0 and fs.online.watermark("v_v1") == wm


def test_an_end_in_the_future_is_refused_by_both_materializations_unless_allowed(tmp_path: Path) -> None:
    root = repo(tmp_path / "r", config={"materialize": {"clock_skew": "1h"}})
    write_view_source(root, "v", rows((1, now() - MIN, 1)))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental(now() + 30 * MIN)  # within the configured allowance
    with pytest.raises(FutureEnd, match=r"clock-skew allowance of 1h") as info:
        fs.materialize_incremental(now() + 2 * 60 * MIN)
    assert isinstance(info.value, InvalidArgument) and info.value.code == "FUTURE_END" and info.value.field == "end"
    with pytest.raises(FutureEnd, match=r"END '2099-01-01' \(2099-01-01T00:00:00\+00:00\) is later than now"):
        fs.materialize("2000-01-01", "2099-01-01")
    [r] = fs.materialize("2000-01-01", "2099-01-01", allow_future=True)
    assert r.watermark is not None
    for bad in ("soon", -3, True):
        (root / "fstore.yaml").write_text(yaml.safe_dump({"project": "t", "materialize": {"clock_skew": bad}}))
        with pytest.raises(InvalidConfig, match="materialize.clock_skew"):
            FeatureStore(root)


def test_a_killed_run_resumes_only_the_same_job(tmp_path: Path) -> None:
    """A job killed midway and rerun after a new ingest reads the new run too: its done buckets
    were written without it, so none is trusted."""
    root = repo(tmp_path / "r", config={"online_store": {"write_buffer_mb": 0}})
    t = now()
    keys = list(range(200))
    write_view_source(root, "v", rows(*[(k, t - 120 * MIN, k) for k in keys]))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    end = t - MIN
    with pytest.raises(Died):
        fs.materialize_incremental(end, progress=Recorder(die_after=2))
    assert fs.online.job("v_v1")["done"] == [0, 1]
    write_view_source(root, "v", rows(*[(k, t - 90 * MIN, 1000 + k) for k in keys]), part=1)
    fs.ingest()
    rec = Recorder()
    fs.materialize_incremental(end, progress=rec)
    assert "already done" not in rec.infos
    assert served(fs, keys) == [1000 + k for k in keys] and fs.online.job("v_v1") is None


def test_a_store_from_before_the_log_is_read_whole_once(tmp_path: Path) -> None:
    """Runs without a recorded event range (read from the parts' statistics) and a view with a
    watermark but no consumed state: the next run reads all history, so a late row is not missed."""
    root = repo(tmp_path / "r")
    t = now()
    write_view_source(root, "v", rows((1, t - 120 * MIN, 1), (2, t - 120 * MIN, 2)))
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.materialize_incremental()
    write_view_source(root, "v", rows((1, t - 60 * MIN, 10)), part=1)
    fs.ingest()
    # what an older fstore left: no event ranges in the manifest, only the watermark online
    path = fs.offline.view_dir(fs.get_feature_view("v")) / MANIFEST
    manifest = json.loads(path.read_text())
    for run in manifest["runs"]:
        del run["events"]
    path.write_text(json.dumps(manifest))
    fs.online.write(lambda txn: txn.delete(b"mat:v_v1", db=fs.online.meta))
    assert fs.view_status("v")["pending_rows"] == 3
    [r] = fs.materialize_incremental()
    assert served(fs, [1, 2]) == [10, 2] and r.rows_read == 2
    assert fs.view_status("v")["pending_rows"] == 0


def test_describe_and_list_report_the_state_of_each_view(tmp_path: Path) -> None:
    root = repo(tmp_path / "r")
    t = now()
    write_view_source(root, "v", rows((1, t - 10 * MIN, 1), (2, t - 10 * MIN, 2), (2, t - 5 * MIN, 3)))
    fstore(root, "apply")
    before = json.loads(fstore(root, "describe", "v", "--json").stdout)
    assert {k: before[k] for k in ("view", "version", "watermark", "last_materialized", "online_rows",
                                   "last_ingest", "pending_rows", "offline_rows")} == {
        "view": "v_v1", "version": 1, "watermark": None, "last_materialized": None, "online_rows": 0,
        "last_ingest": None, "pending_rows": 0, "offline_rows": 0}
    assert not (root / "data" / "online").exists()  # a status query creates no store
    fstore(root, "ingest")
    ingested = json.loads(fstore(root, "describe", "v", "--json").stdout)
    assert ingested["pending_rows"] == ingested["offline_rows"] == 3 and ingested["last_ingest"] >= t.isoformat()
    fstore(root, "materialize-incremental")
    done = json.loads(fstore(root, "describe", "v", "--json").stdout)
    assert (done["online_rows"], done["pending_rows"], done["ingest_seq"], done["consumed_seq"]) == (2, 0, 1, 1)
    assert done["last_materialized"] >= done["watermark"] >= done["last_ingest"] >= t.isoformat()
    assert done["features"] == [{"name": "x", "dtype": "int64", "default": None}]
    # pushed rows kept offline are ingested too: pending until materialized
    FeatureStore(root).push("v", [{"k": 3, "ts": now(), "created": None, "x": 4}], offline=True)
    assert json.loads(fstore(root, "describe", "v", "--json").stdout)["pending_rows"] == 1
    text = fstore(root, "describe", "v").stdout
    for label in ("watermark", "last materialized", "online rows", "last ingest", "pending rows"):
        assert label in text
    assert done["watermark"][:19].replace("T", " ") in text
    listed = json.loads(fstore(root, "list", "--json").stdout)
    [view] = listed["feature_views"]
    assert view["view"] == "v_v1" and view["online_rows"] == 3 and view["pending_rows"] == 1
    table = fstore(root, "list").stdout
    for label in ("watermark", "online rows", "last ingest"):
        assert label in table
    [row] = [ln for ln in table.splitlines() if "v_v1" in ln]
    assert done["watermark"][:19].replace("T", " ") in row and "never" not in row
