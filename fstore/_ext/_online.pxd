# The online store's compiled codec and reader, as other compiled modules (_wire) see them.
# (statuses and dtype kinds: fstore/_ext/_constants.pxd)
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.string cimport memcpy

from fstore._ext._constants cimport K_FLOAT32, K_INT32

cdef enum:
    C_ROW_FORMAT = 1
    C_ROW_UNTIL = 2     # an aggregation view's row: i64 valid-until appended (see _online.pyx)
    C_HEADER = 17
    C_MAX_KEY = 511


cdef class ViewReader:
    cdef public object db
    cdef public list key_columns
    cdef list key_kinds
    cdef bint single_int
    cdef int64_t ttl_us
    cdef Py_ssize_t n_want, fixed_end
    cdef int* kind
    cdef Py_ssize_t* off
    cdef Py_ssize_t* rank
    cdef Py_ssize_t* idx
    cdef Py_ssize_t* pos
    cdef list defaults
    cdef public list out_positions
    cdef public list packed_defaults  # the defaults as MessagePack, made by _wire on its first read

    cdef list _keys_for(self, list entity_rows)
    cdef list _keys_for_columns(self, dict columns, Py_ssize_t n)
    cdef int _read(self, object get, list keys, int64_t now_us, list values, bint columns, uint8_t* status,
                   Py_ssize_t n, int64_t* ts, list raws) except -1
    cdef int _lookup(self, object get, list keys, int64_t now_us, list raws, uint8_t* status, Py_ssize_t n,
                     int64_t* ts) except -1


cdef int64_t _now_us() noexcept nogil
cdef const uint8_t* _var_field(const uint8_t* p, Py_ssize_t size, Py_ssize_t rank, Py_ssize_t fixed_end,
                               uint32_t* length) except NULL
cdef list _view_keys(list readers, Py_ssize_t v, object rows, Py_ssize_t n, list previous)
cdef object _begin_read(object env)


# A stored fixed-width value, read for both decoders (_online._decode, _wire._pack_stored).
cdef inline int64_t _fixed_int(const uint8_t* p, int kind) noexcept nogil:
    """An int32 (K_INT32) or an int64 or timestamp (8 bytes) at ``p``."""
    cdef int32_t i32
    cdef int64_t i64
    if kind == K_INT32:
        memcpy(&i32, p, 4)
        return i32
    memcpy(&i64, p, 8)
    return i64


cdef inline double _fixed_float(const uint8_t* p, int kind) noexcept nogil:
    """A float32 (K_FLOAT32, widened) or a float64 at ``p``."""
    cdef float f32
    cdef double f64
    if kind == K_FLOAT32:
        memcpy(&f32, p, 4)
        return <double>f32
    memcpy(&f64, p, 8)
    return f64
