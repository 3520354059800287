"""The feature server's GET values as MessagePack, written straight from the stored rows."""

from typing import Any

def read_packed(env: Any, plan: Any, rows: dict[str, list[Any]], now_us: int | None = None,
                served: tuple[Any, ...] | None = None) -> tuple[bytes, bytearray, bytearray]:
    """A GET for the wire: (MessagePack of the values, an array per output of one value per
    row, written from the stored rows; statuses; timestamps), as msgpack-python would pack
    the values ``read`` decodes. ``served`` hands the read to its recorders (as ``read``)."""
