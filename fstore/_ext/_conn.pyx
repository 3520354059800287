# cython: language_level=3
"""The feature server's connection reader in C: asyncio.BufferedProtocol's two callbacks.

uvloop reads the socket straight into this connection's own growing buffer (get_buffer,
buffer_updated: no bytes object per packet); frames are cut out of it here, every GET the
compiled fast path (fstore._ext._serve.FastGet) can answer is answered without entering
the interpreter, and the replies of one read go out in one transport.write. Anything
else (HELLO, other ops, unknown shapes, errors, draining, a bad or oversize length) is
handed, in order, to the Python connection logic (fstore.serving.connection), after the
replies gathered so far are written: replies keep the order of the requests.

``FrameProtocol`` is a base of fstore.serving.fastconn.FastConnection, which mixes in
that logic; the attributes both sides use (closing, caught_up, fast, last_seen, state,
transport) are C fields here, so this hot loop reads them without a dict lookup.
"""
from cpython.buffer cimport PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memmove
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from fstore._ext._request cimport RawGets

import time

from fstore.errors import BadFrame, FrameTooLarge

cdef object _perf_counter = time.perf_counter

cdef enum:
    PREFIX = 4
    MIN_ROOM = 16384     # get_buffer hands out at least this much free space
    FIRST_SIZE = 65536   # a connection's buffer to begin with
    KEEP_SIZE = 1 << 20  # an empty buffer larger than this (after a big frame) is given back


cdef double _monotonic() noexcept nogil:
    """time.monotonic()'s clock (CLOCK_MONOTONIC on Linux): the idle timer compares ``last_seen`` with it."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class _Room:
    """The free end of a FrameProtocol's buffer, as a writable buffer for uvloop to read into.
    One per connection, handed out again at every read (no object per packet)."""

    cdef FrameProtocol owner

    def __getbuffer__(self, Py_buffer* view, int flags):
        cdef FrameProtocol o = self.owner
        PyBuffer_FillInfo(view, self, o.buf + o.end, o.cap - o.end, 0, flags)


cdef class FrameProtocol:
    """Frames cut in C out of a buffer uvloop reads into; fast GETs answered in C, the rest
    handed to ``self._handle`` (the Python logic of a subclass) in order."""

    cdef char* buf
    cdef Py_ssize_t cap, start, end
    cdef _Room room
    cdef readonly Py_ssize_t max_frame
    cdef list pending  # reply frames of this read not yet written
    cdef RawGets raw   # the worker's C decoder of fast GETs (None: every GET through FastGet.answer)
    cdef public bint closing, caught_up
    cdef public double last_seen
    cdef public object fast, state, transport

    def __cinit__(self, *args, **kwargs):
        self.buf = <char*>malloc(FIRST_SIZE)
        if self.buf == NULL:
            raise MemoryError()
        self.cap, self.start, self.end = FIRST_SIZE, 0, 0
        self.room = _Room.__new__(_Room)
        self.room.owner = self
        self.pending = []
        self.max_frame = 0

    def __dealloc__(self):
        free(self.buf)

    def _set_max_frame(self, Py_ssize_t max_frame):
        self.max_frame = max_frame

    def _set_raw(self, RawGets raw):
        self.raw = raw

    def _unparsed(self):
        """Bytes received and not yet cut into frames (the drain waits for none)."""
        return self.end - self.start

    cdef int _make_room(self, Py_ssize_t want) except -1:
        """At least ``want`` free bytes after ``end``: move the unread bytes to the front,
        then grow (a frame longer than the buffer needs all its bytes in it)."""
        cdef char* grown
        cdef Py_ssize_t cap
        if self.start == self.end:
            self.start = self.end = 0
            if self.cap > KEEP_SIZE:
                grown = <char*>realloc(self.buf, FIRST_SIZE)
                if grown != NULL:
                    self.buf, self.cap = grown, FIRST_SIZE
        if self.cap - self.end >= want:
            return 0
        if self.start:
            memmove(self.buf, self.buf + self.start, self.end - self.start)
            self.end -= self.start
            self.start = 0
        if self.cap - self.end >= want:
            return 0
        cap = max(self.cap * 2, self.end + want)
        grown = <char*>realloc(self.buf, cap)
        if grown == NULL:
            raise MemoryError()
        self.buf, self.cap = grown, cap
        return 0

    def get_buffer(self, Py_ssize_t sizehint):
        cdef Py_ssize_t want = MIN_ROOM
        cdef const uint8_t* p
        cdef uint32_t n
        if self.end - self.start >= PREFIX:  # a frame begun: room for all of it (its length was checked)
            p = <const uint8_t*>(self.buf + self.start)
            n = (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]
            if n <= <uint32_t>self.max_frame:
                want = max(want, PREFIX + <Py_ssize_t>n - (self.end - self.start))
        self._make_room(want)
        return self.room

    def buffer_updated(self, Py_ssize_t nbytes):
        self.end += nbytes
        if self.closing:
            self.start = self.end  # nothing more is read from a connection being closed
            return
        self.last_seen = _monotonic()
        cdef object fast = self.fast if not self.caught_up else None
        cdef object slow = self.state.slow  # None: the slow-request log is off
        cdef object reply, body
        cdef const uint8_t* p
        cdef uint32_t n
        cdef Py_ssize_t count = 0
        cdef double started
        cdef object hook = fast.hook if fast is not None else None  # the served-read hook
        # the C decoder only when nothing needs the decoded request (listeners, recorders, slow log)
        cdef bint raw = self._raw_ok(hook, slow)
        try:
            while not self.closing:
                if self.end - self.start < PREFIX:
                    return
                p = <const uint8_t*>(self.buf + self.start)
                n = (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]
                if n == 0 or n > <uint32_t>self.max_frame:
                    self._flush()
                    self._fatal(0, BadFrame("a frame of length 0") if n == 0 else
                                FrameTooLarge(f"a frame of {n} bytes; the limit is {self.max_frame}"))
                    return
                if self.end - self.start < PREFIX + <Py_ssize_t>n:
                    return
                count += 1
                if raw:
                    reply = self.raw.answer(<const char*>(p + PREFIX), n)
                    if reply is not None:
                        self.start += PREFIX + n
                        self.pending.append(reply)
                        continue
                body = PyBytes_FromStringAndSize(<const char*>(p + PREFIX), n)
                self.start += PREFIX + n
                if fast is not None:
                    started = _perf_counter() if (hook is not None and hook.active) or slow is not None else 0.0
                    reply = fast.answer(body)
                    if reply is not None:
                        self.pending.append(reply)
                        if started:
                            self._fast_done(fast, started, slow)
                        continue
                self._flush()
                self._handle(body)
                fast = self.fast if not self.caught_up else None  # a HELLO may have just opened or closed it
                hook = fast.hook if fast is not None else None
                raw = self._raw_ok(hook, slow)
        finally:
            self._flush()
            if self.start == self.end:
                self.start = self.end = 0
            if count and self.state.draining:  # for the log of the drain
                self.state.drained += count

    cdef bint _raw_ok(self, object hook, object slow) except -1:
        """Whether a GET may take the C decoder: a greeted reader with nothing that needs the
        decoded request (served-read listeners, recorders, the slow-request log)."""
        if self.raw is None or slow is not None or self.fast is None or self.caught_up:
            return False
        return hook is None or not (hook.active or hook.recorders)

    cdef int _flush(self) except -1:
        """Write the replies gathered so far: one write for all of them."""
        cdef list pending = self.pending
        cdef Py_ssize_t k = len(pending)
        if not k:
            return 0
        self.pending = []
        if self.transport is None or self.closing:
            return 0
        self.transport.write(pending[0] if k == 1 else b"".join(pending))
        return 0
