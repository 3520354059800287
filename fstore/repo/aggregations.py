"""Windowed aggregations of a feature view: parsing at definition time, typing at plan time.

``aggregations: [{column: amount, function: sum, window: 7d, name: amount_7d}]`` makes the
view's features the aggregates of its source's events over a sliding window, keyed by the
view's entities (semantics: docs/transformations.md, "Windowed aggregations"). A view is
either plain or an aggregation view: its ``features:`` may only name aggregations, to give
them a default or a description.

Two steps, because the output dtype depends on the source column's type, known only when
``fstore plan`` reads the source: ``split_aggregations`` (FeatureView.__post_init__)
checks what the definition alone can tell; ``resolve_aggregations`` (plan time) checks the
column against the source schema and derives each feature's dtype.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import pyarrow as pa

from ..errors import InvalidDefinition
from ..times import UNIT_US, format_duration, parse_duration
from .fields import check_name

FUNCTIONS = ("sum", "count", "mean", "min", "max", "last")
#: functions that add values up, so need a numeric column
NUMERIC_FUNCTIONS = frozenset({"sum", "mean"})
#: functions that compare values: numeric, timestamp or bool columns (the kernel holds each
#: as int64 or float64; strings and bytes would need their values in the tiles); count takes
#: any column (it counts non-null values)
ORDERED_FUNCTIONS = frozenset({"min", "max", "last"})
ORDERED_DTYPES = ("int32", "int64", "float32", "float64", "timestamp", "bool")
#: keys of one aggregation entry
KEYS = ("column", "function", "window", "name", "tile")
#: tile grains tried by default, coarsest first: the first that divides every window and
#: leaves at least MIN_TILES_PER_WINDOW tiles in the shortest one (Chronon picks similarly)
TILE_CANDIDATES_US = (UNIT_US["d"], UNIT_US["h"], 5 * UNIT_US["m"], UNIT_US["m"], UNIT_US["s"])
MIN_TILES_PER_WINDOW = 12
#: the default of every ``count``: what a training set gives where the window has no event,
#: so an online miss (no row, or one past its ttl) answers it DEFAULTED, as training does; a
#: count declares no other default (docs/transformations.md, "Semantics")
COUNT_DEFAULT = 0


@dataclass
class Aggregation:
    """One windowed aggregate (the Python spelling of an ``aggregations:`` entry)."""

    column: str
    function: str
    window: Any
    name: str | None = None
    tile: Any = None


def _entry(value: Any, *, obj: str, field: str) -> dict[str, Any]:
    if isinstance(value, Aggregation):
        return asdict(value)
    if not isinstance(value, dict):
        raise InvalidDefinition(f"expected a mapping of {', '.join(KEYS)}, got {value!r}", obj=obj, field=field)
    unknown = [k for k in value if k not in KEYS]
    if unknown:
        raise InvalidDefinition(f"unknown key {unknown[0]!r}; expected {', '.join(KEYS)}", obj=obj,
                                field=f"{field}.{unknown[0]}")
    return dict(value)


def split_aggregations(view: Any, obj: str) -> None:
    """Parse ``view.aggregations`` in place into registry entries, and take the feature
    entries that name an aggregation (their default and description) out of
    ``view.features``. Raises naming the view, the aggregation (index and name) and field."""
    raw = view.aggregations
    if raw is None:
        view.aggregations = []
        return
    if not isinstance(raw, (list, tuple)) or not raw:
        raise InvalidDefinition(f"aggregations must be a non-empty list, got {raw!r}", obj=obj, field="aggregations")
    out: list[dict[str, Any]] = []
    for i, value in enumerate(raw):
        field = f"aggregations[{i}]"
        e = _entry(value, obj=obj, field=field)
        if e.get("name") is not None:
            field = f"aggregations[{i}:{e['name']}]"
        if not isinstance(e.get("function"), str) or e["function"].strip().lower() not in FUNCTIONS:
            raise InvalidDefinition(f"unknown function {e.get('function')!r}; expected one of {', '.join(FUNCTIONS)}",
                                    obj=obj, field=f"{field}.function")
        function = e["function"].strip().lower()
        column = check_name(e.get("column"), obj=obj, field=f"{field}.column")
        window = parse_duration(e.get("window"), obj=obj, field=f"{field}.window")
        if not window:
            raise InvalidDefinition(f"window must be a positive duration such as '7d', got {e.get('window')!r}",
                                    obj=obj, field=f"{field}.window")
        name = e.get("name") or f"{column}_{function}_{format_duration(window)}"
        check_name(name, obj=obj, field=f"{field}.name")
        tile = parse_duration(e.get("tile"), obj=obj, field=f"{field}.tile")
        out.append({"name": name, "column": column, "function": function, "window_us": window, "tile_us": tile})
    names = [a["name"] for a in out]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise InvalidDefinition(f"aggregation {n!r} is defined twice", obj=obj, field=f"aggregations[{i}:{n}].name")
    tile = _grain(out, obj)
    extras: dict[str, dict[str, Any]] = {}
    rest = []
    for i, f in enumerate(view.features or []):
        fname = f.get("name") if isinstance(f, dict) else getattr(f, "name", None)
        if fname not in names:
            rest.append(f)
            continue
        d = f if isinstance(f, dict) else {"default": f.default, "description": f.description, "dtype": f.dtype}
        bad = [k for k in d if k not in ("name", "default", "description", "dtype")]
        if bad:
            raise InvalidDefinition(f"a feature entry of an aggregation may give default and description, not {bad[0]!r}",
                                    obj=obj, field=f"features[{fname}].{bad[0]}")
        extras[fname] = {"default": d.get("default"), "description": d.get("description") or "",
                         "dtype": d.get("dtype")}
    if rest:
        other = rest[0].get("name") if isinstance(rest[0], dict) else getattr(rest[0], "name", rest[0])
        raise InvalidDefinition(f"feature {other!r} is not an aggregation: a view with aggregations holds only "
                                "aggregations (put plain features in a view of their own)", obj=obj, field="features")
    for a in out:
        a["tile_us"] = tile
        a.update({k: v for k, v in extras.get(a["name"], {}).items() if v is not None and v != ""})
    view.features = []
    view.aggregations = out


def _grain(aggs: list[dict[str, Any]], obj: str) -> int:
    """The view's tile grain: the one declared (every ``tile`` given must agree and divide
    every window), else the coarsest candidate that fits, else the windows' gcd."""
    windows = [a["window_us"] for a in aggs]
    declared = {a["tile_us"] for a in aggs if a["tile_us"]}
    if len(declared) > 1:
        raise InvalidDefinition(f"the aggregations declare different tiles ({', '.join(map(format_duration, sorted(declared)))}); "
                                "a view has one tile grain", obj=obj, field="aggregations.tile")
    if declared:
        tile = declared.pop()
        for i, a in enumerate(aggs):
            if a["window_us"] % tile:
                raise InvalidDefinition(f"tile {format_duration(tile)} does not divide window "
                                        f"{format_duration(a['window_us'])}", obj=obj,
                                        field=f"aggregations[{i}:{a['name']}].tile")
        return tile
    for c in TILE_CANDIDATES_US:
        if all(w % c == 0 for w in windows) and min(windows) >= MIN_TILES_PER_WINDOW * c:
            return c
    return math.gcd(*windows)


def column_dtype(t: pa.DataType) -> str | None:
    """The stored dtype of an aggregated source column (None: cannot be aggregated)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_int32(t) or pa.types.is_int16(t) or pa.types.is_int8(t) or pa.types.is_uint8(t) \
            or pa.types.is_uint16(t):
        return "int32"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        return "float32"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float64"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes"
    return None


def output_dtype(function: str, col: str) -> str:
    """count int64 (its default COUNT_DEFAULT); sum int64 over integers, float64 over floats; mean float64; min, max and
    last the column's own dtype (a timestamp's min is a timestamp)."""
    if function == "count":
        return "int64"
    if function == "mean":
        return "float64"
    if function == "sum":
        return "int64" if col.startswith("int") else "float64"
    return col


def resolve_aggregations(record: dict[str, Any], schema: pa.Schema, reserved: set[str], where: str,
                         coerce: Callable[..., Any], add: Callable[[str, str], None]) -> bool:
    """At plan time: check every aggregated column against the source ``schema`` and fill
    ``record`` (the view's registry record) with the typed features and each aggregation's
    ``column_dtype``. Problems go to ``add(message, field)``; returns whether all was well."""
    ok = True
    features = []
    for i, a in enumerate(record["aggregations"]):
        field = f"aggregations[{i}:{a['name']}]"
        col = a["column"]
        if col in reserved:
            add(f"column {col!r} is a key or timestamp column; aggregate a value column", f"{field}.column")
            ok = False
            continue
        if col not in schema.names:
            add(f"column {col!r} is missing from {where} (columns: {', '.join(schema.names)})", f"{field}.column")
            ok = False
            continue
        cd = column_dtype(schema.field(col).type)
        numeric = cd is not None and cd.startswith(("int", "float"))
        if cd is None or (a["function"] in NUMERIC_FUNCTIONS and not numeric):
            add(f"{a['function']} needs a numeric column; {col!r} in {where} is {schema.field(col).type}",
                f"{field}.column")
            ok = False
            continue
        if a["function"] in ORDERED_FUNCTIONS and cd not in ORDERED_DTYPES:
            add(f"{a['function']} needs a numeric, timestamp or bool column; {col!r} in {where} is "
                f"{schema.field(col).type} (strings and bytes are not aggregated by {a['function']}; count takes them)",
                f"{field}.column")
            ok = False
            continue
        dtype = output_dtype(a["function"], cd)
        if a.get("dtype") is not None and a["dtype"] != dtype:
            add(f"the feature entry declares dtype {a['dtype']!r}, but {a['function']} of {col!r} is {dtype}",
                f"features[{a['name']}].dtype")
            ok = False
            continue
        try:
            default = coerce(a.get("default"), dtype, obj="")
        except InvalidDefinition as exc:
            add(exc.detail, f"{field}.default")
            ok = False
            continue
        if a["function"] == "count":
            if default not in (None, COUNT_DEFAULT):
                add(f"a count's default is {COUNT_DEFAULT} (what a training set gives where the window has no "
                    f"event), not {default!r}", f"{field}.default")
                ok = False
                continue
            default = COUNT_DEFAULT
        features.append({"name": a["name"], "dtype": dtype, "default": default, "description": a.get("description", "")})
        a["column_dtype"] = cd
    if ok:
        record["features"] = features
        record["aggregations"] = [{k: a[k] for k in ("name", "column", "function", "window_us", "tile_us",
                                                      "column_dtype")} for a in record["aggregations"]]
    return ok


def is_aggregation_view(view: dict[str, Any]) -> bool:
    return bool(view.get("aggregations"))
