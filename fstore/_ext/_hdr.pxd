# The latency histogram of fstore bench (HDR-style, log-linear), shared by the compiled load
# generator (_loadgen.pyx records into it without the GIL) and _hdr.pyx (percentiles, merging).
#
# A value v (nanoseconds) below 2 * 2**sub_bits has a bucket of its own; above, each power of
# two [2**k, 2**(k+1)) is cut into 2**sub_bits buckets of equal width 2**(k - sub_bits). A
# bucket is thus at most 1 / 2**sub_bits of its lowest value wide, and its midpoint is within
# half that of any value in it: 0.4 % at C_SUB_BITS = 7.
from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil

cdef enum:
    C_MAX_BITS = 40           # values are clamped below 2**40 ns (18 minutes)
    C_SUB_BITS = 7            # the run's histogram: 128 buckets per power of two
    C_TIMELINE_SUB_BITS = 4   # one per second of the run, for the plot: 16 (3 %)


cdef inline Py_ssize_t bucket_count(int sub_bits) noexcept nogil:
    return (C_MAX_BITS + 1 - sub_bits) << sub_bits


cdef inline Py_ssize_t bucket_of(int64_t v, int sub_bits) noexcept nogil:
    cdef uint64_t u, sub = (<uint64_t>1) << sub_bits
    cdef int shift
    if v <= 0:
        return 0
    u = <uint64_t>v
    if u >= ((<uint64_t>1) << C_MAX_BITS):
        u = ((<uint64_t>1) << C_MAX_BITS) - 1
    if u < 2 * sub:
        return <Py_ssize_t>u
    shift = (63 - __builtin_clzll(u)) - sub_bits
    return <Py_ssize_t>((<uint64_t>(shift + 1) << sub_bits) + (u >> shift) - sub)
