"""A plug-in loader for a warehouse extract kept in SQLite: an example of the Loader interface.

Use it from a source definition (with the ``loaders`` folder on PYTHONPATH, or this
file copied into your own package)::

    sources:
      - name: orders_src
        path: warehouse/extract.db          # the SQLite file, relative to the repository
        format: sqlite_extract:SqliteExtractLoader
        timestamp_field: ts
        options: {query: "SELECT customer_id, ts, amount FROM orders"}

The whole query result is one unit, fingerprinted by the file's size and modification
time and the query text, so ingest re-reads it only when either changes.
"""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pyarrow as pa

from fstore.errors import IngestError, InvalidDefinition
from fstore.offline.loaders import Loader, SourceUnit


class SqliteExtractLoader(Loader):
    def _db(self) -> Path:
        path = Path(self.source.path)
        path = path if path.is_absolute() else self.root / path
        if not path.is_file():
            raise InvalidDefinition(f"no SQLite file at {self.source.path!r}", obj=f"source {self.source.name}",
                                    field="path")
        return path

    def _query(self) -> str:
        query = self.source.options.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidDefinition("options.query (a SELECT) is required", obj=f"source {self.source.name}",
                                    field="options.query")
        return query

    def units(self) -> list[SourceUnit]:
        db = self._db()
        st = db.stat()
        fp = hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}:{self._query()}".encode()).hexdigest()[:16]
        return [SourceUnit(id=f"{self.source.path}#query", fingerprint=fp, path=db)]

    def schema(self) -> pa.Schema:
        return self._fetch(limit=1000).schema

    def read(self, unit: SourceUnit, columns: list[str]) -> pa.Table:
        table = self._fetch()
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise IngestError(f"{unit.id}: the query returns no column(s) {', '.join(missing)}", file=unit.id)
        return table.select(columns)

    def _fetch(self, limit: int | None = None) -> pa.Table:
        query = self._query()
        if limit is not None:
            query = f"SELECT * FROM ({query}) LIMIT {int(limit)}"
        with sqlite3.connect(f"file:{self._db()}?mode=ro", uri=True) as conn:
            cur = conn.execute(query)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return pa.table({n: pa.array([r[i] for r in rows]) for i, n in enumerate(names)})
