"""Rule PIT: the point-in-time self-test on the user's own data.

For a seeded sample of entity rows per ingested view version, the training set the
offline engine builds must equal a brute-force evaluation of the documented rule over
the same stored rows (fstore.offline.historical): candidates have equal keys and
``entity_ts - ttl <= event_ts <= entity_ts``; the newest by (event time, created time,
a null created time oldest) wins; with none, the feature's default (or null). A view with
``as_of: created_timestamp`` also requires the row to have been created by the entity time
(a null created time counts as its event time: docs/training-sets.md). Rows tied on both
times may hold different values (rule L4 reports them): any of those is accepted.
"""
from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa

from ..offline.layout import CREATED_TS, EVENT_TS
from ..repo.aggregations import is_aggregation_view
from ..repo.definitions import AS_OF_CREATED, DTYPES
from ..repo.names import view_name
from ..repo.resolve import resolve
from ..times import NO_TIME, from_us
from .context import Context
from .data import read_view, times
from .findings import ERROR, Finding

RULE = "PIT"
ENTITY_TS = "__validate_entity_ts"
#: entity times tried around a sampled row's event time: before, at, just after, inside the
#: ttl, at its edge (inclusive), past it (no ttl: a year later)
_OFFSETS = ("before", "at", "after", "inside", "ttl_edge", "past_ttl")
_YEAR_US = 365 * 86_400_000_000


def check_pit(ctx: Context) -> list[Finding]:
    """Every ingested view that picks a row per entity; an aggregation view computes over a
    window instead (its kernel has its own oracle: tests/test_aggregations.py)."""
    findings: list[Finding] = []
    for view in ctx.ingested():
        if not is_aggregation_view(view):
            findings += check_view(ctx, view)
    return findings


def check_view(ctx: Context, view: dict[str, Any]) -> list[Finding]:
    """The features of ``view`` where the engine's training set and the rule disagree."""
    data = read_view(ctx, view)
    if not data.num_rows:
        return []
    entities = sample_entities(view, data, ctx.sample, ctx.seed)
    requests = resolve(ctx.doc or {}, [view_name(view)])
    built = ctx.engine.historical(requests, entities, ENTITY_TS, None)
    expected, chosen = brute_force(view, data, entities)
    findings = []
    for f in view["features"]:
        got = built.column(f["name"]).to_pylist()
        bad = [r for r, (g, options) in enumerate(zip(got, expected[f["name"]])) if not any(_same(g, o) for o in options)]
        if bad:
            findings.append(_mismatch(view, f["name"], entities, bad, got, expected[f["name"]], chosen))
    return findings


def sample_entities(view: dict[str, Any], data: pa.Table, n: int, seed: int) -> pa.Table:
    """``n`` entity rows: the keys of randomly drawn stored rows (drawn again when the view has
    fewer than ``n``), each with an entity time at one of the offsets of ``_OFFSETS`` from the
    row's event time, each offset used about ``n / 6`` times."""
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(data.num_rows, size=n, replace=n > data.num_rows))
    ev = times(data, EVENT_TS)[picked]
    ttl = view.get("ttl_us") or 0
    kind = rng.permutation(np.arange(n) % len(_OFFSETS))  # every offset, as evenly as n allows
    inside = rng.integers(0, max(ttl, 2), len(picked))
    offset = np.select([kind == 0, kind == 1, kind == 2, kind == 3, kind == 4],
                       [np.full(len(picked), -1), np.zeros(len(picked), np.int64), np.ones(len(picked), np.int64),
                        inside, np.full(len(picked), ttl)], ttl + 1 if ttl else _YEAR_US)
    cols = {k: data.column(k).take(pa.array(picked)) for k in view["join_keys"]}
    cols[ENTITY_TS] = pa.array(ev + offset, pa.timestamp("us", tz="UTC"))
    return pa.table(cols)


def brute_force(view: dict[str, Any], data: pa.Table,
                entities: pa.Table) -> tuple[dict[str, list[list[Any]]], list[tuple[int, int] | None]]:
    """Per feature, per entity row: the values the rule allows (one, or several tied rows'); and
    per entity row, the (event, created) time of the winning row (None: no row qualifies)."""
    keys = view["join_keys"]
    rows_of: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(*(data.column(k).to_pylist() for k in keys))):
        rows_of[key].append(i)
    ev, cr = times(data, EVENT_TS), times(data, CREATED_TS)
    ttl = view.get("ttl_us") or 0
    by_created = view.get("as_of") == AS_OF_CREATED
    avail = np.where(cr == NO_TIME, ev, np.maximum(cr, ev)) if by_created else ev  # when a row could be seen
    values = {f["name"]: data.column(f["name"]).to_pylist() for f in view["features"]}
    out: dict[str, list[list[Any]]] = {f["name"]: [] for f in view["features"]}
    chosen: list[tuple[int, int] | None] = []
    ent_keys = zip(*(entities.column(k).to_pylist() for k in keys))
    for key, ets in zip(ent_keys, times(entities, ENTITY_TS)):
        cand = [i for i in rows_of.get(key, []) if ev[i] <= ets and avail[i] <= ets and (not ttl or ev[i] >= ets - ttl)]
        best = max(((ev[i], cr[i]) for i in cand), default=None)
        winners = [i for i in cand if (ev[i], cr[i]) == best]
        chosen.append(None if best is None else (int(best[0]), int(best[1])))
        for f in view["features"]:
            out[f["name"]].append([values[f["name"]][i] for i in winners] if winners else [default_value(f)])
    return out, chosen


def default_value(feature: dict[str, Any]) -> Any:
    """A feature's declared default as a value of its type (None when it has none)."""
    default, dtype = feature["default"], feature["dtype"]
    if default is None:
        return None
    if dtype == "timestamp":
        return dt.datetime.fromisoformat(default)
    if dtype == "bytes" and isinstance(default, str):
        return default.encode()
    return pa.scalar(default, DTYPES[dtype]).as_py()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and (a is None) == (b is None)


def _mismatch(view: dict[str, Any], feature: str, entities: pa.Table, bad: list[int], got: list[Any],
              expected: list[list[Any]], chosen: list[tuple[int, int] | None]) -> Finding:
    r = bad[0]
    key = ", ".join(f"{k}={entities.column(k)[r].as_py()!r}" for k in view["join_keys"])
    ets = int(times(entities, ENTITY_TS)[r])
    want = expected[r][0] if len(expected[r]) == 1 else expected[r]
    why = ("no row qualifies, so the default" if chosen[r] is None else
           f"the row with event time {_iso(chosen[r][0])}, created {_iso(chosen[r][1])}")
    return Finding(RULE, ERROR, f"{view_name(view)}:{feature} differs from the point-in-time rule on {len(bad)} of "
                                f"{entities.num_rows} sampled entity rows; first: entity {key} at {_iso(ets)}: "
                                f"the training set has {got[r]!r}, the rule gives {want!r} ({why})",
                   view=view_name(view), feature=feature, rows=len(bad))


def _iso(us: int) -> str:
    return "none" if us == NO_TIME else from_us(us).isoformat()
