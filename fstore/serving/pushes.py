"""PUSHes waiting for the writer thread, written in groups (fstore.online.push).

Below the connection and the worker's state in the package's imports: the connection
queues PUSHes here and the state makes the queue, so what the queue needs of them is
said here (``PushAnswer``, ``PushWorker``) rather than imported from them.
"""
from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..online.push import push_group

if TYPE_CHECKING:
    from ..offline.store import OfflineStore
    from ..online.service import OnlineService

MAX_PUSH_GROUP = 256  # PUSHes written in one transaction at most: bounds a group's latency


class PushAnswer(Protocol):
    """The connection a PUSH came from (fstore.serving.connection.ConnectionBase)."""

    def push_done(self, rid: int, outcome: Any, start: float) -> None:
        """Answer the PUSH ``rid``: ``outcome`` is its result, or the exception refusing it."""


class PushWorker(Protocol):
    """What the queue uses of its worker's state (fstore.serving.state.ServerState)."""

    pusher: Executor         # the writer thread
    online: "OnlineService"
    offline: "OfflineStore"  # PUSHes with offline=true append here
    metrics: Any
    inflight: int            # requests received and not yet answered


@dataclass
class QueuedPush:
    conn: PushAnswer
    rid: int
    args: dict[str, Any]
    start: float


class PushQueue:
    """PUSHes waiting for the writer thread, written in groups.

    Every LMDB write transaction ends in an fsync, so one PUSH per transaction made
    PUSHes queue behind each other's fsyncs under load (p99 ~700 ms). Here the PUSHes
    read while a group is being written form the next group: one transaction and one
    fsync for all of them (push.push_group). Each is still validated and answered on
    its own, a refused one does not fail the others, and replies go out only after
    the commit.
    """

    def __init__(self, state: PushWorker) -> None:
        self.state = state
        self.waiting: list[QueuedPush] = []
        self.busy = False  # a group is scheduled or being written

    def add(self, item: QueuedPush) -> None:
        self.waiting.append(item)
        if not self.busy:
            self.busy = True
            # on the next loop iteration: the PUSHes read in this one (pipelined, or from
            # other connections) join the first group rather than wait for the next
            asyncio.get_running_loop().call_soon(self._next)

    def _next(self) -> None:
        st = self.state
        self._gauge()
        if not self.waiting:
            self.busy = False
            return
        group, self.waiting = self.waiting[:MAX_PUSH_GROUP], self.waiting[MAX_PUSH_GROUP:]
        fut = asyncio.get_running_loop().run_in_executor(
            st.pusher, push_group, st.online.snapshot, st.online.store, st.offline, [q.args for q in group])
        fut.add_done_callback(functools.partial(self._done, group))

    def _done(self, group: list[QueuedPush], fut: asyncio.Future) -> None:
        st = self.state
        try:
            outcomes, commits = fut.result()
        except Exception as exc:  # noqa: BLE001 - push_group reports per PUSH; this is a bug: answer them all
            outcomes, commits = [exc] * len(group), 0
        st.inflight -= len(group)
        if st.metrics and commits:
            st.metrics.push_committed(commits)
        for q, outcome in zip(group, outcomes):
            q.conn.push_done(q.rid, outcome, q.start)
        self._next()

    def _gauge(self) -> None:
        # called between requests, so st.inflight counts exactly the PUSHes not yet answered
        if self.state.metrics:
            self.state.metrics.set_inflight(self.state.inflight)

    async def wait_idle(self, deadline: float) -> None:
        """Until every PUSH received is answered (or the deadline passes)."""
        while (self.busy or self.waiting) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
