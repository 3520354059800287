"""Row codec and feature-vector assembly of the LMDB online store (layout in docs/online-store.md)."""

from collections.abc import Sequence
from typing import TypeVar, overload, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fstore._ext._response import ResponseBase

ROW_FORMAT: int
HEADER: int
MAX_KEY: int

def layout(kinds: Sequence[int]) -> tuple[list[int], list[int], int]:
    """(byte offset of each fixed-width feature or -1, rank of each variable-width feature
    or -1, start of the variable section) for a row of features of these kinds."""

def encode_keys(columns: list[pa.Array], kinds: list[int]) -> list[bytes | None]:
    """The LMDB key of each row of int64/string key columns; None where a part is null.

    One int64 key: 8 bytes big-endian, sign bit flipped (byte order = numeric order).
    One string key: its UTF-8 bytes (the empty string: the single byte 0xFF). Composite: parts in declared order, strings as a
    big-endian u16 length and the bytes. Raises fstore.errors.KeyTooLong past 511 bytes.
    """

def key_of(values: Sequence[Any], kinds: Sequence[int]) -> bytes | None:
    """The key of one entity from Python values (the same encoding as encode_keys)."""

def encode_rows(event_ts: npt.NDArray[np.int64], created_ts: npt.NDArray[np.int64],
                columns: list[pa.Array], kinds: list[int],
                valid_until: npt.NDArray[np.int64] | None = None) -> list[bytes]:
    """One encoded row per index; created_ts uses INT64_MIN for null. Columns are int32,
    int64, float32, float64, bool, int64 (timestamps in us), string or binary arrays.
    With ``valid_until`` the rows are format 2 (an aggregation view's): a read at or
    after a row's time answers EXPIRED."""

def row_times(value: bytes) -> tuple[int, int]:
    """(event_ts_us, created_ts_us) of an encoded row; ValueError if it is not one."""

def is_newer(new: bytes, old: bytes) -> bool:
    """Whether ``new`` replaces ``old``: strictly greater (event time, created time)."""

def key_order(keys: list[bytes | None]) -> int:
    """2: strictly ascending; 1: ascending with repeats; 0: neither, or a None among them."""

def merge_newer(txn: Any, db: Any, keys: list[bytes | None], values: list[bytes]) -> int:
    """Put each pair unless the stored row is as new or newer (None keys skipped); returns
    rows written. Runs inside the caller's write transaction."""

class ViewReader:
    """The compiled read plan of one view version for one request shape."""

    db: Any
    key_columns: list[str]
    out_positions: list[int]
    def __init__(self, db: Any, key_columns: Sequence[str], key_kinds: Sequence[int],
                 all_kinds: Sequence[int], want_indices: Sequence[int], defaults: Sequence[Any],
                 ttl_us: int, out_positions: Sequence[int]) -> None: ...
    def keys_for(self, entity_rows: list[dict[str, Any]]) -> list[bytes | None]:
        """Keys of entity rows; KeyError for a missing column, TypeError for a wrong type."""
    def keys_for_columns(self, columns: dict[str, list[Any]], n: int) -> list[bytes | None]:
        """Keys from columns of join key values (the wire protocol's form)."""

_R = TypeVar("_R", bound=ResponseBase)

@overload
def read(env: Any, plan: Any, rows: list[dict[str, Any]] | dict[str, list[Any]], now_us: int | None,
         response: None = None, columns: bool = False, served: tuple[Any, ...] | None = None
         ) -> tuple[list[Any], bytearray, bytearray]: ...
@overload
def read(env: Any, plan: Any, rows: list[dict[str, Any]] | dict[str, list[Any]], now_us: int | None,
         response: type[_R], columns: bool = False, served: tuple[Any, ...] | None = None) -> _R:
    """One request in its own read transaction (``now_us`` None: the clock's now):
    (values, statuses n_out x n uint8, timestamps views x n int64), flat values unless
    ``columns``, or an instance of ``response`` holding them.

    A row is used when now - ttl <= event_ts <= now; otherwise the default (DEFAULTED) or
    None (NOT_FOUND without a row or for a future row, EXPIRED past the ttl). A stored
    null is PRESENT with None. ``served`` (the read's identity, its items in
    fstore/_ext/_record.pxd) hands the read to the recorders it names, inside this call.
    """
