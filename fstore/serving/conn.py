"""One blocking connection of ``Client`` (fstore.serving.client): a socket, a frame reader and
the next request id, with every wait bounded by the call's deadline.

Every socket call here may raise OSError (``socket.timeout`` when the deadline passes) or
ConnectionError (end of stream); ``Client`` turns them into ``Unavailable``/``Timeout``.
"""
from __future__ import annotations

import itertools
import select
import socket
import ssl as _ssl
import time
from typing import Any

from ..errors import CLOSING_CODES, BadFrame, FstoreError, ServerUnreachable, Timeout
from .calls import _CLOSED_BEFORE_HELLO, _MAX_REPLY, Settings, _check, _tls_failed
from .handshake import decode_first, greeting, not_fstore, reason
from .protocol import HELLO, INFO, FrameReader, pack, unpack


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; socket.timeout once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("timed out")
    return left


class Conn:
    """One blocking connection, greeted (HELLO checked) when built."""

    def __init__(self, s: Settings, deadline: float, want_info: bool = False) -> None:
        self.where = s.where
        wait = min(s.connect_timeout, remaining(deadline))
        try:
            sock = socket.create_connection((s.host, s.port), timeout=wait)
        except socket.timeout:
            raise Timeout(f"cannot connect to fstore server at {self.where}: no connection within {wait:.3g} s",
                          s.host, s.port) from None
        except OSError as exc:
            raise ServerUnreachable(f"cannot connect to fstore server at {self.where}: {reason(exc)}",
                                    s.host, s.port) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if s.ssl is not None:
            try:
                sock.settimeout(remaining(deadline))
                sock = s.ssl.wrap_socket(sock, server_hostname=s.host)
            except _ssl.SSLError as exc:
                sock.close()
                raise _tls_failed(self.where, exc) from None
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.reader = FrameReader(_MAX_REPLY)
        self.ids = itertools.count(1)
        self.pending: dict[int, Any] = {}
        self.broken = False  # the server said it closes this connection, or a request timed out
        self.info: dict[str, Any] | None = None
        try:
            self.server = self._hello(s.hello, s.project, deadline)
            if want_info:
                self.info = self._info(deadline)
        except BaseException:
            self.close()
            raise

    @property
    def max_rows(self) -> int | None:
        return self.server.get("max_rows")

    def _hello(self, args: dict[str, Any], project: str | None, deadline: float) -> dict[str, Any]:
        """Send HELLO and check its reply (fstore.serving.handshake)."""
        rid = self.send(HELLO, args, deadline)
        head = b""
        while len(head) < 4:
            head += self._recv(deadline, _CLOSED_BEFORE_HELLO)
        bad = not_fstore(head, self.where)
        if bad is not None:
            raise bad
        self.reader.feed(head)
        while (body := self.reader.next()) is None:
            self.reader.feed(self._recv(deadline, _CLOSED_BEFORE_HELLO))
        try:
            return greeting(decode_first(body, self.where), rid, self.where, project)
        except FstoreError as exc:
            self.broken = True
            raise exc from None

    def _info(self, deadline: float) -> dict[str, Any] | None:
        """INFO (for fallback="defaults"); None when this server refuses it (a token without read)."""
        try:
            return self.request(INFO, {}, deadline)
        except FstoreError as exc:
            if exc.code in CLOSING_CODES:
                raise
            return None

    def _recv(self, deadline: float, closed: str = "the server closed the connection") -> bytes:
        self.sock.settimeout(remaining(deadline))
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError(closed)
        return data

    def send(self, op: int, args: dict[str, Any], deadline: float) -> int:
        rid = next(self.ids) % (2**32 - 1) + 1
        self.sock.settimeout(remaining(deadline))
        self.sock.sendall(pack([op, rid, args]))
        return rid

    def receive(self, rid: int, deadline: float) -> Any:
        """The reply to ``rid`` (replies to other ids are kept for their callers)."""
        while rid not in self.pending:
            body = self.reader.next()
            if body is None:
                self.reader.feed(self._recv(deadline))
                continue
            try:
                reply = unpack(body)
            except Exception:  # noqa: BLE001 - whatever it is, it is not a reply
                self.broken = True
                raise BadFrame(f"the server at {self.where} sent a frame that is not MessagePack") from None
            self.pending[reply[0] if type(reply) is list and reply else 0] = reply
            if 0 in self.pending:
                self.broken = True
                _check(self.pending.pop(0), 0)
        try:
            return _check(self.pending.pop(rid), rid)
        except FstoreError as exc:
            self.broken |= exc.code in CLOSING_CODES
            raise

    def request(self, op: int, args: dict[str, Any], deadline: float) -> Any:
        return self.receive(self.send(op, args, deadline), deadline)

    def usable(self) -> bool:
        """Whether a pooled connection may carry a request: False once the server has
        closed it (idle timeout, restart) or said it would. Without this check a PUSH,
        which is never retried, failed on a connection that was dead before it was sent."""
        if self.broken or self.pending or self.reader.buffered:
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)  # readable when idle: end of stream, a reset, or bytes nobody asked for

    def close(self) -> None:
        """Close the socket, waking a thread blocked reading it (``Client.close`` from another thread)."""
        self.broken = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
