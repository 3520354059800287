"""The root of the error family and its wire form: ``FstoreError`` (code, message, field), the
code -> class table the clients rebuild errors from, and the few errors every layer raises
(a bad argument, an unknown name, a missing package, a bug).

Its own module so that the concept modules beside it (definitions, data, network) can
subclass the root without importing each other; callers import every name from
``fstore.errors``, which imports all of them, so the code table sees every class.
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


class InvalidArgument(FstoreError, ValueError, code="INVALID_ARGUMENT"):
    """A bad argument to a command or call (a time that does not parse, an empty range)."""


class UnknownObject(FstoreError, KeyError, code="UNKNOWN_OBJECT"):
    """A name (view, feature, service, entity) that the registry does not hold."""


class MissingDependency(FstoreError, ImportError, code="MISSING_DEPENDENCY"):
    """An optional package a call needs is not installed; the message says what to install."""


class InternalError(FstoreError, RuntimeError, code="INTERNAL"):
    """A bug on the server's side; the message names the exception."""


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
