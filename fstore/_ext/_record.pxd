# The served-read recorders (fstore.monitoring.events, "Recorders"): compiled listeners that
# the compiled reads call with what they already made, the raw stored rows.
from libc.stdint cimport int64_t, uint8_t

# The items of a read's ``served`` tuple, which a serving path builds when a recorder listens.
cdef enum:
    S_RECORDERS = 0   # the tuple of Recorders to call
    S_PATH = 1        # events.IN_PROCESS, SERVER or SERVER_FAST
    S_SOURCE = 2      # in process: the OnlineService that read; None on the server
    S_SERVICE = 3     # the feature service asked for (or the model's), or None
    S_FULL = 4        # full_feature_names
    S_VERSION = 5     # the registry version the plan was built under
    S_CALLER = 6      # the caller's request id (str) or None
    S_MODEL = 7       # the model the read named (str) or None
    S_ITEMS = 8


cdef class Recorder:
    cdef public object on_error   # told this recorder when its record raised (the hook counts it)

    cdef int record(self, tuple served, object plan, object rows, Py_ssize_t n, list raws,
                    const uint8_t* status, const int64_t* stamps, int64_t now_us) except -1


cdef void record_read(tuple served, object plan, object rows, Py_ssize_t n, list raws,
                      const uint8_t* status, const int64_t* stamps, int64_t now_us) noexcept
