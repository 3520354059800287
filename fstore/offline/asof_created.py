"""The point-in-time pick of a view with ``as_of: created_timestamp``: what was known then.

For an entity row at time ``T`` a view row qualifies when it was available by ``T`` (its
created time, or its event time where the created time is null, is ``<= T``), its event
time is ``<= T``, and with a ttl ``T - ttl <= event time``. The newest qualifying row by
(event time, created time, storage order) wins: the value an online store kept current
by materialization would have served at ``T``.

Why this is exact and still one binary search per entity row: call a row's *ready time*
``max(available, event time)``; a row passes the first two conditions iff its ready time
is ``<= T``. Sorting each key group by ready time, the qualifying rows are a prefix of
the group, so the winner is the prefix's maximum by (event, created, storage), a running
maximum computed once per bucket. The ttl bound needs no search: the winner has the
newest event time of all qualifying rows, so if it is older than ``T - ttl`` every one
is. The compiled kernel finds each prefix (its sort precondition holds on ready times).
"""
from __future__ import annotations

import numpy as np

from .._ext._asof import asof_indices

INT64_MIN = np.iinfo(np.int64).min


def created_asof_indices(view_keys: np.ndarray, view_ts: np.ndarray, view_created: np.ndarray,
                         entity_keys: np.ndarray, entity_ts: np.ndarray, entity_valid: np.ndarray,
                         ttl_us: int) -> np.ndarray:
    """Index of the winning view row per entity row (-1: none), by the module's rule.

    The view rows must be grouped by key and sorted by (event, created, storage order)
    inside a group, as the kernel requires (``view_created`` holds INT64_MIN for a
    null); otherwise the kernel's ValueError is raised, so the caller can sort and retry.
    Returns positions into those rows.
    """
    asof_indices(view_keys, view_ts, view_created, entity_keys[:0], entity_ts[:0], entity_valid[:0], 0)
    n = len(view_ts)
    if n == 0 or len(entity_ts) == 0:
        return np.full(len(entity_ts), -1, dtype=np.int64)
    group = _group_ids(view_keys)
    available = np.where(view_created == INT64_MIN, view_ts, view_created)
    ready = np.maximum(available, view_ts)
    by_ready = _order_by_ready(group, ready)
    shifted = group[by_ready] * n + by_ready
    best = np.maximum.accumulate(shifted) - group[by_ready] * n  # winner of each prefix
    prefix = asof_indices(np.ascontiguousarray(view_keys[by_ready]), np.ascontiguousarray(ready[by_ready]),
                          np.zeros(n, dtype=np.int64), entity_keys, entity_ts, entity_valid, 0)
    hit = prefix >= 0
    winner = np.where(hit, best[np.maximum(prefix, 0)], -1)
    if ttl_us > 0:
        lower = np.where(entity_ts < INT64_MIN + ttl_us, INT64_MIN, entity_ts - ttl_us)
        winner = np.where(hit & (view_ts[np.maximum(winner, 0)] >= lower), winner, -1)
    return winner


def _order_by_ready(group: np.ndarray, ready: np.ndarray) -> np.ndarray:
    """Row order by (group, ready time), a tie kept in storage order (which ranks rows by
    event then created time). One stable sort of a combined int64 key; when group and
    time do not fit in one, the time is first replaced by its rank (a second sort)."""
    n = len(ready)
    low, span = int(ready.min()), int(ready.max()) - int(ready.min()) + 1
    if int(group[-1] + 1) * span >= 2**63:
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(ready, kind="stable")] = np.arange(n)
        ready, low, span = rank, 0, n
    return np.argsort(group * span + (ready - low), kind="stable")


def _group_ids(view_keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... numbering the contiguous runs of equal key tuples."""
    change = np.any(view_keys[1:] != view_keys[:-1], axis=1)
    return np.concatenate(([0], np.cumsum(change))).astype(np.int64)
