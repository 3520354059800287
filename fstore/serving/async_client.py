"""The asyncio client of the feature server (``AsyncClient``): a pool of pipelined
connections, the same calls, deadlines and errors as the blocking ``Client``
(fstore.serving.client, whose docstring states them). Imports neither pyarrow nor LMDB.
"""
from __future__ import annotations

import asyncio
import itertools
import socket
import ssl as _ssl
import time
from typing import Any, Sequence

from ..errors import (CLOSING_CODES, BadFrame, FstoreError, ProtocolError, ServerUnreachable, ShuttingDown, Timeout,
                      Unavailable)
from .calls import (_CLOSED_BEFORE_HELLO, _MAX_REPLY, DEFAULT_PORT, OnlineResponse, RequestHook, Settings, _check,
                    _columns, _get_args, _response, _tls_failed, CLIENTS, fallback_response, join, located, lost, pool_limit,
                    report, split, timed_out)
from .fallback import Defaults
from .handshake import greeting, not_fstore, reason
from .protocol import GET, HEALTH, HELLO, INFO, PUSH, FrameReader, decoder, framer


_NEVER = float("inf")


class _AsyncConn(asyncio.Protocol):
    """One asyncio connection: many requests in flight, futures matched by id."""

    def __init__(self, where: str = "") -> None:
        self.where = where
        self.head: bytes | None = b""  # the first bytes, until checked (fstore.serving.handshake)
        self.reader = FrameReader(_MAX_REPLY)
        self.decode = decoder()  # replies, their shape decoded once
        self.frame = framer()  # requests, their feature list packed once
        self.out: list[bytes] = []  # frames not yet written (see _flush)
        self.waiters: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.max_rows: int | None = None  # from HELLO
        self.deadlines: dict[int, float] = {}  # request id -> its deadline (the loop's clock)
        self.watch: asyncio.TimerHandle | None = None
        self.watch_at = _NEVER

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:  # is this an fstore server at all?
            self.head += data
            if len(self.head) < 4:
                return
            data, self.head = self.head, None
            bad = not_fstore(data, self.where)
            if bad is not None:
                self._abandon(bad)
                return
        self.reader.feed(data)
        while True:
            try:
                body = self.reader.next()
                reply = self.decode(body) if body is not None else None
            except ProtocolError as exc:
                self._abandon(exc)
                return
            except Exception:  # noqa: BLE001 - not MessagePack
                self._abandon(BadFrame(f"the server at {self.where} sent a frame that is not MessagePack"))
                return
            if body is None:
                return
            rid = reply[0] if type(reply) is list and reply else 0
            if rid == 0:  # the server could not tie an error to a request: fail them all
                self._fail_all(FstoreError.from_wire(reply[2] if type(reply) is list and len(reply) == 3 else None))
                continue
            fut = self.waiters.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the server closed the connection")
        self._fail_all(ConnectionError(reason(self.lost)))

    def _fail_all(self, exc: Exception) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(exc)
        self.waiters.clear()
        self.deadlines.clear()
        if self.watch is not None:
            self.watch.cancel()
            self.watch, self.watch_at = None, _NEVER

    def _abandon(self, exc: Exception) -> None:
        """The stream cannot be trusted: fail every request and close."""
        self.lost = exc
        self._fail_all(exc)
        if self.transport is not None:
            self.transport.close()

    async def request(self, op: int, args: dict[str, Any], deadline: float, check: bool = True) -> Any:
        """The reply to one request, by the loop's clock ``deadline`` (a builtin TimeoutError after it)."""
        transport = self.transport
        if self.lost is not None or transport is None or transport.is_closing():
            raise ConnectionError("connection lost")
        rid = next(self.ids) % (2**32 - 1) + 1
        fut = self.loop.create_future()  # type: ignore[union-attr]
        self.waiters[rid] = fut
        self.deadlines[rid] = deadline
        out = self.out
        out.append(self.frame(op, rid, args))
        if len(out) == 1:
            self.loop.call_soon(self._flush)  # type: ignore[union-attr]
        if deadline < self.watch_at:
            self._watch(deadline)
        try:
            reply = await fut
        finally:
            self.waiters.pop(rid, None)
            self.deadlines.pop(rid, None)
        return _check(reply, rid) if check else (rid, reply)

    def _flush(self) -> None:
        """Write the frames requested since the last flush, in one system call. Run by the loop
        after the tasks it woke have run: the requesters a batch of replies woke send their next
        requests together. A write per request was a third of the client's CPU (the kernel's
        loopback send), more than all of fstore's own code."""
        out, self.out = self.out, []
        transport = self.transport
        if out and self.lost is None and transport is not None and not transport.is_closing():
            transport.writelines(out)  # (a lost connection has failed their futures already)

    def _watch(self, at: float) -> None:
        """One timer per connection, at the earliest deadline in flight, rather than one per
        request: a uvloop timer started and stopped per request was a fifth of the client's
        CPU. (asyncio.wait_for, a task per request, was a third.)"""
        if self.watch is not None:
            self.watch.cancel()
        self.watch_at = at
        self.watch = self.loop.call_at(at, self._sweep)  # type: ignore[union-attr]

    def _sweep(self) -> None:
        """Fail the requests whose deadline has passed; watch the next one."""
        self.watch, self.watch_at = None, _NEVER
        now = self.loop.time()  # type: ignore[union-attr]
        for rid, deadline in list(self.deadlines.items()):
            if deadline <= now:
                fut = self.waiters.pop(rid, None)
                del self.deadlines[rid]
                if fut is not None and not fut.done():
                    fut.set_exception(TimeoutError("timed out"))
        if self.deadlines:
            self._watch(min(self.deadlines.values()))

    def kill(self) -> None:
        """Close at once, even when the loop that made the connection is closed (an earlier
        ``asyncio.run``): then asyncio's transport cannot close, so its socket is closed here."""
        transport = self.transport
        if transport is None:
            return
        self.lost = self.lost or ConnectionError("closed by the client")
        try:
            transport.abort()
        except RuntimeError:  # "Event loop is closed"
            sock = getattr(transport, "_sock", None)  # asyncio's selector transport keeps its socket here
            if sock is not None:
                sock.close()
        try:
            self._fail_all(ConnectionError("closed by the client"))
        except RuntimeError:  # the futures of a closed loop: nobody awaits them any more
            pass


async def _split_get(conn: _AsyncConn, args: dict[str, Any], n: int, deadline: float) -> Any:
    parts = split(args, n, conn.max_rows)
    results = await asyncio.gather(*(conn.request(GET, a, deadline) for a, _ in parts))
    return join(list(results), [size for _, size in parts])


def _retrieve(task: asyncio.Task) -> None:
    """A connect task's failure is raised to its waiters; if all gave up, it is dropped here."""
    if not task.cancelled():
        task.exception()


class AsyncClient:
    """An asyncio client: ``max_connections`` pipelined connections (``pool_size`` is its
    older name), used round-robin, each opened on its own (no lock across them). Settings
    as for ``Client``. Use it from one event loop at a time; used from a new loop (a
    second ``asyncio.run``) it drops the old loop's connections and opens new ones."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, timeout: float = 1.0,
                 connect_timeout: float | None = None, retries: int = 1, max_connections: int | None = None,
                 pool_size: int | None = None, project: str | None = None, token: str | None = None,
                 ssl: _ssl.SSLContext | None = None, client_name: str = "fstore-py-async",
                 on_request: RequestHook | None = None, fallback: str | None = None) -> None:
        self._s = Settings(host, port, timeout, connect_timeout, retries, pool_limit(max_connections, pool_size, 1),
                           project, token, ssl, client_name, on_request, fallback)
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self.max_connections = self._size = self._s.max_connections
        self.where = self._s.where
        self._conns: list[_AsyncConn | None] = [None] * self._size
        self._opening: list[asyncio.Task | None] = [None] * self._size
        self._open: set[_AsyncConn] = set()  # every connection not yet closed
        self._next = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._defaults: Defaults | None = None

    # ---- connections ------------------------------------------------------------------------

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forget (and close) the connections of another event loop."""
        for conn in list(self._open):
            conn.kill()
        self._open.clear()
        self._conns = [None] * self._size
        self._opening = [None] * self._size
        self._loop = loop

    def _drop(self, conn: _AsyncConn) -> None:
        conn.kill()
        self._open.discard(conn)
        for i, c in enumerate(self._conns):
            if c is conn:
                self._conns[i] = None

    async def _slot(self, slot: int, deadline: float) -> _AsyncConn:
        """The slot's connection, opened by one task that every caller of the slot awaits
        within its own deadline."""
        loop = self._loop
        task = self._opening[slot]
        if task is None:
            task = self._opening[slot] = loop.create_task(self._open_slot(slot))  # type: ignore[union-attr]
            task.add_done_callback(_retrieve)
        left = deadline - loop.time()  # type: ignore[union-attr]
        try:
            if left <= 0:
                raise TimeoutError
            return await asyncio.wait_for(asyncio.shield(task), left)
        except Timeout:
            raise
        except TimeoutError:
            raise timed_out(self._s, "no connection") from None

    async def _open_slot(self, slot: int) -> _AsyncConn:
        try:
            old = self._conns[slot]
            if old is not None:
                self._drop(old)
            conn = await self._connect()
            self._open.add(conn)
            try:
                await self._greet(conn)
            except BaseException:
                self._drop(conn)  # never keep (or leak) a connection that failed its handshake
                raise
            self._conns[slot] = conn
            return conn
        finally:
            self._opening[slot] = None

    async def _connect(self) -> _AsyncConn:
        s, loop = self._s, asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _AsyncConn(s.where), s.host, s.port, ssl=s.ssl,
                server_hostname=s.host if s.ssl is not None else None), s.connect_timeout)
        except _ssl.SSLError as exc:
            raise _tls_failed(s.where, exc) from None
        except TimeoutError:
            raise Timeout(f"cannot connect to fstore server at {s.where}: no connection within "
                          f"{s.connect_timeout:.3g} s", s.host, s.port) from None
        except OSError as exc:
            raise ServerUnreachable(f"cannot connect to fstore server at {s.where}: {reason(exc)}",
                                    s.host, s.port) from None
        return conn

    async def _greet(self, conn: _AsyncConn) -> None:
        """HELLO (and INFO, for fallback="defaults") within ``timeout``."""
        s, loop = self._s, asyncio.get_running_loop()
        deadline = loop.time() + s.timeout
        try:
            rid, reply = await conn.request(HELLO, s.hello, deadline, check=False)
            conn.max_rows = greeting(reply, rid, s.where, s.project).get("max_rows")
            if s.fallback is not None:
                try:
                    self._defaults = Defaults(await conn.request(INFO, {}, deadline))
                except FstoreError as exc:
                    if exc.code in CLOSING_CODES:
                        raise
        except FstoreError:
            raise
        except TimeoutError:
            raise timed_out(s, "no HELLO reply") from None
        except OSError:
            raise ServerUnreachable(f"fstore server at {s.where} {_CLOSED_BEFORE_HELLO}", s.host, s.port) from None

    # ---- one call ---------------------------------------------------------------------------

    async def _call(self, op: int, args: dict[str, Any], retry: bool) -> Any:
        """One request's result (no hook, no splitting: for tests and tools)."""
        return await self._run(op, args, retry)

    async def _run(self, op: int, args: dict[str, Any], retry: bool, rows: int = 0) -> Any:
        """One request's result within the call's deadline; a GET of more ``rows`` than the
        server's max_rows is sent in parts on the connection, pipelined, and joined."""
        loop = self._loop
        if loop is None or not loop.is_running():  # (one loop at a time: while ours runs, we run in it;
            loop = asyncio.get_running_loop()  # asyncio.get_running_loop costs a getpid system call)
            if loop is not self._loop:
                self._adopt(loop)
        deadline = loop.time() + self._s.timeout
        attempts = 1 + self._s.retries
        for attempt in range(attempts):
            slot = next(self._next) % self._size
            conn = self._conns[slot]
            try:
                if conn is None or conn.lost is not None:  # (a coroutine less per request otherwise)
                    conn = None
                    conn = await self._slot(slot, deadline)
                if rows and conn.max_rows is not None and rows > conn.max_rows:
                    return await _split_get(conn, args, rows, deadline)
                return await conn.request(op, args, deadline)
            except Timeout:
                if conn is not None:
                    self._drop(conn)
                raise
            except FstoreError as exc:  # (before OSError: Unavailable is a ConnectionError)
                last = attempt + 1 == attempts or loop.time() >= deadline  # (only on failure: a clock read less)
                if conn is None:  # could not connect: nothing was sent
                    if isinstance(exc, (ServerUnreachable, ShuttingDown)) and not last:  # nothing ran: reconnect
                        continue
                    raise located(exc, self._s) from None
                if exc.code in CLOSING_CODES or conn.lost is not None:
                    self._drop(conn)
                if isinstance(exc, ShuttingDown) and not last:
                    continue
                raise located(exc, self._s) from None
            except TimeoutError:  # its reply may still come: never reuse the connection
                self._drop(conn)  # type: ignore[arg-type]
                raise timed_out(self._s) from None
            except (OSError, EOFError) as exc:
                if conn is not None:
                    self._drop(conn)
                if retry and not (attempt + 1 == attempts or loop.time() >= deadline):
                    continue
                raise lost(self._s, exc) from None
        raise AssertionError("unreachable")

    async def _reported(self, name: str, rows: int, op: int, args: dict[str, Any], retry: bool) -> Any:
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            return await self._run(op, args, retry, rows if op == GET else 0)
        except BaseException as exc:
            error = exc
            raise
        finally:
            report(self._s.on_request, name, rows, time.perf_counter() - start, error)

    # ---- the operations ---------------------------------------------------------------------

    async def get_online_features(self, features: Sequence[str] | None = None, *, entity_rows: Any,
                                  feature_service: str | None = None, full_feature_names: bool = False,
                                  include_metadata: bool = True, request_id: str | None = None,
                                  model: str | None = None,
                                  fallback: Any = CLIENTS) -> OnlineResponse:
        """As FeatureStore.get_online_features, over the network (see Client.get_online_features)."""
        cols, rows = _columns(entity_rows)
        args = _get_args(features, feature_service, cols, full_feature_names, include_metadata, request_id,
                         model)
        n = len(rows)
        try:
            if self._s.on_request is None:
                reply = await self._run(GET, args, True, n)
            else:
                reply = await self._reported("get", n, GET, args, True)
            return _response(reply, rows, request_id)
        except Unavailable:
            resp = fallback_response(self._s.fallback if fallback is CLIENTS else fallback, self._defaults, model,
                                     features, feature_service, full_feature_names, include_metadata, rows,
                                     request_id)
            if resp is None:
                raise
            return resp

    async def push(self, view: str, rows: Any, *, offline: bool = False) -> int:
        cols, _ = _columns(rows, want_rows=False)
        args = {"view": view, "rows": cols, "offline": offline}
        n = len(next(iter(cols.values()), []))
        return (await self._reported("push", n, PUSH, args, False))["written"]

    async def health(self) -> dict[str, Any]:
        return await self._reported("health", 0, HEALTH, {}, True)

    async def info(self) -> dict[str, Any]:
        return await self._reported("info", 0, INFO, {}, True)

    async def close(self) -> None:
        """Close every connection this client opened; it may be used again afterwards."""
        for conn in list(self._open):
            conn.kill()
        self._open.clear()
        self._conns = [None] * self._size
        await asyncio.sleep(0)  # the transports close their sockets on the loop's next turn

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
