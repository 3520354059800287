"""The served-feature log's recorder: reads copied as bytes while served, decoded into Arrow
columns without the GIL by the log's writer thread (fstore.monitoring.logging)."""

from typing import Any

import pyarrow as pa

from fstore._ext._record import Recorder

MAX_SLOTS: int
WAKE_MIN: int

class Slot:
    """One request shape of the log (a plan read on one path)."""

    plan: Any
    path: str
    service: str
    version: int
    shape: Any
    rate: float
    dropped: int
    def __init__(self, plan: Any, path: str, service: str, version: int, rate: float, shape: Any) -> None: ...

class LogBuffer(Recorder):
    """A recorder holding at most ``queue_size`` reads between two ``collect``; past that a read's
    rows are dropped and counted. ``source`` (not None): only that OnlineService's reads.

    A subclass gives ``describe(plan, path, service, full, version) -> (rate, shape)``, called
    once per request shape (``shape``: a LogShape with ``keys``, ``types`` and ``schema``, or
    None when the rate is 0), and ``sample(seq, caller_request_id, rate) -> bool``, called for
    each read of a shape sampled below rate 1."""

    queue_size: int
    pending: int
    source: Any
    wake: Any  # called with no argument once half the queue (at least WAKE_MIN reads) is held
    def __init__(self, queue_size: int, source: Any = None) -> None: ...
    def describe(self, plan: Any, path: str, service: str, full: bool, version: int) -> tuple[float, Any]: ...
    def sample(self, seq: int, caller: str | None, rate: float) -> bool: ...
    def dropped_rows(self) -> dict[str, int]:
        """Rows dropped since the last call, per service (the counts are reset)."""
    def collect(self) -> dict[str, int]:
        """Take the reads recorded since the last call off the queue (no copy, nothing decoded:
        they stay buffered until ``decode``): rows taken per service."""
    def decode(self, pid: int, services: Any) -> tuple[list[tuple[str, pa.Table]], dict[str, int]]:
        """The buffered reads of ``services``: ((service, table) per request shape, each table in
        its shape's schema; rows this call took off the queue per service, as ``collect``).
        ``pid`` fills ``worker`` and the ``request_id`` prefix."""
