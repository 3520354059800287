"""Reading the feature logs back: the one reader of the documented layout (docs/monitoring.md,
"Where the rows go") behind ``read_logs``, ``fstore skew`` and ``fstore drift``.

- **Which files**: ``<offline>/logs/<service>/date=YYYY-MM-DD/*.parquet`` (the served log) or
  ``.../<service>/model/date=.../*.parquet`` (what the model received), only the date folders
  that can hold request times in the window; names starting with '.' are a writer's
  temporaries and never read.
- **Which rows**: ``since <= request_time <= until``, both ends included (None: unbounded),
  and, with ``named_model``, only the reads that named that model.
- **Which columns**: all, or only those asked for (the others are never decoded); the time
  column is read only when the window or the caller needs it.
- **Each file's ``fstore.log`` metadata**, parsed (None when absent).

Three views of the same ``LogPart``s: ``read_logs`` (one table, ordered, the metadata
merged), ``group_parts`` (skew: files grouped by their metadata, since each names the view
versions its columns were served from), and the parts one at a time (``iter_parts``:
drift tallies each file's columns and lets it go, never holding the whole window).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import RepoConfig
from ..errors import InvalidArgument
from ..repo.names import NAME_RE
from ..times import to_us
from .logtable import FORMAT, META_KEY

LOGS_DIR = "logs"
MODEL_DIR = "model"
REQUEST_TIME = "request_time"
CALLER_ID = "caller_request_id"
MODEL = "model"  # the model a read named (GET's model), null for reads of a service
DAY_US = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)
_ORDER = ("request_id", "row", CALLER_ID)  # after request_time, when present


@dataclass
class LogPart:
    """One log file's rows in the window: the columns asked for that the file has."""

    path: Path
    meta: dict[str, Any] | None  # the file's ``fstore.log`` metadata (None: it has none)
    table: pa.Table


@dataclass
class LogGroup:
    """The rows of the files that share one metadata (same columns, same view versions)."""

    meta: dict[str, Any]
    table: pa.Table
    files: list[Path]


def service_dir(offline_path: Path, service: str, model: bool = False) -> Path:
    """Where a service's served (or, ``model``, model-received) log files live."""
    base = Path(offline_path) / LOGS_DIR / service
    return base / MODEL_DIR if model else base


def has_model_log(offline_path: Path, service: str) -> bool:
    """Whether the service has any model-received log file."""
    base = service_dir(offline_path, service, model=True)
    return base.is_dir() and any(not p.name.startswith(".") for p in base.glob("date=*/*.parquet"))


def log_files(folder: Path, since_us: int | None, until_us: int | None) -> list[Path]:
    """The visible log files of the date folders that can hold request times in [since, until]."""
    if not folder.is_dir():
        return []
    first = None if since_us is None else since_us // DAY_US
    last = None if until_us is None else until_us // DAY_US
    out: list[Path] = []
    for day in sorted(folder.glob("date=*")):
        try:
            n = (dt.date.fromisoformat(day.name[len("date="):]) - _EPOCH).days
        except ValueError:
            continue  # not a date folder of the layout
        if (first is not None and n < first) or (last is not None and n > last) or not day.is_dir():
            continue
        out += sorted(p for p in day.glob("*.parquet") if not p.name.startswith("."))
    return out


def read_parts(folder: Path, since_us: int | None = None, until_us: int | None = None, *,
               columns: Sequence[str] | None = None, named_model: str | None = None,
               dictionary: Sequence[str] = ()) -> list[LogPart]:
    """Each log file of ``folder`` with its rows in [since, until] (module docstring).

    ``columns``: the columns to return (None: all); a file lacking one simply has fewer.
    ``dictionary``: columns read as Arrow dictionaries, as Parquet stores strings (cheap
    to read and to count; only drift asks). A file that cannot be read, or has no
    ``request_time`` when the window needs it, is an InvalidArgument naming it."""
    return list(iter_parts(folder, since_us, until_us, columns=columns, named_model=named_model,
                           dictionary=dictionary))


def iter_parts(folder: Path, since_us: int | None = None, until_us: int | None = None, *,
               columns: Sequence[str] | None = None, named_model: str | None = None,
               dictionary: Sequence[str] = ()) -> Iterator[LogPart]:
    """``read_parts`` one file at a time, for a reader that never holds the whole window."""
    windowed = since_us is not None or until_us is not None
    for path in log_files(folder, since_us, until_us):
        try:
            schema = pq.read_schema(path)
            want = schema.names if columns is None else [c for c in columns if c in schema.names]
            helpers = [c for c, need in ((REQUEST_TIME, windowed), (MODEL, named_model is not None))
                       if need and c in schema.names and c not in want]
            encoded = [c for c in dictionary if c in want] or None
            table = pq.ParquetFile(path, read_dictionary=encoded).read(columns=[*want, *helpers])
        except (OSError, pa.ArrowException) as exc:
            raise InvalidArgument(f"log file {path} cannot be read: {exc}") from None
        if windowed and REQUEST_TIME not in schema.names:
            raise InvalidArgument(f"log file {path} has no {REQUEST_TIME!r} column")
        table = _of_window(of_model(table, named_model), since_us, until_us)
        yield LogPart(path, _meta(schema), table.select(want).replace_schema_metadata(None))


def _meta(schema: pa.Schema) -> dict[str, Any] | None:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def _of_window(table: pa.Table, since_us: int | None, until_us: int | None) -> pa.Table:
    """The rows with request_time in [since, until]; the table itself when all are."""
    if since_us is None and until_us is None:
        return table
    t = np.asarray(table.column(REQUEST_TIME).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(
        np.iinfo(np.int64).min))
    keep = np.ones(len(t), bool)
    if since_us is not None:
        keep &= t >= since_us
    if until_us is not None:
        keep &= t <= until_us  # both ends included, as fstore skew and drift read them
    return table if keep.all() else table.filter(pa.array(keep))


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


def group_parts(parts: Iterable[LogPart]) -> list[LogGroup]:
    """The parts with rows, grouped by their metadata's features and keys (a part without
    metadata is its own group, with empty metadata)."""
    groups: dict[str, tuple[dict[str, Any], list[pa.Table], list[Path]]] = {}
    for p in parts:
        if p.table.num_rows == 0:
            continue
        meta = p.meta if p.meta is not None else {}
        sig = json.dumps([meta.get("features"), meta.get("keys")], sort_keys=True) if p.meta is not None \
            else str(p.path)
        _, tables, files = groups.setdefault(sig, (meta, [], []))
        tables.append(p.table)
        files.append(p.path)
    return [LogGroup(meta, pa.concat_tables(tables, promote_options="permissive"), files)
            for meta, tables, files in groups.values()]


# ---- the public reader ------------------------------------------------------------------------


def read_logs(config: Any, service: str, since_us: Any = None, until_us: Any = None, model: bool = False, *,
              columns: Sequence[str] | None = None, named_model: str | None = None) -> pa.Table:
    """Every log row of ``service`` with ``since <= request_time <= until`` (None: unbounded;
    microseconds, or anything fstore.times.to_us takes), ordered by request time, request and
    row. Files of different registry versions are unified (a column missing from a file is
    null there; types promoted where they differ). The files' ``fstore.log`` metadata are
    merged into the table's (features and keys of every file, in first-seen order).
    ``config``: a RepoConfig, a FeatureStore or a repository path. ``model``: the
    model-received log instead of the served one. ``columns``: only these columns (in this
    order; one no file has is left out). ``named_model``: only the reads that named that
    model ('fraud_model' or 'fraud_model:3'). An empty table (no columns) when nothing was
    logged."""
    config = as_config(config)
    since = None if since_us is None else to_us(since_us, what="since")
    until = None if until_us is None else to_us(until_us, what="until")
    order = [REQUEST_TIME, *_ORDER]
    wanted = None if columns is None else [*columns, *(c for c in order if c not in columns)]
    parts = read_parts(log_dir(config, service, model), since, until, columns=wanted, named_model=named_model)
    if not parts:
        return pa.table({})
    table = pa.concat_tables([p.table for p in parts], promote_options="permissive")
    table = table.sort_by([(c, "ascending") for c in order if c in table.column_names])
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    meta = merge_meta((p.meta or {} for p in parts), service)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


def merge_meta(metas: Iterable[dict[str, Any]], service: str) -> dict[str, Any]:
    """The ``fstore.log`` metadata of many files as one: every feature column, key and
    request field (request shapes) once."""
    features: dict[str, dict[str, Any]] = {}
    request: dict[str, dict[str, Any]] = {}
    keys: list[str] = []
    for m in metas:
        for f in m.get("features", []):
            features.setdefault(f["column"], f)
        for r in m.get("request", []):
            request.setdefault(r["column"], r)
        keys += [k for k in m.get("keys", []) if k not in keys]
    out = {"format": FORMAT, "service": service, "features": list(features.values()), "keys": keys}
    if request:
        out["request"] = list(request.values())
    return out


def log_dir(config: RepoConfig, service: str, model: bool = False) -> Path:
    """The folder of one service's served log (or, ``model``, its model-received log)."""
    if not isinstance(service, str) or not NAME_RE.match(service):
        raise InvalidArgument(f"not a feature service name: {service!r}")
    return service_dir(config.offline_path, service, model)


def as_config(repo: Any) -> RepoConfig:
    """A RepoConfig from a RepoConfig, anything holding one as ``.config`` (a FeatureStore),
    or a repository path."""
    if isinstance(repo, RepoConfig):
        return repo
    config = getattr(repo, "config", None)
    return config if isinstance(config, RepoConfig) else RepoConfig.load(repo)
