"""Served-feature logging: a served-read recorder that writes sampled reads to Parquet.

``FeatureLog`` is a recorder of the served-read hook (fstore.monitoring.events): the
compiled reads of every path call it, inside the read, with the stored rows they used
(fstore._ext._logbuf, which it subclasses). There it decides whether the read is logged
and copies it, as bytes, into its shape's buffer: a read never waits for the log, and when
``queue_size`` reads are already held the read's rows are dropped and counted
(``fstore_log_dropped_total{service}`` on the server). A writer thread collects them every
50 ms (at once when half the queue is held: ``_logbuf.WAKE_MIN``); once a service has
``GROUP_ROWS`` rows, or its file is due, they are decoded into Arrow columns without the GIL
and written as a row group of the service's hidden Parquet file (fstore.monitoring.logroll),
renamed into place once ``roll_rows`` rows are in it or its first is ``roll_seconds`` old.
``close()`` (FeatureStore.close, a server worker's graceful stop) writes everything held. A
SIGKILL loses what was not rolled yet: at most ``roll_seconds`` of reads or ``roll_rows``
rows per service, plus the buffers, per process.

Sampling is by a hash of the request (docs/monitoring.md has the exact rule), so the
same request ids give the same sampled set on every path and every run.

Who attaches it: a FeatureStore, when it opens its online service, if an applied
service is logged; a server worker loads it by name (``events.FEATURE_LOG``) with the
repository's configuration, as it loads ``server.listeners``: serving never imports
monitoring (docs/architecture.md).
"""
from __future__ import annotations

import atexit
import collections
import logging as std_logging
import threading
import time
from typing import Any

from .._ext._logbuf import LogBuffer, sampled  # sampled: the sampling rule (BLAKE2b; docs/monitoring.md)
from ..config import RepoConfig
from ..repo.definitions import logged_services
from ..repo.registry import Registry
from .events import hook, worker_id
from .logcomputed import Answered, answered_tables, entity_columns
from .logroll import GROUP_ROWS, Roll
from .logs import log_dir
from .logtable import LogShape, log_shape

__all__ = ["FeatureLog", "TICK_SECONDS", "sampled"]
log = std_logging.getLogger("fstore.monitoring")
TICK_SECONDS = 0.05   # how often the writer thread takes the recorded reads


class FeatureLog(LogBuffer):
    """The served-read recorder of one repository's feature log (one per process)."""

    def __init__(self, config: RepoConfig, source: Any = None, registry: Registry | None = None) -> None:
        settings = config.monitoring["logging"]
        # source: in process, only this OnlineService's reads are ours
        super().__init__(settings["queue_size"], source)
        self.config = config
        self.registry = registry or Registry(config)
        self.roll_rows: int = settings["roll_rows"]
        self.roll_seconds: float = settings["roll_seconds"]
        self._version = -1
        self._rates: dict[str, float] = {}
        self._snapshots: dict[int, Any] = {}           # registry version -> snapshot (log metadata)
        self._shapes: dict[tuple[int, str, int], tuple[Any, LogShape]] = {}
        self._rolls: dict[str, Roll] = {}              # service -> its rows since its last roll
        self._answered: collections.deque[Answered] = collections.deque()  # request shapes' reads (record_computed)
        self._made: dict[str, list[Any]] = {}          # service -> their tables, collected, not yet written
        self._request_shapes: dict[tuple[int, str, int], tuple[Any, LogShape]] = {}
        self.records: collections.Counter[str] = collections.Counter()  # rows taken, per service
        self.dropped: collections.Counter[str] = collections.Counter()  # rows dropped, per service
        self._reported: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # one writer at a time: the thread, or flush()/close()
        self._stop = threading.Event()
        self._due = threading.Event()   # set when the buffers are half full (LogBuffer.wake), or to stop
        self.wake = self._due.set
        self._rates_for(self.registry.snapshot().version)
        for service in self._rates:  # the metric series exist from the start
            self.records[service] += 0
            self.dropped[service] += 0
        self._thread = threading.Thread(target=self._run, name="fstore-feature-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # an interpreter that exits without close() still writes its rows

    @classmethod
    def from_config(cls, config: RepoConfig) -> "FeatureLog":
        """The recorder a server worker loads (events.load_listener)."""
        return cls(config)

    @classmethod
    def attach(cls, config: RepoConfig, registry: Registry, source: Any) -> "FeatureLog | None":
        """Subscribe a feature log for ``source``'s reads (an OnlineService) when a service is logged."""
        if not logged_services(registry.snapshot(), config):
            return None
        return hook.subscribe(cls(config, source, registry))  # type: ignore[return-value]

    # ---- the serving thread (once per request shape, or per read below rate 1) ------------

    def describe(self, plan: Any, path: str, service: str, full: bool, version: int) -> tuple[float, LogShape | None]:
        """A new request shape of a service: its sample rate under the registry, and its columns."""
        rates = self._rates if version == self._version else self._rates_for(version)
        rate = rates.get(service) or 0.0
        return (rate, self._shape(plan, service, full, version)) if rate > 0 else (0.0, None)

    def _rates_for(self, version: int) -> dict[str, float]:
        """The sample rates under the registry now applied (reads of an older version take them)."""
        snap = self.registry.snapshot()
        if len(self._snapshots) > 16:
            self._snapshots.clear()
        self._snapshots[snap.version] = snap
        self._snapshots.setdefault(version, snap)
        self._rates, self._version = logged_services(snap, self.config), version
        return self._rates

    def _shape(self, plan: Any, service: str, full: bool, version: int) -> LogShape:
        key = (id(plan), service, version)
        found = self._shapes.get(key)
        if found is None or found[0] is not plan:
            if len(self._shapes) > 1024:
                self._shapes.clear()
            found = self._shapes[key] = (plan, log_shape(plan, service, full, self._snapshots.get(version)))
        return found[1]

    def record_computed(self, served: tuple[Any, ...], rplan: Any, rows: list[Any], values: list[Any],
                        status: Any, stamps: Any, now_us: int) -> None:
        """Record a read of a request shape (fstore.online.request), answered in Python: there
        is no stored row to copy for a computed value, so the answer itself is held (values,
        statuses, event times, and the request fields sent) and made into log rows by the
        writer thread. Same sampling rule, sequence and queue bound as a compiled read's."""
        _, path, source, service, full, version, caller, model = served
        if service is None or (self.source is not None and source is not self.source) or not rows:
            return
        rate = (self._rates if version == self._version else self._rates_for(version)).get(service) or 0.0
        if rate <= 0.0:
            return
        seq = self.next_seq()
        if rate < 1.0 and not sampled(caller if caller else f"{worker_id()}-{seq}", rate):
            return
        if len(self._answered) >= self.queue_size:
            self.dropped[service] += len(rows)
            return
        plan = rplan.plan
        key = (id(plan), service, version)
        found = self._request_shapes.get(key)
        if found is None or found[0] is not plan:
            if len(self._request_shapes) > 1024:
                self._request_shapes.clear()
            fields = {f: d for step in (*rplan.fills, *rplan.computes) for f, d in step.request.items()}
            found = self._request_shapes[key] = (plan, log_shape(plan, service, full, self._snapshots.get(version),
                                                                 fields))
        shape = found[1]
        self._answered.append(Answered(shape, list(plan.view_of), seq, now_us, service, model, caller, version,
                                       path, len(rows), entity_columns(shape, rows), list(values), bytes(status),
                                       bytes(stamps)))

    def _take_answered(self) -> None:
        """Make the held answered reads into tables, counted as collected (writer thread)."""
        held = [self._answered.popleft() for _ in range(len(self._answered))]  # appends go on meanwhile
        rows: dict[str, int] = {}
        for a in held:
            rows[a.service] = rows.get(a.service, 0) + a.n
        for service, table in answered_tables(held, worker_id()):
            self._made.setdefault(service, []).append(table)
        self._collected(rows)

    # ---- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._due.wait(TICK_SECONDS)
            self._due.clear()
            if self._stop.is_set():
                return
            try:
                self.flush(due_only=True)
            except Exception:  # noqa: BLE001 - the log must not die; said each time
                log.exception("fstore: the feature log could not write (its rows are lost)")

    def flush(self, due_only: bool = False) -> None:
        """Collect the recorded reads; write those that make a row group and roll the files
        that are due (``due_only``), or write and roll everything."""
        with self._lock:
            for service, n in self.dropped_rows().items():
                self.dropped[service] += n
            self._collected(self.collect())
            self._take_answered()
            now = time.monotonic()
            due = {s for s, r in self._rolls.items()
                   if not due_only or r.rows >= self.roll_rows or now - r.since >= self.roll_seconds}
            try:
                self._write(due | {s for s, r in self._rolls.items() if r.unwritten >= GROUP_ROWS}, due)
            finally:
                self._report()

    def _write(self, services: set[str], due: set[str]) -> None:
        """Decode and write the collected rows of ``services``, then roll those ``due``. A
        service whose rows cannot be written loses its roll (said by the caller); the others go on."""
        if not services:
            return
        failed: BaseException | None = None
        try:
            decoded, taken = self.decode(worker_id(), services)
            self._collected(taken)
        except Exception as exc:  # noqa: BLE001 - what was held is lost; the files written stay hidden
            decoded, failed = [], exc
            due = services
        tables: dict[str, list[Any]] = {}
        for service, table in decoded:
            tables.setdefault(service, []).append(table)
        for service in services:
            roll = self._rolls[service]
            made = self._made.pop(service, [])
            try:
                if failed is None:
                    roll.write(tables.get(service, []) + made)
                if service in due:
                    del self._rolls[service]
                    if failed is None:
                        roll.finish()
                    else:
                        roll.abort()
            except Exception as exc:  # noqa: BLE001 - this service's roll is lost
                self._rolls.pop(service, None)
                roll.abort()
                failed = failed or exc
        if failed is not None:
            raise failed

    def _collected(self, rows: dict[str, int]) -> None:
        """Rows taken off the recorder's queue, per service: counted, and into their service's roll."""
        for service, n in rows.items():
            roll = self._rolls.get(service)
            if roll is None:
                roll = self._rolls[service] = Roll(log_dir(self.config, service))
            roll.collected(n)
            self.records[service] += n

    def _report(self) -> None:
        """Tell the server's metrics what was counted since the last tick."""
        counted = hook.on_count
        if counted is None:
            return
        for name, counter in (("log_records", self.records), ("log_dropped", self.dropped)):
            for service, total in list(counter.items()):
                before = self._reported.get((name, service))
                if before != total:
                    counted(name, service, total - (before or 0))
                    self._reported[(name, service)] = total

    def stats(self) -> dict[str, dict[str, int]]:
        """Rows taken and dropped so far, per service (in process; the server exports them)."""
        with self._lock:
            for service, n in self.dropped_rows().items():
                self.dropped[service] += n
        return {s: {"records": self.records[s], "dropped": self.dropped[s]} for s in {*self.records, *self.dropped}}

    def close(self) -> None:
        """Stop recording, stop the writer thread, and write every row still held."""
        hook.unsubscribe(self)
        atexit.unregister(self.close)
        self._stop.set()
        self._due.set()
        self._thread.join(timeout=60)
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - a stopping server or store must still stop; said once
            log.exception("fstore: the feature log could not write its last rows (they are lost)")
