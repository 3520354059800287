"""Served-feature logging: a served-read listener that writes sampled reads to Parquet.

``FeatureLog`` listens to the served-read hook (fstore.monitoring.events). On the serving
thread it only decides whether a read is logged and appends a reference to it to a
bounded queue: a read never waits for the log, and when the queue is full the read's
rows are dropped and counted (``fstore_log_dropped_total{service}`` on the server). A
writer thread turns the queued reads into Arrow rows in batches (fstore.monitoring.logtable)
and rolls one Parquet file per service once ``roll_rows`` rows are buffered or the oldest
is ``roll_seconds`` old (fstore.monitoring.logs writes it under a temporary name and
renames it). ``close()`` (FeatureStore.close, a server worker's graceful stop) writes
everything held. A SIGKILL loses what was not rolled yet: at most ``roll_seconds`` of
reads or ``roll_rows`` rows per service, plus the queue, per process.

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
import gc
import hashlib
import itertools
import logging as std_logging
import threading
import time
from typing import Any

import pyarrow as pa

from ..config import RepoConfig
from ..repo.definitions import logged_services
from ..repo.registry import Registry
from .events import ServedRead, hook, worker_id
from .logs import log_dir, write_log_file
from .logtable import LogShape, log_shape, to_table

log = std_logging.getLogger("fstore.monitoring")
TICK_SECONDS = 0.05   # how often the writer thread takes the queued reads
_HASH_SPAN = 1 << 64


def sampled(key: str, rate: float) -> bool:
    """Whether a read whose request key is ``key`` is logged at ``rate``: the first 8 bytes
    of the BLAKE2b digest of its UTF-8, as a big-endian integer, are below rate * 2**64."""
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * _HASH_SPAN


class FeatureLog:
    """The served-read listener of one repository's feature log (one per process)."""

    def __init__(self, config: RepoConfig, source: Any = None, registry: Registry | None = None) -> None:
        settings = config.monitoring["logging"]
        self.config = config
        self.registry = registry or Registry(config)
        self.source = source  # in process: only this OnlineService's reads are ours
        self.queue_size: int = settings["queue_size"]
        self.roll_rows: int = settings["roll_rows"]
        self.roll_seconds: float = settings["roll_seconds"]
        self._default = settings["sample_rate"]
        self._queue: collections.deque[tuple[int, ServedRead]] = collections.deque()
        self._seq = itertools.count(1)
        self._version = -1
        self._rates: dict[str, float] = {}
        self._snapshots: dict[int, Any] = {}           # registry version -> snapshot (log metadata)
        self._shapes: dict[tuple[int, str, int], tuple[Any, LogShape]] = {}
        self._buffers: dict[str, tuple[float, int, list[pa.Table]]] = {}  # service -> (since, rows, tables)
        self.records: collections.Counter[str] = collections.Counter()  # rows taken, per service
        self.dropped: collections.Counter[str] = collections.Counter()  # rows dropped, per service
        self._reported: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()  # one writer at a time: the thread, or flush()/close()
        self._stop = threading.Event()
        self._rates_for(self.registry.snapshot().version)
        for service in self._rates:  # the metric series exist from the start
            self.records[service] += 0
            self.dropped[service] += 0
        self._thread = threading.Thread(target=self._run, name="fstore-feature-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # an interpreter that exits without close() still writes its rows

    @classmethod
    def from_config(cls, config: RepoConfig) -> "FeatureLog":
        """The listener a server worker loads (events.load_listener)."""
        return cls(config)

    @classmethod
    def attach(cls, config: RepoConfig, registry: Registry, source: Any) -> "FeatureLog | None":
        """Subscribe a feature log for ``source``'s reads (an OnlineService) when a service is logged."""
        if not logged_services(registry.snapshot(), config):
            return None
        return hook.subscribe(cls(config, source, registry))  # type: ignore[return-value]

    # ---- the serving thread -------------------------------------------------------------

    def __call__(self, ev: ServedRead) -> None:
        """A served read: logged (a reference queued) if its service is and it is sampled."""
        service = ev.service
        if service is None or (self.source is not None and ev.source is not self.source):
            return
        rates = self._rates if ev.registry_version == self._version else self._rates_for(ev.registry_version)
        rate = rates.get(service)
        if not rate:
            return
        seq = next(self._seq)
        if rate < 1.0 and not sampled(ev.caller_request_id or f"{worker_id()}-{seq}", rate):
            return
        if len(self._queue) >= self.queue_size:
            self.dropped[service] += ev.rows
            return
        self._queue.append((seq, ev))

    def _rates_for(self, version: int) -> dict[str, float]:
        """The sample rates under the registry now applied (reads of an older version take them)."""
        snap = self.registry.snapshot()
        if len(self._snapshots) > 16:
            self._snapshots.clear()
        self._snapshots[snap.version] = snap
        self._snapshots.setdefault(version, snap)
        self._rates, self._version = logged_services(snap, self.config), version
        return self._rates

    # ---- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.flush(due_only=True)
            except Exception:  # noqa: BLE001 - the log must not die; said each time
                log.exception("fstore: the feature log could not write (its rows are lost)")

    def flush(self, due_only: bool = False) -> None:
        """Turn the queued reads into rows and write the files due (``due_only``), or all."""
        with self._lock:
            self._take()
            now = time.monotonic()
            for service, (since, rows, tables) in list(self._buffers.items()):
                if not due_only or rows >= self.roll_rows or now - since >= self.roll_seconds:
                    del self._buffers[service]
                    self._write(service, tables)
            self._report()

    def _take(self) -> None:
        """Every queued read, converted in batches of one plan and row count, with the cyclic
        garbage collector paused meanwhile: the conversion makes many short-lived containers
        and no cycles, and each collection it would trigger would also walk every read still
        queued (measured: a third of the log's CPU in a server worker)."""
        if not self._queue:
            return
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            self._convert()
        finally:
            if paused:
                gc.enable()

    def _convert(self) -> None:
        queue, n = self._queue, len(self._queue)
        groups: dict[tuple[Any, ...], list[tuple[int, ServedRead]]] = {}
        pop = queue.popleft
        for _ in range(n):
            item = pop()
            ev = item[1]
            ents = ev.entities
            rows = len(ents) if type(ents) is not dict else ev.rows
            # one batch per plan (a registry version and service), path and row count
            key = (id(ev.plan), ev.path, rows)
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            group.append(item)
        pid = worker_id()
        for key, reads in groups.items():
            ev = reads[0][1]
            if not key[2]:
                continue  # a read of no entity rows has no log rows
            table = to_table(self._shape(ev), ev.plan, reads, key[2], pid)
            since, held, tables = self._buffers.get(ev.service, (time.monotonic(), 0, []))
            tables.append(table)
            self._buffers[ev.service] = (since, held + table.num_rows, tables)  # type: ignore[index]
            self.records[ev.service] += table.num_rows  # type: ignore[index]

    def _shape(self, ev: ServedRead) -> LogShape:
        key = (id(ev.plan), ev.service, ev.registry_version)
        found = self._shapes.get(key)
        if found is None or found[0] is not ev.plan:
            if len(self._shapes) > 1024:
                self._shapes.clear()
            snap = self._snapshots.get(ev.registry_version)
            found = self._shapes[key] = (ev.plan, log_shape(ev.plan, ev.service, ev.full_feature_names, snap))
        return found[1]

    def _write(self, service: str, tables: list[pa.Table]) -> None:
        """One file per schema (registry version) among a service's buffered tables."""
        by_schema: dict[pa.Schema, list[pa.Table]] = {}
        for t in tables:
            for schema, same in by_schema.items():
                if schema.equals(t.schema, check_metadata=True):
                    same.append(t)
                    break
            else:
                by_schema[t.schema] = [t]
        for same in by_schema.values():
            write_log_file(log_dir(self.config, service), pa.concat_tables(same))

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
        return {s: {"records": self.records[s], "dropped": self.dropped[s]} for s in {*self.records, *self.dropped}}

    def close(self) -> None:
        """Stop listening, stop the writer thread, and write every row still held."""
        hook.unsubscribe(self)
        atexit.unregister(self.close)
        self._stop.set()
        self._thread.join(timeout=60)
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - a stopping server or store must still stop; said once
            log.exception("fstore: the feature log could not write its last rows (they are lost)")
