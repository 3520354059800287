# cython: language_level=3
# distutils: language = c++
"""Compiled passes behind ``fstore drift``'s numeric features (contracts in _drift.pyi).

Each function reads an Arrow column's buffers in place (validity bitmap and values,
honouring every chunk's offset) and runs its loop without the GIL, so that the features
of one drift run can be compared in parallel threads. No pass allocates per value.
"""

from libc.math cimport fabs, isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from libcpp.algorithm cimport nth_element

import numpy as np
import pyarrow as pa

cdef enum:
    HIST_BITS = 16            # order_statistics: at most 65,536 buckets (512 KiB)
    NO_SLOT = -1
    BLOCK = 128               # sums: a block's values summed by 8 independent accumulators

cdef enum _Kind:
    K_INT32 = 0
    K_INT64 = 1
    K_FLOAT32 = 2
    K_FLOAT64 = 3

ctypedef fused number_t:
    int32_t
    int64_t
    float
    double


cdef struct _Chunk:
    const uint8_t* valid      # NULL: no null slot in the chunk
    const void* data
    Py_ssize_t off            # the array's offset, in values (and in bits of ``valid``)
    Py_ssize_t n
    _Kind kind


cdef struct _Sum:             # Neumaier's compensated sum, and the plain one for non-finite totals
    double s
    double c
    double plain


cdef inline void _add(_Sum* acc, double x) noexcept nogil:
    cdef double t = acc.s + x
    if fabs(acc.s) >= fabs(x):
        acc.c += (acc.s - t) + x
    else:
        acc.c += (x - t) + acc.s
    acc.s = t
    acc.plain += x


cdef inline double _block_sum(const double* x, Py_ssize_t m) noexcept nogil:
    """The sum of up to BLOCK values, in eight interleaved partial sums (numpy's pairwise
    leaf): fast, and its error grows with log(m), not with m."""
    cdef double r0 = 0, r1 = 0, r2 = 0, r3 = 0, r4 = 0, r5 = 0, r6 = 0, r7 = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= m:
        r0 += x[i]; r1 += x[i + 1]; r2 += x[i + 2]; r3 += x[i + 3]
        r4 += x[i + 4]; r5 += x[i + 5]; r6 += x[i + 6]; r7 += x[i + 7]
        i += 8
    r0 = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < m:
        r0 += x[i]
        i += 1
    return r0


cdef inline double _total(const _Sum* acc) noexcept nogil:
    cdef double v = acc.s + acc.c
    return v if isfinite(v) else acc.plain


cdef inline uint64_t _key(double v) noexcept nogil:
    """The double's bits mapped so that unsigned order is numeric order (-0.0 just below 0.0)."""
    cdef uint64_t u
    memcpy(&u, &v, 8)
    return ~u if (u >> 63) else (u | (<uint64_t>1 << 63))


cdef inline bint _null(const _Chunk* c, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t bit = c.off + i
    return c.valid != NULL and not ((c.valid[bit >> 3] >> (bit & 7)) & 1)


# ---- reading an Arrow column ----------------------------------------------------------------

_KINDS = {pa.int32(): K_INT32, pa.int64(): K_INT64, pa.float32(): K_FLOAT32, pa.float64(): K_FLOAT64}
_WIDTH = {K_INT32: 4, K_INT64: 8, K_FLOAT32: 4, K_FLOAT64: 8}


cdef const uint8_t* _address(buf) except NULL:
    if not buf.is_cpu:
        raise ValueError("drift kernels read CPU buffers only")
    return <const uint8_t*><uintptr_t>buf.address


cdef class _Column:
    """A column's chunks as raw pointers; holds the buffers alive while a pass reads them."""
    cdef _Chunk* chunks
    cdef Py_ssize_t count
    cdef list keep

    def __cinit__(self, column):
        cdef _Chunk* c
        if not isinstance(column, (pa.Array, pa.ChunkedArray)):
            raise TypeError(f"expected a pyarrow Array or ChunkedArray, got {type(column).__name__}")
        arrays = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        typ = column.type
        if pa.types.is_timestamp(typ):
            kind = K_INT64
        elif typ in _KINDS:
            kind = _KINDS[typ]
        else:
            raise TypeError(f"drift kernels read int32, int64, float32, float64 and timestamp columns, not {typ}")
        self.keep = []
        self.chunks = <_Chunk*>malloc(max(1, len(arrays)) * sizeof(_Chunk))
        if self.chunks == NULL:
            raise MemoryError()
        self.count = 0
        for arr in arrays:
            if len(arr) == 0:
                continue
            bufs = arr.buffers()
            self.keep.append(bufs)
            c = &self.chunks[self.count]
            c.off, c.n, c.kind = arr.offset, len(arr), <_Kind>kind
            if bufs[1] is None or bufs[1].size < (c.off + c.n) * _WIDTH[kind]:
                raise ValueError("a data buffer is missing or shorter than its array")
            c.data = _address(bufs[1])
            c.valid = NULL
            if arr.null_count:
                if bufs[0] is None or bufs[0].size < (c.off + c.n + 7) // 8:
                    raise ValueError("a validity bitmap is missing or shorter than its array")
                c.valid = _address(bufs[0])
            self.count += 1

    def __dealloc__(self):
        free(self.chunks)


# ---- scan: count, nulls, sum, min, max ----------------------------------------------------

cdef struct _Scan:
    int64_t values
    int64_t nulls
    _Sum total
    double low
    double high


cdef void _scan_chunk(const number_t* x, const _Chunk* c, _Scan* acc) noexcept nogil:
    cdef double block[BLOCK]
    cdef Py_ssize_t i, start = 0, stop, m
    cdef double v
    while start < c.n:
        stop = min(start + BLOCK, c.n)
        m = 0
        for i in range(start, stop):
            v = <double>x[c.off + i]
            if _null(c, i) or v != v:
                continue
            block[m] = v
            m += 1
            if v < acc.low:
                acc.low = v
            if v > acc.high:
                acc.high = v
        acc.values += m
        acc.nulls += stop - start - m
        _add(&acc.total, _block_sum(block, m))
        start = stop


def scan(column):
    cdef _Column col = _Column(column)
    cdef _Scan acc
    cdef Py_ssize_t k
    cdef const _Chunk* c
    acc.values = acc.nulls = 0
    acc.total.s = acc.total.c = acc.total.plain = 0.0
    acc.low, acc.high = float("inf"), float("-inf")
    with nogil:
        for k in range(col.count):
            c = &col.chunks[k]
            if c.kind == K_INT32:
                _scan_chunk(<const int32_t*>c.data, c, &acc)
            elif c.kind == K_INT64:
                _scan_chunk(<const int64_t*>c.data, c, &acc)
            elif c.kind == K_FLOAT32:
                _scan_chunk(<const float*>c.data, c, &acc)
            else:
                _scan_chunk(<const double*>c.data, c, &acc)
    if not acc.values:
        return 0, acc.nulls, 0.0, None, None
    return acc.values, acc.nulls, _total(&acc.total), acc.low, acc.high


# ---- bins: counts against sorted edges, and the spread around a centre ---------------------

cdef void _bins_chunk(const number_t* x, const _Chunk* c, const double* edges, Py_ssize_t k,
                      int64_t* counts, _Sum* spread, double centre) noexcept nogil:
    cdef double block[BLOCK]
    cdef Py_ssize_t i, j, b, start = 0, stop, m
    cdef double v
    while start < c.n:
        stop = min(start + BLOCK, c.n)
        m = 0
        for i in range(start, stop):
            v = <double>x[c.off + i]
            if _null(c, i) or v != v:
                continue
            # edges ascending, NaN-padded to 15: the count of those at or below v, by halves
            b = (v >= edges[7]) * 8
            b += (v >= edges[b + 3]) * 4
            b += (v >= edges[b + 1]) * 2
            b += v >= edges[b]
            counts[b] += 1
            block[m] = (v - centre) * (v - centre)
            m += 1
        _add(spread, _block_sum(block, m))
        start = stop


def bins(column, edges, double centre):
    cdef _Column col = _Column(column)
    given = np.ascontiguousarray(edges, dtype=np.float64).ravel()
    cdef Py_ssize_t k = len(given), n
    if k > 15:
        raise ValueError(f"at most 15 edges, got {k}")
    padded = np.full(16, np.nan)       # NaN is never reached: the search stays among the real edges
    padded[:k] = given
    cdef double[::1] e = padded
    out = np.zeros(16, dtype=np.int64)
    cdef int64_t[::1] counts = out
    cdef const double* ep = &e[0]
    cdef _Sum spread
    cdef const _Chunk* c
    spread.s = spread.c = spread.plain = 0.0
    with nogil:
        for n in range(col.count):
            c = &col.chunks[n]
            if c.kind == K_INT32:
                _bins_chunk(<const int32_t*>c.data, c, ep, k, &counts[0], &spread, centre)
            elif c.kind == K_INT64:
                _bins_chunk(<const int64_t*>c.data, c, ep, k, &counts[0], &spread, centre)
            elif c.kind == K_FLOAT32:
                _bins_chunk(<const float*>c.data, c, ep, k, &counts[0], &spread, centre)
            else:
                _bins_chunk(<const double*>c.data, c, ep, k, &counts[0], &spread, centre)
    return out[:k + 1], _total(&spread)


# ---- order statistics: a bucket histogram, a gather of the buckets that hold the ranks, ----
# ---- then a selection inside each of those buckets only -------------------------------------

cdef void _hist_chunk(const number_t* x, const _Chunk* c, uint64_t kmin, uint64_t span, int shift,
                      int64_t* hist) noexcept nogil:
    cdef Py_ssize_t i
    cdef double v
    cdef uint64_t d
    for i in range(c.n):
        v = <double>x[c.off + i]
        if _null(c, i) or v != v:
            continue
        d = _key(v) - kmin
        if d <= span:                 # outside [low, high] (a caller's mistake): not counted
            hist[d >> shift] += 1


cdef void _gather_chunk(const number_t* x, const _Chunk* c, uint64_t kmin, uint64_t span, int shift,
                        const int32_t* slot_of, int64_t* fill, double* out) noexcept nogil:
    cdef Py_ssize_t i
    cdef double v
    cdef int32_t s
    cdef uint64_t d
    for i in range(c.n):
        v = <double>x[c.off + i]
        if _null(c, i) or v != v:
            continue
        d = _key(v) - kmin
        if d > span:
            continue
        s = slot_of[d >> shift]
        if s != NO_SLOT:
            out[fill[s]] = v
            fill[s] += 1


cdef void _pass(const _Chunk* chunks, Py_ssize_t count, bint gather, uint64_t kmin, uint64_t span, int shift,
                int64_t* hist, const int32_t* slot_of, int64_t* fill, double* out) noexcept nogil:
    cdef Py_ssize_t k
    cdef const _Chunk* c
    for k in range(count):
        c = &chunks[k]
        if c.kind == K_INT32:
            if gather:
                _gather_chunk(<const int32_t*>c.data, c, kmin, span, shift, slot_of, fill, out)
            else:
                _hist_chunk(<const int32_t*>c.data, c, kmin, span, shift, hist)
        elif c.kind == K_INT64:
            if gather:
                _gather_chunk(<const int64_t*>c.data, c, kmin, span, shift, slot_of, fill, out)
            else:
                _hist_chunk(<const int64_t*>c.data, c, kmin, span, shift, hist)
        elif c.kind == K_FLOAT32:
            if gather:
                _gather_chunk(<const float*>c.data, c, kmin, span, shift, slot_of, fill, out)
            else:
                _hist_chunk(<const float*>c.data, c, kmin, span, shift, hist)
        else:
            if gather:
                _gather_chunk(<const double*>c.data, c, kmin, span, shift, slot_of, fill, out)
            else:
                _hist_chunk(<const double*>c.data, c, kmin, span, shift, hist)


cdef bint _all_equal(const double* x, int64_t n) noexcept nogil:
    cdef int64_t i
    for i in range(1, n):
        if x[i] != x[0]:
            return False
    return True


def order_statistics(column, ranks, int64_t count, double low, double high):
    cdef _Column col = _Column(column)
    cdef int64_t[::1] r = np.ascontiguousarray(ranks, dtype=np.int64)
    cdef Py_ssize_t m = r.shape[0], i, j, nb
    result = np.empty(m, dtype=np.float64)
    cdef double[::1] res = result
    if m == 0:
        return result
    for i in range(m):
        if r[i] < 0 or r[i] >= count:
            raise ValueError(f"rank {r[i]} is outside [0, {count})")
    if not (low <= high):
        raise ValueError(f"low {low} is above high {high}")
    if low == 0:
        low = -0.0                    # both zeros are in range, whichever one the scan met first
    if high == 0:
        high = 0.0
    cdef uint64_t kmin = _key(low), span = _key(high) - kmin
    cdef int shift = 0
    while (span >> shift) >= (<uint64_t>1 << HIST_BITS):
        shift += 1
    nb = <Py_ssize_t>(span >> shift) + 1
    hist_arr = np.zeros(nb + 1, dtype=np.int64)          # then: values in the buckets before b
    slot_arr = np.full(nb, NO_SLOT, dtype=np.int32)
    cdef int64_t[::1] hist = hist_arr
    cdef int32_t[::1] slot_of = slot_arr
    with nogil:
        _pass(col.chunks, col.count, False, kmin, span, shift, &hist[0], NULL, NULL, NULL)
    before = np.concatenate(([0], np.cumsum(hist_arr[:nb])))
    if before[nb] != count:
        raise ValueError(f"count {count} does not match the column's {before[nb]} values in [low, high]")
    # the bucket of each rank, and one slot (a region of the gather buffer) per bucket
    bucket = np.searchsorted(before, np.asarray(r), side="right") - 1
    wanted = np.unique(bucket)
    sizes = hist_arr[wanted]
    starts = np.concatenate(([0], np.cumsum(sizes)))
    slot_arr[wanted] = np.arange(len(wanted), dtype=np.int32)
    fill_arr = starts[:len(wanted)].astype(np.int64)
    buf_arr = np.empty(max(1, int(starts[len(wanted)])), dtype=np.float64)
    cdef int64_t[::1] fill = fill_arr
    cdef double[::1] buf = buf_arr
    with nogil:
        _pass(col.chunks, col.count, True, kmin, span, shift, NULL, &slot_of[0], &fill[0], &buf[0])
    # inside each slot, the ranks in ascending order: each selection narrows the next one's range
    cdef int64_t[::1] first = before.astype(np.int64)
    cdef int64_t[::1] start = starts.astype(np.int64)
    cdef int64_t[::1] bk = bucket.astype(np.int64)
    cdef int64_t[::1] sl = slot_arr[bucket].astype(np.int64)
    order_arr = np.lexsort((np.asarray(r), np.asarray(sl)))
    cdef int64_t[::1] order = order_arr.astype(np.int64)
    cdef double* base
    cdef int64_t lo = 0, size, local, last_slot = -1
    with nogil:
        for j in range(m):
            i = order[j]
            base = &buf[0] + start[sl[i]]
            size = start[sl[i] + 1] - start[sl[i]]
            if sl[i] != last_slot:
                last_slot, lo = sl[i], 0
                if _all_equal(base, size):
                    lo = size         # one value (a tie of many rows): nothing to select
            local = r[i] - first[bk[i]]
            if local >= lo:
                nth_element(base + lo, base + local, base + size)
                lo = local + 1 if local + 1 < size else size
            res[i] = base[local]
    return result
