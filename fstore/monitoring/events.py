"""The served-read hook: one event for every feature vector fstore serves.

Served values leave through three paths: ``FeatureStore.get_online_features`` (in
process), the server's Python path and its compiled fast path. Each hands every read it
answered to ``hook.emit`` as a ``ServedRead``, after the reply is on its way; listeners
(feature logging, skew checks, a team's own) subscribe with ``subscribe``. The server's
Prometheus GET metrics are not a listener: they are counted in C (fstore._ext._counters),
so that a fast GET runs no Python when no Python listener is subscribed.
As with asyncpg's query loggers and SQLAlchemy's events, the core knows no listener:

    from fstore.monitoring import events
    events.subscribe(my_listener)      # my_listener(event: ServedRead) -> None

Costs: with no listener subscribed a path checks one flag (``hook.active``) and builds
nothing. With listeners, the server's fast path makes a Python call per GET to build and
hand out the event (tens of microseconds with a listener that writes Prometheus metrics,
docs/benchmarks.md); an event holds references to what the read already made (the
packed reply values on the server, the flat value list in process, the status and
timestamp buffers): decoding happens only when a listener asks (``values()``).

Recorders, the second form of subscription, are for listeners that must cost well under a
microsecond a read (the served-feature log): a compiled subclass of
``fstore._ext._record.Recorder``, subscribed with the same ``subscribe``. The compiled read
calls it, inside the read, with the raw buffers it already holds (the stored rows it used,
the statuses and event times, the entity rows as given) and the read's identity: no
``ServedRead`` is built for it and no Python function called. A path checks
``hook.recorders`` (a tuple, empty when none) and hands it to the compiled read in its
``served`` tuple (fstore/_ext/_record.pxd). A recorder that raises is counted and logged
like a listener.

A listener that raises never fails a read: the error is counted per listener
(``hook.errors``, and ``fstore_listener_errors`` where the server's metrics run) and
logged once per listener. Listeners run on the serving thread, after the reply was
written: one that must do slow work (write files) queues it and returns.

This module sits below the online store in the layers (docs/architecture.md): it
imports only fstore's base modules, so every serving path can import it.
"""
from __future__ import annotations

import importlib
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

import msgpack

from .._ext._constants import Status
from .._ext._record import Recorder
from ..errors import InvalidConfig
from ..times import NO_TIME

IN_PROCESS = "in_process"    # FeatureStore.get_online_features
SERVER = "server"            # the server's Python path (new shapes, errors checked, metadata off...)
SERVER_FAST = "server_fast"  # the server's compiled fast path
PATHS = (IN_PROCESS, SERVER, SERVER_FAST)

Listener = Callable[["ServedRead"], None]
log = logging.getLogger("fstore.monitoring")

_PID = os.getpid()


def _after_fork() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def worker_id() -> int:
    """This process's id, as events name their worker (kept current across fork)."""
    return _PID


@dataclass(slots=True)
class ServedRead:
    """One served read: what was asked, under which registry, and what was answered.

    ``values`` is the answer as the path made it: a flat output-major list of
    outputs x rows (in process) or the MessagePack of one list per output (server);
    ``status`` holds one Status per output and row (output-major), ``stamps`` one
    int64 event time per view and row (NO_TIME: no row), both as raw bytes. Use the
    methods to read them. ``plan`` has ``names``, ``dtypes``, ``view_of``, ``views``
    and ``key_columns``.
    """

    time_us: int                      # when the read was answered, UTC microseconds
    request_id: int                   # the wire request id, or a per-process counter in process
    path: str                         # IN_PROCESS, SERVER or SERVER_FAST
    worker: int                       # the serving process's pid
    service: str | None               # the feature service asked for, or None
    features: list[str] | None        # the feature references asked for, or None
    full_feature_names: bool
    registry_version: int
    entities: Any                     # join key columns (dict of lists) or entity rows (list of dicts)
    caller_request_id: str | None     # the caller's own id for the request, when it sent one
    seconds: float                    # time spent answering (server: frame read to reply written)
    plan: Any
    values: Any
    status: Any
    stamps: Any
    client: str | None = None         # the client name HELLO gave (server paths), when it gave one
    #: what answered in process (its OnlineService), so that a listener of one repository can
    #: tell its reads from another's in the same process; None on the server (one repository)
    source: Any = None
    #: the model the read named ('fraud_model' or 'fraud_model:3'), served through ``service``
    model: str | None = None

    @property
    def rows(self) -> int:
        """Entity rows in the request."""
        if type(self.entities) is dict:
            return len(next(iter(self.entities.values()))) if self.entities else 0
        return len(self.entities)

    @property
    def feature_names(self) -> list[str]:
        return list(self.plan.names)

    def entity_columns(self) -> dict[str, list[Any]]:
        """The join key columns of the request (every join key of the plan)."""
        ents = self.entities
        if type(ents) is dict:
            return {k: list(ents.get(k, [None] * self.rows)) for k in self.plan.key_columns}
        return {k: [r.get(k) for r in ents] for k in self.plan.key_columns}

    def value_columns(self) -> list[list[Any]]:
        """The values answered, one list per output feature (defaults included)."""
        if isinstance(self.values, (bytes, bytearray)):
            return msgpack.unpackb(self.values, raw=False, timestamp=3, strict_map_key=False)
        n = self.rows
        return [self.values[i * n:(i + 1) * n] for i in range(len(self.plan.names))]

    def status_columns(self) -> list[list[Status]]:
        """The Status of every value, one list per output feature."""
        n, raw = self.rows, bytes(self.status)
        return [[Status(s) for s in raw[i * n:(i + 1) * n]] for i in range(len(self.plan.names))]

    def timestamp_columns(self) -> list[list[int | None]]:
        """The event time (UTC microseconds, None: no row) of every value, one list per output."""
        n = self.rows
        per_view = memoryview(bytes(self.stamps)).cast("q")
        views = [[None if t == NO_TIME else t for t in per_view[v * n:(v + 1) * n]]
                 for v in range(len(per_view) // n if n else 0)]
        return [list(views[v]) if views else [] for v in self.plan.view_of]


class Hook:
    """The listeners of served reads in this process; ``active`` is the one flag the
    serving paths check."""

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()
        self.active = False
        #: the compiled recorders (see the module's docstring); the paths pass them to the reads
        self.recorders: tuple[Recorder, ...] = ()
        self.errors: dict[str, int] = {}
        #: told the listener's name whenever one raises (the server's metrics count it)
        self.on_error: Callable[[str], None] | None = None
        #: told ``(counter, label, n)`` when a listener counts something the server exports
        #: (the feature log: "log_records" and "log_dropped" per service); None: not exported
        self.on_count: Callable[[str, str, int], None] | None = None
        self._ids = itertools.count(1)

    def subscribe(self, listener: Listener) -> Listener:
        """Call ``listener(event)`` for every served read from now on; returns it (a decorator).
        A ``Recorder`` is subscribed as a recorder: the compiled reads call it instead."""
        if isinstance(listener, Recorder):
            if not any(r is listener for r in self.recorders):
                self.recorders = (*self.recorders, listener)
            listener.on_error = self._failed
            return listener
        if listener not in self.listeners:
            self.listeners = (*self.listeners, listener)
        self.active = True
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        self.listeners = tuple(x for x in self.listeners if x is not listener and x != listener)
        self.recorders = tuple(x for x in self.recorders if x is not listener)
        self.active = bool(self.listeners)

    def next_id(self) -> int:
        """A request id for a read that has no wire id (in process)."""
        return next(self._ids)

    def emit(self, event: ServedRead) -> None:
        """Hand ``event`` to every listener; one that raises is counted and logged, never raised."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener must never fail a read
                self._failed(listener)

    def _failed(self, listener: Listener) -> None:
        name = getattr(listener, "__qualname__", None) or type(listener).__qualname__
        first = name not in self.errors
        self.errors[name] = self.errors.get(name, 0) + 1
        if first:
            log.exception("fstore: served-read listener %s raised (logged once; counted in "
                          "fstore_listener_errors)", name)
        if self.on_error is not None:
            try:
                self.on_error(name)
            except Exception:  # noqa: BLE001 - counting must not fail the read either
                pass


#: the served-feature log's listener: a server worker loads it (with the repository's
#: configuration) when a feature service is logged, as it loads ``server.listeners``
FEATURE_LOG = "fstore.monitoring.logging:FeatureLog"


def load_listener(spec: str, config: Any = None) -> Listener:
    """The listener ``module:callable`` names (``server.listeners`` in fstore.yaml); a class
    is instantiated with no arguments, or, when it has a ``from_config`` classmethod and
    ``config`` (the RepoConfig) is given, by ``from_config(config)``; a Recorder is one too. A listener with a
    ``close()`` method is closed when the worker stops (after its drain). InvalidConfig
    names the spec when it cannot be loaded."""
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidConfig(f"cannot load listener {spec!r}: {exc}", file="fstore.yaml",
                            field="server.listeners") from None
    if isinstance(obj, type):
        obj = obj.from_config(config) if config is not None and hasattr(obj, "from_config") else obj()
    if not callable(obj) and not isinstance(obj, Recorder):
        raise InvalidConfig(f"listener {spec!r} is not callable", file="fstore.yaml", field="server.listeners")
    return obj


#: this process's hook
hook = Hook()
subscribe = hook.subscribe
unsubscribe = hook.unsubscribe
