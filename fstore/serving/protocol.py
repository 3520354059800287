"""The wire protocol's vocabulary, shared by the server and the clients (docs/protocol.md).

The operations come from fstore/_ext/_constants.pxd (``Op``), where the compiled fast
path reads them too; the error codes are the ``code`` of the classes in fstore.errors.
"""
from __future__ import annotations

from typing import Any

import msgpack

from .._ext._constants import Op
from .._ext._protocol import PREFIX, FrameReader, ReplyDecoder, RequestFramer, frame

VERSION = 1
MAX_REQUEST_ID = 128   # characters of a GET's optional ``request_id`` (the caller's own id, echoed)
MAX_CLIENT_NAME = 128  # characters of HELLO's ``client`` name (after its trailing CR LF CR LF)

#: op code -> op name ("hello", "get", ...): the server's dispatch table and its metrics labels
OPS: dict[int, str] = {int(op): op.name[3:].lower() for op in Op}
HELLO, GET, PUSH, HEALTH, INFO = (int(Op.OP_HELLO), int(Op.OP_GET), int(Op.OP_PUSH), int(Op.OP_HEALTH),
                                  int(Op.OP_INFO))

__all__ = ["GET", "HEALTH", "HELLO", "INFO", "MAX_CLIENT_NAME", "MAX_REQUEST_ID", "OPS", "PREFIX", "PUSH",
           "VERSION", "FrameReader", "decoder", "frame", "framer", "pack", "unpack"]

_packer = msgpack.Packer(datetime=True, use_bin_type=True)


def pack(obj: Any) -> bytes:
    """A whole frame (length prefix and MessagePack body) for ``obj``."""
    return frame(_packer.pack(obj))


def unpack(body: bytes) -> Any:
    """A frame body decoded; timestamps come back as aware datetimes."""
    return msgpack.unpackb(body, raw=False, timestamp=3, strict_map_key=False)


def framer() -> RequestFramer:
    """``pack([op, rid, args])`` for one connection's requests, reusing the bytes of a
    feature list sent before (fstore._ext._protocol.RequestFramer)."""
    return RequestFramer(_packer.pack)


def decoder() -> ReplyDecoder:
    """``unpack`` for one connection's replies, decoding a GET's shape once
    (fstore._ext._protocol.ReplyDecoder)."""
    return ReplyDecoder(unpack)
