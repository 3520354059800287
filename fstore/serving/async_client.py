"""The asyncio client of the feature server (``AsyncClient``): a pool of pipelined
connections, the same calls and errors as the blocking ``Client`` (fstore.serving.client).
Imports neither pyarrow nor LMDB.
"""
from __future__ import annotations

import asyncio
import itertools
import socket
import ssl as _ssl
from typing import Any, Sequence

from ..errors import BadFrame, FstoreError, ProtocolError, ServerUnreachable
from .calls import (_CLOSED_BEFORE_HELLO, _MAX_REPLY, DEFAULT_PORT, OnlineResponse, _check, _columns,
                    _get_args, _response, _retry_after, _tls_failed)
from .handshake import greeting, hello_args, not_fstore, reason
from .protocol import GET, HEALTH, HELLO, INFO, PUSH, FrameReader, pack, unpack


class _AsyncConn(asyncio.Protocol):
    """One asyncio connection: many requests in flight, futures matched by id."""

    def __init__(self, where: str = "") -> None:
        self.where = where
        self.head: bytes | None = b""  # the first bytes, until checked (fstore.serving.handshake)
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
                reply = unpack(body) if body is not None else None
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

    def _abandon(self, exc: Exception) -> None:
        """The stream cannot be trusted: fail every request and close."""
        self.lost = exc
        self._fail_all(exc)
        if self.transport is not None:
            self.transport.close()

    async def request(self, op: int, args: dict[str, Any], timeout: float, check: bool = True) -> Any:
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
        return _check(reply, rid) if check else (rid, reply)


def _expire(fut: asyncio.Future, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError(f"no reply within {timeout} s"))


class AsyncClient:
    """An asyncio client: a pool of pipelined connections, used round-robin. ``project``,
    ``token`` and ``ssl`` as for ``Client``."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, timeout: float = 1.0,
                 pool_size: int = 1, retries: int = 1, project: str | None = None, token: str | None = None,
                 ssl: _ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self.project, self.ssl, self.where = project, ssl, f"{host}:{port}"
        self._hello = hello_args("fstore-py-async", token)
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
                conn = await self._connect()
                try:
                    rid, reply = await conn.request(HELLO, self._hello, self.timeout, check=False)
                    greeting(reply, rid, self.where, self.project)
                except ConnectionError as exc:
                    if conn.transport is not None:
                        conn.transport.close()
                    if isinstance(exc, FstoreError):
                        raise
                    raise ConnectionError(_CLOSED_BEFORE_HELLO) from None
                except BaseException:
                    if conn.transport is not None:  # never keep (or leak) a connection that failed its handshake
                        conn.transport.close()
                    raise
                self._conns[slot] = conn
        return conn

    async def _connect(self) -> _AsyncConn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _AsyncConn(self.where), self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl is not None else None), self.timeout)
        except _ssl.SSLError as exc:
            raise _tls_failed(self.where, exc) from None
        except OSError as exc:
            raise ServerUnreachable(f"cannot connect to fstore server at {self.where}: {reason(exc)}") from None
        return conn

    async def _call(self, op: int, args: dict[str, Any], retry: bool) -> Any:
        attempts = 1 + self.retries  # a broken connection: only when ``retry``
        for attempt in range(attempts):
            slot = next(self._next) % self._size
            try:
                conn = self._conns[slot]
                if conn is None or conn.lost is not None:  # (a coroutine less per request otherwise)
                    conn = await self._conn(slot)
                return await conn.request(op, args, self.timeout)
            except FstoreError as exc:  # (before OSError: ServerUnreachable and PermissionDenied are ones)
                if not _retry_after(exc, attempt, attempts):
                    raise
                self._conns[slot] = None
            except (ConnectionError, OSError) as exc:
                self._conns[slot] = None
                if attempt + 1 == attempts or not retry:
                    raise ServerUnreachable(f"fstore server at {self.where}: {reason(exc)}") from exc
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
