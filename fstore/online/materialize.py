"""Filling the online store: materialization from the offline store, bulk loads, and gc.

Every write follows one rule: a row replaces the stored row of its entity only when
its (event time, created time) is strictly newer. So a rerun, an overlapping
backfill, or an older backfill after a newer one never overwrites newer data, and
a job killed midway can simply be run again.

Materialization works through the offline store one bucket at a time (bounded
memory), writing each bucket in one transaction together with the job's progress,
so a resumed job skips the buckets already committed. The view's watermark
advances only in the transaction that commits its last bucket, and only when the
run's interval joins what it already claims (all history, or a start at or before
it): it never claims more than was written, not even a gap before a window.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._ext._online import row_times
from ..errors import OfflineStoreError
from ..offline.layout import EVENT_TS
from ..offline.problems import RowProblems
from ..offline.store import OfflineStore
from ..progress import Reporter, Silent
from ..repo.names import view_name
from ..offline.casting import as_int64
from .codec import write_table
from .files import read_files
from .store import OnlineStore


@dataclass
class WriteResult:
    """What a materialization or load did to one view."""

    view: str
    rows_read: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    watermark: int | None = None
    null_key_rows: int = 0          # rows skipped by a load: a null join key can never be read
    null_key_columns: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


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


def materialize(offline: OfflineStore, online: OnlineStore, views: Sequence[dict[str, Any]],
                start_us: int | None, end_us: int, *, incremental: bool = False,
                progress: Reporter | None = None) -> list[WriteResult]:
    """Write the newest row per entity with event time in [start, end] of each view.

    With ``incremental``, each view starts from its own watermark (all history before
    the first run) and ``start_us`` is ignored.
    """
    progress = progress or Silent()
    results = []
    for view in views:
        name = view_name(view)
        manifest = offline.manifest(view)
        if manifest is None:
            raise OfflineStoreError(f"feature view {name} has no offline data: run `fstore ingest {view['name']}`")
        start = online.watermark(name) if incremental else start_us
        results.append(_materialize_view(offline, online, view, manifest, start, end_us, progress))
    return results


def _materialize_view(offline: OfflineStore, online: OnlineStore, view: dict[str, Any], manifest: dict[str, Any],
                      start_us: int | None, end_us: int, progress: Reporter) -> WriteResult:
    """Buckets are read one at a time and reduced to their newest rows; the rows of as many
    buckets as fit in ``online.write_buffer`` bytes are then sorted together and written in
    one transaction. The buckets partition the entities by hash, so only a global key
    order lets LMDB append (compact pages, no lookups): with one group, a backfill into an
    empty store is a single append, at about the speed of LMDB itself."""
    name = view_name(view)
    t0 = time.perf_counter()
    result = WriteResult(name)
    db = online.db(name)
    n_buckets = manifest["buckets"]
    job = online.job(name)
    interval = [start_us, end_us]
    done: set[int] = set(job["done"]) if job and job["interval"] == interval else set()
    features = [f["name"] for f in view["features"]]
    group: list[int] = []
    tables: list[pa.Table] = []
    held = 0

    def flush() -> None:
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        tables.clear()
        if len(group) > 1:
            table = table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in view["join_keys"]]))
        online.reserve(int(table.nbytes * 1.2))
        buckets = list(group)

        def commit(txn: Any) -> int:
            written = write_table(txn, db, view, table)
            finished = done | set(buckets)
            if len(finished) == n_buckets:
                online.set_job(txn, name, None)
                old = online.watermark(name, txn)
                # a window starting after the watermark (or before any) leaves a gap unwritten
                if start_us is None or (old is not None and start_us <= old):
                    online.set_watermark(txn, name, end_us if old is None else max(old, end_us))
            else:
                online.set_job(txn, name, {"interval": interval, "done": sorted(finished)})
            return written

        result.rows_written += online.write(commit)
        done.update(buckets)

    progress.start(f"materialize {name}", n_buckets)
    try:
        for b in range(n_buckets):
            if b in done:
                progress.advance(1, info="already done")
                continue
            rows = latest_rows(offline.read_bucket(view, manifest, b, features), view, start_us, end_us)
            result.rows_read += rows.num_rows
            group.append(b)
            tables.append(rows)
            held += rows.nbytes
            if held >= online.write_buffer or b == n_buckets - 1:
                flush()
                group, tables, held = [], [], 0
            progress.advance(1, info=f"{result.rows_read:,} rows read, {result.rows_written:,} written")
        if group:  # the last buckets were already done: write what is left
            flush()
    finally:
        progress.stop()
    result.seconds = time.perf_counter() - t0
    result.watermark = online.watermark(name)
    return result


def bulk_load(online: OnlineStore, root: Path, view: dict[str, Any], source: dict[str, Any],
              files: Sequence[str | Path], progress: Reporter | None = None) -> WriteResult:
    """Write rows from Parquet/CSV files straight into the online store, in one transaction.

    Every file is read and checked against the view's schema first, all of them even after
    a bad one, so that one load names every bad row (BadRows: file, row from 1, column) and
    writes nothing; the write itself is one transaction, so nothing of a failed load is
    visible. Rows with a null join key are skipped and counted in the result.
    """
    progress = progress or Silent()
    name = view_name(view)
    t0 = time.perf_counter()
    problems = RowProblems(f"load into {name}")
    tables = read_files(root, view, source, files, problems, progress)
    result = WriteResult(name, null_key_rows=problems.null_key_rows, null_key_columns=problems.null_key_columns)
    n = sum(t.num_rows for t in tables)
    if not n:
        return result
    # sorted by key as Arrow columns (stable: a key's rows keep their file order), so the
    # encoded batch is in key order and appends to an empty store with no sort of its own
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    del tables
    table = table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in view["join_keys"]]))
    db = online.db(name)
    online.reserve(int(table.nbytes * 1.2))
    progress.start(f"load {name}", n)

    def commit(txn) -> int:
        return write_table(txn, db, view, table, progress)

    try:
        result.rows_written = online.write(commit)
    finally:
        progress.stop()
    result.rows_read = n
    result.seconds = time.perf_counter() - t0
    return result


def gc(online: OnlineStore, view: dict[str, Any], now_us: int, batch: int = 10_000) -> int:
    """Delete rows older than the view's ttl, ``batch`` at a time, in short transactions."""
    ttl = view.get("ttl_us")
    name = view_name(view)
    if not ttl or not online.has_db(name):
        return 0
    db = online.db(name)
    cutoff = now_us - ttl
    deleted = 0
    after: bytes | None = None
    while True:
        expired: list[bytes] = []
        with online.read() as txn:
            cur = txn.cursor(db)
            more = cur.set_range(after) if after is not None else cur.first()
            while more and len(expired) < batch:
                key, value = cur.item()
                if row_times(value)[0] < cutoff:
                    expired.append(key)
                after = key + b"\x00"
                more = cur.next()
        if not expired:
            return deleted

        def commit(txn, expired=expired) -> int:
            n = 0
            for key in expired:  # re-check: a push may have refreshed it meanwhile
                value = txn.get(key, db=db)
                if value is not None and row_times(value)[0] < cutoff:
                    txn.delete(key, db=db)
                    n += 1
            return n

        deleted += online.write(commit)
        if not more:
            return deleted
