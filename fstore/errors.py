"""Every error fstore raises, in one place.

Each class carries a stable ``code`` that the network protocol will send, and
also inherits the builtin a caller would expect (``ValueError`` for bad input,
``KeyError`` for a missing name), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class FstoreError(Exception):
    """Base of every fstore error."""

    code = "FSTORE_ERROR"


class InvalidDefinition(FstoreError, ValueError):
    """A feature definition is wrong; names the file, the object and the field."""

    code = "INVALID_DEFINITION"

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


class RegistryError(FstoreError, RuntimeError):
    """The registry file is missing, corrupt or written by an incompatible version."""

    code = "REGISTRY_ERROR"


class NotApplied(RegistryError):
    """The repository has no applied registry yet: run ``fstore apply``."""

    code = "NOT_APPLIED"


class UnknownObject(FstoreError, KeyError):
    """A name (view, feature, service, entity) that the registry does not hold."""

    code = "UNKNOWN_OBJECT"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class IngestError(FstoreError, ValueError):
    """Source data that cannot be loaded: names the file, row and column."""

    code = "INGEST_ERROR"

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


class InvalidArgument(FstoreError, ValueError):
    """A bad argument to a command or call (a time that does not parse, an empty range)."""

    code = "INVALID_ARGUMENT"
