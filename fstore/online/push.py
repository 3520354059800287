"""Pushed rows (a stream's updates): checked against the view, written newer-only,
optionally appended to the offline store so training sees what serving saw.

``FeatureStore.push`` and the server's PUSH both come here, so a push is refused with
the same error class in process and remotely (BadRequest naming the field, or the
error of the store that refused it).

The server writes PUSHes in groups (``push_group``): every PUSH that arrived while the
previous group was being written shares one LMDB write transaction, so one commit (one
fsync) serves many PUSHes instead of one each, which is what made PUSH latency grow under
load. Each PUSH is still validated, appended offline and answered on its own.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._ext._online import MAX_KEY
from ..errors import BadRequest, IngestError, KeyTooLong, OfflineStoreError, UnknownObject
from ..offline.layout import EVENT_TS, PUSH_PREFIX
from ..offline.problems import RowProblems
from ..offline.rows import source_columns, type_rows
from ..offline.store import OfflineStore
from ..progress import Reporter
from ..offline.tiles import events_view
from ..repo.aggregations import is_aggregation_view
from ..repo.names import view_name
from ..repo.registry import Snapshot
from ..repo.resolve import find_view
from ..times import from_us
from .aggregates import refresh_after_push
from .codec import encode_table, key_sizes, write_batch
from .files import read_files
from .store import OnlineStore


@dataclass
class PreparedPush:
    """One PUSH, validated and encoded, ready to be written online."""

    view: dict[str, Any]
    name: str                  # the versioned view name (the LMDB database, the metrics label)
    db: Any                    # the view's LMDB database, opened before any write transaction
    table: pa.Table            # the rows as the offline store's columns
    keys: list[bytes | None]
    values: list[bytes]
    offline: bool
    newest_us: int | None      # the newest event time among the rows (for the data age metric)

    def result(self, written: int) -> dict[str, Any]:
        return {"view": self.name, "written": written, "offline": self.offline, "newest_us": self.newest_us}


def push_group(snapshot: Callable[[], Snapshot], online: OnlineStore, offline: OfflineStore,
               group: list[dict[str, Any]]) -> tuple[list[Any], int]:
    """Write a group of PUSHes with one online commit: (one outcome per PUSH, in order;
    the transactions committed).

    An outcome is the PUSH's result (``written``: rows that were newer than what was
    stored) or the exception that refused it. A PUSH that fails validation or its offline
    append is left out of the transaction, so it writes nothing online and the others go
    on. The PUSHes are applied in arrival order, so the newer-only rule sees them as it
    would one at a time. Nothing is returned (so nothing answered) before the commit.
    """
    outcomes: list[Any] = [None] * len(group)
    ready: list[tuple[int, PreparedPush]] = []
    try:
        registry: Snapshot = snapshot()  # cached, re-checked at most once a second (not a file read per PUSH)
    except Exception as exc:  # noqa: BLE001 - no registry: every PUSH of the group gets the error
        return [exc] * len(group), 0
    for i, args in enumerate(group):
        try:
            prepared = prepare_push(online, registry, args)
            if is_aggregation_view(prepared.view):  # raw events in, the entities' aggregates out
                prepared = prepare_table(online, prepared.view, refresh_after_push(offline, prepared.view,
                                                                                   prepared.table), True)
            elif prepared.offline:
                append_offline(offline, prepared)
        except Exception as exc:  # noqa: BLE001 - refuses this PUSH alone; the server maps it to an error
            outcomes[i] = exc
            continue
        ready.append((i, prepared))
    written, commits = commit_online(online, [p for _, p in ready])
    for (i, prepared), n in zip(ready, written):
        outcomes[i] = n if isinstance(n, Exception) else prepared.result(n)
    return outcomes, commits


@dataclass
class FilePush:
    """What a push of files did (``push_files``)."""

    view: str
    rows_read: int = 0
    rows_written: int = 0          # rows newer than what was stored
    offline: bool = False          # also appended to the offline store
    null_key_rows: int = 0         # rows skipped: a null join key can never be read
    null_key_columns: list[str] = field(default_factory=list)


def push_files(online: OnlineStore, offline: OfflineStore, root: Path, view: dict[str, Any], source: dict[str, Any],
               files: Sequence[str | Path], to_offline: bool = False, progress: Reporter | None = None) -> FilePush:
    """Push the rows of Parquet/CSV files to ``view`` as one PUSH does: newer-only online, and
    with ``to_offline`` appended to the offline store first. Every file is read and typed
    before anything is written (BadRows names every bad row); rows with a null key are
    skipped and counted. For an aggregation view the files hold raw events (the source's
    columns), appended offline whatever ``to_offline`` says, and the rows written online are
    their entities' aggregates as of now (``rows_written`` counts entities)."""
    problems = RowProblems(f"push into {view_name(view)}")
    agg = is_aggregation_view(view)  # raw events in (always appended offline), aggregates out
    tables = read_files(root, events_view(view) if agg else view, source, files, problems, progress)
    result = FilePush(view_name(view), offline=to_offline or agg, null_key_rows=problems.null_key_rows,
                      null_key_columns=problems.null_key_columns)
    table = pa.concat_tables(tables) if tables else None
    if table is None or not table.num_rows:
        return result
    if agg:
        prepared = prepare_table(online, view, refresh_after_push(offline, view, table), False)
    else:
        prepared = prepare_table(online, view, table, to_offline)
    if to_offline and not agg:
        append_offline(offline, prepared)
    [written], _ = commit_online(online, [prepared])
    if isinstance(written, Exception):
        raise written
    result.rows_read, result.rows_written = table.num_rows, written
    return result


def commit_online(online: OnlineStore, pushes: list[PreparedPush]) -> tuple[list[int | Exception], int]:
    """(rows written per PUSH, transactions committed), all in one transaction; if that
    transaction fails, each PUSH is retried in a transaction of its own so that only the
    failing one is refused."""
    if not pushes:
        return [], 0
    try:
        return online.write(lambda txn: [_write(online, txn, p) for p in pushes]), 1
    except Exception as exc:  # noqa: BLE001 - rolled back whole: find the PUSH that fails
        if len(pushes) == 1:
            return [exc], 0
    written = [_commit_one(online, p) for p in pushes]
    return written, sum(not isinstance(n, Exception) for n in written)


def _write(online: OnlineStore, txn: Any, push: PreparedPush) -> int:
    """One PUSH's rows, newer-only, and its newest event time (for freshness)."""
    online.note_pushed(txn, push.name, push.newest_us)
    return write_batch(txn, push.db, push.keys, push.values)


def _commit_one(online: OnlineStore, push: PreparedPush) -> int | Exception:
    try:
        return online.write(lambda txn: _write(online, txn, push))
    except Exception as exc:  # noqa: BLE001 - this PUSH's error, answered to its client
        return exc


def append_offline(offline: OfflineStore, push: PreparedPush) -> None:
    """Append the rows offline; runs before the online commit, so that a failure here
    never leaves online a value that training would not see."""
    try:
        offline.append_rows(push.view, push.table, f"{PUSH_PREFIX}{uuid.uuid4().hex}")
    except OSError as exc:
        raise OfflineStoreError(f"cannot append the pushed rows of {push.name} to the offline store "
                                f"(nothing was written online): {exc}") from None


def prepare_push(online: OnlineStore, registry: Snapshot, args: dict[str, Any]) -> PreparedPush:
    """Check and encode ``args["rows"]`` (columns) for view ``args["view"]``; writes nothing.

    Timestamps may be datetimes (MessagePack's Timestamp) or int microseconds UTC.
    Raises BadRequest naming the field for anything malformed.
    """
    view_ref, rows, offline = args.get("view"), args.get("rows"), args.get("offline", False)
    if type(view_ref) is not str:
        raise BadRequest("view must be a view name", "view")
    if type(rows) is not dict or not rows:
        raise BadRequest("rows must be a map of columns", "rows")
    if type(offline) is not bool:
        raise BadRequest("offline must be true or false", "offline")
    view = find_view(view_ref, registry.views)
    if view is None:
        raise UnknownObject(f"unknown feature view {view_ref!r}")
    if is_aggregation_view(view):  # typed as raw events; push_group aggregates them
        table = _typed_table(events_view(view), registry.source_of(view), rows)
        _check_key_sizes(view, table)  # before the events are appended offline, not at the online encode after
        return PreparedPush(view, view_name(view), online.db(view_name(view)), table, [], [], True, None)
    return prepare_table(online, view, _typed_table(view, registry.source_of(view), rows), offline)


def prepare_table(online: OnlineStore, view: dict[str, Any], table: pa.Table, offline: bool) -> PreparedPush:
    """Encode rows already typed as the offline store's columns (``type_rows``) for ``view``."""
    try:
        keys, values = encode_table(view, table)
    except KeyTooLong as exc:
        raise BadRequest(f"row {exc.row + 1}: the key is {exc.size} bytes; LMDB keys are at most 511",
                         f"rows.{view['join_keys'][0]}") from None
    newest = pc.max(table.column(EVENT_TS).cast(pa.int64())).as_py()
    return PreparedPush(view, view_name(view), online.db(view_name(view)), table, keys, values, offline, newest)


def _check_key_sizes(view: dict[str, Any], table: pa.Table) -> None:
    """BadRequest for a row whose key is too long for LMDB (prepare_table's rule, by size)."""
    sizes = key_sizes(view, table)
    long = np.flatnonzero(sizes > MAX_KEY)
    if len(long):
        i = int(long[0])
        raise BadRequest(f"row {i + 1}: the key is {int(sizes[i])} bytes; LMDB keys are at most {MAX_KEY}",
                         f"rows.{view['join_keys'][0]}")


def _typed_table(view: dict[str, Any], source: dict[str, Any], rows: dict[str, Any]) -> pa.Table:
    """The pushed columns as the offline store's typed columns; BadRequest names the column."""
    lengths = {len(v) for v in rows.values() if type(v) is list}
    if len(lengths) != 1 or any(type(v) is not list for v in rows.values()):
        raise BadRequest("rows must be columns (lists) of equal length", "rows")
    time_cols = {source["timestamp_field"], source["created_timestamp_field"]}
    arrays = {}
    for col in source_columns(view, source):
        if col not in rows:
            raise BadRequest(f"column {col!r} of view {view_name(view)} is missing", f"rows.{col}")
        values = rows[col]
        if col in time_cols:
            values = [_time(v, col, i) for i, v in enumerate(values)]
        try:
            arrays[col] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise BadRequest(f"column {col!r}: {exc}", f"rows.{col}") from None
    problems = RowProblems("pushed rows", refuse_null_keys=True)  # a pushed row without a key is a caller's bug
    table = type_rows(view, source, pa.table(arrays), "pushed rows", lambda i: f"row {i + 1}", problems)
    try:
        problems.check()
    except IngestError as exc:
        raise BadRequest(str(exc), f"rows.{exc.column}" if exc.column else "rows") from None
    assert table is not None
    return table


def _time(value: Any, col: str, i: int) -> Any:
    if value is None or isinstance(value, dt.datetime):
        return value
    if type(value) is int:
        try:
            return from_us(value)
        except OverflowError:  # outside years 1..9999: the client's mistake, not an INTERNAL error
            raise BadRequest(f"row {i + 1}: timestamp {value} is out of range", f"rows.{col}") from None
    raise BadRequest(f"row {i + 1}: a timestamp must be a Timestamp or int microseconds", f"rows.{col}")
