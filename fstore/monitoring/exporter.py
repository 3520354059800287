"""``fstore monitor``: run the checks on a schedule and serve their latest results on /metrics.

Why a long-running process: skew and drift read Parquet logs and the offline store, which
takes seconds to minutes; Prometheus scrapes every 15-60 s and must get an answer at once,
so the checks run on their own clock and a scrape only reads the latest results. The
monitor also reports on itself (``fstore_check_errors_total``,
``fstore_check_last_success_timestamp_seconds``), so a check that stopped working is an
alert, not a silently frozen gauge. Where a process per host is unwelcome, ``--once
--textfile PATH`` from cron writes the same metrics for node_exporter's textfile collector
(the file is replaced atomically; its age tells how stale it is).
"""
from __future__ import annotations

import errno
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..config import RepoConfig
from ..errors import InvalidArgument, PortInUse
from ..times import now_us, parse_duration
from .checks import CheckContext, LoadedCheck, RunStats, families, load_checks, metric_spec, run_check

log = logging.getLogger("fstore.monitor")


def setup_logging(level: int = logging.INFO) -> None:
    """``fstore monitor`` logs its start and each failed check to stderr (one handler, not added twice)."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s fstore-monitor[%(process)d] %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)


class Monitor:
    """The checks, their latest results and run statistics; a prometheus_client collector."""

    def __init__(self, config: RepoConfig, checks: list[LoadedCheck], window_us: int) -> None:
        if not checks:
            raise InvalidArgument("no checks to run")
        self.config, self.checks, self.window_us = config, checks, window_us
        self.stats = {c.name: RunStats() for c in checks}
        self._owned: dict[Any, str] = {}
        self._lock = threading.Lock()

    def run_once(self, log_failures: bool = True) -> list[str]:
        """Run every check once; the error messages of those that failed (each also logged,
        unless ``log_failures`` is False: ``--once`` prints them itself)."""
        until = now_us()
        context = CheckContext(self.config, until - self.window_us, until)
        failures = []
        for check in self.checks:
            with self._lock:
                message = run_check(check, context, self.stats[check.name], self._owned)
            if message is not None:
                if log_failures:
                    log.error("%s", message)
                failures.append(message)
        return failures

    def collect(self) -> Iterator[Metric]:
        """The metric families, read under the lock (a scrape never sees half a run)."""
        with self._lock:
            fams = families(self.checks, self.stats)
        for name, samples in fams.items():
            kind, labels, doc = metric_spec(name)
            if kind == "counter":
                fam: Metric = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
            else:
                fam = GaugeMetricFamily(name, doc, labels=labels)
            for values, value in samples:
                fam.add_metric([values[k] for k in labels], value)
            yield fam

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry


def monitor_for(repo: str | Path, checks: list[str], window: str) -> Monitor:
    """A Monitor of the repository with the named checks (each loaded now: a missing one is
    an UnknownCheck before anything runs)."""
    window_us = _duration(window, "--window")
    return Monitor(RepoConfig.load(repo), load_checks(checks), window_us)


def run_once(repo: str | Path, checks: list[str], window: str, textfile: str | None) -> tuple[str, list[str]]:
    """``fstore monitor --once``: run the checks once; write the metrics to ``textfile``
    (atomically) or return them as text. Returns (text or "", failures)."""
    monitor = monitor_for(repo, checks, window)
    failures = monitor.run_once(log_failures=False)
    registry = monitor.registry()
    if textfile is None:
        return generate_latest(registry).decode(), failures
    write_to_textfile(textfile, registry)
    return "", failures


def serve_monitor(repo: str | Path, checks: list[str], interval: str, window: str, host: str, port: int,
                  stop: threading.Event | None = None) -> None:
    """``fstore monitor``: serve /metrics on host:port and run the checks every ``interval``
    until SIGTERM or SIGINT (or ``stop`` is set). A run that overruns the interval is
    followed by the next one at once; runs never overlap."""
    interval_s = _duration(interval, "--interval") / 1e6
    monitor = monitor_for(repo, checks, window)
    stop = stop or threading.Event()
    _listen(monitor, host, port)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    log.info("monitor: metrics on http://%s:%s/metrics, checks %s every %s", host, port,
             ", ".join(c.name for c in monitor.checks), interval)
    while not stop.is_set():
        monitor.run_once()
        stop.wait(interval_s)


def _listen(monitor: Monitor, host: str, port: int) -> None:
    try:
        start_http_server(port, addr=host, registry=monitor.registry())
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"monitor port {port} on {host} is in use") from None
        raise InvalidArgument(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _duration(value: str, flag: str) -> int:
    """Microseconds of a positive duration option; InvalidArgument names the flag."""
    try:
        us = parse_duration(value, obj="fstore monitor", field=flag)
    except ValueError:
        us = None
    if not us or us <= 0:
        raise InvalidArgument(f"{flag}: expected a positive duration such as '60s', '5m' or '1h', got {value!r}")
    return us
