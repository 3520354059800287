"""The feature server's connection reader in C (asyncio.BufferedProtocol's callbacks)."""

from typing import Any

class FrameProtocol:
    """Frames cut in C out of the connection's own buffer, fast GETs answered through
    ``fast`` (fstore._ext._serve.FastGet) with the replies of one read written at once;
    any other frame handed to ``self._handle`` (fstore.serving.connection) in order."""

    max_frame: int
    closing: bool
    caught_up: bool
    last_seen: float
    fast: Any
    state: Any
    transport: Any
    def _set_max_frame(self, max_frame: int) -> None:
        """Frames longer than this are refused (FRAME_TOO_LARGE) before their body is read."""
    def _unparsed(self) -> int:
        """Bytes received and not yet cut into frames."""
    def get_buffer(self, sizehint: int) -> memoryview:
        """The free end of the buffer (room for the whole frame begun, if any)."""
    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` more were read: answer every whole frame in them."""
