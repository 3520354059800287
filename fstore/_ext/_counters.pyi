"""One worker's served-GET metrics counted in C (fstore.serving.metrics flushes them)."""

from typing import Any, Iterable

class GetCounters:
    """Rows and latency histograms (the bounds given, +Inf added) and values by
    (versioned view, status) of the GETs counted since the last ``take``."""

    gets: int
    def __init__(self, latency_bounds: Iterable[float], row_bounds: Iterable[float]) -> None: ...
    def count_get(self, plan: Any, n: int, status: bytes | bytearray, seconds: float) -> None:
        """One GET answered by the Python path: ``n`` entity rows, its status bytes
        (output-major), ``seconds`` of server time. The fast path counts in C."""
    def take(self) -> tuple[list[int], float, list[int], float, dict[tuple[str, int], int]] | None:
        """The counts since the last take, reset: None when no GET was counted, else
        (latency bucket counts, +Inf last; latency sum; row bucket counts; row sum;
        {(view, status code): values}, non-zero only)."""
