"""Online writes beside materialization: bulk loads of files straight into the online store,
and the ttl's garbage collection. Both follow the one write rule of fstore.online.materialize
(newer-only for loads; gc re-checks each row in the transaction that deletes it)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from .._ext._online import row_times
from ..errors import InvalidArgument
from ..offline.problems import RowProblems
from ..progress import Reporter, Silent
from ..repo.aggregations import is_aggregation_view
from ..repo.names import view_name
from .codec import write_table
from .files import read_files
from .materialize import WriteResult
from .store import OnlineStore


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
    if is_aggregation_view(view):
        raise InvalidArgument(f"feature view {name} is an aggregation view: `fstore load` writes rows as they are, "
                              "and its online rows are aggregates computed from events; push the events "
                              f"(`fstore push {view['name']} FILE...`) or ingest them and materialize")
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
