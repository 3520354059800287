"""Clients of the feature server: ``Client`` (blocking, here) and ``AsyncClient`` (asyncio,
fstore.serving.async_client, also importable from here). docs/client.md says how a service
uses them.

``get_online_features`` takes the same arguments and returns the same ``OnlineResponse``
as ``FeatureStore.get_online_features`` (entity rows as a list of dicts, a dict of lists or
NumPy arrays, or a DataFrame), so code moves between in-process and remote reads
unchanged. A GET of more rows than the server's ``max_rows`` (said in HELLO) is sent in
parts, pipelined on one connection, and the parts' replies are joined in order.

Deadlines: ``timeout`` bounds the whole call: waiting for a free connection, connecting
(also bounded by ``connect_timeout``), HELLO, sending, the reply and any retries; past it
the call raises ``Timeout``. A GET that meets a broken connection is sent again on a fresh
one while time remains (up to ``retries`` times); a PUSH only when it was surely not run
(the connection could not be opened, or the server said SHUTTING_DOWN).

Errors: a refused request raises the class the in-process call raises (fstore.errors),
rebuilt from the server's code. Every way the server can fail to answer raises an
``Unavailable`` (a ``ConnectionError``) naming host:port (``.host``, ``.port``):
``ServerUnreachable``, ``Timeout`` (also a ``TimeoutError``), ``ShuttingDown``,
``Overloaded``; never a bare socket error. Not an fstore server: ``NotAnFstoreServer``;
another project than ``project=``: ``WrongProject``. This module imports neither pyarrow
nor LMDB.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Sequence

from ..errors import FstoreError, ServerUnreachable, ShuttingDown, Timeout, Unavailable
from .async_client import AsyncClient
from .calls import (DEFAULT_PORT, OnlineResponse, RequestHook, Settings, _columns, _get_args, _response,
                    CLIENTS, fallback_response, join, located, lost, pool_limit, report, split, timed_out)
from .conn import Conn
from .fallback import Defaults
from .protocol import GET, HEALTH, INFO, PUSH

__all__ = ["DEFAULT_PORT", "AsyncClient", "Client", "wait_until_ready"]


class Client:
    """A blocking client for threaded inference services: share one per process.

    Thread-safe: each call borrows one connection of the pool for its whole duration, so
    replies can never cross between threads; at most ``max_connections`` are open at once
    (``pool_size`` is its older name), and a call that finds all in use waits for one
    within its deadline. ``timeout``: seconds for the whole call, retries included;
    ``connect_timeout``: at most this long to open a connection (within ``timeout``).
    ``project``: refuse (WrongProject) a server of another project. ``token``: the secret of
    one of the server's ``server.auth.tokens``. ``ssl``: an ``ssl.SSLContext`` for a TLS
    server (``fstore.serving.tls.client_context`` builds one). ``client_name``: sent in HELLO
    (the server logs it). ``on_request(op, rows, seconds, outcome)``: called once per call,
    after retries (outcome ``"ok"`` or the error's code). ``fallback="defaults"``: when the
    server is unavailable, a GET returns the declared defaults with status UNAVAILABLE.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, timeout: float = 1.0,
                 connect_timeout: float | None = None, retries: int = 1, max_connections: int | None = None,
                 pool_size: int | None = None, project: str | None = None, token: str | None = None,
                 ssl: Any = None, client_name: str = "fstore-py", on_request: RequestHook | None = None,
                 fallback: str | None = None) -> None:
        self._s = Settings(host, port, timeout, connect_timeout, retries, pool_limit(max_connections, pool_size, 8),
                           project, token, ssl, client_name, on_request, fallback)
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self.max_connections = self._s.max_connections
        self._pool: list[Conn] = []
        self._open: set[Conn] = set()  # every connection not yet closed, idle or in use
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._defaults: Defaults | None = None

    # ---- the pool --------------------------------------------------------------------------

    def _take(self, deadline: float) -> Conn:
        """A greeted connection for this thread alone (Timeout if none frees up in time)."""
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise timed_out(self._s, f"no free connection (max_connections={self.max_connections})")
        try:
            while True:
                with self._lock:
                    conn = self._pool.pop() if self._pool else None
                if conn is None:
                    break
                if conn.usable():
                    return conn
                self._discard(conn)
            conn = Conn(self._s, deadline, want_info=self._s.fallback is not None)
            with self._lock:
                self._open.add(conn)
            if conn.info is not None:
                self._defaults = Defaults(conn.info)
            return conn
        except BaseException:
            self._slots.release()
            raise

    def _give(self, conn: Conn) -> None:
        """Return a borrowed connection: kept if it can carry another request, else closed."""
        try:
            if conn.broken or conn.pending:
                self._discard(conn)
                return
            with self._lock:
                if conn in self._open:
                    self._pool.append(conn)
                    return
            conn.close()
        finally:
            self._slots.release()

    def _discard(self, conn: Conn) -> None:
        conn.close()
        with self._lock:
            self._open.discard(conn)

    # ---- one call ---------------------------------------------------------------------------

    def _call(self, op: int, args: dict[str, Any], retry: bool) -> Any:
        """One request's result (no hook, no splitting: for tests and tools)."""
        return self._run(lambda c, d: c.request(op, args, d), retry)

    def _run(self, work: Any, retry: bool) -> Any:
        """``work(conn, deadline)`` on a pooled connection within the call's deadline, sent
        again (``retry``: a GET) on a fresh connection after a connection failure."""
        deadline = time.monotonic() + self._s.timeout
        attempts = 1 + self._s.retries
        for attempt in range(attempts):
            last = attempt + 1 == attempts or time.monotonic() >= deadline
            conn = None
            try:
                conn = self._take(deadline)
                result = work(conn, deadline)
            except Timeout:
                if conn is not None:
                    self._discard(conn)
                    self._slots.release()
                raise
            except FstoreError as exc:  # (before OSError: Unavailable is a ConnectionError)
                if conn is None:  # could not connect: nothing was sent
                    if isinstance(exc, (ServerUnreachable, ShuttingDown)) and not last:  # nothing ran: reconnect
                        continue
                    raise located(exc, self._s) from None
                self._give(conn)
                if isinstance(exc, ShuttingDown) and not last:
                    continue
                raise located(exc, self._s) from None
            except socket.timeout:
                if conn is not None:  # its reply may still come: never reuse the connection
                    self._discard(conn)
                    self._slots.release()
                raise timed_out(self._s) from None
            except (OSError, EOFError) as exc:  # ConnectionError, a reset, a broken pipe, ssl.SSLError
                if conn is not None:
                    self._discard(conn)
                    self._slots.release()
                if retry and not last:
                    continue
                raise lost(self._s, exc) from None
            self._give(conn)
            return result
        raise AssertionError("unreachable")

    def _reported(self, name: str, rows: int, work: Any, retry: bool) -> Any:
        if self._s.on_request is None:
            return self._run(work, retry)
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            return self._run(work, retry)
        except BaseException as exc:
            error = exc
            raise
        finally:
            report(self._s.on_request, name, rows, time.perf_counter() - start, error)

    # ---- the operations ---------------------------------------------------------------------

    def get_online_features(self, features: Sequence[str] | None = None, *, entity_rows: Any,
                            feature_service: str | None = None, full_feature_names: bool = False,
                            include_metadata: bool = True, request_id: str | None = None, model: str | None = None,
                            fallback: Any = CLIENTS) -> OnlineResponse:
        """As FeatureStore.get_online_features, over the network. ``request_id``: your id for
        the request, sent to the server (its served-read listeners and feature log see it)
        and echoed as ``response.request_id``. ``fallback``: this call's, instead of the
        client's (None: raise)."""
        cols, rows = _columns(entity_rows)
        args = _get_args(features, feature_service, cols, full_feature_names, include_metadata, request_id,
                         model)

        def work(conn: Conn, deadline: float) -> Any:
            parts = split(args, len(rows), conn.max_rows)
            rids = [conn.send(GET, a, deadline) for a, _ in parts]  # pipelined on one connection
            return join([conn.receive(rid, deadline) for rid in rids], [n for _, n in parts])

        try:
            return _response(self._reported("get", len(rows), work, True), rows, request_id)
        except Unavailable:
            resp = fallback_response(self._s.fallback if fallback is CLIENTS else fallback, self._defaults, model,
                                     features, feature_service, full_feature_names, include_metadata, rows,
                                     request_id)
            if resp is None:
                raise
            return resp

    def pipeline(self, requests: Sequence[dict[str, Any]]) -> list[OnlineResponse | FstoreError]:
        """Send many GETs (each a dict of get_online_features' arguments) on one connection
        before reading any reply; replies are matched by id, whatever their order. The
        deadline covers the whole batch."""
        def work(conn: Conn, deadline: float) -> list[OnlineResponse | FstoreError]:
            sent = []
            for req in requests:
                cols, rows = _columns(req["entity_rows"])
                args = _get_args(req.get("features"), req.get("feature_service"), cols,
                                 req.get("full_feature_names", False), req.get("include_metadata", True),
                                 req.get("request_id"), req.get("model"))
                sent.append((conn.send(GET, args, deadline), rows, req.get("request_id")))
            out: list[OnlineResponse | FstoreError] = []
            for rid, rows, request_id in sent:
                try:
                    out.append(_response(conn.receive(rid, deadline), rows, request_id))
                except FstoreError as exc:
                    out.append(exc)
            return out
        return self._reported("get", len(requests), work, False)

    def push(self, view: str, rows: Any, *, offline: bool = False) -> int:
        """Write rows (a list of dicts, a dict of columns or a DataFrame) to ``view``; sent
        again only when it surely was not run."""
        cols, _ = _columns(rows, want_rows=False)
        args = {"view": view, "rows": cols, "offline": offline}
        n = len(next(iter(cols.values()), []))
        return self._reported("push", n, lambda c, d: c.request(PUSH, args, d), False)["written"]

    def health(self) -> dict[str, Any]:
        return self._reported("health", 0, lambda c, d: c.request(HEALTH, {}, d), True)

    def info(self) -> dict[str, Any]:
        return self._reported("info", 0, lambda c, d: c.request(INFO, {}, d), True)

    def close(self) -> None:
        """Close every connection this client opened, idle or in use (a call in progress on
        another thread fails with Unavailable). The client may be used again afterwards."""
        with self._lock:
            conns = list(self._open)
            self._open.clear()
            self._pool.clear()
        for conn in conns:
            conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until_ready(host: str, port: int, timeout: float = 20.0, **client: Any) -> dict[str, Any]:
    """Poll HEALTH until the server is ready (for scripts and tests); raises TimeoutError.
    ``client``: Client's ``token``, ``ssl``, ``project``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with Client(host, port, timeout=1.0, retries=0, **client) as c:
                h = c.health()
                if h.get("ready"):
                    return h
        except (ConnectionError, OSError, FstoreError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"fstore server {host}:{port} not ready after {timeout} s: {last}")
