"""Stored rows: a table with the offline store's columns turned into LMDB keys and
values, and the newer-only write of a batch (layouts in docs/online-store.md).

Every online writer (materialize, bulk load, push) goes through ``write_batch`` or
``write_table``, so the rule "a row replaces the stored row of its entity only when its
(event time, created time) is strictly newer" lives in one place (``merge_newer``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._ext._constants import Kind
from .._ext._online import encode_keys, encode_rows, key_of, key_order, merge_newer
from ..offline.casting import as_int64, plain
from ..offline.layout import CREATED_TS, EVENT_TS
from ..progress import Reporter
from ..repo.definitions import DTYPES
from ..times import NO_TIME

#: the compiled kind of each dtype: the Kind member is K_ and the dtype's name (one source)
KIND_OF: dict[str, int] = {name: int(Kind["K_" + name.upper()]) for name in DTYPES}
WRITE_CHUNK = 200_000
_STRING = int(Kind.K_STRING)
_EMPTY_STRING_KEY = key_of(("",), [_STRING])  # "" as the only key part (LMDB refuses an empty key)
_SIGN = 1 << 63

# An aggregation view's online rows carry the time their value stops being exact (the
# oldest event in a window leaves it); the reader answers EXPIRED from then on.
VALID_UNTIL = "__valid_until"


def feature_kinds(view: dict[str, Any]) -> list[int]:
    return [KIND_OF[f["dtype"]] for f in view["features"]]


def key_kinds(view: dict[str, Any]) -> list[int]:
    return [KIND_OF[view["key_dtypes"][k]] for k in view["join_keys"]]


def decode_key(key: bytes, kinds: Sequence[int]) -> tuple[Any, ...]:
    """The join key values of a stored key: the inverse of ``key_of`` (docs/online-store.md, "Key
    encoding"), for readers of the store's keys (fstore bench samples entities from them)."""
    if len(kinds) == 1 and kinds[0] == _STRING:
        return ("" if key == _EMPTY_STRING_KEY else key.decode(),)
    out: list[Any] = []
    pos = 0
    for kind in kinds:
        if kind == _STRING:
            n = int.from_bytes(key[pos:pos + 2], "big")
            out.append(key[pos + 2:pos + 2 + n].decode())
            pos += 2 + n
        else:
            out.append(int.from_bytes(key[pos:pos + 8], "big") - _SIGN)
            pos += 8
    return tuple(out)


def decode_int_keys(keys: bytes) -> np.ndarray:
    """The values of stored one-int64 keys, concatenated (8 bytes each), as an int64 array."""
    return (np.frombuffer(keys, dtype=">u8") ^ np.uint64(_SIGN)).astype(np.int64)


def key_sizes(view: dict[str, Any], table: pa.Table) -> np.ndarray:
    """The byte length of each row's LMDB key, by the rule ``encode_keys`` follows: 8 bytes an
    integer part, a text part's UTF-8 length plus 2 (no 2 when it is the only part); 0 where a
    part is null. Lets a load name every key too long for LMDB, not only the first."""
    keys = view["join_keys"]
    alone = len(keys) == 1
    size = np.zeros(table.num_rows, dtype=np.int64)
    for k in keys:
        if view["key_dtypes"][k] == "string":
            lengths = pc.binary_length(table.column(k)).to_numpy(zero_copy_only=False)
            size += np.nan_to_num(lengths.astype(np.float64)).astype(np.int64) + (0 if alone else 2)
        else:
            size += 8
    return size


def encode_table(view: dict[str, Any], table: pa.Table) -> tuple[list[bytes | None], list[bytes]]:
    """Keys and values of a table with the offline store's columns (and, for an aggregation
    view's rows, ``VALID_UNTIL``: the time each row's window moves past one of its events)."""
    keys = encode_keys([plain(table.column(k)) for k in view["join_keys"]], key_kinds(view))
    ts = as_int64(table.column(EVENT_TS))
    created = as_int64(table.column(CREATED_TS), fill=NO_TIME)
    until = as_int64(table.column(VALID_UNTIL)) if VALID_UNTIL in table.column_names else None
    values = encode_rows(ts, created, [plain(table.column(f["name"])) for f in view["features"]], feature_kinds(view),
                         until)
    return keys, values


def sort_batch(keys: list[bytes | None], values: list[bytes]) -> tuple[list[bytes], list[bytes], bool]:
    """(keys, values) in key byte order without null keys, and whether the keys are distinct.

    Stable, so duplicates keep their order. Keys of 8 bytes (an int64 key) are sorted as
    big-endian integers with NumPy; others with Python's byte-string order.
    """
    if any(k is None for k in keys):
        kept = [i for i, k in enumerate(keys) if k is not None]
        keys, values = [keys[i] for i in kept], [values[i] for i in kept]
    n = len(keys)
    if n == 0:
        return [], [], True
    joined = b"".join(keys)
    if len(joined) == 8 * n and all(len(k) == 8 for k in keys[:64]) and \
            np.all(np.fromiter(map(len, keys), dtype=np.int64, count=n) == 8):
        ints = np.frombuffer(joined, dtype=">u8")
        order = np.argsort(ints, kind="stable")
        ordered = ints[order]
        distinct = bool(np.all(ordered[1:] > ordered[:-1]))
        idx = order.tolist()
    else:
        idx = sorted(range(n), key=keys.__getitem__)
        distinct = all(keys[a] < keys[b] for a, b in zip(idx, idx[1:]))
    return [keys[i] for i in idx], [values[i] for i in idx], distinct


def write_sorted(txn: Any, db: Any, keys: list[bytes], values: list[bytes], distinct: bool) -> int:
    """Newer-only write of a batch already in key order; returns rows written.

    In key order LMDB touches each page once and fills it (random order splits pages,
    costing about twice the time and space); distinct keys that all land after what is
    stored are appended, which skips the lookups altogether.
    """
    if not keys:
        return 0
    if distinct:
        cur = txn.cursor(db)
        if not cur.last() or cur.key() < keys[0]:
            return cur.putmulti(zip(keys, values), append=True)[1]
    return merge_newer(txn, db, keys, values)


def write_batch(txn: Any, db: Any, keys: list[bytes | None], values: list[bytes]) -> int:
    """Newer-only write of a batch in any order (sorted first unless it already is, see write_sorted)."""
    order = key_order(keys)
    if order:
        return write_sorted(txn, db, keys, values, order == 2)  # type: ignore[arg-type]
    skeys, svals, distinct = sort_batch(keys, values)
    return write_sorted(txn, db, skeys, svals, distinct)


def write_table(txn: Any, db: Any, view: dict[str, Any], table: pa.Table, progress: Reporter | None = None) -> int:
    """Newer-only write of a table sorted by key, encoded WRITE_CHUNK rows at a time.

    Chunk by chunk, only one chunk's keys and values exist as Python bytes at once (for
    10M rows of 20 features that was 2.7 GB on top of the table). The chunks follow
    each other in key order, so into an empty store each one appends; where the
    encoding's byte order is not the columns' order (composite keys with strings) a
    chunk is sorted and merged instead, with the same result.
    """
    written = 0
    for lo in range(0, table.num_rows, WRITE_CHUNK):
        keys, values = encode_table(view, table.slice(lo, WRITE_CHUNK))
        written += write_batch(txn, db, keys, values)
        if progress is not None:
            progress.advance(len(keys))
    return written
