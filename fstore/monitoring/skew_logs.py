"""Reading the served-feature logs for a skew check (layout: docs/monitoring.md, "Log layout").

A minimal reader of the shared layout: ``<offline>/logs/<service>/date=YYYY-MM-DD/part-*.parquet``
(one row per entity row of a logged read, the ``fstore.log`` JSON in each file's key-value
metadata) and the model-received log under ``<offline>/logs/<service>/model/``. Names
starting with '.' are files still being written and are skipped.

Skew needs the per-file metadata (which view version and feature each column came from),
so files are returned grouped by that metadata rather than as one unified table. When
``fstore.monitoring.logs.read_logs`` lands, this module becomes a thin adapter over it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import InvalidArgument
from ..times import from_us

LOG_DIR = "logs"
MODEL_DIR = "model"
META_KEY = b"fstore.log"
REQUEST_TIME = "request_time"
CALLER_ID = "caller_request_id"
MODEL = "model"  # the model a read named (GET's model), null for reads of a service


@dataclass
class LogGroup:
    """The logged rows of the files that share one metadata (same columns, same view versions)."""

    meta: dict[str, Any]
    table: pa.Table
    files: list[Path]


def service_dir(offline_path: Path, service: str, model: bool = False) -> Path:
    """Where a service's served (or model-received) log files live."""
    base = Path(offline_path) / LOG_DIR / service
    return base / MODEL_DIR if model else base


def log_files(offline_path: Path, service: str, since_us: int, until_us: int, model: bool = False) -> Iterator[Path]:
    """The finished part files whose date partition can hold times in [since, until]."""
    base = service_dir(offline_path, service, model)
    if not base.is_dir():
        return
    first, last = _day(since_us), _day(until_us)
    for part in sorted(base.glob("date=*")):
        day = part.name.partition("=")[2]
        if part.is_dir() and first <= day <= last:
            yield from (p for p in sorted(part.glob("*.parquet")) if not p.name.startswith("."))


def has_model_log(offline_path: Path, service: str) -> bool:
    """Whether the service has any model-received log file."""
    base = service_dir(offline_path, service, model=True)
    return base.is_dir() and any(not p.name.startswith(".") for p in base.glob("date=*/*.parquet"))


def of_model(table: pa.Table, model: str | None) -> pa.Table:
    """The rows of reads that named ``model`` ('fraud_model' matches 'fraud_model' and every
    'fraud_model:N'; 'fraud_model:3' only itself); all rows when ``model`` is None. Files
    logged before the ``model`` column existed hold no model's reads."""
    if model is None:
        return table
    if MODEL not in table.column_names:
        return table.slice(0, 0)
    col = table.column(MODEL)
    keep = pc.equal(col, model)
    if ":" not in model:
        keep = pc.or_(keep, pc.starts_with(col, model + ":"))
    return table.filter(pc.fill_null(keep, False))


def read_served(offline_path: Path, service: str, since_us: int, until_us: int,
                model: str | None = None) -> list[LogGroup]:
    """The served log rows with request_time in [since, until] (of reads that named ``model``,
    when given), grouped by file metadata."""
    parts: dict[str, tuple[dict[str, Any], list[pa.Table], list[Path]]] = {}
    for path in log_files(offline_path, service, since_us, until_us):
        meta = _meta(path)
        table = of_model(_window(_read(path), path, since_us, until_us), model)
        if table.num_rows == 0:
            continue
        sig = json.dumps([meta.get("features"), meta.get("keys")], sort_keys=True)
        _, tables, files = parts.setdefault(sig, (meta, [], []))
        tables.append(table)
        files.append(path)
    return [LogGroup(meta, pa.concat_tables(tables, promote_options="permissive"), files)
            for meta, tables, files in parts.values()]


def read_model(offline_path: Path, service: str, since_us: int, until_us: int) -> pa.Table | None:
    """The model-received rows with request_time in [since, until] (None: no file at all)."""
    tables = [_window(_read(p), p, since_us, until_us)
              for p in log_files(offline_path, service, since_us, until_us, model=True)]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def _read(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidArgument(f"log file {path} cannot be read: {exc}") from None


def _meta(path: Path) -> dict[str, Any]:
    """A served log file's ``fstore.log`` metadata; a file without it is refused, by name."""
    kv = pq.read_schema(path).metadata or {}
    if META_KEY not in kv:
        raise InvalidArgument(f"log file {path} has no 'fstore.log' metadata: not a served-feature log file")
    try:
        meta = json.loads(kv[META_KEY])
        meta["features"], meta["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"log file {path}: its 'fstore.log' metadata is not valid ({exc})") from None
    return meta


def _window(table: pa.Table, path: Path, since_us: int, until_us: int) -> pa.Table:
    """The rows of ``table`` with request_time in [since, until] (a column missing: an error)."""
    if REQUEST_TIME not in table.column_names:
        raise InvalidArgument(f"log file {path} has no {REQUEST_TIME!r} column")
    t = table.column(REQUEST_TIME).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    keep = pc.and_(pc.greater_equal(t, since_us), pc.less_equal(t, until_us))
    return table.filter(keep)


def _day(us: int) -> str:
    """The date partition (UTC) of a time, clamped to dates datetime can spell."""
    try:
        return from_us(us).strftime("%Y-%m-%d")
    except OverflowError:
        return "0000-00-00" if us < 0 else "9999-99-99"
    except ValueError:
        return "0000-00-00" if us < 0 else "9999-99-99"


__all__ = ["LogGroup", "log_files", "has_model_log", "read_served", "read_model", "service_dir"]
