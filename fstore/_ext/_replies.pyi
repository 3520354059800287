"""The minimum of a reply fstore bench's load generator reads (an fstore reply, or RESP)."""

from collections.abc import Sequence

def fstore_reply(body: bytes) -> tuple[int, bool, bytes | None]:
    """(request id, ok, the status bin of an ok result or the code of an error, or None);
    ValueError when ``body`` is not a reply."""

def redis_reply(data: bytes, weights: Sequence[int] = ...) -> tuple[int, int, int, str | None]:
    """(bytes of the first complete reply, 0 when incomplete; weights of the keys present;
    of the keys missing; the error's first word or None); ValueError when it is not RESP."""
