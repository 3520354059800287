"""The asyncio client of the feature server (``AsyncClient``): a pool of pipelined
connections (each an fstore.serving.async_conn.AsyncConn), the same calls, deadlines and
errors as the blocking ``Client`` (fstore.serving.client, whose docstring states them).
Imports neither pyarrow nor LMDB.
"""
from __future__ import annotations

import asyncio
import itertools
import ssl as _ssl
import time
from typing import Any, Sequence

from ..errors import CLOSING_CODES, FstoreError, ServerUnreachable, ShuttingDown, Timeout, Unavailable
from .async_conn import AsyncConn
from .calls import (_CLOSED_BEFORE_HELLO, DEFAULT_PORT, OnlineResponse, RequestHook, Settings, _columns, _get_args,
                    _response, _tls_failed, CLIENTS, fallback_response, join, located, lost, pool_limit, report, split,
                    timed_out)
from .fallback import Defaults
from .handshake import greeting, reason
from .protocol import GET, HEALTH, HELLO, INFO, PUSH


async def _split_get(conn: AsyncConn, args: dict[str, Any], n: int, deadline: float) -> Any:
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
        self._conns: list[AsyncConn | None] = [None] * self._size
        self._opening: list[asyncio.Task | None] = [None] * self._size
        self._open: set[AsyncConn] = set()  # every connection not yet closed
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

    def _drop(self, conn: AsyncConn) -> None:
        conn.kill()
        self._open.discard(conn)
        for i, c in enumerate(self._conns):
            if c is conn:
                self._conns[i] = None

    async def _slot(self, slot: int, deadline: float) -> AsyncConn:
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

    async def _open_slot(self, slot: int) -> AsyncConn:
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

    async def _connect(self) -> AsyncConn:
        s, loop = self._s, asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: AsyncConn(s.where), s.host, s.port, ssl=s.ssl,
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

    async def _greet(self, conn: AsyncConn) -> None:
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
