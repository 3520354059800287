"""Reading the offline store: where a view version's history lives and how its rows come back.

``OfflineReader`` is the read-only half of ``fstore.offline.store.OfflineStore`` (the layout
is described there): the manifest, the part files of a bucket, the ingest log, and the
fingerprint lineage records. Everything a training-set join, a materialization or a
monitoring check reads goes through it; writing is ``fstore.offline.runs``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import RepoConfig
from ..errors import OfflineStoreError
from ..files import read_document
from ..repo.names import view_name
from .layout import CREATED_TS, EVENT_TS, FORMAT, MANIFEST, offline_schema, sort_table
from .log import LogRun, log_runs


def of_keys(table: pa.Table, keys: pa.Table | None, join_keys: list[str]) -> pa.Table:
    """The rows of ``table`` whose every key column is among ``keys``' values of it (with a
    composite key, a superset of the rows of those exact keys: readers match keys exactly);
    ``table`` itself when ``keys`` is None. Keeps the rows' order."""
    if keys is None:
        return table
    mask = None
    for k in join_keys:
        m = pc.is_in(table.column(k), value_set=keys.column(k).combine_chunks())
        mask = m if mask is None else pc.and_(mask, m)
    return table.filter(mask)


class OfflineReader:
    """Reads the offline history of every view version of one repository."""

    def __init__(self, config: RepoConfig) -> None:
        self.config = config
        self.root = config.offline_path

    def view_dir(self, view: dict[str, Any]) -> Path:
        return self.root / view_name(view)

    def manifest(self, view: dict[str, Any]) -> dict[str, Any] | None:
        path = self.view_dir(view) / MANIFEST
        return read_document(path, FORMAT, name=self.config.rel(path), what="offline", error=OfflineStoreError)

    def parts(self, view: dict[str, Any], manifest: dict[str, Any], bucket: int) -> list[Path]:
        d = self.view_dir(view)
        return [d / run["parts"][str(bucket)] for run in manifest["runs"] if str(bucket) in run["parts"]]

    def read_bucket(self, view: dict[str, Any], manifest: dict[str, Any], bucket: int,
                    columns: list[str], keys: pa.Table | None = None) -> pa.Table:
        """One bucket's rows, sorted by (keys, event time, created time), with ``columns``;
        with ``keys``, only (at least) the rows of those keys (``of_keys``)."""
        wanted = list(dict.fromkeys([*view["join_keys"], EVENT_TS, CREATED_TS, *columns]))
        tables = [of_keys(pq.read_table(p, columns=wanted), keys, view["join_keys"])
                  for p in self.parts(view, manifest, bucket)]
        if not tables:
            return self.empty_table(view, wanted)
        if len(tables) == 1:
            return tables[0]
        table = pa.concat_tables(tables)
        return sort_table(table, view)

    def log(self, view: dict[str, Any], manifest: dict[str, Any]) -> list[LogRun]:
        """The view's ingest log: its runs in the order they were written (fstore.offline.log)."""
        return log_runs(self.view_dir(view), manifest)

    def read_part(self, view: dict[str, Any], path: Path, columns: list[str]) -> pa.Table:
        """One part file's rows (sorted as stored), with the keys, the times and ``columns``."""
        return pq.read_table(path, columns=list(dict.fromkeys([*view["join_keys"], EVENT_TS, CREATED_TS, *columns])))

    def empty_table(self, view: dict[str, Any], columns: list[str]) -> pa.Table:
        schema = self.schema(view)
        return schema.empty_table().select(columns)

    def schema(self, view: dict[str, Any]) -> pa.Schema:
        return offline_schema(view)

    def fingerprint(self, view: dict[str, Any]) -> str | None:
        """Identifies the exact offline data of a view (for dataset lineage)."""
        m = self.manifest(view)
        if m is None:
            return None
        parts = sorted(p for run in m["runs"] for p in run["parts"].values())
        units = sorted((u, v["fingerprint"]) for u, v in m["units"].items())
        return hashlib.sha256(json.dumps([parts, units]).encode()).hexdigest()[:32]

