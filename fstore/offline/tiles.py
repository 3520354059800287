"""The offline side of an aggregation view: its raw events and their pre-aggregated tiles.

An aggregation view's history in the offline store is its source's events, stored as a
plain view would store them but with the aggregated columns as its columns
(``events_view``), so ingest, changed-file replacement and the ingest log work unchanged.

Beside them, ``tiles/`` holds partial aggregates per (entity key, tile of the view's
grain), one file per ingest run and bucket, built from exactly that run's part::

    tiles/_tiles.json       grain, columns, and the runs whose tiles are written
    tiles/b0003/r000007.parquet

Runs are immutable (a changed source file makes a new run), so an ingest only builds the
tiles of its new runs and deletes those of the runs it replaced: tiles are added, never
rewritten. Tiles of one (key, start) from several runs are merged by the reader (the
kernel adds them up). A run whose tiles are missing (e.g. a push appended offline since)
is tiled in memory when read, so a reader is never wrong, only slower.
"""
from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._ext._window import build_tiles
from ..files import file_lock, write_atomic
from ..times import NO_TIME
from .casting import as_int64
from .layout import CREATED_TS, EVENT_TS
from .store import OfflineStore, of_keys

TILES_DIR = "tiles"
TILES_DOC = "_tiles.json"
TILE_START = "__tile"
#: the partial aggregates kept per column, in file order (``<column>__<part>``)
PARTS = ("sum", "count", "min", "max", "last", "last_ts", "last_cr")


def events_view(view: dict[str, Any]) -> dict[str, Any]:
    """The view record the offline store holds an aggregation view's events under: its
    features are the distinct aggregated columns, typed as the source has them."""
    cols: dict[str, str] = {}
    for a in view["aggregations"]:
        cols.setdefault(a["column"], a["column_dtype"])
    return {**view, "features": [{"name": c, "dtype": d, "default": None, "description": ""}
                                 for c, d in cols.items()]}


def grain_of(view: dict[str, Any]) -> int:
    return int(view["aggregations"][0]["tile_us"])


def kernel_values(col: pa.ChunkedArray | pa.Array, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """A column as the kernels take it: (int64 or float64 values, validity as uint8). NaN is
    not a value (ignored like null); timestamps are int64 microseconds and bools 0/1 (their
    order is the int64 order); a string or bytes column (count only) becomes zeros."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=np.uint8)
    if dtype.startswith("int") or dtype in ("timestamp", "bool"):
        return as_int64(col, fill=0), valid
    if dtype.startswith("float"):
        vals = pc.fill_null(col.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        valid &= ~np.isnan(vals)
        return np.ascontiguousarray(vals), valid
    return np.zeros(len(col), dtype=np.int64), valid


def tile_table(view: dict[str, Any], events: pa.Table, key_matrix: np.ndarray) -> pa.Table:
    """The tiles of ``events`` (sorted by key, event time; ``key_matrix`` their keys as the
    kernels take them): the join keys, TILE_START and PARTS per aggregated column."""
    grain = grain_of(view)
    ts = as_int64(events.column(EVENT_TS))
    cr = as_int64(events.column(CREATED_TS), fill=NO_TIME)
    out: dict[str, Any] = {}
    first = None
    for f in events_view(view)["features"]:
        vals, valid = kernel_values(events.column(f["name"]), f["dtype"])
        res = build_tiles(key_matrix, ts, cr, vals, valid, grain)
        if first is None:
            first, start = res[0], res[1]
            for k in view["join_keys"]:
                out[k] = events.column(k).take(pa.array(first))
            out[TILE_START] = pa.array(start, pa.int64())
        for part, arr in zip(PARTS, res[2:]):
            out[f"{f['name']}__{part}"] = pa.array(arr)
    if first is None:  # no rows
        return pa.table({k: events.column(k).slice(0, 0) for k in view["join_keys"]} | {TILE_START: pa.array([], pa.int64())})
    return pa.table(out)


def _doc(vdir: Any, view: dict[str, Any]) -> dict[str, Any]:
    path = vdir / TILES_DIR / TILES_DOC
    want = {"grain": grain_of(view), "columns": [f["name"] for f in events_view(view)["features"]]}
    if path.exists():
        doc = json.loads(path.read_text())
        if {k: doc.get(k) for k in want} == want:
            return doc
        shutil.rmtree(vdir / TILES_DIR, ignore_errors=True)  # built for other aggregations: rebuild
    return {**want, "runs": {}}


def tile_path(bucket: int | str, run_id: str) -> str:
    """A tile file's path inside its view's folder."""
    return f"{TILES_DIR}/b{int(bucket):04d}/{run_id}.parquet"


def write_tile_file(view: dict[str, Any], vdir: Any, part: str, out: str, key_matrix_of: Any) -> None:
    """Tile one part (``part``, relative to ``vdir``) into the tile file ``out``: the one
    step of ``sync_tiles`` per (run, bucket), wherever it runs."""
    ev = events_view(view)
    columns = list(dict.fromkeys([*ev["join_keys"], EVENT_TS, CREATED_TS, *(f["name"] for f in ev["features"])]))
    events = pq.read_table(vdir / part, columns=columns)
    tiles = tile_table(view, events, key_matrix_of(events))
    (vdir / out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(tiles, vdir / out, compression="snappy")


def sync_tiles(store: OfflineStore, view: dict[str, Any], key_matrix_of: Any, build_all: Any = None) -> int:
    """Build the tiles of every run that has none, delete those of runs that are gone;
    returns the tile files written. ``key_matrix_of(table)`` gives a table's key matrix;
    ``build_all([(part, tile file), ...])``, when given, writes the files (another engine's
    tasks, by ``write_tile_file``) before the tiles document names them."""
    ev = events_view(view)
    vdir = store.view_dir(ev)
    written = 0
    with file_lock(vdir / ".lock"):
        manifest = store.manifest(ev)
        if manifest is None:
            return 0
        doc = _doc(vdir, view)
        live = {r["id"]: r for r in manifest["runs"]}
        for rid in [r for r in doc["runs"] if r not in live]:
            for rel in doc["runs"].pop(rid).values():
                (vdir / rel).unlink(missing_ok=True)
        new = [(rid, run) for rid, run in live.items() if rid not in doc["runs"]]
        if build_all is not None and new:
            build_all([(rel, tile_path(b, rid)) for rid, run in new for b, rel in run["parts"].items()])
        for rid, run in new:
            parts = {}
            for b, rel in run["parts"].items():
                if build_all is None:
                    write_tile_file(view, vdir, rel, tile_path(b, rid), key_matrix_of)
                parts[b] = tile_path(b, rid)
                written += 1
            doc["runs"][rid] = parts
            write_atomic(vdir / TILES_DIR / TILES_DOC, json.dumps(doc, indent=1).encode())
    return written


def read_tiles(store: OfflineStore, view: dict[str, Any], manifest: dict[str, Any], bucket: int,
               key_matrix_of: Any, keys: pa.Table | None = None) -> pa.Table:
    """Every tile of one bucket, of the runs in ``manifest`` (with ``keys``, at least those
    keys' tiles: ``of_keys``), sorted by (keys, start); runs without stored tiles are tiled
    here from their part."""
    ev = events_view(view)
    vdir = store.view_dir(ev)
    path = vdir / TILES_DIR / TILES_DOC
    doc = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    if doc.get("grain") != grain_of(view) or doc.get("columns") != [f["name"] for f in ev["features"]]:
        doc = {"runs": {}}
    tables = []
    for run in manifest["runs"]:
        rel = run["parts"].get(str(bucket))
        if rel is None:
            continue
        stored = doc["runs"].get(run["id"], {}).get(str(bucket))
        if stored is not None and (vdir / stored).exists():
            tables.append(of_keys(pq.read_table(vdir / stored), keys, view["join_keys"]))
        else:
            events = of_keys(store.read_part(ev, vdir / rel, [f["name"] for f in ev["features"]]), keys,
                             view["join_keys"])
            tables.append(tile_table(view, events, key_matrix_of(events)))
    if not tables:
        return tile_table(view, store.empty_table(ev, [*view["join_keys"], EVENT_TS, CREATED_TS,
                                                       *(f["name"] for f in ev["features"])]),
                          np.zeros((0, len(view["join_keys"])), dtype=np.int64))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        table = table.sort_by([(k, "ascending") for k in view["join_keys"]] + [(TILE_START, "ascending")])
    return table
