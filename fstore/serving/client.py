"""Clients of the feature server: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

``get_online_features`` takes the same arguments and returns the same
``OnlineResponse`` as ``FeatureStore.get_online_features``, so code moves between
in-process and remote reads unchanged. Connections are pooled and reused; requests
carry ids, so one connection can have many in flight (``AsyncClient`` pipelines by
itself; ``Client.pipeline`` sends a batch before reading the replies). A GET that
meets a broken connection is retried on a fresh one; a PUSH never is, so it is never
written twice by the client.

A refused request raises the class the in-process call raises for the same mistake
(fstore.errors: ``UnknownObject``, ``EntityRowError``, ``BadRequest``...), rebuilt from
the error code the server sent. This module imports neither pyarrow nor LMDB.
"""
from __future__ import annotations

import asyncio
import itertools
import select
import socket
import threading
import time
from typing import Any, Sequence

from ..config import SERVER_KEYS
from ..errors import CLOSING_CODES, BadFrame, FstoreError
from ..online.entities import entity_columns
from ..online.entities import entity_rows as as_rows
from ..online.response import OnlinePlan, OnlineResponse
from ..repo.resolve import require_one
from .protocol import GET, HEALTH, HELLO, INFO, PUSH, VERSION, FrameReader, pack, unpack

DEFAULT_PORT: int = SERVER_KEYS["port"][1]
_MAX_REPLY = 1 << 30


def _columns(entity_rows: Any, want_rows: bool = True) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """(columns for the wire, rows for the response) from a list of dicts or a dict of lists.

    Ragged columns raise EntityRowError as in process (not an IndexError); a PUSH
    (``want_rows=False``) sends them as they are and the server names the problem.
    """
    if isinstance(entity_rows, dict):
        return entity_columns(entity_rows), as_rows(entity_rows) if want_rows else []
    rows = as_rows(entity_rows)
    return entity_columns(rows), rows


def _get_args(features: Sequence[str] | None, feature_service: str | None, cols: dict[str, list[Any]],
              full_feature_names: bool, include_metadata: bool) -> dict[str, Any]:
    require_one(features, feature_service)
    args: dict[str, Any] = {"entities": cols, "full_names": full_feature_names, "meta": include_metadata}
    if features is not None:
        args["features"] = [features] if isinstance(features, str) else list(features)
    else:
        args["service"] = feature_service
    return args


def _response(result: dict[str, Any], rows: list[dict[str, Any]]) -> OnlineResponse:
    n_views = max(result["view_of"], default=-1) + 1
    plan = OnlinePlan(result["names"], result["dtypes"], result["view_of"], [None] * n_views,  # type: ignore[list-item]
                      [""] * n_views, result.get("keys", []))
    status, stamps = result.get("status"), result.get("ts")  # absent: asked without metadata
    return OnlineResponse(rows, plan, result["values"], None if status is None else bytearray(status),
                          None if stamps is None else bytearray(stamps))


def _check(reply: Any, rid: int) -> Any:
    if type(reply) is not list or len(reply) != 3:
        raise BadFrame("the server sent a malformed reply")
    if reply[1]:
        return reply[2]
    raise FstoreError.from_wire(reply[2])


class _Conn:
    """One blocking connection: a socket, a frame reader, the next request id."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader(_MAX_REPLY)
        self.ids = itertools.count(1)
        self.pending: dict[int, Any] = {}
        self.broken = False  # the server said it closes this connection
        hello = self.request(HELLO, {"version": VERSION, "client": "fstore-py"})
        self.server = hello

    def send(self, op: int, args: dict[str, Any]) -> int:
        rid = next(self.ids) % (2**32 - 1) + 1
        self.sock.sendall(pack([op, rid, args]))
        return rid

    def receive(self, rid: int) -> Any:
        """The reply to ``rid`` (replies to other ids are kept for their callers)."""
        while rid not in self.pending:
            body = self.reader.next()
            if body is None:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("the server closed the connection")
                self.reader.feed(data)
                continue
            reply = unpack(body)
            self.pending[reply[0] if type(reply) is list and reply else 0] = reply
            if 0 in self.pending:
                self.broken = True
                _check(self.pending.pop(0), 0)
        try:
            return _check(self.pending.pop(rid), rid)
        except FstoreError as exc:
            self.broken |= exc.code in CLOSING_CODES
            raise

    def usable(self) -> bool:
        """Whether a pooled connection may carry a request: False once the server has
        closed it (idle timeout, restart) or said it would. Without this check a PUSH,
        which is never retried, failed on a connection that was dead before it was sent."""
        if self.broken or self.pending or self.reader.buffered:
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)  # readable when idle: end of stream, a reset, or bytes nobody asked for

    def request(self, op: int, args: dict[str, Any]) -> Any:
        return self.receive(self.send(op, args))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Client:
    """A blocking client for plain Python inference services. Thread-safe (a pool)."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, timeout: float = 1.0,
                 pool_size: int = 4, retries: int = 1) -> None:
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self._pool: list[_Conn] = []
        self._lock = threading.Lock()
        self._pool_size = pool_size

    def _take(self) -> _Conn:
        while True:
            with self._lock:
                if not self._pool:
                    break
                conn = self._pool.pop()
            if conn.usable():
                return conn
            conn.close()
        return _Conn(self.host, self.port, self.timeout)

    def _give(self, conn: _Conn) -> None:
        if conn.broken:
            conn.close()
            return
        with self._lock:
            if len(self._pool) < self._pool_size:
                self._pool.append(conn)
                return
        conn.close()

    def _call(self, op: int, args: dict[str, Any], retry: bool) -> Any:
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            conn = self._take()
            try:
                result = conn.request(op, args)
            except (ConnectionError, OSError) as exc:
                conn.close()
                if attempt + 1 == attempts:
                    raise ConnectionError(f"fstore server {self.host}:{self.port}: {exc}") from exc
                continue
            except FstoreError:
                self._give(conn)
                raise
            self._give(conn)
            return result
        raise AssertionError("unreachable")

    def get_online_features(self, features: Sequence[str] | None = None, *, entity_rows: Any,
                            feature_service: str | None = None, full_feature_names: bool = False,
                            include_metadata: bool = True) -> OnlineResponse:
        """As FeatureStore.get_online_features, over the network."""
        cols, rows = _columns(entity_rows)
        args = _get_args(features, feature_service, cols, full_feature_names, include_metadata)
        return _response(self._call(GET, args, retry=True), rows)

    def pipeline(self, requests: Sequence[dict[str, Any]]) -> list[OnlineResponse | FstoreError]:
        """Send many GETs (each a dict of get_online_features' arguments) on one connection
        before reading any reply; replies are matched by id, whatever their order."""
        conn = self._take()
        try:
            sent = []
            for req in requests:
                cols, rows = _columns(req["entity_rows"])
                args = _get_args(req.get("features"), req.get("feature_service"), cols,
                                 req.get("full_feature_names", False), req.get("include_metadata", True))
                sent.append((conn.send(GET, args), rows))
            out: list[OnlineResponse | FstoreError] = []
            for rid, rows in sent:
                try:
                    out.append(_response(conn.receive(rid), rows))
                except FstoreError as exc:
                    out.append(exc)
        except (ConnectionError, OSError):
            conn.close()
            raise
        self._give(conn)
        return out

    def push(self, view: str, rows: Any, *, offline: bool = False) -> int:
        """Write rows (a list of dicts or a dict of columns) to ``view``; never retried."""
        cols, _ = _columns(rows, want_rows=False)
        return self._call(PUSH, {"view": view, "rows": cols, "offline": offline}, retry=False)["written"]

    def health(self) -> dict[str, Any]:
        return self._call(HEALTH, {}, retry=True)

    def info(self) -> dict[str, Any]:
        return self._call(INFO, {}, retry=True)

    def close(self) -> None:
        with self._lock:
            for conn in self._pool:
                conn.close()
            self._pool.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncConn(asyncio.Protocol):
    """One asyncio connection: many requests in flight, futures matched by id."""

    def __init__(self) -> None:
        self.reader = FrameReader(_MAX_REPLY)
        self.waiters: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            body = self.reader.next()
            if body is None:
                return
            reply = unpack(body)
            rid = reply[0] if type(reply) is list and reply else 0
            if rid == 0:  # the server could not tie an error to a request: fail them all
                self._fail_all(FstoreError.from_wire(reply[2]))
                continue
            fut = self.waiters.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionError("the server closed the connection")
        self._fail_all(ConnectionError(str(self.lost)))

    def _fail_all(self, exc: Exception) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(exc)
        self.waiters.clear()

    async def request(self, op: int, args: dict[str, Any], timeout: float) -> Any:
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection lost")
        rid = next(self.ids) % (2**32 - 1) + 1
        loop = self.loop or asyncio.get_running_loop()
        fut = loop.create_future()
        self.waiters[rid] = fut
        self.transport.write(pack([op, rid, args]))
        # a timer on the future rather than asyncio.wait_for, which wraps every request in
        # a task of its own: that was a third of the client's CPU per request
        timer = loop.call_later(timeout, _expire, fut, timeout)
        try:
            reply = await fut
        finally:
            timer.cancel()
            self.waiters.pop(rid, None)
        return _check(reply, rid)


def _expire(fut: asyncio.Future, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError(f"no reply within {timeout} s"))


class AsyncClient:
    """An asyncio client: a pool of pipelined connections, used round-robin."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, timeout: float = 1.0,
                 pool_size: int = 1, retries: int = 1) -> None:
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self._size = pool_size
        self._conns: list[_AsyncConn | None] = [None] * pool_size
        self._next = itertools.count()
        self._lock: asyncio.Lock | None = None

    async def _conn(self, slot: int) -> _AsyncConn:
        conn = self._conns[slot]
        if conn is not None and conn.lost is None:
            return conn
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            conn = self._conns[slot]
            if conn is None or conn.lost is not None:
                loop = asyncio.get_running_loop()
                _, conn = await asyncio.wait_for(
                    loop.create_connection(_AsyncConn, self.host, self.port), self.timeout)
                try:
                    await conn.request(HELLO, {"version": VERSION, "client": "fstore-py-async"}, self.timeout)
                except BaseException:
                    if conn.transport is not None:  # never keep (or leak) a connection that failed its handshake
                        conn.transport.close()
                    raise
                self._conns[slot] = conn
        return conn

    async def _call(self, op: int, args: dict[str, Any], retry: bool) -> Any:
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            slot = next(self._next) % self._size
            try:
                conn = self._conns[slot]
                if conn is None or conn.lost is not None:  # (a coroutine less per request otherwise)
                    conn = await self._conn(slot)
                return await conn.request(op, args, self.timeout)
            except (ConnectionError, OSError) as exc:
                self._conns[slot] = None
                if attempt + 1 == attempts:
                    raise ConnectionError(f"fstore server {self.host}:{self.port}: {exc}") from exc
        raise AssertionError("unreachable")

    async def get_online_features(self, features: Sequence[str] | None = None, *, entity_rows: Any,
                                  feature_service: str | None = None, full_feature_names: bool = False,
                                  include_metadata: bool = True) -> OnlineResponse:
        """As FeatureStore.get_online_features, over the network."""
        cols, rows = _columns(entity_rows)
        args = _get_args(features, feature_service, cols, full_feature_names, include_metadata)
        return _response(await self._call(GET, args, retry=True), rows)

    async def push(self, view: str, rows: Any, *, offline: bool = False) -> int:
        cols, _ = _columns(rows, want_rows=False)
        return (await self._call(PUSH, {"view": view, "rows": cols, "offline": offline}, retry=False))["written"]

    async def health(self) -> dict[str, Any]:
        return await self._call(HEALTH, {}, retry=True)

    async def info(self) -> dict[str, Any]:
        return await self._call(INFO, {}, retry=True)

    async def close(self) -> None:
        for conn in self._conns:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        self._conns = [None] * self._size

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def wait_until_ready(host: str, port: int, timeout: float = 20.0) -> dict[str, Any]:
    """Poll HEALTH until the server is ready (for scripts and tests); raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with Client(host, port, timeout=1.0, retries=0) as c:
                h = c.health()
                if h.get("ready"):
                    return h
        except (ConnectionError, OSError, FstoreError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"fstore server {host}:{port} not ready after {timeout} s: {last}")
