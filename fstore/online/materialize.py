"""Filling the online store: materialization from the offline store (bulk loads and gc:
fstore.online.bulk).

Every write follows one rule: a row replaces the stored row of its entity only when
its (event time, created time) is strictly newer. So a rerun, an overlapping
backfill, or an older backfill after a newer one never overwrites newer data, and
a job killed midway can simply be run again.

Materialization works through the offline store one bucket at a time (bounded
memory), writing each bucket in one transaction together with the job's progress,
so a resumed job skips the buckets already committed. What a view's runs consumed of
its ingest log (fstore.online.consumed: which runs, up to which event time) advances
only in the transaction that commits its last bucket, and a window claims only what
joins what it already had: it never claims more than was written, not even a gap
before a window. Incremental runs read by that record, so a row ingested late is
written whatever its event time, and a run with nothing new opens no part.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import FutureEnd, OfflineStoreError
from ..offline.engine import OfflineEngine
from ..progress import Reporter, Silent
from ..offline.tiles import events_view
from ..repo.aggregations import is_aggregation_view
from ..repo.names import view_name
from ..times import format_duration, from_us, now_us
from .aggregates import aggregate_rows
from .codec import write_table
from .consumed import Consumed, Plan, after_incremental, after_window, incremental_plan, window_plan
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


def check_end(end: Any, end_us: int, skew_us: int, now: int | None = None) -> None:
    """Refuse an END later than now plus the clock-skew allowance (a typo like 2099 for 2026):
    rows dated after now would hide older ones online until then, and END would claim them."""
    now = now_us() if now is None else now
    if end_us > now + skew_us:
        given = f"{end!r} ({from_us(end_us).isoformat()})" if isinstance(end, str) else from_us(end_us).isoformat()
        raise FutureEnd(f"END {given} is later than now ({from_us(now).isoformat()}) plus the clock-skew "
                        f"allowance of {format_duration(skew_us) if skew_us else '0s'} (materialize.clock_skew "
                        "in fstore.yaml); if you mean it, pass --allow-future (allow_future=True)", field="end")


def materialize(engine: OfflineEngine, online: OnlineStore, views: Sequence[dict[str, Any]],
                start_us: int | None, end_us: int, *, incremental: bool = False,
                progress: Reporter | None = None) -> list[WriteResult]:
    """Write the newest row per entity with event time in [start, end] of each view.

    With ``incremental``, ``start_us`` is ignored: each view reads every row ingested since
    what its materializations consumed (fstore.online.consumed), whatever its event time,
    up to ``end``; all history the first time.
    """
    progress = progress or Silent()
    results = []
    for view in views:
        name = view_name(view)
        stored = events_view(view) if is_aggregation_view(view) else view
        manifest = engine.store.manifest(stored)
        if manifest is None:
            raise OfflineStoreError(f"feature view {name} has no offline data: run `fstore ingest {view['name']}`")
        runs = engine.store.log(stored, manifest)
        consumed = Consumed.from_doc(online.consumed(name))
        if is_aggregation_view(view):  # entities as of END (docs/transformations.md, Online)
            start = None if incremental else start_us
            after = after_incremental(consumed, runs, end_us) if incremental else \
                after_window(consumed, runs, start, end_us)
            job = _Job([start, end_us], end_us, window_plan(runs, start, end_us), after)
            results.append(_materialize_aggregates(engine, online, view, job, progress))
            continue
        if incremental:
            plan = incremental_plan(consumed, runs, end_us)
            job = _Job([consumed.watermark, end_us], end_us, plan, after_incremental(consumed, runs, end_us))
        else:
            plan = window_plan(runs, start_us, end_us)
            job = _Job([start_us, end_us], end_us, plan, after_window(consumed, runs, start_us, end_us))
        results.append(_materialize_view(engine, online, view, job, progress))
    return results


@dataclass
class _Job:
    """One view's materialization: the rows to read and the state to record once written."""

    interval: list[int | None]   # [start, END] as the job record shows it (incremental: the watermark)
    end_us: int
    plan: Plan
    after: Consumed

    @property
    def key(self) -> str:
        """Identifies the exact reads, so that only the same job resumes a killed one."""
        spec = [self.interval, [[run.seq, lo] for run, lo in self.plan]]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]

    @property
    def buckets(self) -> list[int]:
        return sorted({b for run, _ in self.plan for b in run.parts})


def _materialize_view(engine: OfflineEngine, online: OnlineStore, view: dict[str, Any], job: _Job,
                      progress: Reporter) -> WriteResult:
    """Buckets are reduced to their newest rows by the engine; the rows of as many
    buckets as fit in ``online.write_buffer`` bytes are then sorted together and written in
    one transaction. The buckets partition the entities by hash, so only a global key
    order lets LMDB append (compact pages, no lookups): with one group, a backfill into an
    empty store is a single append, at about the speed of LMDB itself."""
    name = view_name(view)
    t0 = time.perf_counter()
    result = WriteResult(name)
    db = online.db(name)
    todo = job.buckets
    key = job.key
    done = _resumed(online, name, job)
    group: list[int] = []
    tables: list[pa.Table] = []
    held = 0

    finished: list[bool] = []

    def finish(txn: Any) -> None:
        finished.append(True)
        _finish(online, name, job, txn)

    def flush() -> None:
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        tables.clear()
        if len(group) > 1:
            table = table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in view["join_keys"]]))
        online.reserve(int(table.nbytes * 1.2))
        buckets = list(group)

        def commit(txn: Any) -> int:
            written = write_table(txn, db, view, table)
            covered = done | set(buckets)
            if covered.issuperset(todo):
                finish(txn)
            else:
                online.set_job(txn, name, {"interval": job.interval, "log": key, "done": sorted(covered)})
            return written

        result.rows_written += online.write(commit)
        done.update(buckets)

    progress.start(f"materialize {name}", len(todo))
    try:
        left = [b for b in todo if b not in done]
        for _ in range(len(todo) - len(left)):
            progress.advance(1, info="already done")
        # the engine reduces each bucket to its newest rows (fstore.offline.newest's rule)
        for i, (b, rows) in enumerate(engine.newest(view, job.plan, job.end_us, left)):
            result.rows_read += rows.num_rows
            group.append(b)
            tables.append(rows)
            held += rows.nbytes
            if held >= online.write_buffer or i == len(left) - 1:
                flush()
                group, tables, held = [], [], 0
            progress.advance(1, info=f"{result.rows_read:,} rows read, {result.rows_written:,} written")
        if group:  # the last buckets were already done: write what is left
            flush()
        if not finished:  # nothing (left) to read: the log is consumed all the same
            online.write(finish)
    finally:
        progress.stop()
    result.seconds = time.perf_counter() - t0
    result.watermark = online.watermark(name)
    return result


def _resumed(online: OnlineStore, name: str, job: _Job) -> set[int]:
    """The buckets a killed run of this same job committed (none for another job)."""
    stored = online.job(name)
    return set(stored["done"]) if stored and stored["interval"] == job.interval \
        and stored.get("log") == job.key else set()


def _finish(online: OnlineStore, name: str, job: _Job, txn: Any) -> None:
    """In the last write's transaction: the job is over and the log is consumed."""
    online.set_job(txn, name, None)
    after = job.after
    after.at = now_us()
    online.set_consumed(txn, name, after.to_doc(), after.watermark)


def _materialize_aggregates(engine: OfflineEngine, online: OnlineStore, view: dict[str, Any], job: _Job,
                            progress: Reporter) -> WriteResult:
    """An aggregation view's entities computed as of END (fstore.online.aggregates), bucket
    by bucket, each bucket written in a transaction of its own with the job's progress: a
    killed run resumes after the last committed bucket when run again with the same
    interval, and the last bucket's transaction records what was consumed, as for a plain
    view. START (``job.interval[0]``) selects the entities whose newest event at or before
    END is at or after START; their aggregates still count every event in the window."""
    name = view_name(view)
    t0 = time.perf_counter()
    result = WriteResult(name)
    db = online.db(name)
    done = _resumed(online, name, job)
    todo = job.buckets
    written_any = False
    progress.start(f"materialize {name}", len(todo))
    try:
        for b in todo:
            if b in done:
                progress.advance(1, info="already done")
                continue
            table = aggregate_rows(engine.store, view, job.end_us, buckets=[b], start_us=job.interval[0])
            result.rows_read += table.num_rows
            online.reserve(int(table.nbytes * 1.2) + (1 << 20))

            def commit(txn: Any, table: pa.Table = table, b: int = b) -> int:
                written = write_table(txn, db, view, table)
                if done | {b} >= set(todo):
                    _finish(online, name, job, txn)
                else:
                    online.set_job(txn, name, {"interval": job.interval, "log": job.key, "done": sorted(done | {b})})
                return written

            result.rows_written += online.write(commit)
            done.add(b)
            written_any = True
            progress.advance(1, info=f"{result.rows_read:,} entities, {result.rows_written:,} written")
        if not written_any:  # nothing (left) to compute: the log is consumed all the same
            online.write(lambda txn: _finish(online, name, job, txn))
    finally:
        progress.stop()
    result.seconds = time.perf_counter() - t0
    result.watermark = online.watermark(name)
    return result
