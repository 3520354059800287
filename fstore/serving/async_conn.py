"""One asyncio connection of ``AsyncClient`` (fstore.serving.async_client): many requests in
flight on it, replies matched to their futures by request id, the frames of a loop turn
written together, and one timer for every deadline in flight.

Apart from the client, which keeps a pool of these and decides what to send again: this
is the wire (framing, the first bytes checked, deadlines), that is the policy. The
blocking client's connection is fstore.serving.conn.
"""
from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

from ..errors import BadFrame, FstoreError, ProtocolError
from .calls import _MAX_REPLY, _check
from .handshake import not_fstore, reason
from .protocol import FrameReader, decoder, framer

_NEVER = float("inf")  # no deadline in flight


class AsyncConn(asyncio.Protocol):
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
