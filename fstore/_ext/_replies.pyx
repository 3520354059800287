# cython: language_level=3
"""The minimum of a reply that fstore bench's load generator reads, without the GIL.

An fstore reply body (docs/protocol.md) is ``[id, ok, result]``: ``mp_reply`` reads the id
and ok, and from the result map only the ``status`` bin (ok) or the ``code`` string (an
error), stepping over every other entry (``values`` may be thousands of objects) without
building anything. A Redis reply (RESP2) to GET or MGET is a bulk string, a nil, an array of
them, or an error line: ``resp_reply`` measures one and counts its keys found and missing.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memchr, memcmp


cdef const uint8_t* _skip(const uint8_t* p, const uint8_t* end) noexcept nogil:
    """The byte after the MessagePack object at ``p`` (any depth); NULL if malformed or cut."""
    cdef Py_ssize_t pending = 1, head, size
    cdef uint8_t b
    while pending > 0:
        if p >= end:
            return NULL
        b = p[0]
        pending -= 1
        head, size = 1, 0
        if b <= 0x7f or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3:
            pass
        elif b <= 0x8f:
            pending += 2 * (b & 0x0f)
        elif b <= 0x9f:
            pending += b & 0x0f
        elif b <= 0xbf:
            size = b & 0x1f
        elif b == 0xc4 or b == 0xd9 or b == 0xc7:  # bin8, str8, ext8 (+ its type byte)
            head = 2 if b != 0xc7 else 3
            if end - p < head:
                return NULL
            size = p[1]
        elif b == 0xc5 or b == 0xda or b == 0xc8:
            head = 3 if b != 0xc8 else 4
            if end - p < head:
                return NULL
            size = <Py_ssize_t>_be(p + 1, 2)
        elif b == 0xc6 or b == 0xdb or b == 0xc9:
            head = 5 if b != 0xc9 else 6
            if end - p < head:
                return NULL
            size = <Py_ssize_t>_be(p + 1, 4)
        elif b == 0xca:
            size = 4
        elif b == 0xcb:
            size = 8
        elif 0xcc <= b <= 0xcf:
            size = 1 << (b - 0xcc)
        elif 0xd0 <= b <= 0xd3:
            size = 1 << (b - 0xd0)
        elif 0xd4 <= b <= 0xd8:  # fixext 1..16, plus the type byte
            size = (1 << (b - 0xd4)) + 1
        elif b == 0xdc or b == 0xde:
            head = 3
            if end - p < head:
                return NULL
            pending += <Py_ssize_t>_be(p + 1, 2) * (2 if b == 0xde else 1)
        elif b == 0xdd or b == 0xdf:
            head = 5
            if end - p < head:
                return NULL
            pending += <Py_ssize_t>_be(p + 1, 4) * (2 if b == 0xdf else 1)
        else:  # 0xc1: never used
            return NULL
        if end - p < head + size:
            return NULL
        p += head + size
    return p


cdef const uint8_t* _str(const uint8_t* p, const uint8_t* end, bint binary, const uint8_t** s,
                         Py_ssize_t* n) noexcept nogil:
    """A str (or, ``binary``, a bin): its bytes in ``s``/``n``; NULL if not one or cut."""
    cdef Py_ssize_t head
    if p >= end:
        return NULL
    if not binary and 0xa0 <= p[0] <= 0xbf:
        head, n[0] = 1, p[0] & 0x1f
    elif p[0] == (0xc4 if binary else 0xd9) and end - p >= 2:
        head, n[0] = 2, p[1]
    elif p[0] == (0xc5 if binary else 0xda) and end - p >= 3:
        head, n[0] = 3, <Py_ssize_t>_be(p + 1, 2)
    elif p[0] == (0xc6 if binary else 0xdb) and end - p >= 5:
        head, n[0] = 5, <Py_ssize_t>_be(p + 1, 4)
    else:
        return NULL
    if end - p < head + n[0]:
        return NULL
    s[0] = p + head
    return p + head + n[0]


cdef int mp_reply(const uint8_t* p, const uint8_t* end, uint64_t* rid, int* ok,
                  const uint8_t** field, Py_ssize_t* field_len) noexcept nogil:
    """Read a reply body: 0, with ``field`` the status bin (ok) or the error's code (NULL when
    the result has none), or -1 when it is not a reply."""
    cdef Py_ssize_t n, i, klen
    cdef const uint8_t* key
    cdef const char* want
    field[0], field_len[0] = NULL, 0
    if end - p < 3 or p[0] != 0x93:
        return -1
    p += 1
    if p[0] <= 0x7f:
        rid[0] = p[0]
        p += 1
    elif 0xcc <= p[0] <= 0xcf and end - p > (1 << (p[0] - 0xcc)):
        rid[0] = _be(p + 1, 1 << (p[0] - 0xcc))
        p += 1 + (1 << (p[0] - 0xcc))
    else:
        return -1
    if p >= end or (p[0] != 0xc2 and p[0] != 0xc3):
        return -1
    ok[0] = p[0] == 0xc3
    p += 1
    if p >= end:
        return -1
    if 0x80 <= p[0] <= 0x8f:
        n = p[0] & 0x0f
        p += 1
    elif p[0] == 0xde and end - p >= 3:
        n = <Py_ssize_t>_be(p + 1, 2)
        p += 3
    elif p[0] == 0xdf and end - p >= 5:
        n = <Py_ssize_t>_be(p + 1, 4)
        p += 5
    else:
        return 0 if _skip(p, end) != NULL else -1  # a result that is not a map: nothing to count
    want = "status" if ok[0] else "code"
    for i in range(n):
        p = _str(p, end, 0, &key, &klen)
        if p == NULL:
            return -1
        if klen == (6 if ok[0] else 4) and memcmp(key, want, klen) == 0:
            return 0 if _str(p, end, ok[0], field, field_len) != NULL else -1
        p = _skip(p, end)
        if p == NULL:
            return -1
    return 0


cdef const uint8_t* _crlf(const uint8_t* p, const uint8_t* end) noexcept nogil:
    """The CR of the first CR LF at or after ``p``; NULL if none has arrived yet."""
    cdef const uint8_t* q
    while p < end:
        q = <const uint8_t*>memchr(p, 13, end - p)
        if q == NULL or q + 1 >= end:
            return NULL
        if q[1] == 10:
            return q
        p = q + 1
    return NULL


cdef bint _int(const uint8_t* p, const uint8_t* q, int64_t* out) noexcept nogil:
    cdef int64_t v = 0
    cdef bint neg = p < q and p[0] == 45  # '-'
    if neg:
        p += 1
    if p >= q:
        return 0
    while p < q:
        if not 48 <= p[0] <= 57:
            return 0
        v = v * 10 + (p[0] - 48)
        p += 1
    out[0] = -v if neg else v
    return 1


cdef Py_ssize_t resp_reply(const uint8_t* p, const uint8_t* end, const int32_t* weights, Py_ssize_t nweights,
                           int64_t* present, int64_t* missing, const uint8_t** err,
                           Py_ssize_t* err_len) noexcept nogil:
    """The length of the complete reply at ``p`` (0: not all here yet, -1: not RESP). Key j of
    it (a GET's one, an MGET's j-th) adds ``weights[j % nweights]`` to ``present`` or ``missing``;
    an error reply sets ``err`` to its first word (``ERR``, ``WRONGTYPE``)."""
    cdef const uint8_t* start = p
    cdef const uint8_t* q
    cdef const uint8_t* s
    cdef int64_t n, size, j, count = 1
    cdef bint array
    if p >= end:
        return 0
    q = _crlf(p + 1, end)
    if q == NULL:
        return 0
    if p[0] == 45:  # '-': an error line
        s = p + 1
        while s < q and s[0] != 32:
            s += 1
        err[0], err_len[0] = p + 1, s - p - 1
        return q + 2 - start
    if p[0] == 43 or p[0] == 58:  # '+' or ':'
        return q + 2 - start
    array = p[0] == 42  # '*'
    if not array and p[0] != 36:  # nor '$'
        return -1
    if array:
        if not _int(p + 1, q, &count):
            return -1
        p = q + 2
        if count < 0:
            return p - start
    for j in range(count):
        if array:
            if p >= end:
                return 0
            q = _crlf(p + 1, end)
            if q == NULL:
                return 0
            if p[0] == 42:  # a nested array: no reply to GET or MGET has one
                return -1
            if p[0] != 36:  # an element that is not a bulk string: stepped over, not counted
                p = q + 2
                continue
        if not _int(p + 1, q, &size):
            return -1
        if size < 0:
            missing[0] += weights[j % nweights]
            p = q + 2
            continue
        if end - (q + 2) < size + 2:
            return 0
        if q[2 + size] != 13 or q[3 + size] != 10:
            return -1
        present[0] += weights[j % nweights]
        p = q + 4 + size
    return p - start


# ---- for tests and Python callers ----------------------------------------------------------

def fstore_reply(bytes body):
    """(request id, ok, the status bin or error code or None) of a reply body; ValueError if it is none."""
    cdef const uint8_t* p = <const uint8_t*>(<char*>body)
    cdef uint64_t rid = 0
    cdef int ok = 0
    cdef const uint8_t* field
    cdef Py_ssize_t n
    if mp_reply(p, p + len(body), &rid, &ok, &field, &n) < 0:
        raise ValueError("not an fstore reply")
    return rid, bool(ok), None if field == NULL else (<char*>field)[:n]


def redis_reply(bytes data, weights=(1,)):
    """(bytes of the first complete reply (0: incomplete), keys' weights present, missing, error word or None)."""
    cdef const uint8_t* p = <const uint8_t*>(<char*>data)
    cdef int32_t w[64]
    cdef Py_ssize_t i, n = min(len(weights), 64), used, err_len = 0
    cdef int64_t present = 0, missing = 0
    cdef const uint8_t* err = NULL
    for i in range(n):
        w[i] = weights[i]
    used = resp_reply(p, p + len(data), w, n, &present, &missing, &err, &err_len)
    if used < 0:
        raise ValueError("not a RESP reply")
    return used, present, missing, None if err == NULL else (<char*>err)[:err_len].decode("utf-8", "replace")
