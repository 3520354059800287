"""The served-feature log's recorder: reads copied as bytes while served, decoded into Arrow
columns without the GIL by the log's writer thread (fstore.monitoring.logging)."""

from typing import Any

import pyarrow as pa

from fstore._ext._record import Recorder

MAX_SLOTS: int
WAKE_MIN: int

def sampled(key: str, rate: float) -> bool:
    """Whether a read whose request key is ``key`` is logged at ``rate``: the first 8 bytes
    of the BLAKE2b digest of its UTF-8, as a big-endian integer, are below rate * 2**64."""

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
    None when the rate is 0). A read of a shape below rate 1 is kept when ``sampled`` says so
    for the caller's request id, else for ``<pid>-<seq>``."""

    queue_size: int
    pending: int
    source: Any
    wake: Any  # called with no argument once half the queue (at least WAKE_MIN reads) is held
    def __init__(self, queue_size: int, source: Any = None) -> None: ...
    def describe(self, plan: Any, path: str, service: str, full: bool, version: int) -> tuple[float, Any]: ...
    def next_seq(self) -> int:
        """The next read's sequence number (a read answered in Python takes one as a compiled read does)."""
    def dropped_rows(self) -> dict[str, int]:
        """Rows dropped since the last call, per service (the counts are reset)."""
    def collect(self) -> dict[str, int]:
        """Take the reads recorded since the last call off the queue (no copy, nothing decoded:
        they stay buffered until ``decode``): rows taken per service."""
    def decode(self, pid: int, services: Any) -> tuple[list[tuple[str, pa.Table]], dict[str, int]]:
        """The buffered reads of ``services``: ((service, table) per request shape, each table in
        its shape's schema; rows this call took off the queue per service, as ``collect``).
        ``pid`` fills ``worker`` and the ``request_id`` prefix."""
