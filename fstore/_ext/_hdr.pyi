"""fstore bench's latency histogram: log-linear buckets of nanoseconds (layout in _hdr.pxd)."""

import numpy as np
import numpy.typing as npt

MAX_BITS: int
SUB_BITS: int
TIMELINE_SUB_BITS: int

def buckets(sub_bits: int = ...) -> int:
    """How many buckets a histogram of ``sub_bits`` has."""

def bucket_index(value: int, sub_bits: int = ...) -> int:
    """The bucket of ``value`` (nanoseconds)."""

def bucket_values(sub_bits: int = ...) -> npt.NDArray[np.float64]:
    """The value each bucket stands for (its midpoint)."""

def record(counts: npt.NDArray[np.int64], values: npt.NDArray[np.int64], sub_bits: int = ...) -> None:
    """Add each of ``values`` (nanoseconds) to ``counts``."""

def percentile(counts: npt.NDArray[np.int64], q: float, sub_bits: int = ...) -> float:
    """The value at quantile ``q`` in (0, 1] by the nearest-rank rule; NaN when empty."""
