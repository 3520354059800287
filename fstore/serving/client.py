"""Clients of the feature server: ``Client`` (blocking, here) and ``AsyncClient`` (asyncio,
fstore.serving.async_client, also importable from here).

``get_online_features`` takes the same arguments and returns the same
``OnlineResponse`` as ``FeatureStore.get_online_features``, so code moves between
in-process and remote reads unchanged. Connections are pooled and reused; requests
carry ids, so one connection can have many in flight (``AsyncClient`` pipelines by
itself; ``Client.pipeline`` sends a batch before reading the replies). A GET that
meets a broken connection is retried on a fresh one; a PUSH never is, so it is never
written twice by the client.

A refused request raises the class the in-process call raises for the same mistake
(fstore.errors: ``UnknownObject``, ``EntityRowError``, ``BadRequest``...), rebuilt from
the error code the server sent. A server that cannot be reached raises
``ServerUnreachable`` (a ``ConnectionError``) naming host:port; one that is not an fstore
server ``NotAnFstoreServer``, one of another project than ``project=`` ``WrongProject``
(fstore.serving.handshake). ``token=`` is sent in HELLO, ``ssl=`` (an ``ssl.SSLContext``)
wraps each connection in TLS. A request the server refused while draining
(``SHUTTING_DOWN``: not run) is retried like a broken connection, so a client rides
through a restart or a takeover. This module imports neither pyarrow nor LMDB.
"""
from __future__ import annotations

import itertools
import select
import socket
import ssl as _ssl
import threading
import time
from typing import Any, Sequence

from ..errors import CLOSING_CODES, FstoreError, ServerUnreachable
from .async_client import AsyncClient
from .calls import (_CLOSED_BEFORE_HELLO, _MAX_REPLY, DEFAULT_PORT, OnlineResponse, _check, _columns,
                    _get_args, _response, _retry_after, _tls_failed)
from .handshake import decode_first, greeting, hello_args, not_fstore, reason
from .protocol import GET, HEALTH, HELLO, INFO, PUSH, FrameReader, pack, unpack

__all__ = ["DEFAULT_PORT", "AsyncClient", "Client", "wait_until_ready"]


class _Conn:
    """One blocking connection: a socket, a frame reader, the next request id."""

    def __init__(self, host: str, port: int, timeout: float, hello: dict[str, Any],
                 ssl: _ssl.SSLContext | None = None, project: str | None = None) -> None:
        self.where = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ServerUnreachable(f"cannot connect to fstore server at {self.where}: {reason(exc)}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl is not None:
            try:
                sock = ssl.wrap_socket(sock, server_hostname=host)
            except _ssl.SSLError as exc:
                sock.close()
                raise _tls_failed(self.where, exc) from None
            except OSError:
                sock.close()
                raise
        self.sock = sock
        self.reader = FrameReader(_MAX_REPLY)
        self.ids = itertools.count(1)
        self.pending: dict[int, Any] = {}
        self.broken = False  # the server said it closes this connection
        try:
            self.server = self._hello(hello, project)
        except BaseException:
            self.close()
            raise

    def _hello(self, args: dict[str, Any], project: str | None) -> dict[str, Any]:
        """Send HELLO and check its reply (fstore.serving.handshake)."""
        rid = self.send(HELLO, args)
        head = b""
        while len(head) < 4:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError(_CLOSED_BEFORE_HELLO)
            head += data
        bad = not_fstore(head, self.where)
        if bad is not None:
            raise bad
        self.reader.feed(head)
        while (body := self.reader.next()) is None:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError(_CLOSED_BEFORE_HELLO)
            self.reader.feed(data)
        try:
            return greeting(decode_first(body, self.where), rid, self.where, project)
        except FstoreError as exc:
            self.broken = True
            raise exc from None

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
    """A blocking client for plain Python inference services. Thread-safe (a pool).

    ``project``: refuse (WrongProject) a server of another project. ``token``: the secret of
    one of the server's ``server.auth.tokens``. ``ssl``: an ``ssl.SSLContext`` for a TLS
    server (``fstore.serving.tls.client_context`` builds one from PEM files).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, timeout: float = 1.0,
                 pool_size: int = 4, retries: int = 1, project: str | None = None, token: str | None = None,
                 ssl: _ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self.project, self.ssl = project, ssl
        self._hello = hello_args("fstore-py", token)
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
        return _Conn(self.host, self.port, self.timeout, self._hello, self.ssl, self.project)

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
        attempts = 1 + self.retries  # a broken connection: only when ``retry``
        for attempt in range(attempts):
            conn = None
            try:
                conn = self._take()
                result = conn.request(op, args)
            except FstoreError as exc:  # (before OSError: ServerUnreachable and PermissionDenied are ones)
                if conn is not None:
                    self._give(conn)
                if _retry_after(exc, attempt, attempts):
                    continue
                raise
            except (ConnectionError, OSError) as exc:
                if conn is not None:
                    conn.close()
                if attempt + 1 == attempts or not retry:
                    raise ServerUnreachable(f"fstore server at {self.host}:{self.port}: {reason(exc)}") from exc
                continue
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
