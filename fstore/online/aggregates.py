"""Aggregation views online: the aggregate as of a time, written by materialization and
refreshed by every push of raw events (docs/transformations.md, "Windowed aggregations").

An online row of an aggregation view holds every aggregate of one entity as of a time
``a``: the window (a - w, a] exactly, computed by the offline kernel
(fstore.offline.windows). Its event time is the entity's newest event at or before
``a`` (what a ttl is compared with, as for a plain row) and its created time is ``a``
itself, so the newer-only rule keeps the most recent computation: a later ``a`` never
has an older newest event. Materialization computes every entity as of END; a push
appends the raw events to the offline store (always: the aggregate needs the history),
adds their tiles, and recomputes the pushed entities as of now. Each row also carries
the time its value stops being exact (VALID_UNTIL: an event leaves a window or the next
one enters), after which the compiled reader answers EXPIRED rather than a moved window's
old value.
"""
from __future__ import annotations

import uuid
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._ext._window import newest_in_window, valid_until
from ..offline.casting import TS_TYPE, as_int64, default_scalar
from ..offline.layout import CREATED_TS, EVENT_TS, UNIT, bucket_ids, offline_schema
from ..offline.compact import PUSH_PREFIX, compact_pushes
from ..offline.store import OfflineStore
from ..offline.tiles import events_view, sync_tiles
from ..offline.windows import bucket_aggregates, key_matrices, one_matrix
from ..times import NO_TIME, now_us
from .codec import VALID_UNTIL


def aggregate_rows(offline: OfflineStore, view: dict[str, Any], as_of_us: int,
                   keys: pa.Table | None = None, *, buckets: Sequence[int] | None = None,
                   start_us: int | None = None, recent: bool = False) -> pa.Table:
    """Online rows (the offline schema of ``view`` and ``VALID_UNTIL``) of every entity with
    an event at or before ``as_of_us`` (or only of ``keys``; only in ``buckets``; with
    ``start_us``, only entities whose newest event at or before ``as_of_us`` is at or after
    it), sorted by key. ``recent`` (with ``keys`` and ``start_us``) reads only the keys' rows
    and tiles of the runs with an event at or after ``start_us`` (exact for the entities it
    returns: their newest event, their windows' events and their next event are in those
    runs; ``refresh_after_push``).

    A row's VALID_UNTIL is when its value stops being exact (fstore._ext._window.valid_until):
    the reader answers EXPIRED from then on, so a window that has moved is never served as
    if it had not."""
    ev = events_view(view)
    manifest = offline.manifest(ev)
    if manifest is None:
        return offline_schema(view).append(pa.field(VALID_UNTIL, pa.int64())).empty_table()
    if recent:
        manifest = _runs_since(manifest, start_us)
    n_buckets = manifest["buckets"]
    wanted_buckets = range(n_buckets) if keys is None else sorted(set(bucket_ids(keys, view["join_keys"], n_buckets)))
    wanted_buckets = wanted_buckets if buckets is None else buckets
    no_ttl = {**view, "ttl_us": None}  # the reader applies the ttl at read time
    windows = np.array(sorted({a["window_us"] for a in view["aggregations"]}), dtype=np.int64)
    schema = offline_schema(view).append(pa.field(VALID_UNTIL, pa.int64()))
    tables = []
    for b in wanted_buckets:
        q = None if keys is None else keys.filter(pa.array(bucket_ids(keys, view["join_keys"], n_buckets) == b))
        events = offline.read_bucket(ev, manifest, b, [], q if recent else None)
        if q is None:
            q = _distinct_keys(events, view)
        if not q.num_rows or not events.num_rows:
            continue
        ek, qk = key_matrices(view, [events, q])
        ets = as_int64(events.column(EVENT_TS))
        valid = np.ones(q.num_rows, dtype=np.uint8)
        q_ts = np.full(q.num_rows, as_of_us, dtype=np.int64)
        newest = newest_in_window(ek, ets, qk, q_ts, valid, max(1, as_of_us - int(ets.min()) + 1))
        has = newest > NO_TIME if start_us is None else newest >= start_us
        if not has.any():
            continue
        until = valid_until(ek, ets, qk, q_ts, valid, windows)[has]
        q = q.filter(pa.array(has))
        values = bucket_aggregates(offline, no_ttl, manifest, b, view["aggregations"], q, q_ts[has], valid[has],
                                   recent)
        cols = {k: q.column(k) for k in view["join_keys"]}
        cols[EVENT_TS] = pa.array(newest[has], pa.int64()).cast(TS_TYPE)
        cols[CREATED_TS] = pa.array(q_ts[has], pa.int64()).cast(TS_TYPE)
        cols[UNIT] = pa.nulls(q.num_rows, pa.int32())
        cols |= {f["name"]: _with_default(values[f["name"]], f) for f in view["features"]}
        cols[VALID_UNTIL] = pa.array(until, pa.int64())
        tables.append(pa.table(cols, schema=schema))
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    return table.sort_by([(k, "ascending") for k in view["join_keys"]])


def _with_default(col: pa.Array, feature: dict[str, Any]) -> pa.Array:
    """A null aggregate (no event) as the declared default, as training sets give it."""
    if feature["default"] is None or not col.null_count:
        return col
    return pc.fill_null(col, default_scalar(feature["default"], feature["dtype"]))


def _distinct_keys(events: pa.Table, view: dict[str, Any]) -> pa.Table:
    """The keys of events sorted by key, once each."""
    keys = events.select(view["join_keys"])
    if keys.num_rows < 2:
        return keys
    m = key_matrices(view, [keys])[0]
    first = np.ones(len(m), dtype=bool)
    first[1:] = (m[1:] != m[:-1]).any(axis=1)
    return keys.filter(pa.array(first))


def _runs_since(manifest: dict[str, Any], start_us: int | None) -> dict[str, Any]:
    """The manifest with only the runs holding an event at or after ``start_us`` (a run
    written before runs recorded their range is kept)."""
    keep = [r for r in manifest["runs"]
            if "events" not in r or (r["events"] is not None and r["events"][1] >= (NO_TIME if start_us is None
                                                                                     else start_us))]
    return {**manifest, "runs": keep}


def refresh_after_push(offline: OfflineStore, view: dict[str, Any], events: pa.Table) -> pa.Table:
    """Append pushed raw ``events`` (typed as the events view) offline with their tiles, and
    return the online rows of their entities recomputed as of now.

    Pushed runs are compacted level by level (fstore.offline.compact), so a bucket's files
    stay few however many pushes there were. The recomputation reads only the pushed keys'
    rows and tiles of the runs with an event in the longest window (a stream's recent
    pushes, not the whole history); an entity with no event there (every pushed event older
    than the window, or dated after now) is recomputed from its whole history, so the row
    written is the same as a full recomputation's."""
    ev = events_view(view)
    offline.append_rows(ev, events, f"{PUSH_PREFIX}{uuid.uuid4().hex}")
    compact_pushes(offline, ev)
    sync_tiles(offline, view, one_matrix(view))
    keys = _distinct_keys(events.sort_by([(k, "ascending") for k in view["join_keys"]]), view)
    at = now_us()
    window = max(a["window_us"] for a in view["aggregations"])
    try:
        rows = aggregate_rows(offline, view, at, keys, start_us=at - window + 1, recent=True)
    except FileNotFoundError:  # another process compacted after our manifest read: read it again
        rows = aggregate_rows(offline, view, at, keys, start_us=at - window + 1, recent=True)
    if rows.num_rows == keys.num_rows:
        return rows
    found = key_matrices(view, [rows, keys])
    missing = keys.filter(pa.array(~_rows_in(found[1], found[0])))
    return pa.concat_tables([rows, aggregate_rows(offline, view, at, missing)]).sort_by(
        [(k, "ascending") for k in view["join_keys"]])


def _rows_in(m: np.ndarray, of: np.ndarray) -> np.ndarray:
    """Which rows of key matrix ``m`` are rows of ``of``."""
    seen = {tuple(r) for r in of.tolist()}
    return np.array([tuple(r) in seen for r in m.tolist()], dtype=bool)
