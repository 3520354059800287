"""Every error fstore raises, in one place.

Each class carries a stable ``code``, which the network protocol sends, and also
inherits the builtin a caller would expect (``ValueError`` for bad input, ``KeyError``
for a missing name), so ``except ValueError`` keeps working. A remote call raises the
same class as the in-process one: the server sends ``code``, ``message`` and ``field``
(``to_wire``), and the clients rebuild the error from them (``from_wire``). A code the
client does not know (a newer server) comes back as the base ``FstoreError`` with that
code.

This module is the family's one import path. The classes are written by concept in
``fstore._errors`` (``base``: the root, the code table and the errors of every layer;
``definitions``: what the user wrote and applied; ``data``: rows, stores and requests;
``network``: the server and its clients), each code in its class header; importing this
module imports them all, so ``error_class`` knows every code.
"""
from ._errors.base import (FstoreError, InvalidArgument, UnknownObject, MissingDependency, InternalError,
    error_class, as_fstore_error)
from ._errors.definitions import (InvalidDefinition, DefinitionErrors, SchemaChangeRefused,
    SchemaChangeErrors, InvalidConfig, FunctionNotFound, RegistryError, NotApplied, MlflowRunNotFound,
    MissingLineage, NoProductionVersion)
from ._errors.data import (IngestError, BadRows, TransformError, EntityDataError, FeatureNameClash,
    OfflineStoreError, OnlineStoreError, EntityRowError, MissingRequestData, ComputedFeatureError,
    KeyTooLong, FutureEnd, BadRequest, TooManyRows, DriftInputError, UnknownCheck, InvalidCheckResult)
from ._errors.network import (ProtocolError, BadFrame, FrameTooLarge, HandshakeRequired, UnsupportedVersion,
    UnknownOp, Unavailable, Overloaded, ShuttingDown, ServerUnreachable, Timeout, PortInUse, TakeoverRefused,
    InsecureBind, Unauthenticated, PermissionDenied, NotAnFstoreServer, WrongProject, CLOSING_CODES)

__all__ = [
    "BadFrame", "BadRequest", "BadRows", "CLOSING_CODES", "ComputedFeatureError", "DefinitionErrors",
    "DriftInputError", "EntityDataError", "EntityRowError", "FeatureNameClash", "FrameTooLarge",
    "FstoreError", "FunctionNotFound", "FutureEnd", "HandshakeRequired", "IngestError", "InsecureBind",
    "InternalError", "InvalidArgument", "InvalidCheckResult", "InvalidConfig", "InvalidDefinition",
    "KeyTooLong", "MissingDependency", "MissingLineage", "MissingRequestData", "MlflowRunNotFound",
    "NoProductionVersion", "NotAnFstoreServer", "NotApplied", "OfflineStoreError", "OnlineStoreError",
    "Overloaded", "PermissionDenied", "PortInUse", "ProtocolError", "RegistryError",
    "SchemaChangeErrors", "SchemaChangeRefused", "ServerUnreachable", "ShuttingDown", "TakeoverRefused",
    "Timeout", "TooManyRows", "TransformError", "Unauthenticated", "Unavailable", "UnknownCheck",
    "UnknownObject", "UnknownOp", "UnsupportedVersion", "WrongProject", "as_fstore_error", "error_class",
]

# the classes and functions are named as their one import path: tracebacks, reprs and
# pickles say fstore.errors.BadFrame, as they did when the family was one file
for _name in __all__:
    if callable(globals()[_name]):
        globals()[_name].__module__ = __name__
del _name
