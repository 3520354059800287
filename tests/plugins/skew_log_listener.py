"""A served-read listener that writes the served-feature log exactly per the shared layout
(docs/monitoring.md, "Log layout"), for the skew tests until the real logger lands.

Loaded by a real server (``server.listeners: [skew_log_listener:write]``) or subscribed
in process; writes one Parquet file per read, synchronously, under
$FSTORE_TEST_LOG_ROOT/logs/<service>/date=YYYY-MM-DD/ (tmp name, then rename). Reads by a
feature list are not logged (they have no service). The lead switches these tests to the
real logger (fstore.monitoring.logging) at merge.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fstore.monitoring.events import ServedRead
from fstore.repo.definitions import DTYPES

_SEQ = itertools.count()
_TS = pa.timestamp("us", tz="UTC")


def write(event: ServedRead, root: str | None = None) -> Path | None:
    if event.service is None:
        return None
    root_dir = Path(root or os.environ["FSTORE_TEST_LOG_ROOT"])
    plan, n = event.plan, event.rows
    when = dt.datetime.fromtimestamp(event.time_us / 1e6, dt.timezone.utc)
    cols: dict[str, pa.Array] = {
        "request_id": pa.array([f"{event.worker}-{event.request_id}"] * n, pa.string()),
        "caller_request_id": pa.array([event.caller_request_id] * n, pa.string()),
        "request_time": pa.array([event.time_us] * n, pa.int64()).cast(_TS),
        "service": pa.array([event.service] * n, pa.string()),
        "registry_version": pa.array([event.registry_version] * n, pa.int64()),
        "path": pa.array([event.path] * n, pa.string()),
        "worker": pa.array([event.worker] * n, pa.int64()),
        "row": pa.array(range(n), pa.int32()),
    }
    for k, values in event.entity_columns().items():
        cols[k] = pa.array(values, pa.string() if any(isinstance(v, str) for v in values) else pa.int64())
    feats = []
    for i, (name, values, statuses, stamps) in enumerate(zip(plan.names, event.value_columns(),
                                                             event.status_columns(), event.timestamp_columns())):
        dtype = plan.dtypes[i]
        cols[name] = pa.array(values, DTYPES[dtype])
        cols[name + "__status"] = pa.array([int(s) for s in statuses], pa.int8())
        cols[name + "__event_timestamp"] = pa.array(stamps, pa.int64()).cast(_TS)
        view = plan.views[plan.view_of[i]]
        feats.append({"column": name, "view": view, "feature": name.rpartition("__")[2], "dtype": dtype})
    meta = {"format": 1, "service": event.service, "features": feats, "keys": list(plan.key_columns)}
    table = pa.table(cols).replace_schema_metadata({"fstore.log": json.dumps(meta)})
    folder = root_dir / "logs" / event.service / f"date={when:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{when:%Y%m%dT%H%M%S}-{os.getpid()}-{next(_SEQ)}.parquet"
    tmp = folder / f".{name}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, folder / name)
    return folder / name
