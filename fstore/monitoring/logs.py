"""The feature logs on disk: where they live, writing one file safely, reading them back.

Two logs per feature service, under the offline store (docs/monitoring.md):

- what fstore served: ``<offline>/logs/<service>/date=YYYY-MM-DD/part-*.parquet``, written
  by the served-read listener (fstore.monitoring.logging);
- what the model received: ``<offline>/logs/<service>/model/date=YYYY-MM-DD/part-*.parquet``,
  written by ``log_features`` (or by the inference service itself, in the same layout).

Every file is written as ``.part-*.parquet.tmp`` and renamed, so a reader never sees a
partial file; readers skip names starting with '.'. The read side (``read_logs``, and the
reader skew and drift share) is fstore.monitoring.logread; ``read_logs`` is named here too.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidArgument
from ..times import now_us, to_us
from .events import worker_id
from .logread import DAY_US, LOGS_DIR, MODEL_DIR, as_config, log_dir, merge_meta, read_logs
from .logtable import FORMAT, META_KEY, UTC_US

__all__ = ["DAY_US", "LOGS_DIR", "MODEL_DIR", "as_config", "hidden", "log_dir", "log_features",
           "log_features_batch", "merge_meta", "part_path", "read_logs", "split_days", "write_log_file"]
_files = itertools.count(1)  # this process's file sequence (names never collide across threads)


def write_log_file(folder: Path, table: pa.Table) -> list[Path]:
    """Write ``table`` (with a ``request_time`` column) under ``folder``, one file per UTC
    day of its rows, each written to a hidden temporary name and renamed into place."""
    out = []
    for day, part in split_days(table):
        target = part_path(folder, day)
        tmp = hidden(target)
        pq.write_table(part, tmp)
        os.replace(tmp, target)
        out.append(target)
    return out


def split_days(table: pa.Table) -> list[tuple[int, pa.Table]]:
    """``table``'s rows by the UTC day of their ``request_time`` (days since 1970; a null is day 0)."""
    if table.num_rows == 0:
        return []
    days = np.asarray(table.column("request_time").cast(pa.int64()).fill_null(0)) // DAY_US
    first = int(days[0])
    if (days == first).all():
        return [(first, table)]
    return [(int(day), table.filter(pa.array(days == day))) for day in np.unique(days)]


def part_path(folder: Path, day: int) -> Path:
    """A new log file's place under ``folder``: its UTC day's ``date=`` folder (made) and a
    name no other file gets, ``part-<UTC now>-<pid>-<seq>.parquet``."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    date = (dt.datetime(1970, 1, 1) + dt.timedelta(days=day)).strftime("%Y-%m-%d")
    target = folder / f"date={date}" / f"part-{stamp}-{worker_id()}-{next(_files)}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def hidden(target: Path) -> Path:
    """The temporary name a file is written under before it is renamed to ``target``: readers skip it."""
    return target.with_name(f".{target.name}.tmp")


# ---- what the model received --------------------------------------------------------------


def log_features(store_or_repo: Any, service: str, caller_request_id: str, entity: dict[str, Any],
                 features: dict[str, Any], time: Any = None) -> Path:
    """Log what a model received for one request: ``entity`` (join key -> value) and
    ``features`` (served output name -> the value the model got, after its own transforms
    and defaults), keyed by the caller's request id (the ``request_id`` it sent with the
    read). ``time``: when (default now). Writes one file now; see ``log_features_batch``."""
    return log_features_batch(store_or_repo, service, [
        {"caller_request_id": caller_request_id, "entity": entity, "features": features, "time": time}])[0]


def log_features_batch(store_or_repo: Any, service: str, records: list[dict[str, Any]]) -> list[Path]:
    """Log many model-received records at once (each a mapping with ``caller_request_id``,
    ``entity``, ``features`` and optional ``time``): one file per UTC day. The columns are
    ``caller_request_id``, ``request_time``, the join keys, then one column per feature
    (types inferred from the values; a key or feature missing from a record is null)."""
    folder = log_dir(as_config(store_or_repo), service, model=True)
    keys: list[str] = []
    names: list[str] = []
    for i, rec in enumerate(records):
        for field in ("entity", "features"):
            if not isinstance(rec.get(field), dict):
                raise InvalidArgument(f"record {i}: {field} must be a mapping, got {rec.get(field)!r}")
        if not isinstance(rec.get("caller_request_id"), str):
            raise InvalidArgument(f"record {i}: caller_request_id must be a string")
        keys += [k for k in rec["entity"] if k not in keys]
        names += [f for f in rec["features"] if f not in names]
    clash = set(keys) & set(names) | {"caller_request_id", "request_time"} & set(keys + names)
    if clash:
        raise InvalidArgument(f"column name(s) used twice: {', '.join(sorted(clash))}")
    now = now_us()
    columns = {"caller_request_id": pa.array([r["caller_request_id"] for r in records], pa.string()),
               "request_time": pa.array([now if r.get("time") is None else to_us(r["time"]) for r in records],
                                        pa.int64()).cast(UTC_US)}
    for k in keys:
        columns[k] = _column([r["entity"].get(k) for r in records], k)
    for f in names:
        columns[f] = _column([r["features"].get(f) for r in records], f)
    meta = {"format": FORMAT, "service": service, "kind": MODEL_DIR, "keys": keys,
            "features": [{"column": f} for f in names]}
    table = pa.table(columns).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    return write_log_file(folder, table)


def _column(values: list[Any], name: str) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidArgument(f"column {name!r}: values of mixed or unsupported types ({exc})") from None
