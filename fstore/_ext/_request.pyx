# cython: language_level=3
"""A fast GET's request decoded in C, straight from the connection's buffer.

msgpack.unpackb of ``[2, id, {...}]`` and the dict lookups after it were a tenth of a
fast GET's CPU. Here the frame is walked once: the op and id, ``entities`` (a map of
columns of ints or strings, built as the dict read_packed takes), ``meta`` (a bool),
``request_id`` (nil or a str), and every other entry of the map (``features``,
``service``, ``full_names``, or any other) kept as raw bytes, the request's *shape*. The
shape's bytes name its key in FastGet.prepared (found once per shape with msgpack, as
FastGet.answer finds it, then remembered), so a shape is one bytes hash per request.

Anything else (another form of a value, duplicate or non-str keys, trailing bytes, a new
shape, a check that fails) returns None, and the request takes FastGet.answer and then,
if need be, the Python path, exactly as before: this decoder only ever answers what
FastGet.answer would answer, with the same bytes.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int8_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcmp, memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import msgpack

from fstore._ext._constants cimport OP_GET
from fstore._ext._replies cimport _be

cdef object _unpackb = msgpack.unpackb

cdef enum:
    MAX_SHAPE = 4096   # bytes of a shape decoded here; a longer one takes FastGet.answer
    MAX_SHAPES = 256   # shapes remembered (FastGet.prepared is bounded as well)
    MAX_DEPTH = 8      # nesting skipped inside a shape's values


cdef struct Rd:
    const uint8_t* p
    Py_ssize_t n, at


cdef inline bint _need(Rd* r, Py_ssize_t k) noexcept nogil:
    return r.at + k <= r.n


cdef int _int(Rd* r, int64_t* out, uint64_t* big) noexcept nogil:
    """An integer: 1 signed (``out``), 2 unsigned above int64 (``big``), 0 not an integer."""
    cdef uint8_t b
    cdef int width
    if not _need(r, 1):
        return 0
    b = r.p[r.at]
    if b <= 0x7f or b >= 0xe0:
        out[0] = <int8_t>b
        r.at += 1
        return 1
    if 0xcc <= b <= 0xcf:
        width = 1 << (b - 0xcc)
        if not _need(r, 1 + width):
            return 0
        big[0] = _be(r.p + r.at + 1, width)
        r.at += 1 + width
        if big[0] > <uint64_t>0x7fffffffffffffff:
            return 2
        out[0] = <int64_t>big[0]
        return 1
    if 0xd0 <= b <= 0xd3:
        width = 1 << (b - 0xd0)
        if not _need(r, 1 + width):
            return 0
        big[0] = _be(r.p + r.at + 1, width)
        if width < 8 and (big[0] >> (8 * width - 1)) & 1:  # sign-extend
            big[0] |= ~((<uint64_t>1 << (8 * width)) - 1)
        out[0] = <int64_t>big[0]
        r.at += 1 + width
        return 1
    return 0


cdef int _str(Rd* r, const char** s, Py_ssize_t* size) noexcept nogil:
    """A str's bytes (1), or 0 when the next value is not a str."""
    cdef uint8_t b
    cdef int width
    if not _need(r, 1):
        return 0
    b = r.p[r.at]
    if 0xa0 <= b <= 0xbf:
        size[0], width = b & 0x1f, 0
    elif 0xd9 <= b <= 0xdb:
        width = 1 << (b - 0xd9)
        if not _need(r, 1 + width):
            return 0
        size[0] = <Py_ssize_t>_be(r.p + r.at + 1, width)
    else:
        return 0
    if size[0] < 0 or not _need(r, 1 + width + size[0]):
        return 0
    s[0] = <const char*>(r.p + r.at + 1 + width)
    r.at += 1 + width + size[0]
    return 1


cdef int _len(Rd* r, uint8_t fix, uint8_t fix_mask, uint8_t b16, Py_ssize_t* out) noexcept nogil:
    """The count of an array (fix 0x90) or map (fix 0x80) header, or 0 when it is not one."""
    cdef uint8_t b
    cdef int width
    if not _need(r, 1):
        return 0
    b = r.p[r.at]
    if (b & <uint8_t>~fix_mask) == fix:
        out[0] = b & fix_mask
        r.at += 1
        return 1
    if b == b16 or b == b16 + 1:
        width = 2 if b == b16 else 4
        if not _need(r, 1 + width):
            return 0
        out[0] = <Py_ssize_t>_be(r.p + r.at + 1, width)
        r.at += 1 + width
        return 1
    return 0


cdef int _skip(Rd* r, int depth) noexcept nogil:
    """Past one value of any type (1), or 0 when it is cut short or nested too deep."""
    cdef uint8_t b
    cdef Py_ssize_t k, i, size
    cdef const char* s
    cdef int64_t v
    cdef uint64_t u
    if depth > MAX_DEPTH or not _need(r, 1):
        return 0
    b = r.p[r.at]
    if b <= 0x7f or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3:
        r.at += 1
        return 1
    if _int(r, &v, &u):
        return 1
    if _str(r, &s, &size):
        return 1
    if b == 0xca or b == 0xcb:
        k = 5 if b == 0xca else 9
    elif 0xc4 <= b <= 0xc6:  # bin 8/16/32
        k = 1 << (b - 0xc4)
        if not _need(r, 1 + k):
            return 0
        k = 1 + k + <Py_ssize_t>_be(r.p + r.at + 1, <int>k)
    elif 0xd4 <= b <= 0xd8:  # fixext
        k = 2 + (1 << (b - 0xd4))
    elif 0xc7 <= b <= 0xc9:  # ext 8/16/32
        k = 1 << (b - 0xc7)
        if not _need(r, 1 + k):
            return 0
        k = 2 + k + <Py_ssize_t>_be(r.p + r.at + 1, <int>k)
    elif _len(r, 0x90, 0x0f, 0xdc, &k):
        for i in range(k):
            if not _skip(r, depth + 1):
                return 0
        return 1
    elif _len(r, 0x80, 0x0f, 0xde, &k):
        for i in range(2 * k):
            if not _skip(r, depth + 1):
                return 0
        return 1
    else:
        return 0
    if k < 0 or not _need(r, k):
        return 0
    r.at += k
    return 1


cdef double _monotonic() noexcept nogil:
    """time.monotonic()'s clock: FastGet.valid_until is set from it."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef object _column(Rd* r):
    """An entity column: a list of ints or strs, or None for anything else."""
    cdef Py_ssize_t k, i, size
    cdef int64_t v
    cdef uint64_t u
    cdef int got
    cdef const char* s
    if not _len(r, 0x90, 0x0f, 0xdc, &k) or k > r.n - r.at:
        return None
    out = [None] * k
    for i in range(k):
        got = _int(r, &v, &u)
        if got == 1:
            out[i] = v
        elif got == 2:
            out[i] = u
        elif _str(r, &s, &size):
            try:
                out[i] = PyUnicode_DecodeUTF8(s, size, NULL)
            except UnicodeDecodeError:
                return None
        else:
            return None
    return out


cdef class RawGets:
    """One worker's C decoder of fast GETs, beside its FastGet (see the module's docstring)."""

    def __init__(self, fast):
        self.fast = fast
        self.shapes = {}

    def reply_for(self, bytes body):
        """What ``answer`` gives for a frame's body: a reply, or None (FastGet.answer's turn). For tests."""
        return self.answer(body, len(body))

    cdef object answer(self, const char* frame, Py_ssize_t size):
        """The reply frame of the GET in ``frame`` (a frame's body), or None: take FastGet.answer."""
        cdef Rd r
        cdef Py_ssize_t entries, e, c, n_cols, klen, n = -1, shape_len = 0, n_shape = 0
        cdef const char* key
        cdef int64_t rid
        cdef uint64_t u
        cdef char shape[MAX_SHAPE]
        cdef Py_ssize_t begin
        cdef bint seen_entities = False, seen_meta = False, seen_rid = False
        r.p, r.n, r.at = <const uint8_t*>frame, size, 0
        if size < 3 or r.p[0] != 0x93 or r.p[1] != OP_GET:
            return None
        r.at = 2
        if _int(&r, &rid, &u) != 1 or not 0 < rid < 4294967296:
            return None
        if not _len(&r, 0x80, 0x0f, 0xde, &entries):
            return None
        entities, meta, request_id = None, True, None
        for e in range(entries):
            begin = r.at
            if not _str(&r, &key, &klen):
                return None
            if klen == 8 and memcmp(key, b"entities", 8) == 0:
                if seen_entities or not _len(&r, 0x80, 0x0f, 0xde, &n_cols) or n_cols == 0:
                    return None
                seen_entities = True
                entities = {}
                for c in range(n_cols):
                    if not _str(&r, &key, &klen):
                        return None
                    try:
                        name = PyUnicode_DecodeUTF8(key, klen, NULL)
                    except UnicodeDecodeError:
                        return None
                    col = _column(&r)
                    if col is None or name in entities or (n >= 0 and len(<list>col) != n):
                        return None
                    n = len(<list>col)
                    entities[name] = col
            elif klen == 4 and memcmp(key, b"meta", 4) == 0:
                if seen_meta or not _need(&r, 1) or r.p[r.at] not in (0xc2, 0xc3):
                    return None
                seen_meta, meta = True, r.p[r.at] == 0xc3
                r.at += 1
            elif klen == 10 and memcmp(key, b"request_id", 10) == 0:
                if seen_rid or not _need(&r, 1):
                    return None
                seen_rid = True
                if r.p[r.at] == 0xc0:
                    r.at += 1
                elif _str(&r, &key, &klen):
                    try:
                        request_id = PyUnicode_DecodeUTF8(key, klen, NULL)
                    except UnicodeDecodeError:
                        return None
                    if not 0 < len(<str>request_id) <= self.fast.max_request_id:
                        return None  # the Python path refuses it, naming the field
                else:
                    return None
            else:  # part of the shape: kept as raw bytes
                if not _skip(&r, 0) or shape_len + r.at - begin > MAX_SHAPE:
                    return None
                memcpy(shape + shape_len, r.p + begin, r.at - begin)
                shape_len += r.at - begin
                n_shape += 1
        if r.at != size or entities is None or n > self.fast.max_rows or n_shape > 15:
            return None
        fast = self.fast
        if _monotonic() >= fast.valid_until:
            return None
        shape_key = self.shapes.get(PyBytes_FromStringAndSize(shape, shape_len), False)
        if shape_key is False:
            shape_key = self._learn(PyBytes_FromStringAndSize(shape, shape_len), n_shape)
        if shape_key is None:
            return None
        prepared = fast.prepared.get(shape_key)
        if prepared is None:
            return None
        return fast.reply(rid, prepared, entities, n, meta, request_id)

    cdef object _learn(self, bytes shape, Py_ssize_t n_shape):
        """The key in FastGet.prepared of a new shape, found as FastGet.answer finds it (None: no key)."""
        args = _unpackb(bytes([0x80 | n_shape]) + shape, raw=False, timestamp=3, strict_map_key=False)
        features = args.get("features")
        try:
            key = (tuple(features) if type(features) is list else features, args.get("service"),
                   args.get("full_names", False))
            hash(key)
        except TypeError:
            key = None
        if len(self.shapes) >= MAX_SHAPES:
            self.shapes.clear()
        self.shapes[shape] = key
        return key
