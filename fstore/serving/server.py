"""The feature server: an asyncio (uvloop) TCP server speaking docs/protocol.md.

This module is what runs in one worker: the serve loop with its graceful drain, and the
timers (idle connections, gauges). The state every connection shares (``ServerState``) is
fstore.serving.state, a connection's requests are handled in fstore.serving.connection,
PUSH groups in fstore.serving.pushes, and several workers are supervised by
fstore.serving.supervisor.
"""
from __future__ import annotations

import asyncio
import functools
import gc
import signal
import socket
import time
from typing import Any

from ..online.status import freshness_breached, online_newest
from ..repo.names import view_name
from ..times import now_us
from .connection import Connection, unread
from .fastconn import FastConnection
from .log import log
from .state import Limits, ServerState
from .tls import TlsFiles

#: Limits and ServerState stay importable from here (the supervisor, tests and benchmarks do)
__all__ = ["DRAIN_SECONDS", "Limits", "ServerState", "data_ages", "freshness", "newest_online", "serve_socket"]

DRAIN_SECONDS = 10.0  # at most this long after SIGTERM for clients to read their replies
GAUGE_SECONDS = 1.0   # the inflight and data age gauges are refreshed this often (never per GET)
FLUSH_SECONDS = 0.025  # the GETs counted in C are added to the Prometheus metrics this often (a scrape's lag)


def newest_online(state: ServerState) -> dict[str, int | None]:
    """The newest data online per view: the newer of its materialization watermark and the
    newest event time pushed (stored by every push, and through this worker). Both are cheap
    (one read transaction for all views, a dict): the newest event time actually stored
    would take a scan of the view."""
    store = state.online.store
    names = [view_name(v) for v in state.online.snapshot().views.values()]
    with store.read() as txn:
        stored = {n: online_newest(store.watermark(n, txn), store.pushed(n, txn)) for n in names}
    return {n: online_newest(stored[n], state.newest_pushed.get(n)) for n in names}


def data_ages(state: ServerState, newest: dict[str, int | None] | None = None,
              now: int | None = None) -> dict[str, float]:
    """Seconds per view since its newest data online (0 when that is in the future); a
    view with no data has no age."""
    newest = newest_online(state) if newest is None else newest
    now = now_us() if now is None else now
    return {n: max(0.0, (now - t) / 1e6) for n, t in newest.items() if t is not None}


def freshness(state: ServerState, newest: dict[str, int | None], now: int) -> dict[str, tuple[float, bool]]:
    """Per view with a ``freshness_sla``: the SLA in seconds and whether it is breached
    (the rule of fstore.online.status.freshness_breached, as ``fstore freshness`` applies it)."""
    out = {}
    for v in state.online.snapshot().views.values():
        sla, name = v.get("freshness_sla_us"), view_name(v)
        if sla is not None and name in newest:
            out[name] = (sla / 1e6, freshness_breached(sla, newest[name], now))
    return out


async def _refresh_gauges(state: ServerState) -> None:
    """Set the data age and inflight gauges every GAUGE_SECONDS, off the GET path."""
    last_error = ""
    while True:
        try:
            newest, now = newest_online(state), now_us()
            state.metrics.set_data_age(data_ages(state, newest, now))
            state.metrics.set_freshness(freshness(state, newest, now))
            state.metrics.set_inflight(state.inflight)
        except Exception as exc:  # noqa: BLE001 - a metric must never stop the server; said once per cause
            if str(exc) != last_error:
                last_error = str(exc)
                log.error("cannot refresh the data age metric: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(GAUGE_SECONDS)


async def _flush_metrics(metrics: Any) -> None:
    """Add the GETs counted in C to the Prometheus metrics every FLUSH_SECONDS (a few
    shared-memory writes per flush, none when no GET came)."""
    failed = False
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            metrics.flush()
        except Exception as exc:  # noqa: BLE001 - a metric must never stop the server; said once
            if not failed:
                failed = True
                log.error("cannot flush the GET metrics: %s: %s", type(exc).__name__, exc)


def _remap_on_loop(loop: asyncio.AbstractEventLoop, env: Any, size: int) -> None:
    """Grow (or adopt) the map from the pusher thread by running the remap on the event
    loop, where reads happen, between two callbacks (no read transaction open), and wait."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the pusher thread: hand it to the loop
        async def remap() -> None:
            env.set_mapsize(size)
        asyncio.run_coroutine_threadsafe(remap(), loop).result(timeout=60)
    else:  # on the loop itself: nothing reads meanwhile
        env.set_mapsize(size)


async def serve_socket(sock: socket.socket, repo: str, limits: Limits, metrics: Any = None,
                       ready: Any = None, tls: TlsFiles | None = None) -> None:
    """Serve on a listening socket (the supervisor's, shared by its workers) until
    SIGTERM/SIGINT, then drain: stop accepting, answer every request received before the
    signal (see Connection.drain_step), close.

    The drain used to close every connection once no PUSH was running: requests still
    in the socket buffers lost their replies, and clients that kept pushing held the
    server until the deadline."""
    loop = asyncio.get_running_loop()
    state = ServerState(repo, limits, metrics)
    online = state.online.store  # open LMDB in this process (never across fork)
    online.resize_via = functools.partial(_remap_on_loop, loop, online.env)
    sock.setblocking(False)
    # plain TCP: frames parsed and fast GETs answered in C; TLS: the asyncio.Protocol (fstore.serving.fastconn)
    conn = Connection if tls is not None else FastConnection
    server = await loop.create_server(lambda: conn(state), sock=sock,
                                      ssl=tls.server_context() if tls is not None else None)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gc.collect()
    gc.freeze()  # the long-lived heap never needs scanning again: short, rare collections
    if ready is not None:
        ready()
    timers = [asyncio.ensure_future(_reap_idle(state))]
    flusher = None  # kept through the drain: the GETs answered meanwhile are counted too
    if metrics is not None:
        timers.append(asyncio.ensure_future(_refresh_gauges(state)))
        flusher = asyncio.ensure_future(_flush_metrics(metrics))
    await stop.wait()
    state.draining = True
    for timer in timers:
        timer.cancel()
    server.close()
    started = time.monotonic()
    deadline = started + DRAIN_SECONDS
    while state.connections and time.monotonic() < deadline:
        for conn in list(state.connections):
            if conn.drain_step() and conn.transport is not None:
                conn.closing = True
                conn.transport.close()
        await asyncio.sleep(0.01)
    cut = 0
    for conn in list(state.connections):  # past the deadline: slow readers lose what is left
        if conn.transport is not None:
            conn.closing = True
            conn.transport.abort()
            cut += 1
    while state.connections and time.monotonic() < deadline + 1:
        await asyncio.sleep(0.01)  # let connection_lost run
    await server.wait_closed()
    await state.pushes.wait_idle(deadline + 30)  # PUSHes of closed connections are still written
    if flusher is not None:
        flusher.cancel()
        metrics.flush()  # the last GETs answered
    state.close()
    log.info("drained in %.2f s: %d requests read after the stop signal answered (%d of them refused, not run)%s",
             time.monotonic() - started, state.drained, state.refused,
             f"; {cut} slow connection(s) cut at the {DRAIN_SECONDS:g} s deadline" if cut else "")


async def _reap_idle(state: ServerState) -> None:
    """Close connections that sent nothing for ``idle_timeout``. One whose bytes wait
    unread is not idle: the loop may run this timer before reading them (after a stall),
    so it is spared unless its reading is paused (a client that never reads its replies)."""
    while True:
        await asyncio.sleep(min(5.0, state.limits.idle_timeout / 2))
        cutoff = time.monotonic() - state.limits.idle_timeout
        for conn in list(state.connections):
            if conn.last_seen < cutoff and conn.transport is not None and (conn.paused or not unread(conn.transport)):
                conn.closing = True
                conn.transport.close()
