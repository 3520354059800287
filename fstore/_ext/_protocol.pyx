# cython: language_level=3
"""Framing of the wire protocol (docs/protocol.md): a bounds-checked reader of
length-prefixed frames and a writer that prefixes a packed body with its length.

The reader owns one growing buffer per connection; frames are cut out of it with
no per-byte Python work, and a bad length is reported before its body is read.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from fstore._ext._replies cimport _skip, _str

cdef enum:
    C_PREFIX = 4

PREFIX = C_PREFIX

from fstore.errors import BadFrame, FrameTooLarge


cdef class FrameReader:
    """Accumulates bytes from a stream and yields whole frame bodies."""

    cdef bytearray _buf
    cdef Py_ssize_t _start
    cdef readonly Py_ssize_t max_frame

    def __init__(self, Py_ssize_t max_frame):
        self._buf = bytearray()
        self._start = 0
        self.max_frame = max_frame

    def feed(self, data):
        """Append bytes received from the peer."""
        if self._start and self._start == len(self._buf):
            self._buf.clear()  # everything consumed: start over without copying
            self._start = 0
        self._buf += data

    @property
    def buffered(self):
        return len(self._buf) - self._start

    def next(self):
        """The next complete frame body as bytes, or None if more bytes are needed.

        Raises BadFrame for a zero length and FrameTooLarge for a length above
        ``max_frame``; the caller then replies with request id 0 and closes the connection.
        """
        cdef Py_ssize_t avail = len(self._buf) - self._start
        cdef const uint8_t* p
        cdef uint32_t n
        cdef bytes body
        if avail < C_PREFIX:
            return None
        p = <const uint8_t*>PyByteArray_AS_STRING(self._buf) + self._start
        n = (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]
        if n == 0:
            raise BadFrame("a frame of length 0")
        if n > <uint32_t>self.max_frame:
            raise FrameTooLarge(f"a frame of {n} bytes; the limit is {self.max_frame}")
        if avail < C_PREFIX + <Py_ssize_t>n:
            return None
        body = PyBytes_FromStringAndSize(<const char*>(p + C_PREFIX), n)
        self._start += C_PREFIX + n
        if self._start > 65536 and self._start * 2 > len(self._buf):
            del self._buf[:self._start]  # keep the buffer from growing without bound
            self._start = 0
        return body


def frame(bytes body):
    """``body`` with its 4-byte big-endian length prefix."""
    cdef Py_ssize_t n = len(body)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + C_PREFIX)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(out)
    p[0] = (n >> 24) & 0xFF
    p[1] = (n >> 16) & 0xFF
    p[2] = (n >> 8) & 0xFF
    p[3] = n & 0xFF
    memcpy(p + C_PREFIX, PyBytes_AS_STRING(body), n)
    return out


# ---- the client's reply decoder ------------------------------------------------------------


# a GET reply's shape: the same bytes reply after reply for one feature list, decoded once
cdef tuple _SHAPE = ("names", "dtypes", "view_of", "keys")
cdef enum:
    N_SHAPE = 4


cdef inline Py_ssize_t _shape_index(const uint8_t* k, Py_ssize_t n) noexcept:
    if n == 5 and memcmp(k, b"names", 5) == 0:
        return 0
    if n == 6 and memcmp(k, b"dtypes", 6) == 0:
        return 1
    if n == 7 and memcmp(k, b"view_of", 7) == 0:
        return 2
    if n == 4 and memcmp(k, b"keys", 4) == 0:
        return 3
    return -1


cdef class ReplyDecoder:
    """Decodes a reply body (``[id, ok, result]``) as ``unpack`` would, faster for the replies
    a client gets again and again: of a result map, the GET shape entries (names, dtypes,
    view_of, keys: half the decoding of a 20-feature reply) are decoded once and reused,
    the same list objects, while their bytes do not change (so the response's plan is found
    by identity); a bin entry (status, ts) becomes bytes without a generic decoder call;
    other entries go through ``unpack`` one by one. Shared lists are handed out only in a
    GET's result (names and values both there). An error reply, a result that is not a map,
    or anything unusual is handed to ``unpack`` whole, which decides (and raises) as before.
    """

    cdef object _unpack
    cdef list _raw   # the last bytes of each shape entry
    cdef list _val   # and what they decoded to

    def __init__(self, unpack):
        self._unpack = unpack
        self._raw = [b""] * N_SHAPE
        self._val = [None] * N_SHAPE

    def __call__(self, bytes body):
        """The reply of ``body``, as ``unpack(body)``."""
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(body)
        cdef const uint8_t* end = p + len(body)
        cdef const uint8_t* k
        cdef const uint8_t* v
        cdef const uint8_t* s
        cdef Py_ssize_t n, i, klen, vlen, slen, at
        cdef int seen = 0  # shape entries (bits 0-3) and values (bit 4) met
        cdef uint64_t rid
        cdef dict result
        cdef bytes raw
        if end - p < 4 or p[0] != 0x93:
            return self._unpack(body)
        p += 1
        if p[0] <= 0x7f:
            rid = p[0]
            p += 1
        elif 0xcc <= p[0] <= 0xce and end - p > (1 << (p[0] - 0xcc)):
            n = 1 << (p[0] - 0xcc)
            rid = 0
            for i in range(n):
                rid = (rid << 8) | p[1 + i]
            p += 1 + n
        else:
            return self._unpack(body)
        if p >= end or p[0] != 0xc3:  # an error reply (or not a reply): the general way
            return self._unpack(body)
        p += 1
        if p < end and 0x80 <= p[0] <= 0x8f:
            n = p[0] & 0x0f
            p += 1
        elif end - p >= 3 and p[0] == 0xde:
            n = (<Py_ssize_t>p[1] << 8) | p[2]
            p += 3
        else:
            return self._unpack(body)
        result = {}
        for i in range(n):
            p = _str(p, end, 0, &k, &klen)
            if p == NULL:
                return self._unpack(body)
            v = p
            p = _skip(p, end)
            if p == NULL:
                return self._unpack(body)
            vlen = p - v
            at = _shape_index(k, klen)
            if at >= 0:
                raw = <bytes>self._raw[at]
                if len(raw) != vlen or memcmp(PyBytes_AS_STRING(raw), v, vlen) != 0:
                    raw = PyBytes_FromStringAndSize(<const char*>v, vlen)
                    self._val[at] = self._unpack(raw)
                    self._raw[at] = raw
                result[_SHAPE[at]] = self._val[at]
                seen |= 1 << at
                continue
            if klen == 6 and memcmp(k, b"values", 6) == 0:
                seen |= 16
            key = PyUnicode_DecodeUTF8(<const char*>k, klen, NULL)
            if 0xc4 <= v[0] <= 0xc6:
                _str(v, p, 1, &s, &slen)
                result[key] = PyBytes_FromStringAndSize(<const char*>s, slen)
            elif v[0] == 0xc0:
                result[key] = None
            else:
                result[key] = self._unpack(PyBytes_FromStringAndSize(<const char*>v, vlen))
        if p != end:  # bytes after the reply: let unpack say so
            return self._unpack(body)
        if seen & 15 and (seen & 17) != 17:  # not a GET's values: hand out no shared list
            return self._unpack(body)
        return [rid, True, result]


# ---- the client's request framer -----------------------------------------------------------

cdef bint _all_str(list items):
    for x in items:
        if type(x) is not str:
            return False
    return True


cdef class RequestFramer:
    """Frames requests ``[op, id, args]`` as ``frame(packer.pack(...))`` would, cheaper for the
    requests a client sends again and again: a list of strings equal to the one last sent under
    its key (a GET's 20 feature names) is not packed again, its bytes are reused; the
    argument names' bytes are kept too. Other values go through the packer. The frame is
    written into one buffer the framer keeps."""

    cdef object _pack
    cdef dict _keys   # argument name -> its packed bytes
    cdef dict _lists  # argument name -> (a copy of the list last sent, its packed bytes)
    cdef uint8_t* _buf
    cdef Py_ssize_t _cap, _len

    def __init__(self, pack):
        self._pack = pack
        self._keys = {}
        self._lists = {}
        self._grow(256)

    def __dealloc__(self):
        PyMem_Free(self._buf)

    cdef int _grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap = max(need, 2 * self._cap)
        cdef uint8_t* buf = <uint8_t*>PyMem_Realloc(self._buf, cap)
        if buf == NULL:
            raise MemoryError()
        self._buf, self._cap = buf, cap
        return 0

    cdef inline int _put(self, const void* src, Py_ssize_t n) except -1:
        if self._len + n > self._cap:
            self._grow(self._len + n)
        memcpy(self._buf + self._len, src, n)
        self._len += n
        return 0

    cdef inline int _bytes(self, object b) except -1:
        return self._put(PyBytes_AS_STRING(<bytes?>b), len(<bytes>b))

    cdef inline int _head(self, uint64_t v, uint8_t fix, uint64_t fixmax, uint8_t wide16, uint8_t wide32) except -1:
        """A positive int (fix 0, wide16 0xcd: 0xcc first for one byte), or a map header."""
        cdef uint8_t b[5]
        if v <= fixmax:
            b[0] = fix | v
            return self._put(b, 1)
        if fix == 0 and v <= 0xFF:
            b[0], b[1] = 0xcc, v
            return self._put(b, 2)
        if v <= 0xFFFF:
            b[0], b[1], b[2] = wide16, v >> 8, v & 0xFF
            return self._put(b, 3)
        b[0], b[1], b[2], b[3], b[4] = wide32, (v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF
        return self._put(b, 5)

    def __call__(self, uint64_t op, uint64_t rid, dict args):
        """The whole frame (length prefix and body) of request ``rid``."""
        cdef Py_ssize_t n
        cdef tuple memo
        cdef uint8_t c
        if op > 0x7f or rid > 0xFFFFFFFF:
            return frame(self._pack([op, rid, args]))
        self._len = 0
        self._put(b"\0\0\0\0\x93", 5)
        self._head(op, 0, 0x7f, 0xcd, 0xce)
        self._head(rid, 0, 0x7f, 0xcd, 0xce)
        self._head(len(args), 0x80, 15, 0xde, 0xdf)
        for key, value in args.items():
            packed = self._keys.get(key)
            if packed is None:
                packed = self._keys[key] = self._pack(key)
            self._bytes(packed)
            if value is True or value is False or value is None:
                c = 0xc3 if value is True else 0xc2 if value is False else 0xc0
                self._put(&c, 1)
            elif type(value) is list:
                memo = self._lists.get(key)
                if memo is None or <list>memo[0] != value:
                    memo = (list(value), self._pack(value))
                    if _all_str(value):  # (1 == 1.0 == True: only a list of strings is equal to
                        self._lists[key] = memo  # another only when it packs the same)
                self._bytes(memo[1])
            else:
                self._bytes(self._pack(value))
        n = self._len - C_PREFIX
        if n > 0xFFFFFFFF:
            raise ValueError("a request larger than a frame can hold")
        self._buf[0], self._buf[1], self._buf[2], self._buf[3] = (n >> 24) & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF
        return PyBytes_FromStringAndSize(<const char*>self._buf, self._len)
