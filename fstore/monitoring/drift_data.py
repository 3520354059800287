"""The two sides ``fstore drift`` compares, each as one column per service feature.

- a training set file built by fstore (Parquet, CSV, Arrow IPC or Feather, as
  ``build_dataset`` writes them): the service's output columns, typed as declared; its
  lineage file, when beside it, must name the same service;
- a window of the offline store: every stored row of each view with an event time in
  [START, END] (all rows, not the newest per entity: the population the views received);
- the served-feature logs of the service (docs/monitoring.md, "Served-feature logs"):
  every logged entity row with a request time in [since, until], file by file.

A side read whole is a ``Side``: a label for the report, its row count and a dict of
Arrow columns by output name, typed by the feature's declared dtype (strings and bytes
possibly as dictionaries of it). The logs come as ``Part``s, one per file, so that the
current window is never held whole.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as pfeather
import pyarrow.parquet as pq

from ..config import RepoConfig
from ..errors import DriftInputError
from ..offline.casting import as_int64
from ..offline.datasets import lineage_path
from ..offline.layout import EVENT_TS
from ..offline.store import OfflineStore
from ..repo.definitions import DTYPES
from ..repo.resolve import ViewRequest
from ..times import from_us
from .logread import iter_parts, service_dir

ENCODED = frozenset({"string", "bytes"})  # read as dictionaries (see ``encoded``)


@dataclass
class Output:
    """One feature of the service: its output column, view record and feature record."""

    column: str
    view: dict[str, Any]
    feature: dict[str, Any]

    @property
    def dtype(self) -> str:
        return str(self.feature["dtype"])


@dataclass
class Side:
    """One side of the comparison: what it is, how many rows, and the columns by output name."""

    describe: dict[str, Any]
    rows: int
    columns: dict[str, pa.ChunkedArray]


#: why a request view's output is left out of a comparison with an offline window
NOT_STORED = "computed at read time: the offline store holds no rows of it"


def outputs_of(requests: list[ViewRequest]) -> list[Output]:
    """The service's outputs in its order (stored and computed ones, as ``requests`` hold them)."""
    out: list[tuple[int, Output]] = []
    for req in requests:
        feats = {f["name"]: f for f in req.view["features"]}
        out += [(pos, Output(col, req.view, feats[name]))
                for name, col, pos in zip(req.features, req.outputs, req.positions)]
    return [o for _, o in sorted(out, key=lambda t: t[0])]


def _typed(col: pa.ChunkedArray | pa.Array, out: Output, where: str) -> pa.ChunkedArray:
    """A column cast to the feature's declared type (a dictionary of that type is kept as
    it is); DriftInputError names the column."""
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    want = DTYPES[out.dtype]
    if col.type == want or (pa.types.is_dictionary(col.type) and col.type.value_type == want):
        return col
    try:
        return col.cast(want)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DriftInputError(f"{where}: column {out.column!r} of type {col.type} cannot be read as the "
                              f"feature's {out.dtype}: {exc}") from None


def encoded(outputs: list[Output]) -> list[str]:
    """The columns read as Arrow dictionaries where the file format allows it: strings and
    bytes, which Parquet stores dictionary-encoded, so that reading them builds no string
    per row and counting them is counting small integers."""
    return [o.column for o in outputs if o.dtype in ENCODED]


# ---- a training set file ---------------------------------------------------------------

def _parquet(path: Path, outputs: list[Output]) -> tuple[list[str], pa.Table]:
    names = pq.read_schema(path).names
    cols = [o.column for o in outputs if o.column in names]
    return names, pq.read_table(path, columns=cols, memory_map=True,
                                read_dictionary=[c for c in encoded(outputs) if c in names])


def _whole(read: Callable[[Path], pa.Table]) -> Callable[[Path, list[Output]], tuple[list[str], pa.Table]]:
    def reader(path: Path, outputs: list[Output]) -> tuple[list[str], pa.Table]:
        table = read(path)
        return table.column_names, table
    return reader


_READERS: dict[str, Callable[[Path, list[Output]], tuple[list[str], pa.Table]]] = {
    ".parquet": _parquet,
    ".csv": _whole(pcsv.read_csv),
    ".arrow": _whole(lambda p: pa.ipc.open_file(pa.memory_map(str(p))).read_all()),
    ".ipc": _whole(lambda p: pa.ipc.open_file(pa.memory_map(str(p))).read_all()),
    ".feather": _whole(pfeather.read_table),
}


def read_reference_file(path: Path, service: str, outputs: list[Output]) -> Side:
    """The service's columns of a training set file (and a check of its lineage); from a
    Parquet file, only those columns are read."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DriftInputError(f"reference {path}: cannot read a {path.suffix or 'suffixless'} file; "
                              f"expected {', '.join(_READERS)}")
    if not path.is_file():
        raise DriftInputError(f"reference {path}: no such file")
    lineage = lineage_path(path)
    if lineage.is_file():
        built_for = json.loads(lineage.read_text()).get("feature_service")
        if built_for is not None and built_for != service:
            raise DriftInputError(f"reference {path} was built for feature service {built_for!r} "
                                  f"(its lineage {lineage.name}), not {service!r}")
    try:
        names, table = reader(path, outputs)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DriftInputError(f"reference {path}: cannot read it: {exc}") from None
    missing = [o.column for o in outputs if o.column not in names]
    if missing:
        raise DriftInputError(f"reference {path} has no column {', '.join(map(repr, missing))} of feature "
                              f"service {service!r} (columns: {', '.join(names)})")
    cols = {o.column: _typed(table.column(o.column), o, f"reference {path}") for o in outputs}
    return Side({"kind": "file", "path": str(path)}, table.num_rows, cols)


# ---- a window of the offline store -------------------------------------------------------

def read_offline_window(offline: OfflineStore, requests: list[ViewRequest], outputs: list[Output],
                        start_us: int | None, end_us: int | None) -> Side:
    """Every offline row of each view with an event time in [start, end] (None: unbounded)."""
    cols: dict[str, pa.ChunkedArray] = {}
    rows = 0
    for req in requests:
        table = _view_window(offline, req, start_us, end_us)
        rows = max(rows, table.num_rows)
        for o in outputs:
            if o.view is req.view:
                cols[o.column] = _typed(table.column(o.feature["name"]), o, f"offline store {req.key}")
    return Side({"kind": "offline", "start": _iso(start_us), "end": _iso(end_us)}, rows, cols)


def _view_window(offline: OfflineStore, req: ViewRequest, start_us: int | None, end_us: int | None) -> pa.Table:
    manifest = offline.manifest(req.view)
    columns = [EVENT_TS, *req.features]
    if manifest is None:
        return offline.empty_table(req.view, columns)
    lo = -(1 << 63) if start_us is None else start_us
    hi = (1 << 63) - 1 if end_us is None else end_us
    strings = [f["name"] for f in req.view["features"] if f["name"] in req.features and f["dtype"] in ENCODED]
    tables = []
    for run in offline.log(req.view, manifest):
        if run.min_us is None or run.max_us is None or run.max_us < lo or run.min_us > hi:
            continue
        for path in run.parts.values():
            t = pq.read_table(path, columns=columns, read_dictionary=strings)
            if run.min_us < lo or run.max_us > hi:
                ts = as_int64(t.column(EVENT_TS))
                t = t.filter(pa.array((ts >= lo) & (ts <= hi)))
            tables.append(t)
    return pa.concat_tables(tables) if tables else offline.empty_table(req.view, columns)


# ---- the served-feature logs ---------------------------------------------------------------

Part = tuple[int, dict[str, pa.ChunkedArray]]  # a part of a side: its rows, its columns by output


def log_window(since_us: int | None, until_us: int | None, model: str | None = None) -> dict[str, Any]:
    """How the report describes a window of the logs (its rows are counted as it is read)."""
    return {"kind": "logs", "since": _iso(since_us), "until": _iso(until_us), **({"model": model} if model else {})}


def log_parts(config: RepoConfig, service: str, outputs: list[Output], since_us: int | None,
              until_us: int | None, model: str | None = None) -> Iterator[Part]:
    """Every logged entity row of the service with a request time in [since, until] (of the
    reads that named ``model``, when given), file by file, by the logs' one reader
    (logread.iter_parts): only the feature columns are read, strings as dictionaries. A
    file of another registry version may lack a column (read as nulls) or hold it in
    another type (cast)."""
    folder = service_dir(config.offline_path, service)
    for part in iter_parts(folder, since_us, until_us, columns=[o.column for o in outputs], named_model=model,
                           dictionary=encoded(outputs)):
        n = part.table.num_rows
        yield n, {o.column: _typed(part.table.column(o.column), o, f"log {part.path}")
                  if o.column in part.table.column_names else pa.chunked_array([pa.nulls(n, DTYPES[o.dtype])])
                  for o in outputs}


def _iso(us: int | None) -> str | None:
    return None if us is None else from_us(us).isoformat()
