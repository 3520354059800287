"""Pushed rows (a stream's updates): checked against the view, written newer-only,
optionally appended to the offline store so training sees what serving saw.

The server writes PUSHes in groups (``push_group``): every PUSH that arrived while the
previous group was being written shares one LMDB write transaction, so one commit (one
fsync) serves many PUSHes instead of one each, which is what made PUSH latency grow under
load. Each PUSH is still validated, appended offline and answered on its own.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .errors import IngestError, OfflineStoreError, UnknownObject
from .feature_store import FeatureStore
from .materialize import encode_table, write_batch
from .offline_store import EVENT_TS, source_columns, type_rows, view_name
from .protocol import BAD_REQUEST, ProtocolError
from .resolve import find_view


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


def push_group(fs: FeatureStore, group: list[dict[str, Any]]) -> tuple[list[Any], int]:
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
        registry = fs._current_registry()  # cached, re-checked at most once a second (not a file read per PUSH)
    except Exception as exc:  # noqa: BLE001 - no registry: every PUSH of the group gets the error
        return [exc] * len(group), 0
    for i, args in enumerate(group):
        try:
            prepared = prepare_push(fs, registry, args)
            if prepared.offline:
                append_offline(fs, prepared)
        except Exception as exc:  # noqa: BLE001 - refuses this PUSH alone; the server maps it to an error
            outcomes[i] = exc
            continue
        ready.append((i, prepared))
    written, commits = commit_online(fs, [p for _, p in ready])
    for (i, prepared), n in zip(ready, written):
        outcomes[i] = n if isinstance(n, Exception) else prepared.result(n)
    return outcomes, commits


def commit_online(fs: FeatureStore, pushes: list[PreparedPush]) -> tuple[list[int | Exception], int]:
    """(rows written per PUSH, transactions committed), all in one transaction; if that
    transaction fails, each PUSH is retried in a transaction of its own so that only the
    failing one is refused."""
    if not pushes:
        return [], 0
    try:
        return fs.online.write(lambda txn: [write_batch(txn, p.db, p.keys, p.values) for p in pushes]), 1
    except Exception as exc:  # noqa: BLE001 - rolled back whole: find the PUSH that fails
        if len(pushes) == 1:
            return [exc], 0
    written = [_commit_one(fs, p) for p in pushes]
    return written, sum(not isinstance(n, Exception) for n in written)


def _commit_one(fs: FeatureStore, push: PreparedPush) -> int | Exception:
    try:
        return fs.online.write(lambda txn: write_batch(txn, push.db, push.keys, push.values))
    except Exception as exc:  # noqa: BLE001 - this PUSH's error, answered to its client
        return exc


def append_offline(fs: FeatureStore, push: PreparedPush) -> None:
    """Append the rows offline; runs before the online commit, so that a failure here
    never leaves online a value that training would not see."""
    try:
        fs.offline.append_rows(push.view, push.table, f"push:{uuid.uuid4().hex}")
    except OSError as exc:
        raise OfflineStoreError(f"cannot append the pushed rows of {push.name} to the offline store "
                                f"(nothing was written online): {exc}") from None


def prepare_push(fs: FeatureStore, registry: dict[str, Any], args: dict[str, Any]) -> PreparedPush:
    """Check and encode ``args["rows"]`` (columns) for view ``args["view"]``; writes nothing.

    Timestamps may be datetimes (MessagePack's Timestamp) or int microseconds UTC.
    Raises ProtocolError naming the field for anything malformed.
    """
    view_ref, rows, offline = args.get("view"), args.get("rows"), args.get("offline", False)
    if type(view_ref) is not str:
        raise ProtocolError(BAD_REQUEST, "view must be a view name", "view")
    if type(rows) is not dict or not rows:
        raise ProtocolError(BAD_REQUEST, "rows must be a map of columns", "rows")
    if type(offline) is not bool:
        raise ProtocolError(BAD_REQUEST, "offline must be true or false", "offline")
    view = find_view(view_ref, registry["feature_views"])
    if view is None:
        raise UnknownObject(f"unknown feature view {view_ref!r}")
    table = _typed_table(view, registry["sources"][view["source"]], rows)
    keys, values = encode_table(view, table)
    newest = pc.max(table.column(EVENT_TS).cast(pa.int64())).as_py()
    return PreparedPush(view, view_name(view), fs.online.db(view_name(view)), table, keys, values, offline, newest)


def _typed_table(view: dict[str, Any], source: dict[str, Any], rows: dict[str, Any]) -> pa.Table:
    """The pushed columns as the offline store's typed columns; ProtocolError names the column."""
    lengths = {len(v) for v in rows.values() if type(v) is list}
    if len(lengths) != 1 or any(type(v) is not list for v in rows.values()):
        raise ProtocolError(BAD_REQUEST, "rows must be columns (lists) of equal length", "rows")
    time_cols = {source["timestamp_field"], source["created_timestamp_field"]}
    arrays = {}
    for col in source_columns(view, source):
        if col not in rows:
            raise ProtocolError(BAD_REQUEST, f"column {col!r} of view {view_name(view)} is missing", f"rows.{col}")
        values = rows[col]
        if col in time_cols:
            values = [_time(v, col, i) for i, v in enumerate(values)]
        try:
            arrays[col] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise ProtocolError(BAD_REQUEST, f"column {col!r}: {exc}", f"rows.{col}") from None
    try:
        return type_rows(view, source, pa.table(arrays), "pushed rows", lambda i: f"row {i + 1}")
    except IngestError as exc:
        raise ProtocolError(BAD_REQUEST, str(exc), f"rows.{exc.column}" if exc.column else "rows") from None


def _time(value: Any, col: str, i: int) -> Any:
    if value is None or isinstance(value, dt.datetime):
        return value
    if type(value) is int:
        try:
            return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=value)
        except OverflowError:  # outside years 1..9999: the client's mistake, not an INTERNAL error
            raise ProtocolError(BAD_REQUEST, f"row {i + 1}: timestamp {value} is out of range",
                                f"rows.{col}") from None
    raise ProtocolError(BAD_REQUEST, f"row {i + 1}: a timestamp must be a Timestamp or int microseconds",
                        f"rows.{col}")
