"""Errors of the conversation with a server (docs/protocol.md): frames and the handshake, a
server that cannot answer now, its port, who may use it, and what a client reached; and the
codes after which the server closes the connection.
"""
from __future__ import annotations

from .base import FstoreError, InvalidArgument


class ProtocolError(FstoreError, code="PROTOCOL_ERROR"):
    """A conversation with the server that broke the protocol; the server closes the connection."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadFrame(ProtocolError, ValueError, code="BAD_FRAME"):
    """A frame that is not a request: a zero length, not MessagePack, not [op, id, args]."""


class FrameTooLarge(BadFrame, code="FRAME_TOO_LARGE"):
    """A frame longer than the receiver's limit."""


class HandshakeRequired(ProtocolError, code="HANDSHAKE_REQUIRED"):
    """A request before HELLO."""


class UnsupportedVersion(ProtocolError, code="UNSUPPORTED_VERSION"):
    """HELLO asked for a protocol version this server does not speak."""


class UnknownOp(ProtocolError, code="UNKNOWN_OP"):
    """An op code the server does not know; the connection goes on."""


class Unavailable(FstoreError, ConnectionError, code="UNAVAILABLE"):
    """The server cannot take the request now; another server (or a later try) can.

    Raised by the clients for every way a server can fail to answer (refused, reset, closed,
    TLS failure, draining, at its limit), never a bare socket error; ``host`` and ``port``
    name the server (None when it is not known, e.g. rebuilt from a code alone)."""
    host: str | None = None
    port: int | None = None

    def __init__(self, message: str = "", host: str | None = None, port: int | None = None) -> None:
        super().__init__(message)
        self.host, self.port = host, port


class Overloaded(Unavailable, code="OVERLOADED"):
    """The server is at its connection limit."""


class ShuttingDown(Unavailable, code="SHUTTING_DOWN"):
    """The server is draining after SIGTERM: the request was not run, so it may be sent elsewhere."""


class ServerUnreachable(Unavailable, code="UNREACHABLE"):
    """A client could not connect to (or lost) the server; the message names host:port."""


class Timeout(Unavailable, TimeoutError, code="TIMEOUT"):
    """A client call's deadline (``timeout``) passed before its reply came: connecting, the
    handshake, waiting for a free connection, the reply and any retries all count."""


class PortInUse(FstoreError, OSError, code="PORT_IN_USE"):
    """``fstore serve`` on a port something else listens on; names the port and, when known,
    the project, repository and pid holding it."""


class TakeoverRefused(FstoreError, RuntimeError, code="TAKEOVER_REFUSED"):
    """``fstore serve --takeover`` against a server of another repository or project, or one
    that did not hand its port over."""


class InsecureBind(InvalidArgument, code="INSECURE_BIND"):
    """A server without auth tokens asked to listen on a non-loopback address without ``--insecure``."""


class Unauthenticated(FstoreError, PermissionError, code="UNAUTHENTICATED"):
    """No valid token in HELLO (or a request before it) on a server with tokens; the connection is closed."""


class PermissionDenied(FstoreError, PermissionError, code="PERMISSION_DENIED"):
    """The connection's token lacks the scope an operation needs; the message names the scope."""


class NotAnFstoreServer(FstoreError, ConnectionError, code="NOT_AN_FSTORE_SERVER"):
    """What a client reached does not speak the fstore protocol (an HTTP server, the metrics port)."""


class WrongProject(FstoreError, ConnectionError, code="WRONG_PROJECT"):
    """The server serves another project than the client's ``project=``; names both and host:port."""


#: codes after which the server closes the connection (docs/protocol.md)
CLOSING_CODES = frozenset({BadFrame.code, FrameTooLarge.code, HandshakeRequired.code, UnsupportedVersion.code,
                           Overloaded.code, ShuttingDown.code, Unauthenticated.code})
