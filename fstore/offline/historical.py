"""Point-in-time correct training sets: the as-of join of entity rows with feature history.

For each entity row and each requested view, the candidates are the view's rows
with equal join key values (every column of a composite key) and an event time
``t`` with ``entity_ts - ttl <= t <= entity_ts`` (both ends inclusive; no lower
bound without a ttl). The newest candidate by event time wins, ties broken by the
newest created time. Its value is used as stored (a stored null stays null); with
no candidate the feature's declared default is used, or null. A null join key
matches nothing. Every entity row comes out once, in input order, with all its
columns passed through.

The join runs view by view and bucket by bucket (see offline_store): entity rows
are hashed to the bucket holding their key's history, the compiled kernel
(fstore._ext._asof.asof_indices) returns one row index per entity row, and the
feature columns are gathered with ``take``.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from .._ext._asof import asof_indices
from ..errors import EntityDataError, FeatureNameClash, OfflineStoreError
from ..progress import Reporter, Silent
from ..repo.aggregations import is_aggregation_view
from ..repo.definitions import AS_OF_CREATED, DTYPES
from ..repo.names import view_name
from ..repo.resolve import ViewRequest
from ..times import NO_TIME
from .asof_created import created_asof_indices
from .casting import CastFailure, as_int64, default_scalar, to_dtype, to_timestamp
from .layout import CREATED_TS, EVENT_TS, KEY_TYPES, bucket_ids, sort_indices
from .store import OfflineStore
from .windows import join_aggregations, newest_events



def load_entity_df(entity_df: Any) -> pa.Table:
    """A pyarrow Table from a Table, a pandas DataFrame, or a Parquet/CSV path."""
    if isinstance(entity_df, pa.Table):
        return entity_df
    if isinstance(entity_df, (str, Path)):
        path = Path(entity_df)
        if not path.exists():
            raise EntityDataError(f"entity file {path} does not exist")
        if path.suffix.lower() in (".csv", ".tsv") or path.name.lower().endswith(".csv.gz"):
            return pcsv.read_csv(path)
        return pq.read_table(path)
    if type(entity_df).__module__.startswith("pandas"):
        return pa.Table.from_pandas(entity_df, preserve_index=False)
    raise EntityDataError(f"entity_df must be a pyarrow Table, a pandas DataFrame or a Parquet path, "
                          f"got {type(entity_df).__name__}")


def entity_timestamps(table: pa.Table, column: str) -> np.ndarray:
    """UTC microseconds of the entity rows; a missing column or a null time is an error."""
    if column not in table.column_names:
        raise EntityDataError(f"the entity rows have no {column!r} column (columns: "
                              f"{', '.join(table.column_names)}); pass event_timestamp_column=NAME")
    try:
        ts = to_timestamp(table.column(column))
    except CastFailure as exc:
        raise EntityDataError(_cast_problem(table.column(column), column, exc, "a timestamp")) from None
    if ts.null_count:
        row = int(pc.index(pc.is_null(ts), True).as_py())
        raise EntityDataError(f"entity column {column!r} is null at row {row + 1} (rows are numbered from 1; "
                              f"{ts.null_count:,} null in all): every entity row needs a timestamp")
    return ts.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _cast_problem(col: pa.ChunkedArray, name: str, exc: CastFailure, target: str) -> str:
    """Why an entity column does not cast, with the value the user gave (1-based rows): the
    first bad value, or for a column whose type cannot be cast at all, its first value."""
    if exc.index >= 0:
        return (f"entity column {name!r}, row {exc.index + 1} (rows are numbered from 1): {exc.value!r} cannot be "
                f"read as {target} ({exc.reason})")
    valid = pc.indices_nonzero(pc.is_valid(col)) if len(col) else pa.array([], pa.uint64())
    holds = f"; row {valid[0].as_py() + 1} (rows are numbered from 1) holds {col[valid[0].as_py()].as_py()!r}" \
        if len(valid) else ""
    return f"entity column {name!r} holds {col.type} values, which cannot be read as {target}{holds} ({exc.reason})"


def get_historical_features(store: OfflineStore, requests: list[ViewRequest], entity_df: Any,
                            event_timestamp_column: str, progress: Reporter | None = None) -> pa.Table:
    """The training set: ``entity_df`` with one column per requested feature (see module doc)."""
    progress = progress or Silent()
    entities, ts = prepare_entities(entity_df, event_timestamp_column, requests)
    manifests = {r.key: require_manifest(store, r.view) for r in requests}
    total = sum(manifests[r.key]["buckets"] for r in requests)
    joined: list[tuple[pa.Table, np.ndarray] | None] = []
    done: dict[int, tuple[str, pa.ChunkedArray]] = {}  # aggregation views' outputs, defaults applied
    progress.start("point-in-time join", total)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            for r in requests:
                if is_aggregation_view(r.view):  # over tiles and edge events (fstore.offline.windows)
                    key_table, valid = entity_keys(r.view, entities)
                    for pos, name, col in join_aggregations(store, r, manifests[r.key], key_table, valid, ts,
                                                            pool, progress):
                        done[pos] = (name, col)
                    joined.append(None)
                    continue
                taken, hit, _ = _gather(store, r, manifests[r.key], entities, ts, pool, progress, stamps=False)
                joined.append((taken, hit))
    finally:
        progress.stop()
    return assemble(entities, requests, joined, done)


def prepare_entities(entity_df: Any, event_timestamp_column: str,
                     requests: list[ViewRequest]) -> tuple[pa.Table, np.ndarray]:
    """The entity rows as a Table and their times (UTC microseconds), checked as every
    engine checks them: a time per row, no feature name that clashes with a column."""
    entities = load_entity_df(entity_df)
    ts = entity_timestamps(entities, event_timestamp_column)
    for r in requests:
        for out in r.outputs:
            if out in entities.column_names:
                raise FeatureNameClash(f"feature column {out!r} clashes with an entity_df column of that name; "
                                       "rename the column or pass full_feature_names=True")
    return entities, ts


def require_manifest(store: OfflineStore, view: dict[str, Any]) -> dict[str, Any]:
    manifest = store.manifest(view)
    if manifest is None:
        raise OfflineStoreError(f"feature view {view_name(view)} has no offline data: run "
                                f"`fstore ingest {view['name']}` first")
    return manifest


def assemble(entities: pa.Table, requests: list[ViewRequest], joined: list[tuple[pa.Table, np.ndarray] | None],
             done: dict[int, tuple[str, pa.ChunkedArray]] | None = None) -> pa.Table:
    """The training set from each request's winning rows: ``joined[i]``, for ``requests[i]``, holds the
    winner's ``req.features`` per entity row (in entity order, nulls where none won) and
    whether one won. Defaults fill the misses; every engine ends here. ``done``: output
    position -> (name, column) of requests already complete (aggregation views; their
    ``joined`` entry is None)."""
    columns: list[tuple[str, pa.ChunkedArray] | None] = [None] * sum(len(r.outputs) for r in requests)
    for r, pair in zip(requests, joined):
        if pair is None:
            continue
        for i, _, col in _with_defaults(r, *pair):
            columns[r.positions[i]] = (r.outputs[i], col)
    for pos, named in (done or {}).items():
        columns[pos] = named
    names = entities.column_names + [name for name, _ in columns]  # type: ignore[misc]
    arrays = list(entities.columns) + [col for _, col in columns]  # type: ignore[misc]
    return pa.Table.from_arrays(arrays, names=names)


def point_in_time_view(store: OfflineStore, req: ViewRequest, entities: pa.Table,
                       ts: np.ndarray) -> tuple[list[pa.ChunkedArray], np.ndarray]:
    """One view's part of a training set, with the evidence: the columns of ``req.features``
    for each entity row (the training-set rule of this module, defaults applied), and the
    event time of the row each was taken from (UTC microseconds; NO_TIME where no row
    qualified and the default or null was used). ``entities`` holds the view's join keys;
    ``ts`` the entity times. Skew checks (fstore.monitoring.skew) compare served values
    with these."""
    manifest = require_manifest(store, req.view)
    if is_aggregation_view(req.view):  # the windowed aggregates at each time (fstore.offline.windows)
        key_table, valid = entity_keys(req.view, entities)
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            cols = [col for _, _, col in join_aggregations(store, req, manifest, key_table, valid, ts, pool, Silent())]
        return cols, newest_events(store, req.view, manifest, key_table, valid, ts)
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        taken, hit, stamps = _gather(store, req, manifest, entities, ts, pool, Silent(), stamps=True)
    columns = [col for _, _, col in _with_defaults(req, taken, hit)]
    return columns, np.where(hit, stamps, NO_TIME)


def _gather(store: OfflineStore, req: ViewRequest, manifest: dict[str, Any], entities: pa.Table,
            ts: np.ndarray, pool: ThreadPoolExecutor, progress: Reporter,
            stamps: bool) -> tuple[pa.Table, np.ndarray, np.ndarray | None]:
    """The winning row's ``req.features`` per entity row (nulls where none), whether one
    won, and with ``stamps`` its event time (int64 microseconds, undefined where none)."""
    view = req.view
    key_table, valid = entity_keys(view, entities)
    n_buckets = manifest["buckets"]
    buckets = bucket_ids(key_table, view["join_keys"], n_buckets)
    order = np.argsort(buckets, kind="stable")
    bounds = np.searchsorted(buckets[order], np.arange(n_buckets + 1))
    by_name = {f["name"]: f for f in view["features"]}
    wanted = list(dict.fromkeys(req.features))
    selected = wanted + [EVENT_TS] if stamps else wanted

    def one(b: int):
        rows = order[bounds[b]:bounds[b + 1]]
        if len(rows) == 0:
            return rows, None
        data = store.read_bucket(view, manifest, b, wanted)
        idx = _bucket_indices(view, data, key_table.take(pa.array(rows)), ts[rows], valid[rows])
        taken = data.select(selected).take(pa.array(idx, mask=idx < 0))
        return rows, (taken, idx >= 0)

    parts_rows, parts_taken, parts_hit = [], [], []
    for rows, res in pool.map(one, range(n_buckets)):
        progress.advance(1, info=view_name(view))
        if res is None:
            continue
        parts_rows.append(rows)
        parts_taken.append(res[0])
        parts_hit.append(res[1])
    positions = np.concatenate(parts_rows) if parts_rows else np.zeros(0, dtype=np.int64)
    inverse = np.empty(len(ts), dtype=np.int64)
    inverse[positions] = np.arange(len(positions))
    inverse_arr = pa.array(inverse)
    # one reorder per view, and defaults applied once per feature over the whole column
    taken = pa.concat_tables(parts_taken).take(inverse_arr) if parts_taken else \
        pa.table({n: pa.array([], DTYPES[by_name[n]["dtype"]]) for n in wanted}
                 | ({EVENT_TS: pa.array([], pa.timestamp("us", tz="UTC"))} if stamps else {}))
    hit = np.concatenate(parts_hit)[inverse] if parts_hit else np.zeros(0, dtype=bool)
    times = as_int64(taken.column(EVENT_TS), fill=NO_TIME) if stamps else None
    return taken, hit, times


def entity_keys(view: dict[str, Any], entities: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """The view's join keys of the entity rows, cast to the stored key types (a value that
    does not cast is an EntityDataError naming it), and which rows have no null key."""
    keys = view["join_keys"]
    key_cols = {}
    for k in keys:
        if k not in entities.column_names:
            raise EntityDataError(f"the entity rows have no {k!r} column, a join key of feature view "
                                  f"{view_name(view)} (columns: {', '.join(entities.column_names)})")
        try:
            key_cols[k] = to_dtype(entities.column(k), KEY_TYPES[view["key_dtypes"][k]])
        except CastFailure as exc:
            raise EntityDataError(_cast_problem(entities.column(k), k, exc, f"the {view['key_dtypes'][k]} key of "
                                                f"feature view {view_name(view)}")) from None
    valid = np.ones(entities.num_rows, dtype=np.uint8)
    for k in keys:
        if key_cols[k].null_count:
            valid &= ~np.asarray(key_cols[k].is_null().to_numpy(zero_copy_only=False))
    return pa.table(key_cols), valid


def _with_defaults(req: ViewRequest, taken: pa.Table, hit: np.ndarray):
    """(index, feature, column) of each requested feature, its default where no row won."""
    by_name = {f["name"]: f for f in req.view["features"]}
    hit_arr = None
    for i, name in enumerate(req.features):
        col = taken.column(name)
        default = by_name[name]["default"]
        if default is not None and not hit.all():
            hit_arr = hit_arr if hit_arr is not None else pa.array(hit)
            col = pc.if_else(hit_arr, col, default_scalar(default, by_name[name]["dtype"]))
        yield i, name, col


def _bucket_indices(view: dict[str, Any], data: pa.Table, ent_keys: pa.Table, ent_ts: np.ndarray,
                    ent_valid: np.ndarray) -> np.ndarray:
    """Index into ``data`` of the winning row per entity row, -1 where none qualifies."""
    keys = view["join_keys"]
    if data.num_rows and any(data.column(k).null_count for k in keys):
        ok = pc.and_(*[pc.is_valid(data.column(k)) for k in keys]) if len(keys) > 1 else pc.is_valid(data.column(keys[0]))
        kept = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
        sub = _bucket_indices(view, data.take(pa.array(kept)), ent_keys, ent_ts, ent_valid)
        return np.where(sub >= 0, kept[np.maximum(sub, 0)], -1)
    vk, ek = _key_matrices(keys, data, ent_keys, view["key_dtypes"])
    vts = as_int64(data.column(EVENT_TS))
    vcr = as_int64(data.column(CREATED_TS), fill=NO_TIME)
    ttl = view.get("ttl_us") or 0
    pick = created_asof_indices if view.get("as_of") == AS_OF_CREATED else asof_indices
    try:
        return pick(vk, vts, vcr, ek, ent_ts, ent_valid, ttl)
    except ValueError:  # several parts not merged in order: sort once and retry
        order = sort_indices(data, view)
        order_np = order.to_numpy()
        sub = _bucket_indices(view, data.take(order), ent_keys, ent_ts, ent_valid)
        return np.where(sub >= 0, order_np[np.maximum(sub, 0)], -1)


def _key_matrices(keys: Sequence[str], data: pa.Table, ent: pa.Table,
                  dtypes: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) int64 key matrices; string keys become codes of one shared dictionary."""
    vcols, ecols = [], []
    for k in keys:
        v, e = data.column(k).combine_chunks(), ent.column(k).combine_chunks()
        if dtypes[k] == "string":
            codes = pa.chunked_array([v, e]).combine_chunks().dictionary_encode().indices
            codes = as_int64(codes, fill=-1)
            vcols.append(codes[: len(v)])
            ecols.append(codes[len(v):])
        else:
            vcols.append(as_int64(v, fill=0))
            ecols.append(as_int64(e, fill=0))
    if len(keys) == 1:
        return vcols[0].reshape(-1, 1), ecols[0].reshape(-1, 1)
    return np.ascontiguousarray(np.column_stack(vcols)), np.ascontiguousarray(np.column_stack(ecols))
