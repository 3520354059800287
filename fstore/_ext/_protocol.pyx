# cython: language_level=3
"""Framing of the wire protocol (docs/protocol.md): a bounds-checked reader of
length-prefixed frames and a writer that prefixes a packed body with its length.

The reader owns one growing buffer per connection; frames are cut out of it with
no per-byte Python work, and a bad length is reported before its body is read.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t
from libc.string cimport memcpy

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
