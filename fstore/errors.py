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
    """Base of every fstore error. ``field`` names the argument or column at fault, if one is.

    A subclass states its code in its header, ``class UnknownObject(FstoreError, KeyError,
    code="UNKNOWN_OBJECT")``; one that states none shares its parent's.
    """

    code = "FSTORE_ERROR"
    field: str | None = None

    def __init_subclass__(cls, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

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


class InvalidDefinition(FstoreError, ValueError, code="INVALID_DEFINITION"):
    """A feature definition is wrong; names the file, the object and the field."""
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


class SchemaChangeRefused(InvalidDefinition, code="SCHEMA_CHANGE_REFUSED"):
    """An applied view version's schema may not change in place: bump its version."""


class SchemaChangeErrors(DefinitionErrors, SchemaChangeRefused, code="SCHEMA_CHANGE_REFUSED"):
    """Definition errors of which at least one is a refused schema change."""


class InvalidConfig(InvalidDefinition, code="INVALID_CONFIG"):
    """A setting of fstore.yaml is unknown or has the wrong type; names the key."""


class RegistryError(FstoreError, RuntimeError, code="REGISTRY_ERROR"):
    """The registry file is missing, corrupt or written by an incompatible version."""


class NotApplied(RegistryError, code="NOT_APPLIED"):
    """The repository has no applied registry yet: run ``fstore apply``."""


class UnknownObject(FstoreError, KeyError, code="UNKNOWN_OBJECT"):
    """A name (view, feature, service, entity) that the registry does not hold."""


class IngestError(FstoreError, ValueError, code="INGEST_ERROR"):
    """Source data that cannot be loaded: names the file, row and column."""
    file: str | None = None
    row: int | None = None
    column: str | None = None

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        self.file, self.row, self.column = file, row, column
        super().__init__(message)


class BadRows(IngestError, code="BAD_ROWS"):
    """Bad rows of one run (an ingest, a load, a push), every one found and reported together:
    the first ones in full, then a count per problem; nothing of the run was written.
    ``file``, ``row`` (1-based) and ``column`` name the first, ``count`` the bad rows."""
    count = 0

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None, count: int = 0) -> None:
        super().__init__(message, file=file, row=row, column=column)
        self.count = count


class TransformError(IngestError, code="TRANSFORM_ERROR"):
    """A view's batch transformation failed or gave output that does not fit the view: names
    the view, and the column and what is wrong with it (or DuckDB's / the function's message)."""
    view: str | None = None

    def __init__(self, message: str, *, view: str | None = None, column: str | None = None) -> None:
        super().__init__(message, column=column)
        self.view = view
        self.field = column


class EntityDataError(FstoreError, ValueError, code="ENTITY_DATA_ERROR"):
    """The entity dataframe of a training-set request is unusable (missing key, null time)."""


class FeatureNameClash(FstoreError, ValueError, code="FEATURE_NAME_CLASH"):
    """Two requested features would get the same output column name."""
    column: str | None = None      # the output name both would get
    refs: tuple[str, ...] = ()     # the two references ('view:feature'), when known


class OfflineStoreError(FstoreError, RuntimeError, code="OFFLINE_STORE_ERROR"):
    """The offline store on disk is inconsistent or from an incompatible version."""


class OnlineStoreError(FstoreError, RuntimeError, code="ONLINE_STORE_ERROR"):
    """The online store cannot be opened or was written with another encoding."""


class EntityRowError(FstoreError, ValueError, code="BAD_ENTITY_ROW"):
    """An entity row of an online request lacks a key or has a key of the wrong type."""


class MissingRequestData(EntityRowError, EntityDataError, code="MISSING_REQUEST_DATA"):
    """A request-time feature's request field is missing: from the entity rows of an online
    read, or from the entity frame of a training set. ``field`` names the column."""


class ComputedFeatureError(FstoreError, ValueError, code="COMPUTED_FEATURE_ERROR"):
    """A request-time function raised, or gave an output that is not what it declares
    (a missing column, a wrong length, a value not of the feature's dtype); ``field``
    names the feature."""


class FunctionNotFound(InvalidDefinition, code="FUNCTION_NOT_FOUND"):
    """A function the definitions name is not in their Python files (or no longer the code
    that was applied); names the file and the function."""


class KeyTooLong(FstoreError, ValueError, code="KEY_TOO_LONG"):
    """An entity key longer than LMDB's 511 bytes; ``row`` is its 0-based index in the batch."""
    row = -1
    size = 0

    def __init__(self, row: int, size: int) -> None:
        self.row, self.size = row, size
        super().__init__(f"row {row + 1}: the key is {size} bytes; LMDB keys are at most 511")


class InvalidArgument(FstoreError, ValueError, code="INVALID_ARGUMENT"):
    """A bad argument to a command or call (a time that does not parse, an empty range)."""


class DriftInputError(InvalidArgument, code="DRIFT_INPUT"):
    """A side of ``fstore drift`` cannot be read as the service's features (a reference file
    missing a column, built for another service, or a column of the wrong type); names the file
    and column."""


class FutureEnd(InvalidArgument, code="FUTURE_END"):
    """A materialization END later than now plus the clock-skew allowance (``materialize.clock_skew``),
    refused unless asked for (``--allow-future``): most often a typo, and it would claim rows to come."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadRequest(InvalidArgument, code="BAD_REQUEST"):
    """A request whose arguments are malformed (a missing column, a wrong type); ``field`` names it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TooManyRows(BadRequest, code="TOO_MANY_ROWS"):
    """More entity rows in one request than the server's ``max_rows``."""


class ProtocolError(FstoreError, code="PROTOCOL_ERROR"):
    """A conversation with the server that broke the protocol; the server closes the connection."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadFrame(ProtocolError, ValueError, code="BAD_FRAME"):
    """A frame that is not a request: a zero length, not MessagePack, not [op, id, args]."""


class FrameTooLarge(BadFrame, code="FRAME_TOO_LARGE"):
    """A frame longer than the receiver's limit."""


class HandshakeRequired(ProtocolError, code="HANDSHAKE_REQUIRED"):
    """A request before HELLO."""


class UnsupportedVersion(ProtocolError, code="UNSUPPORTED_VERSION"):
    """HELLO asked for a protocol version this server does not speak."""


class UnknownOp(ProtocolError, code="UNKNOWN_OP"):
    """An op code the server does not know; the connection goes on."""


class Unavailable(FstoreError, ConnectionError, code="UNAVAILABLE"):
    """The server cannot take the request now; another server (or a later try) can.

    Raised by the clients for every way a server can fail to answer (refused, reset, closed,
    TLS failure, draining, at its limit), never a bare socket error; ``host`` and ``port``
    name the server (None when it is not known, e.g. rebuilt from a code alone)."""
    host: str | None = None
    port: int | None = None

    def __init__(self, message: str = "", host: str | None = None, port: int | None = None) -> None:
        super().__init__(message)
        self.host, self.port = host, port


class Overloaded(Unavailable, code="OVERLOADED"):
    """The server is at its connection limit."""


class ShuttingDown(Unavailable, code="SHUTTING_DOWN"):
    """The server is draining after SIGTERM: the request was not run, so it may be sent elsewhere."""


class MissingDependency(FstoreError, ImportError, code="MISSING_DEPENDENCY"):
    """An optional package a call needs is not installed; the message says what to install."""


class MlflowRunNotFound(UnknownObject, code="MLFLOW_RUN_NOT_FOUND"):
    """``register --mlflow-run``: the tracking server or store has no such run; the message
    names the run and the tracking URI."""


class InternalError(FstoreError, RuntimeError, code="INTERNAL"):
    """A bug on the server's side; the message names the exception."""


# ---- the server's port, who may use it, and what a client reached (docs/protocol.md) ----------

class PortInUse(FstoreError, OSError, code="PORT_IN_USE"):
    """``fstore serve`` on a port something else listens on; names the port and, when known,
    the project, repository and pid holding it."""


class TakeoverRefused(FstoreError, RuntimeError, code="TAKEOVER_REFUSED"):
    """``fstore serve --takeover`` against a server of another repository or project, or one
    that did not hand its port over."""


class InsecureBind(InvalidArgument, code="INSECURE_BIND"):
    """A server without auth tokens asked to listen on a non-loopback address without ``--insecure``."""


class Unauthenticated(FstoreError, PermissionError, code="UNAUTHENTICATED"):
    """No valid token in HELLO (or a request before it) on a server with tokens; the connection is closed."""


class PermissionDenied(FstoreError, PermissionError, code="PERMISSION_DENIED"):
    """The connection's token lacks the scope an operation needs; the message names the scope."""


class ServerUnreachable(Unavailable, code="UNREACHABLE"):
    """A client could not connect to (or lost) the server; the message names host:port."""


class Timeout(Unavailable, TimeoutError, code="TIMEOUT"):
    """A client call's deadline (``timeout``) passed before its reply came: connecting, the
    handshake, waiting for a free connection, the reply and any retries all count."""


class NotAnFstoreServer(FstoreError, ConnectionError, code="NOT_AN_FSTORE_SERVER"):
    """What a client reached does not speak the fstore protocol (an HTTP server, the metrics port)."""


class WrongProject(FstoreError, ConnectionError, code="WRONG_PROJECT"):
    """The server serves another project than the client's ``project=``; names both and host:port."""


#: codes after which the server closes the connection (docs/protocol.md)
CLOSING_CODES = frozenset({BadFrame.code, FrameTooLarge.code, HandshakeRequired.code, UnsupportedVersion.code,
                           Overloaded.code, ShuttingDown.code, Unauthenticated.code})


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


# ---- fstore monitor (fstore/monitoring/checks.py) -------------------------------------------

class UnknownCheck(InvalidArgument, code="UNKNOWN_CHECK"):
    """A check named to ``fstore monitor`` that cannot be loaded (no such module or callable)."""


class InvalidCheckResult(FstoreError, ValueError, code="INVALID_CHECK_RESULT"):
    """A check returned a sample the monitor does not export: an unknown metric, other labels,
    a value that is not a number, or a series another check exports."""


class MissingLineage(InvalidArgument, code="MISSING_LINEAGE"):
    """A model is registered on a file without the lineage record fstore writes beside every
    training set it builds (``<FILE>.lineage.json``), or on a file changed since."""


class NoProductionVersion(UnknownObject, code="NO_PRODUCTION_VERSION"):
    """A read names a model without a version, and no version of it is in production."""
