# The reply parsers of fstore bench's load generator (_loadgen.pyx), callable without the GIL.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

cdef int mp_reply(const uint8_t* p, const uint8_t* end, uint64_t* rid, int* ok,
                  const uint8_t** field, Py_ssize_t* field_len) noexcept nogil

cdef Py_ssize_t resp_reply(const uint8_t* p, const uint8_t* end, const int32_t* weights, Py_ssize_t nweights,
                           int64_t* present, int64_t* missing, const uint8_t** err,
                           Py_ssize_t* err_len) noexcept nogil

# MessagePack stepping, shared with the client's reply decoder (_protocol.ReplyDecoder)
cdef const uint8_t* _skip(const uint8_t* p, const uint8_t* end) noexcept nogil
cdef const uint8_t* _str(const uint8_t* p, const uint8_t* end, bint binary, const uint8_t** s,
                         Py_ssize_t* n) noexcept nogil

# a big-endian unsigned integer of ``n`` bytes (MessagePack's widths), for every C decoder
cdef inline uint64_t _be(const uint8_t* p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v
