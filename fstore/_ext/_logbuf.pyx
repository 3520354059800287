# cython: language_level=3
"""The served-feature log's recorder: a sampled read copied as bytes on the serving thread,
decoded into Arrow columns by the log's writer thread without the GIL.

Serving thread (``record``, called inside the compiled read, fstore/_ext/_record.pyx): the
source and service checks, the sequence number, the sampling rule (``sampled``: BLAKE2b in C,
_blake2b.pxi), the queue bound, then one append of the read to its shape's buffer: no event,
no Python call, no Python object per value.

Writer thread: ``collect`` counts every shape's recorded reads as taken (no copy, no
decoding: the queue is free again; the bytes stay in the shape's buffer), and ``decode``
turns the buffered reads of the services the writer names (once they make a row group, or
their file is due) into column buffers without the GIL (fixed-width values, validity
bitmaps, string offsets and bytes, the declared default where DEFAULTED), wrapped as Arrow
arrays in the log's column order (fstore.monitoring.logtable; its ``LogShape`` gives the
schema, keys and types). Decoding thousands of reads at once keeps the fixed cost of
building Arrow tables off each read.

A record (one read, native byte order):
  i64 seq | i64 time_us | i32 n | i32 caller length (-1: none) | i32 model length (-1) |
  caller UTF-8 | model UTF-8 |
  per key column, per row: an int key as u8 valid + i64; a string key as i32 length (-1: null) + UTF-8 |
  statuses, outputs x rows (u8) | event times, views x rows (i64, INT64_MIN: none) |
  per view, per row: i32 length (-1: no row used) + the stored row (layout: fstore/_ext/_online.pyx).
"""
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.math cimport ceil
from libc.stdint cimport INT32_MAX, INT64_MIN, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset
from posix.unistd cimport getpid

import pyarrow as pa

from fstore._ext._constants cimport DEFAULTED, K_BOOL, K_FLOAT32, K_INT32, K_STRING, PRESENT
from fstore._ext._online cimport C_HEADER, ViewReader
from fstore._ext._record cimport S_CALLER, S_FULL, S_MODEL, S_PATH, S_SERVICE, S_SOURCE, S_VERSION, Recorder

MAX_SLOTS = 1024   # request shapes come from clients: idle ones are forgotten past this many
# the writer is woken when half the queue is held, if that is this many reads: for a smaller
# queue a wake would cost more than the reads it saves (its 50 ms tick takes them)
WAKE_MIN = 256

cdef enum:
    HEAD = 32      # a record's fixed header
    FIRST = 5      # the columns decoded before the keys: request_id, caller_request_id, request_time, model, row


cdef struct Buf:
    uint8_t* data
    Py_ssize_t len
    Py_ssize_t cap


cdef int _grow(Buf* b, Py_ssize_t extra) noexcept nogil:
    """Room for ``extra`` more bytes; -1 when memory ran out."""
    cdef Py_ssize_t cap = b.cap * 2
    cdef uint8_t* data
    if b.len + extra <= b.cap:
        return 0
    if cap < b.len + extra:
        cap = b.len + extra
    data = <uint8_t*>realloc(b.data, cap if cap > 64 else 64)
    if data == NULL:
        return -1
    b.data, b.cap = data, (cap if cap > 64 else 64)
    return 0


cdef inline int _width(int kind) noexcept nogil:
    """Bytes per value in the Arrow column; 0: bits (bool) or variable width."""
    if kind == K_INT32 or kind == K_FLOAT32:
        return 4
    return 0 if kind == K_BOOL or kind >= K_STRING else 8


cdef struct Out:          # how to decode one output of a shape
    int kind, width
    Py_ssize_t view, off, rank, idx, fixed_end
    const uint8_t* dflt   # the declared default in the column's form
    Py_ssize_t dflt_len   # -1: no default (null)


cdef struct KeyVal:       # one join key value of a read being recorded
    int64_t i
    const char* s
    Py_ssize_t len        # -1: null


cdef class Slot:
    """One request shape of the log (a plan read on one path): how to decode its reads, and
    the reads in ``buf``: ``reads``/``rows`` recorded since the last ``collect``, ``held_reads``/
    ``held_rows`` collected before (taken from the queue, not yet decoded)."""

    cdef readonly object plan, path, service, version, shape
    cdef readonly double rate
    cdef readonly Py_ssize_t dropped     # rows dropped (queue full) since the last ``dropped_rows``
    cdef Py_ssize_t n_out, nv, nk, reads, rows, held_reads, held_rows
    cdef Py_ssize_t hint                 # the size of the last buffer taken: the next starts there
    cdef bint strings                    # a string join key (its values are kept alive while copied)
    cdef Out* outs
    cdef uint8_t* key_int
    cdef list key_names, keep
    cdef Buf buf

    def __cinit__(self, *args, **kwargs):
        self.outs, self.key_int = NULL, NULL
        self.buf.data, self.buf.len, self.buf.cap = NULL, 0, 0

    def __dealloc__(self):
        free(self.outs)
        free(self.key_int)
        free(self.buf.data)

    def __init__(self, plan, path, service, version, double rate, shape):
        cdef ViewReader r
        cdef Py_ssize_t v, j, pos
        cdef Out* o
        self.plan, self.path, self.service, self.version = plan, path, service, version
        self.rate, self.shape = rate, shape
        self.keep = []
        if shape is None:
            return
        readers = plan.readers
        self.n_out, self.nv, self.nk = len(plan.names), len(readers), len(shape.keys)
        self.key_names = [k for k, _ in shape.keys]
        self.outs = <Out*>calloc(self.n_out + 1, sizeof(Out))
        self.key_int = <uint8_t*>calloc(self.nk + 1, 1)
        if self.outs == NULL or self.key_int == NULL:
            raise MemoryError()
        for j, (_, t) in enumerate(shape.keys):
            self.key_int[j] = t == pa.int64()
            self.strings = self.strings or not self.key_int[j]
        for v in range(self.nv):
            r = <ViewReader>readers[v]
            for j in range(r.n_want):
                pos = r.pos[j]
                o = &self.outs[pos]
                o.kind, o.width, o.view, o.fixed_end = r.kind[j], _width(r.kind[j]), v, r.fixed_end
                o.off, o.rank, o.idx = r.off[j], r.rank[j], r.idx[j]
                d = _default_bytes(r.defaults[j], shape.types[pos], o.kind, o.width)
                o.dflt_len = -1 if d is None else PyBytes_GET_SIZE(d)
                if d is not None:
                    self.keep.append(d)
                    o.dflt = <const uint8_t*>PyBytes_AS_STRING(d)

    cdef Py_ssize_t collect(self) noexcept:
        """Count the recorded reads as collected; the rows they have."""
        cdef Py_ssize_t rows = self.rows
        self.held_reads += self.reads
        self.held_rows += rows
        self.reads = self.rows = 0
        return rows

    cdef int append(self, int64_t seq, int64_t now_us, object caller, object model, object rows, Py_ssize_t n,
                    list raws, const uint8_t* status, const int64_t* stamps) except -1:
        """Copy one read into ``buf``. The join keys (which may run Python code: a row that is
        not a dict, an ``__index__``) are read first, then the record is written in C alone."""
        cdef Py_ssize_t nkv = n * self.nk, c, i, v, size, cl = -1, ml = -1
        cdef KeyVal small[16]
        cdef KeyVal* kv = &small[0] if nkv <= 16 else <KeyVal*>malloc(sizeof(KeyVal) * nkv)
        cdef const char* cp = NULL
        cdef const char* mp = NULL
        cdef list alive = [] if self.strings else None   # the key strings whose UTF-8 ``kv`` points into
        cdef uint8_t* w
        cdef PyObject* raw
        cdef int32_t ln
        if kv == NULL:
            raise MemoryError()
        try:
            if caller is not None:
                cp = _utf8(caller, &cl)
            if model is not None:
                mp = _utf8(model, &ml)
            for c in range(self.nk):
                _keys(rows, self.key_names[c], n, self.key_int[c], kv + c * n, alive)
            size = HEAD + (cl if cl > 0 else 0) + (ml if ml > 0 else 0) + self.n_out * n + self.nv * n * 8
            for c in range(self.nk):
                for i in range(n):
                    size += 9 if self.key_int[c] else 4 + (kv[c * n + i].len if kv[c * n + i].len > 0 else 0)
            for v in range(self.nv):
                for i in range(n):
                    raw = PyList_GET_ITEM(<list>raws[v], i)
                    size += 4 + (PyBytes_GET_SIZE(<object>raw) if <object>raw is not None else 0)
            if _grow(&self.buf, size if self.buf.cap or size > self.hint else self.hint) < 0:
                raise MemoryError()
            w = self.buf.data + self.buf.len
            memcpy(w, &seq, 8)
            memcpy(w + 8, &now_us, 8)
            ln = <int32_t>n
            memcpy(w + 16, &ln, 4)
            ln = <int32_t>cl
            memcpy(w + 20, &ln, 4)
            ln = <int32_t>ml
            memcpy(w + 24, &ln, 4)
            w += HEAD
            if cl > 0:
                memcpy(w, cp, cl)
                w += cl
            if ml > 0:
                memcpy(w, mp, ml)
                w += ml
            for c in range(self.nk):
                for i in range(n):
                    w = _put_key(w, &kv[c * n + i], self.key_int[c])
            if self.n_out * n:
                memcpy(w, status, self.n_out * n)
                w += self.n_out * n
            if self.nv * n:
                memcpy(w, stamps, self.nv * n * 8)
                w += self.nv * n * 8
            for v in range(self.nv):
                for i in range(n):
                    raw = PyList_GET_ITEM(<list>raws[v], i)
                    ln = -1 if <object>raw is None else <int32_t>PyBytes_GET_SIZE(<object>raw)
                    memcpy(w, &ln, 4)
                    if ln > 0:
                        memcpy(w + 4, PyBytes_AS_STRING(<object>raw), ln)
                    w += 4 + (ln if ln > 0 else 0)
            self.buf.len = w - self.buf.data
            self.reads += 1
            self.rows += n
        finally:
            if kv != &small[0]:
                free(kv)
        return 0


cdef const char* _utf8(object s, Py_ssize_t* length):
    """A str's UTF-8 (cached by the str), or NULL with length -1 (None, another type, or a str
    that has no UTF-8: a lone surrogate)."""
    length[0] = -1
    if not isinstance(s, str):
        return NULL
    try:
        return PyUnicode_AsUTF8AndSize(s, length)
    except UnicodeError:
        length[0] = -1
        return NULL


cdef int _keys(object rows, str name, Py_ssize_t n, bint is_int, KeyVal* out, list alive) except -1:
    """One join key's values over the read's rows (a dict of columns or a list of mappings):
    an int (or ``__index__``) for an int key, a str for a string key; anything else is null."""
    cdef Py_ssize_t i
    col = (<dict>rows).get(name) if type(rows) is dict else None
    for i in range(n):
        out[i].len = -1
        if type(rows) is dict:
            v = (<list>col)[i] if type(col) is list and i < len(<list>col) else None
        else:
            row = (<list>rows)[i]
            try:
                v = (<dict>row).get(name) if type(row) is dict else row[name]
            except Exception:
                v = None
        if v is None:
            continue
        if not is_int:
            out[i].s = _utf8(v, &out[i].len)
            alive.append(v)
            continue
        if type(v) is not int:
            if isinstance(v, bool) or not hasattr(v, "__index__"):
                continue
            try:
                v = v.__index__()
            except Exception:
                continue
        try:
            out[i].i = <int64_t>v
        except OverflowError:
            continue
        out[i].len = 0
    return 0


cdef inline uint8_t* _put_key(uint8_t* w, KeyVal* k, bint is_int) noexcept:
    cdef int32_t ln = <int32_t>k.len
    if is_int:
        w[0] = k.len == 0
        memcpy(w + 1, &k.i, 8)
        return w + 9
    memcpy(w, &ln, 4)
    if ln > 0:
        memcpy(w + 4, k.s, ln)
    return w + 4 + (ln if ln > 0 else 0)


cdef object _default_bytes(object value, object type_, int kind, int width):
    """A declared default in its column's form (converted by Arrow as a read's value would be),
    or None when there is none."""
    if value is None:
        return None
    arr = pa.array([value], type_)
    if arr.null_count:
        return None
    if kind == K_BOOL:
        return b"\x01" if arr[0].as_py() else b"\x00"
    if kind >= K_STRING:
        v = arr[0].as_py()
        return v.encode() if kind == K_STRING else bytes(v)
    return arr.buffers()[1].to_pybytes()[arr.offset * width:(arr.offset + 1) * width]


cdef class LogBuffer(Recorder):
    """The recorder of one process's served-feature log (fstore.monitoring.logging.FeatureLog
    subclasses it): at most ``queue_size`` reads recorded between two ``collect``; a read past
    that is dropped and its rows counted (``dropped_rows``). ``source``: when not None, only the
    reads of that OnlineService are recorded (in process, one log per FeatureStore).

    A subclass gives ``describe(plan, path, service, full, version) -> (rate, shape)``, called
    once per request shape: the service's sample rate, and its LogShape or None. ``wake`` is called when ``queue_size // 2`` reads are held (if that is
    at least ``WAKE_MIN``)."""

    cdef readonly Py_ssize_t queue_size, pending
    cdef public object source
    cdef public object wake   # called (no argument) when the buffers are half full; None: not
    cdef int64_t seq
    cdef dict slots
    cdef Slot last

    def __init__(self, Py_ssize_t queue_size, source=None):
        Recorder.__init__(self)
        self.queue_size, self.source = queue_size, source
        self.slots = {}
        self.seq = self.pending = 0
        self.last = self.wake = None

    cdef int record(self, tuple served, object plan, object rows, Py_ssize_t n, list raws,
                    const uint8_t* status, const int64_t* stamps, int64_t now_us) except -1:
        cdef Slot slot = self.last
        cdef int64_t seq
        if served[S_SERVICE] is None or (self.source is not None and served[S_SOURCE] is not self.source):
            return 0
        if slot is None or slot.plan is not plan or slot.path is not served[S_PATH]:
            slot = self._slot(served, plan)
        if slot.rate <= 0.0:
            return 0
        self.seq += 1
        seq = self.seq
        if slot.rate < 1.0 and not _sampled_read(seq, served[S_CALLER], slot.rate):
            return 0
        if n <= 0:
            return 0
        if self.pending >= self.queue_size:
            slot.dropped += n
            return 0
        slot.append(seq, now_us, served[S_CALLER], served[S_MODEL], rows, n, raws, status, stamps)
        self.pending += 1
        if self.pending == self.queue_size // 2 and self.pending >= WAKE_MIN and self.wake is not None:
            self.wake()  # half full: the writer takes now rather than at its next tick
        return 0

    cdef Slot _slot(self, tuple served, object plan):
        """The slot of ``plan`` read on the served path, made (``describe``) when new."""
        key = (id(plan), served[S_PATH])
        slot = <Slot>self.slots.get(key)
        if slot is None or slot.plan is not plan:
            rate, shape = self.describe(plan, served[S_PATH], served[S_SERVICE], served[S_FULL], served[S_VERSION])
            slot = Slot(plan, served[S_PATH], served[S_SERVICE], served[S_VERSION], rate,
                        shape if rate > 0 else None)
            if len(self.slots) >= MAX_SLOTS:
                self.slots = {k: s for k, s in self.slots.items()
                              if (<Slot>s).reads or (<Slot>s).held_reads or (<Slot>s).dropped}
            self.slots[key] = slot
        self.last = slot
        return slot

    def describe(self, plan, path, service, full, version):
        raise NotImplementedError

    def next_seq(self):
        """The next read's sequence number: a read answered in Python (a request shape,
        fstore.monitoring.logging) takes one as a compiled read does, so that ``<pid>-<seq>``
        stays unique and sampled by the same rule."""
        self.seq += 1
        return self.seq

    def dropped_rows(self):
        """Rows dropped since the last call, per service (a dict; the counts are reset)."""
        out = {}
        for s in list(self.slots.values()):
            if (<Slot>s).dropped:
                out[(<Slot>s).service] = out.get((<Slot>s).service, 0) + (<Slot>s).dropped
                (<Slot>s).dropped = 0
        return out

    def collect(self):
        """Take every read recorded since the last call off the queue (no copy, no decoding:
        they stay in their shape's buffer until ``decode``): the rows taken, per service."""
        return self._collect(None)

    cdef dict _collect(self, object services):
        cdef dict out = {}
        cdef Slot s
        for obj in list(self.slots.values()):
            s = <Slot>obj
            if s.reads and (services is None or s.service in services):
                self.pending -= s.reads
                out[s.service] = out.get(s.service, 0) + s.collect()
        return out

    def decode(self, int64_t pid, services):
        """The buffered reads of ``services`` (a container of names), as Arrow tables: (a list
        of (service, table), one table per request shape, each in its shape's ``schema``; the
        rows taken off the queue by this call, per service, as ``collect`` says them). ``pid``
        fills ``worker`` and the ``request_id`` prefix. The decoding runs without the GIL."""
        cdef dict taken = self._collect(services)  # reads recorded since the last collect go too
        cdef list slots = [s for s in self.slots.values() if (<Slot>s).held_reads and (<Slot>s).service in services]
        cdef Py_ssize_t k, m = len(slots)
        cdef Job* jobs
        if not m:
            return [], taken
        jobs = <Job*>calloc(m, sizeof(Job))
        if jobs == NULL:
            raise MemoryError()
        try:
            for k in range(m):  # all taken under the GIL, then decoded without it
                _job(&jobs[k], <Slot>slots[k])
            with nogil:
                for k in range(m):
                    jobs[k].err = _decode(&jobs[k], pid)
            return [((<Slot>slots[k]).service, _table(&jobs[k], <Slot>slots[k], pid)) for k in range(m)], taken
        finally:
            for k in range(m):
                _free_job(&jobs[k])
            free(jobs)


def sampled(str key, double rate):
    """Whether a read whose request key is ``key`` is logged at ``rate``: the first 8 bytes
    of the BLAKE2b digest of its UTF-8, as a big-endian integer, are below rate * 2**64."""
    cdef Py_ssize_t ln
    cdef const char* p
    if rate >= 1.0:
        return True
    p = PyUnicode_AsUTF8AndSize(key, &ln)
    return _below(_blake2b_64(<const uint8_t*>p, ln), rate)


cdef bint _sampled_read(int64_t seq, object caller, double rate) except -1:
    """``sampled`` for a read: its key is the caller's request id, else ``<pid>-<seq>``."""
    cdef Py_ssize_t ln
    cdef const char* p
    cdef char key[48]
    if caller:
        p = PyUnicode_AsUTF8AndSize(caller, &ln)  # a str (TypeError otherwise: a recorder error)
        return _below(_blake2b_64(<const uint8_t*>p, ln), rate)
    ln = _request_id(key, getpid(), seq)
    return _below(_blake2b_64(<const uint8_t*>key, ln), rate)


include "_blake2b.pxi"
include "_logbuf_decode.pxi"
