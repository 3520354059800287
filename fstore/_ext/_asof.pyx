# cython: language_level=3
"""Compiled core of fstore's point-in-time join and on-disk key bucketing.

Everything heavy runs without the GIL so callers can process buckets in
threads. The exact contracts live in _asof.pyi.
"""

from libc.stdint cimport INT32_MAX, int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

import numpy as np
import pyarrow as pa

# Constants as C macros so they are compile-time values in the hot loops.
cdef extern from *:
    """
    #define FS_XXH_P1 0x9E3779B185EBCA87ULL
    #define FS_XXH_P2 0xC2B2AE3D27D4EB4FULL
    #define FS_XXH_P3 0x165667B19E3779F9ULL
    #define FS_XXH_P4 0x85EBCA77C2B2AE63ULL
    #define FS_XXH_P5 0x27D4EB2F165667C5ULL
    #define FS_FMIX_C1 0xFF51AFD7ED558CCDULL
    #define FS_FMIX_C2 0xC4CEB9FE1A85EC53ULL
    #define FS_TUPLE_SEED 0x9E3779B97F4A7C15ULL
    #define FS_ROW_SEED 0x243F6A8885A308D3ULL
    #define FS_NULL_HASH 0x13198A2E03707344ULL
    #define LOOKUP_BATCH 64
    #if defined(__GNUC__) || defined(__clang__)
    #define FS_PREFETCH(p) __builtin_prefetch((const void*)(p))
    #else
    #define FS_PREFETCH(p) ((void)0)
    #endif
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* Big tables are probed at random: on Linux ask for huge pages so the
       probes do not also miss the TLB. Memory is released with free(). */
    static void* FS_ALLOC_TABLE(size_t nbytes) {
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (nbytes >= ((size_t)4 << 20)) {
            void* p = NULL;
            if (posix_memalign(&p, (size_t)2 << 20, nbytes) != 0) return NULL;
            madvise(p, nbytes, MADV_HUGEPAGE);
            return p;
        }
    #endif
        return malloc(nbytes);
    }
    """
    const uint64_t FS_XXH_P1
    const uint64_t FS_XXH_P2
    const uint64_t FS_XXH_P3
    const uint64_t FS_XXH_P4
    const uint64_t FS_XXH_P5
    const uint64_t FS_FMIX_C1
    const uint64_t FS_FMIX_C2
    const uint64_t FS_TUPLE_SEED
    const uint64_t FS_ROW_SEED
    const uint64_t FS_NULL_HASH
    void FS_PREFETCH(const void* p) noexcept nogil
    void* FS_ALLOC_TABLE(size_t nbytes) noexcept nogil
    enum: LOOKUP_BATCH


_NOT_SORTED = "view rows are not grouped and sorted by (key, ts, created)"


# ---------------------------------------------------------------------------
# In-memory tuple hash (group index only; not persisted)
# ---------------------------------------------------------------------------

cdef inline uint64_t _xorshift_mix(uint64_t x, int s1, uint64_t c1, int s2, uint64_t c2, int s3) noexcept nogil:
    # the xor-shift-multiply finalizer murmur3 and xxh64 share, with their own shifts and primes
    x ^= x >> s1
    x *= c1
    x ^= x >> s2
    x *= c2
    x ^= x >> s3
    return x


cdef uint64_t fmix64(uint64_t x) noexcept nogil:
    # murmur3 finalizer: a bijection, so distinct k=1 keys never collide
    return _xorshift_mix(x, 33, FS_FMIX_C1, 33, FS_FMIX_C2, 33)


cdef uint64_t tuple_hash(const int64_t* key, Py_ssize_t k) noexcept nogil:
    cdef uint64_t h = FS_TUPLE_SEED
    cdef Py_ssize_t j
    for j in range(k):
        h = fmix64(h ^ <uint64_t>key[j])
    return h


cdef bint tuple_eq(const int64_t* a, const int64_t* b, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    if k == 1:
        return a[0] == b[0]
    for j in range(k):
        if a[j] != b[j]:
            return False
    return True


# ---------------------------------------------------------------------------
# Group index
# ---------------------------------------------------------------------------

cdef Py_ssize_t index_scan(GroupIndex* idx, const int64_t* ts, const int64_t* created,
                           Py_ssize_t n_rows) noexcept nogil:
    cdef Py_ssize_t i, g, k = idx.k
    cdef const int64_t* keys = idx.keys
    # Step 1: room for the worst case (every row its own group); untouched
    # pages of a large malloc are never committed.
    idx.starts = <int64_t*>malloc((n_rows + 1) * sizeof(int64_t))
    if idx.starts == NULL:
        return -2
    idx.starts[0] = 0
    g = 1
    if n_rows == 0:
        idx.n_groups = 0
        return -1
    # Step 2: one sequential pass: a key change opens a group, otherwise
    # (ts, created) must not decrease.
    if k == 1:
        for i in range(1, n_rows):
            if keys[i] == keys[i - 1]:
                if ts[i] < ts[i - 1] or (ts[i] == ts[i - 1] and created[i] < created[i - 1]):
                    return i
            else:
                idx.starts[g] = i
                g += 1
    else:
        for i in range(1, n_rows):
            if tuple_eq(keys + i * k, keys + (i - 1) * k, k):
                if ts[i] < ts[i - 1] or (ts[i] == ts[i - 1] and created[i] < created[i - 1]):
                    return i
            else:
                idx.starts[g] = i
                g += 1
    idx.starts[g] = n_rows
    idx.n_groups = g
    return -1


cdef Py_ssize_t index_build(GroupIndex* idx) noexcept nogil:
    cdef uint64_t cap = 16, pos
    cdef uint64_t hashes[LOOKUP_BATCH]
    cdef uint32_t tag
    cdef Py_ssize_t g0, nb, j, g, k = idx.k
    cdef const int64_t* key
    cdef Slot s
    # Step 3: power-of-two table at load factor <= 1/2 (linear probing stays short)
    while cap < <uint64_t>(2 * idx.n_groups):
        cap <<= 1
    idx.slots = <Slot*>FS_ALLOC_TABLE(cap * sizeof(Slot))
    if idx.slots == NULL:
        return -2
    memset(idx.slots, 0xFF, cap * sizeof(Slot))  # gid == -1 everywhere
    idx.mask = cap - 1
    # Step 4: insert each group, a batch at a time with the home slots
    # prefetched (a table much larger than cache is otherwise one miss per
    # group); an equal tuple already present means the key shows up in two
    # separate runs, i.e. the view is not grouped.
    g0 = 0
    while g0 < idx.n_groups:
        nb = min(<Py_ssize_t>LOOKUP_BATCH, idx.n_groups - g0)
        for j in range(nb):
            hashes[j] = tuple_hash(idx.keys + idx.starts[g0 + j] * k, k)
            FS_PREFETCH(&idx.slots[hashes[j] & idx.mask])
        for j in range(nb):
            g = g0 + j
            key = idx.keys + idx.starts[g] * k
            tag = <uint32_t>(hashes[j] >> 32)
            pos = hashes[j] & idx.mask
            while True:
                s = idx.slots[pos]
                if s.gid < 0:
                    idx.slots[pos].tag = tag
                    idx.slots[pos].gid = <int32_t>g
                    break
                if s.tag == tag and tuple_eq(idx.keys + idx.starts[s.gid] * k, key, k):
                    return idx.starts[g]
                pos = (pos + 1) & idx.mask
        g0 += nb
    return -1


cdef Py_ssize_t index_find(const GroupIndex* idx, const int64_t* key, uint64_t h) noexcept nogil:
    cdef Py_ssize_t k = idx.k
    cdef uint32_t tag = <uint32_t>(h >> 32)
    cdef uint64_t pos = h & idx.mask
    cdef Slot s
    # Probe until an empty slot; the full tuple is compared, never the hash alone.
    while True:
        s = idx.slots[pos]
        if s.gid < 0:
            return -1
        if s.tag == tag and tuple_eq(idx.keys + idx.starts[s.gid] * k, key, k):
            return s.gid
        pos = (pos + 1) & idx.mask


cdef void index_free(GroupIndex* idx) noexcept nogil:
    free(idx.starts)
    free(idx.slots)
    idx.starts = NULL
    idx.slots = NULL


cdef void asof_lookup(const GroupIndex* idx, const int64_t* view_ts,
                      const int64_t* entity_keys, const int64_t* entity_ts,
                      const uint8_t* entity_valid, Py_ssize_t n_e,
                      int64_t ttl_us, int64_t* out) noexcept nogil:
    # Entity rows go through in batches, stage by stage, so the cache misses
    # of different rows (table slot, group bounds, ts column) overlap instead
    # of being paid one after another.
    cdef uint64_t hashes[LOOKUP_BATCH]
    cdef Py_ssize_t cand[LOOKUP_BATCH]     # likely group id (prefetch hint only)
    cdef Py_ssize_t first[LOOKUP_BATCH]    # group's first row, or -1 = no match
    cdef Py_ssize_t base[LOOKUP_BATCH]     # binary search window [base, base + span)
    cdef Py_ssize_t span[LOOKUP_BATCH]
    cdef Py_ssize_t b0, nb, j, g, hi, half, k = idx.k
    cdef const int64_t* key
    cdef uint64_t pos
    cdef Slot s
    cdef int64_t t, w
    cdef bint busy
    b0 = 0
    while b0 < n_e:
        nb = min(<Py_ssize_t>LOOKUP_BATCH, n_e - b0)
        # Step 5a: hash every valid row and prefetch its home slot
        for j in range(nb):
            first[j] = -1
            span[j] = 0  # rows that never reach the search must not join it
            if entity_valid[b0 + j] and idx.n_groups > 0:
                hashes[j] = tuple_hash(entity_keys + (b0 + j) * k, k)
                FS_PREFETCH(&idx.slots[hashes[j] & idx.mask])
                first[j] = 0
        # Step 5b: walk to the slot whose tag matches (a hint only) and
        # prefetch that group's bounds, then its key tuple and last ts
        for j in range(nb):
            cand[j] = -1
            if first[j] < 0:
                continue
            pos = hashes[j] & idx.mask
            while True:
                s = idx.slots[pos]
                if s.gid < 0 or s.tag == <uint32_t>(hashes[j] >> 32):
                    break
                pos = (pos + 1) & idx.mask
            if s.gid >= 0:
                cand[j] = s.gid
                FS_PREFETCH(&idx.starts[s.gid])
        for j in range(nb):
            if cand[j] >= 0:
                FS_PREFETCH(idx.keys + idx.starts[cand[j]] * k)
                FS_PREFETCH(&view_ts[idx.starts[cand[j] + 1] - 1])
        # Step 5c: authoritative lookup comparing the full key tuple; null
        # keys and tuples absent from the view match nothing
        for j in range(nb):
            if first[j] < 0:
                continue
            key = entity_keys + (b0 + j) * k
            g = index_find(idx, key, hashes[j])
            if g < 0:
                first[j] = -1
                continue
            first[j] = idx.starts[g]
            hi = idx.starts[g + 1]
            base[j] = first[j]
            span[j] = hi - first[j]
            FS_PREFETCH(&view_ts[hi - 1])
        # Step 6a: most recent row already visible -> no search needed
        busy = False
        for j in range(nb):
            if first[j] < 0:
                continue
            if view_ts[base[j] + span[j] - 1] <= entity_ts[b0 + j]:
                base[j] += span[j]  # answer: one past the group
                span[j] = 0
            else:
                busy = busy or span[j] > 1
                FS_PREFETCH(&view_ts[base[j] + (span[j] >> 1) - 1])
        # Step 6b: lock-step branchless upper_bound over all rows of the batch:
        # first index with ts > t, known to exist in [base, base + span)
        while busy:
            busy = False
            for j in range(nb):
                if span[j] > 1:
                    half = span[j] >> 1
                    if view_ts[base[j] + half - 1] <= entity_ts[b0 + j]:
                        base[j] += half
                    span[j] -= half
                    if span[j] > 1:
                        busy = True
                        FS_PREFETCH(&view_ts[base[j] + (span[j] >> 1) - 1])
        # Step 7: winner is the row before upper_bound (newest ts, then newest
        # created, then last in storage); apply the inclusive ttl bound with
        # an unsigned difference that cannot overflow since t >= ts[w]
        for j in range(nb):
            if first[j] < 0 or base[j] == first[j]:
                out[b0 + j] = -1
                continue
            w = base[j] - 1
            t = entity_ts[b0 + j]
            if ttl_us > 0 and <uint64_t>t - <uint64_t>view_ts[w] > <uint64_t>ttl_us:
                out[b0 + j] = -1
            else:
                out[b0 + j] = w
        b0 += nb


def asof_indices(const int64_t[:, ::1] view_keys,
                 const int64_t[::1] view_ts,
                 const int64_t[::1] view_created,
                 const int64_t[:, ::1] entity_keys,
                 const int64_t[::1] entity_ts,
                 entity_valid,
                 int64_t ttl_us):
    cdef Py_ssize_t n_v = view_keys.shape[0], k = view_keys.shape[1]
    cdef Py_ssize_t n_e = entity_keys.shape[0]
    cdef Py_ssize_t status = -1
    cdef GroupIndex idx
    cdef const uint8_t[::1] valid
    cdef int64_t[::1] out_mv

    # Validate shapes up front: after this the loops trust every length.
    arr = np.asarray(entity_valid)
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    valid = arr
    if k < 1:
        raise ValueError("view_keys must have at least one key column")
    if entity_keys.shape[1] != k:
        raise ValueError(
            f"entity_keys has {entity_keys.shape[1]} key columns, view_keys has {k}")
    if view_ts.shape[0] != n_v or view_created.shape[0] != n_v:
        raise ValueError("view_ts and view_created must have one entry per view row")
    if entity_ts.shape[0] != n_e or valid.shape[0] != n_e:
        raise ValueError("entity_ts and entity_valid must have one entry per entity row")

    out = np.empty(n_e, dtype=np.int64)
    out_mv = out
    memset(&idx, 0, sizeof(GroupIndex))
    idx.k = k
    idx.keys = &view_keys[0, 0] if n_v > 0 else NULL

    with nogil:
        # Steps 1-4: verify grouping/sorting while building the index
        status = index_scan(&idx, &view_ts[0] if n_v > 0 else NULL,
                            &view_created[0] if n_v > 0 else NULL, n_v)
        if status == -1 and idx.n_groups > INT32_MAX:
            status = -3
        if status == -1:
            status = index_build(&idx)
        # Steps 5-7: resolve each entity row
        if status == -1 and n_e > 0:
            asof_lookup(&idx, &view_ts[0] if n_v > 0 else NULL,
                        &entity_keys[0, 0], &entity_ts[0], &valid[0],
                        n_e, ttl_us, &out_mv[0])
        index_free(&idx)

    if status == -2:
        raise MemoryError("asof_indices: cannot allocate the group index")
    if status == -3:
        raise ValueError("asof_indices: more than 2**31 - 1 key groups in one call")
    if status >= 0:
        raise ValueError(
            f"{_NOT_SORTED}: row {status} breaks the order (its key tuple already "
            f"appeared in an earlier group, or ts/created decrease inside its group); "
            f"sort by (key, ts, created) and retry")
    return out


# ---------------------------------------------------------------------------
# Persisted key hash
# ---------------------------------------------------------------------------

cdef inline uint64_t _rotl(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t _read64le(const uint8_t* p) noexcept nogil:
    # byte-wise so the result is the same on any endianness/alignment;
    # compilers turn this into a single load on little-endian targets
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef inline uint64_t _read32le(const uint8_t* p) noexcept nogil:
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24))


cdef inline uint64_t _xxh_round(uint64_t acc, uint64_t lane) noexcept nogil:
    acc += lane * FS_XXH_P2
    acc = _rotl(acc, 31)
    return acc * FS_XXH_P1


cdef inline uint64_t _xxh_merge(uint64_t acc, uint64_t v) noexcept nogil:
    acc ^= _xxh_round(0, v)
    return acc * FS_XXH_P1 + FS_XXH_P4


cdef inline uint64_t _xxh_avalanche(uint64_t h) noexcept nogil:
    return _xorshift_mix(h, 33, FS_XXH_P2, 29, FS_XXH_P3, 32)


cdef uint64_t xxh64(const uint8_t* p, size_t n, uint64_t seed) noexcept nogil:
    # Reference XXH64 (xxHash spec), so any language's xxhash library can
    # reproduce the on-disk layout.
    cdef const uint8_t* end = p + n
    cdef uint64_t v1, v2, v3, v4, h
    if n >= 32:
        v1 = seed + FS_XXH_P1 + FS_XXH_P2
        v2 = seed + FS_XXH_P2
        v3 = seed
        v4 = seed - FS_XXH_P1
        while <size_t>(end - p) >= 32:
            v1 = _xxh_round(v1, _read64le(p))
            v2 = _xxh_round(v2, _read64le(p + 8))
            v3 = _xxh_round(v3, _read64le(p + 16))
            v4 = _xxh_round(v4, _read64le(p + 24))
            p += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _xxh_merge(h, v1)
        h = _xxh_merge(h, v2)
        h = _xxh_merge(h, v3)
        h = _xxh_merge(h, v4)
    else:
        h = seed + FS_XXH_P5
    h += <uint64_t>n
    while <size_t>(end - p) >= 8:
        h ^= _xxh_round(0, _read64le(p))
        h = _rotl(h, 27) * FS_XXH_P1 + FS_XXH_P4
        p += 8
    if <size_t>(end - p) >= 4:
        h ^= _read32le(p) * FS_XXH_P1
        h = _rotl(h, 23) * FS_XXH_P2 + FS_XXH_P3
        p += 4
    while p < end:
        h ^= <uint64_t>p[0] * FS_XXH_P5
        h = _rotl(h, 11) * FS_XXH_P1
        p += 1
    return _xxh_avalanche(h)


cdef uint64_t xxh64_u64(uint64_t v) noexcept nogil:
    # XXH64(seed=0) of the 8-byte little-endian encoding of v, unrolled;
    # working on the value keeps it independent of host byte order.
    cdef uint64_t h = FS_XXH_P5 + 8
    h ^= _xxh_round(0, v)
    h = _rotl(h, 27) * FS_XXH_P1 + FS_XXH_P4
    return _xxh_avalanche(h)


cdef uint64_t combine(uint64_t h, uint64_t v) noexcept nogil:
    # order-sensitive: (a, b) and (b, a) land in different buckets
    return fmix64((h * FS_XXH_P1) ^ v)


cdef enum _Kind:
    LAYOUT_INT64 = 0
    LAYOUT_STRING = 1
    LAYOUT_LARGE_STRING = 2


cdef _Kind _kind_of(col) except *:
    if not isinstance(col, (pa.Array, pa.ChunkedArray)):
        raise TypeError(
            f"hash_keys: key columns must be pyarrow Arrays, got {type(col).__name__}")
    t = col.type
    if t == pa.int64():
        return LAYOUT_INT64
    if t == pa.string():
        return LAYOUT_STRING
    if t == pa.large_string():
        return LAYOUT_LARGE_STRING
    raise TypeError(
        f"hash_keys: unsupported key column type {t}; expected int64, string or "
        f"large_string (cast smaller integers to int64)")


cdef const uint8_t* _buffer_ptr(buf) except NULL:
    # pyarrow exports buffers as signed chars, so go through the address
    if not buf.is_cpu:
        raise ValueError("hash_keys: key column buffers must live in CPU memory")
    return <const uint8_t*><uintptr_t>buf.address


cdef void _hash_chunk(arr, _Kind kind, uint64_t* h) except *:
    cdef Py_ssize_t n = len(arr), off = arr.offset, i, pos
    cdef const uint8_t* vp = NULL
    cdef const uint8_t* op = NULL
    cdef const uint8_t* dp = NULL
    cdef Py_ssize_t data_size = 0, width
    cdef int64_t start, stop, ival
    cdef int32_t o32a, o32b
    cdef uint64_t v
    cdef bint corrupt = False
    if n == 0:
        return
    # Step 1: take raw buffers; the array's offset applies to every one of
    # them, which is what makes a slice hash like its unsliced copy.
    bufs = arr.buffers()  # keeps the buffers alive while we hold raw pointers
    if bufs[0] is not None:
        if bufs[0].size < (off + n + 7) // 8:
            raise ValueError("hash_keys: validity bitmap shorter than the array")
        vp = _buffer_ptr(bufs[0])
    if kind == LAYOUT_INT64:
        if bufs[1] is None or bufs[1].size < (off + n) * 8:
            raise ValueError("hash_keys: int64 data buffer missing or shorter than the array")
        dp = _buffer_ptr(bufs[1])
    else:
        width = 4 if kind == LAYOUT_STRING else 8
        if bufs[1] is None or bufs[1].size < (off + n + 1) * width:
            raise ValueError("hash_keys: string offsets buffer missing or shorter than the array")
        op = _buffer_ptr(bufs[1])
        if bufs[2] is not None and bufs[2].size > 0:
            data_size = bufs[2].size
            dp = _buffer_ptr(bufs[2])

    with nogil:
        for i in range(n):
            pos = off + i
            # Step 2: null -> fixed constant (bit clear in the validity bitmap)
            if vp != NULL and not ((vp[pos >> 3] >> (pos & 7)) & 1):
                v = FS_NULL_HASH
            elif kind == LAYOUT_INT64:
                # Step 3a: ints hash their value's 8 little-endian bytes
                memcpy(&ival, dp + pos * 8, 8)
                v = xxh64_u64(<uint64_t>ival)
            else:
                # Step 3b: strings hash their UTF-8 bytes; offsets are
                # bounds-checked so a malformed array cannot read past data
                if kind == LAYOUT_STRING:
                    memcpy(&o32a, op + pos * 4, 4)
                    memcpy(&o32b, op + (pos + 1) * 4, 4)
                    start = o32a
                    stop = o32b
                else:
                    memcpy(&start, op + pos * 8, 8)
                    memcpy(&stop, op + (pos + 1) * 8, 8)
                if start < 0 or stop < start or stop > data_size:
                    corrupt = True
                    break
                v = xxh64(dp + start if dp != NULL else NULL, <size_t>(stop - start), 0)
            # Step 4: fold into the row's running hash
            h[i] = combine(h[i], v)
    if corrupt:
        raise ValueError("hash_keys: string offsets point outside the data buffer")


def hash_keys(columns):
    cdef list cols = list(columns)
    cdef list kinds
    cdef Py_ssize_t n, row
    cdef uint64_t[::1] h_mv
    if not cols:
        raise ValueError("hash_keys needs at least one key column")
    # Validate every column before hashing anything.
    kinds = [_kind_of(c) for c in cols]
    n = len(cols[0])
    for c in cols:
        if len(c) != n:
            raise ValueError(
                f"hash_keys: key columns differ in length ({len(c)} vs {n})")
    out = np.empty(n, dtype=np.uint64)
    h_mv = out
    if n > 0:
        h_mv[:] = FS_ROW_SEED
    # Column by column, chunk by chunk: each chunk writes its own row range,
    # so chunk boundaries never change a row's hash.
    for c, kind in zip(cols, kinds):
        chunks = c.chunks if isinstance(c, pa.ChunkedArray) else [c]
        row = 0
        for chunk in chunks:
            if len(chunk):
                _hash_chunk(chunk, <_Kind><int>kind, &h_mv[row])
            row += len(chunk)
    return out


def bucket_of(const uint64_t[:] hashes, Py_ssize_t n_buckets):
    cdef Py_ssize_t i, n = hashes.shape[0]
    cdef uint64_t nb, mask
    cdef int32_t[::1] out_mv
    if n_buckets < 1 or n_buckets > INT32_MAX:
        raise ValueError(f"n_buckets must be in [1, 2**31 - 1], got {n_buckets}")
    out = np.empty(n, dtype=np.int32)
    out_mv = out
    nb = <uint64_t>n_buckets
    with nogil:
        if nb & (nb - 1) == 0:
            # power of two: the mask equals the modulo, without the division
            mask = nb - 1
            for i in range(n):
                out_mv[i] = <int32_t>(hashes[i] & mask)
        else:
            for i in range(n):
                out_mv[i] = <int32_t>(hashes[i] % nb)
    return out
