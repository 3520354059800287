"""The server's processes: the port it owns, one worker in this process or several spawned
workers sharing its one listening socket under a supervisor that replaces a worker that
dies, the Prometheus endpoint they all report to, and the takeover of a running server's
port (fstore.serving.server is what runs in a worker).

The supervisor binds the port once, without SO_REUSEPORT (fstore.serving.ports), and
passes the listening socket to each worker it spawns: the workers share one accept
queue, and no other process can join the port.
"""
from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import os
import shutil
import signal
import socket
import threading
import time
from typing import Any, Callable

from ..config import RepoConfig
from ..errors import InsecureBind, PortInUse, TakeoverRefused
from ..repo.registry import Registry
from .auth import Tokens
from .log import configured_level, log
from .ports import alive, bind, cannot_bind, control_path, find_holder, in_use, remove_record, write_record
from .server import DRAIN_SECONDS, Limits, serve_socket
from .takeover import ControlServer, Handover
from .tls import TlsFiles

RESTARTS_PER_MINUTE = 5  # worker restarts allowed in any minute; past that, none any more


def run_worker(repo: str, sock: socket.socket, limits: Limits, metrics_dir: str | None, tls: TlsFiles | None,
               ready: Any = None, log_level: int | None = None) -> None:
    """One worker process: the server's listening socket, its own LMDB handle. ``ready`` is
    called (or, a pipe, sent this pid) once it accepts connections."""
    if log_level is not None:
        from .log import setup_logging
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


def serve_repo(repo: str, *, host: str | None = None, port: int | None = None, workers: int | None = None,
               metrics_port: int | None = None, takeover: bool = False, insecure: bool = False,
               tls_cert: str | None = None, tls_key: str | None = None, tls_client_ca: str | None = None) -> None:
    """``fstore serve``: the repository's ``server`` settings, each replaced by its argument when given."""
    from ..monitoring.events import load_listener

    config = RepoConfig.load(repo)
    Registry(config).require()
    conf = config.server
    for spec in conf["listeners"]:  # a listener that cannot load is named here, not in a worker's crash loop
        load_listener(spec)
    serve(str(config.root), host or conf["host"], port if port is not None else conf["port"],
          workers or conf["workers"], metrics_port if metrics_port is not None else conf["metrics_port"],
          Limits.from_settings(conf), tls=TlsFiles.resolve(config, tls_cert, tls_key, tls_client_ca),
          takeover=takeover, insecure=insecure)


def serve(repo: str, host: str, port: int, workers: int = 1, metrics_port: int | None = None,
          limits: Limits | None = None, *, tls: TlsFiles | None = None, takeover: bool = False,
          insecure: bool = False) -> None:
    """Run the server until SIGTERM (or until a server taking over tells it to drain).

    The port is bound here, once; ``workers`` processes (or this one) serve on it, each
    with its own event loop and LMDB handle; metrics are served by this process, from a
    temporary directory removed when the server exits. Raises PortInUse when the port is
    taken (naming the fstore server holding it, if one is recorded), TakeoverRefused,
    InsecureBind for a non-loopback ``host`` without auth tokens (unless ``insecure``),
    and SystemExit(1) when every worker died and none could be restarted."""
    limits = limits or Limits()
    config = RepoConfig.load(repo)
    tokens = Tokens.load(config)  # a missing secret is one clear error here, not one per worker
    _check_exposure(host, tokens, insecure)
    if tls is not None:
        tls.server_context()  # a file that cannot be loaded: said once, here
    version = Registry(config).snapshot().version
    # until the event loop (one worker) or the pool (several) handles SIGTERM: exit through
    # the finally below, which removes the record, the control socket and the metrics directory
    signal.signal(signal.SIGTERM, _exit_on_signal)
    life = Lifecycle(config, host, port, takeover)
    started = (f"serving project {config.project!r} (registry version {version}) on {host}:{port}: "
               f"{max(workers, 1)} worker(s), {tls.describe() if tls else 'no TLS'}, "
               f"{f'{len(tokens)} auth token(s)' if tokens else 'no auth'}"
               + (f", metrics on port {metrics_port}" if metrics_port is not None else ""))
    life.on_ready = lambda: log.info("%s", started)  # once every worker accepts
    metrics_dir = None
    code = 0
    try:
        metrics_dir = _start_metrics(host, metrics_port, life.handover) if metrics_port is not None else None
        if workers <= 1:
            run_worker(repo, life.sock, limits, metrics_dir, tls, life.ready)
        else:
            pool = Workers((repo, life.sock, limits, metrics_dir, tls), metrics_dir, life)
            signal.signal(signal.SIGTERM, pool.stop)  # before any worker starts: none is left behind
            signal.signal(signal.SIGINT, pool.stop)
            code = pool.run(workers)
    finally:
        life.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("stopped (project %r on %s:%s)%s", config.project, host, port, f", exit status {code}" if code else "")
    if code:
        raise SystemExit(code)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _check_exposure(host: str, tokens: Tokens | None, insecure: bool) -> None:
    """Without tokens, anyone who reaches the port may read and PUSH: loopback only, unless ``insecure``."""
    if tokens is not None or is_loopback(host):
        return
    if not insecure:
        raise InsecureBind(f"refusing to listen on {host} without auth tokens: anyone who reaches it could read "
                           f"and PUSH features. Configure server.auth.tokens in fstore.yaml, listen on 127.0.0.1, "
                           f"or pass --insecure")
    log.warning("listening on %s without auth tokens (--insecure): anyone who reaches it can read and PUSH features",
                host)


def _exit_on_signal(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


class Lifecycle:
    """One server's hold on its port: the listening socket (bound here, or handed over by the
    server it takes over from), its runtime record and its control socket."""

    def __init__(self, config: RepoConfig, host: str, port: int, takeover: bool) -> None:
        self.host, self.port, self.project, self.repo = host, port, config.project, str(config.root)
        self.handover: Handover | None = None
        self.on_ready: Callable[[], None] | None = None
        self.announced = False
        self.sock = self._claim(takeover)
        try:
            self.control = ControlServer(control_path(host, port), self.sock, self.repo, self.project)
            if self.handover is None:  # the old server's record stands until we are ready
                write_record(host, port, self.project, self.repo, self.control.path)
        except BaseException:
            self.close()
            raise

    def _claim(self, takeover: bool) -> socket.socket:
        try:
            return bind(self.host, self.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise cannot_bind(self.host, self.port, exc) from None
        holder = find_holder(self.host, self.port)
        same = holder is not None and holder.repo == self.repo and holder.project == self.project
        if holder is None or not takeover:
            hint = "; to replace it without downtime, start this server with --takeover" if same else ""
            raise PortInUse(f"{in_use(self.host, self.port, holder)}{hint}")
        if not same:
            raise TakeoverRefused(f"--takeover: port {self.port} is held by {holder.describe()}, not by a server of "
                                  f"this repository (project {self.project!r}, {self.repo}); a server of another "
                                  f"repository never takes over") from None
        if holder.host != self.host:
            raise TakeoverRefused(f"--takeover: {holder.describe()} listens on {holder.host}:{self.port}, "
                                  f"not {self.host}:{self.port}") from None
        self.handover = Handover.request(holder, self.repo, self.project)
        log.info("takeover: received the listening socket of pid %s on %s:%s", holder.pid, self.host, self.port)
        return self.handover.listening

    def ready(self) -> None:
        """Every worker accepts connections: take over the record and drain the old server, if any."""
        if self.announced:
            return
        self.announced = True
        if self.handover is not None:
            write_record(self.host, self.port, self.project, self.repo, self.control.path)
            self.handover.drain()
        if self.on_ready is not None:
            self.on_ready()

    def stop_listening(self) -> None:
        """Stopping: this process's copy of the listening socket goes (the workers close theirs),
        so connections are refused once no other server holds the port."""
        self.sock.close()

    def close(self) -> None:
        if self.handover is not None and not self.announced:
            self.handover.abort()  # not ready: the old server keeps serving
        control = getattr(self, "control", None)
        if control is not None:
            control.close()
        remove_record(self.host, self.port)
        self.sock.close()


def _start_metrics(host: str, metrics_port: int, handover: Handover | None) -> str:
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
