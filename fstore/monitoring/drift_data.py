"""The two sides ``fstore drift`` compares, each as one column per service feature.

- a training set file built by fstore (Parquet, CSV, Arrow IPC or Feather, as
  ``build_dataset`` writes them): the service's output columns, typed as declared; its
  lineage file, when beside it, must name the same service;
- a window of the offline store: every stored row of each view with an event time in
  [START, END] (all rows, not the newest per entity: the population the views received);
- the served-feature logs of the service (docs/monitoring.md, "Served-feature logs"):
  every logged entity row with a request time in [since, until].

Each side is a ``Side``: a label for the report, its row count and a dict of Arrow
columns by output name, typed by the feature's declared dtype.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
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
from .skew_logs import of_model

DAY_US = 86_400_000_000


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


def outputs_of(requests: list[ViewRequest]) -> list[Output]:
    """The service's outputs in its order."""
    out: list[tuple[int, Output]] = []
    for req in requests:
        feats = {f["name"]: f for f in req.view["features"]}
        out += [(pos, Output(col, req.view, feats[name]))
                for name, col, pos in zip(req.features, req.outputs, req.positions)]
    return [o for _, o in sorted(out, key=lambda t: t[0])]


def _typed(col: pa.ChunkedArray | pa.Array, out: Output, where: str) -> pa.ChunkedArray:
    """A column cast to the feature's declared type; DriftInputError names the column."""
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    want = DTYPES[out.dtype]
    if col.type == want:
        return col
    try:
        return col.cast(want)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DriftInputError(f"{where}: column {out.column!r} of type {col.type} cannot be read as the "
                              f"feature's {out.dtype}: {exc}") from None


# ---- a training set file ---------------------------------------------------------------

_READERS = {
    ".parquet": pq.read_table,
    ".csv": pcsv.read_csv,
    ".arrow": lambda p: pa.ipc.open_file(p).read_all(),
    ".ipc": lambda p: pa.ipc.open_file(p).read_all(),
    ".feather": pfeather.read_table,
}


def read_reference_file(path: Path, service: str, outputs: list[Output]) -> Side:
    """The service's columns of a training set file (and a check of its lineage)."""
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
        table = reader(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DriftInputError(f"reference {path}: cannot read it: {exc}") from None
    missing = [o.column for o in outputs if o.column not in table.column_names]
    if missing:
        raise DriftInputError(f"reference {path} has no column {', '.join(map(repr, missing))} of feature "
                              f"service {service!r} (columns: {', '.join(table.column_names)})")
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
    tables = []
    for run in offline.log(req.view, manifest):
        if run.min_us is None or run.max_us is None or run.max_us < lo or run.min_us > hi:
            continue
        for path in run.parts.values():
            t = pq.read_table(path, columns=columns)
            if run.min_us < lo or run.max_us > hi:
                ts = as_int64(t.column(EVENT_TS))
                t = t.filter(pa.array((ts >= lo) & (ts <= hi)))
            tables.append(t)
    return pa.concat_tables(tables) if tables else offline.empty_table(req.view, columns)


# ---- the served-feature logs ---------------------------------------------------------------

def log_files(config: RepoConfig, service: str, since_us: int | None, until_us: int | None) -> list[Path]:
    """The service's log parts (not the model-received log, not temporary files) whose
    ``date=`` folder can hold request times in [since, until]."""
    base = config.offline_path / "logs" / service
    out = []
    for day in sorted(base.glob("date=*")):
        try:
            day_us = _day_us(day.name[len("date="):])
        except ValueError:
            continue
        if (until_us is not None and day_us > until_us) or (since_us is not None and day_us + DAY_US <= since_us):
            continue
        out += sorted(p for p in day.glob("part-*.parquet") if not p.name.startswith("."))
    return out


def _day_us(day: str) -> int:
    d = dt.date.fromisoformat(day)
    return (d - dt.date(1970, 1, 1)).days * DAY_US


def read_log_window(config: RepoConfig, service: str, outputs: list[Output],
                    since_us: int | None, until_us: int | None, model: str | None = None) -> Side:
    """Every logged entity row of the service with a request time in [since, until].

    A private reader of the documented layout: files of other registry versions may lack
    a column (read as nulls) or hold it in another type (cast to the declared one)."""
    lo = -(1 << 63) if since_us is None else since_us
    hi = (1 << 63) - 1 if until_us is None else until_us
    chunks: dict[str, list[pa.ChunkedArray]] = {o.column: [] for o in outputs}
    rows = 0
    for path in log_files(config, service, since_us, until_us):
        names = pq.read_schema(path).names
        present = [o.column for o in outputs if o.column in names]
        t = pq.read_table(path, columns=["request_time", *(["model"] if "model" in names else []), *present])
        t = of_model(t, model)  # only the reads that named the model, when one is given
        if since_us is not None or until_us is not None:
            ts = as_int64(t.column("request_time"))
            t = t.filter(pa.array((ts >= lo) & (ts <= hi)))
        rows += t.num_rows
        for o in outputs:
            col = t.column(o.column) if o.column in present else pa.nulls(t.num_rows, DTYPES[o.dtype])
            chunks[o.column].append(_typed(col, o, f"log {path}"))
    cols = {c: pa.chunked_array([a for ch in parts for a in ch.chunks], DTYPES[o.dtype])
            for (c, parts), o in zip(chunks.items(), outputs)}
    return Side({"kind": "logs", "since": _iso(since_us), "until": _iso(until_us),
                 **({"model": model} if model else {})}, rows, cols)


def _iso(us: int | None) -> str | None:
    return None if us is None else from_us(us).isoformat()


def non_null(col: pa.ChunkedArray) -> tuple[pa.ChunkedArray, int]:
    """The column without its nulls and NaN, and how many it had."""
    if pa.types.is_floating(col.type):
        col = pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)
    kept = col.drop_null()
    return kept, len(col) - len(kept)
