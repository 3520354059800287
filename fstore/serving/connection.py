"""One client connection of the feature server: framing, handshake, one handler per
operation, back pressure, idle timeout, drain.

Bytes go into a compiled FrameReader; each whole frame is answered synchronously (an
online read is a few microseconds of LMDB and never blocks the loop) and the reply is
written at once. A GET of a known shape is answered by the compiled fast path
(fstore._ext._serve); everything else is decoded here and dispatched through
``HANDLERS``, built from the protocol's table of operations (``OPS``): a handler per
operation, ``op_<name>``. A handler raises an FstoreError to refuse its request; the
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
from typing import TYPE_CHECKING, Any, Callable

import msgpack

from .._ext._serve import get_reply
from .._ext._online import read
from .._ext._wire import read_packed
from .._version import __version__
from ..errors import (BadFrame, BadRequest, ComputedFeatureError, EntityRowError, FstoreError, HandshakeRequired,
                      Overloaded, PermissionDenied, ProtocolError, ShuttingDown, TooManyRows, Unauthenticated,
                      UnknownOp, UnsupportedVersion, as_fstore_error)
from ..monitoring.events import SERVER, SERVER_FAST, ServedRead, hook, worker_id
from ..online.plan import explain_bad_rows
from ..online.request import read_request
from ..repo.models import model_service
from ..times import now_us
from .protocol import GET, HELLO, MAX_CLIENT_NAME, MAX_REQUEST_ID, OPS, VERSION, FrameReader
from .info import info_result
from .pushes import QueuedPush
from .slowlog import describe_target, log_slow

if TYPE_CHECKING:
    from .auth import Token
    from .server import PreparedGet, ServerState

Handler = Callable[["ConnectionBase", int, dict[str, Any], float], "bytes | None"]


class ConnectionBase:
    """One client connection's logic, whichever asyncio protocol reads its bytes: ``Connection``
    (asyncio.Protocol, a bytes object per packet; TLS) or fstore.serving.fastconn's
    ``FastConnection`` (asyncio.BufferedProtocol, frames parsed and fast GETs answered in C).
    uvloop reads into a protocol's own buffer only if it is not an asyncio.Protocol, hence
    this base with none."""

    def __init__(self, state: "ServerState") -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.greeted = False
        self.token: "Token | None" = None  # the token HELLO showed (servers with tokens)
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

    def _emit(self, path: str, rid: int, args: dict[str, Any], prepared: "PreparedGet", values: Any,
              status: Any, stamps: Any, seconds: float) -> None:
        """Hand a GET just answered to the served-read listeners."""
        caller = args.get("request_id")
        hook.emit(ServedRead(now_us(), rid, path, worker_id(), prepared.service, prepared.features, prepared.full,
                             self.state.prepared_under.version, args.get("entities"),
                             caller if type(caller) is str else None, seconds,
                             prepared.plan, values, status, stamps, self.client,
                             model=args.get("model") if type(args.get("model")) is str else None))

    def _log_slow(self, op: str, seconds: float, args: dict[str, Any], prepared: "PreparedGet | None") -> None:
        """One slow-request line: a GET names its rows, service or features and request_id."""
        rows, target, caller = None, "", None
        if prepared is not None:
            ents = args.get("entities")
            rows = len(next(iter(ents.values()))) if ents else 0
            target, caller = describe_target(prepared.service, prepared.features), args.get("request_id")
        log_slow(op, rows, seconds, target, caller, self.client, self.transport)

    def op_hello(self, rid: int, args: dict[str, Any], start: float) -> bytes | None:
        if args.get("version") != VERSION:
            self._fatal(rid, UnsupportedVersion(f"this server speaks version {VERSION}", "version"))
            return None
        st = self.state
        client = args.get("client")
        if type(client) is str:  # fstore's clients end it with CR LF CR LF (docs/protocol.md, "Handshake")
            client = client.rstrip("\r\n")
        self.client = checked_name(client, "client", MAX_CLIENT_NAME)
        if st.tokens is not None:  # checked once per connection
            self.token = st.tokens.check(args.get("token"))
            if self.token is None:
                self.greeted, self.fast = False, None
                self._fatal(rid, Unauthenticated("this server needs a valid token in HELLO" if args.get("token")
                                                 is None else "the token is not valid"))
                return None
        self.greeted = True
        self.fast = st.fast if self.token is None or self.token.lacks(GET) is None else None
        lim = st.limits
        return st.pack([rid, True, {"version": VERSION, "server": f"fstore/{__version__}", "project": st.project,
                                    "max_frame": lim.max_frame, "max_rows": lim.max_rows}])

    def op_get(self, rid: int, args: dict[str, Any], start: float) -> bytes:
        st = self.state
        service, model = args.get("service"), args.get("model")
        if model is not None:  # never on the compiled path: no prepared shape has neither features nor service
            service = model_service(st.online.snapshot().doc, args.get("features"), service, model)
        prepared = st.prepared_get(args.get("features"), service, args.get("full_names", False))
        entities = args.get("entities")
        if type(entities) is not dict:
            raise BadRequest("entities must be a map of join key columns", "entities")
        n = -1
        for key, col in entities.items():
            if type(col) is not list:
                raise BadRequest("each entity column must be a list", f"entities.{key}")
            if n >= 0 and len(col) != n:
                raise BadRequest("entity columns differ in length", f"entities.{key}")
            n = len(col)
        n = max(n, 0)  # an empty map is zero rows, as entity_rows=[] in process (a client cannot name its columns)
        if n > st.limits.max_rows:
            raise TooManyRows(f"{n} entity rows; the limit is {st.limits.max_rows}", "entities")
        request_id = checked_name(args.get("request_id"), "request_id", MAX_REQUEST_ID)
        plan = prepared.plan
        recorders = hook.recorders  # the feature log: handed the read inside the compiled call (or its answer)
        served = (recorders, SERVER, None, prepared.service, prepared.full, prepared.version, request_id,
                  model if type(model) is str else None) if recorders and entities else None
        if prepared.request is not None and entities:  # request-time features (fstore.online.request)
            values, status, stamps = self._get_request(prepared.request, entities, n, served)
        elif entities:
            try:
                values, status, stamps = read_packed(st.online.store.env, plan, entities, None, served)
            except (KeyError, TypeError, ValueError, OverflowError):
                rows = [{k: entities[k][i] for k in entities} for i in range(n)]
                err = explain_bad_rows(rows, plan, EntityRowError("bad entity rows"))
                raise EntityRowError(str(err)) from None
        else:
            values, status, stamps = st._packer.pack([[] for _ in plan.names]), bytearray(), bytearray()
        self._served = (args, prepared, values, status, stamps)
        return get_reply(rid, prepared, values, status, stamps, args.get("meta", True), request_id)

    def _get_request(self, rplan: Any, entities: dict[str, list[Any]], n: int,
                     served: tuple[Any, ...] | None) -> tuple[bytes, bytearray, bytearray]:
        """A GET of a shape with request-time features: the compiled read of its stored
        features, then the functions (request fields are columns of ``entities``)."""
        st = self.state
        rows = [{k: col[i] for k, col in entities.items()} for i in range(n)]
        try:
            resp = read_request(read, st.online.store.env, rplan, rows, None, served)
        except (ComputedFeatureError, EntityRowError):
            raise
        except (KeyError, TypeError, ValueError, OverflowError):
            raise EntityRowError(str(explain_bad_rows(rows, rplan.inner, EntityRowError("bad entity rows")))) from None
        flat = resp._values
        values = st._packer.pack([flat[i * n:(i + 1) * n] for i in range(len(rplan.plan.names))])
        return values, resp._raw_status, resp._raw_ts

    def op_health(self, rid: int, args: dict[str, Any], start: float) -> bytes:
        st = self.state
        return st.pack([rid, True, {"live": True, "ready": not st.draining, "draining": st.draining,
                                    "registry_version": st.online.snapshot().version}])

    def op_info(self, rid: int, args: dict[str, Any], start: float) -> bytes:
        return self.state.pack([rid, True, info_result(self.state.online.snapshot())])

    def op_push(self, rid: int, args: dict[str, Any], start: float) -> None:
        """Queued for the writer thread; answered by ``push_done`` once its group is committed."""
        self.state.inflight += 1
        self.pushing += 1
        self.state.pushes.add(QueuedPush(self, rid, args, start))
        return None

    def push_done(self, rid: int, outcome: Any, start: float) -> None:
        """Answer a PUSH once its group is committed (or it was refused)."""
        st = self.state
        self.pushing -= 1
        if isinstance(outcome, Exception):
            self._reply_error(rid, as_fstore_error(outcome))
            return
        view, newest = outcome["view"], outcome["newest_us"]
        if newest is not None:  # for the data age gauge
            st.newest_pushed[view] = max(newest, st.newest_pushed.get(view, newest))
        self._write(st.pack([rid, True, {"written": outcome["written"], "offline": outcome["offline"]}]))
        seconds = time.perf_counter() - start
        if st.metrics:
            st.metrics.pushed(outcome["view"], outcome["written"])
            st.metrics.observe("push", seconds)
        if st.slow is not None and seconds >= st.slow:
            log_slow("push", outcome["written"], seconds, f"view={view!r}", None, self.client, self.transport)

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

    def __init__(self, state: "ServerState") -> None:
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


def checked_name(value: Any, field: str, limit: int) -> str | None:
    """An optional caller-chosen name (a GET's request_id, HELLO's client): None, or a str of
    1..``limit`` characters; BadRequest naming ``field`` otherwise (it goes into logs and events)."""
    if value is None or (type(value) is str and 0 < len(value) <= limit):
        return value
    got = f"a string of {len(value)} characters" if type(value) is str else f"a {type(value).__name__}"
    raise BadRequest(f"{field} must be a string of 1 to {limit} characters, got {got}", field)


def unread(transport: asyncio.Transport) -> int:
    """Bytes the peer sent that wait unread in the kernel's receive buffer."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0
