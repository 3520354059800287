"""fstore bench's load generator: raw non-blocking sockets and epoll, the GIL released for the run."""

from collections.abc import Sequence
from typing import Any

PROTOCOLS: dict[str, int]

class Worker:
    """One thread's connections (greeted, non-blocking fds) and frames, and what it measured."""

    sent: int
    completed: int
    ok: int
    failed: int
    max_ns: int
    lost: int
    def __init__(self, fds: list[int], frames: bytes, offsets: Sequence[int], protocol: str = "fstore",
                 id_offset: int = -1, weights: Sequence[int] | None = None, max_inflight: int = 1,
                 seconds: float = 1.0) -> None: ...
    def run(self, start_ns: int, warmup_ns: int, end_ns: int, rate: float = 0.0,
            timeout_ns: int = 10_000_000_000) -> None:
        """Drive the connections from ``start_ns`` to ``end_ns`` (time.monotonic_ns); ``rate`` > 0:
        an open loop at that many requests/s, else a closed loop. Releases the GIL throughout."""
    def stop(self) -> None:
        """End ``run`` within 10 ms; callable from another thread."""
    def result(self) -> dict[str, Any]:
        """hist, timeline_counts, timeline_hist, statuses, errors, sent, completed, ok, failed,
        max_ns, lost_connections."""
