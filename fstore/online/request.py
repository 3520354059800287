"""Online reads of request shapes with request-time features (fstore.repo.request_time).

A shape that references a request view, or reads a view with ``on_miss: compute``, is
answered in two steps: the compiled read of every stored feature it needs (those asked
for, and the functions' inputs: the *inner* plan, with full names so that nothing
clashes), then the functions, vectorised over the request's rows. The same code answers
``FeatureStore.get_online_features`` and the server's Python path; the compiled fast path
never answers such a shape (fstore._ext._serve declines it). Shapes without request-time
features never come here.

Order: the ``on_miss`` fills first (a filled value is what request views read, so the
views a request view reads are filled too, even when not asked for), then the request
views; a fill's own inputs are the stored values (no chains). A fill is computed for the rows where one of the features it fills is
NOT_FOUND or EXPIRED (a feature with a declared default is DEFAULTED and never computed);
those values get the status COMPUTED and keep the view's event timestamp (that of the
expired row, or none). Request views' values are PRESENT, with no event timestamp.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from .._ext._constants import Status
from ..errors import MissingRequestData
from ..repo.definitions import DTYPES
from ..repo.functions import load
from ..repo.names import split_ref, view_name
from ..repo.request_time import apply, filled, fills_of, request_column
from ..repo.resolve import ViewRequest, find_view, resolve
from ..times import NO_TIME, now_us
from .plan import build_plan
from .response import OnlinePlan, OnlineResponse

_MISSED = (int(Status.NOT_FOUND), int(Status.EXPIRED))
_COMPUTED = int(Status.COMPUTED)
_ABSENT = object()


@dataclass
class Step:
    """One function to run: an on_miss fill of an inner view, or a request view."""

    where: str                          # 'request_view risk' / 'feature_view customer_stats_v1 on_miss'
    fn: Callable[..., Any]
    request: dict[str, str]             # request field -> dtype
    inputs: list[tuple[str, int, str]]  # (argument name, inner output index, dtype)
    outputs: list[tuple[str, str]]      # what the function must give: (feature, dtype)
    places: list[tuple[int, int]]       # (index into outputs, inner output index (fill) or final position)


@dataclass
class RequestPlan:
    """How to answer a request shape with request-time features."""

    inner: OnlinePlan           # the compiled read of the stored features needed
    plan: OnlinePlan            # the shape the caller sees (readers: the inner ones, then None per request view)
    take: list[int]             # final position -> inner output index, -1 where computed
    fills: list[Step] = field(default_factory=list)
    computes: list[Step] = field(default_factory=list)


def build_request_plan(registry: dict[str, Any], online: Any, config: Any, features: Any, service: Any,
                       full: bool, ready: frozenset[str] | None) -> RequestPlan | None:
    """The plan of a shape with request-time features; None for a plain shape."""
    computed: list[ViewRequest] = []
    stored = resolve(registry, features, service, full, ready, computed)
    if not computed and not any(r.view.get("on_miss") for r in stored):
        return None
    views = registry["feature_views"]
    refs = [f"{view_name(r.view)}:{f}" for r in stored for f in r.features]
    pinned: dict[str, str] = {}  # input reference -> the pinned one read
    input_views: list[dict[str, Any]] = []  # the views request views read, in their order

    def pin(ref: str, record: list[dict[str, Any]] | None = None) -> str:
        view_ref, feat = split_ref(ref)
        view = find_view(view_ref, views, ready, feat)
        pinned[ref] = f"{view_name(view)}:{feat}"  # type: ignore[arg-type]
        if record is not None:
            record.append(view)  # type: ignore[arg-type]
        return pinned[ref]

    computed_inputs = [pin(ref, input_views) for r in computed for ref in r.view["inputs"]]
    fill_views = fills_of([r.view for r in stored] + input_views)
    extra = [pin(ref) for v in fill_views for ref in v["on_miss"]["inputs"]] + computed_inputs
    inner_refs = list(dict.fromkeys(refs + extra))
    inner = build_plan(registry, online, inner_refs, None, True, ready) if inner_refs else \
        OnlinePlan([], [], [], [], [], [])  # request views that read no stored feature
    at = {name: i for i, name in enumerate(inner.names)}  # 'view_vN__feature' -> inner output index

    def index(pinned_ref: str) -> int:
        return at["__".join(split_ref(pinned_ref))]

    def dtype_of(pinned_ref: str) -> str:
        return inner.dtypes[index(pinned_ref)]

    n_out = sum(len(r.outputs) for r in stored + computed)
    names, dtypes, view_of, take = [""] * n_out, [""] * n_out, [0] * n_out, [-1] * n_out
    for r in stored:
        for feat, out, pos in zip(r.features, r.outputs, r.positions):
            i = index(f"{view_name(r.view)}:{feat}")
            names[pos], dtypes[pos], view_of[pos], take[pos] = out, inner.dtypes[i], inner.view_of[i], i
    plan = RequestPlan(inner, OnlinePlan(names, dtypes, view_of, inner.readers + [None] * len(computed),
                                         inner.views + [r.view["name"] for r in computed], inner.key_columns), take)
    for v in fill_views:
        spec, where = v["on_miss"], f"feature_view {view_name(v)} on_miss"
        outputs = [(f["name"], f["dtype"]) for f in filled(v)]
        places = [(k, at[f"{view_name(v)}__{name}"]) for k, (name, _) in enumerate(outputs)
                  if f"{view_name(v)}__{name}" in at]
        plan.fills.append(Step(where, load(config, spec["function"], obj=f"feature_view {v['name']}",
                                           field="on_miss.compute"), spec["request"],
                               [(split_ref(ref)[1], index(pinned[ref]), dtype_of(pinned[ref])) for ref in spec["inputs"]],
                               outputs, places))
    for k, r in enumerate(computed):
        rv = r.view
        outputs = [(f["name"], f["dtype"]) for f in rv["features"]]
        by_name = {name: j for j, (name, _) in enumerate(outputs)}
        for feat, out, pos in zip(r.features, r.outputs, r.positions):
            names[pos], dtypes[pos], view_of[pos] = out, outputs[by_name[feat]][1], len(inner.readers) + k
        plan.computes.append(Step(f"request_view {rv['name']}", load(config, rv["function"],
                                                                     obj=f"request_view {rv['name']}"),
                                  rv["request"], [(split_ref(ref)[1], index(pinned[ref]), dtype_of(pinned[ref]))
                                                  for ref in rv["inputs"]],
                                  outputs, [(by_name[feat], pos) for feat, pos in zip(r.features, r.positions)]))
    return plan


def request_args(step: Step, rows: list[Any], cols: list[list[Any]], pick: list[int] | None) -> dict[str, pa.Array]:
    """The function's arguments: request fields from the entity rows, inputs from the read."""
    args: dict[str, pa.Array] = {}
    chosen = rows if pick is None else [rows[j] for j in pick]
    for name, dtype in step.request.items():
        # a field no row carries is an error; a row without it, when others have it, is a null (as the
        # network clients send it: every key any row has is a column, and as a frame's null)
        values = [row.get(name, _ABSENT) for row in chosen]
        if values and all(v is _ABSENT for v in values) and not any(name in row for row in rows):
            err = MissingRequestData(f"the entity rows have no {name!r}, a request field of {step.where} "
                                     f"({dtype}); send it with the entity rows")
            err.field = name
            raise err
        args[name] = request_column([None if v is _ABSENT else v for v in values], name, dtype, where=step.where)
    for name, i, dtype in step.inputs:
        col = cols[i] if pick is None else [cols[i][j] for j in pick]
        args[name] = pa.array(col, type=DTYPES[dtype])
    return args


def answer(rplan: RequestPlan, rows: list[Any], values: list[Any], status: bytearray,
           stamps: bytearray) -> tuple[list[Any], bytearray, bytearray]:
    """The caller's values (flat, output-major), statuses and timestamps from the inner
    read's: fills applied, request views computed."""
    n = len(rows)
    cols = [values[i * n:(i + 1) * n] for i in range(len(rplan.inner.names))]
    stored = [list(c) for c in cols] if len(rplan.fills) > 1 else cols  # fills read stored values: no chains
    for step in rplan.fills:
        missed = [j for j in range(n) if any(status[i * n + j] in _MISSED for _, i in step.places)]
        if not missed:
            continue  # nothing missed: the function is not called
        got = apply(step.fn, request_args(step, rows, stored, missed), step.outputs, len(missed), where=step.where)
        for k, i in step.places:
            new = got[k].to_pylist()
            for m, j in enumerate(missed):
                if status[i * n + j] in _MISSED:
                    cols[i][j] = new[m]
                    status[i * n + j] = _COMPUTED
    out_status = bytearray(len(rplan.take) * n)
    flat: list[Any] = [None] * (len(rplan.take) * n)
    for pos, i in enumerate(rplan.take):
        if i >= 0:
            flat[pos * n:(pos + 1) * n] = cols[i]
            out_status[pos * n:(pos + 1) * n] = status[i * n:(i + 1) * n]
    for step in rplan.computes:
        got = apply(step.fn, request_args(step, rows, cols, None), step.outputs, n, where=step.where)
        for k, pos in step.places:
            flat[pos * n:(pos + 1) * n] = got[k].to_pylist()  # PRESENT: out_status is zeros
    if rplan.computes:
        stamps = stamps + NO_TIME.to_bytes(8, "little", signed=True) * (n * len(rplan.computes))
    return flat, out_status, stamps


def read_request(read: Callable[..., Any], env: Any, rplan: RequestPlan, rows: list[Any], at: Any,
                 served: tuple[Any, ...] | None = None) -> OnlineResponse:
    """A read of a request shape (``read``: fstore._ext._online.read), in process or on the
    server's Python path. ``served`` (the read's identity, as for a compiled read) hands the
    answer to the recorders that take answered reads (``record_computed``: the feature log
    logs computed values from the answer, as no stored row holds them)."""
    when = now_us() if at is None else at  # the instant the statuses are decided, and logged
    if rplan.inner.readers:
        inner = read(env, rplan.inner, rows, when, OnlineResponse, False, None)
        flat, status, stamps = answer(rplan, rows, inner._values, inner._raw_status, inner._raw_ts)
    else:
        flat, status, stamps = answer(rplan, rows, [], bytearray(), bytearray())
    if served is not None:
        record_answer(served, rplan, rows, flat, status, stamps, when)
    return OnlineResponse(rows, rplan.plan, flat, status, stamps, True)


def record_answer(served: tuple[Any, ...], rplan: RequestPlan, rows: list[Any], flat: list[Any], status: bytearray,
                  stamps: bytearray, when: int) -> None:
    """Hand an answered request-shape read to the recorders of ``served`` that take one; a
    recorder that raises is told to its ``on_error`` (counted and logged), never to the read."""
    for recorder in served[0]:
        take = getattr(recorder, "record_computed", None)
        if take is None:
            continue
        try:
            take(served, rplan, rows, flat, status, stamps, when)
        except Exception:  # noqa: BLE001 - a recorder must never fail a read
            if recorder.on_error is not None:
                recorder.on_error(recorder)
