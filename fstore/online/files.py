"""Rows from Parquet/CSV files named on the command line (``fstore load``, ``fstore push``).

Each file is read with the loader its suffix names, typed by the view's source rule (the
same as ingest), and every file is read even after a bad one, so one run names every bad
row (BadRows). Keys too long for LMDB are bad rows too, found before anything is written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from .._ext._online import MAX_KEY
from ..offline.loaders import get_loader
from ..offline.problems import RowProblems
from ..offline.rows import read_typed
from ..progress import Reporter, Silent
from ..repo.definitions import Source, infer_format
from ..repo.names import view_name
from .codec import key_sizes


def read_files(root: Path, view: dict[str, Any], source: dict[str, Any], files: Sequence[str | Path],
               problems: RowProblems, progress: Reporter | None = None) -> list[pa.Table]:
    """The typed rows of ``files`` (rows with a null key dropped and counted in ``problems``);
    raises BadRows naming every bad row of every file."""
    progress = progress or Silent()
    tables: list[pa.Table] = []
    progress.start(f"read {view_name(view)}", len(files))
    try:
        seq = 0
        for path in files:
            path = Path(path)
            spec = {**source, "path": str(path.resolve()), "format": infer_format(str(path))}
            loader = get_loader(Source(**spec), root)
            units = loader.units()
            if not units:
                problems.add_line(seq, str(path), f"no file at {path}")
            for unit in units:
                table = read_typed(view, source, loader, unit, problems, seq)
                if table is not None and not _long_keys(view, table, problems, seq, unit.id, loader.row_label) \
                        and not problems:
                    tables.append(table)
                seq += 1
            progress.advance(1, info=f"{sum(t.num_rows for t in tables):,} rows")
    finally:
        progress.stop()
    problems.check()
    return tables


def _long_keys(view: dict[str, Any], table: pa.Table, problems: RowProblems, seq: int, where: str,
               row_label: Callable[[int], str]) -> bool:
    """Record the rows whose key is longer than LMDB takes; True if there were any."""
    sizes = key_sizes(view, table)
    long = np.flatnonzero(sizes > MAX_KEY)
    problems.add_rows(seq, where, row_label, long, view["join_keys"][0], 0,
                      f"whose key ({', '.join(view['join_keys'])}) is longer than LMDB's {MAX_KEY} bytes",
                      lambda i: f"the key is {int(sizes[i])} bytes; LMDB keys are at most {MAX_KEY}")
    return bool(len(long))
