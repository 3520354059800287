# cython: language_level=3
"""The feature server's GET values as MessagePack, written straight from the stored rows.

Exactly the bytes msgpack-python makes of the values fstore._ext._online.read decodes
(tests compare them for every dtype and any value), with no Python object per value:
that decoding and re-encoding was most of a 100-entity reply's cost.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

cdef extern from *:
    uint64_t __builtin_bswap64(uint64_t x) nogil

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

from fstore._ext._constants cimport (DEFAULTED, K_BOOL, K_FLOAT32, K_FLOAT64, K_INT32, K_INT64, K_STRING,
                                     K_TIMESTAMP, PRESENT)
from fstore._ext._record cimport record_read
from fstore._ext._online cimport (C_HEADER, ViewReader, _begin_read, _fixed_float, _fixed_int, _now_us, _var_field,
                                  _view_keys)


cdef struct Buf:
    char* data
    Py_ssize_t len
    Py_ssize_t cap


cdef inline int _reserve(Buf* b, Py_ssize_t extra) except -1:
    if b.len + extra <= b.cap:
        return 0
    return _grow(b, extra)


cdef int _grow(Buf* b, Py_ssize_t extra) except -1:
    cdef Py_ssize_t cap
    cdef char* data
    cap = max(b.cap * 2, b.len + extra, 256)
    data = <char*>realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data, b.cap = data, cap
    return 0


cdef inline int _put(Buf* b, const void* src, Py_ssize_t n) except -1:
    _reserve(b, n)
    memcpy(b.data + b.len, src, n)
    b.len += n
    return 0


cdef inline int _put1(Buf* b, uint8_t c) except -1:
    _reserve(b, 1)
    b.data[b.len] = <char>c
    b.len += 1
    return 0


cdef inline int _put_n(Buf* b, uint64_t v, int width) except -1:
    """``v`` big-endian in ``width`` (1..8) bytes: one byte swap and one copy."""
    cdef uint64_t be
    _reserve(b, 8)
    be = __builtin_bswap64(v << (8 * (8 - width)))
    memcpy(b.data + b.len, &be, 8)
    b.len += width
    return 0


cdef inline int _put_be(Buf* b, uint8_t head, uint64_t v, int width) except -1:
    """``head`` then ``v`` big-endian in ``width`` bytes."""
    _reserve(b, 9)
    b.data[b.len] = <char>head
    b.len += 1
    return _put_n(b, v, width)


cdef inline int _pack_int(Buf* b, int64_t v) except -1:
    """The smallest form, as msgpack-python packs a Python int."""
    if v >= 0:
        if v < 128:
            return _put1(b, <uint8_t>v)
        if v < 256:
            return _put_be(b, 0xcc, <uint64_t>v, 1)
        if v < 65536:
            return _put_be(b, 0xcd, <uint64_t>v, 2)
        if v < 4294967296:
            return _put_be(b, 0xce, <uint64_t>v, 4)
        return _put_be(b, 0xcf, <uint64_t>v, 8)
    if v >= -32:
        return _put1(b, <uint8_t>(<int8_t>v))
    if v >= -128:
        return _put_be(b, 0xd0, <uint64_t>v, 1)
    if v >= -32768:
        return _put_be(b, 0xd1, <uint64_t>v, 2)
    if v >= -2147483648:
        return _put_be(b, 0xd2, <uint64_t>v, 4)
    return _put_be(b, 0xd3, <uint64_t>v, 8)


cdef inline int _pack_double(Buf* b, double d) except -1:
    cdef uint64_t bits
    memcpy(&bits, &d, 8)
    return _put_be(b, 0xcb, bits, 8)


cdef inline int _pack_len(Buf* b, Py_ssize_t n, uint8_t fix, int fixmax, uint8_t h8, uint8_t h16, uint8_t h32) except -1:
    if fixmax and n < fixmax:
        return _put1(b, fix | <uint8_t>n)
    if h8 and n < 256:
        return _put_be(b, h8, n, 1)
    if n < 65536:
        return _put_be(b, h16, n, 2)
    return _put_be(b, h32, n, 4)


cdef int _pack_stored(Buf* b, const uint8_t* p, Py_ssize_t size, int kind, Py_ssize_t off, Py_ssize_t rank,
                      Py_ssize_t fixed_end) except -1:
    """One stored (non-null) value as MessagePack, as msgpack-python packs the value
    _decode makes of it: ints compact, floats as float 64, timestamps as the Timestamp
    extension (type -1) in its smallest form, strings as str and bytes as bin."""
    cdef int64_t i64, sec, nsec
    cdef uint32_t ln
    cdef const uint8_t* q
    if kind == K_INT32 or kind == K_INT64:
        return _pack_int(b, _fixed_int(p + off, kind))
    if kind == K_FLOAT32 or kind == K_FLOAT64:
        return _pack_double(b, _fixed_float(p + off, kind))
    if kind == K_BOOL:
        return _put1(b, 0xc3 if p[off] else 0xc2)
    if kind == K_TIMESTAMP:
        i64 = _fixed_int(p + off, kind)
        sec = i64 // 1000000  # C division (the build sets cdivision): truncates toward zero
        nsec = i64 - sec * 1000000
        if nsec < 0:  # before 1970: floor the seconds, so the nanoseconds are never negative
            sec -= 1
            nsec += 1000000
        nsec *= 1000
        # the Timestamp extension (type -1) in the smallest of its three forms
        if (sec >> 34) == 0:
            if nsec == 0 and sec < 4294967296:
                _put(b, b"\xd6\xff", 2)  # fixext 4: u32 seconds
                return _put_n(b, <uint64_t>sec, 4)
            _put(b, b"\xd7\xff", 2)  # fixext 8: 30-bit nanoseconds, 34-bit seconds
            return _put_n(b, (<uint64_t>nsec << 34) | <uint64_t>sec, 8)
        _put(b, b"\xc7\x0c\xff", 3)  # ext 8 of 12 bytes: u32 nanoseconds, i64 seconds
        _put_n(b, <uint64_t>nsec, 4)
        return _put_n(b, <uint64_t>sec, 8)
    q = _var_field(p, size, rank, fixed_end, &ln)
    if kind == K_STRING:
        _pack_len(b, ln, 0xa0, 32, 0xd9, 0xda, 0xdb)
    else:
        _pack_len(b, ln, 0, 0, 0xc4, 0xc5, 0xc6)
    return _put(b, q, ln)


def read_packed(env, plan, dict rows, now_us=None, tuple served=None):
    """A GET for the wire in one compiled call: (values, statuses, timestamps).

    ``values`` is MessagePack bytes, an array per output feature of one value per
    row, written from the stored rows with no Python object per value; statuses and
    timestamps are as ``fstore._ext._online.read``'s. ``rows`` is a dict of equal-length key columns.
    ``served`` (a tuple, fstore/_ext/_record.pxd) hands the read to its recorders once it succeeded.
    """
    cdef Buf buf
    buf.data, buf.len, buf.cap = NULL, 0, 0
    try:
        status, stamps = _read_into(&buf, env, plan, rows, _now_us() if now_us is None else <int64_t>now_us, served)
        return PyBytes_FromStringAndSize(buf.data, buf.len), status, stamps
    finally:
        free(buf.data)


cdef tuple _read_into(Buf* buf, object env, object plan, dict rows, int64_t now, tuple served):
    """read_packed's values appended to ``buf``; returns (statuses, timestamps). The read
    transaction is begun and ended here, around the lookups: a read never spans an await
    and the next one sees the newest commit."""
    cdef list readers = plan.readers
    cdef Py_ssize_t nv = len(readers), n_out = len(plan.names), n, v, j, i, pos, f
    cdef ViewReader r
    cdef list raws, per_view = []
    cdef list keys = None
    cdef bytes raw, d
    cdef const uint8_t* p
    cdef uint8_t st
    n = len(next(iter(rows.values()))) if rows else 0
    cdef bytearray status = PyByteArray_FromStringAndSize(NULL, n_out * n)
    cdef bytearray stamps = PyByteArray_FromStringAndSize(NULL, 8 * nv * n)
    cdef uint8_t* sp = <uint8_t*>PyByteArray_AS_STRING(status) if n_out * n else NULL
    cdef int64_t* tp = <int64_t*>PyByteArray_AS_STRING(stamps) if nv * n else NULL
    cdef Py_ssize_t[64] small_view, small_j
    cdef Py_ssize_t* out_view = small_view
    cdef Py_ssize_t* out_j = small_j
    if n_out > 64:
        out_view = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * n_out)
        out_j = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * n_out)
    try:
        if out_view == NULL or out_j == NULL:
            raise MemoryError()
        for v in range(nv):
            r = <ViewReader>readers[v]
            if r.packed_defaults is None:
                r.packed_defaults = [None if x is None else _packb(x) for x in r.defaults]
            for j in range(r.n_want):
                out_view[r.pos[j]] = v
                out_j[r.pos[j]] = j
        txn = _begin_read(env)
        try:
            get = txn.get
            for v in range(nv):
                r = <ViewReader>readers[v]
                keys = _view_keys(readers, v, rows, n, keys)
                raws = [None] * n
                r._lookup(get, keys, now, raws, sp, n, tp + v * n if tp != NULL else NULL)
                per_view.append(raws)
        finally:
            txn.abort()
        _reserve(buf, 16 + n_out * (5 + n * 9))
        _pack_len(buf, n_out, 0x90, 16, 0, 0xdc, 0xdd)
        for pos in range(n_out):
            v = out_view[pos]
            j = out_j[pos]
            r = <ViewReader>readers[v]
            raws = <list>per_view[v]
            _pack_len(buf, n, 0x90, 16, 0, 0xdc, 0xdd)
            for i in range(n):
                st = sp[pos * n + i]
                if st == PRESENT:
                    raw = <bytes>raws[i]
                    p = <const uint8_t*>PyBytes_AS_STRING(raw)
                    f = r.idx[j]
                    if (p[C_HEADER + (f >> 3)] >> (f & 7)) & 1:
                        _put1(buf, 0xc0)
                    else:
                        _pack_stored(buf, p, PyBytes_GET_SIZE(raw), r.kind[j], r.off[j], r.rank[j], r.fixed_end)
                elif st == DEFAULTED:
                    d = <bytes>r.packed_defaults[j]
                    _put(buf, PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d))
                else:
                    _put1(buf, 0xc0)
        if served is not None:
            record_read(served, plan, rows, n, per_view, sp, tp, now)
        return status, stamps
    finally:
        if out_view != small_view:
            free(out_view)
            free(out_j)


# ---- the reply frame -----------------------------------------------------------------

cdef bytes _STATUS_KEY = b"\xa6status"
cdef bytes _TS_KEY = b"\xa2ts"
cdef bytes _REQUEST_ID_KEY = b"\xaarequest_id"


cdef inline int _put_bytes(Buf* b, bytes x) except -1:
    return _put(b, PyBytes_AS_STRING(x), PyBytes_GET_SIZE(x))


cdef int _pack_obj(Buf* b, object x) except -1:
    """``x`` as msgpack-python packs it: ints, bytes-likes as bin and str in C, anything else by the Packer."""
    cdef Py_ssize_t ln
    cdef const char* s
    if type(x) is int and -9223372036854775808 <= x <= 9223372036854775807:
        return _pack_int(b, <int64_t>x)
    if type(x) is bytearray or type(x) is bytes:
        if type(x) is bytearray:
            s, ln = PyByteArray_AS_STRING(x), PyByteArray_GET_SIZE(x)
        else:
            s, ln = PyBytes_AS_STRING(x), PyBytes_GET_SIZE(x)
        _pack_len(b, ln, 0, 0, 0xc4, 0xc5, 0xc6)
        return _put(b, s, ln)
    if type(x) is str:
        s = PyUnicode_AsUTF8AndSize(x, &ln)
        _pack_len(b, ln, 0xa0, 32, 0xd9, 0xda, 0xdb)
        return _put(b, s, ln)
    return _put_bytes(b, _packb(x))


cdef int _reply_head(Buf* b, object rid, object prepared, bint meta, object request_id) except -1:
    """The frame's length placeholder, ``[rid, true, {`` and the map's constant entries up to "values"."""
    b.len = 4
    _put1(b, 0x93)
    _pack_obj(b, rid)
    if request_id is None:
        return _put_bytes(b, prepared.head_meta if meta else prepared.head_bare)
    _put(b, b"\xc3\x88" if meta else b"\xc3\x86", 2)  # true, a fixmap of 8 (6 without meta)
    return _put_bytes(b, prepared.entries)


cdef bytes _reply_tail(Buf* b, object status, object stamps, bint meta, object request_id):
    """status and ts (with ``meta``), the echoed ``request_id``, then the frame with its length filled in."""
    cdef Py_ssize_t total
    if meta:
        _put_bytes(b, _STATUS_KEY)
        _pack_obj(b, status)
        _put_bytes(b, _TS_KEY)
        _pack_obj(b, stamps)
    if request_id is not None:
        _put_bytes(b, _REQUEST_ID_KEY)
        _pack_obj(b, request_id)
    total = b.len - 4
    b.data[0] = <char>((total >> 24) & 0xFF)
    b.data[1] = <char>((total >> 16) & 0xFF)
    b.data[2] = <char>((total >> 8) & 0xFF)
    b.data[3] = <char>(total & 0xFF)
    return PyBytes_FromStringAndSize(b.data, b.len)


def get_reply(rid, prepared, bytes values, status, stamps, meta, request_id=None):
    """The frame of a GET's reply, ``[rid, true, {...}]``, for both paths: the map's constant
    part (names, dtypes, view_of, keys) was packed with the prepared shape, ``values`` is
    read_packed's MessagePack, and status and ts follow when ``meta`` is true. A caller's
    ``request_id`` (a checked str) is echoed last; the map then has one entry more.
    Written in one buffer in C, the bytes msgpack-python makes of each part."""
    cdef Buf buf
    buf.data, buf.len, buf.cap = NULL, 0, 0
    try:
        _reserve(&buf, 128 + PyBytes_GET_SIZE(values) + PyBytes_GET_SIZE(prepared.head_meta) + len(status) + len(stamps))
        _reply_head(&buf, rid, prepared, bool(meta), request_id)
        _put_bytes(&buf, values)
        return _reply_tail(&buf, status, stamps, bool(meta), request_id)
    finally:
        free(buf.data)


def read_reply(env, rid, prepared, dict rows, bint meta, request_id, tuple served):
    """read_packed and get_reply in one buffer, the values written where the frame has them:
    (frame, values_start, values_end, statuses, timestamps). What a served-read listener
    reads as the values is ``frame[values_start:values_end]``."""
    cdef Buf buf
    cdef Py_ssize_t v0, n
    buf.data, buf.len, buf.cap = NULL, 0, 0
    try:
        n = len(next(iter(rows.values()))) if rows else 0
        _reserve(&buf, 1024 + 256 * n)  # one allocation for the usual reply (20 numeric features a row)
        _reply_head(&buf, rid, prepared, meta, request_id)
        v0 = buf.len
        status, stamps = _read_into(&buf, env, prepared.plan, rows, _now_us(), served)
        v1 = buf.len
        return _reply_tail(&buf, status, stamps, meta, request_id), v0, v1, status, stamps
    finally:
        free(buf.data)


cdef object _PACKER = None


cdef bytes _packb(object value):
    global _PACKER
    if _PACKER is None:
        import msgpack
        _PACKER = msgpack.Packer(datetime=True, use_bin_type=True)
    return _PACKER.pack(value)
