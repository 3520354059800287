"""``fstore bench`` against a real ``fstore serve`` on 127.0.0.1: closed and open loop, the JSON
report's keys and their consistency, errors and statuses counted, keys from a Parquet file,
SLAs (definitions and command line) and their exit codes, an unreachable or hung server
(exit 2, never a hang), the HTML page, tokens, TLS refused. Every run lasts about a second.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import edit_defs, find
from fstore import FeatureStore
from server_util import FSTORE, HOST, Server, free_port, repo_copy

pytestmark = pytest.mark.timeout(120)

SHORT = ["--duration", "0.6", "--warmup", "0.1", "--connections", "4"]
JSON_KEYS = {"target", "service", "entities_per_request", "connections", "duration_s", "requests", "rps",
             "rows_per_s", "latency_us", "errors", "statuses", "sla", "server_cpu_us_per_request"}
FRAUD_VALUES = 2  # fraud_v1: customer_stats:avg_amount_7d and customer_driver's one feature


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return repo_copy(tmp_path_factory, "bench")


def bench(repo: Path, port: int, *args: str, env: dict[str, str] | None = None,
          timeout: float = 60) -> tuple[int, dict[str, Any] | None, str]:
    """``fstore -r REPO bench --port P ARGS --json``: (exit code, the report or None, stderr)."""
    out = subprocess.run([FSTORE, "-r", str(repo), "bench", "--host", HOST, "--port", str(port), *args, "--json"],
                         capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    doc = json.loads(out.stdout) if out.stdout.strip() else None
    return out.returncode, doc, out.stderr


def test_closed_loop_report(server: Server, repo: Path) -> None:
    code, doc, err = bench(repo, server.port, "--service", "fraud_v1", *SHORT)
    assert code == 0, err
    assert JSON_KEYS <= set(doc), JSON_KEYS - set(doc)
    assert doc["target"] == f"{HOST}:{server.port}" and doc["service"] == "fraud_v1" and doc["system"] == "fstore"
    assert doc["loop"] == "closed" and doc["connections"] == 4 and doc["entities_per_request"] == 1
    assert doc["requests"] > 0 and doc["errors"] == {}
    assert doc["rps"] == pytest.approx(doc["requests"] / doc["duration_s"], rel=0.01)
    assert doc["rows_per_s"] == pytest.approx(doc["rps"])
    lat = doc["latency_us"]
    assert set(lat) == {"p50", "p90", "p99", "p999", "max"}
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"] * 1.01
    # every value of every measured reply has its status counted: 2 features x 1 entity each
    assert sum(doc["statuses"].values()) == doc["requests"] * FRAUD_VALUES
    assert set(doc["statuses"]) == {"PRESENT", "NOT_FOUND", "EXPIRED", "DEFAULTED", "COMPUTED"}
    assert doc["statuses"]["PRESENT"] > 0  # keys drawn from the online store: rows exist
    assert doc["sla"] == {"p99_ms": None, "min_rps": None, "met": None, "source": None, "missed": []}
    # the server runs here: its process found by its listening socket, its CPU measured
    assert server.proc.pid in doc["server_pids"]
    assert doc["server_cpu_us_per_request"] is not None and doc["server_cpu_us_per_request"] >= 0
    assert sum(row["requests"] for row in doc["timeline"]) == doc["requests"]


def test_open_loop_sends_at_the_rate_and_many_entities_per_request(server: Server, repo: Path) -> None:
    code, doc, err = bench(repo, server.port, "--service", "everything", "--entities", "10", "--rate", "300",
                           "--duration", "1", "--warmup", "0.2", "--connections", "3")
    assert code == 0, err
    assert doc["loop"] == "open" and doc["rate"] == 300
    # due times start + k / rate: 300 of them in the measured second, all answered but those cut by the end
    assert 200 <= doc["requests"] <= 301, doc["requests"]  # never more than were due; a closed loop sends thousands
    assert doc["rows_per_s"] == pytest.approx(doc["rps"] * 10)
    with FeatureStore(repo) as fs:
        per_row = len(fs.get_online_features(feature_service="everything",
                                             entity_rows=[{"customer_id": 1, "driver_id": 7}]).feature_names)
    assert sum(doc["statuses"].values()) == doc["requests"] * 10 * per_row


def test_the_open_loop_counts_a_stall_in_full(server: Server, repo: Path) -> None:
    """A server stopped for 0.4 s: the requests due meanwhile wait for it, and their latency runs
    from their due time, so the tail shows the stall (no coordinated omission)."""
    proc = subprocess.Popen([FSTORE, "-r", str(repo), "bench", "--host", HOST, "--port", str(server.port),
                             "--service", "fraud_v1", "--rate", "200", "--duration", "1.5", "--warmup", "0.1",
                             "--connections", "2", "--json"], stdout=subprocess.PIPE, text=True)
    try:
        _wait_for_connections(server, 2)
        time.sleep(0.5)  # past the warm-up, within the measured 1.5 s
        os.kill(server.proc.pid, signal.SIGSTOP)
        time.sleep(0.4)
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    out, _ = proc.communicate(timeout=60)
    doc = json.loads(out)
    assert proc.returncode == 0 and doc["errors"] == {}
    # ~80 of ~300 requests were due during the stall: more than 1 % waited 100 ms or more
    assert doc["latency_us"]["p99"] >= 100_000 and doc["latency_us"]["max"] >= 300_000, doc["latency_us"]


def test_an_unknown_feature_is_sent_and_its_error_code_counted(server: Server, repo: Path) -> None:
    code, doc, err = bench(repo, server.port, "--features", "customer_stats:nope", *SHORT)
    assert code == 0, err  # no SLA: the run is reported
    assert doc["requests"] == 0 and doc["latency_us"]["p99"] is None
    assert set(doc["errors"]) == {"UNKNOWN_OBJECT"} and doc["errors"]["UNKNOWN_OBJECT"] > 0
    assert any("refuses this request" in n for n in doc["notes"])
    code, doc, err = bench(repo, server.port, "--features", "customer_stats:nope", "--sla-min-rps", "1", *SHORT)
    assert code == 1 and doc["sla"]["met"] is False
    assert any("failed" in m for m in doc["sla"]["missed"])


def test_keys_from_a_parquet_file_that_miss_are_counted_by_status(server: Server, repo: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.parquet"
    pq.write_table(pa.table({"customer_id": pa.array(range(800_000, 800_050), pa.int64()),
                             "note": ["x"] * 50}), keys)
    code, doc, err = bench(repo, server.port, "--features", "customer_stats:txn_count_7d,customer_stats:avg_amount_7d",
                           "--keys", str(keys), "--entities", "3", *SHORT)
    assert code == 0, err
    n = doc["requests"] * 3
    # no row: txn_count_7d has no default (NOT_FOUND), avg_amount_7d has one (DEFAULTED)
    assert doc["statuses"] == {"PRESENT": 0, "NOT_FOUND": n, "EXPIRED": 0, "DEFAULTED": n, "COMPUTED": 0}
    assert doc["hit_rate"] == 0 and doc["keys"]["source"] == str(keys)


def test_a_keys_file_without_a_join_key_names_the_file_and_column(server: Server, repo: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.parquet"
    pq.write_table(pa.table({"customer_id": [1, 2]}), keys)
    code, doc, err = bench(repo, server.port, "--service", "fraud_v1", "--keys", str(keys), *SHORT)
    assert code == 2 and doc is None
    assert str(keys) in err and "'driver_id'" in err and len(err.strip().splitlines()) == 1, err
    pq.write_table(pa.table({"customer_id": ["a", "b"], "driver_id": [1, 2]}), keys)
    code, _, err = bench(repo, server.port, "--service", "fraud_v1", "--keys", str(keys), *SHORT)
    assert code == 2 and "'customer_id'" in err and "int64" in err, err


def test_sla_exit_codes_and_overrides(server: Server, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    code, doc, _ = bench(repo, server.port, "--service", "fraud_v1", "--sla-p99-ms", "0.000001", *SHORT)
    assert code == 1 and doc["sla"]["met"] is False and doc["sla"]["source"] == "command line"
    assert any(m.startswith("p99 ") for m in doc["sla"]["missed"])
    code, doc, _ = bench(repo, server.port, "--service", "fraud_v1", "--sla-p99-ms", "60000", "--sla-min-rps", "1",
                         *SHORT)
    assert code == 0 and doc["sla"] == {"p99_ms": 60000, "min_rps": 1, "met": True, "source": "command line",
                                        "missed": []}
    # the service's own SLA, from the definitions of a copy of the repository (same data)
    defined = repo_copy(tmp_path_factory, "bench_sla")
    edit_defs(defined, lambda d: find(d["feature_services"], "fraud_v1").__setitem__(
        "sla", {"p99_ms": 0.000001, "min_rps": 1}))
    with FeatureStore(defined) as fs:
        fs.apply()
    code, doc, _ = bench(defined, server.port, "--service", "fraud_v1", *SHORT)
    assert code == 1 and doc["sla"]["p99_ms"] == 0.000001 and doc["sla"]["source"] == "definitions"
    code, doc, _ = bench(defined, server.port, "--service", "fraud_v1", "--sla-p99-ms", "60000", *SHORT)
    assert code == 0 and doc["sla"] == {"p99_ms": 60000, "min_rps": 1, "met": True,
                                        "source": "definitions + command line", "missed": []}


@pytest.mark.parametrize("sla, problem", [
    ({"p99_ms": 0}, "sla.p99_ms: p99_ms must be a positive number"),
    ({"min_rps": "fast"}, "sla.min_rps: min_rps must be a positive number"),
    ({"p99_ms": True}, "sla.p99_ms"),
    ({"p95_ms": 2}, "sla.p95_ms: unknown setting 'p95_ms'; known: p99_ms, min_rps"),
    ({}, "expected a mapping such as"),
    ([2], "expected a mapping such as"),
])
def test_a_service_sla_is_checked_like_its_other_fields(sla: Any, problem: str) -> None:
    from fstore import FeatureService
    from fstore.errors import InvalidDefinition

    with pytest.raises(InvalidDefinition) as err:
        FeatureService(name="s", features=["v:f"], sla=sla)
    assert problem in str(err.value) and "feature_service s" in str(err.value)
    assert FeatureService(name="s", features=["v:f"], sla={"min_rps": 10, "p99_ms": 2.5}).to_dict()["sla"] == \
        {"p99_ms": 2.5, "min_rps": 10}
    assert "sla" not in FeatureService(name="s", features=["v:f"]).to_dict()  # registries applied before read the same


def test_describe_and_plan_show_a_service_sla(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = repo_copy(tmp_path_factory, "bench_describe")
    edit_defs(root, lambda d: find(d["feature_services"], "fraud_v1").__setitem__("sla", {"p99_ms": 2, "min_rps": 10000}))
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    plan = subprocess.run([FSTORE, "-r", str(root), "plan"], capture_output=True, text=True, env=env, timeout=60)
    assert "~ feature service fraud_v1" in plan.stdout and "sla: None -> {'p99_ms': 2, 'min_rps': 10000}" in plan.stdout
    subprocess.run([FSTORE, "-r", str(root), "apply"], check=True, capture_output=True, timeout=60)
    shown = subprocess.run([FSTORE, "-r", str(root), "describe", "fraud_v1"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert "p99 <= 2 ms, >= 10,000 req/s" in shown.stdout, shown.stdout


def test_an_unreachable_server_is_exit_2_naming_it(repo: Path) -> None:
    port = free_port()
    code, doc, err = bench(repo, port, "--service", "fraud_v1", *SHORT)
    assert code == 2 and doc is None
    assert f"{HOST}:{port}" in err and len(err.strip().splitlines()) == 1, err


def test_a_hung_server_is_exit_2_or_timeouts_never_a_hang(server: Server, repo: Path) -> None:
    """Hung before the run (HELLO unanswered): exit 2 naming it. Hung during the run: each
    connection's request times out, the connection is dropped and counted, the run ends."""
    os.kill(server.proc.pid, signal.SIGSTOP)  # connections are accepted by the kernel, nothing is answered
    try:
        start = time.monotonic()
        code, doc, err = bench(repo, server.port, "--service", "fraud_v1", *SHORT, "--timeout", "0.5", timeout=30)
        assert time.monotonic() - start < 20
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert code == 2 and doc is None and f"{HOST}:{server.port}" in err, err

    proc = subprocess.Popen([FSTORE, "-r", str(repo), "bench", "--host", HOST, "--port", str(server.port),
                             "--service", "fraud_v1", "--duration", "3", "--warmup", "0", "--connections", "2",
                             "--timeout", "0.3", "--json"], stdout=subprocess.PIPE, text=True)
    try:
        _wait_for_connections(server, 2)  # the bench is past its set-up (keys, frames) and greeted
        time.sleep(0.5)
        os.kill(server.proc.pid, signal.SIGSTOP)
        out, _ = proc.communicate(timeout=30)  # ends once both connections timed out, before its 3 s
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        proc.kill()
    doc = json.loads(out)
    assert proc.returncode == 0 and doc["requests"] > 0  # answered before the stall; no SLA set
    assert doc["errors"] == {"TIMEOUT": 2} and doc["lost_connections"] == 2 and doc["duration_s"] < 3


def _wait_for_connections(server: Server, n: int, timeout: float = 30) -> None:
    """Until the (one-worker) server holds ``n`` established client connections."""
    deadline = time.monotonic() + timeout
    while sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
              for c in psutil.Process(server.proc.pid).net_connections("tcp")) < n:
        assert time.monotonic() < deadline, "the bench never connected"
        time.sleep(0.05)


def test_threads_html_and_the_python_api(server: Server, repo: Path, tmp_path: Path) -> None:
    page = tmp_path / "bench.html"
    code, doc, err = bench(repo, server.port, "--service", "fraud_v1", "--threads", "2", "--html", str(page), *SHORT)
    assert code == 0 and doc["threads"] == 2 and doc["requests"] > 0, err
    text = page.read_text()
    assert text.count("<svg") == 2 and "<script" not in text and "src=" not in text
    assert "Latency over time" in text and "Latency by percentile" in text and f"{HOST}:{server.port}" in text

    from fstore.bench import BenchResult, run
    result = run(repo, port=server.port, features=["customer_stats:segment"], connections=2, duration=0.3,
                 warmup=0.05, sla_min_rps=1)
    assert isinstance(result, BenchResult) and result.met is True and result.requests > 0
    assert result.to_json()["features"] == ["customer_stats:segment"] and result.to_json()["service"] is None


def test_an_unknown_model_or_service_is_exit_2(server: Server, repo: Path) -> None:
    code, _, err = bench(repo, server.port, "--model", "nope", *SHORT)
    assert code == 2 and "nope" in err
    code, _, err = bench(repo, server.port, "--service", "nope", *SHORT)
    assert code == 2 and "unknown feature service 'nope'" in err
    code, _, err = bench(repo, server.port, "--service", "fraud_v1", "--features", "customer_stats", *SHORT)
    assert code == 2 and "exactly one" in err


def test_tls_is_refused_with_a_clear_error(server: Server, repo: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not used")
    code, _, err = bench(repo, server.port, "--service", "fraud_v1", "--tls-ca", str(ca), *SHORT)
    assert code == 2 and "plain TCP" in err


def test_a_token_from_the_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    tokens = [{"name": "reader", "scopes": ["read"], "secret_env": "FSTORE_T_BENCH"}]
    root = repo_copy(tmp_path_factory, "bench_auth", {"auth": {"tokens": tokens}})
    srv = Server(root, env={"FSTORE_T_BENCH": "s3cret-b3nch"}, client={"token": "s3cret-b3nch"})
    try:
        code, doc, err = bench(root, srv.port, "--service", "fraud_v1", "--token-env", "BENCH_TOKEN", *SHORT,
                               env={"BENCH_TOKEN": "s3cret-b3nch"})
        assert code == 0 and doc["requests"] > 0 and doc["errors"] == {}, err
        code, _, err = bench(root, srv.port, "--service", "fraud_v1", *SHORT)
        assert code == 2 and "refused HELLO" in err and f"{HOST}:{srv.port}" in err, err
        assert "s3cret" not in err
    finally:
        srv.stop()


def test_a_model_is_benched_through_its_service(server: Server, repo: Path, tmp_path: Path) -> None:
    """--model NAME: requests name the model (the server resolves it to its production version's
    service), keys and the SLA are those of that service."""
    import datetime as dt

    entities = tmp_path / "entities.parquet"
    pq.write_table(pa.table({"customer_id": [1, 2, 3], "driver_id": [7, 7, 501],
                             "event_timestamp": pa.array([dt.datetime.now(dt.timezone.utc)] * 3,
                                                         pa.timestamp("us", tz="UTC"))}), entities)
    with FeatureStore(repo) as fs:
        fs.build_dataset(str(entities), tmp_path / "train.parquet", feature_service="fraud_v1")
        fs.models.register("fraud_model", tmp_path / "train.parquet")
        fs.models.promote("fraud_model", 1, "production")
    time.sleep(1.1)  # the server looks at its registry once a second (fstore.repo.registry.RECHECK_SECONDS)
    code, doc, err = bench(repo, server.port, "--model", "fraud_model", *SHORT)
    assert code == 0 and doc["errors"] == {}, (doc, err)
    assert doc["model"] == "fraud_model" and doc["service"] == "fraud_v1" and doc["requests"] > 0
    assert sum(doc["statuses"].values()) == doc["requests"] * FRAUD_VALUES
