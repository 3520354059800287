"""Checks of one field of a definition, shared by every kind of object (entity, source,
feature, view, request view, service, aggregation): names, dtypes and defaults, text, tags,
lists and drift thresholds.

The lowest module of the definitions: it imports only the base and ``names``, so each
object's module (records, views, services, aggregations, request_time) builds on it
without importing another at run time.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pyarrow as pa

from ..errors import InvalidDefinition
from .names import NAME_RE

#: canonical dtype name -> Arrow type of the stored column
DTYPES: dict[str, pa.DataType] = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "bytes": pa.binary(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
#: other spellings taken for a dtype: each means one thing wherever a user may have met it
#: (docs/repository.md lists them)
DTYPE_ALIASES: dict[str, str] = {
    "long": "int64", "double": "float64", "str": "string", "utf8": "string", "boolean": "bool",
    "binary": "bytes", "datetime": "timestamp",
}
#: spellings refused because they mean a different width in different places: why, and the choices
AMBIGUOUS_DTYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "int": ("32 bits in SQL, C and Java, 64 in Python and NumPy", ("int32", "int64")),
    "integer": ("32 bits in SQL, 64 in Python", ("int32", "int64")),
    "float": ("32 bits in Arrow and C, 64 in Python and NumPy", ("float32", "float64")),
}
#: drift thresholds (``monitoring:`` of a view or a feature; docs/monitoring.md, Drift): a PSI at
#: or above psi_warn is a warning, at or above psi_alert an alert; a current null rate above
#: max_null_rate is an alert (None: the null rate is reported, never judged)
MONITORING_DEFAULTS: dict[str, float | None] = {"psi_warn": 0.1, "psi_alert": 0.25, "max_null_rate": None}
def parse_dtype(value: Any, *, obj: str, field: str) -> str:
    """Canonical dtype name for ``value`` (case-insensitive, aliases taken); raises naming the
    field if unknown, or if it is a spelling whose width depends on where one learned it."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in AMBIGUOUS_DTYPES:
            why, choices = AMBIGUOUS_DTYPES[name]
            raise InvalidDefinition(f"dtype {value!r} is ambiguous ({why}): write {' or '.join(choices)}",
                                    obj=obj, field=field)
        name = DTYPE_ALIASES.get(name, name)
        if name in DTYPES:
            return name
    raise InvalidDefinition(
        f"unknown dtype {value!r}; expected one of {', '.join(DTYPES)}", obj=obj, field=field)


def check_name(name: Any, *, obj: str, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidDefinition(
            f"{name!r} is not a valid name (letters, digits and _, not starting with a digit)",
            obj=obj, field=field)
    return name


def str_list(value: Any, *, obj: str, field: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidDefinition(f"expected a list of names, got {value!r}", obj=obj, field=field)
    return list(value)


def parse_tags(value: Any, *, obj: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinition(f"tags must be a mapping, got {value!r}", obj=obj, field="tags")
    return {str(k): str(v) for k, v in sorted(value.items())}


def parse_text(value: Any, *, obj: str, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidDefinition(f"expected text, got {value!r}", obj=obj, field=field)
    return value


def parse_monitoring(value: Any, *, obj: str, field: str = "monitoring") -> dict[str, float | None]:
    """The drift thresholds a view or feature sets (only those it sets; the rest come from
    the view, then MONITORING_DEFAULTS): non-negative numbers, a rate at most 1."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinition(f"expected a mapping of {', '.join(MONITORING_DEFAULTS)}, got {value!r}",
                                obj=obj, field=field)
    out: dict[str, float | None] = {}
    for key, v in value.items():
        if key not in MONITORING_DEFAULTS:
            raise InvalidDefinition(f"unknown key {key!r}; expected {', '.join(MONITORING_DEFAULTS)}",
                                    obj=obj, field=f"{field}.{key}")
        if v is None and key == "max_null_rate":
            out[key] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or (key == "max_null_rate" and v > 1):
            limit = "a number from 0 to 1" if key == "max_null_rate" else "a number >= 0"
            raise InvalidDefinition(f"{key} must be {limit}, got {v!r}", obj=obj, field=f"{field}.{key}")
        out[key] = float(v)
    if out.get("psi_warn", 0.0) > out.get("psi_alert", float("inf")):  # type: ignore[operator]
        raise InvalidDefinition(f"psi_warn ({out['psi_warn']}) is above psi_alert ({out['psi_alert']})",
                                obj=obj, field=f"{field}.psi_warn")
    return dict(sorted(out.items()))


def coerce_default(value: Any, dtype: str, *, obj: str) -> Any:
    """A JSON-safe default of the feature's type (timestamps as ISO 8601 UTC)."""
    if value is None:
        return None
    bad = InvalidDefinition(f"default {value!r} is not a {dtype}", obj=obj, field="default")
    if dtype in ("int32", "int64"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if dtype in ("float32", "float64"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if dtype == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if dtype == "string":
        if not isinstance(value, str):
            raise bad
        return value
    if dtype == "bytes":
        if isinstance(value, str):
            return value
        raise bad
    if dtype == "timestamp":
        try:
            ts = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise bad from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.timezone.utc)
        return ts.astimezone(dt.timezone.utc).isoformat()
    raise bad


def unknown_field_message(exc: TypeError, kind: str) -> str:
    m = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    if m:
        return f"unknown field {m[1]!r} in {kind}"
    m = re.search(r"missing \d+ required positional argument[s]?: (.+)$", str(exc))
    if m:
        return f"missing required field(s) {m[1]} in {kind}"
    return str(exc)


def listify(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]
