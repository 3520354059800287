"""``fstore backfill VIEW START END``: a window of history recomputed by the current
transformation, written as the offline data of a new view version.

The old version's data is never touched, so the datasets and models built from it keep
their lineage (fstore.offline.lineage). The new version's history is the old version's
rows with event time outside [START, END), copied, and the current transformation's
output with event time inside it (docs/transformations.md, "Backfill").

Unit bookkeeping follows the ingest mode, so that the next ``fstore ingest`` of the new
version reads only what is new:
- full (not row-wise): the window is cut from a recompute over every source file; the
  new version records those files as its inputs (the next change recomputes everything
  with the current transformation, as any full ingest does); pushed rows are copied whole.
- incremental (row-wise): each source file the old version ingested unchanged keeps its
  unit: its rows outside the window are copied, inside recomputed. A file the old version
  lacks (or holds an older copy of) is recomputed whole, as an ingest would; rows whose
  file is gone (or that were pushed) are copied whole, there being nothing to recompute.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..progress import Reporter, Silent
from ..repo.definitions import Source
from ..repo.names import view_name
from ..repo.transforms import FULL, ingest_mode
from .casting import as_int64
from .layout import EVENT_TS, UNIT, offline_schema
from .loaders import get_loader
from .problems import RowProblems
from .store import OfflineStore
from .transform import (FULL_UNIT, INPUTS, full_unit_id, inputs_fingerprint, inputs_of, pushed_units, read_all,
                        unit_reader, with_unit)


@dataclass
class BackfillResult:
    view: str            # the new version's versioned name
    from_view: str       # the version whose rows outside the window were copied
    mode: str            # full or incremental
    rows_copied: int
    rows_recomputed: int
    files_read: int


def _in_window(table: pa.Table, start_us: int, end_us: int) -> np.ndarray:
    ts = as_int64(table.column(EVENT_TS))
    return (ts >= start_us) & (ts < end_us)


def _with_units(store: OfflineStore, view: dict[str, Any]) -> pa.Table:
    """Every stored row with its ``__unit`` (read_part leaves it out)."""
    manifest = store.manifest(view)
    schema = offline_schema(view)
    if manifest is None:
        return schema.empty_table()
    tables = [pq.read_table(path).select(schema.names).cast(schema)
              for run in store.log(view, manifest) for path in run.parts.values()]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def backfill(store: OfflineStore, old: dict[str, Any], new: dict[str, Any], source: dict[str, Any],
             start_us: int, end_us: int, progress: Reporter | None = None) -> BackfillResult:
    """Write ``new``'s offline history (module docstring); the caller registers ``new``."""
    progress = progress or Silent()
    loader = get_loader(Source(**source), store.config.root, store.config.store_paths)
    units = loader.units()
    mode, _ = ingest_mode(new)
    problems = RowProblems(f"backfill of {view_name(new)}")
    old_rows = _with_units(store, old)
    inside = _in_window(old_rows, start_us, end_us)
    progress.start(f"backfill {view_name(new)}", len(units))
    try:
        if mode == FULL:
            # pushed rows are in no source file: copied whole, with their units, as row-wise keeps them
            old_manifest = store.manifest(old) or {"units": {}, "next_unit": 0}
            pushed = pushed_units(old_manifest)
            fid = full_unit_id(old_manifest, pushed)
            is_pushed = np.isin(old_rows.column(UNIT).to_numpy(zero_copy_only=False), [e["id"] for e in pushed.values()])
            kept = pa.concat_tables([with_unit(old_rows.filter(pa.array(~inside & ~is_pushed)), fid),
                                     old_rows.filter(pa.array(is_pushed))])
            fresh = read_all(new, source, loader, units, store.config.root, problems)
            problems.check()
            assert fresh is not None
            fresh = with_unit(fresh.filter(pa.array(_in_window(fresh, start_us, end_us))), fid)
            progress.advance(len(units))
            table = pa.concat_tables([kept, fresh])
            inputs = inputs_of(new, units)
            entries = {FULL_UNIT: {"id": fid, "fingerprint": inputs_fingerprint(inputs),
                                   "rows": table.num_rows - int(is_pushed.sum())}, **pushed}
            store.replace_history(new, table, entries, {INPUTS: inputs})
            return BackfillResult(view_name(new), view_name(old), mode, kept.num_rows, fresh.num_rows, len(units))
        old_units = (store.manifest(old) or {}).get("units", {})
        read = unit_reader(new, source, loader, store.config.root)
        current = {u.id: u for u in units}
        same = {uid for uid, e in old_units.items() if uid in current and current[uid].fingerprint == e["fingerprint"]}
        whole = {e["id"] for uid, e in old_units.items() if uid not in current}  # nothing to recompute them from
        unit_col = old_rows.column(UNIT).to_numpy(zero_copy_only=False)
        keep = ~inside | np.isin(unit_col, list(whole))
        keep &= np.isin(unit_col, [old_units[u]["id"] for u in same] + list(whole))
        tables = [old_rows.filter(pa.array(keep))]
        copied = tables[0].num_rows
        entries = {uid: dict(e) for uid, e in old_units.items() if uid in same or uid not in current}
        next_id = (store.manifest(old) or {}).get("next_unit", 0)
        recomputed = 0
        for seq, unit in enumerate(units):
            out = read(unit, problems, seq)
            progress.advance(1)
            if out is None:
                continue
            if unit.id in same:
                out = out.filter(pa.array(_in_window(out, start_us, end_us)))
                uid = old_units[unit.id]["id"]
            else:
                uid = old_units[unit.id]["id"] if unit.id in old_units else next_id
                next_id += unit.id not in old_units
                entries[unit.id] = {"id": uid, "fingerprint": unit.fingerprint, "rows": 0}
            tables.append(with_unit(out, uid))
            recomputed += out.num_rows
        problems.check()
        table = pa.concat_tables(tables)
        counts = pc.value_counts(table.column(UNIT)).to_pylist()
        by_id = {c["values"]: c["counts"] for c in counts}
        for e in entries.values():
            e["rows"] = by_id.get(e["id"], 0)
        store.replace_history(new, table, entries)
        return BackfillResult(view_name(new), view_name(old), mode, copied, recomputed, len(units))
    finally:
        progress.stop()
