"""The offline store's columns and row order, shared by its writers, its readers and
the online writers that read it (materialize).

Stored columns: the join keys (int64 or string), ``__event_ts`` and ``__created_ts``
(UTC microseconds), ``__unit`` (which source file a row came from, so a changed file
can be replaced) and the features, typed as declared. Rows are assigned to a bucket by
a stable hash of their join key, and sorted by (keys, event time, created time)
inside a part.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._ext._asof import bucket_of, hash_keys
from ..repo.definitions import DTYPES
from .casting import TS_TYPE

FORMAT = 1  # the manifest's format
EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"
UNIT = "__unit"
MANIFEST = "_manifest.json"
#: the label of a pushed run's unit: rows no source file holds (fstore.online.push, fstore.offline.compact)
PUSH_PREFIX = "push:"
KEY_TYPES = {"int64": pa.int64(), "string": pa.string()}


def sort_keys(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, "ascending") for k in view["join_keys"]] + [(EVENT_TS, "ascending"), (CREATED_TS, "ascending")]


def sort_indices(table: pa.Table, view: dict[str, Any]) -> pa.Array:
    """Row order by (keys, event time, created time), nulls first (a null created time is oldest)."""
    keys = sort_keys(view)
    try:
        return pc.sort_indices(table, sort_keys=[(k, o, "at_start") for k, o in keys])
    except (TypeError, ValueError, pa.ArrowInvalid):  # pyarrow < 25 takes one null placement
        return pc.sort_indices(table, sort_keys=keys, null_placement="at_start")


def sort_table(table: pa.Table, view: dict[str, Any]) -> pa.Table:
    return table.take(sort_indices(table, view))


def offline_schema(view: dict[str, Any]) -> pa.Schema:
    """The columns of a view's parts: keys, times, source unit, features."""
    fields = [pa.field(k, KEY_TYPES[view["key_dtypes"][k]]) for k in view["join_keys"]]
    fields += [pa.field(EVENT_TS, TS_TYPE), pa.field(CREATED_TS, TS_TYPE), pa.field(UNIT, pa.int32())]
    fields += [pa.field(f["name"], DTYPES[f["dtype"]]) for f in view["features"]]
    return pa.schema(fields)


def bucket_ids(table: pa.Table, key_columns: list[str], n_buckets: int) -> np.ndarray:
    """The bucket of every row; the same function places entity rows at join time."""
    cols = [table.column(k).combine_chunks() for k in key_columns]
    return bucket_of(hash_keys(cols), n_buckets)
