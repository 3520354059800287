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

The store is built in three steps, one module each: ``fstore.offline.reading``
(``OfflineReader``: the manifest and the rows), ``fstore.offline.runs`` (``OfflineWriter``:
runs recorded and swapped in, appends, whole-history replacements) and this module
(``OfflineStore``: ingest of the sources, the step another engine overrides).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..files import file_lock, write_atomic
from ..progress import Reporter, Silent
from ..repo.definitions import Source
from ..repo.names import view_name
from ..repo.transforms import FULL, PLAIN, ingest_mode
from .layout import MANIFEST
from .loaders import Loader, SourceUnit, get_loader
from .problems import RowProblems
from .reading import OfflineReader, of_keys
from .rows import read_typed
from .runs import OfflineWriter, WriteRun
from .transform import ingest_full, unit_reader

__all__ = ["IngestResult", "MAX_ROWS_PER_RUN", "OfflineReader", "OfflineStore", "OfflineWriter", "WriteRun",
           "of_keys"]

MAX_ROWS_PER_RUN = 20_000_000  # rows one ingest run writes at most (bounded memory)


@dataclass
class IngestResult:
    """What one ingest of one view did (the CLI and ``FeatureStore.ingest`` report it)."""

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


class OfflineStore(OfflineWriter):
    """Reads and writes the offline history of every view version of one repository,
    and ingests the sources into it."""

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

    def drop(self, view: dict[str, Any]) -> None:
        shutil.rmtree(self.view_dir(view), ignore_errors=True)
