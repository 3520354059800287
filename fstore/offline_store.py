"""The offline store: each view version's history as Parquet, laid out for as-of joins.

Layout of one view version (``<offline>/<view>_v<N>/``)::

    _manifest.json              the only thing readers trust: runs, parts, units
    b0003/r000007.parquet       rows of bucket 3 written by ingest run 7

Rows are assigned to a bucket by a stable hash of their join key (fstore._ext.
_asof.hash_keys), so one entity's whole history is in one bucket and a join can
work through the store bucket by bucket in bounded memory. Inside a part, rows are
sorted by (keys, event time, created time): the kernel needs no sort when a bucket
has a single part. Every ingest run adds new part files and then swaps the
manifest atomically; a crash leaves unreferenced files that the next run deletes,
never a half-visible run.

Stored columns: the join keys (int64 or string), ``__event_ts`` and
``__created_ts`` (UTC microseconds), ``__unit`` (which source file a row came
from, so a changed file can be replaced) and the features, typed as declared.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._ext._asof import bucket_of, hash_keys
from .casting import TS_TYPE, CastFailure, to_dtype, to_timestamp
from .config import RepoConfig
from .definitions import DTYPES, Source
from .errors import IngestError, OfflineStoreError
from .loaders import Loader, SourceUnit, get_loader
from .progress import Reporter, Silent
from .registry import file_lock, remove_stale_tmp, write_atomic

FORMAT = 1
EVENT_TS = "__event_ts"
CREATED_TS = "__created_ts"
UNIT = "__unit"
MANIFEST = "_manifest.json"
KEY_TYPES = {"int64": pa.int64(), "string": pa.string()}
MAX_ROWS_PER_RUN = 20_000_000


@dataclass
class IngestResult:
    view: str
    units_read: int
    units_skipped: int
    rows: int
    replaced_units: int

    @property
    def up_to_date(self) -> bool:
        return self.units_read == 0


def view_name(view: dict[str, Any]) -> str:
    return f"{view['name']}_v{view['version']}"


def sort_keys(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, "ascending") for k in view["join_keys"]] + [(EVENT_TS, "ascending"), (CREATED_TS, "ascending")]


def sort_indices(table: pa.Table, view: dict[str, Any]) -> pa.Array:
    """Row order by (keys, event time, created time), nulls first (a null created time is oldest)."""
    keys = sort_keys(view)
    try:
        return pc.sort_indices(table, sort_keys=[(k, o, "at_start") for k, o in keys])
    except (TypeError, ValueError, pa.ArrowInvalid):  # pyarrow < 25 takes one null placement
        return pc.sort_indices(table, sort_keys=keys, null_placement="at_start")


def sort_table(table: pa.Table, view: dict[str, Any]) -> pa.Table:
    return table.take(sort_indices(table, view))


def offline_schema(view: dict[str, Any]) -> pa.Schema:
    """The columns of a view's parts: keys, times, source unit, features."""
    fields = [pa.field(k, KEY_TYPES[view["key_dtypes"][k]]) for k in view["join_keys"]]
    fields += [pa.field(EVENT_TS, TS_TYPE), pa.field(CREATED_TS, TS_TYPE), pa.field(UNIT, pa.int32())]
    fields += [pa.field(f["name"], DTYPES[f["dtype"]]) for f in view["features"]]
    return pa.schema(fields)


def bucket_ids(table: pa.Table, key_columns: list[str], n_buckets: int) -> np.ndarray:
    """The bucket of every row; the same function places entity rows at join time."""
    cols = [table.column(k).combine_chunks() for k in key_columns]
    return bucket_of(hash_keys(cols), n_buckets)


class OfflineStore:
    """Reads and writes the offline history of every view version of one repository."""

    def __init__(self, config: RepoConfig) -> None:
        self.config = config
        self.root = config.offline_path

    def view_dir(self, view: dict[str, Any]) -> Path:
        return self.root / view_name(view)

    def manifest(self, view: dict[str, Any]) -> dict[str, Any] | None:
        path = self.view_dir(view) / MANIFEST
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise OfflineStoreError(f"{self.config.rel(path)} is corrupt: {exc}") from None
        if doc.get("format") != FORMAT:
            raise OfflineStoreError(f"{self.config.rel(path)} has offline format {doc.get('format')!r}; "
                                    f"this fstore reads format {FORMAT}")
        return doc

    # ---- reading -------------------------------------------------------------------

    def parts(self, view: dict[str, Any], manifest: dict[str, Any], bucket: int) -> list[Path]:
        d = self.view_dir(view)
        return [d / run["parts"][str(bucket)] for run in manifest["runs"] if str(bucket) in run["parts"]]

    def read_bucket(self, view: dict[str, Any], manifest: dict[str, Any], bucket: int,
                    columns: list[str]) -> pa.Table:
        """One bucket's rows, sorted by (keys, event time, created time), with ``columns``."""
        wanted = list(dict.fromkeys([*view["join_keys"], EVENT_TS, CREATED_TS, *columns]))
        tables = [pq.read_table(p, columns=wanted) for p in self.parts(view, manifest, bucket)]
        if not tables:
            return self.empty_table(view, wanted)
        if len(tables) == 1:
            return tables[0]
        table = pa.concat_tables(tables)
        return sort_table(table, view)

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
        """Load new and changed source units into the view's history; idempotent."""
        progress = progress or Silent()
        vdir = self.view_dir(view)
        vdir.mkdir(parents=True, exist_ok=True)
        with file_lock(vdir / ".lock"):
            manifest = self.manifest(view) or self._new_manifest(view)
            self._remove_orphans(vdir, manifest)
            loader = get_loader(Source(**source), self.config.root)
            units = loader.units()
            todo = [u for u in units if manifest["units"].get(u.id, {}).get("fingerprint") != u.fingerprint]
            changed = [u for u in todo if u.id in manifest["units"]]
            result = IngestResult(view_name(view), len(todo), len(units) - len(todo), 0, len(changed))
            if not todo:
                return result
            progress.start(f"ingest {view_name(view)}", len(todo))
            try:
                batch: list[tuple[SourceUnit, pa.Table]] = []
                rows = 0
                for unit in todo:
                    table = read_typed(view, source, loader, unit)
                    batch.append((unit, table))
                    rows += table.num_rows
                    progress.advance(1, info=f"{rows:,} rows")
                    if rows >= MAX_ROWS_PER_RUN:
                        result.rows += self._write_run(view, manifest, batch)
                        batch, rows = [], 0
                if batch:
                    result.rows += self._write_run(view, manifest, batch)
            finally:
                progress.stop()
            return result

    def append_rows(self, view: dict[str, Any], table: pa.Table, label: str) -> int:
        """Append typed rows (e.g. pushed to the server) as a new run, so training sees what
        serving saw. ``label`` names the synthetic source unit in the manifest."""
        vdir = self.view_dir(view)
        vdir.mkdir(parents=True, exist_ok=True)
        with file_lock(vdir / ".lock"):
            manifest = self.manifest(view) or self._new_manifest(view)
            return self._write_run(view, manifest, [(SourceUnit(id=label, fingerprint=label), table)])

    def _new_manifest(self, view: dict[str, Any]) -> dict[str, Any]:
        return {"format": FORMAT, "view": view_name(view), "buckets": self.config.offline_buckets,
                "join_keys": view["join_keys"], "key_dtypes": view["key_dtypes"],
                "units": {}, "runs": [], "next_unit": 0, "next_run": 1, "rows": 0}

    def _write_run(self, view: dict[str, Any], manifest: dict[str, Any],
                   batch: list[tuple[SourceUnit, pa.Table]]) -> int:
        vdir = self.view_dir(view)
        run_id = f"r{manifest['next_run']:06d}"
        tables, unit_ids = [], {}
        for unit, table in batch:
            old = manifest["units"].get(unit.id)
            uid = old["id"] if old else manifest["next_unit"]
            if not old:
                manifest["next_unit"] += 1
            unit_ids[unit.id] = uid
            tables.append(table.set_column(table.schema.get_field_index(UNIT), UNIT,
                                           pa.array(np.full(table.num_rows, uid, dtype=np.int32))))
        # a changed unit replaces its rows: keep the other rows of the runs it was in
        replaced = {manifest["units"][u]["id"] for u in unit_ids if u in manifest["units"]}
        affected = [r for r in manifest["runs"] if replaced & set(r["units"])]
        for run in affected:
            for part in run["parts"].values():
                old_rows = pq.read_table(vdir / part)
                keep = pc.invert(pc.is_in(old_rows.column(UNIT), pa.array(sorted(replaced), pa.int32())))
                tables.append(old_rows.filter(keep).cast(self.schema(view)))
        table = pa.concat_tables(tables)
        n_buckets = manifest["buckets"]
        buckets = bucket_ids(table, view["join_keys"], n_buckets).astype(np.int16)  # int16: radix sort
        order = np.argsort(buckets, kind="stable")
        bounds = np.searchsorted(buckets[order], np.arange(n_buckets + 1))
        narrow = table.select([*view["join_keys"], EVENT_TS, CREATED_TS])
        parts: dict[str, str] = {}
        for b in range(n_buckets):
            lo, hi = int(bounds[b]), int(bounds[b + 1])
            if hi == lo:
                continue
            # sort the bucket on its narrow sort columns, then gather every column once
            rows = order[lo:hi]
            local = sort_indices(narrow.take(pa.array(rows)), view).to_numpy()
            part = table.take(pa.array(rows[local]))
            rel = f"b{b:04d}/{run_id}.parquet"
            (vdir / rel).parent.mkdir(exist_ok=True)
            _write_parquet(part, vdir / rel, view)
            parts[str(b)] = rel
        run_units = sorted({*unit_ids.values(), *(u for r in affected for u in r["units"])})
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        manifest["runs"] = [r for r in manifest["runs"] if r not in affected]
        gone = {r["id"] for r in affected}
        for entry in manifest["units"].values():
            if entry["run"] in gone:
                entry["run"] = run_id
        manifest["runs"].append({"id": run_id, "units": run_units, "parts": parts,
                                 "rows": table.num_rows, "at": now})
        for unit, t in batch:
            manifest["units"][unit.id] = {"id": unit_ids[unit.id], "fingerprint": unit.fingerprint,
                                          "rows": t.num_rows, "run": run_id, "at": now}
        manifest["next_run"] += 1
        manifest["rows"] = sum(r["rows"] for r in manifest["runs"])
        write_atomic(vdir / MANIFEST, json.dumps(manifest, indent=1).encode())
        for run in affected:  # only now unreferenced
            for part in run["parts"].values():
                (vdir / part).unlink(missing_ok=True)
        return sum(t.num_rows for _, t in batch)

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


def source_columns(view: dict[str, Any], source: dict[str, Any]) -> list[str]:
    """The columns a view reads from its source: keys, timestamps, features."""
    ts_col, created_col = source["timestamp_field"], source["created_timestamp_field"]
    return list(dict.fromkeys([*view["join_keys"], ts_col, *([created_col] if created_col else []),
                               *(f["name"] for f in view["features"])]))


def read_typed(view: dict[str, Any], source: dict[str, Any], loader: Loader, unit: SourceUnit) -> pa.Table:
    """One source unit as the offline store's columns, typed as declared; IngestError names file, row, column."""
    return type_rows(view, source, loader.read(unit, source_columns(view, source)), unit.id, loader.row_label)


def type_rows(view: dict[str, Any], source: dict[str, Any], raw: pa.Table, where: str,
              row_label: Callable[[int], str]) -> pa.Table:
    """Raw rows (source column names) as the offline store's columns, typed as declared.

    ``where`` names the rows' origin in errors (a file, or a push); ``row_label`` names a row.
    """
    ts_col, created_col = source["timestamp_field"], source["created_timestamp_field"]
    cols = source_columns(view, source)
    missing = [c for c in cols if c not in raw.column_names]
    if missing:
        raise IngestError(f"{where}: column(s) {', '.join(missing)} missing", file=where, column=missing[0])

    def cast(col: str, fn) -> pa.Array:
        try:
            return fn(raw.column(col))
        except CastFailure as exc:
            at = f" at {row_label(exc.index)}" if exc.index >= 0 else ""
            shown = f" value {exc.value!r}" if exc.index >= 0 else ""
            raise IngestError(f"{where}{at}, column {col!r}:{shown} cannot be read as "
                              f"{_target_name(view, col, ts_col, created_col)} ({exc.reason})",
                              file=where, row=exc.index + 1 if exc.index >= 0 else None,
                              column=col) from None

    out: dict[str, pa.Array] = {}
    for k in view["join_keys"]:
        out[k] = cast(k, lambda a, t=KEY_TYPES[view["key_dtypes"][k]]: to_dtype(a, t))
    out[EVENT_TS] = cast(ts_col, to_timestamp)
    if out[EVENT_TS].null_count:
        row = int(pc.index(pc.is_null(out[EVENT_TS]), True).as_py())
        raise IngestError(f"{where} at {row_label(row)}, column {ts_col!r}: the event "
                          "timestamp is null", file=where, row=row + 1, column=ts_col)
    out[CREATED_TS] = cast(created_col, to_timestamp) if created_col else pa.nulls(raw.num_rows, TS_TYPE)
    out[UNIT] = pa.nulls(raw.num_rows, pa.int32())  # numbered when the run is written
    for f in view["features"]:
        out[f["name"]] = cast(f["name"], lambda a, t=DTYPES[f["dtype"]]: to_dtype(a, t))
    return pa.table(out, schema=offline_schema(view))


def _target_name(view: dict[str, Any], col: str, ts_col: str, created_col: str | None) -> str:
    if col in (ts_col, created_col):
        return "a timestamp"
    if col in view["key_dtypes"]:
        return view["key_dtypes"][col]
    return next(f["dtype"] for f in view["features"] if f["name"] == col)


def _write_parquet(table: pa.Table, path: Path, view: dict[str, Any]) -> None:
    """Write a part: dictionary encoding only where it pays (text), statistics only where
    they can prune a read (keys and times); both cost a lot on wide numeric views."""
    tmp = path.with_name(f".{path.name}.tmp")
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pq.write_table(table, tmp, compression="snappy", row_group_size=1 << 20, use_dictionary=text,
                   write_statistics=[*view["join_keys"], EVENT_TS])
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
