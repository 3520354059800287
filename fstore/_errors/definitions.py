"""Errors of what the user wrote and applied: definitions, fstore.yaml, the registry, and the
models registered on it. Each names the file, the object and the field at fault.
"""
from __future__ import annotations

from .base import FstoreError, InvalidArgument, UnknownObject


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


class FunctionNotFound(InvalidDefinition, code="FUNCTION_NOT_FOUND"):
    """A function the definitions name is not in their Python files (or no longer the code
    that was applied); names the file and the function."""


class RegistryError(FstoreError, RuntimeError, code="REGISTRY_ERROR"):
    """The registry file is missing, corrupt or written by an incompatible version."""


class NotApplied(RegistryError, code="NOT_APPLIED"):
    """The repository has no applied registry yet: run ``fstore apply``."""


class MlflowRunNotFound(UnknownObject, code="MLFLOW_RUN_NOT_FOUND"):
    """``register --mlflow-run``: the tracking server or store has no such run; the message
    names the run and the tracking URI."""


class MissingLineage(InvalidArgument, code="MISSING_LINEAGE"):
    """A model is registered on a file without the lineage record fstore writes beside every
    training set it builds (``<FILE>.lineage.json``), or on a file changed since."""


class NoProductionVersion(UnknownObject, code="NO_PRODUCTION_VERSION"):
    """A read names a model without a version, and no version of it is in production."""
