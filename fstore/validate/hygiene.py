"""Rule L4, hygiene: checks whose failures make training sets wrong or unreproducible.

- a view without ttl that a service reads (warning: a years-old value is served as current);
- stored rows whose event time is later than the ingest run that wrote them (warning: a value
  from the future, usually a time-zone mistake; scheduled values are legitimate);
- rows with equal keys, event time and created time but different values (error: which one
  a training set gets is arbitrary; not for an aggregation view, whose rows are events);
- a join key column of one entity stored with different dtypes by different views (error: the
  same entity id cannot match in both).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..offline.layout import CREATED_TS, EVENT_TS
from ..repo.aggregations import is_aggregation_view
from ..repo.names import view_name
from ..repo.resolve import resolve
from ..times import from_us, to_us
from .context import Context
from .data import read_view, times
from .findings import ERROR, WARNING, Finding

RULE = "L4"
_ALL = pc.CountOptions(mode="all")  # a null counts as a value: null vs 1.0 is a difference


def check_hygiene(ctx: Context) -> list[Finding]:
    findings = no_ttl(ctx) + key_dtypes(ctx)
    for view in ctx.ingested():
        # an aggregation view stores events, not snapshots: two events at one time are two
        # events, and its features are computed, not stored (so only their times are checked)
        findings += future_events(ctx, view) + ([] if is_aggregation_view(view) else duplicates(ctx, view))
    return findings


def no_ttl(ctx: Context) -> list[Finding]:
    """A warning per view version without ttl, naming the services that read it."""
    readers: dict[str, list[str]] = defaultdict(list)
    for service in ctx.services:
        for req in resolve(ctx.doc or {}, feature_service=service):
            readers[view_name(req.view)].append(service)
    return [Finding(RULE, WARNING, f"view {name} has no ttl and is read by service(s) {', '.join(svcs)}: "
                                   "a value of any age is used as current; set ttl on the view",
                    view=name) for name, svcs in sorted(readers.items()) if not ctx.views[name].get("ttl_us")]


def key_dtypes(ctx: Context) -> list[Finding]:
    """An error per join key stored as int64 by some views of its entity and string by others."""
    seen: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, view in sorted(ctx.views.items()):
        for key, dtype in view["key_dtypes"].items():
            seen[key][dtype].append(name)
    out = []
    for key, by_dtype in sorted(seen.items()):
        if len(by_dtype) > 1:
            spread = "; ".join(f"{d} in {', '.join(v)}" for d, v in sorted(by_dtype.items()))
            out.append(Finding(RULE, ERROR, f"join key {key!r} has different dtypes across views ({spread}): "
                                            "the same entity id cannot match in all of them; make the source "
                                            "columns one type", view=sorted(by_dtype.items())[-1][1][0]))
    return out


def future_events(ctx: Context, view: dict[str, Any]) -> list[Finding]:
    """A warning when stored rows have an event time later than their ingest run's time."""
    manifest = ctx.manifest(view)
    ahead, latest = 0, None
    for run in manifest["runs"] if manifest else []:
        if not run.get("at"):
            continue
        at = to_us(run["at"])
        if run.get("events") and run["events"][1] <= at:
            continue
        for part in run["parts"].values():
            ev = times(pq.read_table(ctx.engine.store.view_dir(view) / part, columns=[EVENT_TS]), EVENT_TS)
            ahead += int(np.count_nonzero(ev > at))
            if len(ev):
                latest = int(ev.max()) if latest is None else max(latest, int(ev.max()))
    if not ahead:
        return []
    return [Finding(RULE, WARNING, f"{ahead:,} row(s) of view {view_name(view)} have an event time later than the "
                                   f"ingest run that stored them (latest {from_us(latest).isoformat()}): values "
                                   "from the future, often a time-zone mistake", view=view_name(view), rows=ahead)]


def duplicates(ctx: Context, view: dict[str, Any]) -> list[Finding]:
    """An error per feature whose value differs between rows of one (keys, event ts, created ts)."""
    data = read_view(ctx, view)
    if not data.num_rows:
        return []
    group = [*view["join_keys"], EVENT_TS, CREATED_TS]
    feats = [f["name"] for f in view["features"]]
    table = data.select(group + feats)
    agg = table.group_by(group).aggregate([(f, "count_distinct", _ALL) for f in feats] + [([], "count_all")])
    counts = agg.column("count_all").to_numpy()
    out = []
    for f in feats:
        clash = agg.column(f"{f}_count_distinct").to_numpy() > 1
        if clash.any():
            rows = int(counts[clash].sum())
            first = {c: agg.column(c)[int(np.flatnonzero(clash)[0])].as_py() for c in view["join_keys"]}
            ets = times(agg.filter(pa.array(clash)), EVENT_TS)[0]
            out.append(Finding(RULE, ERROR, f"{rows:,} row(s) of view {view_name(view)} share keys, event time and "
                                            f"created time but differ in {f} (first: {first}, event "
                                            f"{from_us(int(ets)).isoformat()}): which one a training set uses is "
                                            "arbitrary; deduplicate the source or set a created timestamp",
                               view=view_name(view), feature=f, rows=rows))
    return out
