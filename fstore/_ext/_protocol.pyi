"""Framing of the fstore wire protocol (docs/protocol.md): u32 big-endian length + MessagePack body."""

PREFIX: int

class FrameError(ValueError):
    """A frame the protocol forbids: ``code`` is BAD_FRAME (zero length) or FRAME_TOO_LARGE."""

    code: str
    def __init__(self, code: str, message: str) -> None: ...

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
        """The next complete frame body, or None until more bytes arrive; raises FrameError
        for a zero length or a length above ``max_frame`` before reading the body."""

def frame(body: bytes) -> bytes:
    """``body`` with its 4-byte big-endian length prefix."""
