"""The entity key stream of a bench run: join key columns, one value per entity row asked.

From the online store: rows of each view drawn at random (seeded, with replacement) from its
stored keys, so every key asked has a row there (``--keys`` is how to ask for keys that
miss). A request whose views do not share their keys (``customer`` and ``device``) gets
each group of keys from a view holding it, drawn independently. From a Parquet file
(``--keys FILE``, columns named as the join keys): its rows in file order, over and over.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._ext._constants import Kind
from ..errors import InvalidArgument
from ..online.codec import decode_int_keys, decode_key
from ..online.store import OnlineStore
from .target import Resolved, ViewPart

#: keys read from a view's database at most (in key order): the draw is from these
MAX_STORED_KEYS = 5_000_000
_STRING = int(Kind.K_STRING)


def _stored_keys(store: OnlineStore, view: ViewPart) -> list[bytes]:
    """The view's stored keys, in key order (the first MAX_STORED_KEYS)."""
    if not store.exists() or not store.has_db(view.name):
        return []
    db = store.db(view.name)
    out: list[bytes] = []
    with store.read() as txn:
        for key in txn.cursor(db).iternext(keys=True, values=False):
            out.append(bytes(key))
            if len(out) >= MAX_STORED_KEYS:
                break
    return out


def sample_keys(store: OnlineStore, resolved: Resolved, n: int, seed: int) -> dict[str, list[Any]]:
    """``n`` entity rows drawn from the online store (seeded), as columns by join key."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[Any]] = {}
    todo = list(resolved.join_keys)
    while todo:
        # the view holding most of the keys still to draw (a composite key's view first)
        view = max(resolved.views, key=lambda v: (len(set(v.join_keys) & set(todo)), len(v.join_keys)))
        stored = _stored_keys(store, view)
        if not stored:
            raise InvalidArgument(f"the online store has no rows of {view.name} to take entity keys from: "
                                  "materialize or load it, or give a Parquet file of keys with --keys")
        idx = rng.integers(0, len(stored), size=n)
        if len(view.key_kinds) == 1 and view.key_kinds[0] != _STRING:  # one int key: 8 bytes each
            cols = [decode_int_keys(b"".join(stored[i] for i in idx.tolist())).tolist()]
        else:
            rows = [decode_key(stored[i], view.key_kinds) for i in idx.tolist()]
            cols = [list(c) for c in zip(*rows)] if rows else [[] for _ in view.join_keys]
        for key, col in zip(view.join_keys, cols):
            if key in todo:
                out[key] = col
        todo = [k for k in todo if k not in view.join_keys]
    return {k: out[k] for k in resolved.join_keys}


def file_keys(path: str | Path, resolved: Resolved | None, n: int) -> dict[str, list[Any]]:
    """``n`` entity rows from a Parquet file of keys, in file order (wrapping around).

    With a repository, its columns must include every join key the request needs, with a
    matching type (integers for int keys, strings for string keys), and every request field
    its request-time features read; other columns are left out. Without one, every column is a join key. Errors name the file and the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = f"--keys {path}"
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InvalidArgument(f"{where}: cannot read it as a Parquet file: {exc}") from None
    if resolved is not None:
        missing = [k for k in resolved.join_keys if k not in table.column_names]
        if missing:
            raise InvalidArgument(f"{where}: no column {missing[0]!r}, a join key of the request (it needs "
                                  f"{', '.join(resolved.join_keys)}; the file has {', '.join(table.column_names)})")
        fields = [f for f in resolved.request_fields if f not in resolved.join_keys]
        absent = [f for f in fields if f not in table.column_names]
        if absent:
            raise InvalidArgument(f"{where}: no column {absent[0]!r}, a request field of the request's request-time "
                                  f"features (the file has {', '.join(table.column_names)})")
        request = {f: table.column(f).to_pylist() for f in fields}
        table = table.select(resolved.join_keys)
    else:
        request = {}
    if table.num_columns == 0 or table.num_rows == 0:
        raise InvalidArgument(f"{where}: no keys in it (columns: {', '.join(table.column_names) or 'none'}, "
                              f"rows: {table.num_rows})")
    out: dict[str, list[Any]] = {}
    for name in table.column_names:
        col = table.column(name)
        want = resolved.key_dtypes[name] if resolved is not None else None
        is_int, is_str = pa.types.is_integer(col.type), pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        if not (is_int or is_str) or (want is not None and (want == "string") != is_str):
            raise InvalidArgument(f"{where}: column {name!r} is {col.type}; the join key wants "
                                  f"{want or 'integers or strings'}")
        if col.null_count:
            row = col.to_pylist().index(None) + 1
            raise InvalidArgument(f"{where}: column {name!r} has a null at row {row} (rows are numbered from 1)")
        values = col.to_pylist()
        reps = -(-n // len(values))
        out[name] = (values * reps)[:n]
    for name, values in request.items():  # request data travel with the keys, as a client sends them
        out[name] = (values * -(-n // len(values)))[:n]
    return out
