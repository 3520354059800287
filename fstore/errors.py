"""Every error fstore raises, in one place.

Each class carries a stable ``code``, which the network protocol sends, and also
inherits the builtin a caller would expect (``ValueError`` for bad input, ``KeyError``
for a missing name), so ``except ValueError`` keeps working. A remote call raises the
same class as the in-process one: the server sends ``code``, ``message`` and ``field``
(``to_wire``), and the clients rebuild the error from them (``from_wire``). A code the
client does not know (a newer server) comes back as the base ``FstoreError`` with that
code.
"""
from __future__ import annotations

from typing import Any


class FstoreError(Exception):
    """Base of every fstore error. ``field`` names the argument or column at fault, if one is."""

    code = "FSTORE_ERROR"
    field: str | None = None

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""

    @property
    def message(self) -> str:
        return str(self)

    def to_wire(self) -> dict[str, Any]:
        """The error as a reply carries it (docs/protocol.md)."""
        return {"code": self.code, "message": str(self), "field": self.field}

    @staticmethod
    def from_wire(error: Any) -> "FstoreError":
        """The error a reply carries, as the class its code names (see ``error_class``)."""
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code") or "INTERNAL")
        cls = error_class(code)
        exc = cls.__new__(cls)  # no __init__: each class's own arguments are not on the wire
        Exception.__init__(exc, str(error.get("message") or ""))
        exc.field = error.get("field")
        if cls is FstoreError:
            exc.code = code
        return exc


class InvalidDefinition(FstoreError, ValueError):
    """A feature definition is wrong; names the file, the object and the field."""

    code = "INVALID_DEFINITION"
    file: str | None = None
    obj: str | None = None
    detail = ""

    def __init__(self, message: str, *, file: str | None = None, obj: str | None = None,
                 field: str | None = None) -> None:
        self.file, self.obj, self.field, self.detail = file, obj, field, message
        where = ": ".join(p for p in (file, _obj_field(obj, field)) if p)
        super().__init__(f"{where}: {message}" if where else message)


def _obj_field(obj: str | None, field: str | None) -> str | None:
    if obj and field:
        return f"{obj}.{field}"
    return obj or field


class DefinitionErrors(InvalidDefinition):
    """Several definition errors found in one pass, reported together.

    Raised as a subclass that is also a SchemaChangeRefused when one of the errors is
    one, so ``except SchemaChangeRefused`` works on a plan or apply.
    """

    errors: list[InvalidDefinition] = []

    def __new__(cls, errors: list[InvalidDefinition]) -> "DefinitionErrors":
        if cls is DefinitionErrors and any(isinstance(e, SchemaChangeRefused) for e in errors):
            cls = SchemaChangeErrors
        return super().__new__(cls)

    def __init__(self, errors: list[InvalidDefinition]) -> None:
        self.errors = errors
        lines = "\n".join(f"  - {e}" for e in errors)
        FstoreError.__init__(self, f"{len(errors)} problem(s) in the feature definitions:\n{lines}")
        self.file = self.obj = self.field = None
        self.detail = str(self)


class SchemaChangeRefused(InvalidDefinition):
    """An applied view version's schema may not change in place: bump its version."""

    code = "SCHEMA_CHANGE_REFUSED"


class SchemaChangeErrors(DefinitionErrors, SchemaChangeRefused):
    """Definition errors of which at least one is a refused schema change."""

    code = "SCHEMA_CHANGE_REFUSED"


class InvalidConfig(InvalidDefinition):
    """A setting of fstore.yaml is unknown or has the wrong type; names the key."""

    code = "INVALID_CONFIG"


class RegistryError(FstoreError, RuntimeError):
    """The registry file is missing, corrupt or written by an incompatible version."""

    code = "REGISTRY_ERROR"


class NotApplied(RegistryError):
    """The repository has no applied registry yet: run ``fstore apply``."""

    code = "NOT_APPLIED"


class UnknownObject(FstoreError, KeyError):
    """A name (view, feature, service, entity) that the registry does not hold."""

    code = "UNKNOWN_OBJECT"


class IngestError(FstoreError, ValueError):
    """Source data that cannot be loaded: names the file, row and column."""

    code = "INGEST_ERROR"
    file: str | None = None
    row: int | None = None
    column: str | None = None

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        self.file, self.row, self.column = file, row, column
        super().__init__(message)


class EntityDataError(FstoreError, ValueError):
    """The entity dataframe of a training-set request is unusable (missing key, null time)."""

    code = "ENTITY_DATA_ERROR"


class FeatureNameClash(FstoreError, ValueError):
    """Two requested features would get the same output column name."""

    code = "FEATURE_NAME_CLASH"


class OfflineStoreError(FstoreError, RuntimeError):
    """The offline store on disk is inconsistent or from an incompatible version."""

    code = "OFFLINE_STORE_ERROR"


class OnlineStoreError(FstoreError, RuntimeError):
    """The online store cannot be opened or was written with another encoding."""

    code = "ONLINE_STORE_ERROR"


class EntityRowError(FstoreError, ValueError):
    """An entity row of an online request lacks a key or has a key of the wrong type."""

    code = "BAD_ENTITY_ROW"


class KeyTooLong(FstoreError, ValueError):
    """An entity key longer than LMDB's 511 bytes; ``row`` is its 0-based index in the batch."""

    code = "KEY_TOO_LONG"
    row = -1
    size = 0

    def __init__(self, row: int, size: int) -> None:
        self.row, self.size = row, size
        super().__init__(f"row {row + 1}: the key is {size} bytes; LMDB keys are at most 511")


class InvalidArgument(FstoreError, ValueError):
    """A bad argument to a command or call (a time that does not parse, an empty range)."""

    code = "INVALID_ARGUMENT"


class BadRequest(InvalidArgument):
    """A request whose arguments are malformed (a missing column, a wrong type); ``field`` names it."""

    code = "BAD_REQUEST"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooManyRows(BadRequest):
    """More entity rows in one request than the server's ``max_rows``."""

    code = "TOO_MANY_ROWS"


class ProtocolError(FstoreError):
    """A conversation with the server that broke the protocol; the server closes the connection."""

    code = "PROTOCOL_ERROR"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadFrame(ProtocolError, ValueError):
    """A frame that is not a request: a zero length, not MessagePack, not [op, id, args]."""

    code = "BAD_FRAME"


class FrameTooLarge(BadFrame):
    """A frame longer than the receiver's limit."""

    code = "FRAME_TOO_LARGE"


class HandshakeRequired(ProtocolError):
    """A request before HELLO."""

    code = "HANDSHAKE_REQUIRED"


class UnsupportedVersion(ProtocolError):
    """HELLO asked for a protocol version this server does not speak."""

    code = "UNSUPPORTED_VERSION"


class UnknownOp(ProtocolError):
    """An op code the server does not know; the connection goes on."""

    code = "UNKNOWN_OP"


class Unavailable(FstoreError, RuntimeError):
    """The server cannot take the request now; another server (or a later try) can."""

    code = "UNAVAILABLE"


class Overloaded(Unavailable):
    """The server is at its connection limit."""

    code = "OVERLOADED"


class ShuttingDown(Unavailable):
    """The server is draining after SIGTERM: the request was not run, so it may be sent elsewhere."""

    code = "SHUTTING_DOWN"


class InternalError(FstoreError, RuntimeError):
    """A bug on the server's side; the message names the exception."""

    code = "INTERNAL"


#: codes after which the server closes the connection (docs/protocol.md)
CLOSING_CODES = frozenset({BadFrame.code, FrameTooLarge.code, HandshakeRequired.code, UnsupportedVersion.code,
                           Overloaded.code, ShuttingDown.code})


def _codes() -> dict[str, type[FstoreError]]:
    """Every code with its class; where subclasses share a code (DefinitionErrors), the first
    class defined with it."""
    found: dict[str, type[FstoreError]] = {}
    todo: list[type[FstoreError]] = [FstoreError]
    while todo:
        cls = todo.pop(0)
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


_BY_CODE: dict[str, type[FstoreError]] | None = None


def error_class(code: str) -> type[FstoreError]:
    """The class of a code (FstoreError for a code this version does not know)."""
    global _BY_CODE
    if _BY_CODE is None:
        _BY_CODE = _codes()
    return _BY_CODE.get(code, FstoreError)


def as_fstore_error(exc: BaseException) -> FstoreError:
    """``exc`` as it is answered: itself if it is an FstoreError, else an InternalError naming it."""
    if isinstance(exc, FstoreError):
        return exc
    return InternalError(f"{type(exc).__name__}: {exc}")
