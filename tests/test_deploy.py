"""deploy/: the Prometheus rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``), and every metric name the rules and the Grafana dashboard use
is exported by a live ``fstore serve --metrics-port`` (its reads logged) or a live
``fstore monitor`` running its built-in checks (freshness, skew and drift over those logs).

promtool comes from Debian's ``prometheus`` package (scripts/test.sh installs it).
"""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from fstore.client import Client
from fstore.errors import FstoreError
from server_util import HOST, REPO_ROOT, Server, free_port, repo_copy
from test_monitor import ENV, MonitorProcess

DEPLOY = REPO_ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "fstore.json"
METRIC = re.compile(r"\bfstore_[a-z0-9_]+")


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool is not installed: run scripts/test.sh, or apt-get install prometheus"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=DEPLOY / "prometheus")


def test_rules_pass_promtool_check() -> None:
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rules_pass_their_unit_tests() -> None:
    proc = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_issue_s_alerts_are_there() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert {"FstoreServingP99OverSLA", "FstoreHitRateLow", "FstoreFreshnessBreached", "FstoreSkewMismatch",
            "FstoreFeatureDrift", "FstoreLogRecordsDropped"} <= alerts


def rule_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {m for g in groups for r in g["rules"] for m in METRIC.findall(r["expr"])}


def dashboard_names() -> set[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if v.get("type") == "query"]
    return {m for e in exprs for m in METRIC.findall(e)}


def test_dashboard_shows_what_the_issue_names() -> None:
    doc = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in doc["panels"]}
    assert {"GET latency percentiles", "Throughput", "Hit rate by status", "Data age against SLA",
            "Skew mismatch rate per feature", "PSI per feature"} <= titles
    names = dashboard_names()
    assert {"fstore_request_seconds_bucket", "fstore_values_total", "fstore_data_age_seconds",
            "fstore_freshness_sla_seconds", "fstore_skew_mismatch_rate", "fstore_drift_psi"} <= names


def scraped(text: str) -> set[str]:
    """Sample names of a /metrics text (histogram buckets, counters' _total, as exposed)."""
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = repo_copy(tmp_path_factory, "deploy")
    project = yaml.safe_load((root / "fstore.yaml").read_text())
    project["monitoring"] = {"logging": {"sample_rate": 1.0, "roll_seconds": 1}}  # every service logged
    (root / "fstore.yaml").write_text(yaml.safe_dump(project))
    srv = Server(root, metrics_port=free_port(), env={"PYTHONPATH": ENV["PYTHONPATH"]})
    try:
        yield srv
    finally:
        srv.stop()


def _traffic(srv: Server) -> None:
    """A read of a service, a read by features, a push and an error: every labelled series appears."""
    now = dt.datetime.now(dt.timezone.utc)
    with Client(HOST, srv.port, timeout=10) as c:
        c.get_online_features(entity_rows=[{"customer_id": 1, "driver_id": 7}, {"customer_id": 2, "driver_id": 0}], feature_service="everything")
        c.get_online_features(["customer_stats:avg_amount_7d"], entity_rows=[{"customer_id": 3}])
        c.push("customer_stats", [{"customer_id": 950_001, "event_timestamp": now, "created_timestamp": None,
                                   "avg_amount_7d": 1.5, "txn_count_7d": 1, "segment": "x"}])
        with pytest.raises(FstoreError):
            c.get_online_features(["no_such_view:x"], entity_rows=[{"customer_id": 1}])


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_every_metric_the_rules_and_dashboard_use_is_live(server: Server, tmp_path: Path) -> None:
    _traffic(server)
    logs = server.repo / "data" / "offline" / "logs" / "everything"
    deadline = time.monotonic() + 20  # the log rolls its files within a second or two
    while not any(logs.glob("date=*/part-*.parquet")):
        assert time.monotonic() < deadline, f"no served-feature log under {logs}"
        time.sleep(0.2)
    mon = MonitorProcess(server.repo, "--interval", "1h")  # the built-in checks
    try:
        deadline = time.monotonic() + 90  # /metrics answers at once; the first run of the checks takes a while
        while True:
            text = mon.metrics()
            done = set(re.findall(r'fstore_check_last_success_timestamp_seconds\{check="(\w+)"\}', text))
            failed = re.findall(r'fstore_check_errors_total\{check="(\w+)"\} [1-9]', text)
            assert not failed, f"checks failed: {failed}\n{text}"
            if {"freshness", "skew", "drift"} <= done:
                break
            assert time.monotonic() < deadline, f"the checks never all ran: {done}\n{text}"
            time.sleep(0.5)
        server_text = _metrics(server.metrics_port)
        names = scraped(text) | scraped(server_text)
    finally:
        mon.stop()
    used = rule_names() | dashboard_names()
    assert used - names == set(), f"used in deploy/ but exported by neither: {sorted(used - names)}\n{server_text}"


