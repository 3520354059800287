"""The Prometheus endpoint of a server: one HTTP server in the supervising process, reading
the metrics every worker writes to a shared multiprocess directory.

The directory is made (and ``PROMETHEUS_MULTIPROC_DIR`` set) before any worker starts, so
that each worker's ``fstore.serving.metrics.ServerMetrics`` writes there. A server taking
over another's port starts its endpoint once the old server has exited and freed it.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
import time

from ..errors import PortInUse
from .log import log
from .ports import alive, cannot_bind
from .server import DRAIN_SECONDS
from .takeover import Handover


def start_metrics(host: str, metrics_port: int, handover: Handover | None) -> str:
    """The multiprocess metrics directory, with the HTTP server reading it started (after
    the server taken over from has exited and freed the port, when there is one)."""
    import tempfile

    metrics_dir = tempfile.mkdtemp(prefix="fstore-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported anywhere
    try:
        if handover is None:
            _metrics_http(host, metrics_port, metrics_dir)
        else:
            threading.Thread(target=_metrics_after, args=(handover.holder.pid, host, metrics_port, metrics_dir),
                             name="fstore-metrics-start", daemon=True).start()
    except BaseException:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    return metrics_dir


def _metrics_http(host: str, metrics_port: int, metrics_dir: str) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)
    try:
        start_http_server(metrics_port, addr=host, registry=registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"metrics port {metrics_port} on {host} is in use") from None
        raise cannot_bind(host, metrics_port, exc) from None


def _metrics_after(pid: int, host: str, metrics_port: int, metrics_dir: str) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS + 60
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        _metrics_http(host, metrics_port, metrics_dir)
        log.info("metrics on %s:%s (the server taken over from has exited)", host, metrics_port)
    except Exception as exc:  # noqa: BLE001 - the server serves on; its metrics are said to be missing
        log.error("no metrics endpoint: %s", exc)

