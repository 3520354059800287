"""One run names every bad row: ingest, load and push over real CSV and Parquet files.

The first rows are shown in full (file, row from 1, column, the value as given and why),
then a count per problem; a run with a bad row writes nothing, byte for byte. Rows with a
null join key are skipped and counted, never ingested without a word.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import TRIPS_FILES, customer_stats_table, make_demo_repo, snapshot, write_csv
from fstore import FeatureStore
from fstore.errors import BadRequest, BadRows, IngestError
from fstore.offline.problems import SHOWN

HEADER = "customer_id,driver_id,ts,trips_together\n"
FSTORE = str(Path(sys.executable).parent / "fstore")


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    store = FeatureStore(make_demo_repo(tmp_path / "repo"))
    store.apply()
    return store


def bad_trips(n: int) -> tuple[str, list[int], list[int]]:
    """A trips CSV of ``n`` rows: every 7th has a null time, every 11th a count 'two'.
    Returns the text and the 1-based rows of each problem."""
    lines, null_ts, bad_count = [HEADER], [], []
    for i in range(n):
        ts = "" if i % 7 == 3 else f"2024-01-03T{i % 24:02d}:00:00"
        count = "two" if i % 11 == 5 else str(i % 9)
        lines.append(f"{1000 + i % 50},{500 + i % 5},{ts},{count}\n")
        if i % 7 == 3:
            null_ts.append(i + 1)
        if i % 11 == 5:
            bad_count.append(i + 1)
    return "".join(lines), null_ts, bad_count


def test_every_bad_row_of_a_csv_is_reported_in_one_run(fs: FeatureStore) -> None:
    fs.ingest()
    before = snapshot(fs.config.root / "data" / "offline")
    text, null_ts, bad_count = bad_trips(3000)
    write_csv(fs.config.root, "2024-01-03.csv", text)
    with pytest.raises(BadRows) as info:
        fs.ingest(["customer_driver"])
    err, msg = info.value, str(info.value)
    assert isinstance(err, IngestError) and err.code == "BAD_ROWS"
    assert err.count == len(set(null_ts) | set(bad_count))
    assert f"{err.count:,} bad row(s)" in msg and "nothing was written" in msg and "rows are numbered from 1" in msg
    # the first row of the file is row 1 (line 2, after the header); the first bad one is row 4
    assert (err.file, err.row, err.column) == ("data/trips/2024-01-03.csv", 4, "ts")
    lines = msg.splitlines()
    assert lines[1] == "  data/trips/2024-01-03.csv at line 5 (row 4), column 'ts': the event timestamp is null"
    assert lines[2].startswith("  data/trips/2024-01-03.csv at line 7 (row 6), column 'trips_together': "
                               "value 'two' cannot be read as int64")
    shown = lines[1:SHOWN + 1]
    assert all(line.startswith("  data/trips/2024-01-03.csv at line ") for line in shown)
    shown_ts = sum("'ts'" in line for line in shown)
    assert f"  and {len(null_ts) - shown_ts:,} more row(s) with a null event timestamp in column 'ts'" in lines
    assert f"  and {len(bad_count) - (SHOWN - shown_ts):,} more row(s) whose column 'trips_together' cannot be " \
           "read as int64" in lines
    assert len(lines) == 1 + SHOWN + 2
    assert snapshot(fs.config.root / "data" / "offline") == before  # nothing written, nothing stray


def test_bad_rows_of_every_file_and_parquet_rows_are_numbered_from_1(fs: FeatureStore) -> None:
    write_csv(fs.config.root, "2024-01-02.csv", TRIPS_FILES["2024-01-02.csv"].replace("2024-01-02T12:00:00", "noon"))
    write_csv(fs.config.root, "2024-01-03.csv", HEADER + "1001,501,2024-01-03T06:00:00,1\n1002,D-7,,2\n")
    table = customer_stats_table()
    ts = table.column("event_timestamp").to_pylist()
    ts[0] = ts[6] = None
    pq.write_table(table.set_column(1, "event_timestamp", pa.array(ts, pa.timestamp("us", tz="UTC"))),
                   fs.config.root / "data" / "customer_stats.parquet")
    with pytest.raises(BadRows) as info:
        fs.ingest()
    msg = str(info.value)
    for line in ["data/trips/2024-01-02.csv at line 3 (row 2), column 'ts': value 'noon' cannot be read as a timestamp",
                 "data/trips/2024-01-03.csv at line 3 (row 2), column 'driver_id': value 'D-7' cannot be read as int64",
                 "data/trips/2024-01-03.csv at line 3 (row 2), column 'ts': the event timestamp is null",
                 "data/customer_stats.parquet at row 1, column 'event_timestamp': the event timestamp is null",
                 "data/customer_stats.parquet at row 7, column 'event_timestamp': the event timestamp is null"]:
        assert line in msg, msg
    assert "ingest of customer_driver_v1: 2 bad row(s)" in msg and "ingest of customer_stats_v1: 2 bad row(s)" in msg
    assert info.value.count == 4
    for view in ("customer_driver_v1", "customer_stats_v1"):
        assert fs.offline.manifest(fs.get_feature_view(view)) is None
        assert not list(fs.offline.view_dir(fs.get_feature_view(view)).glob("b*/*"))


def test_one_bad_view_does_not_stop_the_others(fs: FeatureStore) -> None:
    write_csv(fs.config.root, "2024-01-03.csv", HEADER + "1001,501,,1\n")
    with pytest.raises(BadRows) as info:
        fs.ingest()
    assert "the other views were ingested: customer_stats_v1" in str(info.value)
    assert fs.offline.manifest(fs.get_feature_view("customer_stats_v1"))["rows"] == 10
    assert fs.offline.manifest(fs.get_feature_view("customer_driver_v1")) is None


def test_an_epoch_number_for_a_timestamp_shows_the_value_given(fs: FeatureStore) -> None:
    write_csv(fs.config.root, "2024-01-03.csv", HEADER + "1001,501,1704240000,1\n1002,502,1704243600,2\n")
    with pytest.raises(BadRows) as info:
        fs.ingest(["customer_driver"])
    msg = str(info.value)
    assert "data/trips/2024-01-03.csv, column 'ts': int64 values cannot be read as a timestamp; " \
           "line 2 (row 1) holds 1704240000" in msg
    assert "None" not in msg and "row 0" not in msg and "unit (s, ms, us)" in msg


def test_an_epoch_number_in_the_entity_rows_shows_the_value_given(fs: FeatureStore) -> None:
    from fstore.errors import EntityDataError

    fs.ingest()
    entities = pa.table({"customer_id": [1001, 1002], "event_timestamp": [None, 1704240000]})
    with pytest.raises(EntityDataError) as info:
        fs.get_historical_features(entities, ["customer_stats:segment"])
    msg = str(info.value)
    assert "row 2 (rows are numbered from 1) holds 1704240000" in msg and "int64" in msg
    assert "None" not in msg and "row 0" not in msg


def test_counting_distinct_bad_values_is_bounded_and_says_so(fs: FeatureStore, monkeypatch) -> None:
    """Past the run's search budget the count is a floor, and the message says so."""
    import fstore.offline.problems as problems

    monkeypatch.setattr(problems, "SEARCH_BUDGET", 64)
    lines = [HEADER] + [f"1001,501,2024-01-03T00:00:00,x{i}\n" for i in range(1000)]
    write_csv(fs.config.root, "2024-01-03.csv", "".join(lines))
    with pytest.raises(BadRows) as info:
        fs.ingest(["customer_driver"])
    msg = str(info.value)
    assert "and at least " in msg and "whose column 'trips_together' cannot be read as int64" in msg
    assert "(the search for them stopped after 64 trial casts)" in msg
    assert "line 2 (row 1), column 'trips_together': value 'x0'" in msg


# ---- null join keys ------------------------------------------------------------------------

def test_rows_with_a_null_join_key_are_skipped_and_counted(fs: FeatureStore) -> None:
    write_csv(fs.config.root, "2024-01-03.csv",
              HEADER + "1001,501,2024-01-03T06:00:00,1\n,502,2024-01-03T06:00:00,2\n1003,,2024-01-03T07:00:00,3\n"
              ",,2024-01-03T08:00:00,4\n")
    [driver] = fs.ingest(["customer_driver"])
    assert (driver.rows, driver.null_key_rows, driver.null_key_columns) == (8, 3, ["customer_id", "driver_id"])
    stored = fs.offline.manifest(fs.get_feature_view("customer_driver_v1"))
    assert stored["rows"] == 8 and stored["units"]["data/trips/2024-01-03.csv"]["rows"] == 1


def test_the_cli_warns_about_null_keys_naming_count_and_column(fs: FeatureStore, tmp_path: Path) -> None:
    write_csv(fs.config.root, "2024-01-03.csv", HEADER + "1001,501,2024-01-03T06:00:00,1\n,502,2024-01-03T06:00:00,2\n")
    env = {**os.environ, "COLUMNS": "200"}
    for args in (["ingest"], ["load", "customer_driver", str(fs.config.root / "data/trips/2024-01-03.csv")],
                 ["push", "customer_driver", str(fs.config.root / "data/trips/2024-01-03.csv")]):
        proc = subprocess.run([FSTORE, "-r", str(fs.config.root), *args], capture_output=True, text=True,
                              timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "warning: customer_driver_v1: 1 row(s) with a null join key (customer_id) were skipped" in proc.stderr


def test_a_pushed_row_with_a_null_key_is_refused(fs: FeatureStore) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    rows = {"customer_id": [1, None], "driver_id": [2, 3], "ts": [now, now], "trips_together": [1, 2]}
    with pytest.raises(BadRequest) as info:
        fs.push("customer_driver", rows)
    assert "pushed rows at row 2, column 'customer_id': the join key is null" in str(info.value)
    assert info.value.field == "rows.customer_id"


# ---- load: every bad row, nothing written ---------------------------------------------------

def test_load_reports_every_bad_row_of_every_file_and_writes_nothing(fs: FeatureStore, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "1001,501,2024-01-03T06:00:00,1\n")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text(HEADER + "1001,501,,1\n1002,502,2024-01-03T06:00:00,two\n1003,503,2024-01-03T06:00:00,3\n")
    bad_parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"customer_id": [1, 2, 3], "driver_id": [1, 2, 3], "trips_together": [1, 2, 3],
                             "ts": pa.array([None, None, 1704240000_000000], pa.timestamp("us", tz="UTC"))}),
                   bad_parquet)
    with pytest.raises(BadRows) as info:
        fs.load("customer_driver", [good, bad_csv, bad_parquet])
    msg = str(info.value)
    assert "load into customer_driver_v1: 4 bad row(s); nothing was written" in msg
    for line in [f"{bad_csv} at line 2 (row 1), column 'ts': the event timestamp is null",
                 f"{bad_csv} at line 3 (row 2), column 'trips_together': value 'two' cannot be read as int64",
                 f"{bad_parquet} at row 1, column 'ts': the event timestamp is null",
                 f"{bad_parquet} at row 2, column 'ts': the event timestamp is null"]:
        assert line in msg, msg
    assert not fs.online.has_db("customer_driver_v1") or fs.online.stats("customer_driver_v1")["entries"] == 0


def test_load_names_every_key_too_long_for_lmdb(tmp_path: Path) -> None:
    from conftest import make_views_repo, write_view_source

    root = make_views_repo(tmp_path / "r", {"v": {"keys": [("k", "string")], "features": [("x", "int64", None)]}})
    write_view_source(root, "v", pa.table({"k": ["a"], "ts": pa.array([1], pa.timestamp("us", tz="UTC")),
                                           "created": pa.array([1], pa.timestamp("us", tz="UTC")), "x": [1]}))
    fs = FeatureStore(root)
    fs.apply()
    path = tmp_path / "long.parquet"
    keys = ["ok", "k" * 600, "fine", "z" * 512, "y" * 511]
    pq.write_table(pa.table({"k": keys, "ts": pa.array([1] * 5, pa.timestamp("us", tz="UTC")),
                             "created": pa.array([1] * 5, pa.timestamp("us", tz="UTC")), "x": [1] * 5}), path)
    with pytest.raises(BadRows) as info:
        fs.load("v", [path])
    msg = str(info.value)
    assert f"{path} at row 2, column 'k': the key is 600 bytes; LMDB keys are at most 511" in msg
    assert f"{path} at row 4, column 'k': the key is 512 bytes" in msg and "row 5" not in msg
    assert info.value.count == 2


def test_rows_skipped_for_a_null_key_are_not_checked_further(fs: FeatureStore) -> None:
    """A keyless row is skipped whatever else it holds; the rows after it keep their numbers."""
    write_csv(fs.config.root, "2024-01-03.csv",
              HEADER + ",502,,x\n1001,501,2024-01-03T06:00:00,1\n,503,noon,2\n1002,502,,3\n")
    with pytest.raises(BadRows) as info:
        fs.ingest(["customer_driver"])
    assert info.value.count == 1 and (info.value.row, info.value.column) == (4, "ts")
    assert "data/trips/2024-01-03.csv at line 5 (row 4), column 'ts': the event timestamp is null" in str(info.value)
    write_csv(fs.config.root, "2024-01-03.csv", HEADER + ",502,,x\n1001,501,2024-01-03T06:00:00,1\n,503,noon,2\n")
    [result] = fs.ingest(["customer_driver"])
    assert (result.rows, result.null_key_rows) == (8, 2)


def test_a_push_names_its_null_keys_and_its_other_bad_rows_together(fs: FeatureStore) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    rows = {"customer_id": [1, None, 3], "driver_id": [2, 3, 4], "ts": [now, now, None], "trips_together": [1, 2, 3]}
    with pytest.raises(BadRequest) as info:
        fs.push("customer_driver", rows)
    msg = str(info.value)
    assert "pushed rows: 2 bad row(s)" in msg
    assert "pushed rows at row 2, column 'customer_id': the join key is null" in msg
    assert "pushed rows at row 3, column 'ts': the event timestamp is null" in msg
