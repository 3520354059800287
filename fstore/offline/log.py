"""The ingest log: which rows entered a view's offline store, in what order, and when.

Every write to the offline store (an ingest run, or rows pushed with ``offline=True``)
is one *run* of the manifest, numbered from 1 by ``next_run`` and never renumbered:
``r000007`` is run 7. A run records when it was written (``at``), its row count and,
since the ingest log was introduced, the range of its rows' event times
(``events: [min_us, max_us]``). The online writers (fstore.online.materialize) use it
to answer "which rows were ingested since the last materialization", whatever their
event time: a run numbered after what a materialization consumed is new.

A run that rewrote older runs (a changed source file) is a new run holding their
remaining rows as well: those rows count as new again, which costs a re-read, never a
missed row. Runs written before this log recorded ``events`` have their range read from
their parts' Parquet statistics (a footer read per part), so older stores keep working.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .casting import as_int64
from .layout import EVENT_TS


@dataclass(frozen=True)
class LogRun:
    """One run of a view's ingest log, as the online writers need it."""

    seq: int                        # the run's number: later runs have larger ones
    rows: int
    min_us: int | None              # the smallest and largest event time of its rows (None: no rows)
    max_us: int | None
    at: str | None                  # when it was written (ISO 8601, UTC)
    parts: dict[int, Path]          # bucket -> its part file


def run_seq(run: dict[str, Any]) -> int:
    """The number of a manifest run (``r000007`` -> 7)."""
    return int(str(run["id"]).lstrip("r"))


def event_range(table: pa.Table) -> list[int] | None:
    """``[min, max]`` event time (microseconds) of stored rows, None for no rows: what a run records."""
    if not table.num_rows:
        return None
    ts = as_int64(table.column(EVENT_TS))
    return [int(ts.min()), int(ts.max())]


def log_runs(vdir: Path, manifest: dict[str, Any]) -> list[LogRun]:
    """The runs of a manifest in log order, with their event-time ranges."""
    out = []
    for run in sorted(manifest["runs"], key=run_seq):
        parts = {int(b): vdir / p for b, p in run["parts"].items()}
        span = run["events"] if "events" in run else _range_from_parts(list(parts.values()))
        lo, hi = (span[0], span[1]) if span else (None, None)
        out.append(LogRun(run_seq(run), int(run["rows"]), lo, hi, run.get("at"), parts))
    return out


def last_ingest(manifest: dict[str, Any] | None) -> str | None:
    """When the newest run still in the log was written (ISO 8601), None before any."""
    if not manifest:
        return None
    times = [r["at"] for r in manifest["runs"] if r.get("at")]
    return max(times) if times else None


def rows_after(run: LogRun, after_us: int) -> int:
    """How many of the run's rows have an event time after ``after_us`` (reads one column)."""
    if run.max_us is None or run.max_us <= after_us:
        return 0
    if run.min_us is not None and run.min_us > after_us:
        return run.rows
    return sum(int(np.count_nonzero(as_int64(pq.read_table(p, columns=[EVENT_TS]).column(EVENT_TS)) > after_us))
               for p in run.parts.values())


def _range_from_parts(parts: list[Path]) -> list[int] | None:
    """The event-time range of a run written before runs recorded it, from the parts' footers
    (ingest writes statistics for the event time); a part without them is read."""
    lo: int | None = None
    hi: int | None = None
    for path in parts:
        span = _footer_range(path)
        if span is None:
            span = event_range(pq.read_table(path, columns=[EVENT_TS]))
        if span is None:
            continue
        lo = span[0] if lo is None else min(lo, span[0])
        hi = span[1] if hi is None else max(hi, span[1])
    return None if lo is None or hi is None else [lo, hi]


def _footer_range(path: Path) -> list[int] | None:
    meta = pq.read_metadata(path)
    if meta.num_rows == 0:
        return None
    col = meta.schema.to_arrow_schema().get_field_index(EVENT_TS)
    lo: int | None = None
    hi: int | None = None
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max or stats.physical_type != "INT64":
            return None
        lo = stats.min_raw if lo is None else min(lo, stats.min_raw)
        hi = stats.max_raw if hi is None else max(hi, stats.max_raw)
    return None if lo is None or hi is None else [int(lo), int(hi)]
