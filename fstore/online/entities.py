"""Entity rows as callers give them: a list of dicts, a dict of equal-length columns (lists
or NumPy arrays), or a pandas DataFrame; key values may be NumPy scalars (``np.int64``).

One place for both directions, used in process (reads, pushes) and by the network clients
(which send columns and keep rows for the response); it imports neither LMDB, pyarrow nor
pandas (a DataFrame is recognised by its ``columns`` and ``to_dict``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import EntityRowError

_PLAIN = (int, str, type(None))


def is_frame(given: Any) -> bool:
    """Whether ``given`` is a pandas (or pandas-like) DataFrame."""
    return not isinstance(given, (dict, list)) and hasattr(given, "columns") and hasattr(given, "to_dict")


def _frame_columns(frame: Any) -> dict[str, list[Any]]:
    """A DataFrame's columns as lists of Python values (pandas' NA and NaT as None)."""
    out = {}
    for name in frame.columns:
        col = frame[name].tolist()
        out[str(name)] = [None if type(v).__name__ in ("NAType", "NaTType") else v for v in col]
    return out


def _plain(col: Any) -> list[Any]:
    """A column as a list of values MessagePack can carry: arrays via ``tolist``, NumPy
    scalars via ``item`` (``np.int64(3)`` is 3 on the wire)."""
    if isinstance(col, np.ndarray):
        return col.tolist()
    if is_frame(col) or hasattr(col, "tolist"):  # a pandas Series
        return _plain(col.tolist())
    return [v if type(v) in _PLAIN or not isinstance(v, np.generic) else v.item() for v in col]


def entity_rows(given: Any) -> list[Any]:
    """A list of dicts from a list of dicts (returned as is), a dict of equal-length columns
    or a DataFrame; ragged columns are an EntityRowError."""
    if is_frame(given):
        given = _frame_columns(given)
    if isinstance(given, dict):
        cols = {k: list(v) for k, v in given.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise EntityRowError(f"entity_rows columns differ in length: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]
    return given if isinstance(given, list) else list(given)


def entity_columns(given: Any) -> dict[str, list[Any]]:
    """A dict of columns for the wire, from a dict of columns, a DataFrame or a list of dicts;
    a key a row lacks is None in that row (every key any row has is a column). NumPy values
    become Python ones."""
    if type(given) is list and len(given) == 1 and type(given[0]) is dict:  # the common 1-row GET
        return {k: [v] if type(v) in _PLAIN else _plain([v]) for k, v in given[0].items()}
    if is_frame(given):
        return _frame_columns(given)
    if isinstance(given, dict):
        return {k: _plain(v) for k, v in given.items()}
    keys: dict[str, None] = {}
    for row in given:
        keys.update(dict.fromkeys(row))
    return {k: _plain([row.get(k) for row in given]) for k in keys}
