"""The product's shared constants: their values are defined in _constants.pxd only, for C and Python."""

import enum

class Status(enum.IntEnum):
    """The status of one served value."""

    PRESENT: int
    NOT_FOUND: int
    EXPIRED: int
    DEFAULTED: int
    UNAVAILABLE: int
    COMPUTED: int

class Kind(enum.IntEnum):
    """The dtype of a stored column: the name after ``K_`` is the dtype's name."""

    K_INT32: int
    K_INT64: int
    K_FLOAT32: int
    K_FLOAT64: int
    K_BOOL: int
    K_TIMESTAMP: int
    K_STRING: int
    K_BYTES: int

class Op(enum.IntEnum):
    """The wire protocol's operations: the name after ``OP_`` is the op's name."""

    OP_HELLO: int
    OP_GET: int
    OP_PUSH: int
    OP_HEALTH: int
    OP_INFO: int
