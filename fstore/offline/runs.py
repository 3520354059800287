"""Writing the offline store: runs recorded in a view version's manifest and swapped in whole.

``OfflineWriter`` adds to ``OfflineReader`` what every writer shares: numbering a run and
its units (``begin_run``), recording it (``end_run``), appending typed rows as a run of their
own (a push), and replacing a whole history by one run (backfill, a full transformation,
another engine writing the parts itself: ``replace_written``). The manifest is changed in
memory and written atomically once the parts exist, so a crash leaves unreferenced files
(deleted by the next writer, ``_remove_orphans``), never a half-visible run. Ingest from the
sources builds on it in ``fstore.offline.store``; compaction (``fstore.offline.compact``)
and the Spark engine call ``begin_run``/``end_run`` themselves.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..files import file_lock, remove_stale_tmp, write_atomic
from ..repo.names import view_name
from .layout import FORMAT, MANIFEST, UNIT
from .loaders import SourceUnit
from .log import event_range
from .parts import write_parts
from .reading import OfflineReader

#: writes a replacing run: (run id, buckets, list the parts written go to) -> (bucket -> part, rows, event range)
WriteRun = Callable[[str, int, list[Path]], tuple[dict[str, str], int, list[int] | None]]


class OfflineWriter(OfflineReader):
    """Records runs in the manifests of one repository's offline store."""

    def append_rows(self, view: dict[str, Any], table: pa.Table, label: str) -> int:
        """Append typed rows (e.g. pushed to the server) as a new run, so training sees what
        serving saw. ``label`` names the synthetic source unit in the manifest."""
        vdir = self.view_dir(view)
        vdir.mkdir(parents=True, exist_ok=True)
        with file_lock(vdir / ".lock"):
            manifest = self.manifest(view) or self._new_manifest(view)
            replaced: list[Path] = []
            rows = self._write_run(view, manifest, [(SourceUnit(id=label, fingerprint=label), table)], [], replaced)
            write_atomic(vdir / MANIFEST, json.dumps(manifest, indent=1).encode())
            for part in replaced:
                part.unlink(missing_ok=True)
            return rows

    def _new_manifest(self, view: dict[str, Any]) -> dict[str, Any]:
        return {"format": FORMAT, "view": view_name(view), "buckets": self.config.offline_buckets,
                "join_keys": view["join_keys"], "key_dtypes": view["key_dtypes"],
                "units": {}, "runs": [], "next_unit": 0, "next_run": 1, "rows": 0}

    def _write_run(self, view: dict[str, Any], manifest: dict[str, Any], batch: list[tuple[SourceUnit, pa.Table]],
                   written: list[Path], dropped: list[Path]) -> int:
        """Write a run's parts and add the run to ``manifest`` (in memory: the caller swaps the
        file). The parts written are added to ``written``, the parts the run replaces (to
        delete once the manifest is swapped) to ``dropped``."""
        vdir = self.view_dir(view)
        run_id, unit_ids, replaced, affected = self.begin_run(manifest, [u for u, _ in batch])
        tables = [table.set_column(table.schema.get_field_index(UNIT), UNIT,
                                   pa.array(np.full(table.num_rows, unit_ids[unit.id], dtype=np.int32)))
                  for unit, table in batch]
        # a changed unit replaces its rows: keep the other rows of the runs it was in
        for run in affected:
            for part in run["parts"].values():
                old_rows = pq.read_table(vdir / part)
                keep = pc.invert(pc.is_in(old_rows.column(UNIT), pa.array(sorted(replaced), pa.int32())))
                tables.append(old_rows.filter(keep).cast(self.schema(view)))
        table = pa.concat_tables(tables)
        parts = write_parts(vdir, view, manifest["buckets"], table, run_id, written)
        self.end_run(view, manifest, run_id, unit_ids, affected, [(u, t.num_rows) for u, t in batch], parts,
                     table.num_rows, event_range(table), dropped)
        return sum(t.num_rows for _, t in batch)

    def begin_run(self, manifest: dict[str, Any], units: list[SourceUnit]
                  ) -> tuple[str, dict[str, int], set[int], list[dict[str, Any]]]:
        """A new run's id, the number of each of its units (new units get the next ones, in
        ``manifest``), the numbers of the units it replaces, and the runs holding those: the
        run must keep those runs' other rows, after its own (the order an exact tie keeps)."""
        run_id = f"r{manifest['next_run']:06d}"
        unit_ids = {}
        for unit in units:
            old = manifest["units"].get(unit.id)
            uid = old["id"] if old else manifest["next_unit"]
            if not old:
                manifest["next_unit"] += 1
            unit_ids[unit.id] = uid
        replaced = {manifest["units"][u]["id"] for u in unit_ids if u in manifest["units"]}
        affected = [r for r in manifest["runs"] if replaced & set(r["units"])]
        return run_id, unit_ids, replaced, affected

    def end_run(self, view: dict[str, Any], manifest: dict[str, Any], run_id: str, unit_ids: dict[str, int],
                affected: list[dict[str, Any]], unit_rows: list[tuple[SourceUnit, int]], parts: dict[str, str],
                rows: int, events: list[int] | None, dropped: list[Path]) -> None:
        """Record a written run in ``manifest`` (in memory: the caller swaps the file); the
        parts of the runs it replaces are added to ``dropped``, to delete once it is swapped."""
        vdir = self.view_dir(view)
        run_units = sorted({*unit_ids.values(), *(u for r in affected for u in r["units"])})
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        manifest["runs"] = [r for r in manifest["runs"] if r not in affected]
        gone = {r["id"] for r in affected}
        for entry in manifest["units"].values():
            if entry["run"] in gone:
                entry["run"] = run_id
        manifest["runs"].append({"id": run_id, "units": run_units, "parts": parts,
                                 "rows": rows, "at": now, "events": events})
        for unit, n in unit_rows:
            manifest["units"][unit.id] = {"id": unit_ids[unit.id], "fingerprint": unit.fingerprint,
                                          "rows": n, "run": run_id, "at": now}
        manifest["next_run"] += 1
        manifest["rows"] = sum(r["rows"] for r in manifest["runs"])
        dropped.extend(vdir / part for run in affected for part in run["parts"].values())

    def replace_history(self, view: dict[str, Any], table: pa.Table, units: dict[str, dict[str, Any]],
                        extra: dict[str, Any] | None = None) -> None:
        """Replace a view version's whole history by ``table`` (typed, ``__unit`` set), one
        run; ``units``: the manifest's unit entries (without run and time), ``extra``: other
        manifest keys (a full recompute's inputs). Used by backfill."""
        self.replace_history_written(view, self._table_writer(view, table), units, extra)

    def replace_history_written(self, view: dict[str, Any], write: WriteRun, units: dict[str, dict[str, Any]],
                                extra: dict[str, Any] | None = None) -> None:
        """``replace_history`` whose run is written by ``write`` (see ``replace_written``)."""
        vdir = self.view_dir(view)
        vdir.mkdir(parents=True, exist_ok=True)
        with file_lock(vdir / ".lock"):
            manifest = self.manifest(view) or self._new_manifest(view)
            self._remove_orphans(vdir, manifest)
            self.replace_written(view, manifest, write, units, extra or {})

    def replace_locked(self, view: dict[str, Any], old: dict[str, Any], table: pa.Table,
                       units: dict[str, dict[str, Any]], extra: dict[str, Any]) -> None:
        """``replace_history`` under the view's lock (held by the caller): the new manifest is
        swapped in once the parts are written, then the old parts are deleted."""
        self.replace_written(view, old, self._table_writer(view, table), units, extra)

    def _table_writer(self, view: dict[str, Any], table: pa.Table) -> WriteRun:
        vdir = self.view_dir(view)

        def write(run_id: str, n_buckets: int, written: list[Path]) -> tuple[dict[str, str], int, list[int] | None]:
            return write_parts(vdir, view, n_buckets, table, run_id, written), table.num_rows, event_range(table)

        return write

    def replace_written(self, view: dict[str, Any], old: dict[str, Any], write: WriteRun,
                        units: dict[str, dict[str, Any]], extra: dict[str, Any]) -> None:
        """``replace_locked`` whose run is written by ``write(run_id, buckets, written)`` ->
        (bucket -> part, rows, event range): how another engine writes the parts itself."""
        vdir = self.view_dir(view)
        manifest = {**self._new_manifest(view), "next_run": old["next_run"], **extra}
        run_id = f"r{manifest['next_run']:06d}"
        written: list[Path] = []
        try:
            parts, rows, events = write(run_id, manifest["buckets"], written)
        except BaseException:
            for part in written:
                part.unlink(missing_ok=True)
            raise
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        manifest["units"] = {u: {**e, "run": run_id, "at": now} for u, e in units.items()}
        manifest["next_unit"] = max([old["next_unit"], *(e["id"] + 1 for e in units.values())])
        manifest["runs"] = [{"id": run_id, "units": sorted({e["id"] for e in units.values()}), "parts": parts,
                             "rows": rows, "at": now, "events": events}]
        manifest["next_run"] += 1
        manifest["rows"] = rows
        write_atomic(vdir / MANIFEST, json.dumps(manifest, indent=1).encode())
        for run in old["runs"]:
            for part in run["parts"].values():
                if (vdir / part) not in written:
                    (vdir / part).unlink(missing_ok=True)

    def _remove_orphans(self, vdir: Path, manifest: dict[str, Any]) -> None:
        """Delete part files no run references (left by a crashed ingest)."""
        live = {p for run in manifest["runs"] for p in run["parts"].values()}
        for path in vdir.glob("b*/*.parquet"):
            if str(path.relative_to(vdir)) not in live:
                path.unlink()
        for tmp in vdir.glob("b*/.*.tmp"):
            tmp.unlink()
        remove_stale_tmp(vdir / MANIFEST)  # a manifest write killed before its rename

