"""Reading a view's offline rows as stored (every part of every bucket), for the rules that
check the data itself. Independent of the join code on purpose: PIT compares the two."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..offline.casting import as_int64
from ..offline.layout import CREATED_TS, EVENT_TS
from ..times import NO_TIME
from .context import Context


def read_view(ctx: Context, view: dict[str, Any], features: bool = True) -> pa.Table:
    """All the view's stored rows: join keys, event and created time, and (``features``) every feature."""
    manifest = ctx.manifest(view)
    columns = [*view["join_keys"], EVENT_TS, CREATED_TS]
    if features:
        columns += [f["name"] for f in view["features"]]
    store = ctx.engine.store
    paths = [p for b in range(manifest["buckets"]) for p in store.parts(view, manifest, b)] if manifest else []
    tables = [pq.read_table(p, columns=columns) for p in paths]
    if not tables:
        return store.empty_table(view, columns)
    return pa.concat_tables(tables)


def times(table: pa.Table, column: str) -> np.ndarray:
    """A time column as int64 microseconds; null as NO_TIME (older than any time)."""
    return as_int64(table.column(column), fill=NO_TIME)
