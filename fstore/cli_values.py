"""``fstore get``'s entity rows from ``name=value`` arguments, each value read as its declared type.

A command line holds text. A request field (docs/transformations.md, "Request-time
transformations") is read as the dtype its request view or ``on_miss`` declares, from the
registry in process or from the server's INFO with ``--host``: ``trip_km=12.5`` is a float64,
``is_new=true`` a bool. Any other name (a join key, or a field no definition declares) keeps the
rule from before: an integer where the text is one (``customer_id=7``), else the text.
"""
from __future__ import annotations

from typing import Any, Callable

import click

from .times import from_us, to_us

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _bool(text: str) -> bool:
    low = text.lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    raise ValueError(f"write one of {', '.join(_TRUE + _FALSE)}")


_PARSE: dict[str, Callable[[str], Any]] = {
    "int32": int, "int64": int, "float32": float, "float64": float, "bool": _bool, "string": str,
    "bytes": str.encode, "timestamp": lambda text: from_us(to_us(text, what="value")),
}


def parse_value(name: str, text: str, dtype: str | None) -> Any:
    """``text`` as ``dtype`` (None: an integer if it is one, else the text); a UsageError
    names the argument and the dtype when it is not one."""
    if dtype is None:
        return int(text) if text.lstrip("-").isdigit() else text
    try:
        return _PARSE[dtype](text)
    except (ValueError, TypeError, OverflowError) as exc:
        raise click.UsageError(f"{name}={text}: request field {name!r} is declared {dtype}, and {text!r} is not "
                               f"one ({exc})") from None


def raw_rows(keys: tuple[str, ...]) -> dict[str, list[str]]:
    """name -> its values, in order, from name=value arguments (the n-th values make row n)."""
    values: dict[str, list[str]] = {}
    for item in keys:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"{item!r}: write keys as name=value")
        values.setdefault(name, []).append(value)
    counts = {name: len(v) for name, v in values.items()}
    if len(set(counts.values())) > 1:
        given = ", ".join(f"{name} {n} time(s)" for name, n in counts.items())
        raise click.UsageError(f"each entity row needs every key once, but the keys are given {given}: "
                               "give every key as often as the others (the n-th values make row n)")
    return values


def typed_rows(values: dict[str, list[str]], dtypes: dict[str, str]) -> list[dict[str, Any]]:
    """The entity rows, each value read as ``dtypes`` declares its name (request fields)."""
    cols = {name: [parse_value(name, v, dtypes.get(name)) for v in vals] for name, vals in values.items()}
    return [dict(zip(cols, row)) for row in zip(*cols.values())]


def info_request_dtypes(info: dict[str, Any]) -> dict[str, str]:
    """Request field -> dtype from a server's INFO (docs/protocol.md; none from a server before
    request views), join keys left out."""
    out: dict[str, str] = {}
    for rv in (info.get("request_views") or {}).values():
        out.update(rv.get("request") or {})
    views = [v for v in info.get("views") or [] if isinstance(v, dict)]
    for v in views:
        out.update((v.get("on_miss") or {}).get("request") or {})
    keys = {k for v in views for k in v.get("join_keys") or []}
    return {f: d for f, d in out.items() if f not in keys}
