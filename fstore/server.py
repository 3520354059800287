"""The feature server: an asyncio (uvloop) TCP server speaking docs/protocol.md.

One connection is one ``Connection`` protocol object: bytes go into a compiled
FrameReader, each whole frame is answered synchronously (an online read is a few
microseconds of LMDB and never blocks the loop), and the reply is written at once.
A bad request is answered with an error for that request id and the connection
goes on; a frame that cannot be tied to a request is answered with id 0 and the
connection is closed. Nothing a client sends can stop the server.

PUSH (an LMDB write, maybe an offline append) runs in a thread so reads on the
loop never wait for it; PUSHes that arrive while one group is being written are
written together as the next group, in one transaction (PushQueue).

With several workers, the parent process supervises them (Workers): a worker that
dies is replaced, within a budget of restarts per minute.
"""
from __future__ import annotations

import asyncio
import fcntl
import functools
import gc
import signal
import socket
import struct
import sys
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgpack

from . import __version__
from ._ext._wire import read_packed
from ._ext._serve import FastGet, get_reply
from .errors import EntityRowError, FstoreError
from .feature_store import FeatureStore
from .offline_store import view_name
from .online import explain_bad_rows
from .protocol import (BAD_FRAME, BAD_REQUEST, GET, HANDSHAKE_REQUIRED, HEALTH, HELLO, INFO, INTERNAL, OP_NAMES,
                       OVERLOADED, PUSH, SHUTTING_DOWN, TOO_MANY_ROWS, UNKNOWN_OP, UNSUPPORTED_VERSION, VERSION,
                       FrameError, FrameReader, ProtocolError, frame)
from .push import push_group


DRAIN_SECONDS = 10.0  # at most this long after SIGTERM for clients to read their replies
GAUGE_SECONDS = 1.0   # the inflight and data age gauges are refreshed this often (never per GET)
MAX_PUSH_GROUP = 256  # PUSHes written in one transaction at most: bounds a group's latency


@dataclass
class Limits:
    max_frame: int = 8 << 20
    max_rows: int = 10_000
    max_connections: int = 10_000
    idle_timeout: float = 300.0
    max_buffered_replies: int = 4 << 20  # reply bytes queued for a slow reader before we stop reading


MAX_PREPARED = 1024


@dataclass
class PreparedGet:
    """A GET shape ready to answer: its read plan and the packed constant part of its reply."""

    plan: Any
    head_meta: bytes   # true, the map header, names/dtypes/view_of/keys, and the "values" key
    head_bare: bytes   # the same without "status" and "ts" in the map's size


def prepare_get(plan: Any) -> PreparedGet:
    entries = b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in
                       (("names", plan.names), ("dtypes", plan.dtypes), ("view_of", plan.view_of),
                        ("keys", plan.key_columns))) + msgpack.packb("values")
    return PreparedGet(plan, b"\xc3\x87" + entries, b"\xc3\x85" + entries)  # true, fixmap of 7 / of 5


class ServerState:
    """What every connection of one worker shares: the store, limits, counters."""

    def __init__(self, repo: str, limits: Limits, metrics: Any = None) -> None:
        self.fs = FeatureStore(repo)
        self.limits = limits
        self.metrics = metrics
        self.connections: set[Connection] = set()
        self.draining = False
        self.inflight = 0  # requests received, not answered: PUSHes queued or being written, and the one handled
        self.pusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fstore-push")
        self.pushes = PushQueue(self)
        self.newest_pushed: dict[str, int] = {}  # view -> newest event time (us) pushed through this worker
        self._packer = msgpack.Packer(datetime=True, use_bin_type=True)
        self._prepared: dict[tuple[Any, ...], PreparedGet] = {}
        self._prepared_for: Any = None  # the registry they were prepared under
        # the compiled fast path shares the prepared shapes; it answers only while the
        # registry was checked within the second (valid_until), as FeatureStore does
        self.fast = FastGet(self.fs.online.env, self._prepared, limits.max_rows)

    def prepared_get(self, features: Any, service: Any, full: Any) -> PreparedGet:
        """The prepared GET of a request shape; checks the shape only when it is new.

        A shape seen before is found by its hashable key alone: only lists of strings
        (and None or a string) were ever stored under a key, so a request that matches
        one is as valid as the first was.
        """
        registry = self.fs._current_registry()
        if registry is not self._prepared_for:
            self._prepared.clear()
            self._prepared_for = registry
        self.fast.valid_until = self.fs._reg_checked + 1.0
        try:
            key = (tuple(features) if type(features) is list else features, service, full)
            found = self._prepared.get(key)
        except TypeError:  # an unhashable part: not a valid shape, reported below
            key, found = None, None
        if found is not None:
            return found
        if (features is None) == (service is None):
            raise ProtocolError(BAD_REQUEST, "give exactly one of features or service", "features")
        if features is not None and (type(features) is not list or not all(type(f) is str for f in features)):
            raise ProtocolError(BAD_REQUEST, "features must be a list of strings", "features")
        if service is not None and type(service) is not str:
            raise ProtocolError(BAD_REQUEST, "service must be a string", "service")
        prepared = prepare_get(self.fs.online_plan(features, service, bool(full)))
        if key is not None and type(full) is bool:
            if len(self._prepared) >= MAX_PREPARED:  # shapes come from clients: keep the cache bounded
                self._prepared.clear()
            self._prepared[key] = prepared
        return prepared

    def pack(self, obj: Any) -> bytes:
        return frame(self._packer.pack(obj))


class Connection(asyncio.Protocol):
    """One client connection: framing, handshake, dispatch, back pressure, idle timeout."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.reader = FrameReader(state.limits.max_frame)
        self.transport: asyncio.Transport | None = None
        self.greeted = False
        self.closing = False
        self.last_seen = time.monotonic()
        self.paused = False      # reading paused: the client does not read its replies
        self.pushing = 0         # PUSHes of this connection running in the pusher thread
        self.caught_up = False   # draining: everything the client sent before SIGTERM has been read

    # ---- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        st = self.state
        if len(st.connections) >= st.limits.max_connections or st.draining:
            code = SHUTTING_DOWN if st.draining else OVERLOADED
            self._fatal(0, ProtocolError(code, "the server takes no more connections now"))
            return
        st.connections.add(self)
        self.transport.set_write_buffer_limits(high=st.limits.max_buffered_replies)  # type: ignore[union-attr]
        if st.metrics:
            st.metrics.connections.inc()

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.state.connections:
            self.state.connections.discard(self)
            if self.state.metrics:
                self.state.metrics.connections.dec()

    def pause_writing(self) -> None:
        # the client sends faster than it reads: stop reading until its replies drain
        if self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closing:
            self.paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_seen = time.monotonic()
        self.reader.feed(data)
        st = self.state
        # a greeted connection not draining: a GET of a known shape takes the compiled path
        fast = st.fast if self.greeted and not self.caught_up else None
        while not self.closing:
            try:
                body = self.reader.next()
            except FrameError as exc:
                self._fatal(0, ProtocolError(exc.code, str(exc)))
                return
            if body is None:
                return
            if fast is not None:
                start = time.perf_counter() if st.metrics else 0.0
                answered = fast.answer(body)
                if answered is not None:
                    self.transport.write(answered[0])  # type: ignore[union-attr]
                    if st.metrics:
                        st.metrics.get_done(answered[1], answered[2])
                        st.metrics.observe("get", time.perf_counter() - start)
                    continue
            self._handle(body)

    # ---- requests ---------------------------------------------------------------------

    def _handle(self, body: bytes) -> None:
        st = self.state
        start = time.perf_counter()
        try:
            msg = msgpack.unpackb(body, raw=False, timestamp=3, strict_map_key=False)
        except Exception:  # noqa: BLE001 - any garbage is a bad frame
            self._fatal(0, ProtocolError(BAD_FRAME, "the frame is not MessagePack"))
            return
        if (type(msg) is not list or len(msg) != 3 or type(msg[0]) is not int or type(msg[1]) is not int
                or not 0 < msg[1] < 2**32):
            self._fatal(0, ProtocolError(BAD_FRAME, "a request is [op, id (1..2**32-1), args]"))
            return
        op, rid, args = msg
        if self.caught_up:  # sent after SIGTERM: not run, so the client may safely send it elsewhere
            self._reply_error(rid, op, ProtocolError(SHUTTING_DOWN, "the server is shutting down; request not run"))
            return
        if not self.greeted and op != HELLO:
            self._fatal(rid, ProtocolError(HANDSHAKE_REQUIRED, "the first request must be HELLO"))
            return
        if type(args) is not dict:
            self._reply_error(rid, op, ProtocolError(BAD_REQUEST, "args must be a map", "args"))
            return
        st.inflight += 1
        try:
            if op == GET:
                reply = self._get(rid, args)
            elif op == HELLO:
                reply = self._hello(rid, args)
                if reply is None:
                    return
            elif op == HEALTH:
                reply = st.pack([rid, True, {"live": True, "ready": not st.draining, "draining": st.draining,
                                             "registry_version": st.fs._current_registry()["version"]}])
            elif op == INFO:
                reply = st.pack([rid, True, self._info()])
            elif op == PUSH:
                self._push(rid, args, start)
                return
            else:
                raise ProtocolError(UNKNOWN_OP, f"unknown op {op}", "op")
        except ProtocolError as exc:
            self._reply_error(rid, op, exc)
            return
        except FstoreError as exc:
            self._reply_error(rid, op, ProtocolError(exc.code, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - a bug answers one request, never kills the server
            self._reply_error(rid, op, ProtocolError(INTERNAL, f"{type(exc).__name__}: {exc}"))
            return
        finally:
            st.inflight -= 1
        self.transport.write(reply)  # type: ignore[union-attr]
        if st.metrics:
            st.metrics.observe(OP_NAMES.get(op, "unknown"), time.perf_counter() - start)

    def _hello(self, rid: int, args: dict[str, Any]) -> bytes | None:
        if args.get("version") != VERSION:
            self._fatal(rid, ProtocolError(UNSUPPORTED_VERSION, f"this server speaks version {VERSION}", "version"))
            return None
        self.greeted = True
        lim = self.state.limits
        return self.state.pack([rid, True, {"version": VERSION, "server": f"fstore/{__version__}",
                                            "max_frame": lim.max_frame, "max_rows": lim.max_rows}])

    def _get(self, rid: int, args: dict[str, Any]) -> bytes:
        st = self.state
        features, service, full = args.get("features"), args.get("service"), args.get("full_names", False)
        prepared = st.prepared_get(features, service, full)
        entities = args.get("entities")
        if type(entities) is not dict:
            raise ProtocolError(BAD_REQUEST, "entities must be a map of join key columns", "entities")
        n = -1
        for key, col in entities.items():
            if type(col) is not list:
                raise ProtocolError(BAD_REQUEST, "each entity column must be a list", f"entities.{key}")
            if n >= 0 and len(col) != n:
                raise ProtocolError(BAD_REQUEST, "entity columns differ in length", f"entities.{key}")
            n = len(col)
        n = max(n, 0)  # an empty map is zero rows, as entity_rows=[] in process (a client cannot name its columns)
        if n > st.limits.max_rows:
            raise ProtocolError(TOO_MANY_ROWS, f"{n} entity rows; the limit is {st.limits.max_rows}", "entities")
        plan = prepared.plan
        if entities:
            try:
                values, status, stamps = read_packed(st.fs.online.env, plan, entities)
            except (KeyError, TypeError, ValueError, OverflowError):
                rows = [{k: entities[k][i] for k in entities} for i in range(n)]
                err = explain_bad_rows(rows, plan, EntityRowError("bad entity rows"))
                raise ProtocolError(EntityRowError.code, str(err), "entities") from None
        else:
            values, status, stamps = st._packer.pack([[] for _ in plan.names]), bytearray(), bytearray()
        if st.metrics:
            st.metrics.get_done(n, status)
        return get_reply(rid, prepared, values, status, stamps, args.get("meta", True))

    def _info(self) -> dict[str, Any]:
        reg = self.state.fs._current_registry()
        return {"project": reg["project"], "registry_version": reg["version"], "server": f"fstore/{__version__}",
                "views": [{"name": v["name"], "version": v["version"], "entities": v["entities"],
                           "join_keys": v["join_keys"], "ttl_us": v.get("ttl_us"),
                           "timestamp_field": reg["sources"][v["source"]]["timestamp_field"],
                           "created_timestamp_field": reg["sources"][v["source"]]["created_timestamp_field"],
                           "features": [{"name": f["name"], "dtype": f["dtype"]} for f in v["features"]]}
                          for v in reg["feature_views"].values()],
                "services": [{"name": s["name"], "features": s["features"]} for s in reg["feature_services"].values()]}

    def _push(self, rid: int, args: dict[str, Any], start: float) -> None:
        self.state.inflight += 1
        self.pushing += 1
        self.state.pushes.add(QueuedPush(self, rid, args, start))

    def push_done(self, rid: int, outcome: Any, start: float) -> None:
        """Answer a PUSH once its group is committed (or it was refused)."""
        st = self.state
        self.pushing -= 1
        if isinstance(outcome, Exception):
            self._reply_error(rid, PUSH, _push_error(outcome))
            return
        view, newest = outcome["view"], outcome["newest_us"]
        if newest is not None:  # for the data age gauge
            st.newest_pushed[view] = max(newest, st.newest_pushed.get(view, newest))
        self._write(st.pack([rid, True, {"written": outcome["written"], "offline": outcome["offline"]}]))
        if st.metrics:
            st.metrics.pushed(outcome["view"], outcome["written"])
            st.metrics.observe("push", time.perf_counter() - start)

    # ---- replies ----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _reply_error(self, rid: int, op: int, exc: ProtocolError) -> None:
        if self.state.metrics:
            self.state.metrics.error(exc.code)
        self._write(self.state.pack([rid, False, exc.to_wire()]))

    def drain_step(self) -> bool:
        """One step of a graceful shutdown; True once this connection may be closed.

        A request whose bytes reached the server before SIGTERM is answered: the
        connection counts as caught up only when no byte is left unread, neither in
        the frame reader nor in the kernel's socket buffer (and reading is not paused
        for a slow reader). Frames read after that get SHUTTING_DOWN (not run). It is
        closed once caught up with every reply written, PUSH replies included.
        """
        t = self.transport
        if t is None or t.is_closing():
            return True
        if not self.caught_up and not self.paused and not self.reader.buffered and _unread(t) == 0:
            self.caught_up = True
        return self.caught_up and not self.pushing and not t.get_write_buffer_size()

    def _fatal(self, rid: int, exc: ProtocolError) -> None:
        """Answer with an error and close: the stream can no longer be trusted."""
        self._reply_error(rid, 0, exc)
        self.closing = True
        if self.transport is not None:
            self.transport.close()


def _push_error(exc: Exception) -> ProtocolError:
    """The error reply of a refused PUSH."""
    if isinstance(exc, ProtocolError):
        return exc
    if isinstance(exc, FstoreError):
        return ProtocolError(exc.code, str(exc), getattr(exc, "column", None))
    return ProtocolError(INTERNAL, f"{type(exc).__name__}: {exc}")


@dataclass
class QueuedPush:
    conn: Connection
    rid: int
    args: dict[str, Any]
    start: float


class PushQueue:
    """PUSHes waiting for the writer thread, written in groups.

    Every LMDB write transaction ends in an fsync, so one PUSH per transaction made
    PUSHes queue behind each other's fsyncs under load (p99 ~700 ms). Here the PUSHes
    read while a group is being written form the next group: one transaction and one
    fsync for all of them (push.push_group). Each is still validated and answered on
    its own, a refused one does not fail the others, and replies go out only after
    the commit.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.waiting: list[QueuedPush] = []
        self.busy = False  # a group is scheduled or being written

    def add(self, item: QueuedPush) -> None:
        self.waiting.append(item)
        if not self.busy:
            self.busy = True
            # on the next loop iteration: the PUSHes read in this one (pipelined, or from
            # other connections) join the first group rather than wait for the next
            asyncio.get_running_loop().call_soon(self._next)

    def _next(self) -> None:
        st = self.state
        self._gauge()
        if not self.waiting:
            self.busy = False
            return
        group, self.waiting = self.waiting[:MAX_PUSH_GROUP], self.waiting[MAX_PUSH_GROUP:]
        fut = asyncio.get_running_loop().run_in_executor(st.pusher, push_group, st.fs, [q.args for q in group])
        fut.add_done_callback(functools.partial(self._done, group))

    def _done(self, group: list[QueuedPush], fut: asyncio.Future) -> None:
        st = self.state
        try:
            outcomes, commits = fut.result()
        except Exception as exc:  # noqa: BLE001 - push_group reports per PUSH; this is a bug: answer them all
            outcomes, commits = [exc] * len(group), 0
        st.inflight -= len(group)
        if st.metrics and commits:
            st.metrics.push_committed(commits)
        for q, outcome in zip(group, outcomes):
            q.conn.push_done(q.rid, outcome, q.start)
        self._next()

    def _gauge(self) -> None:
        # called between requests, so st.inflight counts exactly the PUSHes not yet answered
        if self.state.metrics:
            self.state.metrics.set_inflight(self.state.inflight)

    async def wait_idle(self, deadline: float) -> None:
        """Until every PUSH received is answered (or the deadline passes)."""
        while (self.busy or self.waiting) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


def data_ages(state: ServerState) -> dict[str, float]:
    """Seconds per view since the newer of its materialization watermark and the newest
    event time pushed through this worker (0 when that is in the future). Both are cheap
    (one read transaction for all watermarks, a dict): the newest event time actually
    stored would take a scan of the view."""
    fs = state.fs
    names = [view_name(v) for v in fs._current_registry()["feature_views"].values()]
    with fs.online.read() as txn:
        marks = {n: fs.online.watermark(n, txn) for n in names}
    now_us = time.time_ns() // 1000
    ages = {}
    for n in names:
        newest = max((t for t in (marks[n], state.newest_pushed.get(n)) if t is not None), default=None)
        if newest is not None:
            ages[n] = max(0.0, (now_us - newest) / 1e6)
    return ages


async def _refresh_gauges(state: ServerState) -> None:
    """Set the data age and inflight gauges every GAUGE_SECONDS, off the GET path."""
    last_error = ""
    while True:
        try:
            state.metrics.set_data_age(data_ages(state))
            state.metrics.set_inflight(state.inflight)
        except Exception as exc:  # noqa: BLE001 - a metric must never stop the server; said once per cause
            if str(exc) != last_error:
                last_error = str(exc)
                print(f"fstore: cannot refresh the data age metric: {type(exc).__name__}: {exc}", file=sys.stderr)
        await asyncio.sleep(GAUGE_SECONDS)


def _unread(transport: asyncio.Transport) -> int:
    """Bytes the peer sent that wait unread in the kernel's receive buffer."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def make_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


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
                       ready: Any = None) -> None:
    """Serve on a bound socket until SIGTERM/SIGINT, then drain: stop accepting, answer
    every request received before the signal (see Connection.drain_step), close.

    The drain used to close every connection once no PUSH was running: requests still
    in the socket buffers lost their replies, and clients that kept pushing held the
    server until the deadline."""
    loop = asyncio.get_running_loop()
    state = ServerState(repo, limits, metrics)
    online = state.fs.online  # open LMDB in this process (never across fork)
    online.resize_via = functools.partial(_remap_on_loop, loop, online.env)
    server = await loop.create_server(lambda: Connection(state), sock=sock)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gc.collect()
    gc.freeze()  # the long-lived heap never needs scanning again: short, rare collections
    if ready is not None:
        ready()
    timers = [asyncio.ensure_future(_reap_idle(state))]
    if metrics is not None:
        timers.append(asyncio.ensure_future(_refresh_gauges(state)))
    await stop.wait()
    state.draining = True
    for timer in timers:
        timer.cancel()
    server.close()
    deadline = time.monotonic() + DRAIN_SECONDS
    while state.connections and time.monotonic() < deadline:
        for conn in list(state.connections):
            if conn.drain_step() and conn.transport is not None:
                conn.closing = True
                conn.transport.close()
        await asyncio.sleep(0.01)
    for conn in list(state.connections):  # past the deadline: slow readers lose what is left
        if conn.transport is not None:
            conn.closing = True
            conn.transport.abort()
    while state.connections and time.monotonic() < deadline + 1:
        await asyncio.sleep(0.01)  # let connection_lost run
    await server.wait_closed()
    await state.pushes.wait_idle(deadline + 30)  # PUSHes of closed connections are still written
    state.pusher.shutdown(wait=True)


async def _reap_idle(state: ServerState) -> None:
    """Close connections that sent nothing for ``idle_timeout``. One whose bytes wait
    unread is not idle: the loop may run this timer before reading them (after a stall),
    so it is spared unless its reading is paused (a client that never reads its replies)."""
    while True:
        await asyncio.sleep(min(5.0, state.limits.idle_timeout / 2))
        cutoff = time.monotonic() - state.limits.idle_timeout
        for conn in list(state.connections):
            if conn.last_seen < cutoff and conn.transport is not None and (conn.paused or not _unread(conn.transport)):
                conn.closing = True
                conn.transport.close()
