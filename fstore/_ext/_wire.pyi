"""The feature server's GET values as MessagePack, written straight from the stored rows."""

from typing import Any

def read_packed(env: Any, plan: Any, rows: dict[str, list[Any]], now_us: int | None = None,
                served: tuple[Any, ...] | None = None) -> tuple[bytes, bytearray, bytearray]:
    """A GET for the wire: (MessagePack of the values, an array per output of one value per
    row, written from the stored rows; statuses; timestamps), as msgpack-python would pack
    the values ``read`` decodes. ``served`` hands the read to its recorders (as ``read``)."""

def get_reply(rid: int, prepared: Any, values: bytes, status: bytes | bytearray, stamps: bytes | bytearray,
              meta: Any, request_id: str | None = None) -> bytes:
    """The frame of a GET's reply for both the fast and the Python path, written in C in one
    buffer; ``request_id`` (already checked) is echoed as the map's last entry."""

def read_reply(env: Any, rid: int, prepared: Any, rows: dict[str, list[Any]], meta: bool,
               request_id: str | None, served: tuple[Any, ...] | None) -> tuple[bytes, int, int, bytearray, bytearray]:
    """read_packed and get_reply in one buffer: (frame, values_start, values_end, statuses,
    timestamps); the values sit at ``frame[values_start:values_end]``."""
