# cython: language_level=3
from libc.stdint cimport int32_t, uint8_t, uint64_t


cdef class GetCounters:
    cdef Py_ssize_t n_lat, n_rows, n_views, cap_views
    cdef double* lat_bounds
    cdef double* row_bounds
    cdef uint64_t* lat_counts   # n_lat + 1: the last is +Inf
    cdef uint64_t* row_counts   # n_rows + 1
    cdef uint64_t* values       # cap_views x N_STATUS, by view index then status
    cdef double lat_sum, row_sum
    cdef public uint64_t gets   # GETs counted since the last take()
    cdef dict view_index        # versioned view name -> its index in ``values``
    cdef list view_names
    cdef dict plans             # id(plan) -> (plan, int32 view index per output)
    cdef object last_plan
    cdef bytes last_map

    cdef int count(self, object plan, Py_ssize_t n, const uint8_t* status, Py_ssize_t size,
                   double seconds) except -1
    cdef bytes _map_of(self, object plan)
