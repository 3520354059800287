"""Request-time transformations: features computed at read time (Feast's on-demand
feature views), and a stored view's ``on_miss: compute``.

A ``RequestView`` (section ``request_views``) names a Python function of features/*.py,
the request fields it reads (with their dtypes: sent with the entity rows online, columns
of the entity frame offline), the stored features it reads (``view:feature``) and the
features it gives (names and dtypes). Services and reads reference its outputs as any
other: ``name:feature``. A FeatureView's ``on_miss: {compute: fn, request: {...}, inputs:
[...]}`` fills its features that have no default where the read finds no usable row
(NOT_FOUND, EXPIRED), with the status COMPUTED.

The function is called once per read, vectorised: with a dict of pyarrow Arrays (one per
request field, by its name, and one per input feature, by the feature's name), one value
per entity row; it returns a mapping of output name to an Array (or anything
``pyarrow.array`` takes) of the same length, or a pyarrow Table. Outputs are checked
against the declared dtypes. ``apply`` is the one implementation every path calls
(in process, the server, training sets), so training sees what serving computes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from ..errors import ComputedFeatureError, EntityRowError, InvalidDefinition
from .fields import DTYPES, check_name, listify, parse_dtype, parse_tags, parse_text
from .functions import declare_named, function_name
from .names import split_ref, unversioned, view_name
from .records import Feature, as_feature
from .resolve import check_reference

ON_MISS_KEYS = ("compute", "request", "inputs")


def parse_request_fields(value: Any, *, obj: str, field: str = "request") -> dict[str, str]:
    """Request field name -> canonical dtype."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinition(f"expected a mapping of request field to dtype, got {value!r}", obj=obj, field=field)
    return {check_name(k, obj=obj, field=f"{field}.{k}"): parse_dtype(v, obj=obj, field=f"{field}.{k}")
            for k, v in value.items()}


def parse_inputs(value: Any, *, obj: str, field: str = "inputs") -> list[str]:
    """The stored features a function reads: ``view:feature`` references (one feature each)."""
    refs = []
    for i, ref in enumerate(listify(value)):
        if not isinstance(ref, str) or not split_ref(ref)[1]:
            raise InvalidDefinition(f"an input is one stored feature, 'view:feature'; got {ref!r}",
                                    obj=obj, field=f"{field}[{i}]")
        refs.append(ref)
    return refs


def argument_names(request: dict[str, str], inputs: list[str], *, obj: str) -> None:
    """Each argument the function gets has one name: a request field's, or an input feature's."""
    seen = set(request)
    for ref in inputs:
        name = split_ref(ref)[1]
        if name in seen:
            raise InvalidDefinition(f"two inputs of the function are named {name!r}", obj=obj, field="inputs")
        seen.add(name)


@dataclass
class RequestView:
    """Features computed at read time by ``function`` from ``request`` fields and stored ``inputs``."""

    name: str
    function: Any = None        # a function of features/*.py, or its name
    request: Any = None         # {field: dtype}
    inputs: Any = None          # ["view:feature", ...]
    features: list[Any] = field(default_factory=list)
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        obj = f"request_view {self.name}"
        check_name(self.name, obj="request_view")
        self._function_obj = self.function if callable(self.function) else None
        self.function = function_name(self.function, obj=obj, field="function")
        self.request = parse_request_fields(self.request, obj=obj)
        self.inputs = parse_inputs(self.inputs, obj=obj)
        if not self.request and not self.inputs:
            raise InvalidDefinition("a request view reads at least one request field or input", obj=obj,
                                    field="request")
        argument_names(self.request, self.inputs, obj=obj)
        self.features = [as_feature(f, obj=obj, index=i) for i, f in enumerate(listify(self.features))]
        if not self.features:
            raise InvalidDefinition("at least one feature is required", obj=obj, field="features")
        for f in self.features:
            if f.default is not None:
                raise InvalidDefinition("a computed feature has no default", obj=obj, field=f"features[{f.name}].default")
        if len({f.name for f in self.features}) != len(self.features):
            raise InvalidDefinition("a feature is defined twice", obj=obj, field="features")
        self.description = parse_text(self.description, obj=obj, field="description")
        self.tags = parse_tags(self.tags, obj=obj)

    def __getitem__(self, names: Any) -> list[str]:
        return [f"{self.name}:{n}" for n in ([names] if isinstance(names, str) else names)]

    def to_dict(self) -> dict[str, Any]:
        # the function's file and source hash are added when applied (validation: functions.declare)
        return {"name": self.name, "function": {"function": self.function}, "request": dict(self.request),
                "inputs": list(self.inputs), "features": [f.to_dict() for f in self.features],
                "description": self.description, "tags": dict(self.tags)}


def parse_on_miss(value: Any, features: list[Feature], *, obj: str) -> dict[str, Any] | None:
    """A view's ``on_miss``: ``{compute: fn, request: {...}, inputs: [...]}``; the function
    fills the view's features that have no default (a declared default always wins)."""
    if value is None:
        return None
    if not isinstance(value, dict) or "compute" not in value:
        raise InvalidDefinition(f"on_miss is a mapping {{compute: FUNCTION, request: {{field: dtype}}, inputs: "
                                f"[view:feature]}}, got {value!r}", obj=obj, field="on_miss")
    for key in value:
        if key not in ON_MISS_KEYS:
            raise InvalidDefinition(f"unknown key {key!r}; expected {', '.join(ON_MISS_KEYS)}", obj=obj,
                                    field=f"on_miss.{key}")
    fn = value["compute"]
    request = parse_request_fields(value.get("request"), obj=obj, field="on_miss.request")
    inputs = parse_inputs(value.get("inputs"), obj=obj, field="on_miss.inputs")
    argument_names(request, inputs, obj=obj)
    if not any(f.default is None for f in features):
        raise InvalidDefinition("every feature declares a default: on_miss: compute would never compute",
                                obj=obj, field="on_miss")
    out = {"compute": function_name(fn, obj=obj, field="on_miss.compute"), "request": request, "inputs": inputs}
    if callable(fn):
        out["_fn"] = fn
    return out


def on_miss_dict(on_miss: dict[str, Any] | None) -> dict[str, Any]:
    """The registry entry of a view's on_miss (absent when unset)."""
    if not on_miss:
        return {}
    return {"on_miss": {"function": {"function": on_miss["compute"]}, "request": dict(on_miss["request"]),
                        "inputs": list(on_miss["inputs"])}}


def request_view_info(rv: dict[str, Any]) -> dict[str, Any]:
    """A request view as INFO, ``fstore describe`` and ``list --json`` say it: its function (name, file,
    source hash), request fields, inputs, and its features with their dtype; a computed
    feature has no default (nil), so a client's fallback answers it None, UNAVAILABLE."""
    return {"function": dict(rv["function"]), "request": dict(rv["request"]), "inputs": list(rv["inputs"]),
            "features": {f["name"]: {"dtype": f["dtype"], "default": None} for f in rv["features"]},
            "description": rv.get("description", "")}


def on_miss_info(spec: dict[str, Any]) -> dict[str, Any]:
    """A view's ``on_miss: compute`` as INFO and describe say it."""
    return {"function": dict(spec["function"]), "request": dict(spec["request"]), "inputs": list(spec["inputs"])}


def request_dtypes(doc: dict[str, Any]) -> dict[str, str]:
    """Request field -> its declared dtype, over every request view and view ``on_miss`` of a
    registry document, join keys left out (what ``fstore get`` reads its arguments as)."""
    out: dict[str, str] = {}
    for rv in (doc.get("request_views") or {}).values():
        out.update(rv["request"])
    for v in doc["feature_views"].values():
        out.update((v.get("on_miss") or {}).get("request") or {})
    keys = {k for v in doc["feature_views"].values() for k in v["join_keys"]}
    return {f: d for f, d in out.items() if f not in keys}


def filled(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The features ``on_miss: compute`` fills: those of the view without a default."""
    return [f for f in view["features"] if f["default"] is None]


def fills_of(read: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The views whose ``on_miss`` runs: each view read (asked for, or a request view's input:
    a request view reads what serving answers) that has one, once, in the order read. An
    ``on_miss`` input's own view is not filled (no chains: docs/transformations.md)."""
    return list({view_name(v): v for v in read if v.get("on_miss")}.values())


def request_column(values: list[Any], name: str, dtype: str, *, where: str) -> pa.Array:
    """A request field's values as its declared type (MissingRequestData is the caller's)."""
    try:
        return pa.array(values, type=DTYPES[dtype])
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        err = EntityRowError(f"request field {name!r} of {where} must be {dtype}: {exc}")
        err.field = name
        raise err from None


def apply(fn: Callable[..., Any], args: dict[str, pa.Array], outputs: list[tuple[str, str]], n: int,
          *, where: str) -> list[pa.Array]:
    """Call a request-time function and check what it gives: one Array per ``(name, dtype)``
    of ``outputs``, ``n`` values each, of the declared type. ``where`` names the function's
    owner in errors ('request_view risk', 'feature_view customer_stats on_miss')."""
    try:
        got = fn(args)
    except Exception as exc:  # noqa: BLE001 - the user's code: named, never a crash of the server
        raise ComputedFeatureError(f"{where}: function {getattr(fn, '__name__', fn)!r} raised "
                                   f"{type(exc).__name__}: {exc}") from exc
    if isinstance(got, (pa.Table, pa.RecordBatch)):
        names = got.column_names
        for name in names:
            if names.count(name) > 1:  # which one is the feature would be a guess
                raise _output_error(f"{where}: function {getattr(fn, '__name__', fn)!r} gave {name!r} "
                                    f"{names.count(name)} times", name)
        got = {name: got.column(name) for name in names}
    if not isinstance(got, dict):
        raise ComputedFeatureError(f"{where}: function {fn.__name__!r} must return a mapping of feature name to "
                                   f"values (or a pyarrow Table), got {type(got).__name__}")
    out = []
    for name, dtype in outputs:
        if name not in got:
            raise _output_error(f"{where}: function {fn.__name__!r} gave no {name!r} (it gave "
                                f"{', '.join(map(str, got)) or 'nothing'})", name)
        col = got[name]
        try:
            arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else \
                col if isinstance(col, pa.Array) else pa.array(col, type=DTYPES[dtype])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise _output_error(f"{where}: feature {name!r} is declared {dtype}, but the function's values are "
                                f"not: {exc}", name) from None
        if pa.types.is_null(arr.type):
            arr = pa.nulls(len(arr), DTYPES[dtype])
        if arr.type != DTYPES[dtype]:
            raise _output_error(f"{where}: feature {name!r} is declared {dtype}, but the function gave {arr.type}",
                                name)
        if len(arr) != n:
            raise _output_error(f"{where}: feature {name!r} has {len(arr)} values for {n} rows", name)
        out.append(arr)
    return out


def _output_error(message: str, feature: str) -> ComputedFeatureError:
    err = ComputedFeatureError(message)
    err.field = feature
    return err


def check_request_time(config: Any, contents: Any, views: dict[str, Any], new_views: dict[str, Any],
                       err: Any) -> dict[str, Any]:
    """Apply-time checks of request views and of the new views' on_miss, each problem naming
    file, object and field; the request views' registry records (functions declared: name,
    file, source hash). ``views``: every view version referable; ``new_views``: those applied now."""
    records: dict[str, Any] = {}
    names = {unversioned(v) for v in views}
    for d in contents.request_views:
        rv, obj = d.obj, f"request_view {d.obj.name}"
        if rv.name in records:
            err.add(f"request view {rv.name!r} is defined twice", file=d.file, obj=obj, field="name")
            continue
        if rv.name in names:
            err.add(f"a feature view is named {rv.name!r} too: references could not tell them apart",
                    file=d.file, obj=obj, field="name")
            continue
        record = rv.to_dict()
        ok = _check_inputs(rv.inputs, views, "inputs", d.file, obj, err)
        try:
            record["function"] = declare_named(config, rv.function, obj=obj, field="function", fn=rv._function_obj)
        except InvalidDefinition as exc:
            err.add(exc.detail, file=d.file, obj=obj, field="function")
            ok = False
        if ok:
            records[rv.name] = record
    by_name = {d.obj.versioned_name: d for d in contents.feature_views}
    for vname, record in new_views.items():
        spec = record.get("on_miss")
        d = by_name.get(vname)
        if not spec or d is None:
            continue
        obj = f"feature_view {d.obj.name}"
        if any(unversioned(split_ref(ref)[0]) == d.obj.name for ref in spec["inputs"]):
            err.add("an on_miss input reads the view it fills", file=d.file, obj=obj, field="on_miss.inputs")
        _check_inputs(spec["inputs"], views, "on_miss.inputs", d.file, obj, err)
        try:
            spec["function"] = declare_named(config, spec["function"]["function"], obj=obj, field="on_miss.compute",
                                       fn=d.obj.on_miss.get("_fn"))
        except InvalidDefinition as exc:
            err.add(exc.detail, file=d.file, obj=obj, field="on_miss.compute")
    return dict(sorted(records.items()))


def _check_inputs(inputs: list[str], views: dict[str, Any], field: str, file: str, obj: str, err: Any) -> bool:
    ok = True
    for i, ref in enumerate(inputs):
        problem = check_reference(ref, views)
        if problem:
            err.add(problem, file=file, obj=obj, field=f"{field}[{i}]")
            ok = False
    return ok
