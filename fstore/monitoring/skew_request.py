"""Skew of request-time features: what training recomputes from what was logged.

A request view's output has no stored row, and an ``on_miss`` fill's COMPUTED value has
none either, so the offline store alone cannot say what training would have seen. The
served-feature log of a request shape holds the request fields the caller sent
(fstore.monitoring.logtable, ``"request"`` in the metadata), so the check asks for the
training set of the logged rows themselves: an entity frame of the logged join keys and
request fields, with the request time as the entity timestamp, through the same
``get_historical_features`` code as training (fstore.offline.request_time), which runs the
same functions as serving (on_miss fills first, then request views). What that gives is
the expected value, compared exactly with what was served (docs/monitoring.md, "Skew").

The function is the one applied now: a function changed since the read (and applied again)
shows up as skew, which is the point. An input of a request view that names a view without a
version is read from the version the same read served (the log names it for that view's
columns), else from the newest applied version.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..offline.engine import LocalEngine
from ..offline.request_time import historical
from ..offline.store import OfflineStore
from .logread import REQUEST_TIME, LogGroup

ENTITY_TS = "__request_time"   # the entity frame's timestamp column (no logged column is named so)


def recomputed_columns(registry: dict[str, Any], store: OfflineStore, group: LogGroup) -> dict[str, pa.Array]:
    """Logged column -> the value training gives for each logged row, for the request-view
    outputs and the features of views with ``on_miss`` of a request shape's log group ({}
    for a group of a plain shape)."""
    views = registry["feature_views"]
    specs = [s for s in group.meta["features"]
             if s.get("request_view") or (views.get(s["view"]) or {}).get("on_miss")]
    if not specs:
        return {}
    table = group.table
    frame = {k: table.column(k) for k in group.meta["keys"]}
    for r in group.meta.get("request", []):
        frame[r["field"]] = table.column(r["column"])
    frame[ENTITY_TS] = table.column(REQUEST_TIME)
    entities = pa.table(frame)
    # an unpinned input reads the version the same read served (a logged column of that view), else the newest
    served = frozenset(s["view"] for s in group.meta["features"] if not s.get("request_view"))
    got = historical(LocalEngine(store.config), registry, store.config, [f"{s['view']}:{s['feature']}" for s in specs],
                     None, True, served, entities, ENTITY_TS)
    first = entities.num_columns
    return {s["column"]: got.column(first + i).combine_chunks() for i, s in enumerate(specs)}
