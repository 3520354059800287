"""A fast GET's request decoded in C from the connection's buffer (fstore._ext._conn)."""

from typing import Any

class RawGets:
    """One worker's C decoder of fast GETs, beside its FastGet (``fast``): it answers only
    what FastGet.answer would answer, with the same bytes, and leaves the rest to it."""

    def __init__(self, fast: Any) -> None: ...
    def reply_for(self, body: bytes) -> bytes | None:
        """The reply the C decoder gives for a frame's body, or None when the request is left
        to FastGet.answer (tests compare the two)."""
