"""An online response: feature values for entity rows, with a status and an event
timestamp per value, as an in-process read and the network clients return it.

Statuses (fstore._ext._constants.Status; the rule is in fstore.online.plan):
- PRESENT: the stored row's value (a stored null is PRESENT with value None);
- NOT_FOUND: no row for the entity (or a null key part), no default: value None;
- EXPIRED: the row is older than the view's ttl, no default: value None;
- DEFAULTED: no usable row, and the declared default was returned;
- COMPUTED: no usable row and no default, and the view's ``on_miss: compute`` function
  gave the value (fstore.online.request).
The event timestamp is that of the entity's stored row (also for EXPIRED, and for
a DEFAULTED or COMPUTED that replaced an expired row); None where there is no row.
Request-time features (request views) are PRESENT, with no event timestamp.

This module imports neither LMDB nor pyarrow (``to_arrow`` imports pyarrow and
``to_pandas`` pandas when called), so that ``import fstore.client`` stays light.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from .._ext._constants import Status
from .._ext._response import ResponseBase, columns_dict
from ..errors import InvalidArgument, MissingDependency
from ..times import NO_TIME, from_us

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

_NUMERIC = {"int32", "int64", "float32", "float64", "bool"}
_STATUS_NAMES = [s.name for s in Status]
_STATUS_BY_CODE = tuple(sorted(Status, key=int))  # codes are 0..n-1: a tuple index, not an enum call
assert [int(s) for s in _STATUS_BY_CODE] == list(range(len(_STATUS_BY_CODE)))
# pandas' nullable dtype of a feature dtype whose numpy dtype cannot hold a null
_NULLABLE = {"int32": "Int32", "int64": "Int64", "bool": "boolean"}

__all__ = ["OnlinePlan", "OnlineResponse", "Status"]


@dataclass
class OnlinePlan:
    """How to answer one request shape under one registry version."""

    names: list[str]          # output feature names, in request order
    dtypes: list[str]
    view_of: list[int]        # index into readers of each output
    readers: list[Any]        # the compiled ViewReader of each view (None in a client's response)
    views: list[str]          # versioned view names
    key_columns: list[str]    # every join key, in first-seen order


class OnlineResponse(ResponseBase):
    """Feature values for entity rows; convert with to_dict, to_rows, to_arrow, to_pandas (to_df)
    or to_numpy; ``status_matrix`` holds every value's status.

    The fields live in the compiled ResponseBase, which an in-process read fills
    from C without calling ``__init__`` (used by the network client).
    """

    __slots__ = ()

    def __init__(self, entity_rows: list[dict[str, Any]], plan: OnlinePlan, values: list[Any],
                 status: bytearray | None, stamps: bytearray | None, flat: bool = False) -> None:
        # ``values``: one list per feature, or (``flat``) one output-major list of
        # features x rows, which is what an in-process read builds (one allocation).
        # The raw buffers are viewed as arrays only when asked: most callers want values.
        self.entity_rows, self.plan = entity_rows, plan
        self._values, self._raw_status, self._raw_ts, self._flat = values, status, stamps, flat

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (to cache it, or hand it to another process): the plan travels without
        its compiled readers, which hold LMDB handles, as a network client's response does."""
        p = self.plan
        light = OnlinePlan(p.names, p.dtypes, p.view_of, [None] * len(p.readers), p.views,  # type: ignore[list-item]
                           p.key_columns)
        return (OnlineResponse, (self.entity_rows, light, self._values, self._raw_status, self._raw_ts, self._flat))

    def _column(self, i: int) -> list[Any]:
        """The values of output ``i`` (a new list when the values are flat)."""
        if self._flat:
            n = len(self.entity_rows)
            return self._values[i * n:(i + 1) * n]
        return self._values[i]

    def _require_metadata(self) -> None:
        if self._raw_status is None or self._raw_ts is None:
            raise InvalidArgument("this response was fetched with include_metadata=False: it has no statuses "
                                  "or timestamps")

    @property
    def _status(self) -> np.ndarray:
        """Status codes, shape (features, rows)."""
        self._require_metadata()
        return np.frombuffer(self._raw_status, dtype=np.uint8).reshape(len(self.plan.names), len(self.entity_rows))

    @property
    def _ts(self) -> np.ndarray:
        """Event timestamps in microseconds (INT64_MIN: none), shape (views, rows)."""
        self._require_metadata()
        return np.frombuffer(self._raw_ts, dtype=np.int64).reshape(len(self.plan.readers), len(self.entity_rows))

    def __len__(self) -> int:
        return len(self.entity_rows)

    @property
    def feature_names(self) -> list[str]:
        return list(self.plan.names)

    def values(self, name: str) -> list[Any]:
        return list(self._column(self.plan.names.index(name)))

    @property
    def status_matrix(self) -> np.ndarray:
        """Every value's status code (``Status``), a read-only uint8 array of shape
        (features, rows) in ``feature_names`` order, with no copy: for masks and counts,
        e.g. ``resp.status_matrix == Status.PRESENT``."""
        view = self._status.view()
        view.flags.writeable = False  # the response's own bytes: statuses() and to_* read them
        return view

    def statuses(self, name: str) -> list[Status]:
        by_code = _STATUS_BY_CODE
        return [by_code[s] for s in self._status[self.plan.names.index(name)].tolist()]

    def event_timestamps(self, name: str) -> list[dt.datetime | None]:
        return self._view_stamps(self.plan.view_of[self.plan.names.index(name)])

    def _view_stamps(self, view: int) -> list[dt.datetime | None]:
        """The event timestamps of one view's rows as datetimes (None: no row)."""
        return [None if t == NO_TIME else from_us(t) for t in self._ts[view].tolist()]

    def _metadata(self) -> tuple[list[list[str]], list[list[dt.datetime | None]]]:
        """Status names per output and timestamps per output (each view's converted once)."""
        names = [[_STATUS_NAMES[s] for s in row] for row in self._status.tolist()]
        per_view = [self._view_stamps(v) for v in range(len(self.plan.readers))]
        return names, [per_view[v] for v in self.plan.view_of]

    def to_dict(self, include_metadata: bool = False) -> dict[str, list[Any]]:
        """Columns: the join keys, then each feature (and ``f__status``, ``f__event_timestamp``)."""
        if not include_metadata and self._flat:  # the common call, in C
            return columns_dict(self.plan.key_columns, self.entity_rows, self.plan.names, self._values)
        out: dict[str, list[Any]] = {k: [r.get(k) for r in self.entity_rows] for k in self.plan.key_columns}
        if not include_metadata:
            out.update(zip(self.plan.names, map(list, self._values)))
            return out
        statuses, stamps = self._metadata()
        for i, name in enumerate(self.plan.names):
            out[name] = list(self._column(i))
            out[f"{name}__status"] = statuses[i]
            out[f"{name}__event_timestamp"] = list(stamps[i])
        return out

    def to_rows(self, include_metadata: bool = False) -> list[dict[str, Any]]:
        """One dict per entity row; with metadata each feature is {value, status, event_timestamp}."""
        keys, names = self.plan.key_columns, self.plan.names
        columns = [self._column(i) for i in range(len(names))]
        statuses, stamps = self._metadata() if include_metadata else ((), ())
        rows = []
        for j, entity in enumerate(self.entity_rows):
            row = {k: entity.get(k) for k in keys}
            for i, name in enumerate(names):
                if include_metadata:
                    row[name] = {"value": columns[i][j], "status": statuses[i][j], "event_timestamp": stamps[i][j]}
                else:
                    row[name] = columns[i][j]
            rows.append(row)
        return rows

    def to_arrow(self, include_metadata: bool = True) -> "pa.Table":
        """A Table: join keys, then per feature its value (declared type), status and timestamp."""
        import pyarrow as pa  # not at import: the network client needs no pyarrow

        from ..repo.definitions import DTYPES

        cols: dict[str, pa.Array] = {k: pa.array([r.get(k) for r in self.entity_rows]) for k in self.plan.key_columns}
        status, stamps = (self._status, self._ts) if include_metadata else (None, None)
        for i, name in enumerate(self.plan.names):
            cols[name] = pa.array(self._column(i), type=DTYPES[self.plan.dtypes[i]])
            if include_metadata:
                cols[f"{name}__status"] = pa.DictionaryArray.from_arrays(
                    pa.array(status[i], pa.int8()), pa.array(_STATUS_NAMES))
                ts = stamps[self.plan.view_of[i]]
                cols[f"{name}__event_timestamp"] = pa.array(ts, pa.int64(), mask=ts == NO_TIME) \
                    .cast(pa.timestamp("us", tz="UTC"))
        return pa.table(cols)

    def to_pandas(self, include_metadata: bool = False) -> "pd.DataFrame":
        """A pandas DataFrame of ``to_dict``'s columns: the join keys, then each feature (with
        ``include_metadata``, also ``f__status`` as text and ``f__event_timestamp`` as UTC
        datetimes, NaT where there is no row).

        A feature keeps its declared type: an int32/int64/bool feature with a null becomes
        pandas' nullable ``Int32``/``Int64``/``boolean`` (the null is ``pd.NA``) rather than
        float64 with NaN, which would change its values past 2**53 and its dtype from one
        response to the next; floats keep NaN; timestamps are UTC datetimes. Needs pandas
        (``pip install 'fstore[pandas]'``)."""
        try:
            import pandas as pd  # not at import: most callers never want a DataFrame
        except ImportError:
            raise MissingDependency("OnlineResponse.to_pandas() needs pandas, which is not installed: "
                                    "pip install pandas (or pip install 'fstore[pandas]')") from None
        columns: dict[str, Any] = self.to_dict(include_metadata)
        for name, dtype in zip(self.plan.names, self.plan.dtypes):
            values = columns[name]
            if dtype in _NULLABLE and None in values:
                columns[name] = pd.array(values, dtype=_NULLABLE[dtype])
            elif dtype == "timestamp":
                columns[name] = pd.to_datetime(values, utc=True)
            if include_metadata:
                columns[f"{name}__event_timestamp"] = pd.to_datetime(columns[f"{name}__event_timestamp"], utc=True)
        return pd.DataFrame(columns)

    to_df = to_pandas  # the name Feast users reach for

    def to_numpy(self, features: Iterable[str] | None = None, dtype: Any = np.float64,
                 mask: bool = False) -> Any:
        """A (rows x features) matrix of the numeric features (nulls as NaN), for a model.

        With ``mask``, ``(matrix, missing)``: ``missing`` is a bool matrix of the same shape,
        True where the value is not a stored row's (status other than PRESENT: NOT_FOUND,
        EXPIRED, DEFAULTED, COMPUTED, UNAVAILABLE), so a model can tell a default from a value."""
        names = list(features) if features is not None else \
            [n for n, d in zip(self.plan.names, self.plan.dtypes) if d in _NUMERIC]
        index = [self.plan.names.index(name) for name in names]
        out = np.empty((len(self.entity_rows), len(names)), dtype=dtype)
        for j, (name, i) in enumerate(zip(names, index)):
            if self.plan.dtypes[i] not in _NUMERIC:
                raise InvalidArgument(f"feature {name!r} is {self.plan.dtypes[i]}, not numeric")
            out[:, j] = np.array([np.nan if v is None else v for v in self._column(i)], dtype=np.float64)
        if not mask:
            return out
        return out, (self._status[index] != Status.PRESENT).T
