"""The feature server's compiled fast path for GETs of known shapes (fstore.server)."""

from typing import Any

class FastGet:
    """A worker's LMDB environment, its prepared GET shapes and how long they stay valid."""

    env: Any
    prepared: dict[tuple[Any, ...], Any]
    valid_until: float
    max_rows: int
    def __init__(self, env: Any, prepared: dict[tuple[Any, ...], Any], max_rows: int) -> None: ...
    def answer(self, body: bytes) -> tuple[bytes, int, bytearray] | None:
        """(reply frame, entity rows, statuses) for a well-formed GET of a prepared shape
        while the registry is fresh; None sends the request down the Python path."""

def get_reply(rid: int, prepared: Any, values: bytes, status: bytes | bytearray, stamps: bytes | bytearray,
              meta: Any) -> bytes:
    """The frame of a GET's reply for both the fast and the Python path."""
