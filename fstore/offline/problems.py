"""The bad rows of one run (an ingest of a view, a bulk load, a push), found all at once.

A run types every unit it reads even after a bad one, so that one run reports every bad
row: the first ``SHOWN`` in full (file, row, column, the value and why), then a count per
problem ("and 1,234 more rows with a null event timestamp in column 'ts'"). Rows are
numbered from 1 everywhere, and the message says so. A run with bad rows writes nothing.

Rows whose join key is null are not bad rows: they can never be joined or read, so a run
over files skips them and counts them (``null_key_rows``), and the command that ran it
says how many it skipped and in which column. A push refuses them instead (``refuse_null_keys``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import BadRows, IngestError

#: bad rows shown in full; the others are counted per problem
SHOWN = 20
#: trial casts one run may spend finding the bad values of columns that do not cast
SEARCH_BUDGET = 20_000


@dataclass
class _Shown:
    order: tuple[int, int, int]   # (unit, row, column): the order rows are shown in
    where: str
    row: int | None               # 0-based; None for a problem of a whole file or column
    column: str | None
    text: str
    problem: str | None = None    # what counts it among the rows not shown


@dataclass
class RowProblems:
    """Bad rows collected over a run; ``check()`` raises BadRows naming them all."""

    what: str                                   # the run, as messages name it ("ingest of trips_v1")
    refuse_null_keys: bool = False
    budget: int = field(default_factory=lambda: SEARCH_BUDGET)
    shown: list[_Shown] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)        # problem -> rows with it
    at_least: dict[str, int] = field(default_factory=dict)      # problem -> more rows not searched
    bad_rows: dict[int, list[np.ndarray]] = field(default_factory=dict)  # unit -> positions per problem
    lines: int = 0                              # problems that are not rows (a file, a column)
    null_key_rows: int = 0
    null_key_columns: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.counts or self.lines)

    def add_rows(self, unit: int, where: str, label: Callable[[int], str], positions: np.ndarray,
                 column: str, col_order: int, problem: str, detail: Callable[[int], str],
                 unsearched: int = 0, origin: np.ndarray | None = None) -> None:
        """Rows ``positions`` (0-based, ascending) of one unit share ``problem`` (the text that
        counts them: "with a null event timestamp in column 'ts'"); ``detail(i)`` says what is
        wrong with row i, for the rows shown in full. ``origin`` maps a position to its row in
        the unit when rows were skipped before checking (``label`` takes that row)."""
        if not len(positions) and not unsearched:
            return
        rows = positions if origin is None else origin[positions]
        self.counts[problem] = self.counts.get(problem, 0) + len(positions)
        self.at_least[problem] = self.at_least.get(problem, 0) + unsearched
        self.bad_rows.setdefault(unit, []).append(rows)
        for i, row in zip(positions[:SHOWN].tolist(), rows[:SHOWN].tolist()):
            self._show(_Shown((unit, row, col_order), where, row, column,
                              f"{where} at {label(row)}, column {column!r}: {detail(i)}", problem))

    def add_line(self, unit: int, where: str, text: str, column: str | None = None, col_order: int = -1) -> None:
        """A problem of a whole unit or column (a missing column, a column of the wrong type)."""
        self.lines += 1
        self._show(_Shown((unit, -1, col_order), where, None, column, text))

    def add_error(self, unit: int, exc: IngestError) -> None:
        """An IngestError a loader raised for a whole unit (unreadable, a missing column)."""
        self.add_line(unit, exc.file or self.what, str(exc), exc.column)

    def _show(self, item: _Shown) -> None:
        """Keep the first SHOWN problems in (unit, row, column) order."""
        self.shown.append(item)
        self.shown.sort(key=lambda s: s.order)
        del self.shown[SHOWN:]

    def rows_bad(self) -> int:
        """Distinct bad rows (a row with two bad columns counts once)."""
        return sum(int(np.unique(np.concatenate(arrs)).size) for arrs in self.bad_rows.values())

    def message(self) -> str:
        rows = self.rows_bad()
        found = ([f"{rows:,} bad row(s)"] if rows else []) + \
            ([f"{self.lines:,} problem(s) with a whole file or column"] if self.lines else [])
        lines = [f"{self.what}: {' and '.join(found)}; nothing was written (rows are numbered from 1):"]
        lines += [f"  {s.text}" for s in self.shown]
        other = self.lines - sum(1 for s in self.shown if s.row is None)
        if other:
            lines.append(f"  and {other:,} more problem(s) of whole files or columns")
        shown_of = Counter(s.problem for s in self.shown if s.problem)
        for problem, n in self.counts.items():
            more = n - shown_of[problem]
            extra = self.at_least.get(problem, 0)
            if extra:
                lines.append(f"  and at least {more + extra:,} more row(s) {problem} (the search for them stopped "
                             f"after {SEARCH_BUDGET:,} trial casts)")
            elif more:
                lines.append(f"  and {more:,} more row(s) {problem}")
        return "\n".join(lines)

    def check(self) -> None:
        """Raise BadRows naming every problem, if there is one."""
        if not self:
            return
        first = self.shown[0] if self.shown else None
        raise BadRows(self.message(), file=first.where if first else None,
                      row=None if first is None or first.row is None else first.row + 1,
                      column=first.column if first else None, count=self.rows_bad())

    def skipped_null_keys(self, n: int, columns: list[str]) -> None:
        self.null_key_rows += n
        self.null_key_columns = list(dict.fromkeys([*self.null_key_columns, *columns]))
