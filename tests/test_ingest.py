"""Section 4 of the spec: ingest into the offline store, and the loaders behind it.

Everything runs on real Parquet and CSV files. "Nothing half-written is visible"
is checked byte for byte: the manifest and every part file are unchanged after
a failed ingest, and no file but the live ones is left after the next one.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import (TRIPS_FILES, UTC, customer_stats_table, edit_defs, find, make_demo_repo, multiset,
                      snapshot, write_csv)
from fstore import FeatureStore
from fstore.repo.definitions import DTYPES, Source
from fstore.errors import DefinitionErrors, IngestError
from fstore.offline.loaders import CsvLoader, ParquetLoader, get_loader
from fstore.offline.layout import CREATED_TS, EVENT_TS, MANIFEST, bucket_ids

TRIP_COLS = ["customer_id", "driver_id", "ts", "trips_together"]


# ---- helpers ------------------------------------------------------------------------------

def view(fs: FeatureStore, name: str) -> dict[str, Any]:
    return fs.get_feature_view(name)


def read_store(fs: FeatureStore, name: str) -> pa.Table:
    """Every bucket of a view version, read the way joins read it, concatenated."""
    v = view(fs, name)
    manifest = fs.offline.manifest(v)
    assert manifest is not None, f"{name} was never ingested"
    features = [f["name"] for f in v["features"]]
    tables = [fs.offline.read_bucket(v, manifest, b, features) for b in range(manifest["buckets"])]
    return pa.concat_tables(tables)


def stored_rows(fs: FeatureStore, name: str, columns: list[str]) -> list[tuple]:
    table = read_store(fs, name)
    return list(zip(*(table.column(c).to_pylist() for c in columns)))


def csv_trip_rows(*texts: str) -> list[tuple]:
    """What the trips CSV texts hold, typed by hand: (customer_id, driver_id, ts as UTC, trips)."""
    out = []
    for text in texts:
        for r in csv.DictReader(io.StringIO(text)):
            t = dt.datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
            t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
            out.append((int(r["customer_id"]), int(r["driver_id"]), t, int(r["trips_together"])))
    return out


def trip_rows(fs: FeatureStore) -> list[tuple]:
    return stored_rows(fs, "customer_driver_v1", ["customer_id", "driver_id", EVENT_TS, "trips_together"])


def live_files(fs: FeatureStore, name: str) -> set[str]:
    """The files a view's folder should hold: the manifest, its lock and the parts it references."""
    manifest = fs.offline.manifest(view(fs, name))
    return {MANIFEST, ".lock", *(p for run in manifest["runs"] for p in run["parts"].values())}


def files_in(fs: FeatureStore, name: str) -> set[str]:
    d = fs.offline.view_dir(view(fs, name))
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


def assert_sorted_parts(fs: FeatureStore, name: str) -> None:
    """Every part file is sorted by (keys, event time, created time) and typed as declared."""
    v = view(fs, name)
    manifest = fs.offline.manifest(v)
    d = fs.offline.view_dir(v)
    for run in manifest["runs"]:
        for part in run["parts"].values():
            t = pq.read_table(d / part)
            assert t.schema.remove_metadata() == fs.offline.schema(v), part
            cols = [*v["join_keys"], EVENT_TS, CREATED_TS]
            rows = list(zip(*(t.column(c).to_pylist() for c in cols)))
            key = [tuple((x is not None, x) for x in r) for r in rows]  # nulls first
            assert key == sorted(key), f"{part} is not sorted"


@pytest.fixture
def fs(demo_store: FeatureStore) -> FeatureStore:
    return demo_store


# ---- the offline store ---------------------------------------------------------------------

def test_ingest_writes_typed_sorted_bucketed_parquet(fs: FeatureStore) -> None:
    results = {r.view: r for r in fs.ingest()}
    assert {(r.view, r.units_read, r.units_skipped, r.rows, r.replaced_units) for r in results.values()} == {
        ("customer_stats_v1", 1, 0, 10, 0), ("customer_driver_v1", 2, 0, 7, 0)}
    root = fs.config.root / "data" / "offline"
    assert sorted(p.name for p in root.iterdir()) == ["customer_driver_v1", "customer_stats_v1"]
    for name in ("customer_stats_v1", "customer_driver_v1"):
        v = view(fs, name)
        manifest = json.loads((root / name / MANIFEST).read_text())
        assert manifest["rows"] == results[name].rows and manifest["buckets"] == 8
        assert [r["id"] for r in manifest["runs"]] == ["r000001"]
        parts = manifest["runs"][0]["parts"]
        assert parts and all(p == f"b{int(b):04d}/r000001.parquet" for b, p in parts.items())
        assert files_in(fs, name) == live_files(fs, name)
        assert_sorted_parts(fs, name)
        # one key's whole history lives in the bucket its hash names
        for b, part in parts.items():
            t = pq.read_table(root / name / part)
            assert set(bucket_ids(t, v["join_keys"], 8).tolist()) == {int(b)}
    assert read_store(fs, "customer_stats_v1").schema.field("txn_count_7d").type == pa.int64()


def test_stored_values_are_the_source_values(fs: FeatureStore) -> None:
    fs.ingest()
    src = customer_stats_table()
    cols = ["customer_id", "event_timestamp", "created_timestamp", "avg_amount_7d", "txn_count_7d", "segment"]
    expected = list(zip(*(src.column(c).to_pylist() for c in cols)))
    got = stored_rows(fs, "customer_stats_v1",
                      ["customer_id", EVENT_TS, CREATED_TS, "avg_amount_7d", "txn_count_7d", "segment"])
    assert multiset(got) == multiset(expected)
    assert multiset(trip_rows(fs)) == multiset(csv_trip_rows(*TRIPS_FILES.values()))
    # a CSV source has no created time: stored as null
    assert read_store(fs, "customer_driver_v1").column(CREATED_TS).null_count == 7


def test_ingest_twice_does_not_duplicate(fs: FeatureStore) -> None:
    fs.ingest()
    offline = fs.config.root / "data" / "offline"
    before = snapshot(offline)
    again = fs.ingest()
    assert all(r.up_to_date and r.rows == 0 for r in again)
    assert {r.view: r.units_skipped for r in again} == {"customer_stats_v1": 1, "customer_driver_v1": 2}
    assert snapshot(offline) == before
    assert len(trip_rows(fs)) == 7


def test_ingest_of_one_view(fs: FeatureStore) -> None:
    (res,) = fs.ingest(["customer_driver"])
    assert res.view == "customer_driver_v1"
    assert fs.offline.manifest(view(fs, "customer_stats_v1")) is None


def test_new_csv_file_adds_only_its_rows(fs: FeatureStore) -> None:
    fs.ingest()
    vdir = fs.offline.view_dir(view(fs, "customer_driver_v1"))
    old_parts = {k: v for k, v in snapshot(vdir).items() if k.endswith(".parquet")}
    new = "customer_id,driver_id,ts,trips_together\n1001,503,2024-01-03T06:00:00,1\n1005,501,2024-01-03T07:00:00,3\n"
    write_csv(fs.config.root, "2024-01-03.csv", new)
    (res,) = fs.ingest(["customer_driver"])
    assert (res.units_read, res.units_skipped, res.rows, res.replaced_units) == (1, 2, 2, 0)
    after = snapshot(vdir)
    for part, content in old_parts.items():  # appended: the old parts are not rewritten
        assert after[part] == content
    manifest = fs.offline.manifest(view(fs, "customer_driver_v1"))
    assert [r["id"] for r in manifest["runs"]] == ["r000001", "r000002"]
    assert manifest["rows"] == 9 and manifest["units"]["data/trips/2024-01-03.csv"]["rows"] == 2
    assert multiset(trip_rows(fs)) == multiset(csv_trip_rows(*TRIPS_FILES.values(), new))
    assert files_in(fs, "customer_driver_v1") == live_files(fs, "customer_driver_v1")
    assert_sorted_parts(fs, "customer_driver_v1")


def test_changed_file_replaces_its_rows(fs: FeatureStore) -> None:
    fs.ingest()
    write_csv(fs.config.root, "2024-01-03.csv", TRIPS_FILES["2024-01-02.csv"].replace("01-02", "01-03"))
    fs.ingest()
    changed = ("customer_id,driver_id,ts,trips_together\n"
               "1001,501,2024-01-01T08:05:00,7\n1009,509,2024-01-01T12:00:00,1\n")
    write_csv(fs.config.root, "2024-01-01.csv", changed)
    (res,) = fs.ingest(["customer_driver"])
    assert (res.units_read, res.units_skipped, res.rows, res.replaced_units) == (1, 2, 2, 1)
    expected = csv_trip_rows(changed, TRIPS_FILES["2024-01-02.csv"],
                             TRIPS_FILES["2024-01-02.csv"].replace("01-02", "01-03"))
    assert multiset(trip_rows(fs)) == multiset(expected)
    assert files_in(fs, "customer_driver_v1") == live_files(fs, "customer_driver_v1")
    assert_sorted_parts(fs, "customer_driver_v1")
    manifest = fs.offline.manifest(view(fs, "customer_driver_v1"))
    assert manifest["rows"] == len(expected)
    assert manifest["units"]["data/trips/2024-01-01.csv"]["rows"] == 2
    # and again: idempotent after a replacement too
    assert fs.ingest(["customer_driver"])[0].up_to_date
    assert len(trip_rows(fs)) == len(expected)


def test_same_size_rewrite_is_seen(fs: FeatureStore) -> None:
    fs.ingest()
    old = TRIPS_FILES["2024-01-02.csv"]
    new = old.replace(",5\n", ",6\n")
    assert len(new) == len(old)
    write_csv(fs.config.root, "2024-01-02.csv", new)
    assert fs.ingest(["customer_driver"])[0].replaced_units == 1
    assert multiset(trip_rows(fs)) == multiset(csv_trip_rows(TRIPS_FILES["2024-01-01.csv"], new))


def test_changed_parquet_file_replaces_its_rows(fs: FeatureStore) -> None:
    fs.ingest()
    path = fs.config.root / "data" / "customer_stats.parquet"
    table = customer_stats_table().slice(0, 4)
    pq.write_table(table, path)
    (res,) = fs.ingest(["customer_stats_v1"])
    assert (res.rows, res.replaced_units) == (4, 1)
    assert sorted(read_store(fs, "customer_stats_v1").column("avg_amount_7d").to_pylist()) == [12.0, 25.5, 27.25, 30.0]


# ---- bad rows -------------------------------------------------------------------------------

def _assert_nothing_visible(fs: FeatureStore, before: dict, expected_rows: list[tuple]) -> None:
    offline = fs.config.root / "data" / "offline"
    now = {k: v for k, v in snapshot(offline).items() if not k.endswith(".tmp")}
    assert {k: v for k, v in now.items() if k in before} == before
    assert set(now) - set(before) <= {k for k in now if "/b" in k}  # at most unreferenced parts
    assert multiset(trip_rows(fs)) == multiset(expected_rows)


def test_null_timestamp_fails_naming_file_and_line(fs: FeatureStore) -> None:
    fs.ingest()
    before = snapshot(fs.config.root / "data" / "offline")
    bad = "customer_id,driver_id,ts,trips_together\n1001,501,2024-01-03T06:00:00,1\n1002,502,,2\n"
    write_csv(fs.config.root, "2024-01-03.csv", bad)
    with pytest.raises(IngestError) as info:
        fs.ingest(["customer_driver"])
    err = info.value
    assert (err.file, err.row, err.column) == ("data/trips/2024-01-03.csv", 2, "ts")
    assert "data/trips/2024-01-03.csv" in str(err) and "line 3" in str(err) and "null" in str(err)
    _assert_nothing_visible(fs, before, csv_trip_rows(*TRIPS_FILES.values()))
    # fixed: the file is read again, nothing stray is left
    fixed = bad.replace(",,2", ",2024-01-03T07:00:00,2")
    write_csv(fs.config.root, "2024-01-03.csv", fixed)
    assert fs.ingest(["customer_driver"])[0].rows == 2
    assert multiset(trip_rows(fs)) == multiset(csv_trip_rows(*TRIPS_FILES.values(), fixed))
    assert files_in(fs, "customer_driver_v1") == live_files(fs, "customer_driver_v1")


def test_value_that_does_not_cast_fails_naming_file_row_and_column(fs: FeatureStore) -> None:
    fs.ingest()
    before = snapshot(fs.config.root / "data" / "offline")
    bad = ("customer_id,driver_id,ts,trips_together\n" + "1001,501,2024-01-03T06:00:00,1\n" * 3
           + "1002,502,2024-01-03T06:30:00,two\n1003,503,2024-01-03T07:00:00,3\n")
    write_csv(fs.config.root, "2024-01-03.csv", bad)
    with pytest.raises(IngestError) as info:
        fs.ingest()
    err = info.value
    assert (err.file, err.row, err.column) == ("data/trips/2024-01-03.csv", 4, "trips_together")
    assert "line 5" in str(err) and "'two'" in str(err) and "int64" in str(err)
    _assert_nothing_visible(fs, before, csv_trip_rows(*TRIPS_FILES.values()))


def test_bad_timestamp_text_is_named(fs: FeatureStore) -> None:
    write_csv(fs.config.root, "2024-01-02.csv", TRIPS_FILES["2024-01-02.csv"].replace("2024-01-02T12:00:00", "noon"))
    with pytest.raises(IngestError) as info:
        fs.ingest(["customer_driver"])
    assert (info.value.file, info.value.row, info.value.column) == ("data/trips/2024-01-02.csv", 2, "ts")
    assert "'noon'" in str(info.value) and "timestamp" in str(info.value)


def test_bad_second_file_keeps_the_first_invisible(fs: FeatureStore) -> None:
    """A run is all or nothing: a good file read before the bad one is not half-committed."""
    write_csv(fs.config.root, "2024-01-02.csv", TRIPS_FILES["2024-01-02.csv"] + "1005,D-7,2024-01-02T19:00:00,1\n")
    with pytest.raises(IngestError) as info:
        fs.ingest(["customer_driver"])
    assert (info.value.file, info.value.row, info.value.column) == ("data/trips/2024-01-02.csv", 4, "driver_id")
    vdir = fs.offline.view_dir(view(fs, "customer_driver_v1"))
    assert fs.offline.manifest(view(fs, "customer_driver_v1")) is None
    assert not list(vdir.glob("b*/*"))


def test_null_timestamp_in_parquet_names_the_row(fs: FeatureStore) -> None:
    table = customer_stats_table()
    ts_col = table.column("event_timestamp").to_pylist()
    ts_col[6] = None
    table = table.set_column(1, "event_timestamp", pa.array(ts_col, pa.timestamp("us", tz="UTC")))
    pq.write_table(table, fs.config.root / "data" / "customer_stats.parquet")
    with pytest.raises(IngestError) as info:
        fs.ingest(["customer_stats"])
    err = info.value
    assert (err.file, err.row, err.column) == ("data/customer_stats.parquet", 7, "event_timestamp")
    assert "data/customer_stats.parquet at row 7" in str(err)
    assert fs.offline.manifest(view(fs, "customer_stats_v1")) is None


def test_value_out_of_range_names_the_row(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "repo")
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_stats")["features"][1].update(dtype="int32"))
    table = customer_stats_table()
    counts = table.column("txn_count_7d").to_pylist()
    counts[8] = 2**40
    pq.write_table(table.set_column(4, "txn_count_7d", pa.array(counts, pa.int64())),
                   repo / "data" / "customer_stats.parquet")
    fs = FeatureStore(repo)
    fs.apply()
    with pytest.raises(IngestError) as info:
        fs.ingest(["customer_stats"])
    assert (info.value.row, info.value.column) == (9, "txn_count_7d")
    assert str(2**40) in str(info.value) and "int32" in str(info.value)


def test_new_csv_missing_a_column_is_named(fs: FeatureStore) -> None:
    write_csv(fs.config.root, "2024-01-03.csv", "customer_id,driver_id,ts\n1001,501,2024-01-03T06:00:00\n")
    with pytest.raises(IngestError) as info:
        fs.ingest(["customer_driver"])
    assert (info.value.file, info.value.column) == ("data/trips/2024-01-03.csv", "trips_together")
    assert "trips_together" in str(info.value) and "missing" in str(info.value)


def test_parquet_file_missing_a_column_is_named(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "repo")
    folder = repo / "data" / "stats"
    folder.mkdir()
    pq.write_table(customer_stats_table(), folder / "a.parquet")
    pq.write_table(customer_stats_table().drop_columns(["segment"]), folder / "b.parquet")
    edit_defs(repo, lambda d: find(d["sources"], "customer_stats_src").update(path="data/stats"))
    fs = FeatureStore(repo)
    fs.apply()  # the unified schema of the folder has every column
    with pytest.raises(IngestError) as info:
        fs.ingest(["customer_stats"])
    assert (info.value.file, info.value.column) == ("data/stats/b.parquet", "segment")


def test_crash_while_writing_leaves_old_state_and_is_cleaned_up(fs: FeatureStore, monkeypatch) -> None:
    import fstore.offline.store as offline_store

    fs.ingest()
    offline = fs.config.root / "data" / "offline"
    before = snapshot(offline)
    write_csv(fs.config.root, "2024-01-01.csv", TRIPS_FILES["2024-01-01.csv"].replace(",4\n", ",9\n"))
    write_csv(fs.config.root, "2024-01-03.csv", TRIPS_FILES["2024-01-02.csv"].replace("01-02", "01-03"))

    def crash(path: Path, data: bytes) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(offline_store, "write_atomic", crash)  # parts written, manifest not
    with pytest.raises(OSError):
        fs.ingest(["customer_driver"])
    monkeypatch.undo()
    _assert_nothing_visible(fs, before, csv_trip_rows(*TRIPS_FILES.values()))
    assert files_in(fs, "customer_driver_v1") != live_files(fs, "customer_driver_v1")  # orphans exist

    (res,) = fs.ingest(["customer_driver"])
    assert (res.units_read, res.replaced_units) == (2, 1)
    assert files_in(fs, "customer_driver_v1") == live_files(fs, "customer_driver_v1")
    expected = csv_trip_rows(TRIPS_FILES["2024-01-01.csv"].replace(",4\n", ",9\n"), TRIPS_FILES["2024-01-02.csv"],
                             TRIPS_FILES["2024-01-02.csv"].replace("01-02", "01-03"))
    assert multiset(trip_rows(fs)) == multiset(expected)


def test_ingest_killed_before_manifest_swap(fs: FeatureStore) -> None:
    """A real SIGKILL right before the new manifest is renamed into place."""
    fs.ingest()
    before = snapshot(fs.config.root / "data" / "offline")
    write_csv(fs.config.root, "2024-01-03.csv", TRIPS_FILES["2024-01-02.csv"].replace("01-02", "01-03"))
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        real_replace = os.replace
        def replace(src, dst):
            if Path(dst).name == "_manifest.json":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst)
        os.replace = replace
        from fstore import FeatureStore
        FeatureStore({str(fs.config.root)!r}).ingest(["customer_driver"])
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    left = files_in(fs, "customer_driver_v1") - live_files(fs, "customer_driver_v1")
    assert any(f.startswith("._manifest.json") for f in left) and any(f.endswith("r000002.parquet") for f in left)
    _assert_nothing_visible(fs, before, csv_trip_rows(*TRIPS_FILES.values()))
    (res,) = fs.ingest(["customer_driver"])
    assert res.rows == 3
    assert files_in(fs, "customer_driver_v1") == live_files(fs, "customer_driver_v1")
    assert len(trip_rows(fs)) == 10


# ---- loaders --------------------------------------------------------------------------------

def _stats_source(path: str, **kw: Any) -> Source:
    return Source(name="stats", path=path, timestamp_field="event_timestamp",
                  created_timestamp_field="created_timestamp", **kw)


def _write_stats_folder(repo: Path) -> Path:
    folder = repo / "data" / "stats"
    (folder / "2024" / "01").mkdir(parents=True)
    t = customer_stats_table()
    pq.write_table(t.slice(0, 3), folder / "part-0.parquet")
    pq.write_table(t.slice(3, 3), folder / "part-1.parquet")
    pq.write_table(t.slice(6), folder / "2024" / "01" / "part-2.parquet")
    (folder / "_SUCCESS").write_text("")
    pq.write_table(t.slice(0, 1), folder / ".part-9.parquet.crc")
    pq.write_table(t.slice(0, 1), folder / "_metadata")
    (folder / "README.txt").write_text("written by the nightly job")
    return folder


@pytest.mark.parametrize("path, units", [
    ("data/stats", ["data/stats/2024/01/part-2.parquet", "data/stats/part-0.parquet", "data/stats/part-1.parquet"]),
    ("data/stats/", ["data/stats/2024/01/part-2.parquet", "data/stats/part-0.parquet", "data/stats/part-1.parquet"]),
    ("data/stats/part-*.parquet", ["data/stats/part-0.parquet", "data/stats/part-1.parquet"]),
    ("data/stats/**/*.parquet", ["data/stats/2024/01/part-2.parquet", "data/stats/part-0.parquet",
                                 "data/stats/part-1.parquet"]),
    ("data/stats/part-1.parquet", ["data/stats/part-1.parquet"]),
])
def test_parquet_loader_file_folder_glob(demo_repo: Path, path: str, units: list[str]) -> None:
    _write_stats_folder(demo_repo)
    loader = get_loader(_stats_source(path), demo_repo)
    assert isinstance(loader, ParquetLoader)
    got = loader.units()
    assert [u.id for u in got] == units
    assert loader.schema().names == customer_stats_table().column_names
    rows = sum(loader.read(u, ["customer_id", "segment"]).num_rows for u in got)
    assert rows == {1: 3, 2: 6, 3: 10}[len(units)]
    assert loader.read(got[0], ["segment", "customer_id"]).column_names == ["segment", "customer_id"]


def test_folder_source_end_to_end(demo_repo: Path) -> None:
    _write_stats_folder(demo_repo)
    edit_defs(demo_repo, lambda d: find(d["sources"], "customer_stats_src").update(path="data/stats/"))
    fs = FeatureStore(demo_repo)
    fs.apply()
    (res,) = fs.ingest(["customer_stats"])
    assert (res.units_read, res.rows) == (3, 10)
    assert read_store(fs, "customer_stats_v1").num_rows == 10


def test_csv_loader_options(demo_repo: Path) -> None:
    (demo_repo / "data" / "eu").mkdir()
    (demo_repo / "data" / "eu" / "trips.csv").write_text(
        "customer_id;driver_id;ts;trips_together\n1001;501;2024-01-01T08:05:00+01:00;1\n1002;502;-;2\n")
    src = Source(name="eu", path="data/eu/trips.csv", timestamp_field="ts",
                 options={"delimiter": ";", "null_values": ["-"]})
    loader = get_loader(src, demo_repo)
    assert isinstance(loader, CsvLoader) and loader.schema().names == TRIP_COLS
    (unit,) = loader.units()
    t = loader.read(unit, TRIP_COLS)
    assert t.column("ts").null_count == 1
    tsv = demo_repo / "data" / "eu" / "trips.tsv"
    tsv.write_text("customer_id\tdriver_id\tts\ttrips_together\n1001\t501\t2024-01-01T08:05:00\t1\n")
    loader = get_loader(Source(name="tsv", path="data/eu/*.tsv", timestamp_field="ts"), demo_repo)
    assert isinstance(loader, CsvLoader) and loader.schema().names == TRIP_COLS


def test_timestamps_are_utc_whatever_their_spelling(tmp_path: Path) -> None:
    """Naive means UTC; offsets are converted; a bare date is midnight UTC; ns and other zones too."""
    repo = make_demo_repo(tmp_path / "repo")
    write_csv(repo, "2024-01-01.csv", "customer_id,driver_id,ts,trips_together\n"
              "1,1,2024-01-01T08:00:00,1\n2,2,2024-01-01T08:00:00+02:00,2\n3,3,2024-01-01 08:00:00Z,3\n"
              "4,4,2024-01-01T08:00:00.250-05:30,4\n")
    write_csv(repo, "2024-01-02.csv", "customer_id,driver_id,ts,trips_together\n5,5,2024-01-02,5\n")
    stats = customer_stats_table()
    text_dates = pa.array([f"2024-01-{d:02d}" for d in range(1, 11)])
    ns_tokyo = stats.column("created_timestamp").cast(pa.timestamp("ns", tz="Asia/Tokyo"))
    pq.write_table(stats.set_column(1, "event_timestamp", text_dates).set_column(2, "created_timestamp", ns_tokyo),
                   repo / "data" / "customer_stats.parquet")
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    got = dict(stored_rows(fs, "customer_driver_v1", ["customer_id", EVENT_TS]))
    assert got == {1: dt.datetime(2024, 1, 1, 8, tzinfo=UTC), 2: dt.datetime(2024, 1, 1, 6, tzinfo=UTC),
                   3: dt.datetime(2024, 1, 1, 8, tzinfo=UTC),
                   4: dt.datetime(2024, 1, 1, 13, 30, 0, 250000, tzinfo=UTC),
                   5: dt.datetime(2024, 1, 2, tzinfo=UTC)}
    t = read_store(fs, "customer_stats_v1")
    assert t.schema.field(EVENT_TS).type == t.schema.field(CREATED_TS).type == pa.timestamp("us", tz="UTC")
    assert sorted(t.column(EVENT_TS).to_pylist()) == [dt.datetime(2024, 1, d, tzinfo=UTC) for d in range(1, 11)]
    assert sorted(t.column(CREATED_TS).to_pylist()) == sorted(stats.column("created_timestamp").to_pylist())


def test_repository_path_with_glob_characters(tmp_path: Path) -> None:
    repo = make_demo_repo(tmp_path / "feature repo [prod] *")
    fs = FeatureStore(repo)
    fs.apply()
    results = {r.view: r.rows for r in fs.ingest()}
    assert results == {"customer_stats_v1": 10, "customer_driver_v1": 7}


PLUGIN = '''
"""A tiny plug-in loader: JSON lines files, one unit per file."""
import hashlib
import json
from pathlib import Path

import pyarrow as pa

from fstore.offline.loaders import Loader, SourceUnit

SCHEMA = pa.schema([("customer_id", pa.int64()), ("ts", pa.string()), ("score", pa.float64())])


class JsonLinesLoader(Loader):
    def units(self):
        folder = self.root / self.source.path
        return [SourceUnit(id=str(p.relative_to(self.root)), fingerprint=hashlib.sha1(p.read_bytes()).hexdigest(),
                           path=p) for p in sorted(folder.glob("*.jsonl"))]

    def schema(self):
        return SCHEMA

    def read(self, unit, columns):
        rows = [json.loads(line) for line in unit.path.read_text().splitlines() if line.strip()]
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        return table.select([c for c in columns if c in table.column_names])
'''


def test_plugin_loader_named_as_module_and_class(demo_repo: Path, tmp_path: Path, monkeypatch) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "fstore_test_jsonl.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(plugins))
    monkeypatch.delitem(sys.modules, "fstore_test_jsonl", raising=False)
    scores = demo_repo / "data" / "scores"
    scores.mkdir()
    (scores / "a.jsonl").write_text('{"customer_id": 1001, "ts": "2024-01-01T00:00:00Z", "score": 0.25}\n'
                                    '{"customer_id": 1002, "ts": "2024-01-01T00:00:00Z", "score": null}\n')
    def change(doc: dict) -> None:
        doc["sources"].append({"name": "scores_src", "path": "data/scores", "timestamp_field": "ts",
                               "format": "fstore_test_jsonl:JsonLinesLoader"})
        doc["feature_views"].append({"name": "risk_score", "entities": ["customer"], "source": "scores_src",
                                     "features": [{"name": "score", "dtype": "float32"}]})
    edit_defs(demo_repo, change)
    fs = FeatureStore(demo_repo)
    fs.apply()
    assert fs.registry.load()["sources"]["scores_src"]["format"] == "fstore_test_jsonl:JsonLinesLoader"
    (res,) = fs.ingest(["risk_score"])
    assert (res.units_read, res.rows) == (1, 2)
    (scores / "b.jsonl").write_text('{"customer_id": 1003, "ts": "2024-01-02T00:00:00", "score": 1.5}\n')
    (res,) = fs.ingest(["risk_score"])
    assert (res.units_read, res.units_skipped, res.rows) == (1, 1, 1)
    t = read_store(fs, "risk_score_v1")
    assert t.schema.field("score").type == pa.float32()
    assert sorted(zip(t.column("customer_id").to_pylist(), t.column("score").to_pylist()),
                  key=lambda r: r[0]) == [(1001, 0.25), (1002, None), (1003, 1.5)]


def test_unknown_plugin_loader_is_a_definition_error(demo_repo: Path) -> None:
    edit_defs(demo_repo, lambda d: find(d["sources"], "trips_src").update(format="no_such_module_xyz:Loader"))
    with pytest.raises(DefinitionErrors) as info:
        FeatureStore(demo_repo).plan()
    err = info.value.errors[0]
    assert (err.file, err.obj, err.field) == ("features/defs.yaml", "source trips_src", "format")
    assert "no_such_module_xyz:Loader" in str(err)
    edit_defs(demo_repo, lambda d: find(d["sources"], "trips_src").update(format="fstore.offline.loaders:Source"))
    with pytest.raises(DefinitionErrors, match="source trips_src.format: 'fstore.offline.loaders:Source' is not a"):
        FeatureStore(demo_repo).plan()


# ---- property: the store gives back exactly the source rows ---------------------------------

PROP_DEFS = """\
entities:
  - {name: account, join_keys: [account_id]}
  - {name: device, join_keys: [device_id]}
sources:
  - name: events_src
    path: data/events/*.csv
    timestamp_field: event_time
    created_timestamp_field: loaded_at
  - name: profiles_src
    path: data/profiles
    timestamp_field: ts
feature_views:
  - name: account_device
    entities: [account, device]
    source: events_src
    features:
      - {name: n_logins, dtype: int32}
      - {name: amount, dtype: float64}
      - {name: ok, dtype: bool}
      - {name: note, dtype: string}
      - {name: seen_at, dtype: timestamp}
  - name: profile
    entities: [account]
    source: profiles_src
    features:
      - {name: age, dtype: int64}
      - {name: score, dtype: float64}
      - {name: ratio, dtype: float32}
      - {name: tier, dtype: string}
      - {name: blob, dtype: bytes}
      - {name: active, dtype: bool}
"""


def _maybe(rng: random.Random, value: Any, p: float = 0.1) -> Any:
    return None if rng.random() < p else value


def _rand_time(rng: random.Random) -> dt.datetime:
    base = dt.datetime(2024, 1, 1, tzinfo=UTC)
    return base + dt.timedelta(seconds=rng.randrange(0, 60 * 86400), microseconds=rng.choice([0, 0, 123456]))


def _spell_time(rng: random.Random, t: dt.datetime) -> str:
    """A timestamp as CSV writers spell it: naive UTC, Z, or another offset."""
    style = rng.randrange(3)
    if style == 0:
        return t.replace(tzinfo=None).isoformat()
    if style == 1:
        return t.isoformat().replace("+00:00", "Z")
    zone = dt.timezone(dt.timedelta(hours=rng.choice([-8, 1, 5]), minutes=rng.choice([0, 30])))
    return t.astimezone(zone).isoformat()


def _events_csv(rng: random.Random, n: int) -> tuple[str, list[tuple]]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["account_id", "device_id", "event_time", "loaded_at", "n_logins", "amount", "ok", "note", "seen_at"])
    expected = []
    for _ in range(n):
        acc, dev = f"acc-{rng.randrange(25):03d}", rng.randrange(-3, 6)
        et, la = _rand_time(rng), _maybe(rng, _rand_time(rng), 0.3)
        logins = _maybe(rng, rng.randrange(-2**31, 2**31))
        amount = _maybe(rng, round(rng.uniform(-1e6, 1e6), rng.randrange(0, 6)))
        ok = _maybe(rng, rng.random() < 0.5)
        note = _maybe(rng, rng.choice(["plain", "with, comma", 'say "hi"', "ünïcode ✓", " padded "]))
        seen = _maybe(rng, _rand_time(rng))
        w.writerow([acc, dev, _spell_time(rng, et), "" if la is None else _spell_time(rng, la),
                    "" if logins is None else logins, "" if amount is None else repr(amount),
                    "" if ok is None else str(ok).lower(), "" if note is None else note,
                    "" if seen is None else _spell_time(rng, seen)])
        expected.append((acc, dev, et, la, logins, amount, ok, note, seen))
    return buf.getvalue(), expected


def _profiles_parquet(rng: random.Random, n: int, path: Path) -> list[tuple]:
    """Parquet typed more loosely than declared: int16, float32 for float64, dictionary text, ns times."""
    accs = [f"acc-{rng.randrange(25):03d}" for _ in range(n)]
    times = [_rand_time(rng).replace(microsecond=0) for _ in range(n)]
    age = [_maybe(rng, rng.randrange(18, 99)) for _ in range(n)]
    score32 = [_maybe(rng, rng.randrange(-1000, 1000) / 8) for _ in range(n)]  # exact in float32
    ratio = [_maybe(rng, rng.random()) for _ in range(n)]
    tier = [_maybe(rng, rng.choice(["gold", "silver", "bronze"])) for _ in range(n)]
    blob = [_maybe(rng, bytes(rng.randrange(256) for _ in range(rng.randrange(5)))) for _ in range(n)]
    active = [_maybe(rng, rng.random() < 0.5) for _ in range(n)]
    table = pa.table({
        "account_id": pa.array(accs).dictionary_encode(),
        "ts": pa.array(times, pa.timestamp("ns", tz="Europe/Paris")),
        "age": pa.array(age, pa.int16()),
        "score": pa.array(score32, pa.float32()),
        "ratio": pa.array(ratio, pa.float64()),
        "tier": pa.array(tier).dictionary_encode(),
        "blob": pa.array(blob, pa.binary()),
        "active": pa.array(active, pa.bool_()),
    })
    pq.write_table(table, path)
    ratio32 = pa.array(ratio, pa.float64()).cast(pa.float32()).to_pylist()
    return list(zip(accs, times, age, score32, ratio32, tier, blob, active))


def test_offline_store_reads_back_exactly_the_source_rows(tmp_path: Path) -> None:
    rng = random.Random(20240101)
    repo = tmp_path / "prop"
    (repo / "features").mkdir(parents=True)
    (repo / "data" / "events").mkdir(parents=True)
    (repo / "data" / "profiles").mkdir(parents=True)
    (repo / "fstore.yaml").write_text("project: prop\noffline_store:\n  buckets: 4\n")
    (repo / "features" / "defs.yaml").write_text(PROP_DEFS)

    events: dict[str, list[tuple]] = {}
    profiles: dict[str, list[tuple]] = {}

    def add_events(name: str, n: int) -> None:
        text, events[name] = _events_csv(rng, n)
        path = repo / "data" / "events" / name
        old_ns = path.stat().st_mtime_ns if path.exists() else 0
        path.write_text(text)
        if old_ns:
            os.utime(path, ns=(old_ns + 10**9, old_ns + 10**9))

    def add_profiles(name: str, n: int) -> None:
        path = repo / "data" / "profiles" / name
        old_ns = path.stat().st_mtime_ns if path.exists() else 0
        profiles[name] = _profiles_parquet(rng, n, path)
        if old_ns:
            os.utime(path, ns=(old_ns + 10**9, old_ns + 10**9))

    add_events("a.csv", 300)
    add_events("b.csv", 150)
    add_profiles("p0.parquet", 120)
    fs = FeatureStore(repo)
    fs.apply()

    def check() -> None:
        ad, pr = view(fs, "account_device"), view(fs, "profile")
        for v in (ad, pr):
            table = read_store(fs, f"{v['name']}_v1")
            declared = {f["name"]: DTYPES[f["dtype"]] for f in v["features"]}
            assert {n: table.schema.field(n).type for n in declared} == declared
            assert_sorted_parts(fs, f"{v['name']}_v1")
            assert files_in(fs, f"{v['name']}_v1") == live_files(fs, f"{v['name']}_v1")
        cols = ["account_id", "device_id", EVENT_TS, CREATED_TS, "n_logins", "amount", "ok", "note", "seen_at"]
        assert multiset(stored_rows(fs, "account_device_v1", cols)) == \
            multiset([r for rows in events.values() for r in rows])
        cols = ["account_id", EVENT_TS, "age", "score", "ratio", "tier", "blob", "active"]
        assert multiset(stored_rows(fs, "profile_v1", cols)) == \
            multiset([r for rows in profiles.values() for r in rows])

    fs.ingest()
    check()
    add_events("c.csv", 200)        # a new file
    add_events("a.csv", 80)         # a changed file, fewer rows
    add_profiles("p1.parquet", 60)
    fs.ingest()
    check()
    add_profiles("p0.parquet", 30)  # changed again
    assert {r.view: r.replaced_units for r in fs.ingest()} == {"account_device_v1": 0, "profile_v1": 1}
    check()
    assert all(r.up_to_date for r in fs.ingest())
    check()
