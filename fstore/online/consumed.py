"""What each view's materializations have consumed of its ingest log (fstore.offline.log).

Incremental materialization is driven by the ingest log, not by event time alone: a row
is new when its run was written after what the view's last materialization consumed,
whatever its event time. So a late-arriving row (ingested after a run whose END is past
its event time) is still written, and a future END cannot hide rows ingested later.

The state of a view version is a list of *segments* ``[(seq, bound), ...]``, sorted by
run number: run ``r`` belongs to the first segment with ``seq >= r``, and every row of
that run with event time <= ``bound`` has been through a materialization (written, or
found an online row at least as new). A run after the last segment, or whose bound is
``NO_TIME``, has had nothing consumed. Rows dated after a run's bound (after the END
of the run that read it) stay *pending*: the first run whose END reaches them reads
them, so END never moves past rows it did not write.

- ``materialize-incremental END`` reads, of every run, the rows with
  ``bound < event time <= END``; afterwards every run's bound is ``max(bound, END)``.
- ``materialize START END`` reads the rows in ``[START, END]`` of every run; a run's bound
  becomes ``max(bound, END)`` only where the window joins what it had (START at or before
  its bound, or before its oldest row): a window never claims a gap it did not write.

The view's *watermark* is the smallest bound of the runs consumed: every row ingested
up to the consumed run with an event time up to the watermark is online.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from ..offline.log import LogRun
from ..times import NO_TIME

MAX_SEGMENTS = 64  # beyond this, neighbours merge to the lower bound (a re-read, never a miss)


@dataclass
class Consumed:
    """One view version's materialization state (kept as ``mat:<view>`` in the online store)."""

    segments: list[tuple[int, int]] = field(default_factory=list)
    at: int | None = None    # when the last materialization finished (UTC microseconds)
    end: int | None = None   # the END it was given

    def bound(self, seq: int) -> int:
        """Event time up to which run ``seq``'s rows are consumed (NO_TIME: none)."""
        i = bisect.bisect_left([s for s, _ in self.segments], seq)
        return self.segments[i][1] if i < len(self.segments) else NO_TIME

    @property
    def seq(self) -> int | None:
        """The newest run consumed (in part or whole), None before any."""
        return self.segments[-1][0] if self.segments else None

    @property
    def watermark(self) -> int | None:
        """The smallest bound of the consumed runs, None when some run has nothing consumed."""
        if not self.segments:
            return None
        low = min(b for _, b in self.segments)
        return None if low == NO_TIME else low

    def to_doc(self) -> dict[str, Any]:
        return {"segments": [list(s) for s in self.segments], "at": self.at, "end": self.end}

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> "Consumed":
        """The stored state; none (never materialized, or by an fstore before the log): nothing consumed."""
        if not doc:
            return cls()
        return cls([(int(s), int(b)) for s, b in doc.get("segments", [])], doc.get("at"), doc.get("end"))


Plan = list[tuple[LogRun, int | None]]  # (run, first event time to read, None: from the oldest)


def incremental_plan(consumed: Consumed, runs: list[LogRun], end_us: int) -> Plan:
    """Every run with rows after its bound and at or before END, with the first event time to read."""
    plan: Plan = []
    for run in runs:
        if run.max_us is None or run.min_us is None:
            continue
        bound = consumed.bound(run.seq)
        if run.max_us <= bound or run.min_us > end_us or bound >= end_us:
            continue
        plan.append((run, None if bound == NO_TIME else bound + 1))
    return plan


def window_plan(runs: list[LogRun], start_us: int | None, end_us: int) -> Plan:
    """Every run with rows in [START, END]."""
    return [(run, start_us) for run in runs
            if run.max_us is not None and run.min_us is not None and run.min_us <= end_us
            and (start_us is None or run.max_us >= start_us)]


def after_incremental(consumed: Consumed, runs: list[LogRun], end_us: int) -> Consumed:
    """The state once an incremental run to END has written its plan."""
    return _compress([(r.seq, max(consumed.bound(r.seq), end_us)) for r in runs], end_us)


def after_window(consumed: Consumed, runs: list[LogRun], start_us: int | None, end_us: int) -> Consumed:
    """The state once a window [START, END] has been written: only runs it joins advance."""
    bounds = []
    for r in runs:
        bound = consumed.bound(r.seq)
        joins = start_us is None or start_us <= bound or r.min_us is None or start_us <= r.min_us
        bounds.append((r.seq, max(bound, end_us) if joins else bound))
    return _compress(bounds, end_us)


def _compress(bounds: list[tuple[int, int]], end_us: int) -> Consumed:
    """Runs with equal bounds in a row become one segment; trailing runs with nothing consumed
    are dropped (the same as being after the last segment)."""
    segments: list[tuple[int, int]] = []
    for seq, bound in bounds:
        if segments and segments[-1][1] == bound:
            segments[-1] = (seq, bound)
        else:
            segments.append((seq, bound))
    while segments and segments[-1][1] == NO_TIME:
        segments.pop()
    while len(segments) > MAX_SEGMENTS:
        (_, b0), (s1, b1) = segments[0], segments[1]
        segments[0:2] = [(s1, min(b0, b1))]
    return Consumed(segments, None, end_us)
