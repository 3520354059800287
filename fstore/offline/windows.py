"""Training-set columns of an aggregation view: each entity row's windowed aggregates.

The rule (docs/transformations.md, "Windowed aggregations"): a row at time t with key k
gets, for each aggregation, the aggregate of the non-null values of its column over k's
events with event time in (t - window, t]. count is 0 and the others null (then the
feature's default) when there is none. With a ttl, an aggregate whose newest event in
the window (any event, null values included) is older than t - ttl is treated as having
no event, as a plain view's row older than its ttl is not used. A null key matches
nothing.

Per bucket (the offline store's entity-key buckets), the compiled kernel
(fstore._ext._window.window_aggregate) answers every entity row from the bucket's tiles
(fstore.offline.tiles) plus the raw events of the window's two partial edge tiles.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._ext._window import newest_in_window, window_aggregate
from ..progress import Reporter
from ..repo.definitions import DTYPES
from ..repo.names import view_name
from ..repo.resolve import ViewRequest
from ..times import NO_TIME
from .casting import as_int64, default_scalar
from .layout import CREATED_TS, EVENT_TS, bucket_ids
from .store import OfflineStore
from .tiles import PARTS, TILE_START, events_view, grain_of, kernel_values, read_tiles

#: what a function takes from the kernel's (sum, count, min, max, last)
_PICK = {"sum": 0, "count": 1, "min": 2, "max": 3, "last": 4}


def key_matrices(view: dict[str, Any], tables: list[pa.Table]) -> list[np.ndarray]:
    """The (n, k) int64 key matrix of each table, codes shared by all: integers as they
    are, strings as their rank among every value given, so that sorted rows stay sorted
    (a null key becomes -1; such rows are never looked up)."""
    per_col: list[list[np.ndarray]] = []
    for k in view["join_keys"]:
        cols = [t.column(k).combine_chunks() if isinstance(t.column(k), pa.ChunkedArray) else t.column(k)
                for t in tables]
        if view["key_dtypes"][k] == "string":
            both = pa.chunked_array(cols, type=pa.string()).combine_chunks() if cols else pa.array([], pa.string())
            enc = both.dictionary_encode()
            rank = np.empty(len(enc.dictionary), dtype=np.int64)
            rank[pc.array_sort_indices(enc.dictionary).to_numpy()] = np.arange(len(enc.dictionary))
            codes = as_int64(enc.indices, fill=-1)
            codes = np.where(codes >= 0, rank[np.maximum(codes, 0)] if len(rank) else -1, -1)
            bounds = np.cumsum([0, *(len(c) for c in cols)])
            per_col.append([codes[bounds[i]:bounds[i + 1]] for i in range(len(cols))])
        else:
            per_col.append([as_int64(c, fill=-1) for c in cols])
    return [np.ascontiguousarray(np.column_stack([pc_[i] for pc_ in per_col]), dtype=np.int64)
            for i in range(len(tables))]


def one_matrix(view: dict[str, Any]):
    return lambda table: key_matrices(view, [table])[0]


def join_aggregations(store: OfflineStore, req: ViewRequest, manifest: dict[str, Any], key_table: pa.Table,
                      valid: np.ndarray, ts: np.ndarray, pool: ThreadPoolExecutor,
                      progress: Reporter) -> Iterator[tuple[int, str, pa.ChunkedArray]]:
    """(position, output name, column) of each requested aggregate (module doc)."""
    view = req.view
    n_buckets = manifest["buckets"]
    buckets = bucket_ids(key_table, view["join_keys"], n_buckets)
    order = np.argsort(buckets, kind="stable")
    bounds = np.searchsorted(buckets[order], np.arange(n_buckets + 1))
    wanted = wanted_aggregations(req)

    def one(b: int):
        rows = order[bounds[b]:bounds[b + 1]]
        if len(rows) == 0:
            return rows, None
        return rows, bucket_aggregates(store, view, manifest, b, wanted, key_table.take(pa.array(rows)),
                                       ts[rows], valid[rows])

    parts_rows, parts_vals = [], []
    for rows, res in pool.map(one, range(n_buckets)):
        progress.advance(1, info=view_name(view))
        if res is not None:
            parts_rows.append(rows)
            parts_vals.append(res)
    positions = np.concatenate(parts_rows) if parts_rows else np.zeros(0, dtype=np.int64)
    yield from aggregate_columns(req, len(ts), positions, parts_vals)


def wanted_aggregations(req: ViewRequest) -> list[dict[str, Any]]:
    """The aggregations a request names, each once, in request order."""
    aggs = {a["name"]: a for a in req.view["aggregations"]}
    return [aggs[n] for n in dict.fromkeys(req.features)]


def aggregate_columns(req: ViewRequest, n: int, positions: np.ndarray,
                      parts_vals: list[dict[str, pa.Array]]) -> Iterator[tuple[int, str, pa.ChunkedArray]]:
    """(position, output name, column) of each requested aggregate, in entity order, from
    the per-bucket results ``parts_vals`` of the entity rows at ``positions`` (in that
    order), the feature's default where there was no event."""
    view = req.view
    inverse = np.empty(n, dtype=np.int64)
    inverse[positions] = np.arange(len(positions))
    by_feature = {f["name"]: f for f in view["features"]}
    for i, name in enumerate(req.features):
        f = by_feature[name]
        chunks = [p[name] for p in parts_vals]
        col = pa.concat_arrays(chunks).take(pa.array(inverse)) if chunks else pa.array([], DTYPES[f["dtype"]])
        if f["default"] is not None and col.null_count:
            col = pc.fill_null(col, default_scalar(f["default"], f["dtype"]))
        yield req.positions[i], req.outputs[i], pa.chunked_array([col], type=DTYPES[f["dtype"]])


def bucket_aggregates(store: OfflineStore, view: dict[str, Any], manifest: dict[str, Any], bucket: int,
                      wanted: list[dict[str, Any]], q_table: pa.Table, q_ts: np.ndarray,
                      q_valid: np.ndarray, only_query_keys: bool = False) -> dict[str, pa.Array]:
    """The aggregates ``wanted`` for the query rows of one bucket (nulls where no event);
    ``only_query_keys`` keeps only the query keys' events and tiles once read (a few keys
    of a big bucket, as a push asks)."""
    ev = events_view(view)
    columns = list(dict.fromkeys(a["column"] for a in wanted))
    keys = q_table.select(view["join_keys"]) if only_query_keys else None
    events = store.read_bucket(ev, manifest, bucket, columns, keys)
    tiles = read_tiles(store, view, manifest, bucket, one_matrix(view), keys)
    ek, tk, qk = key_matrices(view, [events, tiles, q_table])
    ets = as_int64(events.column(EVENT_TS))
    ecr = as_int64(events.column(CREATED_TS), fill=NO_TIME)
    # the queries in (key, time) order, so that the kernel's binary searches walk memory
    # forward (cache-warm) instead of jumping: about twice as fast on a big bucket
    order = np.lexsort((q_ts, *qk.T[::-1]))
    qk = np.ascontiguousarray(qk[order])
    q_valid = np.ascontiguousarray(q_valid[order], dtype=np.uint8)
    q_ts = np.ascontiguousarray(q_ts[order], dtype=np.int64)
    back = pa.array(np.argsort(order))
    grain = grain_of(view)
    ttl = view.get("ttl_us") or 0
    dtypes = {f["name"]: f["dtype"] for f in ev["features"]}
    results: dict[tuple[str, int], tuple] = {}
    newest: dict[int, np.ndarray] = {}
    out: dict[str, pa.Array] = {}
    inputs: dict[str, tuple] = {}  # per column: its values and tiles as the kernel takes them
    tile_start = as_int64(tiles.column(TILE_START))
    for a in wanted:
        col, w = a["column"], a["window_us"]
        if col not in inputs:
            vals, evalid = kernel_values(events.column(col), dtypes[col])
            t = [as_int64(tiles.column(f"{col}__{p}")) if p in ("count", "last_ts", "last_cr") else
                 np.ascontiguousarray(tiles.column(f"{col}__{p}").to_numpy(), dtype=vals.dtype) for p in PARTS]
            inputs[col] = (vals, evalid, t)
        if (col, w) not in results:
            vals, evalid, t = inputs[col]
            results[(col, w)] = window_aggregate(ek, ets, ecr, vals, evalid, tk, tile_start, *t, qk, q_ts, q_valid,
                                                 w, grain)
        s, count, mn, mx, last = results[(col, w)]
        count = count.copy()
        if ttl:
            if w not in newest:
                newest[w] = newest_in_window(ek, ets, qk, q_ts, q_valid, w)
            count[newest[w] < q_ts - ttl] = 0  # expired: as if no event (NO_TIME is older than any bound)
        none = count == 0
        fn = a["function"]
        dtype = DTYPES[next(f["dtype"] for f in view["features"] if f["name"] == a["name"])]
        if fn == "count":
            out[a["name"]] = pa.array(count, pa.int64())
        elif fn == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                out[a["name"]] = pa.array(s / np.maximum(count, 1), pa.float64(), mask=none)
        else:
            vals = (s, count, mn, mx, last)[_PICK[fn]]
            out[a["name"]] = pa.array(vals, mask=none).cast(dtype)
    return {name: col.take(back) for name, col in out.items()}


def newest_events(store: OfflineStore, view: dict[str, Any], manifest: dict[str, Any], key_table: pa.Table,
                  valid: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Each row's newest event at or before its time (NO_TIME where none; any event, null
    values included): what an online row of the view records as its event time, so what a
    skew check compares a served row's event time with."""
    ev = events_view(view)
    buckets = bucket_ids(key_table, view["join_keys"], manifest["buckets"])
    out = np.full(len(ts), NO_TIME, dtype=np.int64)
    for b in np.unique(buckets):
        rows = np.flatnonzero(buckets == b)
        events = store.read_bucket(ev, manifest, int(b), [])
        if not events.num_rows:
            continue
        ek, qk = key_matrices(view, [events, key_table.take(pa.array(rows))])
        ets = as_int64(events.column(EVENT_TS))
        q_ts = np.ascontiguousarray(ts[rows], dtype=np.int64)
        span = max(1, int(q_ts.max()) - int(ets.min()) + 1)  # every event at or before the row's time
        out[rows] = newest_in_window(ek, ets, qk, q_ts, np.ascontiguousarray(valid[rows], dtype=np.uint8), span)
    return out
