# cython: language_level=3
"""fstore bench's latency histogram (layout in _hdr.pxd): recording from Python, bucket
values and percentiles of merged counts.

The load generator records into per-thread count arrays without the GIL; the run sums
them (a plain NumPy sum: same layout) and reads percentiles here, so every figure of a
report (p50 .. p99.9, the per-second p99 of the plot) comes from one rule.
"""
import numpy as np

from libc.math cimport ceil
from libc.stdint cimport int64_t

from fstore._ext._hdr cimport C_MAX_BITS, C_SUB_BITS, C_TIMELINE_SUB_BITS, bucket_count, bucket_of

MAX_BITS = C_MAX_BITS
SUB_BITS = C_SUB_BITS
TIMELINE_SUB_BITS = C_TIMELINE_SUB_BITS


def buckets(int sub_bits=C_SUB_BITS):
    """How many buckets a histogram of ``sub_bits`` has."""
    return bucket_count(sub_bits)


def bucket_index(int64_t value, int sub_bits=C_SUB_BITS):
    """The bucket of ``value`` (nanoseconds)."""
    return bucket_of(value, sub_bits)


def bucket_values(int sub_bits=C_SUB_BITS):
    """The value each bucket stands for (its midpoint), as a float64 array."""
    cdef Py_ssize_t n = bucket_count(sub_bits), i
    out = np.empty(n, dtype=np.float64)
    cdef double[::1] v = out
    for i in range(n):
        v[i] = _midpoint(i, sub_bits)
    return out


def record(int64_t[::1] counts, const int64_t[::1] values, int sub_bits=C_SUB_BITS):
    """Add each of ``values`` (nanoseconds) to ``counts`` (the generator's rule, for Python callers)."""
    cdef Py_ssize_t i, n = bucket_count(sub_bits)
    if counts.shape[0] != n:
        raise ValueError(f"a histogram of sub_bits {sub_bits} has {n} buckets, not {counts.shape[0]}")
    for i in range(values.shape[0]):
        counts[bucket_of(values[i], sub_bits)] += 1


def percentile(const int64_t[::1] counts, double q, int sub_bits=C_SUB_BITS):
    """The value at quantile ``q`` (0..1] by the nearest-rank rule: the midpoint of the bucket
    holding the ceil(q * total)-th smallest value; NaN when the histogram is empty."""
    cdef Py_ssize_t i, n = counts.shape[0]
    cdef int64_t total = 0, seen = 0, rank
    if n != bucket_count(sub_bits):
        raise ValueError(f"a histogram of sub_bits {sub_bits} has {bucket_count(sub_bits)} buckets, not {n}")
    if not 0 < q <= 1:
        raise ValueError(f"a quantile is in (0, 1], got {q}")
    for i in range(n):
        total += counts[i]
    if total == 0:
        return float("nan")
    rank = <int64_t>ceil(q * total - 1e-6)  # 0.999 * 100000 is 99900.00000000001
    if rank < 1:
        rank = 1
    for i in range(n):
        seen += counts[i]
        if seen >= rank:
            return float(_midpoint(i, sub_bits))
    return float("nan")


cdef double _midpoint(Py_ssize_t i, int sub_bits) noexcept:
    cdef Py_ssize_t sub = 1 << sub_bits, shift
    if i < 2 * sub:
        return i
    shift = (i >> sub_bits) - 1
    return (((i & (sub - 1)) + sub) << shift) + ((1 << shift) - 1) / 2.0
