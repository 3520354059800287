"""The worker processes of a multi-worker server, and the supervision that replaces a dead one.

``run_worker`` is what runs in a worker (or in the server's own process when it has one):
its own event loop (uvloop) and LMDB handle, serving the listening socket it was given
(fstore.serving.server). ``Workers`` spawns and watches several; see its docstring for the
restart budget.
"""
from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import time
from typing import Any

from .lifecycle import Lifecycle
from .log import configured_level, log, setup_logging
from .server import Limits, serve_socket
from .tls import TlsFiles

RESTARTS_PER_MINUTE = 5  # worker restarts allowed in any minute; past that, none any more


def run_worker(repo: str, sock: socket.socket, limits: Limits, metrics_dir: str | None, tls: TlsFiles | None,
               ready: Any = None, log_level: int | None = None) -> None:
    """One worker process: the server's listening socket, its own LMDB handle. ``ready`` is
    called (or, a pipe, sent this pid) once it accepts connections."""
    if log_level is not None:
        setup_logging(log_level)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
        pass
    metrics = None
    if metrics_dir is not None:
        from .metrics import ServerMetrics  # only now: PROMETHEUS_MULTIPROC_DIR is set
        metrics = ServerMetrics().attach()
    notify = ready if ready is None or callable(ready) else (lambda: ready.send(os.getpid()))
    asyncio.run(serve_socket(sock, repo, limits, metrics, notify, tls))


class Workers:
    """The worker processes of a multi-worker server, and their supervision.

    Workers are started with spawn (a fresh interpreter: no LMDB handle crosses fork),
    each given the server's listening socket and a pipe to say it is ready. One that exits
    while the server is not stopping (killed, crashed) is replaced at once, so the port
    keeps its capacity. A worker that dies at start would be restarted forever, so past
    RESTARTS_PER_MINUTE restarts within a minute no worker is restarted any more: the
    others keep serving, and once none is left the server exits 1 for whatever supervises
    it (systemd, Kubernetes) to act.
    """

    def __init__(self, args: tuple[Any, ...], metrics_dir: str | None, life: Lifecycle | None = None) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.ready_in, ready_out = self.ctx.Pipe(duplex=False)
        self.args = (*args, ready_out, configured_level())
        self.metrics_dir, self.life = metrics_dir, life
        self.procs: list[Any] = []
        self.ready: set[int] = set()
        self.restarts: collections.deque[float] = collections.deque()
        self.stopping = False
        self.stop_started = 0.0
        self.gave_up = False

    def run(self, count: int) -> int:
        """Start ``count`` workers and supervise them until all have exited; the exit status."""
        from multiprocessing.connection import wait

        for _ in range(count):
            self._start()
        while self.procs:
            wait([p.sentinel for p in self.procs] + [self.ready_in], timeout=1.0)
            while self.ready_in.poll():
                self.ready.add(self.ready_in.recv())
            if self.life is not None and not self.stopping and \
                    len(self.ready & {p.pid for p in self.procs}) >= count:
                self.life.ready()
            for p in [p for p in self.procs if p.exitcode is not None]:
                self.procs.remove(p)
                self._exited(p)
        if self.stopping:
            log.info("all workers drained in %.2f s", time.monotonic() - self.stop_started)
        return 1 if self.gave_up and not self.stopping else 0

    def stop(self, _signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT: forward SIGTERM to every worker; none is restarted any more."""
        if not self.stopping:
            self.stop_started = time.monotonic()
            if self.life is not None:
                self.life.stop_listening()
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
        self.ready.discard(p.pid)
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
            log.error("worker %s exited (%s); not restarted: workers were restarted %s times within a minute, "
                      "no more restarts; %s worker(s) left", p.pid, how, RESTARTS_PER_MINUTE, len(self.procs))
            return
        self.restarts.append(now)
        new = self._start()
        log.warning("worker %s exited (%s); started worker %s in its place", p.pid, how, new.pid)
