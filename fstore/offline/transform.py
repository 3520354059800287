"""Ingest through a batch transformation (docs/transformations.md, "SQL and Python
transformations").

The source is read as Arrow with all its columns, the transformation (fstore.repo.
transform_run) turns it into the view's columns, and the output is typed and stored by
the same rule as a plain source (offline/rows.py): same layout, units, ingest log,
readiness. A row-wise transformation runs on each new or changed source file alone
(``unit_reader``); any other reads every file and replaces the view's history in one run
(``ingest_full``), whose single unit ``FULL_UNIT`` records the inputs it was computed from.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import IngestError, TransformError
from ..repo.functions import load_function
from ..repo.names import view_name
from ..repo.transform_run import run_transform
from ..repo.columns import compatible
from .layout import PUSH_PREFIX, UNIT, offline_schema
from .loaders import Loader, SourceUnit
from .problems import RowProblems
from .rows import source_columns, type_rows

#: the unit of a fully recomputed history: its rows come from every source file at once
FULL_UNIT = "<transformation: every source file>"
#: the manifest key listing the source files (and fingerprints) a full recompute read
INPUTS = "transform_inputs"


def check_output(view: dict[str, Any], source: dict[str, Any], table: pa.Table) -> None:
    """The transformation's output must hold the view's keys, the source's times and the
    features, of types that cast to the declared ones; TransformError naming the view and
    the column otherwise (values that do not cast are bad rows, found by type_rows)."""
    name = view_name(view)
    for col in source_columns(view, source):
        if col not in table.column_names:
            raise TransformError(f"feature view {name}: the transformation's output has no column {col!r} "
                                 f"(it has {', '.join(table.column_names) or 'none'})", view=name, column=col)
    declared = {**{k: view["key_dtypes"][k] for k in view["join_keys"]},
                **{f["name"]: f["dtype"] for f in view["features"]},
                **{c: "timestamp" for c in (source["timestamp_field"], source["created_timestamp_field"]) if c}}
    for col, dtype in declared.items():
        t = table.schema.field(col).type
        if not compatible(t, dtype):
            raise TransformError(f"feature view {name}: column {col!r} of the transformation's output is {t}, "
                                 f"which cannot be stored as the declared {dtype}", view=name, column=col)


def unit_reader(view: dict[str, Any], source: dict[str, Any], loader: Loader,
                root: Path) -> Callable[[SourceUnit, RowProblems, int], pa.Table | None]:
    """Reads one source file through the view's (row-wise) transformation, typed for the store."""
    columns = loader.schema().names
    name = view_name(view)
    transform = view["transform"]
    # the function is found and checked once per ingest, not once per file
    fn = load_function(transform["python"], root, what=f"feature view {name}") if "python" in transform else None

    def read(unit: SourceUnit, problems: RowProblems, seq: int) -> pa.Table | None:
        try:
            raw = loader.read(unit, columns)
        except IngestError as exc:
            problems.add_error(seq, exc)
            return None
        out = run_transform(transform, raw, root, view=name, fn=fn)
        check_output(view, source, out)
        return type_rows(view, source, out, f"{unit.id} (transformed)",
                         lambda i: f"output row {i + 1}", problems, seq)

    return read


def read_all(view: dict[str, Any], source: dict[str, Any], loader: Loader, units: list[SourceUnit],
             root: Path, problems: RowProblems) -> pa.Table | None:
    """Every source file read at once through the view's transformation, typed for the store
    (None: bad rows, recorded in ``problems``)."""
    raw = [loader.read(u, loader.schema().names) for u in units]
    schema = pa.unify_schemas([t.schema for t in raw], promote_options="permissive") if raw \
        else loader.schema()
    table = pa.concat_tables([t.cast(schema) if t.schema != schema else t for t in raw]) if raw \
        else schema.empty_table()
    name = view_name(view)
    out = run_transform(view["transform"], table, root, view=name)
    check_output(view, source, out)
    return type_rows(view, source, out, f"the transformation's output ({len(units)} source files)",
                     lambda i: f"output row {i + 1}", problems)


def inputs_of(view: dict[str, Any], units: list[SourceUnit]) -> dict[str, Any]:
    """What a full recompute was computed from: the transformation and every source file."""
    return {"transform": view.get("transform"), "files": {u.id: u.fingerprint for u in units}}


def inputs_fingerprint(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def with_unit(table: pa.Table, unit: int) -> pa.Table:
    """``table`` with every row's ``__unit`` set to ``unit``."""
    return table.set_column(table.schema.get_field_index(UNIT), UNIT,
                            pa.array(np.full(table.num_rows, unit, dtype=np.int32)))


def pushed_units(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The unit entries of rows pushed offline: no source file holds them, so a recompute
    from the source files must keep them as they are (never drop them silently)."""
    return {u: {k: e[k] for k in ("id", "fingerprint", "rows")}
            for u, e in manifest.get("units", {}).items() if u.startswith(PUSH_PREFIX)}


def full_unit_id(manifest: dict[str, Any], pushed: dict[str, dict[str, Any]]) -> int:
    """FULL_UNIT's number: 0, unless a push (made before the first ingest) holds it."""
    return manifest["next_unit"] if any(e["id"] == 0 for e in pushed.values()) else 0


def pushed_rows(store: Any, view: dict[str, Any], manifest: dict[str, Any],
                pushed: dict[str, dict[str, Any]]) -> pa.Table:
    """The stored rows of the ``pushed`` units, with their ``__unit``."""
    schema = offline_schema(view)
    ids = {e["id"] for e in pushed.values()}
    if not ids:
        return schema.empty_table()
    vdir = store.view_dir(view)
    value_set = pa.array(sorted(ids), pa.int32())
    tables = [t.filter(pc.is_in(t.column(UNIT), value_set=value_set))
              for run in manifest["runs"] if ids & set(run["units"])
              for t in (pq.read_table(vdir / p).select(schema.names).cast(schema) for p in run["parts"].values())]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def ingest_full(store: Any, view: dict[str, Any], source: dict[str, Any], manifest: dict[str, Any],
                loader: Loader, units: list[SourceUnit], problems: RowProblems) -> tuple[int, int]:
    """Recompute the view's whole history when a source file is new or changed (or the
    transformation is not what computed it), replacing every run but keeping the rows
    pushed offline; (files read, rows recomputed)."""
    inputs = inputs_of(view, units)
    if manifest.get(INPUTS) == inputs:
        return 0, 0
    table = read_all(view, source, loader, units, store.config.root, problems)
    problems.check()
    assert table is not None
    pushed = pushed_units(manifest)
    fid = full_unit_id(manifest, pushed)
    entry = {"id": fid, "fingerprint": inputs_fingerprint(inputs), "rows": table.num_rows}
    whole = pa.concat_tables([with_unit(table, fid), pushed_rows(store, view, manifest, pushed)])
    store.replace_locked(view, manifest, whole, {FULL_UNIT: entry, **pushed}, {INPUTS: inputs})
    return len(units), table.num_rows
