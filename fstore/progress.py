"""Progress reporting for long jobs (ingest, dataset builds), shown with rich.

Library code takes a ``Progress``-like object and calls three methods; the
default does nothing, so the library stays quiet unless a caller (the CLI)
asks for a bar.
"""
from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


class Reporter(Protocol):
    def start(self, description: str, total: int | None) -> None: ...
    def advance(self, n: int = 1, *, info: str = "") -> None: ...
    def stop(self) -> None: ...


class Silent:
    """A reporter that reports nothing (the library default)."""

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1, *, info: str = "") -> None:
        pass

    def stop(self) -> None:
        pass


class RichReporter:
    """A progress bar on stderr; a job may start several bars in turn."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: int | None) -> None:
        self.stop()
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                  console=self._console)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, info="")

    def advance(self, n: int = 1, *, info: str = "") -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=n, info=info)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
