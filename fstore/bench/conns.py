"""The connections of a bench run, opened and greeted in Python before the compiled loop
takes them over (non-blocking, TCP_NODELAY).

An fstore connection is greeted with HELLO as fstore's clients greet (docs/protocol.md:
``client`` last, ending in CR LF CR LF, so an HTTP server answers at once), the token
included when one is given; a Redis one with PING. Failing to connect or to be greeted is
one error naming host:port (ServerUnreachable, NotAnFstoreServer, or the error HELLO got).
"""
from __future__ import annotations

import socket
import struct
from typing import Any

import msgpack

from .._ext._constants import Op
from ..errors import FstoreError, NotAnFstoreServer, ServerUnreachable, Timeout
from ..serving.handshake import decode_first, greeting, hello_args, not_fstore

CLIENT_NAME = "fstore-bench"  # HELLO's client name (hello_args ends it with CR LF CR LF)


def _connect(host: str, port: int, timeout: float, what: str) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise Timeout(f"cannot connect to {what} at {host}:{port}: no answer within {timeout:g} s", host, port) from None
    except OSError as exc:
        raise ServerUnreachable(f"cannot connect to {what} at {host}:{port}: {exc.strerror or exc}",
                                host, port) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv(sock: socket.socket, n: int, host: str, port: int, what: str) -> bytes:
    out = b""
    try:
        while len(out) < n:
            data = sock.recv(n - len(out))
            if not data:
                raise ServerUnreachable(f"{what} at {host}:{port} closed the connection before answering "
                                        "(does it need TLS, or a client certificate?)", host, port)
            out += data
    except socket.timeout:
        raise Timeout(f"{what} at {host}:{port} did not answer within {sock.gettimeout():g} s", host, port) from None
    except OSError as exc:
        raise ServerUnreachable(f"{what} at {host}:{port}: {exc.strerror or exc}", host, port) from None
    return out


def _open(host: str, port: int, n: int, timeout: float, what: str, greeting: bytes,
          check: Any) -> list[socket.socket]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(_connect(host, port, timeout, what))
        for s in socks:
            s.sendall(greeting)
        for s in socks:
            check(s)
        for s in socks:
            s.setblocking(False)
    except BaseException:
        close(socks)
        raise
    return socks


def hello(token: str | None) -> bytes:
    """The HELLO frame fstore's clients send (serving.handshake.hello_args)."""
    body = msgpack.packb([int(Op.OP_HELLO), 1, hello_args(CLIENT_NAME, token)], use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def open_fstore(host: str, port: int, n: int, token: str | None = None, timeout: float = 5.0) -> list[socket.socket]:
    """``n`` greeted connections to the fstore server at host:port, each reply checked as
    fstore's clients check theirs (fstore.serving.handshake)."""
    what, where = "fstore server", f"{host}:{port}"

    def check(s: socket.socket) -> None:
        head = _recv(s, 4, host, port, what)
        wrong = not_fstore(head, where)
        if wrong is not None:
            raise wrong
        body = _recv(s, int.from_bytes(head, "big"), host, port, what)
        try:
            greeting(decode_first(body, where), 1, where, None)
        except NotAnFstoreServer:
            raise
        except FstoreError as err:
            err.args = (f"fstore server at {where} refused HELLO: {err}",)
            raise

    return _open(host, port, n, timeout, what, hello(token), check)


def open_redis(host: str, port: int, n: int, timeout: float = 5.0) -> list[socket.socket]:
    """``n`` connections to the Redis server at host:port, each answering PING."""
    what = "Redis server"

    def check(s: socket.socket) -> None:
        line = b""
        while not line.endswith(b"\r\n") and len(line) < 512:
            line += _recv(s, 1, host, port, what)
        if line != b"+PONG\r\n":
            raise ServerUnreachable(f"the Redis server at {host}:{port} answered PING with {line[:80]!r}", host, port)

    return _open(host, port, n, timeout, what, b"*1\r\n$4\r\nPING\r\n", check)


def close(socks: list[socket.socket]) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
