"""Framing of the fstore wire protocol (docs/protocol.md): u32 big-endian length + MessagePack body."""

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
