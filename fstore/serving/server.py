"""The feature server: an asyncio (uvloop) TCP server speaking docs/protocol.md.

This module is what runs in one worker: the state every connection shares
(``ServerState``), the serve loop with its graceful drain, and the timers (idle
connections, gauges). A connection's requests are handled in fstore.serving.connection,
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgpack

from .._ext._request import RawGets
from .._ext._serve import FastGet
from ..config import SERVER_KEYS, RepoConfig, defaults
from ..errors import BadRequest
from ..monitoring.events import FEATURE_LOG, SERVER_FAST, hook, load_listener
from ..offline.store import OfflineStore
from ..online.request import RequestPlan
from ..online.service import MAX_PLANS, OnlineService
from ..online.status import freshness_breached, online_newest
from ..online.store import OnlineStore
from ..repo.definitions import logged_services
from ..repo.names import view_name
from ..repo.registry import Registry
from ..repo.resolve import require_one
from ..times import now_us
from .auth import Tokens
from .connection import Connection, unread
from .fastconn import FastConnection
from .log import log
from .protocol import MAX_REQUEST_ID, frame
from .pushes import PushQueue
from .slowlog import threshold_seconds
from .tls import TlsFiles

DRAIN_SECONDS = 10.0  # at most this long after SIGTERM for clients to read their replies
GAUGE_SECONDS = 1.0   # the inflight and data age gauges are refreshed this often (never per GET)
FLUSH_SECONDS = 0.025  # the GETs counted in C are added to the Prometheus metrics this often (a scrape's lag)
_DEFAULTS = defaults(SERVER_KEYS)


@dataclass
class Limits:
    """What one client may ask of a worker (defaults: the server section of fstore.yaml)."""

    max_frame: int = _DEFAULTS["max_frame_bytes"]
    max_rows: int = _DEFAULTS["max_rows"]
    max_connections: int = _DEFAULTS["max_connections"]
    idle_timeout: float = _DEFAULTS["idle_timeout_s"]
    max_buffered_replies: int = 4 << 20  # reply bytes queued for a slow reader before we stop reading

    @classmethod
    def from_settings(cls, server: dict[str, Any]) -> "Limits":
        """The limits of a RepoConfig's ``server`` settings."""
        return cls(max_frame=server["max_frame_bytes"], max_rows=server["max_rows"],
                   max_connections=server["max_connections"], idle_timeout=server["idle_timeout_s"])


@dataclass
class PreparedGet:
    """A GET shape ready to answer: its read plan and the packed constant part of its reply."""

    plan: Any
    head_meta: bytes   # true, the map header, names/dtypes/view_of/keys, and the "values" key
    head_bare: bytes   # the same without "status" and "ts" in the map's size
    features: list[str] | None = None
    service: str | None = None
    full: bool = False
    entries: bytes = b""  # the map's entries alone: a reply echoing a request_id has one entry more
    version: int = -1     # the registry version the plan was built under (the served-read hook's)
    request: Any = None   # a shape with request-time features: its RequestPlan (the fast path declines it)


def prepare_get(plan: Any, features: list[str] | None = None, service: str | None = None,
                full: bool = False, version: int = -1) -> PreparedGet:
    request = plan if isinstance(plan, RequestPlan) else None
    plan = request.plan if request is not None else plan
    entries = b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in
                       (("names", plan.names), ("dtypes", plan.dtypes), ("view_of", plan.view_of),
                        ("keys", plan.key_columns))) + msgpack.packb("values")
    return PreparedGet(plan, b"\xc3\x87" + entries, b"\xc3\x85" + entries,  # true, fixmap of 7 / of 5
                       features, service, full, entries, version, request)


class ServerState:
    """What every connection of one worker shares: the store, limits, counters."""

    def __init__(self, repo: str, limits: Limits, metrics: Any = None) -> None:
        config = RepoConfig.load(repo)
        self.project = config.project   # said in HELLO, so a client can refuse another project's server
        self.tokens = Tokens.load(config)  # None: no token needed
        self.listeners = [hook.subscribe(load_listener(spec)) for spec in config.server["listeners"]]
        self.online = OnlineService(Registry(config), OnlineStore(config))
        if logged_services(self.online.snapshot(), config):  # the feature log (a recorder), attached as any listener
            self.listeners.append(hook.subscribe(load_listener(FEATURE_LOG, config)))
        self.offline = OfflineStore(config)  # PUSHes with offline=true append here
        self.limits = limits
        self.metrics = metrics
        self.slow = threshold_seconds(config.server)  # the slow-request log's threshold; None: off
        self.connections: set[Any] = set()  # Connection or FastConnection
        self.draining = False
        self.drained = 0   # requests read after the stop signal (answered), and of them refused (not run)
        self.refused = 0
        self.inflight = 0  # requests received, not answered: PUSHes queued or being written, and the one handled
        self.pusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fstore-push")
        self.pushes = PushQueue(self)
        self.newest_pushed: dict[str, int] = {}  # view -> newest event time (us) pushed through this worker
        self._packer = msgpack.Packer(datetime=True, use_bin_type=True)
        self._prepared: dict[tuple[Any, ...], PreparedGet] = {}
        self.prepared_under: Any = None  # the registry snapshot they were prepared under
        # the compiled fast path shares the prepared shapes; it answers only while the
        # registry was checked within the second (valid_until), as the OnlineService does
        # the GET metrics (fstore._ext._counters), counted on both paths; None without metrics
        self.counters = metrics.counters if metrics is not None else None
        self.fast = FastGet(self.online.store.env, self._prepared, limits.max_rows, MAX_REQUEST_ID, hook, SERVER_FAST,
                            self.counters)
        self.raw_gets = RawGets(self.fast)  # its requests decoded in C, on plain-TCP connections (fastconn)

    def prepared_get(self, features: Any, service: Any, full: Any) -> PreparedGet:
        """The prepared GET of a request shape; checks the shape only when it is new.

        A shape seen before is found by its hashable key alone: only lists of strings
        (and None or a string) were ever stored under a key, so a request that matches
        one is as valid as the first was.
        """
        snapshot = self.online.snapshot()
        if snapshot is not self.prepared_under:
            self._prepared.clear()
            self.prepared_under = snapshot
        self.fast.valid_until = self.online.registry.fresh_until
        try:
            key = (tuple(features) if type(features) is list else features, service, full)
            found = self._prepared.get(key)
        except TypeError:  # an unhashable part: not a valid shape, reported below
            key, found = None, None
        if found is not None:
            return found
        require_one(features, service, ("features", "service"))
        if features is not None and (type(features) is not list or not all(type(f) is str for f in features)):
            raise BadRequest("features must be a list of strings", "features")
        if service is not None and type(service) is not str:
            raise BadRequest("service must be a string", "service")
        prepared = prepare_get(self.online.plan(features, service, bool(full)), features, service, bool(full),
                               snapshot.version)
        if key is not None and type(full) is bool:
            if len(self._prepared) >= MAX_PLANS:  # as bounded as the plans they hold
                self._prepared.clear()
            self._prepared[key] = prepared
        return prepared

    def pack(self, obj: Any) -> bytes:
        return frame(self._packer.pack(obj))

    def close(self) -> None:
        """Wait for the pusher thread, and unsubscribe the listeners this state subscribed,
        closing those that can be closed (the feature log writes what it holds)."""
        self.pusher.shutdown(wait=True)
        for listener in self.listeners:
            hook.unsubscribe(listener)
            close = getattr(listener, "close", None)
            if close is not None:
                close()


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
