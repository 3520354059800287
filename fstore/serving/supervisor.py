"""The server's processes: one worker in this process, or several spawned workers
sharing the port (SO_REUSEPORT) under a supervisor that replaces a worker that dies;
and the Prometheus endpoint they all report to (fstore.serving.server is what runs in a worker).
"""
from __future__ import annotations

import asyncio
import collections
import os
import shutil
import signal
import sys
import time
from typing import Any

from .server import Limits, make_socket, serve_socket

RESTARTS_PER_MINUTE = 5  # worker restarts allowed in any minute; past that, none any more


def run_worker(repo: str, host: str, port: int, limits: Limits, reuse_port: bool, metrics_dir: str | None,
               ready: Any = None) -> None:
    """One worker process: its own socket on the shared port, its own LMDB handle."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        pass
    metrics = None
    if metrics_dir is not None:
        from .metrics import ServerMetrics  # only now: PROMETHEUS_MULTIPROC_DIR is set
        metrics = ServerMetrics().attach()
    sock = make_socket(host, port, reuse_port)
    asyncio.run(serve_socket(sock, repo, limits, metrics, ready))


def serve(repo: str, host: str, port: int, workers: int = 1, metrics_port: int | None = None,
          limits: Limits | None = None) -> None:
    """Run the server until SIGTERM: ``workers`` processes share the port (SO_REUSEPORT),
    each with its own event loop and LMDB handle; metrics are served by this process,
    from a temporary directory removed when the server exits. Raises SystemExit(1)
    when every worker died and none could be restarted."""
    limits = limits or Limits()
    # until the event loop (one worker) or the pool (several) handles SIGTERM: exit through
    # the finally below, which removes the metrics directory
    signal.signal(signal.SIGTERM, _exit_on_signal)
    metrics_dir = _start_metrics(host, metrics_port) if metrics_port is not None else None
    try:
        if workers <= 1:
            run_worker(repo, host, port, limits, False, metrics_dir)
            return
        pool = Workers((repo, host, port, limits, True, metrics_dir), metrics_dir)
        signal.signal(signal.SIGTERM, pool.stop)  # before any worker starts: none is left behind
        signal.signal(signal.SIGINT, pool.stop)
        code = pool.run(workers)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    if code:
        raise SystemExit(code)


def _exit_on_signal(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def _start_metrics(host: str, metrics_port: int) -> str:
    """The multiprocess metrics directory, with the HTTP server reading it started."""
    import tempfile

    metrics_dir = tempfile.mkdtemp(prefix="fstore-metrics-")
    try:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported anywhere
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        start_http_server(metrics_port, addr=host, registry=registry)
    except BaseException:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    return metrics_dir


class Workers:
    """The worker processes of a multi-worker server, and their supervision.

    Workers are started with spawn (a fresh interpreter: no LMDB handle crosses fork).
    One that exits while the server is not stopping (killed, crashed) is replaced at
    once, so the port keeps its capacity. A worker that dies at start would be
    restarted forever, so past RESTARTS_PER_MINUTE restarts within a minute no worker is
    restarted any more: the others keep serving, and once none is left the server exits
    1 for whatever supervises it (systemd, Kubernetes) to act.
    """

    def __init__(self, args: tuple[Any, ...], metrics_dir: str | None) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.args, self.metrics_dir = args, metrics_dir
        self.procs: list[Any] = []
        self.restarts: collections.deque[float] = collections.deque()
        self.stopping = False
        self.gave_up = False

    def run(self, count: int) -> int:
        """Start ``count`` workers and supervise them until all have exited; the exit status."""
        from multiprocessing.connection import wait

        for _ in range(count):
            self._start()
        while self.procs:
            wait([p.sentinel for p in self.procs], timeout=1.0)
            for p in [p for p in self.procs if p.exitcode is not None]:
                self.procs.remove(p)
                self._exited(p)
        return 1 if self.gave_up and not self.stopping else 0

    def stop(self, _signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT: forward SIGTERM to every worker; none is restarted any more."""
        self.stopping = True
        for p in list(self.procs):
            self._terminate(p)

    def _start(self) -> Any:
        p = self.ctx.Process(target=run_worker, args=self.args, daemon=False)
        p.start()
        self.procs.append(p)
        if self.stopping:  # SIGTERM arrived while it was starting
            self._terminate(p)
        return p

    def _terminate(self, p: Any) -> None:
        if p.pid is not None and p.exitcode is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _exited(self, p: Any) -> None:
        """A worker is gone: forget its live metrics, replace it unless stopping or over budget."""
        p.join()
        if self.metrics_dir is not None:
            from prometheus_client.multiprocess import mark_process_dead
            mark_process_dead(p.pid, self.metrics_dir)
        if self.stopping:
            return
        how = f"killed by {signal.Signals(-p.exitcode).name}" if p.exitcode < 0 else f"exit status {p.exitcode}"
        now = time.monotonic()
        while self.restarts and self.restarts[0] < now - 60:
            self.restarts.popleft()
        if self.gave_up or len(self.restarts) >= RESTARTS_PER_MINUTE:
            self.gave_up = True
            _log(f"fstore: worker {p.pid} exited ({how}); not restarted: workers were restarted "
                 f"{RESTARTS_PER_MINUTE} times within a minute, no more restarts; {len(self.procs)} worker(s) left")
            return
        self.restarts.append(now)
        new = self._start()
        _log(f"fstore: worker {p.pid} exited ({how}); started worker {new.pid} in its place")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
