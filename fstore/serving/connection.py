"""One client connection of the feature server: framing, dispatch to a handler per
operation (fstore.serving.handlers), replies, back pressure, idle timeout, drain.

Bytes go into a compiled FrameReader; each whole frame is answered synchronously (an
online read is a few microseconds of LMDB and never blocks the loop) and the reply is
written at once. A GET of a known shape is answered by the compiled fast path
(fstore._ext._serve); everything else is decoded here and dispatched through
``HANDLERS``, built from the protocol's table of operations (``OPS``): a handler per
operation, ``op_<name>`` (written in fstore.serving.handlers, methods of the connection). A handler raises an FstoreError to refuse its request; the
error is answered for that request id and the connection goes on. A frame that cannot
be tied to a request is answered with id 0 and the connection is closed. Nothing a
client sends can stop the server.

Every GET answered, on either path, is counted in the worker's GET metrics (in C:
fstore._ext._counters, flushed by a timer) and handed to the served-read hook
(fstore.monitoring.events) after its reply is written, when a listener is subscribed: a
Python listener costs a ServedRead built per GET (~27 us with a Prometheus-style listener),
which is why the metrics are not one.

On a server with tokens (fstore.serving.auth), HELLO must carry a valid one (else
UNAUTHENTICATED, and the connection is closed); its scopes are checked per request
(PERMISSION_DENIED names the scope lacking), and the compiled GET path is open only to a
connection whose token may read.
"""
from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
import time
from typing import Any, Callable

import msgpack

from ..errors import (BadFrame, BadRequest, FstoreError, HandshakeRequired, Overloaded, PermissionDenied,
                      ProtocolError, ShuttingDown, Unauthenticated, UnknownOp, as_fstore_error)
from ..monitoring.events import SERVER, SERVER_FAST, ServedRead, hook, worker_id
from ..times import now_us
from .auth import Token
from .handlers import Handlers
from .protocol import GET, HELLO, OPS, FrameReader
from .slowlog import describe_target, log_slow
from .state import PreparedGet, ServerState

Handler = Callable[["ConnectionBase", int, dict[str, Any], float], "bytes | None"]


class ConnectionBase(Handlers):
    """One client connection's logic, whichever asyncio protocol reads its bytes: ``Connection``
    (asyncio.Protocol, a bytes object per packet; TLS) or fstore.serving.fastconn's
    ``FastConnection`` (asyncio.BufferedProtocol, frames parsed and fast GETs answered in C).
    uvloop reads into a protocol's own buffer only if it is not an asyncio.Protocol, hence
    this base with none."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.greeted = False
        self.token: Token | None = None  # the token HELLO showed (servers with tokens)
        self.fast: Any = None              # the compiled GET path, once HELLO allowed this connection to read
        self.closing = False
        self.last_seen = time.monotonic()
        self.paused = False      # reading paused: the client does not read its replies
        self.pushing = 0         # PUSHes of this connection running in the pusher thread
        self.caught_up = False   # draining: everything the client sent before SIGTERM has been read
        self._served: tuple[Any, ...] | None = None  # the GET just read on the Python path, for the hook
        self.client: str | None = None  # the client name HELLO gave (for the slow-request log)

    # ---- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        st = self.state
        if len(st.connections) >= st.limits.max_connections or st.draining:
            cls = ShuttingDown if st.draining else Overloaded
            self._fatal(0, cls("the server takes no more connections now"))
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

    # ---- requests ---------------------------------------------------------------------

    def _handle(self, body: bytes) -> None:
        st = self.state
        start = time.perf_counter()
        try:
            msg = msgpack.unpackb(body, raw=False, timestamp=3, strict_map_key=False)
        except Exception:  # noqa: BLE001 - any garbage is a bad frame
            self._fatal(0, BadFrame("the frame is not MessagePack"))
            return
        if (type(msg) is not list or len(msg) != 3 or type(msg[0]) is not int or type(msg[1]) is not int
                or not 0 < msg[1] < 2**32):
            self._fatal(0, BadFrame("a request is [op, id (1..2**32-1), args]"))
            return
        op, rid, args = msg
        if self.caught_up:  # sent after SIGTERM: not run, so the client may safely send it elsewhere
            st.refused += 1
            self._reply_error(rid, ShuttingDown("the server is shutting down; request not run"))
            return
        if not self.greeted and op != HELLO:
            if st.tokens is not None:
                self._fatal(rid, Unauthenticated("this server needs a token: the first request must be HELLO "
                                                 "with a valid token"))
            else:
                self._fatal(rid, HandshakeRequired("the first request must be HELLO"))
            return
        if type(args) is not dict:
            self._reply_error(rid, BadRequest("args must be a map", "args"))
            return
        handler = HANDLERS.get(op)
        st.inflight += 1
        try:
            if handler is None:
                raise UnknownOp(f"unknown op {op}", "op")
            if self.token is not None and (lacking := self.token.lacks(op)) is not None:
                raise PermissionDenied(f"token {self.token.name!r} lacks scope {lacking!r}")
            reply = handler(self, rid, args, start)
        except Exception as exc:  # noqa: BLE001 - a bug answers one request, never kills the server
            self._reply_error(rid, as_fstore_error(exc))
            return
        finally:
            st.inflight -= 1
        if reply is None:  # answered by the handler (HELLO refused, PUSH queued)
            return
        self.transport.write(reply)  # type: ignore[union-attr]
        seconds = time.perf_counter() - start
        served, self._served = self._served, None
        if served is not None:
            if st.counters is not None:  # the GET metrics, counted in C as on the fast path
                ents = served[0].get("entities")
                st.counters.count_get(served[1].plan, len(next(iter(ents.values()))) if ents else 0, served[3],
                                      seconds)
            if hook.active:
                self._emit(SERVER, rid, *served, seconds)
        if st.metrics and op != GET:  # a GET's latency is counted with the GET metrics above
            st.metrics.observe(OPS[op], seconds)
        if st.slow is not None and seconds >= st.slow:
            self._log_slow(OPS[op], seconds, args, served[1] if served is not None else None)

    def _fast_done(self, fast: Any, start: float, slow: float | None) -> None:
        """After the compiled path answered a GET: the listeners, and the slow-request log."""
        seconds = time.perf_counter() - start
        if hook.active:
            self._emit(SERVER_FAST, fast.rid, fast.args, fast.last, fast.values, fast.status, fast.stamps, seconds)
        if slow is not None and seconds >= slow:
            self._log_slow("get", seconds, fast.args, fast.last)

    def _emit(self, path: str, rid: int, args: dict[str, Any], prepared: PreparedGet, values: Any,
              status: Any, stamps: Any, seconds: float) -> None:
        """Hand a GET just answered to the served-read listeners."""
        caller = args.get("request_id")
        hook.emit(ServedRead(now_us(), rid, path, worker_id(), prepared.service, prepared.features, prepared.full,
                             self.state.prepared_under.version, args.get("entities"),
                             caller if type(caller) is str else None, seconds,
                             prepared.plan, values, status, stamps, self.client,
                             model=args.get("model") if type(args.get("model")) is str else None))

    def _log_slow(self, op: str, seconds: float, args: dict[str, Any], prepared: PreparedGet | None) -> None:
        """One slow-request line: a GET names its rows, service or features and request_id."""
        rows, target, caller = None, "", None
        if prepared is not None:
            ents = args.get("entities")
            rows = len(next(iter(ents.values()))) if ents else 0
            target, caller = describe_target(prepared.service, prepared.features), args.get("request_id")
        log_slow(op, rows, seconds, target, caller, self.client, self.transport)

    # ---- replies ----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _reply_error(self, rid: int, exc: FstoreError) -> None:
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
        if not self.caught_up and not self.paused and not self._unparsed() and unread(t) == 0:
            self.caught_up = True
        return self.caught_up and not self.pushing and not t.get_write_buffer_size()

    def _fatal(self, rid: int, exc: FstoreError) -> None:
        """Answer with an error and close: the stream can no longer be trusted."""
        self._reply_error(rid, exc)
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class Connection(ConnectionBase, asyncio.Protocol):
    """A connection read through asyncio.Protocol: a bytes object per packet into the
    compiled FrameReader (used for TLS, whose uvloop transport copies anyway)."""

    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        self.reader = FrameReader(state.limits.max_frame)

    def _unparsed(self) -> int:
        """Bytes received and not yet cut into frames."""
        return self.reader.buffered

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_seen = time.monotonic()
        self.reader.feed(data)
        # a greeted connection that may read, not draining: a GET of a known shape takes the compiled path
        fast = self.fast if not self.caught_up else None
        slow = self.state.slow  # None: the slow-request log is off
        n = 0
        try:
            while not self.closing:
                try:
                    body = self.reader.next()
                except ProtocolError as exc:
                    self._fatal(0, exc)
                    return
                if body is None:
                    return
                n += 1
                if fast is not None:
                    start = time.perf_counter() if hook.active or slow is not None else 0.0
                    reply = fast.answer(body)
                    if reply is not None:
                        self.transport.write(reply)  # type: ignore[union-attr]
                        if start:
                            self._fast_done(fast, start, slow)
                        continue
                self._handle(body)
                fast = self.fast if not self.caught_up else None  # a HELLO may have just opened or closed it
        finally:
            if self.state.draining:  # for the log of the drain
                self.state.drained += n


#: op code -> its handler, from the protocol's table of operations: op "get" is op_get
HANDLERS: dict[int, Handler] = {code: getattr(ConnectionBase, f"op_{name}") for code, name in OPS.items()}


def unread(transport: asyncio.Transport) -> int:
    """Bytes the peer sent that wait unread in the kernel's receive buffer."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0
