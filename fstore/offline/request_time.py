"""Training sets with request-time features (fstore.repo.request_time): the request data
are columns of the entity frame.

The stored features a request needs (those asked for, and the functions' inputs) are
joined point in time by the engine, then the same functions as serving's run over the
whole frame, in serving's order: the ``on_miss`` fills first (of the views asked for and
of those request views read), on the rows where the view has no usable row at the entity
time (what serving answers NOT_FOUND or EXPIRED, and fills as COMPUTED), then the request
views. So a training row equals the served vector
of the same entity at the same instant (tests/test_request_time.py checks it row by row).

The rows a view misses are found with the local store's point-in-time rule
(``point_in_time_view``: no qualifying row); an engine without a local store (Spark)
takes a null in every feature the fill covers as a miss.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import EntityDataError, MissingRequestData
from ..repo.definitions import DTYPES
from ..repo.functions import load
from ..repo.names import split_ref, view_name
from ..repo.request_time import apply, filled, fills_of
from ..repo.resolve import ViewRequest, find_view, resolve
from ..times import NO_TIME
from .historical import entity_timestamps, load_entity_df, point_in_time_view


def historical(engine: Any, registry: dict[str, Any], config: Any, features: Any, service: Any, full: bool,
               ready: frozenset[str] | None, entity_df: Any, ts_column: str, progress: Any = None) -> pa.Table:
    """The training set of a request, request-time features included (the module's rule)."""
    computed: list[ViewRequest] = []
    stored = resolve(registry, features, service, full, ready, computed)
    if not computed and not any(r.view.get("on_miss") for r in stored):
        return engine.historical(stored, entity_df, ts_column, progress)
    views = registry["feature_views"]

    def input_view(ref: str) -> dict[str, Any]:
        view_ref, feat = split_ref(ref)
        return find_view(view_ref, views, ready, feat)  # type: ignore[return-value]

    def pin(ref: str) -> str:
        return f"{view_name(input_view(ref))}:{split_ref(ref)[1]}"

    # serving's rule (fills_of): the views asked for and those request views read
    fill_views = fills_of([r.view for r in stored] + [input_view(ref) for r in computed for ref in r.view["inputs"]])
    steps = [(v, v["on_miss"], f"feature_view {view_name(v)} on_miss") for v in fill_views]
    refs = [f"{view_name(r.view)}:{f}" for r in stored for f in r.features]
    refs += [pin(ref) for v, spec, _ in steps for ref in spec["inputs"]]
    refs += [pin(ref) for r in computed for ref in r.view["inputs"]]
    entities = load_entity_df(entity_df)
    for r in computed + stored:
        for out in r.outputs:
            if out in entities.column_names:
                from ..errors import FeatureNameClash
                raise FeatureNameClash(f"feature column {out!r} clashes with an entity_df column of that name; "
                                       "rename the column or pass full_feature_names=True")
    inner = resolve(registry, list(dict.fromkeys(refs)), None, True, ready) if refs else []
    table = engine.historical(inner, entities, ts_column, progress) if inner else entities
    cols: dict[str, pa.Array] = {}

    def col(pinned: str) -> pa.Array:
        name = "__".join(split_ref(pinned))
        if name not in cols:
            cols[name] = table.column(name).combine_chunks()
        return cols[name]

    def stored_col(pinned: str) -> pa.Array:  # a fill's input: as stored, never another fill's (no chains)
        return table.column("__".join(split_ref(pinned))).combine_chunks()

    n = table.num_rows
    for v, spec, where in steps:
        outputs = [(f["name"], f["dtype"]) for f in filled(v)]
        read = [(k, f"{view_name(v)}:{name}") for k, (name, _) in enumerate(outputs)
                if "__".join((view_name(v), name)) in table.column_names]
        missed = _missed(engine, v, [p for _, p in read], entities, ts_column, col, n)
        if not missed.any():
            continue
        pick = pa.array(np.flatnonzero(missed))
        fn = load(config, spec["function"], obj=f"feature_view {v['name']}", field="on_miss.compute")
        args = _request_args(spec["request"], entities, where, pick)
        args |= {split_ref(ref)[1]: stored_col(pin(ref)).take(pick) for ref in spec["inputs"]}
        got = apply(fn, args, outputs, len(pick), where=where)
        for k, pinned in read:
            placed = np.full(n, -1, dtype=np.int64)
            placed[np.flatnonzero(missed)] = np.arange(len(pick))
            filled_col = got[k].take(pa.array(placed, mask=placed < 0))
            cols["__".join(split_ref(pinned))] = _choose(missed, filled_col, col(pinned))
    out_names = list(entities.column_names)
    out_cols = list(entities.columns)
    n_out = sum(len(r.outputs) for r in stored + computed)
    final: list[tuple[str, Any]] = [("", None)] * n_out
    for r in stored:
        for feat, out, pos in zip(r.features, r.outputs, r.positions):
            final[pos] = (out, col(f"{view_name(r.view)}:{feat}"))
    for r in computed:
        rv = r.view
        where = f"request_view {rv['name']}"
        fn = load(config, rv["function"], obj=where)
        args = _request_args(rv["request"], entities, where, None)
        args |= {split_ref(ref)[1]: col(pin(ref)) for ref in rv["inputs"]}
        outputs = [(f["name"], f["dtype"]) for f in rv["features"]]
        got = dict(zip([o for o, _ in outputs], apply(fn, args, outputs, n, where=where)))
        for feat, out, pos in zip(r.features, r.outputs, r.positions):
            final[pos] = (out, got[feat])
    return pa.Table.from_arrays(out_cols + [c for _, c in final], names=out_names + [name for name, _ in final])


def _choose(missed: np.ndarray, computed: pa.Array, stored: pa.Array) -> pa.Array:
    import pyarrow.compute as pc
    return pc.if_else(pa.array(missed), computed, stored)


def _missed(engine: Any, view: dict[str, Any], pinned: list[str], entities: pa.Table, ts_column: str,
            col: Any, n: int) -> np.ndarray:
    """The entity rows where ``view`` has no usable row at the entity time."""
    store = getattr(engine, "store", None)
    if store is not None and hasattr(store, "manifest"):
        feats = [split_ref(p)[1] for p in pinned] or [view["features"][0]["name"]]
        req = ViewRequest(view, feats, feats, list(range(len(feats))))
        _, stamps = point_in_time_view(store, req, entities, entity_timestamps(entities, ts_column))
        return np.asarray(stamps) == NO_TIME
    nulls = np.ones(n, dtype=bool)
    for p in pinned:
        nulls &= np.asarray(col(p).is_null().to_numpy(zero_copy_only=False))
    return nulls


def _request_args(request: dict[str, str], entities: pa.Table, where: str, pick: pa.Array | None) -> dict[str, pa.Array]:
    """Request fields from the entity frame's columns, as their declared types."""
    args = {}
    for name, dtype in request.items():
        if name not in entities.column_names:
            err = MissingRequestData(f"the entity rows have no {name!r} column, a request field of {where} "
                                     f"({dtype}) (columns: {', '.join(entities.column_names)})")
            err.field = name
            raise err
        column = entities.column(name).combine_chunks()
        try:
            column = column if column.type == DTYPES[dtype] else column.cast(DTYPES[dtype])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            err = EntityDataError(f"entity column {name!r} ({column.type}), a request field of {where}, cannot be "
                                  f"read as {dtype}: {exc}")
            err.field = name
            raise err from None
        args[name] = column if pick is None else column.take(pick)
    return args
