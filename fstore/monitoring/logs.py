"""The feature logs on disk: where they live, writing one file safely, reading them back.

Two logs per feature service, under the offline store (docs/monitoring.md):

- what fstore served: ``<offline>/logs/<service>/date=YYYY-MM-DD/part-*.parquet``, written
  by the served-read listener (fstore.monitoring.logging);
- what the model received: ``<offline>/logs/<service>/model/date=YYYY-MM-DD/part-*.parquet``,
  written by ``log_features`` (or by the inference service itself, in the same layout).

Every file is written as ``.part-*.parquet.tmp`` and renamed, so a reader never sees a
partial file; readers skip names starting with '.'. ``read_logs`` is what the skew and
drift checks read.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import RepoConfig
from ..errors import InvalidArgument
from ..repo.names import NAME_RE
from ..times import now_us, to_us
from .events import worker_id
from .logtable import FORMAT, META_KEY, UTC_US

LOGS_DIR = "logs"
MODEL_DIR = "model"
DAY_US = 86_400_000_000
_files = itertools.count(1)  # this process's file sequence (names never collide across threads)


def log_dir(config: RepoConfig, service: str, model: bool = False) -> Path:
    """The folder of one service's served log (or, ``model``, its model-received log)."""
    if not isinstance(service, str) or not NAME_RE.match(service):
        raise InvalidArgument(f"not a feature service name: {service!r}")
    base = config.offline_path / LOGS_DIR / service
    return base / MODEL_DIR if model else base


def write_log_file(folder: Path, table: pa.Table) -> list[Path]:
    """Write ``table`` (with a ``request_time`` column) under ``folder``, one file per UTC
    day of its rows, each written to a hidden temporary name and renamed into place."""
    if table.num_rows == 0:
        return []
    days = np.asarray(table.column("request_time").cast(pa.int64()).fill_null(0)) // DAY_US
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = []
    for day in np.unique(days):
        part = table if len(np.unique(days)) == 1 else table.filter(pa.array(days == day))
        date = (dt.datetime(1970, 1, 1) + dt.timedelta(days=int(day))).strftime("%Y-%m-%d")
        target = folder / f"date={date}" / f"part-{stamp}-{worker_id()}-{next(_files)}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        pq.write_table(part, tmp)
        os.replace(tmp, target)
        out.append(target)
    return out


def read_logs(config: Any, service: str, since_us: Any = None, until_us: Any = None,
              model: bool = False) -> pa.Table:
    """Every log row of ``service`` with ``since <= request_time <= until`` (None: unbounded;
    microseconds, or anything fstore.times.to_us takes), ordered by request time, request and
    row. Files of different registry versions are unified (a column missing from a file is
    null there). The files' ``fstore.log`` metadata are merged into the table's (features
    and keys of every file, in first-seen order). ``config``: a RepoConfig, a FeatureStore
    or a repository path. An empty table (no columns) when nothing was logged."""
    config = as_config(config)
    since = None if since_us is None else to_us(since_us, what="since")
    until = None if until_us is None else to_us(until_us, what="until")
    tables, metas = [], []
    for path in _files_between(log_dir(config, service, model), since, until):
        table = pq.read_table(path)
        metas.append(json.loads((table.schema.metadata or {}).get(META_KEY, b"{}")))
        t = table.column("request_time").cast(pa.int64())
        keep = np.ones(table.num_rows, bool)
        if since is not None:
            keep &= np.asarray(t) >= since
        if until is not None:
            keep &= np.asarray(t) <= until  # both ends included, as fstore skew and drift read them
        tables.append(table.replace_schema_metadata(None).filter(pa.array(keep)))
    if not tables:
        return pa.table({})
    table = pa.concat_tables(tables, promote_options="permissive")
    order = [("request_time", "ascending")] + [(c, "ascending") for c in ("request_id", "row", "caller_request_id")
                                               if c in table.column_names]
    table = table.sort_by(order)
    return table.replace_schema_metadata({META_KEY: json.dumps(merge_meta(metas, service)).encode()})


def merge_meta(metas: Iterable[dict[str, Any]], service: str) -> dict[str, Any]:
    """The ``fstore.log`` metadata of many files as one: every feature column and key once."""
    features: dict[str, dict[str, Any]] = {}
    keys: list[str] = []
    for m in metas:
        for f in m.get("features", []):
            features.setdefault(f["column"], f)
        keys += [k for k in m.get("keys", []) if k not in keys]
    return {"format": FORMAT, "service": service, "features": list(features.values()), "keys": keys}


def _files_between(folder: Path, since: int | None, until: int | None) -> list[Path]:
    """The visible log files of the date folders that may hold rows in [since, until]."""
    if not folder.is_dir():
        return []
    lo = None if since is None else dt.datetime.fromtimestamp(since // DAY_US * 86400, dt.timezone.utc).date()
    hi = None if until is None else dt.datetime.fromtimestamp(until // DAY_US * 86400, dt.timezone.utc).date()
    out = []
    for day in sorted(folder.glob("date=*")):
        try:
            date = dt.date.fromisoformat(day.name[5:])
        except ValueError:
            continue
        if (lo is not None and date < lo) or (hi is not None and date > hi):
            continue
        out += sorted(p for p in day.glob("*.parquet") if not p.name.startswith("."))
    return out


def as_config(repo: Any) -> RepoConfig:
    """A RepoConfig from a RepoConfig, anything holding one as ``.config`` (a FeatureStore),
    or a repository path."""
    if isinstance(repo, RepoConfig):
        return repo
    config = getattr(repo, "config", None)
    return config if isinstance(config, RepoConfig) else RepoConfig.load(repo)


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
