# cython: language_level=3
"""The compiled part of an online response: its fields, and the flat-values to_dict.

Apart from _online (which needs LMDB) so that a network client, which builds the same
responses, imports neither LMDB nor pyarrow.
"""
from cpython.list cimport PyList_GetSlice


cdef class ResponseBase:
    """The fields of an online response, set from C by ``_online.read``
    (fstore.online.OnlineResponse adds the methods): building a Python object field by
    field costs as much as a lookup."""


def columns_dict(list key_columns, list entity_rows, list names, list values):
    """{join key: [values], ..., feature: [values], ...} of a flat response, cut in C."""
    cdef Py_ssize_t i, j, k = len(names), n = len(entity_rows)
    cdef dict out = {}
    cdef list col
    if len(values) != k * n:
        raise ValueError("values do not hold len(names) x len(entity_rows) entries")
    for key in key_columns:
        col = [None] * n
        for j in range(n):
            col[j] = (<dict?>entity_rows[j]).get(key)
        out[key] = col
    for i in range(k):
        out[names[i]] = PyList_GetSlice(values, i * n, (i + 1) * n)
    return out


def make_response(type cls, list entity_rows, object plan, object values, object status, object ts):
    """A response of class ``cls`` (an OnlineResponse subclass) with feature-major
    ``values``, built without a Python ``__init__``: what a network client does per reply."""
    cdef ResponseBase out = <ResponseBase>cls.__new__(cls)
    out.entity_rows = entity_rows
    out.plan = plan
    out._values = values
    out._raw_status = status
    out._raw_ts = ts
    out._flat = False
    return out
