# cython: language_level=3
"""The served-read recorders: listeners of the hook that cost well under a microsecond.

A listener (fstore.monitoring.events) gets a ``ServedRead``, a Python object built for it
after the reply; a recorder is a compiled object that the compiled read itself calls, inside
the read, with the raw buffers the read already holds: the plan, the entity rows as given,
per view the stored row bytes of each entity row (None where none is used), the statuses
(outputs x rows, output-major) and event times (views x rows, INT64_MIN: none), the read's
clock (``now_us``, the instant the statuses were decided) and the ``served`` tuple of the
read's identity (its items: _record.pxd). The buffers are valid only during the call: a
recorder copies what it keeps. The served-feature log (fstore._ext._logbuf) is one.
"""


cdef class Recorder:
    """The base of compiled recorders; ``record`` is overridden in Cython (a Python subclass
    may add methods, not replace it)."""

    def __init__(self, *args, **kwargs):
        self.on_error = None

    cdef int record(self, tuple served, object plan, object rows, Py_ssize_t n, list raws,
                    const uint8_t* status, const int64_t* stamps, int64_t now_us) except -1:
        return 0


cdef void record_read(tuple served, object plan, object rows, Py_ssize_t n, list raws,
                      const uint8_t* status, const int64_t* stamps, int64_t now_us) noexcept:
    """Hand one read to every recorder of ``served``; one that raises is told to its
    ``on_error`` (the hook counts and logs it), never to the read."""
    cdef Recorder r
    for obj in <tuple>served[S_RECORDERS]:
        r = <Recorder>obj
        try:
            r.record(served, plan, rows, n, raws, status, stamps, now_us)
        except Exception:
            try:
                if r.on_error is not None:
                    r.on_error(r)
            except Exception:
                pass
