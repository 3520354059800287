"""fstore validate: every rule fires on a crafted repository and stays silent on a clean one
(the demo repository with a ttl on every view, and the quickstart), on real files."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import customer_stats_table, edit_defs, find, make_demo_repo
from fstore import FeatureStore
from fstore.quickstart import write_repository
from fstore.validate.leakage import auc, spearman
from fstore.validate.rules import RULES
from fstore.validate.run import validate_repository

FSTORE = shutil.which("fstore", path=str(Path(sys.executable).parent)) or "fstore"
UTC = dt.timezone.utc


def ready(root: Path) -> Path:
    """Apply and ingest a repository; returns it."""
    fs = FeatureStore(root)
    fs.apply()
    fs.ingest()
    fs.close()
    return root


def clean_repo(root: Path) -> Path:
    """The demo repository with a ttl on every view a service reads, and customer_stats'
    corrections (created up to 2 days after their event) declared as expected: no finding."""
    make_demo_repo(root)
    edit_defs(root, lambda d: (find(d["feature_views"], "customer_driver").update(ttl="30d"),
                               find(d["feature_views"], "customer_stats").update(max_delay="3d")))
    return root


def rules_of(report, rule: str) -> list:
    return [f for f in report.findings if f.rule == rule]


def test_clean_repository_has_no_findings(tmp_path):
    report = validate_repository(ready(clean_repo(tmp_path)))
    assert report.findings == [] and report.ok
    assert report.rules == list(RULES)


def test_quickstart_repository_has_no_findings(tmp_path):
    write_repository(tmp_path, customers=60, days=5)
    report = validate_repository(ready(tmp_path), sample=300)
    assert [f.to_dict() for f in report.findings] == []


def test_l1_late_rows_are_an_error_of_validate(tmp_path):
    """The demo's customer_stats has a correction created a day after its event and a 1h SLA:
    joined on event time, that is leakage (rule L1, fstore.offline.late)."""
    root = make_demo_repo(tmp_path / "repo")
    edit_defs(root, lambda d: find(d["feature_views"], "customer_driver").update(ttl="30d"))
    ready(root)
    out = _run(FSTORE, "-r", str(root), "validate", "--json")
    assert out.returncode == 1, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    [late] = [f for f in doc["findings"] if f["rule"] == "L1"]
    assert (late["severity"], late["view"], late["feature"]) == ("error", "customer_stats_v1", None)
    assert late["rows"] >= 1 and "as_of: created_timestamp" in late["message"]


# ---- SCHEMA ------------------------------------------------------------------------------

def test_schema_reports_plan_errors_and_an_unapplied_repository(tmp_path):
    clean_repo(tmp_path)
    edit_defs(tmp_path, lambda d: find(d["feature_views"], "customer_stats")["features"].append(
        {"name": "no_such_column", "dtype": "float64"}))
    report = validate_repository(tmp_path, rules=["SCHEMA"])
    found = rules_of(report, "SCHEMA")
    assert not report.ok
    missing = [f for f in found if f.feature == "no_such_column"]
    assert missing and missing[0].view == "customer_stats" and "missing from source" in missing[0].message
    assert any("fstore apply" in f.message for f in found)  # nothing applied yet


# ---- PIT ---------------------------------------------------------------------------------

BROKEN_ENGINE = '''
from fstore.offline.engine import LocalEngine


class NoTtlEngine(LocalEngine):
    """An engine with a bug: it ignores the views' ttl."""

    def historical(self, requests, entity_df, event_timestamp_column, progress=None):
        for r in requests:
            r.view = dict(r.view, ttl_us=0)
        return super().historical(requests, entity_df, event_timestamp_column, progress)
'''


def test_pit_agrees_with_the_local_engine(tmp_path):
    report = validate_repository(ready(clean_repo(tmp_path)), sample=500, seed=3, rules=["PIT"])
    assert report.findings == []


def test_pit_catches_an_engine_that_breaks_the_rule(tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken_engine.py").write_text(BROKEN_ENGINE)
    monkeypatch.syspath_prepend(str(plugins))
    root = clean_repo(tmp_path / "repo")
    (root / "fstore.yaml").write_text("project: demo\noffline_store: {engine: 'broken_engine:NoTtlEngine'}\n")
    report = validate_repository(ready(root), sample=60, seed=1, rules=["PIT"])
    found = rules_of(report, "PIT")
    assert not report.ok and found
    assert {f.view for f in found} <= {"customer_stats_v1", "customer_driver_v1"}
    avg = [f for f in found if f.feature == "avg_amount_7d"]
    assert avg and avg[0].severity == "error" and avg[0].rows > 0
    assert "customer_id=" in avg[0].message and "the rule gives 0.0 (no row qualifies" in avg[0].message


# ---- L2 ----------------------------------------------------------------------------------

def test_l2_a_feature_named_as_a_declared_label_and_views_reading_the_label_source(tmp_path):
    clean_repo(tmp_path)
    edit_defs(tmp_path, lambda d: find(d["sources"], "customer_stats_src").update(labels=["txn_count_7d"]))
    report = validate_repository(ready(tmp_path), rules=["L2"])
    found = {f.feature: f for f in rules_of(report, "L2")}
    assert set(found) == {"avg_amount_7d", "txn_count_7d", "segment"}
    assert "name of a label" in found["txn_count_7d"].message
    assert "holds the label" in found["segment"].message
    assert all(f.view == "customer_stats_v1" and f.severity == "error" for f in found.values())


def test_l2_a_label_column_named_as_a_feature(tmp_path):
    root = ready(clean_repo(tmp_path))
    data = root / "train.parquet"
    pq.write_table(pa.table({"customer_id": [1, 2, 3], "segment": [0, 1, 0]}), data)
    found = rules_of(validate_repository(root, dataset=str(data), label="segment", rules=["L2"]), "L2")
    assert [(f.view, f.feature) for f in found] == [("customer_stats_v1", "segment")]


def test_l2_a_declared_label_must_be_a_column_of_its_source(tmp_path):
    clean_repo(tmp_path)
    edit_defs(tmp_path, lambda d: find(d["sources"], "trips_src").update(labels=["is_fraud"]))
    with pytest.raises(Exception, match="label column 'is_fraud' is missing"):
        FeatureStore(tmp_path).plan()


# ---- L3 ----------------------------------------------------------------------------------

def test_auc_and_spearman_by_ranks():
    assert auc(np.array([1.0, 2, 3, 4]), np.array([False, False, True, True])) == 1.0
    assert auc(np.array([4.0, 3, 2, 1]), np.array([False, False, True, True])) == 0.0
    assert auc(np.array([1.0, 1, 1, 1]), np.array([False, True, False, True])) == 0.5
    assert auc(np.array([1.0, 3, 2, 4]), np.array([False, False, True, True])) == 0.75
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 25, 1000])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2, 3]), np.array([3.0, 2, 1])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 1, 1]), np.array([3.0, 2, 1])) is None


def test_l3_warns_on_a_feature_that_separates_the_label(tmp_path):
    root = ready(clean_repo(tmp_path))
    rng = np.random.default_rng(0)
    n = 400
    y = rng.random(n) < 0.3
    data = root / "train.parquet"
    pq.write_table(pa.table({
        "customer_id": np.arange(n), "event_timestamp": pa.array(np.full(n, 1_700_000_000_000_000),
                                                                  pa.timestamp("us", tz="UTC")),
        "leaky": np.where(y, 5.0, 1.0) + rng.random(n) * 0.1, "honest": rng.random(n),
        "amount_rank": rng.random(n), "is_fraud": y}), data)
    found = rules_of(validate_repository(root, dataset=str(data), label="is_fraud", rules=["L3"]), "L3")
    assert [(f.feature, f.severity, f.rows) for f in found] == [("leaky", "warning", n)]
    assert "AUC 1.0000" in found[0].message

    target = rng.normal(size=n)
    pq.write_table(pa.table({"customer_id": np.arange(n), "spend": target, "log_spend": np.exp(target),
                             "noise": rng.random(n)}), data)
    found = rules_of(validate_repository(root, dataset=str(data), label="spend", rules=["L3"]), "L3")
    assert [f.feature for f in found] == ["log_spend"] and "Spearman 1.0000" in found[0].message


# ---- L4 ----------------------------------------------------------------------------------

def test_l4_a_view_without_ttl_that_a_service_reads(tmp_path):
    root = ready(make_demo_repo(tmp_path))  # customer_driver has no ttl, fraud_v1 reads it
    found = rules_of(validate_repository(root, rules=["L4"]), "L4")
    assert [(f.view, f.severity) for f in found] == [("customer_driver_v1", "warning")]
    assert "fraud_v1" in found[0].message


def test_l4_future_events_and_duplicates(tmp_path):
    root = clean_repo(tmp_path)
    table = customer_stats_table()
    future = dt.datetime(2100, 1, 1, tzinfo=UTC)
    extra = pa.table({"customer_id": [1001, 1005], "event_timestamp": [table.column(1)[0].as_py(), future],
                      "created_timestamp": [table.column(2)[0].as_py(), future], "avg_amount_7d": [25.5, 1.0],
                      "txn_count_7d": [99, 1], "segment": ["gold", "bronze"]}).cast(table.schema)
    pq.write_table(pa.concat_tables([table, extra]), root / "data" / "customer_stats.parquet")
    report = validate_repository(ready(root), rules=["L4"])
    found = rules_of(report, "L4")
    assert not report.ok
    dup = [f for f in found if f.severity == "error"]
    assert [(f.view, f.feature, f.rows) for f in dup] == [("customer_stats_v1", "txn_count_7d", 2)]
    assert "1001" in dup[0].message
    ahead = [f for f in found if f.severity == "warning"]
    assert [(f.view, f.rows) for f in ahead] == [("customer_stats_v1", 1)] and "2100-01-01" in ahead[0].message


def test_l4_join_key_dtypes_differ_across_views(tmp_path):
    root = clean_repo(tmp_path)
    for path in (root / "data" / "trips").glob("*.csv"):
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0]] + ["c" + line for line in lines[1:]]) + "\n")
    report = validate_repository(ready(root), rules=["L4"])
    found = rules_of(report, "L4")
    assert [f.severity for f in found] == ["error"] and not report.ok
    assert "'customer_id'" in found[0].message and "customer_driver_v1" in found[0].message


# ---- the command and the pytest plugin --------------------------------------------------------

def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(list(args), capture_output=True, text=True, timeout=180, env=env, cwd=cwd)


def test_cli_json_and_exit_code(tmp_path):
    root = ready(clean_repo(tmp_path / "clean"))
    proc = _run(FSTORE, "-r", str(root), "validate", "--json", "--sample", "50", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "findings": []}

    edit_defs(root, lambda d: find(d["sources"], "customer_stats_src").update(labels=["segment"]))
    FeatureStore(root).apply()
    proc = _run(FSTORE, "-r", str(root), "validate", "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert set(doc["findings"][0]) == {"rule", "severity", "view", "feature", "message", "rows"}
    assert {f["rule"] for f in doc["findings"]} == {"L2"}
    text = _run(FSTORE, "-r", str(root), "validate")
    assert text.returncode == 1 and "error L2" in text.stdout and "validate failed" in text.stdout

    bad = _run(FSTORE, "-r", str(root), "validate", "--label", "is_fraud")
    assert bad.returncode == 1 and "--dataset and --label together" in bad.stderr


def test_pytest_plugin_runs_the_gates_as_tests(tmp_path):
    """The plugin as installed (the pytest11 entry point of pyproject.toml), no -p needed."""
    root = ready(clean_repo(tmp_path / "repo"))
    suite = tmp_path / "suite"
    suite.mkdir()
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
           "-q", "--fstore-repo", str(root), "--fstore-sample", "20"]
    ok = _run(*cmd, cwd=suite)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{len(RULES)} passed" in ok.stdout

    edit_defs(root, lambda d: find(d["sources"], "customer_stats_src").update(labels=["segment"]))
    FeatureStore(root).apply()
    failed = _run(*cmd, cwd=suite)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "fstore-validate[L2]" in failed.stdout and f"{len(RULES) - 1} passed" in failed.stdout
    assert "error L2 customer_stats_v1:segment" in failed.stdout

    plain = _run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                 "-q", cwd=suite)
    assert "no tests ran" in plain.stdout  # without --fstore-repo the plugin adds nothing


def test_ci_example_runs_plan_strict_and_validate_on_pull_requests():
    import yaml

    doc = yaml.safe_load((Path(__file__).parents[1] / "examples" / "ci" / "github-actions.yml").read_text())
    assert "pull_request" in doc[True]  # YAML 1.1 reads the key `on` as true
    runs = " ".join(step.get("run", "") for job in doc["jobs"].values() for step in job["steps"])
    assert "fstore plan --strict" in runs and "fstore validate" in runs
