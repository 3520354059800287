"""The offline store: each view version's history as Parquet, laid out for as-of joins.

Layout of one view version (``<offline>/<view>_v<N>/``)::

    _manifest.json              the only thing readers trust: runs (the ingest log,
                                fstore.offline.log), parts, units
    b0003/r000007.parquet       rows of bucket 3 written by ingest run 7

Rows are assigned to a bucket by a stable hash of their join key (fstore._ext.
_asof.hash_keys), so one entity's whole history is in one bucket and a join can
work through the store bucket by bucket in bounded memory. Inside a part, rows are
sorted by (keys, event time, created time): the kernel needs no sort when a bucket
has a single part. Every ingest run adds new part files and then swaps the
manifest atomically; a crash leaves unreferenced files that the next run deletes,
never a half-visible run.

The stored columns and their order are in fstore.offline.layout.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import RepoConfig
from ..errors import OfflineStoreError
from ..files import file_lock, read_document, remove_stale_tmp, write_atomic
from ..progress import Reporter, Silent
from ..repo.definitions import Source
from ..repo.names import view_name
from .layout import CREATED_TS, EVENT_TS, FORMAT, MANIFEST, UNIT, offline_schema, sort_table
from .loaders import Loader, SourceUnit, get_loader
from .log import LogRun, event_range, log_runs
from .parts import write_parts
from .problems import RowProblems
from .rows import read_typed
from .transform import ingest_full, unit_reader
from ..repo.transforms import FULL, PLAIN, ingest_mode

#: writes a replacing run: (run id, buckets, list the parts written go to) -> (bucket -> part, rows, event range)
WriteRun = Callable[[str, int, list[Path]], tuple[dict[str, str], int, list[int] | None]]
MAX_ROWS_PER_RUN = 20_000_000  # rows one ingest run writes at most (bounded memory)


@dataclass
class IngestResult:
    view: str
    units_read: int
    units_skipped: int
    rows: int
    replaced_units: int
    null_key_rows: int = 0          # rows skipped: a null join key can never be joined
    null_key_columns: list[str] = field(default_factory=list)
    mode: str = PLAIN               # plain, incremental or full (fstore.repo.transforms.ingest_mode)
    why: str = ""

    @property
    def up_to_date(self) -> bool:
        return self.units_read == 0


def of_keys(table: pa.Table, keys: pa.Table | None, join_keys: list[str]) -> pa.Table:
    """The rows of ``table`` whose every key column is among ``keys``' values of it (with a
    composite key, a superset of the rows of those exact keys: readers match keys exactly);
    ``table`` itself when ``keys`` is None. Keeps the rows' order."""
    if keys is None:
        return table
    mask = None
    for k in join_keys:
        m = pc.is_in(table.column(k), value_set=keys.column(k).combine_chunks())
        mask = m if mask is None else pc.and_(mask, m)
    return table.filter(mask)


class OfflineStore:
    """Reads and writes the offline history of every view version of one repository."""

    def __init__(self, config: RepoConfig) -> None:
        self.config = config
        self.root = config.offline_path

    def view_dir(self, view: dict[str, Any]) -> Path:
        return self.root / view_name(view)

    def manifest(self, view: dict[str, Any]) -> dict[str, Any] | None:
        path = self.view_dir(view) / MANIFEST
        return read_document(path, FORMAT, name=self.config.rel(path), what="offline", error=OfflineStoreError)

    # ---- reading -------------------------------------------------------------------

    def parts(self, view: dict[str, Any], manifest: dict[str, Any], bucket: int) -> list[Path]:
        d = self.view_dir(view)
        return [d / run["parts"][str(bucket)] for run in manifest["runs"] if str(bucket) in run["parts"]]

    def read_bucket(self, view: dict[str, Any], manifest: dict[str, Any], bucket: int,
                    columns: list[str], keys: pa.Table | None = None) -> pa.Table:
        """One bucket's rows, sorted by (keys, event time, created time), with ``columns``;
        with ``keys``, only (at least) the rows of those keys (``of_keys``)."""
        wanted = list(dict.fromkeys([*view["join_keys"], EVENT_TS, CREATED_TS, *columns]))
        tables = [of_keys(pq.read_table(p, columns=wanted), keys, view["join_keys"])
                  for p in self.parts(view, manifest, bucket)]
        if not tables:
            return self.empty_table(view, wanted)
        if len(tables) == 1:
            return tables[0]
        table = pa.concat_tables(tables)
        return sort_table(table, view)

    def log(self, view: dict[str, Any], manifest: dict[str, Any]) -> list[LogRun]:
        """The view's ingest log: its runs in the order they were written (fstore.offline.log)."""
        return log_runs(self.view_dir(view), manifest)

    def read_part(self, view: dict[str, Any], path: Path, columns: list[str]) -> pa.Table:
        """One part file's rows (sorted as stored), with the keys, the times and ``columns``."""
        return pq.read_table(path, columns=list(dict.fromkeys([*view["join_keys"], EVENT_TS, CREATED_TS, *columns])))

    def empty_table(self, view: dict[str, Any], columns: list[str]) -> pa.Table:
        schema = self.schema(view)
        return schema.empty_table().select(columns)

    def schema(self, view: dict[str, Any]) -> pa.Schema:
        return offline_schema(view)

    def fingerprint(self, view: dict[str, Any]) -> str | None:
        """Identifies the exact offline data of a view (for dataset lineage)."""
        m = self.manifest(view)
        if m is None:
            return None
        parts = sorted(p for run in m["runs"] for p in run["parts"].values())
        units = sorted((u, v["fingerprint"]) for u, v in m["units"].items())
        return hashlib.sha256(json.dumps([parts, units]).encode()).hexdigest()[:32]

    # ---- writing -------------------------------------------------------------------

    def ingest(self, view: dict[str, Any], source: dict[str, Any],
               progress: Reporter | None = None) -> IngestResult:
        """Load new and changed source units into the view's history; idempotent.

        All or nothing: every unit is read and typed, and the manifest is swapped once at
        the end. A unit with bad rows does not stop the reading (so one run reports every
        bad row, BadRows), but it stops the writing, and the parts already written for the
        run are deleted unreferenced. Rows with a null join key are skipped and counted.
        """
        progress = progress or Silent()
        vdir = self.view_dir(view)
        vdir.mkdir(parents=True, exist_ok=True)
        with file_lock(vdir / ".lock"):
            manifest = self.manifest(view) or self._new_manifest(view)
            self._remove_orphans(vdir, manifest)
            loader = get_loader(Source(**source), self.config.root, self.config.store_paths)
            units = loader.units()
            mode, why = ingest_mode(view)
            if mode == FULL:
                problems = RowProblems(f"ingest of {view_name(view)}")
                read, rows = self._ingest_full(view, source, manifest, loader, units, problems)
                return IngestResult(view_name(view), read, len(units) - read, rows, 0, problems.null_key_rows,
                                    problems.null_key_columns, mode, why)
            todo = [u for u in units if manifest["units"].get(u.id, {}).get("fingerprint") != u.fingerprint]
            changed = [u for u in todo if u.id in manifest["units"]]
            result = IngestResult(view_name(view), len(todo), len(units) - len(todo), 0, len(changed), mode=mode, why=why)
            if not todo:
                return result
            problems = RowProblems(f"ingest of {view_name(view)}")
            written: list[Path] = []   # parts of this run, deleted if it fails
            replaced: list[Path] = []  # parts the new manifest no longer references
            progress.start(f"ingest {view_name(view)}", len(todo))
            try:
                result.rows += self._load(view, source, loader, todo, manifest, problems, written, replaced, progress)
            except BaseException:
                for part in written:  # never referenced: the old manifest is still in force
                    part.unlink(missing_ok=True)
                raise
            finally:
                progress.stop()
            # a swap that fails leaves the parts unreferenced, for the next ingest to delete (it
            # may fail after its rename, so they are never deleted here)
            write_atomic(vdir / MANIFEST, json.dumps(manifest, indent=1).encode())
            for part in replaced:  # only now unreferenced
                part.unlink(missing_ok=True)
            result.null_key_rows, result.null_key_columns = problems.null_key_rows, problems.null_key_columns
            return result

    def _load(self, view: dict[str, Any], source: dict[str, Any], loader: Loader, todo: list[SourceUnit],
              manifest: dict[str, Any], problems: RowProblems, written: list[Path], replaced: list[Path],
              progress: Reporter) -> int:
        """Read, type and write the units of ``todo`` as runs (added to ``manifest`` in memory);
        the rows written. Bad rows are recorded in ``problems`` and raised (BadRows) once all
        units are read. Another engine replaces this step (fstore.offline.spark.ingest). A view
        with a row-wise transformation reads each unit through it (fstore.offline.transform)."""
        reader = unit_reader(view, source, loader, self.config.root) if view.get("transform") else \
            (lambda u, p, s: read_typed(view, source, loader, u, p, s))
        total = 0
        batch: list[tuple[SourceUnit, pa.Table]] = []
        rows = 0
        for seq, unit in enumerate(todo):
            table = reader(unit, problems, seq)
            progress.advance(1, info=f"{rows:,} rows")
            if table is None or problems:  # bad rows: read on to find them all, write no more
                batch = []
                continue
            batch.append((unit, table))
            rows += table.num_rows
            if rows >= MAX_ROWS_PER_RUN:
                total += self._write_run(view, manifest, batch, written, replaced)
                batch, rows = [], 0
        problems.check()
        if batch:
            total += self._write_run(view, manifest, batch, written, replaced)
        return total

    def _ingest_full(self, view: dict[str, Any], source: dict[str, Any], manifest: dict[str, Any], loader: Loader,
                     units: list[SourceUnit], problems: RowProblems) -> tuple[int, int]:
        """A full (not row-wise) transformation's ingest: (files read, rows); another engine
        replaces this step too (fstore.offline.spark.ingest)."""
        return ingest_full(self, view, source, manifest, loader, units, problems)

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

    def drop(self, view: dict[str, Any]) -> None:
        shutil.rmtree(self.view_dir(view), ignore_errors=True)
