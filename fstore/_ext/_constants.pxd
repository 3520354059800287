# The product's shared constants, defined once: compiled modules cimport them, and
# _constants.pyx turns each cpdef enum into a Python IntEnum of the same name, from
# which fstore's Python code takes names and values (docs/architecture.md).

# The status of one served value (the rule is ViewReader._lookup in _online.pyx).
cpdef enum Status:
    PRESENT = 0       # the stored row's value (a stored null is PRESENT with None)
    NOT_FOUND = 1     # no usable row and no default
    EXPIRED = 2       # the row is older than the view's ttl, no default
    DEFAULTED = 3     # no usable row: the feature's declared default
    UNAVAILABLE = 4   # a client's fallback: the server could not be reached, the declared default (or None)
    COMPUTED = 5      # no usable row, no default: the view's request-time function computed it (on_miss: compute)

# The dtype of a stored column; the name after K_ is the dtype's name in definitions.
cpdef enum Kind:
    K_INT32 = 0
    K_INT64 = 1
    K_FLOAT32 = 2
    K_FLOAT64 = 3
    K_BOOL = 4
    K_TIMESTAMP = 5
    K_STRING = 6
    K_BYTES = 7

# The wire protocol's operations (docs/protocol.md); the name after OP_ is the op's name.
cpdef enum Op:
    OP_HELLO = 1
    OP_GET = 2
    OP_PUSH = 3
    OP_HEALTH = 4
    OP_INFO = 5
