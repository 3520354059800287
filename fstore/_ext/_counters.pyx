# cython: language_level=3
"""The served GETs' metrics counted in C: one worker's per-GET counters, kept by the
compiled fast path (FastGet.answer) and by the Python path (one call per GET), and
taken as deltas by a timer of the event loop that adds them to the Prometheus metrics
(fstore.serving.metrics). No Python runs per GET for the metrics.

Per GET: its entity rows (a histogram), its latency (a histogram and a sum), and its
values' statuses per versioned view, counted by a C loop over the status bytes with the
plan's ``view_of``. Everything runs on the worker's event loop thread: no lock.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memset

from fstore._ext._constants cimport COMPUTED

cdef Py_ssize_t N_STATUS = COMPUTED + 1  # every Status is a byte below it (COMPUTED is the last code)
cdef Py_ssize_t MAX_PLANS_KEPT = 1024       # plans' view maps kept (the server keeps at most MAX_PLANS shapes)


cdef double* _bounds(object bounds, Py_ssize_t* n) except NULL:
    cdef list b = [float(x) for x in bounds]
    if b != sorted(b):
        raise ValueError("bucket bounds must be sorted")
    n[0] = len(b)
    cdef double* out = <double*>calloc(len(b) + 1, sizeof(double))
    if out == NULL:
        raise MemoryError()
    for i, x in enumerate(b):
        out[i] = x
    return out


cdef inline Py_ssize_t _bucket(const double* bounds, Py_ssize_t n, double x) noexcept nogil:
    """Prometheus's rule: the first bucket whose upper bound is >= x; n is +Inf."""
    cdef Py_ssize_t i
    for i in range(n):
        if x <= bounds[i]:
            return i
    return n


cdef class GetCounters:
    """One worker's GET counters since the last ``take``: rows and latency histograms
    (with the bounds given, +Inf added) and values by (view, status)."""

    def __cinit__(self, latency_bounds, row_bounds):
        self.lat_bounds = _bounds(latency_bounds, &self.n_lat)
        self.row_bounds = _bounds(row_bounds, &self.n_rows)
        self.lat_counts = <uint64_t*>calloc(self.n_lat + 1, sizeof(uint64_t))
        self.row_counts = <uint64_t*>calloc(self.n_rows + 1, sizeof(uint64_t))
        self.cap_views = 16
        self.values = <uint64_t*>calloc(self.cap_views * N_STATUS, sizeof(uint64_t))
        if self.lat_counts == NULL or self.row_counts == NULL or self.values == NULL:
            raise MemoryError()
        self.view_index, self.view_names, self.plans = {}, [], {}

    def __dealloc__(self):
        free(self.lat_bounds)
        free(self.row_bounds)
        free(self.lat_counts)
        free(self.row_counts)
        free(self.values)

    cdef bytes _map_of(self, object plan):
        """The plan's outputs' view indexes (int32 each), made once per plan."""
        entry = self.plans.get(id(plan))
        if entry is not None and (<tuple>entry)[0] is plan:
            return (<tuple>entry)[1]
        view_of, views = list(plan.view_of), list(plan.views)
        cdef bytes out = PyBytes_FromStringAndSize(NULL, len(view_of) * sizeof(int32_t))
        cdef int32_t* p = <int32_t*>PyBytes_AS_STRING(out)
        cdef Py_ssize_t i, idx
        cdef uint64_t* grown
        for i in range(len(view_of)):
            name = views[view_of[i]]
            found = self.view_index.get(name)
            if found is None:
                idx = len(self.view_names)
                if idx == self.cap_views:
                    grown = <uint64_t*>realloc(self.values, 2 * self.cap_views * N_STATUS * sizeof(uint64_t))
                    if grown == NULL:
                        raise MemoryError()
                    memset(grown + self.cap_views * N_STATUS, 0, self.cap_views * N_STATUS * sizeof(uint64_t))
                    self.values, self.cap_views = grown, 2 * self.cap_views
                self.view_index[name] = idx
                self.view_names.append(name)
            else:
                idx = found
            p[i] = <int32_t>idx
        if len(self.plans) >= MAX_PLANS_KEPT:  # the counts are by view, not by plan: nothing is lost
            self.plans.clear()
        self.plans[id(plan)] = (plan, out)
        return out

    cdef int count(self, object plan, Py_ssize_t n, const uint8_t* status, Py_ssize_t size,
                   double seconds) except -1:
        """One GET answered: ``n`` entity rows, ``size`` status bytes (output-major, n per
        output), ``seconds`` of server time."""
        cdef bytes vmap
        if plan is self.last_plan:
            vmap = self.last_map
        else:
            vmap = self._map_of(plan)
            self.last_plan, self.last_map = plan, vmap
        cdef const int32_t* view = <const int32_t*>PyBytes_AS_STRING(vmap)
        cdef Py_ssize_t n_out = len(vmap) // sizeof(int32_t), i, r
        cdef uint64_t* row
        cdef uint8_t s
        if n > 0 and size >= n_out * n:
            for i in range(n_out):
                row = self.values + view[i] * N_STATUS
                for r in range(i * n, (i + 1) * n):
                    s = status[r]
                    if s < N_STATUS:
                        row[s] += 1
        self.row_counts[_bucket(self.row_bounds, self.n_rows, <double>n)] += 1
        self.row_sum += n
        self.lat_counts[_bucket(self.lat_bounds, self.n_lat, seconds)] += 1
        self.lat_sum += seconds
        self.gets += 1
        return 0

    def count_get(self, plan, Py_ssize_t n, status, double seconds) -> None:
        """One GET answered by the Python path (``status``: its bytes or bytearray)."""
        cdef const uint8_t[:] view = status
        self.count(plan, n, &view[0] if view.shape[0] else NULL, view.shape[0], seconds)

    def take(self):
        """The counts since the last take, reset: None if no GET was counted, else
        (latency bucket counts with +Inf last, latency sum, row bucket counts, row sum,
        {(view, status code): values}) with only the non-zero values."""
        if self.gets == 0:
            return None
        cdef Py_ssize_t v, s
        lat = [self.lat_counts[i] for i in range(self.n_lat + 1)]
        rows = [self.row_counts[i] for i in range(self.n_rows + 1)]
        values = {}
        for v in range(len(self.view_names)):
            for s in range(N_STATUS):
                if self.values[v * N_STATUS + s]:
                    values[(self.view_names[v], s)] = self.values[v * N_STATUS + s]
        out = (lat, self.lat_sum, rows, self.row_sum, values)
        memset(self.lat_counts, 0, (self.n_lat + 1) * sizeof(uint64_t))
        memset(self.row_counts, 0, (self.n_rows + 1) * sizeof(uint64_t))
        memset(self.values, 0, self.cap_views * N_STATUS * sizeof(uint64_t))
        self.lat_sum = self.row_sum = 0.0
        self.gets = 0
        return out
