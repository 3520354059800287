"""The fstore command, run as people run it: the installed entry point in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

FSTORE = shutil.which("fstore", path=str(Path(sys.executable).parent)) or "fstore"


def run(*args: str, cwd: Path | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([FSTORE, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    if ok:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("qs") / "repo"
    proc = run("quickstart", str(root), "--customers", "300", "--days", "10")
    assert "training set" in proc.stdout
    return root


def test_quickstart_builds_a_dataset_with_lineage(quickstart):
    out = quickstart / "datasets" / "fraud_v1.parquet"
    table = pq.read_table(out)
    assert table.num_rows == 600
    assert {"avg_amount_7d", "txn_count_7d", "trips_together", "is_fraud"} <= set(table.column_names)
    lineage = json.loads((out.parent / "fraud_v1.parquet.lineage.json").read_text())
    assert lineage["feature_service"] == "fraud_v1"
    assert {v["view"] for v in lineage["views"]} == {"customer_stats_v1", "customer_driver_v1"}


def test_list_describe_history(quickstart):
    listed = run("-r", str(quickstart), "list").stdout
    assert "customer_stats_v1" in listed and "fraud_v1" in listed and "risk-team@example.com" in listed
    described = run("-r", str(quickstart), "describe", "customer_stats").stdout
    for text in ("risk-team@example.com", "7d", "1h", "customer_id", "Rolling customer spend statistics",
                 "avg_amount_7d", "team"):
        assert text in described
    assert "customer_id" in run("-r", str(quickstart), "describe", "customer").stdout
    assert "1" in run("-r", str(quickstart), "history").stdout


def test_plan_apply_ingest_are_idempotent(quickstart):
    assert "no changes" in run("-r", str(quickstart), "plan").stdout
    out = run("-r", str(quickstart), "ingest").stdout
    assert "customer_stats_v1" in out and "rows" in out
    # nothing new: zero files read, by every view (the table's rows; a transformation's mode is
    # explained on a line of its own)
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    assert {r[0] for r in rows} == {"customer_stats_v1", "customer_driver_v1", "driver_trips_v1", "driver_fares_v1"}
    assert all(r[1] == "0" for r in rows), out


def test_build_dataset_command(quickstart, tmp_path):
    out = tmp_path / "ds.parquet"
    run("-r", str(quickstart), "build-dataset", "--entities", str(quickstart / "data" / "rides_to_score.parquet"),
        "--features", "customer_stats:segment,customer_driver", "--full-feature-names", "--out", str(out))
    cols = pq.read_table(out).column_names
    assert cols[-2:] == ["customer_stats__segment", "customer_driver__trips_together"]
    assert (tmp_path / "ds.parquet.lineage.json").exists()
    bad = run("-r", str(quickstart), "build-dataset", "--entities", str(out), "--out", str(out), ok=False)
    assert bad.returncode != 0 and "exactly one of --features or --service" in bad.stderr


def test_errors_are_one_clear_message_not_a_traceback(quickstart, tmp_path):
    repo = tmp_path / "broken"
    shutil.copytree(quickstart, repo, ignore=shutil.ignore_patterns("offline", "registry*"))
    defs = repo / "features" / "defs.yaml"
    defs.write_text(defs.read_text().replace("ttl: 7d", "ttl: 7x").replace("source: trips_src", "source: nope"))
    proc = run("-r", str(repo), "plan", ok=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "features/defs.yaml" in proc.stderr and "customer_stats" in proc.stderr and "ttl" in proc.stderr
    assert "unknown source 'nope'" in proc.stderr
    missing = run("-r", str(tmp_path / "nowhere"), "list", ok=False)
    assert missing.returncode == 1 and "fstore.yaml" in missing.stderr
