"""One service's served-feature log between two rolls, and the files it goes to.

The writer thread of fstore.monitoring.logging counts here the rows it collected (held
as bytes by the recorder, fstore._ext._logbuf) and, once there are ``GROUP_ROWS`` of them or
the roll is due, writes them, decoded, as one Parquet row group into the roll's files. The
files stay hidden (``.part-*.parquet.tmp``, skipped by readers) until the roll: ``finish``
closes them and renames them into place. So the Parquet encoding (which releases the GIL)
is spread over the roll instead of falling due all at once when it ends, and a crash still
leaves only whole, renamed files.

One file per schema (registry version) and UTC day of ``request_time``, named and placed
as fstore.monitoring.logs names every log file (``part_path``).
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc  # imported with the log, not by its writer's first roll (an import under load stalls it)
import pyarrow.parquet as pq

from .logs import DAY_US, hidden, part_path, split_days
from .logtable import STATUS_SUFFIX, TIME_SUFFIX

GROUP_ROWS = 8192   # held rows are written as a row group once there are this many


def write_options(schema: pa.Schema) -> dict[str, Any]:
    """The Parquet writer's options for a log file (a reader gets the same table whatever
    they are; measured in docs/benchmarks.md): dictionary encoding only where values repeat
    (statuses, and strings but the unique ``request_id``: a dictionary tried on every column
    was half the encoding time); the event times delta-encoded and, like the floats, not
    compressed again (Snappy gains nothing on them). A third less CPU than the defaults at
    their file size."""
    repeat = [f.name for f in schema if f.name.endswith(STATUS_SUFFIX)
              or (pa.types.is_string(f.type) and f.name != "request_id")]
    times = [f.name for f in schema if f.name.endswith(TIME_SUFFIX)]
    plain = {*times, *(f.name for f in schema if pa.types.is_floating(f.type))}
    return {"use_dictionary": repeat, "column_encoding": dict.fromkeys(times, "DELTA_BINARY_PACKED"),
            "compression": {f.name: "none" if f.name in plain else "snappy" for f in schema}}


class Roll:
    """A service's rows since its last roll: how many, how many not yet written, and the hidden
    files being written."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.since = time.monotonic()
        self.rows = 0        # every row of the roll, written or not
        self.unwritten = 0   # rows collected, not yet written (the recorder holds them)
        self._schemas: list[pa.Schema] = []
        self._files: dict[tuple[int, int], tuple[pq.ParquetWriter, Path, Path]] = {}  # (schema, day) -> file

    def collected(self, rows: int) -> None:
        self.rows += rows
        self.unwritten += rows

    def write(self, tables: list[pa.Table]) -> None:
        """The service's decoded rows into the roll's hidden files: one row group per schema
        and day (tables of one schema are joined without a copy)."""
        self.unwritten = 0
        groups: dict[int, list[pa.Table]] = {}
        for table in tables:
            groups.setdefault(self._schema_index(table.schema), []).append(table)
        for index, same in groups.items():
            table = same[0] if len(same) == 1 else pa.concat_tables(same)
            times = pc.min_max(table.column("request_time"))
            first, last = times["min"].value, times["max"].value
            if first is not None and first // DAY_US == last // DAY_US:  # one day, the usual case: no split
                self._file(index, first // DAY_US, table.schema).write_table(table, row_group_size=table.num_rows)
                continue
            for day, part in split_days(table):
                self._file(index, day, part.schema).write_table(part, row_group_size=part.num_rows)

    def finish(self) -> None:
        """Close the files and rename them into place (what was collected is written first)."""
        files, self._files = self._files, {}
        for writer, tmp, target in files.values():
            writer.close()
            os.replace(tmp, target)

    def abort(self) -> None:
        """Drop the roll (a write failed): close and remove its hidden files."""
        files, self._files = self._files, {}
        for writer, tmp, _ in files.values():
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _schema_index(self, schema: pa.Schema) -> int:
        for i, known in enumerate(self._schemas):
            if known is schema or known.equals(schema, check_metadata=True):
                return i
        self._schemas.append(schema)
        return len(self._schemas) - 1

    def _file(self, index: int, day: int, schema: pa.Schema) -> pq.ParquetWriter:
        found = self._files.get((index, day))
        if found is None:
            target = part_path(self.folder, day)
            tmp = hidden(target)
            found = self._files[(index, day)] = (pq.ParquetWriter(tmp, schema, **write_options(schema)), tmp, target)
        return found[0]
