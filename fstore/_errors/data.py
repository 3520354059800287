"""Errors of data and requests: source rows that cannot be loaded, entity frames and rows, the
stores on disk, request-time functions, and the inputs of drift and monitor checks. They name
the file, row and column (or the request's field) at fault.
"""
from __future__ import annotations

from .base import FstoreError, InvalidArgument


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


class KeyTooLong(FstoreError, ValueError, code="KEY_TOO_LONG"):
    """An entity key longer than LMDB's 511 bytes; ``row`` is its 0-based index in the batch."""
    row = -1
    size = 0

    def __init__(self, row: int, size: int) -> None:
        self.row, self.size = row, size
        super().__init__(f"row {row + 1}: the key is {size} bytes; LMDB keys are at most 511")


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


class DriftInputError(InvalidArgument, code="DRIFT_INPUT"):
    """A side of ``fstore drift`` cannot be read as the service's features (a reference file
    missing a column, built for another service, or a column of the wrong type); names the file
    and column."""


class UnknownCheck(InvalidArgument, code="UNKNOWN_CHECK"):
    """A check named to ``fstore monitor`` that cannot be loaded (no such module or callable)."""


class InvalidCheckResult(FstoreError, ValueError, code="INVALID_CHECK_RESULT"):
    """A check returned a sample the monitor does not export: an unknown metric, other labels,
    a value that is not a number, or a series another check exports."""
