"""The product's shared constants (defined in _constants.pxd, one place for C and Python)."""

import enum

class Status(enum.IntEnum):
    """The status of one served value."""

    PRESENT = 0
    NOT_FOUND = 1
    EXPIRED = 2
    DEFAULTED = 3

class Kind(enum.IntEnum):
    """The dtype of a stored column: the name after ``K_`` is the dtype's name."""

    K_INT32 = 0
    K_INT64 = 1
    K_FLOAT32 = 2
    K_FLOAT64 = 3
    K_BOOL = 4
    K_TIMESTAMP = 5
    K_STRING = 6
    K_BYTES = 7

class Op(enum.IntEnum):
    """The wire protocol's operations: the name after ``OP_`` is the op's name."""

    OP_HELLO = 1
    OP_GET = 2
    OP_PUSH = 3
    OP_HEALTH = 4
    OP_INFO = 5
