"""The newest row per entity: what materialization writes to the online store.

Rule: among the rows a materialization reads (each run of the ingest log from its own
first event time, all up to END), an entity's newest row is the one with the greatest
(event time, created time, run, place in its part): a null created time is the oldest,
and an exact tie goes to the later run, then to the later row, as in one stable sort of
every part in log order. Every engine returns exactly these rows (OfflineEngine.newest).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .casting import as_int64
from .layout import EVENT_TS, sort_table
from .log import LogRun
from .store import OfflineStore

Reads = list[tuple[LogRun, int | None]]  # (run, first event time to read, None: from the oldest)


def latest_rows(table: pa.Table, view: dict[str, Any], start_us: int | None, end_us: int) -> pa.Table:
    """The newest row per entity with start <= event time <= end, from rows sorted as stored."""
    ts = as_int64(table.column(EVENT_TS))
    mask = ts <= end_us
    if start_us is not None:
        mask &= ts >= start_us
    if not mask.all():
        table = table.filter(pa.array(mask))
    n = table.num_rows
    if n < 2:
        return table
    boundary = np.zeros(n - 1, dtype=bool)
    for k in view["join_keys"]:
        col = table.column(k).combine_chunks()
        ne = pc.fill_null(pc.not_equal(col.slice(0, n - 1), col.slice(1)), True)
        boundary |= ne.to_numpy(zero_copy_only=False)
    last = np.append(boundary, True)
    return table.filter(pa.array(last))


def newest_in_bucket(store: OfflineStore, view: dict[str, Any], reads: Reads, end_us: int, bucket: int,
                     features: list[str]) -> pa.Table:
    """The newest row per entity of one bucket. Each part is reduced to its newest rows
    first (parts are sorted as stored), so only those are sorted together; a later run
    wins an exact tie, as in one sort of every part in log order."""
    tables = [latest_rows(store.read_part(view, run.parts[bucket], features), view, lo, end_us)
              for run, lo in reads if bucket in run.parts]
    tables = [t for t in tables if t.num_rows] or tables[:1]
    if len(tables) == 1:
        return tables[0]
    return latest_rows(sort_table(pa.concat_tables(tables), view), view, None, end_us)


def newest_by_bucket(store: OfflineStore, view: dict[str, Any], reads: Reads, end_us: int,
                     buckets: list[int]) -> Iterator[tuple[int, pa.Table]]:
    """(bucket, its newest rows) for each of ``buckets`` in order, read one bucket at a time."""
    features = [f["name"] for f in view["features"]]
    for b in buckets:
        yield b, newest_in_bucket(store, view, reads, end_us, b, features)
