# Declarations for the point-in-time join kernel and the persisted key hash.
# Kept in a .pxd so other Cython modules can cimport the index and the hash
# without going through Python objects.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


# One hash-table slot. gid == -1 marks an empty slot; tag is the high half of
# the key hash so most mismatching probes are rejected without touching the
# view's key memory.
cdef struct Slot:
    uint32_t tag
    int32_t gid


# Key tuple -> group index over a grouped, sorted view. Borrows `keys`
# (row-major, n_rows x k); owns `starts` and `slots`.
cdef struct GroupIndex:
    const int64_t* keys
    Py_ssize_t k
    int64_t* starts          # n_groups + 1 entries; group g is rows [starts[g], starts[g+1])
    Py_ssize_t n_groups
    Slot* slots
    uint64_t mask            # capacity - 1; capacity a power of two >= max(16, 2 * n_groups)


# In-memory tuple hash (not persisted; free to change).
cdef uint64_t fmix64(uint64_t x) noexcept nogil
cdef uint64_t tuple_hash(const int64_t* key, Py_ssize_t k) noexcept nogil
cdef bint tuple_eq(const int64_t* a, const int64_t* b, Py_ssize_t k) noexcept nogil

# Group index lifecycle. Build/scan return -1 on success, -2 on allocation
# failure, or the first offending view row (>= 0) when the view is not
# grouped and sorted.
cdef Py_ssize_t index_scan(GroupIndex* idx, const int64_t* ts, const int64_t* created,
                           Py_ssize_t n_rows) noexcept nogil
cdef Py_ssize_t index_build(GroupIndex* idx) noexcept nogil
# index_find takes h = tuple_hash(key) so batched callers hash once; returns
# the group id or -1, always after a full tuple comparison.
cdef Py_ssize_t index_find(const GroupIndex* idx, const int64_t* key, uint64_t h) noexcept nogil
cdef void index_free(GroupIndex* idx) noexcept nogil

# Per-entity-row resolution; writes n_e results into out.
cdef void asof_lookup(const GroupIndex* idx, const int64_t* view_ts,
                      const int64_t* entity_keys, const int64_t* entity_ts,
                      const uint8_t* entity_valid, Py_ssize_t n_e,
                      int64_t ttl_us, int64_t* out) noexcept nogil

# Persisted key hash (on-disk bucket layout; never change without a version bump).
cdef uint64_t xxh64(const uint8_t* p, size_t n, uint64_t seed) noexcept nogil
cdef uint64_t xxh64_u64(uint64_t v) noexcept nogil
cdef uint64_t combine(uint64_t h, uint64_t v) noexcept nogil
