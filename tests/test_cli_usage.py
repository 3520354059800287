"""The command line as a new user meets it: options where they are written, output that is
text and not markup, nothing cut. Every test runs the installed ``fstore`` in a subprocess."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import edit_defs, find, make_demo_repo

FSTORE = shutil.which("fstore", path=str(Path(sys.executable).parent)) or "fstore"


def run(*args: str, ok: bool = True, columns: int = 200, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    proc = subprocess.run([FSTORE, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_demo_repo(tmp_path / "repo")
    run("-r", str(root), "apply")
    return root


# ---- error lines are text ------------------------------------------------------------------

def test_definition_errors_print_no_markup_tags(repo: Path) -> None:
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_stats")["features"][2].update(dtype="strong"))
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_driver").update(source="nope"))
    proc = run("-r", str(repo), "plan", ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "[red]" not in proc.stderr and "[/red]" not in proc.stderr
    # the brackets of a field name are text, printed as written
    assert "feature_view customer_stats.features[segment].dtype: unknown dtype 'strong'" in proc.stderr
    assert "unknown source 'nope'" in proc.stderr
    assert proc.stderr.count("\n  - ") == 2


def test_one_error_prints_brackets_as_written(repo: Path) -> None:
    proc = run("-r", str(repo), "get", "--features", "customer_stats[x]", "customer_id=1", ok=False)
    assert proc.returncode == 1
    assert "customer_stats[x]" in proc.stderr and "[red]" not in proc.stderr


# ---- --repo after the subcommand -----------------------------------------------------------

@pytest.mark.parametrize("args", [["list"], ["plan"], ["history"], ["describe", "customer_stats"],
                                  ["ingest", "customer_driver"], ["gc"]])
def test_repo_option_after_the_subcommand(repo: Path, tmp_path: Path, args: list[str]) -> None:
    short = run(args[0], "-r", str(repo), *args[1:], cwd=tmp_path)
    long = run(args[0], *args[1:], "--repo", str(repo), cwd=tmp_path)
    if args[0] == "ingest":  # the second run finds nothing new
        assert "customer_driver_v1" in short.stdout and "customer_driver_v1" in long.stdout
    else:
        assert short.stdout == long.stdout


def test_repo_after_the_subcommand_overrides_the_groups(repo: Path, tmp_path: Path) -> None:
    other = make_demo_repo(tmp_path / "other")
    (other / "fstore.yaml").write_text("project: other\n")
    run("-r", str(other), "apply")
    assert "other - registry version 1" in run("-r", str(repo), "list", "-r", str(other)).stdout
    assert "demo - registry version 1" in run("-r", str(other), "list", "-r", str(repo)).stdout
    # the environment's repository is the group's: the subcommand's still wins
    env_proc = subprocess.run([FSTORE, "list", "-r", str(repo)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "FSTORE_REPO": str(other), "COLUMNS": "200"})
    assert "demo - registry version 1" in env_proc.stdout


# ---- nothing cut ---------------------------------------------------------------------------

LONG = "customer_lifetime_spend_statistics_by_merchant_category_and_channel"


def test_list_never_cuts_a_long_view_name(repo: Path) -> None:
    def add(doc: dict) -> None:
        view = dict(find(doc["feature_views"], "customer_stats"), name=LONG)
        doc["feature_views"].append(view)
    edit_defs(repo, add)
    run("-r", str(repo), "apply")
    out = run("-r", str(repo), "list", columns=80).stdout
    assert f"{LONG}_v1" in out
    assert "…" not in out


# ---- fstore get with a repeated key --------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo repository, ingested and materialized; no ttl, so January 2024 is served today.
    Read-only: shared by the module's tests."""
    repo = make_demo_repo(tmp_path_factory.mktemp("served") / "repo")
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_stats").pop("ttl"))
    run("-r", str(repo), "apply")
    run("-r", str(repo), "ingest")
    run("-r", str(repo), "materialize", "2024-01-01", "2024-01-05")
    return repo


def test_get_with_a_repeated_key_reads_one_row_per_value(served: Path) -> None:
    out = run("-r", str(served), "get", "--features", "customer_stats:segment", "--full-feature-names",
              "customer_id=1001", "customer_id=1002", "customer_id=9").stdout
    tables = out.split("customer_id=")[1:]
    assert [t.split()[0] for t in tables] == ["1001", "1002", "9"]
    assert "'gold'" in tables[0] and "'silver'" in tables[1] and "NOT_FOUND" in tables[2]


def test_get_pairs_the_nth_values_of_each_key(served: Path) -> None:
    out = run("-r", str(served), "get", "--service", "fraud_v1", "customer_id=1001", "driver_id=501",
              "customer_id=1003", "driver_id=503").stdout
    assert "customer_id=1001, driver_id=501" in out and "customer_id=1003, driver_id=503" in out
    assert "customer_id=1001, driver_id=503" not in out


def test_get_refuses_keys_given_unequally_often(served: Path) -> None:
    proc = run("-r", str(served), "get", "--service", "fraud_v1", "customer_id=1001", "driver_id=501",
               "customer_id=1003", ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "customer_id 2 time(s), driver_id 1 time(s)" in proc.stderr


# ---- build-dataset follows the extension ---------------------------------------------------

def _entities(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "entities.parquet"
    pq.write_table(pa.table({"customer_id": [1001, 1002], "driver_id": [501, 501],
                             "event_timestamp": pa.array([1704240000_000000] * 2, pa.timestamp("us", tz="UTC"))}),
                   path)
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".arrow", ".ipc", ".feather", ".CSV"])
def test_build_dataset_writes_the_format_its_suffix_names(served: Path, tmp_path: Path, suffix: str) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.feather as pfeather
    import pyarrow.parquet as pq

    out = tmp_path / f"ds{suffix}"
    run("-r", str(served), "build-dataset", "--entities", str(_entities(tmp_path)), "--service", "fraud_v1",
        "--out", str(out))
    data = out.read_bytes()
    readers = {".parquet": pq.read_table, ".csv": pcsv.read_csv, ".feather": pfeather.read_table,
               ".arrow": lambda p: pa.ipc.open_file(p).read_all(), ".ipc": lambda p: pa.ipc.open_file(p).read_all()}
    table = readers[suffix.lower()](out)
    assert table.num_rows == 2 and table.column("avg_amount_7d").to_pylist() == [30.0, 15.75]
    if suffix.lower() != ".parquet":
        assert not data.startswith(b"PAR1")
    assert (tmp_path / f"ds{suffix}.lineage.json").exists()


@pytest.mark.parametrize("name", ["ds.json", "ds", "ds.xlsx"])
def test_build_dataset_refuses_a_suffix_it_does_not_write(served: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    proc = run("-r", str(served), "build-dataset", "--entities", str(_entities(tmp_path)), "--service",
               "fraud_v1", "--out", str(out), ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"cannot write a dataset as {name!r}" in proc.stderr
    assert ".parquet, .csv, .arrow, .ipc, .feather" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(f"*{name}*"))


def test_a_bad_suffix_is_refused_before_the_join(served: Path, tmp_path: Path) -> None:
    """The suffix is checked first: a missing entity file is not even looked at."""
    from fstore import FeatureStore
    from fstore.errors import InvalidArgument

    with FeatureStore(served) as fs, pytest.raises(InvalidArgument, match="ds.json"):
        fs.build_dataset(tmp_path / "no_such_entities.parquet", tmp_path / "ds.json", feature_service="fraud_v1")


def test_plan_prints_a_ttl_change_in_units(repo: Path) -> None:
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_stats").update(ttl="5d"))
    out = run("-r", str(repo), "plan").stdout
    assert "ttl: 7d -> 5d" in out and "604800000000" not in out


# ---- fstore push VIEW FILE -------------------------------------------------------------------

def test_push_a_file_without_a_server(repo: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fstore import FeatureStore

    run("-r", str(repo), "ingest")
    new = tmp_path / "new.parquet"
    pq.write_table(pa.table({"customer_id": [1001, 1002], "driver_id": [501, 777], "trips_together": [40, 41],
                             "ts": pa.array(["2024-02-01T00:00:00", "2024-02-01T00:00:00"])}), new)
    out = run("-r", str(repo), "push", "customer_driver", str(new)).stdout
    assert "customer_driver_v1: 2 of 2 row(s) written online" in out and "offline" not in out
    again = run("-r", str(repo), "push", "customer_driver", str(new)).stdout
    assert "customer_driver_v1: 0 of 2 row(s) written online" in again  # newer-only, as a PUSH
    with FeatureStore(repo) as fs:
        resp = fs.get_online_features(["customer_driver:trips_together"], now="2024-02-02",
                                      entity_rows=[{"customer_id": 1001, "driver_id": 501},
                                                   {"customer_id": 1002, "driver_id": 777}])
        assert resp.values("trips_together") == [40, 41]
        assert fs.offline.manifest(fs.get_feature_view("customer_driver"))["rows"] == 7
    csv = tmp_path / "more.csv"
    csv.write_text("customer_id,driver_id,ts,trips_together\n1003,503,2024-02-02T00:00:00,50\n")
    out = run("-r", str(repo), "push", "customer_driver", str(csv), "--offline").stdout
    assert "1 of 1 row(s) written online" in out and "1 appended to the offline store" in out
    with FeatureStore(repo) as fs:
        assert fs.offline.manifest(fs.get_feature_view("customer_driver"))["rows"] == 8


def test_push_a_file_with_bad_rows_writes_nothing(repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,driver_id,ts,trips_together\n1003,503,,50\n1004,504,2024-02-02T00:00:00,x\n")
    proc = run("-r", str(repo), "push", "customer_driver", str(bad), "--offline", ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "push into customer_driver_v1: 2 bad row(s); nothing was written (rows are numbered from 1)" in proc.stderr
    assert f"{bad} at line 2 (row 1), column 'ts': the event timestamp is null" in proc.stderr
    assert not (repo / "data" / "offline" / "customer_driver_v1").exists()
    assert "Usage" in run("push", "--help").stdout and "--offline" in run("push", "--help").stdout


def test_describe_prints_brackets_in_descriptions_as_written(repo: Path) -> None:
    edit_defs(repo, lambda d: find(d["feature_views"], "customer_stats").update(description="Spend [EUR] per [red]day"))
    run("-r", str(repo), "apply")
    out = run("-r", str(repo), "describe", "customer_stats").stdout
    assert "Spend [EUR] per [red]day" in out
