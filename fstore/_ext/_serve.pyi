"""The feature server's compiled fast path for GETs of known shapes (fstore.server)."""

from typing import Any

from ._counters import GetCounters

class FastGet:
    """A worker's LMDB environment, its prepared GET shapes and how long they stay valid."""

    env: Any
    prepared: dict[tuple[Any, ...], Any]
    valid_until: float
    max_rows: int
    max_request_id: int
    rid: int
    args: dict[str, Any]
    last: Any
    rows: int
    values: bytes
    status: bytearray
    stamps: bytearray
    hook: Any
    path: str | None
    counters: GetCounters | None
    def __init__(self, env: Any, prepared: dict[tuple[Any, ...], Any], max_rows: int,
                 max_request_id: int, hook: Any = None, path: str | None = None,
                 counters: GetCounters | None = None) -> None:
        """``hook``: the served-read hook, whose ``recorders`` are handed every read answered
        here (as the read's ``path``, fstore.monitoring.events.SERVER_FAST). ``counters``:
        the worker's GET metrics, counted in C for every GET answered here (rows, the time
        spent in ``answer``, statuses per view)."""
    def answer(self, body: bytes) -> bytes | None:
        """The reply frame of a well-formed GET of a prepared shape while the registry is
        fresh; None sends the request down the Python path. The GET answered last is left
        in ``rid``, ``args``, ``last`` (its prepared shape), ``rows``, ``values`` (packed),
        ``status`` and ``stamps`` for the served-read listeners. A ``request_id`` that is not
        a str of 1..``max_request_id`` characters takes the Python path (BAD_REQUEST)."""

    def reply(self, rid: int, prepared: Any, entities: dict[str, list[Any]], n: int, meta: Any,
              request_id: str | None, args: dict[str, Any] | None = None, served: tuple[Any, ...] | None = None,
              start: float = 0.0) -> bytes | None:
        """The reply frame of a GET already decoded and checked (by ``answer`` or by
        fstore._ext._conn's C decoder), else None (the read failed: the Python path explains);
        counted in the worker's GET metrics from ``start`` (monotonic seconds; 0: from now)."""

from ._wire import get_reply as get_reply  # the reply frame, shared with the Python path
