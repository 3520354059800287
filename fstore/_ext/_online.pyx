# cython: language_level=3
"""Row codec and feature-vector assembly for the LMDB online store.

Layouts (all integers little-endian unless said otherwise; see docs/online-store.md):

key   one int64 key: 8 bytes big-endian with the sign bit flipped (byte order =
      numeric order, so sorted batches append); one string key: its UTF-8 bytes
      (the empty string, which LMDB refuses as a key, is the one byte 0xFF, which
      no UTF-8 text contains);
      composite: the parts in declared order, an int as above, a string as a
      big-endian u16 length and its bytes.
value u8 ROW_FORMAT | i64 event_ts_us | i64 created_ts_us (INT64_MIN = null) |
      null bitmap, ceil(F/8) bytes, bit i = feature i (declared order) is null |
      the fixed-width features in declared order (int32/float32 4 bytes,
      int64/float64/timestamp 8, bool 1; zeros when null) |
      the variable-width features in declared order (u32 length, bytes).
      ROW_FORMAT 2 (an aggregation view's row) adds i64 valid_until_us as the last 8
      bytes: from that time the row is EXPIRED (its window has moved past an event).
Fixed-width features sit at constant offsets, so a read decodes only what it needs.
"""
cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeUTF8
from libc.stdint cimport INT64_MAX, INT64_MIN, int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset
from libc.stdint cimport uintptr_t
from posix.time cimport CLOCK_REALTIME, clock_gettime, timespec

import datetime as _dt

import numpy as np
from lmdb import MapResizedError as _MapResizedError

from fstore._ext._constants cimport (DEFAULTED, EXPIRED, K_BOOL, K_FLOAT32, K_FLOAT64, K_INT32, K_INT64, K_STRING,
                                     K_TIMESTAMP, NOT_FOUND, PRESENT)
from fstore._ext._record cimport record_read
from fstore._ext._response cimport ResponseBase
from fstore.errors import KeyTooLong

ROW_FORMAT = C_ROW_FORMAT
HEADER = C_HEADER
MAX_KEY = C_MAX_KEY
# LMDB takes no zero-length key; 0xFF never occurs in UTF-8, so no other string maps here
cdef bytes EMPTY_STRING_KEY = b"\xff"

# bytes of a fixed-width value, by kind (fstore/_ext/_constants.pxd); 0: variable width
cdef int[8] FIXED = [4, 8, 4, 8, 1, 8, 0, 0]

from fstore.times import EPOCH as _EPOCH


cdef inline const uint8_t* _ptr(object buf):
    if buf is None:
        return NULL
    return <const uint8_t*><uintptr_t>buf.address


cdef struct Col:
    const uint8_t* valid   # NULL when the column has no nulls
    const uint8_t* data
    const int32_t* offs    # variable-width columns only
    Py_ssize_t base        # the array's offset


cdef Col* _cols(list columns) except NULL:
    """Raw pointers into pyarrow arrays; the caller keeps the arrays alive and frees the result."""
    cdef Py_ssize_t c, n = len(columns)
    cdef Col* out = <Col*>malloc(sizeof(Col) * (n if n else 1))
    if out == NULL:
        raise MemoryError()
    for c in range(n):
        bufs = columns[c].buffers()
        out[c].valid = _ptr(bufs[0]) if columns[c].null_count else NULL
        out[c].data = _ptr(bufs[len(bufs) - 1])
        out[c].offs = <const int32_t*>_ptr(bufs[1]) if len(bufs) == 3 else NULL
        out[c].base = columns[c].offset
    return out


cdef inline bint _bit(const uint8_t* bitmap, Py_ssize_t i) noexcept nogil:
    return bitmap == NULL or (bitmap[i >> 3] >> (i & 7)) & 1


cdef inline void _put_be64(uint8_t* p, int64_t v) noexcept nogil:
    cdef uint64_t u = (<uint64_t>v) ^ (<uint64_t>1 << 63)
    cdef int i
    for i in range(8):
        p[i] = (u >> (56 - 8 * i)) & 0xFF


def layout(kinds):
    """(offsets, var_rank, fixed_end) of a row: the byte offset of each fixed feature
    (or -1), the rank of each variable feature among them (or -1), and where the
    variable section starts."""
    n = len(kinds)
    off = HEADER + (n + 7) // 8
    offsets, ranks, r = [], [], 0
    for k in kinds:
        if FIXED[k]:
            offsets.append(off)
            ranks.append(-1)
            off += FIXED[k]
        else:
            offsets.append(-1)
            ranks.append(r)
            r += 1
    return offsets, ranks, off


# ---- keys ---------------------------------------------------------------------------

def encode_keys(list columns, list kinds):
    """The LMDB key of every row of the key columns (pyarrow int64 / string arrays).

    A row with a null in any key column gets None. Raises KeyTooLong (a ValueError)
    naming the row of a key longer than LMDB's 511 bytes.
    """
    cdef Py_ssize_t n = len(columns[0]) if columns else 0
    cdef Py_ssize_t k = len(columns), c, i, size, ln, row
    cdef list out = [None] * n
    cdef int[64] kind
    cdef bytes key
    cdef uint8_t* p
    cdef bint single_string = k == 1 and kinds[0] == K_STRING
    if k > 64:
        raise ValueError("at most 64 key columns")
    for c in range(k):
        kind[c] = kinds[c]
        if len(columns[c]) != n:
            raise ValueError("key columns differ in length")
    cdef Col* cols = _cols(columns)
    try:
        for i in range(n):
            size = 0
            for c in range(k):
                row = i + cols[c].base
                if not _bit(cols[c].valid, row):
                    size = -1
                    break
                if kind[c] == K_STRING:
                    ln = cols[c].offs[row + 1] - cols[c].offs[row]
                    size += ln if single_string else ln + 2
                else:
                    size += 8
            if size < 0:
                continue
            if size == 0:  # the empty string as the only key
                out[i] = EMPTY_STRING_KEY
                continue
            if size > C_MAX_KEY:
                raise KeyTooLong(i, size)
            key = PyBytes_FromStringAndSize(NULL, size)
            p = <uint8_t*>PyBytes_AS_STRING(key)
            for c in range(k):
                row = i + cols[c].base
                if kind[c] == K_STRING:
                    ln = cols[c].offs[row + 1] - cols[c].offs[row]
                    if not single_string:
                        p[0] = (ln >> 8) & 0xFF
                        p[1] = ln & 0xFF
                        p += 2
                    if ln:
                        memcpy(p, cols[c].data + cols[c].offs[row], ln)
                    p += ln
                else:
                    _put_be64(p, (<const int64_t*>cols[c].data)[row])
                    p += 8
            out[i] = key
    finally:
        free(cols)
    return out


cdef bytes _key_of(tuple values, list kinds):
    """One entity row's key from Python values; None if any part is None."""
    cdef Py_ssize_t k = len(kinds), c, size = 0, ln
    cdef list parts = []
    cdef bytes b, key
    cdef uint8_t* p
    for c in range(k):
        v = values[c]
        if v is None:
            return None
        if kinds[c] == K_STRING:
            if not isinstance(v, str):
                raise TypeError(f"expected a string key, got {type(v).__name__} {v!r}")
            b = PyUnicode_AsUTF8String(v)
            parts.append(b)
            size += len(b) if k == 1 else len(b) + 2
        else:
            if isinstance(v, bool) or not isinstance(v, int):
                if hasattr(v, "__index__") and not isinstance(v, bool):
                    v = v.__index__()
                else:
                    raise TypeError(f"expected an integer key, got {type(v).__name__} {v!r}")
            parts.append(v)
            size += 8
    if size > C_MAX_KEY:
        raise ValueError(f"the key is {size} bytes; LMDB keys are at most {C_MAX_KEY}")
    if size == 0:  # the empty string as the only key
        return EMPTY_STRING_KEY
    key = PyBytes_FromStringAndSize(NULL, size)
    p = <uint8_t*>PyBytes_AS_STRING(key)
    for c in range(k):
        if kinds[c] == K_STRING:
            b = parts[c]
            ln = len(b)
            if k != 1:
                p[0] = (ln >> 8) & 0xFF
                p[1] = ln & 0xFF
                p += 2
            memcpy(p, PyBytes_AS_STRING(b), ln)
            p += ln
        else:
            _put_be64(p, <int64_t>parts[c])
            p += 8
    return key


def key_of(values, kinds):
    """The key of one entity given as a tuple of Python values (None if a part is null)."""
    return _key_of(tuple(values), list(kinds))


# ---- rows ---------------------------------------------------------------------------

def encode_rows(const int64_t[::1] event_ts, const int64_t[::1] created_ts, list columns, list kinds,
                object valid_until=None):
    """One encoded value per row from pyarrow arrays typed as the features' kinds.

    ``columns`` hold int32, int64, float32, float64, bool, timestamp[us] (int64
    values), string or binary arrays (32-bit offsets), one per feature in
    declared order. With ``valid_until`` (int64 microseconds per row) the rows are
    ROW_FORMAT 2: the time is appended, and a read at or after it is EXPIRED.
    """
    cdef Py_ssize_t n = event_ts.shape[0], f, nf = len(columns), i, size, fixed_end, row
    cdef const int64_t[::1] until
    cdef bint has_until = valid_until is not None
    if has_until:
        until = valid_until
        if until.shape[0] != n:
            raise ValueError("valid-until times and timestamps differ in length")
    cdef list out = [None] * n
    offsets_l, ranks_l, fixed_end = layout(kinds)
    if created_ts.shape[0] != n:
        raise ValueError("event and created timestamps differ in length")
    for col in columns:
        if len(col) != n:
            raise ValueError("columns and timestamps differ in length")
    cdef int* kind = <int*>malloc(sizeof(int) * (nf + 1))
    cdef Py_ssize_t* offset = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (nf + 1))
    cdef Col* cols = NULL
    cdef uint8_t* p
    cdef uint8_t* q
    cdef bytes value
    cdef uint32_t ln32
    try:
        if kind == NULL or offset == NULL:
            raise MemoryError()
        for f in range(nf):
            kind[f] = kinds[f]
            offset[f] = offsets_l[f]
        cols = _cols(columns)
        for i in range(n):
            size = fixed_end
            for f in range(nf):
                if kind[f] >= K_STRING:
                    size += 4
                    row = i + cols[f].base
                    if _bit(cols[f].valid, row):
                        size += cols[f].offs[row + 1] - cols[f].offs[row]
            if has_until:
                size += 8
            value = PyBytes_FromStringAndSize(NULL, size)
            p = <uint8_t*>PyBytes_AS_STRING(value)
            memset(p, 0, fixed_end)
            p[0] = C_ROW_FORMAT
            if has_until:
                p[0] = C_ROW_UNTIL
                memcpy(p + size - 8, &until[i], 8)
            memcpy(p + 1, &event_ts[i], 8)
            memcpy(p + 9, &created_ts[i], 8)
            q = p + fixed_end
            for f in range(nf):
                row = i + cols[f].base
                if not _bit(cols[f].valid, row):
                    p[C_HEADER + (f >> 3)] |= 1 << (f & 7)
                    if kind[f] >= K_STRING:
                        memset(q, 0, 4)
                        q += 4
                    continue
                if kind[f] == K_BOOL:
                    p[offset[f]] = (cols[f].data[row >> 3] >> (row & 7)) & 1
                elif kind[f] >= K_STRING:
                    ln32 = cols[f].offs[row + 1] - cols[f].offs[row]
                    memcpy(q, &ln32, 4)
                    if ln32:
                        memcpy(q + 4, cols[f].data + cols[f].offs[row], ln32)
                    q += 4 + ln32
                else:
                    memcpy(p + offset[f], cols[f].data + row * FIXED[kind[f]], FIXED[kind[f]])
            out[i] = value
    finally:
        free(kind)
        free(offset)
        free(cols)
    return out


def row_times(bytes value):
    """(event_ts_us, created_ts_us) of an encoded row; raises ValueError on a foreign format."""
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(value)
    cdef int64_t ts, cr
    if PyBytes_GET_SIZE(value) < C_HEADER or (p[0] != C_ROW_FORMAT and p[0] != C_ROW_UNTIL):
        raise ValueError("not a row of online format %d" % C_ROW_FORMAT)
    memcpy(&ts, p + 1, 8)
    memcpy(&cr, p + 9, 8)
    return ts, cr


cpdef bint is_newer(bytes new, bytes old):
    """Whether ``new`` should replace ``old``: a strictly greater (event, created) time."""
    cdef int64_t a, b, c, d
    cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(new)
    cdef const uint8_t* q = <const uint8_t*>PyBytes_AS_STRING(old)
    memcpy(&a, p + 1, 8)
    memcpy(&b, q + 1, 8)
    if a != b:
        return a > b
    memcpy(&c, p + 9, 8)
    memcpy(&d, q + 9, 8)
    return c > d


def key_order(list keys):
    """2: strictly ascending (so distinct); 1: ascending with repeats; 0: neither, or a None
    among them. Tells whether a batch can skip sorting: one pass of memcmp, no allocation."""
    cdef Py_ssize_t i, n = len(keys), la, lb
    cdef int c, order = 2
    cdef bytes a, b
    for i in range(n):
        if keys[i] is None:
            return 0
    for i in range(1, n):
        a, b = <bytes>keys[i - 1], <bytes>keys[i]
        la, lb = PyBytes_GET_SIZE(a), PyBytes_GET_SIZE(b)
        c = memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), la if la < lb else lb)
        if c == 0:
            c = (la > lb) - (la < lb)
        if c > 0:
            return 0
        if c == 0:
            order = 1
    return order


def merge_newer(txn, db, list keys, list values):
    """Put each (key, value) unless the stored row is as new or newer; returns rows written.

    Runs inside the caller's write transaction, so a batch is applied whole or not at all.
    """
    cdef Py_ssize_t i, n = len(keys), written = 0
    cdef bytes k, v
    get, put = txn.get, txn.put
    for i in range(n):
        k = keys[i]
        if k is None:
            continue
        v = values[i]
        old = get(k, None, db)
        if old is None or is_newer(v, old):
            put(k, v, db=db)
            written += 1
    return written


# ---- reads --------------------------------------------------------------------------

cdef object _decode(const uint8_t* p, Py_ssize_t size, int kind, Py_ssize_t off, Py_ssize_t rank,
                    Py_ssize_t fixed_end):
    cdef uint32_t ln
    cdef const uint8_t* q
    if kind == K_INT32 or kind == K_INT64:
        return _fixed_int(p + off, kind)
    if kind == K_FLOAT32 or kind == K_FLOAT64:
        return _fixed_float(p + off, kind)
    if kind == K_BOOL:
        return p[off] != 0
    if kind == K_TIMESTAMP:
        return _EPOCH + _dt.timedelta(microseconds=_fixed_int(p + off, kind))
    q = _var_field(p, size, rank, fixed_end, &ln)
    if kind == K_STRING:
        return PyUnicode_DecodeUTF8(<const char*>q, ln, "strict")
    return PyBytes_FromStringAndSize(<const char*>q, ln)


cdef const uint8_t* _var_field(const uint8_t* p, Py_ssize_t size, Py_ssize_t rank, Py_ssize_t fixed_end,
                               uint32_t* length) except NULL:
    """Where the variable-width feature of rank ``rank`` starts in a row, and its length;
    ValueError for a row too short to hold it."""
    cdef Py_ssize_t pos = fixed_end, r
    cdef uint32_t ln
    for r in range(rank + 1):
        if pos + 4 > size:
            raise ValueError("truncated row")
        memcpy(&ln, p + pos, 4)
        if r == rank:
            if pos + 4 + ln > size:
                raise ValueError("truncated row")
            length[0] = ln
            return p + pos + 4
        pos += 4 + ln
    raise ValueError("truncated row")


cdef inline bytes _int_key(object v):
    """The key of a single int64 key (the common case), with the checks of _key_of."""
    cdef bytes key
    if type(v) is not int:
        return _key_of((v,), _INT_KINDS)
    key = PyBytes_FromStringAndSize(NULL, 8)
    _put_be64(<uint8_t*>PyBytes_AS_STRING(key), <int64_t>v)
    return key


cdef list _INT_KINDS = [K_INT64]


cdef class ViewReader:
    """How to read the wanted features of one view version out of its rows.

    Built once per (registry version, request shape) and reused for every request:
    offsets, kinds and output positions live in C arrays, so a request pays only
    for its lookups and the Python objects it returns.
    """

    def __cinit__(self, *args, **kwargs):
        self.kind = NULL
        self.off = self.rank = self.idx = self.pos = NULL

    def __init__(self, db, key_columns, key_kinds, all_kinds, want_indices, defaults, ttl_us,
                 out_positions):
        offsets, ranks, fixed_end = layout(all_kinds)
        cdef Py_ssize_t j, n = len(want_indices)
        self.db = db
        self.key_columns = list(key_columns)
        self.key_kinds = list(key_kinds)
        self.single_int = len(self.key_kinds) == 1 and self.key_kinds[0] == K_INT64
        self.ttl_us = ttl_us or 0
        self.fixed_end = fixed_end
        self.defaults = list(defaults)
        self.n_want = n
        self.out_positions = list(out_positions)
        self.kind = <int*>malloc(sizeof(int) * (n + 1))
        self.off = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (n + 1))
        self.rank = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (n + 1))
        self.idx = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (n + 1))
        self.pos = <Py_ssize_t*>malloc(sizeof(Py_ssize_t) * (n + 1))
        if not (self.kind and self.off and self.rank and self.idx and self.pos):
            raise MemoryError()
        for j in range(n):
            i = want_indices[j]
            self.kind[j] = all_kinds[i]
            self.off[j] = offsets[i]
            self.rank[j] = ranks[i]
            self.idx[j] = i
            self.pos[j] = out_positions[j]

    def __dealloc__(self):
        free(self.kind)
        free(self.off)
        free(self.rank)
        free(self.idx)
        free(self.pos)

    def keys_for(self, list entity_rows):
        """The key of every entity row (None for a null part); KeyError names a missing column."""
        return self._keys_for(entity_rows)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef list _keys_for(self, list entity_rows):
        cdef Py_ssize_t i, n = len(entity_rows)
        cdef list out = [None] * n
        cols = self.key_columns
        if self.single_int:
            col = cols[0]
            for i in range(n):
                out[i] = _int_key(entity_rows[i][col])
        elif len(cols) == 1:
            col = cols[0]
            for i in range(n):
                out[i] = _key_of((entity_rows[i][col],), self.key_kinds)
        else:
            for i in range(n):
                row = entity_rows[i]
                out[i] = _key_of(tuple([row[c] for c in cols]), self.key_kinds)
        return out

    def keys_for_columns(self, dict columns, Py_ssize_t n):
        """Keys from columns of join key values (the wire protocol's form)."""
        return self._keys_for_columns(columns, n)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef list _keys_for_columns(self, dict columns, Py_ssize_t n):
        cdef Py_ssize_t i, c
        cdef list out = [None] * n
        cdef list cols
        if self.single_int:  # the common case, without a list of columns
            col0 = columns[self.key_columns[0]]
            if len(col0) != n:
                raise ValueError(f"entity columns differ in length ({len(col0)} vs {n})")
            for i in range(n):
                out[i] = _int_key(col0[i])
            return out
        cols = [columns[k] for k in self.key_columns]
        for col in cols:
            if len(col) != n:
                raise ValueError(f"entity columns differ in length ({len(col)} vs {n})")
        if len(cols) == 1:
            col0 = cols[0]
            for i in range(n):
                out[i] = _key_of((col0[i],), self.key_kinds)
        else:
            for i in range(n):
                out[i] = _key_of(tuple([col[i] for col in cols]), self.key_kinds)
        return out

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef int _read(self, object get, list keys, int64_t now_us, list values, bint columns, uint8_t* status,
                   Py_ssize_t n, int64_t* ts, list raws) except -1:
        """Fill output ``pos`` of row ``i``: values[pos][i] when ``columns``, else values[pos * n + i].

        The statuses come from ``_lookup`` (the one place the rule lives); this decodes
        the PRESENT values and puts the defaults where they apply. ``raws`` (n Nones) is
        left holding each used row's bytes, for the recorders.
        """
        cdef Py_ssize_t i, j, pos, size = 0, f
        cdef bytes raw
        cdef const uint8_t* p = NULL
        cdef list defaults = self.defaults
        self._lookup(get, keys, now_us, raws, status, n, ts)
        for i in range(n):
            raw = <bytes>raws[i] if raws[i] is not None else None
            if raw is not None:
                p = <const uint8_t*>PyBytes_AS_STRING(raw)
                size = PyBytes_GET_SIZE(raw)
            for j in range(self.n_want):
                pos = self.pos[j]
                if raw is None:
                    v = defaults[j] if status[pos * n + i] == DEFAULTED else None
                else:
                    f = self.idx[j]
                    if (p[C_HEADER + (f >> 3)] >> (f & 7)) & 1:
                        v = None
                    else:
                        v = _decode(p, size, self.kind[j], self.off[j], self.rank[j], self.fixed_end)
                if columns:
                    (<list>values[pos])[i] = v
                else:
                    values[pos * n + i] = v
        return 0

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef int _lookup(self, object get, list keys, int64_t now_us, list raws, uint8_t* status, Py_ssize_t n,
                     int64_t* ts) except -1:
        """The statuses and timestamps of ``_read``, keeping each usable row's bytes in ``raws``
        (None where the status is not PRESENT) instead of decoding them."""
        cdef Py_ssize_t i, j
        cdef bytes raw
        cdef const uint8_t* p
        cdef int64_t t, until
        cdef Py_ssize_t size
        cdef bint future
        cdef uint8_t st
        cdef list defaults = self.defaults
        db = self.db
        for i in range(n):
            k = keys[i]
            raw = None if k is None else get(k, None, db)
            if raw is not None:
                p = <const uint8_t*>PyBytes_AS_STRING(raw)
                size = PyBytes_GET_SIZE(raw)
                if size < self.fixed_end or (p[0] != C_ROW_FORMAT and
                                             (p[0] != C_ROW_UNTIL or size < self.fixed_end + 8)):
                    raise ValueError("a stored row has an unknown format")
                memcpy(&t, p + 1, 8)
                future = t > now_us
                ts[i] = INT64_MIN if future else t
                until = INT64_MAX
                if p[0] == C_ROW_UNTIL:
                    memcpy(&until, p + size - 8, 8)
                if not (future or (self.ttl_us > 0 and t < now_us - self.ttl_us) or now_us >= until):
                    raws[i] = raw
                    for j in range(self.n_want):
                        status[self.pos[j] * n + i] = PRESENT
                    continue
                st = NOT_FOUND if future else EXPIRED
            else:
                ts[i] = INT64_MIN
                st = NOT_FOUND
            for j in range(self.n_want):
                status[self.pos[j] * n + i] = st if defaults[j] is None else DEFAULTED
        return 0


@cython.boundscheck(False)
@cython.wraparound(False)
cdef tuple _assemble(list readers, object get, object rows, int64_t now_us, Py_ssize_t n_out, bint columns,
                     list keep):
    """The read of every view; ``keep``, when a list, gets each view's stored rows (see _read)."""
    cdef bint columnar = type(rows) is dict
    cdef Py_ssize_t n, v, nv = len(readers)
    cdef list values
    cdef ViewReader r
    cdef list keys = None, raws
    if columnar:
        n = len(next(iter((<dict>rows).values()))) if rows else 0
    else:
        n = len(<list>rows)
    if columns:
        values = [[None] * n for _ in range(n_out)]
    else:
        values = [None] * (n_out * n)
    cdef bytearray status = PyByteArray_FromStringAndSize(NULL, n_out * n)
    cdef bytearray stamps = PyByteArray_FromStringAndSize(NULL, 8 * nv * n)
    cdef uint8_t* sp = <uint8_t*>PyByteArray_AS_STRING(status) if n_out * n else NULL
    cdef int64_t* tp = <int64_t*>PyByteArray_AS_STRING(stamps) if nv * n else NULL
    for v in range(nv):
        r = <ViewReader>readers[v]
        keys = _view_keys(readers, v, rows, n, keys)
        raws = [None] * n
        r._read(get, keys, now_us, values, columns, sp, n, tp + v * n if tp != NULL else NULL, raws)
        if keep is not None:
            keep.append(raws)
    return values, status, stamps


cdef list _view_keys(list readers, Py_ssize_t v, object rows, Py_ssize_t n, list previous):
    """The keys of reader ``v``: those of the reader before it (``previous``) when both
    have the same join keys, else encoded from ``rows`` (a dict of columns or a list of dicts)."""
    cdef ViewReader r = <ViewReader>readers[v], before
    if v > 0 and previous is not None:
        before = <ViewReader>readers[v - 1]
        if r.key_columns == before.key_columns and r.key_kinds == before.key_kinds:
            return previous
    return r._keys_for_columns(<dict>rows, n) if type(rows) is dict else r._keys_for(<list>rows)


cdef object _begin_read(object env):
    """A read transaction, adopting a map grown by a writer in another process."""
    try:
        return env.begin()
    except _MapResizedError:
        env.set_mapsize(0)
        return env.begin()


cdef int64_t _now_us() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000 + ts.tv_nsec // 1000


def read(env, plan, rows, now_us, type response=None, bint columns=False, tuple served=None):
    """One request in a read transaction of its own, in one compiled call.

    ``plan`` has ``readers`` and ``names``; ``now_us`` None means the clock's now.
    Returns (values, statuses, timestamps), or, given a ``response`` class (a
    ResponseBase subclass), an instance of it holding them. ``values`` is one flat
    output-major list of n_out x n values, or (``columns``, without ``response``) a
    list per output; ``statuses`` a bytearray of n_out x n codes (output-major) and
    ``timestamps`` a bytearray of len(readers) x n int64 microseconds (INT64_MIN =
    none): no NumPy array on the hot path, OnlineResponse views them when asked.
    Adopts a map grown by a writer in another process (LMDB's MapResizedError).
    ``served`` (a tuple, fstore/_ext/_record.pxd) hands the read to its recorders.
    """
    cdef int64_t now = _now_us() if now_us is None else <int64_t>now_us
    cdef list readers = plan.readers
    cdef ResponseBase out
    cdef list keep = [] if served is not None else None
    cdef Py_ssize_t n
    if type(rows) is not dict and type(rows) is not list:
        raise TypeError("rows must be a list of dicts or a dict of columns")
    txn = _begin_read(env)
    try:
        result = _assemble(readers, txn.get, rows, now, len(plan.names), columns and response is None, keep)
    finally:
        txn.abort()
    if served is not None:
        if type(rows) is dict:
            n = len(next(iter((<dict>rows).values()))) if rows else 0
        else:
            n = len(<list>rows)
        _record_result(served, plan, rows, n, keep, result, now)
    if response is None:
        return result
    out = <ResponseBase>response.__new__(response)
    out.entity_rows, out.plan = rows, plan
    out._values, out._raw_status, out._raw_ts = result
    out._flat = True
    return out


cdef void _record_result(tuple served, object plan, object rows, Py_ssize_t n, list keep, tuple result,
                         int64_t now) noexcept:
    """Hand a read to the recorders of ``served`` (errors are theirs: record_read keeps them)."""
    cdef bytearray status = <bytearray>result[1], stamps = <bytearray>result[2]
    record_read(served, plan, rows, n, keep,
                <const uint8_t*>PyByteArray_AS_STRING(status) if len(status) else NULL,
                <const int64_t*>PyByteArray_AS_STRING(stamps) if len(stamps) else NULL, now)
