# The C decoder of a fast GET's request (_request.pyx), cimported by the connection's reader (_conn.pyx).

cdef class RawGets:
    cdef object fast     # the worker's FastGet: its prepared shapes, limits, and ``reply``
    cdef dict shapes     # a shape's raw bytes -> its key in fast.prepared (None: it has none)

    cdef object answer(self, const char* frame, Py_ssize_t size)
    cdef object _learn(self, bytes shape, Py_ssize_t n_shape)
