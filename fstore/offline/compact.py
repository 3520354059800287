"""Compaction of pushed runs: a stream of pushes must not leave one part file per push.

Every push appended offline is a run of its own (fstore.offline.store.append_rows), with
one part per bucket it touched, so a reader of a bucket opens one file per push ever made.
Compaction merges runs made only of pushed rows, level by level as an LSM tree does: when
``fanout`` runs of level L exist, they become one run of level L + 1 holding exactly their
rows. A bucket then has at most about ``fanout`` files per level, log_fanout(pushes)
levels, and each pushed row is rewritten once per level (amortized cost O(log pushes)).

A merged run is a new run (the next number) that rewrote older runs, as a changed source
file makes one (fstore.offline.log): its rows count as new again for the ingest log, a
re-read, never a missed row. The rows' order among exact ties (same key, event time and
created time) may change, so only aggregation views compact (their ``last`` breaks such
ties by value, never by order).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..files import file_lock, write_atomic
from .layout import MANIFEST, PUSH_PREFIX
from .log import event_range
from .parts import write_parts
from .store import OfflineStore

#: runs of one level that are merged into one run of the next
PUSH_FANOUT = 8
LEVEL = "level"        # a merged run's key in the manifest: how many merges its rows went through


def _pushed_only(manifest: dict[str, Any]) -> set[int]:
    """The unit numbers of pushed rows."""
    return {u["id"] for label, u in manifest["units"].items() if label.startswith(PUSH_PREFIX)}


def compact_pushes(store: OfflineStore, view: dict[str, Any], fanout: int = PUSH_FANOUT) -> int:
    """Merge the view's pushed runs level by level (module doc); returns the runs merged."""
    vdir = store.view_dir(view)
    merged = 0
    with file_lock(vdir / ".lock"):
        manifest = store.manifest(view)
        if manifest is None:
            return 0
        pushed = _pushed_only(manifest)
        dropped: list[Path] = []
        level = 0
        while True:
            group = [r for r in manifest["runs"] if r.get(LEVEL, 0) == level and r["units"]
                     and set(r["units"]) <= pushed]
            if len(group) < fanout:
                if level > max((r.get(LEVEL, 0) for r in manifest["runs"]), default=0):
                    break
                level += 1
                continue
            _merge(store, view, manifest, group, level + 1, dropped)
            merged += len(group)
        if not merged:
            return 0
        write_atomic(vdir / MANIFEST, json.dumps(manifest, indent=1).encode())
        for part in dropped:  # only now unreferenced
            part.unlink(missing_ok=True)
    return merged


def _merge(store: OfflineStore, view: dict[str, Any], manifest: dict[str, Any], group: list[dict[str, Any]],
           level: int, dropped: list[Path]) -> None:
    """One new run of ``level`` with every row of ``group`` (in ``manifest``, in memory)."""
    vdir = store.view_dir(view)
    schema = store.schema(view)
    table = pa.concat_tables([pq.read_table(vdir / p).cast(schema) for r in group for p in r["parts"].values()])
    run_id = f"r{manifest['next_run']:06d}"
    written: list[Path] = []
    try:
        parts = write_parts(vdir, view, manifest["buckets"], table, run_id, written)
    except BaseException:
        for part in written:
            part.unlink(missing_ok=True)
        raise
    store.end_run(view, manifest, run_id, {}, group, [], parts, table.num_rows, event_range(table), dropped)
    manifest["runs"][-1][LEVEL] = level
