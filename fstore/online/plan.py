"""Online read plans: which LMDB databases, offsets and defaults answer a request shape.

The rule is the point-in-time rule of training sets with "now" as the entity
timestamp: the stored row of the entity (the newest materialized, loaded or
pushed) is used when ``now - ttl <= event_ts <= now``; otherwise the feature's
declared default, or null. So the online vector of an entity equals the offline
one built at the same instant.

The statuses this rule gives each value are listed in fstore.online.response, and
decided in one place, ViewReader._lookup in fstore/_ext/_online.pyx.

A plan (which LMDB databases, which byte offsets, which defaults) is built once
per registry version and request shape and cached; a request then does its key
encoding, lookups and decoding in one compiled pass (fstore._ext._online).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from .._ext._online import ViewReader
from ..errors import EntityRowError
from ..repo.names import view_name
from ..repo.resolve import resolve
from .codec import feature_kinds, key_kinds
from .response import OnlinePlan
from .store import OnlineStore


def build_plan(registry: dict[str, Any], online: OnlineStore, features: Sequence[str] | None,
               feature_service: str | None, full_feature_names: bool,
               ready: frozenset[str] | None = None) -> OnlinePlan:
    """The plan of a request shape; unpinned references read the newest version in ``ready``
    (those with online data, fstore.repo.readiness), else the newest."""
    requests = resolve(registry, features, feature_service, full_feature_names, ready)
    n_out = sum(len(r.outputs) for r in requests)
    names, dtypes, view_of = [""] * n_out, [""] * n_out, [0] * n_out
    readers, views, keys = [], [], []
    for v, req in enumerate(requests):
        view = req.view
        by_name = {f["name"]: i for i, f in enumerate(view["features"])}
        idx = [by_name[f] for f in req.features]
        defaults = [python_default(view["features"][i]) for i in idx]
        readers.append(ViewReader(online.db(view_name(view)), view["join_keys"], key_kinds(view),
                                  feature_kinds(view), idx, defaults, view.get("ttl_us") or 0, req.positions))
        views.append(view_name(view))
        for pos, out, i in zip(req.positions, req.outputs, idx):
            names[pos], dtypes[pos], view_of[pos] = out, view["features"][i]["dtype"], v
        keys.extend(k for k in view["join_keys"] if k not in keys)
    return OnlinePlan(names, dtypes, view_of, readers, views, keys)


def python_default(feature: dict[str, Any]) -> Any:
    """A feature's declared default as a read answers it (timestamps as aware datetimes, bytes
    as bytes), from the JSON-safe form the registry keeps; None when it declares none."""
    d = feature["default"]
    if d is None:
        return None
    if feature["dtype"] == "timestamp":
        return dt.datetime.fromisoformat(d)
    if feature["dtype"] == "bytes" and isinstance(d, str):
        return d.encode()
    return d


def explain_bad_rows(rows: list[Any], plan: OnlinePlan, exc: Exception) -> Exception:
    """The error of a failed read, naming the entity row and key (found again, slowly)."""
    for reader, view in zip(plan.readers, plan.views):
        err = _explain_bad_row(rows, reader, view)
        if err is not None:
            return err
    return exc


def _explain_bad_row(rows: list[Any], reader: ViewReader, view: str) -> EntityRowError | None:
    """The first bad row, numbered from 1 as every row in fstore's messages is."""
    for i, row in enumerate(rows, 1):
        where = f"entity row {i} (rows are numbered from 1)"
        if not isinstance(row, dict):
            return EntityRowError(f"{where}: expected a mapping of join keys, got {type(row).__name__}")
        for col in reader.key_columns:
            if col not in row:
                return EntityRowError(f"{where}: missing join key {col!r} of feature view {view}")
        try:
            reader.keys_for([row])
        except (TypeError, ValueError, OverflowError) as exc:
            return EntityRowError(f"{where}, join key of feature view {view}: {exc}")
    return None
