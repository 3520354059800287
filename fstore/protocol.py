"""The wire protocol's vocabulary, shared by the server and the clients (docs/protocol.md)."""
from __future__ import annotations

from typing import Any

import msgpack

from ._ext._protocol import PREFIX, FrameError, FrameReader, frame

VERSION = 1
DEFAULT_MAX_FRAME = 8 << 20
DEFAULT_MAX_ROWS = 10_000

HELLO, GET, PUSH, HEALTH, INFO = 1, 2, 3, 4, 5
OP_NAMES = {HELLO: "hello", GET: "get", PUSH: "push", HEALTH: "health", INFO: "info"}

BAD_FRAME = "BAD_FRAME"
FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
HANDSHAKE_REQUIRED = "HANDSHAKE_REQUIRED"
UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
UNKNOWN_OP = "UNKNOWN_OP"
BAD_REQUEST = "BAD_REQUEST"
TOO_MANY_ROWS = "TOO_MANY_ROWS"
OVERLOADED = "OVERLOADED"
SHUTTING_DOWN = "SHUTTING_DOWN"
INTERNAL = "INTERNAL"

__all__ = ["PREFIX", "FrameError", "FrameReader", "frame", "pack", "unpack", "ProtocolError", "VERSION"]

_packer = msgpack.Packer(datetime=True, use_bin_type=True)


def pack(obj: Any) -> bytes:
    """A whole frame (length prefix and MessagePack body) for ``obj``."""
    return frame(_packer.pack(obj))


def unpack(body: bytes) -> Any:
    """A frame body decoded; timestamps come back as aware datetimes."""
    return msgpack.unpackb(body, raw=False, timestamp=3, strict_map_key=False)


class ProtocolError(Exception):
    """An error reply: ``code``, ``message`` and the offending ``field``.

    Raised by the server's handlers to answer one request, and by the clients when a
    reply says ok = false.
    """

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code, self.message, self.field = code, message, field
        super().__init__(f"{code}: {message}" + (f" (field {field})" if field else ""))

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "field": self.field}
