"""The one reader of the feature logs (fstore.monitoring.logread) behind read_logs, fstore
skew and fstore drift: which files, which rows (both window ends included), which columns,
the per-file metadata, files of two registry versions, and that the three callers see the
same rows. Real Parquet files in the documented layout (docs/monitoring.md)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fstore.config import RepoConfig
from fstore.errors import InvalidArgument
from fstore.monitoring.drift_data import Output, log_parts
from fstore.monitoring.logread import group_parts, read_parts, service_dir
from fstore.monitoring.logs import read_logs

UTC = dt.timezone.utc
TS = pa.timestamp("us", tz="UTC")
SERVICE = "svc"
DAY = dt.datetime(2024, 5, 1, tzinfo=UTC)


def write(root: Path, when: list[dt.datetime], features: dict[str, pa.Array], seq: int, *,
          version: int = 1, model: list[str | None] | None = None, folder: str | None = None,
          time_type: pa.DataType = TS) -> Path:
    """One served-log file: the fixed columns, a key, each feature with its status and event
    time, and metadata naming view version ``version``."""
    n = len(when)
    cols: dict[str, pa.Array] = {
        "request_id": pa.array([f"1-{seq}-{i}" for i in range(n)]),
        "caller_request_id": pa.array([f"c-{seq}-{i}" for i in range(n)]),
        "request_time": pa.array(when, TS).cast(time_type), "service": pa.array([SERVICE] * n),
        "model": pa.array(model if model is not None else [None] * n, pa.string()),
        "registry_version": pa.array([version] * n, pa.int64()), "path": pa.array(["server"] * n),
        "worker": pa.array([1] * n, pa.int64()), "row": pa.array(range(n), pa.int32()),
        "uid": pa.array(range(n), pa.int64())}
    for name, values in features.items():
        cols[name] = values
        cols[name + "__status"] = pa.array([0] * n, pa.int8())
        cols[name + "__event_timestamp"] = pa.array(when, TS)
    meta = {"format": 1, "service": SERVICE, "keys": ["uid"],
            "features": [{"column": f, "view": f"stats_v{version}", "feature": f, "dtype": str(v.type)}
                         for f, v in features.items()]}
    day = root / "data" / "offline" / "logs" / SERVICE / (folder or f"date={when[0].date().isoformat()}")
    day.mkdir(parents=True, exist_ok=True)
    path = day / f"part-{when[0].strftime('%Y%m%dT%H%M%S')}-1-{seq}.parquet"
    pq.write_table(pa.table(cols).replace_schema_metadata({"fstore.log": json.dumps(meta)}), path)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two days of logs: version 1 (x float64, seg string) on day 1, version 2 on day 2 (x
    int64 now, seg gone, y added), a writer's temporary, and a model-received file."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "fstore.yaml").write_text("project: t\n")
    d1 = [DAY + dt.timedelta(hours=h) for h in (0, 6, 12, 18)]
    write(root, d1, {"x": pa.array([1.5, None, 2.5, 3.5]), "seg": pa.array(["a", "b", None, "a"])}, 1,
          model=[None, "fraud", "fraud:2", "other"])
    d2 = [DAY + dt.timedelta(days=1, hours=h) for h in (0, 1)]
    write(root, d2, {"x": pa.array([7, 8], pa.int64()), "y": pa.array([True, False])}, 2, version=2)
    folder = root / "data" / "offline" / "logs" / SERVICE / "date=2024-05-02"
    (folder / ".part-20240502T000000-1-3.parquet.tmp").write_bytes(b"half a file")
    (folder / ".part-x.parquet").write_bytes(b"a hidden file")
    return root


def us(t: dt.datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def test_read_logs_unifies_versions_and_merges_metadata(repo: Path) -> None:
    table = read_logs(repo, SERVICE)
    assert table.num_rows == 6
    assert table.column("x").type == pa.float64()         # int64 of version 2 promoted
    assert table.column("x").to_pylist() == [1.5, None, 2.5, 3.5, 7.0, 8.0]
    assert table.column("seg").to_pylist() == ["a", "b", None, "a", None, None]   # missing: null
    assert table.column("y").to_pylist() == [None] * 4 + [True, False]
    meta = json.loads(table.schema.metadata[b"fstore.log"])
    assert [f["column"] for f in meta["features"]] == ["x", "seg", "y"] and meta["keys"] == ["uid"]


def test_windows_include_both_ends_and_skip_other_days(repo: Path) -> None:
    t6, t18 = DAY + dt.timedelta(hours=6), DAY + dt.timedelta(hours=18)
    got = read_logs(repo, SERVICE, t6, t18)
    assert got.column("request_time").to_pylist() == [t6, DAY + dt.timedelta(hours=12), t18]
    assert read_logs(repo, SERVICE, us(t6) + 1, us(t18) - 1).num_rows == 1
    # a day folder outside the window is never opened: an unreadable file there is no error
    bad = repo / "data" / "offline" / "logs" / SERVICE / "date=2024-04-01"
    bad.mkdir()
    (bad / "part-broken.parquet").write_bytes(b"not parquet")
    assert read_logs(repo, SERVICE, t6, None).num_rows == 5
    with pytest.raises(InvalidArgument, match="part-broken.parquet cannot be read"):
        read_logs(repo, SERVICE)


def test_columns_and_named_model(repo: Path) -> None:
    got = read_logs(repo, SERVICE, columns=["x", "uid"], named_model="fraud")
    assert got.column_names == ["x", "uid"]
    assert got.column("x").to_pylist() == [None, 2.5]     # 'fraud' and 'fraud:2'; files without such reads: none
    assert read_logs(repo, SERVICE, named_model="fraud:2").column("row").to_pylist() == [2]
    assert read_logs(repo, SERVICE, columns=["nope"]).column_names == []


def test_parts_keep_each_files_metadata_and_groups_split_versions(repo: Path) -> None:
    folder = service_dir(repo / "data" / "offline", SERVICE)
    parts = read_parts(folder, columns=["x", "seg"], dictionary=["seg"])
    assert [p.path.name for p in parts] == ["part-20240501T000000-1-1.parquet", "part-20240502T000000-1-2.parquet"]
    assert [p.table.column_names for p in parts] == [["x", "seg"], ["x"]]
    assert pa.types.is_dictionary(parts[0].table.column("seg").type)   # strings as Parquet stores them
    assert [p.meta["features"][0]["view"] for p in parts] == ["stats_v1", "stats_v2"]  # type: ignore[index]
    groups = group_parts(read_parts(folder))
    assert [(g.meta["features"][0]["view"], g.table.num_rows) for g in groups] == [("stats_v1", 4), ("stats_v2", 2)]


def test_drift_reads_the_same_rows_file_by_file_typed_as_declared(repo: Path) -> None:
    config = RepoConfig.load(repo)
    outputs = [Output("x", {"name": "stats"}, {"name": "x", "dtype": "float64"}),
               Output("seg", {"name": "stats"}, {"name": "seg", "dtype": "string"}),
               Output("z", {"name": "stats"}, {"name": "z", "dtype": "int64"})]   # in no file
    parts = list(log_parts(config, SERVICE, outputs, us(DAY + dt.timedelta(hours=6)), None))
    assert [n for n, _ in parts] == [3, 2]      # one part per file, only the window's rows
    assert sum(n for n, _ in parts) == read_logs(repo, SERVICE, us(DAY + dt.timedelta(hours=6))).num_rows
    (n1, first), (n2, second) = parts
    assert first["x"].to_pylist() == [None, 2.5, 3.5] and second["x"].to_pylist() == [7.0, 8.0]  # int64 cast
    assert all(p["x"].type == pa.float64() for _, p in parts)
    assert pa.types.is_dictionary(first["seg"].type) and first["seg"].cast(pa.string()).to_pylist() == ["b", None, "a"]
    assert second["seg"].to_pylist() == [None, None] and second["z"].type == pa.int64()
    assert [n for n, _ in log_parts(config, SERVICE, outputs, None, None, model="other")] == [1, 0]


def test_skew_and_read_logs_see_the_same_rows(repo: Path) -> None:
    """skew groups what read_logs returns in one table: same rows, same values."""
    folder = service_dir(repo / "data" / "offline", SERVICE)
    lo, hi = us(DAY + dt.timedelta(hours=1)), us(DAY + dt.timedelta(days=1))
    grouped = [r for g in group_parts(read_parts(folder, lo, hi)) for r in g.table.to_pylist()]
    flat = read_logs(repo, SERVICE, lo, hi).to_pylist()
    key = lambda r: r["request_id"]  # noqa: E731
    assert [(r["request_id"], r["x"]) for r in sorted(grouped, key=key)] == \
        [(r["request_id"], r["x"]) for r in sorted(flat, key=key)]
    assert len(flat) == 4


def test_request_times_in_other_units_are_windowed_in_microseconds(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "fstore.yaml").write_text("project: t\n")
    when = [DAY + dt.timedelta(microseconds=m) for m in (0, 1, 2)]
    write(root, when, {"x": pa.array([1.0, 2.0, 3.0])}, 1, time_type=pa.timestamp("ns", tz="UTC"))
    assert read_logs(root, SERVICE, us(when[1]), us(when[2])).column("x").to_pylist() == [2.0, 3.0]


def test_a_file_without_request_time_is_named_when_a_window_needs_it(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / SERVICE / "date=2024-05-01"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1.0]}), folder / "part-1.parquet")
    assert [p.table.num_rows for p in read_parts(folder.parent)] == [1]
    with pytest.raises(InvalidArgument, match="part-1.parquet has no 'request_time' column"):
        read_parts(folder.parent, 0, None)


def test_many_rows_round_trip(tmp_path: Path) -> None:
    """Row for row, over several files, against the values written."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "fstore.yaml").write_text("project: t\n")
    rng = np.random.default_rng(1)
    written: list[Any] = []
    for seq in range(5):
        base = DAY + dt.timedelta(hours=seq)
        when = [base + dt.timedelta(seconds=int(s)) for s in np.sort(rng.choice(3000, 1000, replace=False))]
        x = rng.normal(size=1000)
        written += x.tolist()
        write(root, when, {"x": pa.array(x)}, seq)
    assert read_logs(root, SERVICE).column("x").to_pylist() == written
