"""Framing of the fstore wire protocol (docs/protocol.md): u32 big-endian length + MessagePack body."""

from typing import Any, Callable

PREFIX: int

class FrameReader:
    """Accumulates bytes from a stream and cuts whole frame bodies out of them."""

    max_frame: int
    def __init__(self, max_frame: int) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer."""
    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
    def next(self) -> bytes | None:
        """The next complete frame body, or None until more bytes arrive; raises
        fstore.errors.BadFrame for a zero length, FrameTooLarge for a length above
        ``max_frame`` (before reading the body)."""

def frame(body: bytes) -> bytes:
    """``body`` with its 4-byte big-endian length prefix."""

class ReplyDecoder:
    """``unpack`` for one connection's replies: a GET's shape entries (names, dtypes, view_of,
    keys) decoded once and reused (the same lists) while their bytes repeat; anything
    unusual decoded by ``unpack`` whole, so errors are the same."""

    def __init__(self, unpack: Callable[[bytes], Any]) -> None: ...
    def __call__(self, body: bytes) -> Any: ...

class RequestFramer:
    """``frame(pack([op, rid, args]))`` for one connection's requests: a list of strings
    equal to the last one sent under its key is not packed again."""

    def __init__(self, pack: Callable[[Any], bytes]) -> None: ...
    def __call__(self, op: int, rid: int, args: dict[str, Any]) -> bytes: ...
