# cython: language_level=3
"""The feature server's fast path: a well-formed GET of a known shape, answered in one
compiled call (decode, checks, lookups, reply packed from the stored rows, framing).

Anything else (another op, a new shape, a registry check that is due, a bad request,
an error) returns None and takes the Python path in fstore.serving.connection, which
checks, explains and answers it; the fast path never answers an error. Both paths give
the same bytes for the same request (tests/test_server_protocol.py compares them).

What a served-read listener needs (fstore.monitoring.events) is left in the FastGet's
attributes, not copied: a worker with no listener pays nothing for it. Recorders (the
feature log) are handed the read inside read_packed. The GET metrics are counted here, in
C, by the worker's GetCounters (fstore._ext._counters) when it has one: rows, latency
(clocked around this call) and statuses per view, with no Python call per GET.
"""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

import msgpack

from fstore._ext._constants cimport OP_GET
from fstore._ext._counters cimport GetCounters
from fstore._ext._wire import get_reply, read_reply

cdef object _unpackb = msgpack.unpackb


cdef double _monotonic() noexcept nogil:
    """time.monotonic()'s clock (CLOCK_MONOTONIC on Linux): ``valid_until`` is set from it."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class FastGet:
    """What the fast path needs of a worker: the LMDB environment, the prepared shapes
    (a dict shared with the Python path, which fills and clears it) and how long they
    stay valid before the registry must be checked again."""

    cdef public object env
    cdef public dict prepared
    cdef public double valid_until
    cdef public Py_ssize_t max_rows
    cdef public Py_ssize_t max_request_id  # characters of a caller's request_id (protocol.MAX_REQUEST_ID)
    # the last GET answered: its id, args, shape, rows and what was read (for listeners)
    cdef public object rid, args, last, status, stamps
    cdef public Py_ssize_t rows
    # the last reply frame and where its values sit in it (``values`` slices them when asked)
    cdef object frame
    cdef Py_ssize_t v0, v1
    # the served-read hook (its ``recorders`` are handed each read) and this path's name in it
    cdef public object hook, path
    # the worker's GET metrics (None: no metrics), counted for every GET answered here
    cdef public GetCounters counters

    def __init__(self, env, dict prepared, Py_ssize_t max_rows, Py_ssize_t max_request_id, hook=None, path=None,
                 GetCounters counters=None):
        self.env = env
        self.prepared = prepared
        self.valid_until = 0.0
        self.max_rows = max_rows
        self.max_request_id = max_request_id
        self.rows = 0
        self.frame, self.v0, self.v1 = b"", 0, 0
        self.hook, self.path = hook, path
        self.counters = counters

    @property
    def values(self):
        """The last GET's values as MessagePack (read_packed's bytes), cut from its reply frame:
        only a listener asks, so a worker without one pays no copy."""
        return self.frame[self.v0:self.v1]

    def answer(self, bytes body):
        """The reply frame of a GET the fast path can answer, else None."""
        cdef double start = _monotonic() if self.counters is not None else 0.0
        try:
            msg = _unpackb(body, raw=False, timestamp=3, strict_map_key=False)
        except Exception:
            return None
        if type(msg) is not list or len(<list>msg) != 3:
            return None
        op, rid, args = <list>msg
        if type(op) is not int or op != OP_GET or type(rid) is not int or not (0 < rid < 4294967296) \
                or type(args) is not dict:
            return None
        if _monotonic() >= self.valid_until:
            return None
        features = (<dict>args).get("features")
        try:
            key = (tuple(features) if type(features) is list else features, (<dict>args).get("service"),
                   (<dict>args).get("full_names", False))
            prepared = self.prepared.get(key)
        except TypeError:
            return None
        if prepared is None or prepared.request is not None:  # request-time features: the Python path's
            return None
        entities = (<dict>args).get("entities")
        if type(entities) is not dict or not entities:
            return None
        cdef Py_ssize_t n = -1
        for col in (<dict>entities).values():
            if type(col) is not list or (n >= 0 and len(<list>col) != n):
                return None
            n = len(<list>col)
        if n > self.max_rows:
            return None
        meta = (<dict>args).get("meta", True)
        request_id = (<dict>args).get("request_id")
        if request_id is not None and (type(request_id) is not str or not 0 < len(<str>request_id)
                                       <= self.max_request_id):
            return None  # the Python path refuses it, naming the field
        recorders = self.hook.recorders if self.hook is not None else None
        served = None
        if recorders:
            model = (<dict>args).get("model")
            served = (recorders, self.path, None, prepared.service, prepared.full, prepared.version, request_id,
                      model if type(model) is str else None)
        return self.reply(rid, prepared, entities, n, meta, request_id, args, served, start)

    def reply(self, rid, prepared, dict entities, Py_ssize_t n, meta, request_id, args=None, tuple served=None,
              double start=0.0):
        """The reply frame of a GET decoded and checked by ``answer`` or by the connection's
        C decoder (fstore._ext._conn, which passes no ``args``), else None: the one place a
        fast GET is read, answered and counted in the metrics. ``start``: when the GET's
        handling began (``answer`` clocks its decode; 0: from here, as the C decoder's
        decode is a fraction of a microsecond)."""
        if start == 0.0 and self.counters is not None:
            start = _monotonic()
        try:
            reply, v0, v1, status, stamps = read_reply(self.env, rid, prepared, entities, meta, request_id, served)
        except Exception:
            return None  # the Python path reads again and explains what is wrong
        self.rid, self.args, self.last, self.rows = rid, args, prepared, n
        self.frame, self.v0, self.v1, self.status, self.stamps = reply, v0, v1, status, stamps
        if self.counters is not None:
            self.counters.count(prepared.plan, n, <const uint8_t*>PyByteArray_AS_STRING(<bytearray>status),
                                PyByteArray_GET_SIZE(<bytearray>status), _monotonic() - start)
        return reply
