# The fields of an online response, which _online.read sets from C.
cdef class ResponseBase:
    cdef public object entity_rows, plan, _values, _raw_status, _raw_ts
    cdef public bint _flat
