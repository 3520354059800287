"""The server's processes: the port it owns, one worker in this process or several spawned
workers sharing its one listening socket under a supervisor that replaces a worker that
dies, the Prometheus endpoint they all report to, and the takeover of a running server's
port (fstore.serving.server is what runs in a worker).

The supervisor binds the port once, without SO_REUSEPORT (fstore.serving.ports), and
passes the listening socket to each worker it spawns: the workers share one accept
queue, and no other process can join the port.

This module is the entry (``fstore serve``: ``serve_repo``, ``serve``) and the checks made
once before anything starts; the parts are ``fstore.serving.lifecycle`` (the port, its
record, a takeover), ``fstore.serving.workers`` (the worker processes and their restarts)
and ``fstore.serving.metrics_http`` (the Prometheus endpoint).
"""
from __future__ import annotations

import ipaddress
import shutil
import signal
import socket
from typing import Any

from ..config import RepoConfig
from ..errors import InsecureBind
from ..repo.registry import Registry
from .auth import Tokens
from .lifecycle import Lifecycle
from .log import log
from .metrics_http import start_metrics
from .server import Limits
from .tls import TlsFiles
from .workers import RESTARTS_PER_MINUTE, Workers, run_worker

__all__ = ["RESTARTS_PER_MINUTE", "Lifecycle", "Workers", "is_loopback", "run_worker", "serve", "serve_repo"]


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
        metrics_dir = start_metrics(host, metrics_port, life.handover) if metrics_port is not None else None
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

