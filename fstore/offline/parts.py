"""Writing one ingest run's part files: rows split by bucket, sorted, one Parquet file per
bucket (the layout of fstore.offline.store and fstore.offline.layout)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .layout import CREATED_TS, EVENT_TS, bucket_ids, sort_indices


PART_PATTERN = r"/b([0-9]+)/r([0-9]+)\.parquet$"  # a part's bucket and run number, from its path


def part_path(bucket: int, run_id: str) -> str:
    """A part's path inside its view's folder (PART_PATTERN reads it back)."""
    return f"b{bucket:04d}/{run_id}.parquet"


def write_parts(vdir: Path, view: dict[str, Any], n_buckets: int, table: pa.Table, run_id: str,
                written: list[Path]) -> dict[str, str]:
    """Write ``table``'s rows as run ``run_id``'s parts, one per bucket, sorted by (keys, event
    time, created time); returns bucket -> part path (relative to ``vdir``). Each file written
    is added to ``written`` at once, so a caller can delete them if the run fails."""
    buckets = bucket_ids(table, view["join_keys"], n_buckets).astype(np.int16)  # int16: radix sort
    order = np.argsort(buckets, kind="stable")
    bounds = np.searchsorted(buckets[order], np.arange(n_buckets + 1))
    narrow = table.select([*view["join_keys"], EVENT_TS, CREATED_TS])
    parts: dict[str, str] = {}
    for b in range(n_buckets):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        if hi == lo:
            continue
        # sort the bucket on its narrow sort columns, then gather every column once
        rows = order[lo:hi]
        local = sort_indices(narrow.take(pa.array(rows)), view).to_numpy()
        part = table.take(pa.array(rows[local]))
        rel = part_path(b, run_id)
        (vdir / rel).parent.mkdir(exist_ok=True)
        written.append(vdir / rel)
        write_parquet(part, vdir / rel, view)
        parts[str(b)] = rel
    return parts


def write_parquet(table: pa.Table, path: Path, view: dict[str, Any]) -> None:
    """Write a part: dictionary encoding only where it pays (text), statistics only where
    they can prune a read (keys and times); both cost a lot on wide numeric views."""
    tmp = path.with_name(f".{path.name}.tmp")
    text = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    pq.write_table(table, tmp, compression="snappy", row_group_size=1 << 20, use_dictionary=text,
                   write_statistics=[*view["join_keys"], EVENT_TS])
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
