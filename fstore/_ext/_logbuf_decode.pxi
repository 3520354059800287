# The writer side of fstore/_ext/_logbuf.pyx: a slot's records decoded into column buffers
# without the GIL, then wrapped (no copy) as Arrow arrays in the log's column order.

cdef struct Col:          # one column being decoded
    Buf data              # values (fixed width, or bits for bool), or the bytes of a string column
    Buf offs              # a string column's int32 offsets
    uint8_t* valid        # the validity bitmap, made at the first null
    Py_ssize_t nulls


cdef struct Job:          # one slot's records, taken
    Buf buf
    Py_ssize_t reads, rows, n_out, nv, nk, ncols
    Out* outs
    uint8_t* key_int
    Col* cols             # FIRST + keys + values + statuses + event times (one per view)
    int err               # 0, -1: out of memory, -2: a record that does not decode


cdef int _job(Job* j, Slot s) except -1:
    """Take a slot's buffer (every read in it collected) for decoding."""
    j.buf, j.reads, j.rows = s.buf, s.held_reads, s.held_rows
    s.hint = s.buf.len + s.buf.len // 4
    s.buf.data, s.buf.len, s.buf.cap = NULL, 0, 0
    s.held_reads = s.held_rows = 0
    j.n_out, j.nv, j.nk, j.outs, j.key_int = s.n_out, s.nv, s.nk, s.outs, s.key_int
    j.ncols = FIRST + j.nk + 2 * j.n_out + j.nv
    j.cols = <Col*>calloc(j.ncols, sizeof(Col))
    if j.cols == NULL:
        raise MemoryError()
    return 0


cdef void _free_job(Job* j) noexcept:
    cdef Py_ssize_t c
    if j.cols != NULL:
        for c in range(j.ncols):
            free(j.cols[c].data.data)
            free(j.cols[c].offs.data)
            free(j.cols[c].valid)
        free(j.cols)
    free(j.buf.data)


cdef int _null(Col* c, Py_ssize_t row, Py_ssize_t rows) noexcept nogil:
    if c.valid == NULL:
        c.valid = <uint8_t*>malloc((rows + 7) // 8)
        if c.valid == NULL:
            return -1
        memset(c.valid, 0xFF, (rows + 7) // 8)
    c.valid[row >> 3] &= ~(1 << (row & 7))
    c.nulls += 1
    return 0


cdef int _fixed(Col* c, Py_ssize_t rows, int width) noexcept nogil:
    """Zeroed room for ``rows`` values of ``width`` bytes (0: bits)."""
    cdef Py_ssize_t size = rows * width if width else (rows + 7) // 8
    c.data.data = <uint8_t*>calloc(size + 8, 1)
    c.data.cap = size + 8
    return 0 if c.data.data != NULL else -1


cdef int _strings(Col* c, Py_ssize_t rows) noexcept nogil:
    c.offs.data = <uint8_t*>calloc(rows + 1, 4)
    c.offs.cap = (rows + 1) * 4
    if c.offs.data == NULL or _grow(&c.data, 16) < 0:
        return -1
    return 0


cdef inline int _text(Col* c, Py_ssize_t row, const uint8_t* p, Py_ssize_t ln, Py_ssize_t rows) noexcept nogil:
    """Row ``row`` of a string column: ``ln`` bytes at ``p``, or null when ``ln`` < 0."""
    cdef int32_t end
    if ln < 0:
        if _null(c, row, rows) < 0:
            return -1
    elif ln:
        if c.data.len + ln > INT32_MAX or _grow(&c.data, ln) < 0:
            return -1
        memcpy(c.data.data + c.data.len, p, ln)
        c.data.len += ln
    end = <int32_t>c.data.len
    memcpy(c.offs.data + (row + 1) * 4, &end, 4)
    return 0


cdef inline const uint8_t* _var_at(const uint8_t* p, Py_ssize_t size, Py_ssize_t rank, Py_ssize_t pos,
                                   Py_ssize_t* length) noexcept nogil:
    """The variable-width field of rank ``rank`` of a stored row (its section starts at ``pos``),
    or NULL for a row too short to hold it (see _online._var_field)."""
    cdef Py_ssize_t r
    cdef uint32_t ln
    for r in range(rank + 1):
        if pos + 4 > size:
            return NULL
        memcpy(&ln, p + pos, 4)
        if pos + 4 + <Py_ssize_t>ln > size:
            return NULL
        if r == rank:
            length[0] = ln
            return p + pos + 4
        pos += 4 + ln
    return NULL


cdef inline void _put(Col* c, Out* o, Py_ssize_t row, const uint8_t* src) noexcept nogil:
    """A fixed-width value (or a bool's bit) at ``row``: copies of constant size, inlined."""
    if o.width == 8:
        memcpy(c.data.data + row * 8, src, 8)
    elif o.width == 4:
        memcpy(c.data.data + row * 4, src, 4)
    elif src[0]:
        c.data.data[row >> 3] |= 1 << (row & 7)


cdef inline int _value(Col* c, Out* o, Py_ssize_t row, Py_ssize_t rows, uint8_t st, const uint8_t* raw,
                Py_ssize_t size) noexcept nogil:
    """Row ``row`` of an output's value column: the stored value when PRESENT, the default when
    DEFAULTED, else null (a stored null is PRESENT and null)."""
    cdef const uint8_t* q
    cdef Py_ssize_t ln
    if st == PRESENT and raw != NULL:
        if (raw[C_HEADER + (o.idx >> 3)] >> (o.idx & 7)) & 1:
            return _text(c, row, NULL, -1, rows) if o.kind >= K_STRING else _null(c, row, rows)
        if o.kind >= K_STRING:
            q = _var_at(raw, size, o.rank, o.fixed_end, &ln)
            return _text(c, row, q, ln, rows) if q != NULL else -2
        if o.off + (o.width if o.width else 1) > size:
            return -2
        _put(c, o, row, raw + o.off)
        return 0
    if st == DEFAULTED and o.dflt_len >= 0:
        if o.kind >= K_STRING:
            return _text(c, row, o.dflt, o.dflt_len, rows)
        _put(c, o, row, o.dflt)
        return 0
    return _text(c, row, NULL, -1, rows) if o.kind >= K_STRING else _null(c, row, rows)


cdef Py_ssize_t _request_id(char* out, int64_t pid, int64_t seq) noexcept nogil:
    """``<pid>-<seq>`` (both >= 0) into ``out``; its length."""
    cdef char digits[24]
    cdef Py_ssize_t k, at = 0
    cdef int64_t parts[2]
    cdef int part
    parts[0], parts[1] = pid, seq
    for part in range(2):
        if part:
            out[at] = 45  # '-'
            at += 1
        k = 0
        while True:
            digits[k] = 48 + parts[part] % 10
            parts[part] //= 10
            k += 1
            if parts[part] == 0:
                break
        while k:
            k -= 1
            out[at] = digits[k]
            at += 1
    return at


cdef int _decode(Job* j, int64_t pid) noexcept nogil:
    """Every record of ``j.buf`` into ``j.cols``; 0, -1 (out of memory) or -2 (a bad record)."""
    cdef Py_ssize_t rows = j.rows, row = 0, c, i, v, pos, n, cl, ml, rid_len, end = j.buf.len
    cdef const uint8_t* p = j.buf.data
    cdef const uint8_t* caller
    cdef const uint8_t* model
    cdef const uint8_t* status
    cdef const int64_t* stamps
    cdef const uint8_t** rp = NULL
    cdef Py_ssize_t* rl = NULL
    cdef Py_ssize_t scratch = 0
    cdef int64_t seq, t
    cdef int32_t i32
    cdef char rid[48]
    cdef Col* col
    cdef int err = 0
    cdef Py_ssize_t kcol = FIRST, vcol = FIRST + j.nk, scol = FIRST + j.nk + j.n_out, tcol = FIRST + j.nk + 2 * j.n_out
    # room: fixed columns sized at once, string columns grown
    if _strings(&j.cols[0], rows) < 0 or _strings(&j.cols[1], rows) < 0 or _strings(&j.cols[3], rows) < 0:
        return -1
    if _fixed(&j.cols[2], rows, 8) < 0 or _fixed(&j.cols[4], rows, 4) < 0:
        return -1
    for c in range(j.nk):
        if (_fixed(&j.cols[kcol + c], rows, 8) if j.key_int[c] else _strings(&j.cols[kcol + c], rows)) < 0:
            return -1
    for pos in range(j.n_out):
        if (_strings(&j.cols[vcol + pos], rows) if j.outs[pos].kind >= K_STRING
                else _fixed(&j.cols[vcol + pos], rows, j.outs[pos].width)) < 0:
            return -1
        if _fixed(&j.cols[scol + pos], rows, 1) < 0:
            return -1
    for v in range(j.nv):
        if _fixed(&j.cols[tcol + v], rows, 8) < 0:
            return -1
    while p < j.buf.data + end and err == 0:
        memcpy(&seq, p, 8)
        memcpy(&t, p + 8, 8)
        memcpy(&i32, p + 16, 4)
        n = i32
        memcpy(&i32, p + 20, 4)
        cl = i32
        memcpy(&i32, p + 24, 4)
        ml = i32
        p += HEAD
        caller = p
        p += cl if cl > 0 else 0
        model = p
        p += ml if ml > 0 else 0
        if row + n > rows:
            return -2
        rid_len = _request_id(rid, pid, seq)
        for i in range(n):
            if (_text(&j.cols[0], row + i, <const uint8_t*>rid, rid_len, rows) < 0
                    or _text(&j.cols[1], row + i, caller, cl, rows) < 0
                    or _text(&j.cols[3], row + i, model, ml, rows) < 0):
                return -1
            memcpy(j.cols[2].data.data + (row + i) * 8, &t, 8)
            i32 = <int32_t>i
            memcpy(j.cols[4].data.data + (row + i) * 4, &i32, 4)
        for c in range(j.nk):  # join keys
            col = &j.cols[kcol + c]
            for i in range(n):
                if j.key_int[c]:
                    if p[0]:
                        memcpy(col.data.data + (row + i) * 8, p + 1, 8)
                    elif _null(col, row + i, rows) < 0:
                        return -1
                    p += 9
                else:
                    memcpy(&i32, p, 4)
                    if _text(col, row + i, p + 4, i32, rows) < 0:
                        return -1
                    p += 4 + (i32 if i32 > 0 else 0)
        status = p
        p += j.n_out * n
        stamps = <const int64_t*>p  # read with memcpy: records are not aligned
        p += j.nv * n * 8
        if j.nv * n > scratch:  # each view's stored rows
            scratch = j.nv * n * 2
            free(rp)
            free(rl)
            rp = <const uint8_t**>malloc(scratch * sizeof(uint8_t*))
            rl = <Py_ssize_t*>malloc(scratch * sizeof(Py_ssize_t))
            if rp == NULL or rl == NULL:
                err = -1
                break
        for v in range(j.nv):
            for i in range(n):
                memcpy(&i32, p, 4)
                rp[v * n + i] = p + 4 if i32 >= 0 else NULL
                rl[v * n + i] = i32
                p += 4 + (i32 if i32 > 0 else 0)
        for pos in range(j.n_out):
            v = j.outs[pos].view
            if n == 1:
                j.cols[scol + pos].data.data[row] = status[pos]
            else:
                memcpy(j.cols[scol + pos].data.data + row, status + pos * n, n)
            for i in range(n):
                err = _value(&j.cols[vcol + pos], &j.outs[pos], row + i, rows, status[pos * n + i],
                             rp[v * n + i], rl[v * n + i])
                if err:
                    break
            if err:
                break
        for v in range(j.nv):
            col = &j.cols[tcol + v]
            for i in range(n):
                memcpy(&t, <const uint8_t*>stamps + (v * n + i) * 8, 8)
                memcpy(col.data.data + (row + i) * 8, &t, 8)
                if t == INT64_MIN and _null(col, row + i, rows) < 0:
                    err = -1
                    break
        row += n
    free(rp)
    free(rl)
    if err == 0 and (row != rows or p != j.buf.data + end):
        err = -2
    return err


cdef class _Memory:
    """malloc'd bytes owned by Python, lent to Arrow without a copy (pa.py_buffer)."""

    cdef uint8_t* ptr
    cdef Py_ssize_t size

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.ptr, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer* view):
        pass

    def __dealloc__(self):
        free(self.ptr)


cdef object _own(uint8_t** ptr, Py_ssize_t size):
    """An Arrow buffer over ``*ptr`` (which it now owns: ``*ptr`` is set to NULL)."""
    cdef _Memory m = _Memory.__new__(_Memory)
    m.ptr, m.size = ptr[0], size
    ptr[0] = NULL
    return pa.py_buffer(m)


cdef object _array(Col* c, object type_, Py_ssize_t rows, bint strings, int width):
    valid = _own(&c.valid, (rows + 7) // 8) if c.nulls else None
    if strings:
        return pa.Array.from_buffers(type_, rows, [valid, _own(&c.offs.data, (rows + 1) * 4),
                                                   _own(&c.data.data, c.data.len)], c.nulls)
    return pa.Array.from_buffers(type_, rows, [valid, _own(&c.data.data, rows * width if width else (rows + 7) // 8)],
                                 c.nulls)


cdef object _table(Job* j, Slot s, int64_t pid):
    """The Arrow table of a decoded job, in the columns of ``s.shape.schema``."""
    cdef Py_ssize_t rows = j.rows, c, pos
    if j.err == -1:
        raise MemoryError()
    if j.err:
        raise ValueError("a served-read record could not be decoded (its rows are lost)")
    schema = s.shape.schema
    types = schema.types
    kcol, vcol, scol, tcol = FIRST, FIRST + j.nk, FIRST + j.nk + j.n_out, FIRST + j.nk + 2 * j.n_out
    stamps = [_array(&j.cols[tcol + v], types[9 + j.nk + 2], rows, False, 8) for v in range(j.nv)]
    out = [_array(&j.cols[0], types[0], rows, True, 0), _array(&j.cols[1], types[1], rows, True, 0),
           _array(&j.cols[2], types[2], rows, False, 8), pa.repeat(pa.scalar(s.service, types[3]), rows),
           _array(&j.cols[3], types[4], rows, True, 0), pa.repeat(pa.scalar(s.version, types[5]), rows),
           pa.repeat(pa.scalar(s.path, types[6]), rows), pa.repeat(pa.scalar(pid, types[7]), rows),
           _array(&j.cols[4], types[8], rows, False, 4)]
    for c in range(j.nk):
        out.append(_array(&j.cols[kcol + c], types[9 + c], rows, not j.key_int[c], 8))
    for pos in range(j.n_out):
        at = 9 + j.nk + 3 * pos
        out += [_array(&j.cols[vcol + pos], types[at], rows, j.outs[pos].kind >= K_STRING, j.outs[pos].width),
                _array(&j.cols[scol + pos], types[at + 1], rows, False, 1), stamps[j.outs[pos].view]]
    return pa.Table.from_arrays(out, schema=schema)
