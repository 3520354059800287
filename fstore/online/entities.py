"""Entity rows as callers give them: a list of dicts, or a dict of equal-length columns.

One place for both directions, used in process (reads, pushes) and by the network clients
(which send columns and keep rows for the response); it imports neither LMDB nor pyarrow.
"""
from __future__ import annotations

from typing import Any

from ..errors import EntityRowError


def entity_rows(given: Any) -> list[Any]:
    """A list of dicts from a list of dicts (returned as is) or a dict of equal-length columns;
    ragged columns are an EntityRowError."""
    if isinstance(given, dict):
        cols = {k: list(v) for k, v in given.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise EntityRowError(f"entity_rows columns differ in length: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]
    return given if isinstance(given, list) else list(given)


def entity_columns(given: Any) -> dict[str, list[Any]]:
    """A dict of columns from a dict of columns (copied, as given) or a list of dicts; a key a
    row lacks is None in that row (every key any row has is a column)."""
    if isinstance(given, dict):
        return {k: list(v) for k, v in given.items()}
    keys: dict[str, None] = {}
    for row in given:
        keys.update(dict.fromkeys(row))
    return {k: [row.get(k) for row in given] for k in keys}
