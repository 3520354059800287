"""``fstore monitor``: checks (plug-ins in tests/plugins/stub_checks.py) run by the real
command, their latest results exported as Prometheus metrics: printed or written to a
textfile once, or served on /metrics by the long-running monitor."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fstore.monitoring.checks import BUILTIN_CHECKS, MONITOR_METRICS, RUN_METRICS
from server_util import FSTORE, HOST, REPO_ROOT, free_port

PLUGINS = str(Path(__file__).resolve().parent / "plugins")
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1",
       "PYTHONPATH": os.pathsep.join([PLUGINS, str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitor") / "repo"
    root.mkdir()
    (root / "fstore.yaml").write_text("project: monitored\n")
    return root


def monitor(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, "-r", str(repo), "monitor", *args], capture_output=True, text=True,
                          timeout=60, env=ENV, cwd=REPO_ROOT)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_once_prints_every_sample_a_check_returned(repo: Path) -> None:
    proc = monitor(repo, "--once", "--check", "stub_checks:everything", "--window", "2h")
    assert proc.returncode == 0, proc.stderr
    got = samples(proc.stdout)
    assert got[("fstore_skew_mismatch_rate", (("against", "offline"), ("feature", "avg_amount_7d"),
                                              ("service", "fraud_v1")))] == 0.25
    assert got[("fstore_skew_rows", (("against", "offline"), ("service", "fraud_v1")))] == 7200  # the window, seconds
    assert got[("fstore_drift_level", (("feature", "avg_amount_7d"), ("service", "fraud_v1")))] == 2
    assert got[("fstore_freshness_breached", (("view", "customer_stats_v1"),))] == 0
    assert got[("fstore_check_errors_total", (("check", "stub_checks:everything"),))] == 0
    last = got[("fstore_check_last_success_timestamp_seconds", (("check", "stub_checks:everything"),))]
    assert abs(last - time.time()) < 600
    assert {name for name, _ in got} >= set(MONITOR_METRICS) | set(RUN_METRICS)


def test_textfile_holds_what_succeeded_and_a_failure_exits_1(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "fstore.prom"
    proc = monitor(repo, "--once", "--textfile", str(out), "--check", "stub_checks:everything",
                   "--check", "stub_checks:failing")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "check 'stub_checks:failing': RuntimeError: the offline store is unreachable" in proc.stderr
    got = samples(out.read_text())
    assert got[("fstore_check_errors_total", (("check", "stub_checks:failing"),))] == 1
    assert ("fstore_check_last_success_timestamp_seconds", (("check", "stub_checks:failing"),)) not in got
    assert got[("fstore_drift_psi", (("feature", "avg_amount_7d"), ("service", "fraud_v1")))] == 0.3
    assert [p.name for p in tmp_path.iterdir()] == ["fstore.prom"]  # written aside and renamed


@pytest.mark.parametrize("check, message", [
    ("stub_checks:unknown_metric", "check 'stub_checks:unknown_metric': unknown metric 'fstore_made_up'"),
    ("stub_checks:wrong_labels", "metric 'fstore_drift_psi' needs the string labels service, feature"),
    ("stub_checks:not_a_number", "metric 'fstore_drift_psi' {'service': 'fraud_v1', 'feature': 'x'}: not a number: 'high'"),
    ("stub_checks:twice", "metric 'fstore_drift_level' {'service': 's', 'feature': 'x'} returned twice"),
    ("stub_checks:same_series", "metric 'fstore_freshness_breached' {'view': 'customer_stats_v1'} is already "
                                "exported by check 'stub_checks:everything'"),
])
def test_bad_samples_fail_the_check_naming_the_metric(repo: Path, check: str, message: str) -> None:
    proc = monitor(repo, "--once", "--check", "stub_checks:everything", "--check", check)
    assert proc.returncode == 1
    assert message in proc.stderr
    got = samples(proc.stdout)
    assert got[("fstore_check_errors_total", (("check", check),))] == 1
    assert not any(name == "fstore_made_up" for name, _ in got)


@pytest.mark.parametrize("check, message", [
    ("no_such_module:check", "check 'no_such_module:check': no module 'no_such_module' is installed"),
    ("stub_checks:nope", "check 'stub_checks:nope': module 'stub_checks' has no 'nope'"),
    ("stub_checks:not_callable", "check 'stub_checks:not_callable': stub_checks:not_callable is not callable"),
    ("bogus", "check 'bogus': expected one of freshness, skew, drift or 'module:callable'"),
])
def test_a_check_that_cannot_load_stops_the_monitor_before_it_runs(repo: Path, check: str, message: str) -> None:
    proc = monitor(repo, "--once", "--check", "stub_checks:everything", "--check", check)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert proc.stdout == ""


def test_bad_options_are_named(repo: Path, tmp_path: Path) -> None:
    proc = monitor(repo, "--textfile", str(tmp_path / "x.prom"), "--check", "stub_checks:everything")
    assert proc.returncode == 2 and "--textfile needs --once" in proc.stderr
    proc = monitor(repo, "--once", "--window", "soon", "--check", "stub_checks:everything")
    assert proc.returncode == 1 and "--window: expected a positive duration" in proc.stderr
    proc = monitor(repo, "--interval", "0s", "--check", "stub_checks:everything")
    assert proc.returncode == 1 and "--interval: expected a positive duration" in proc.stderr
    assert set(BUILTIN_CHECKS) == {"freshness", "skew", "drift"}


class MonitorProcess:
    """``fstore monitor`` serving /metrics in its own process group; ``stop`` kills what is left."""

    def __init__(self, repo: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen([FSTORE, "-r", str(repo), "monitor", "--host", HOST, "--port", str(self.port),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=ENV, cwd=REPO_ROOT, start_new_session=True)

    def metrics(self, timeout: float = 30) -> str:
        """The /metrics text, once it answers (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/metrics", timeout=5) as resp:
                    return resp.read().decode()
            except OSError:
                assert self.proc.poll() is None, self.proc.communicate()
                assert time.monotonic() < deadline, "the monitor never served /metrics"
                time.sleep(0.1)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.communicate(timeout=10)


@pytest.fixture
def served(repo: Path) -> Iterator[MonitorProcess]:
    mon = MonitorProcess(repo, "--interval", "0.2s", "--check", "stub_checks:Counting",
                         "--check", "stub_checks:failing")
    try:
        yield mon
    finally:
        mon.stop()


def test_monitor_reruns_the_checks_and_serves_the_latest(served: MonitorProcess) -> None:
    key = ("fstore_skew_rows", (("against", "logged"), ("service", "counting")))
    runs: list[float] = []
    for _ in range(300):  # bounded: until the stateful check has run three times
        got = samples(served.metrics())
        runs.append(got[key])
        if got[key] >= 3:
            break
        time.sleep(0.1)
    assert runs[-1] >= 3 and runs == sorted(runs), runs
    assert got[("fstore_check_errors_total", (("check", "stub_checks:failing"),))] >= 3
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(15) == 0
    assert "the offline store is unreachable" in served.proc.stderr.read()


def test_monitor_port_in_use_is_named(repo: Path) -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = s.getsockname()[1]
        proc = monitor(repo, "--port", str(port), "--host", HOST, "--check", "stub_checks:everything")
    assert proc.returncode == 1
    assert f"monitor port {port} on {HOST} is in use" in proc.stderr




def test_the_cli_does_not_import_prometheus_client() -> None:
    """``fstore serve`` sets PROMETHEUS_MULTIPROC_DIR after the CLI is imported; a
    prometheus_client imported before that would serve empty metrics."""
    code = "import sys, fstore.cli; assert 'prometheus_client' not in sys.modules, 'imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
