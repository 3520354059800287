"""What every connection of one worker shares (``ServerState``): the stores, the limits,
the metrics, the queue of PUSHes and the prepared GET shapes (``PreparedGet``) that both the
Python and the compiled GET paths answer from.

Apart from fstore.serving.server (the serve loop, its drain and timers) so that the
connection modules, which read this state on every request, import it from below: the
server imports the connections, never the other way round.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgpack

from .._ext._request import RawGets
from .._ext._serve import FastGet
from ..config import SERVER_KEYS, RepoConfig, defaults
from ..errors import BadRequest
from ..monitoring.events import FEATURE_LOG, SERVER_FAST, hook, load_listener
from ..offline.store import OfflineStore
from ..online.request import RequestPlan
from ..online.service import MAX_PLANS, OnlineService
from ..online.store import OnlineStore
from ..repo.definitions import logged_services
from ..repo.registry import Registry
from ..repo.resolve import require_one
from .auth import Tokens
from .protocol import MAX_REQUEST_ID, frame
from .pushes import PushQueue
from .slowlog import threshold_seconds

_DEFAULTS = defaults(SERVER_KEYS)


@dataclass
class Limits:
    """What one client may ask of a worker (defaults: the server section of fstore.yaml)."""

    max_frame: int = _DEFAULTS["max_frame_bytes"]
    max_rows: int = _DEFAULTS["max_rows"]
    max_connections: int = _DEFAULTS["max_connections"]
    idle_timeout: float = _DEFAULTS["idle_timeout_s"]
    max_buffered_replies: int = 4 << 20  # reply bytes queued for a slow reader before we stop reading

    @classmethod
    def from_settings(cls, server: dict[str, Any]) -> "Limits":
        """The limits of a RepoConfig's ``server`` settings."""
        return cls(max_frame=server["max_frame_bytes"], max_rows=server["max_rows"],
                   max_connections=server["max_connections"], idle_timeout=server["idle_timeout_s"])


@dataclass
class PreparedGet:
    """A GET shape ready to answer: its read plan and the packed constant part of its reply."""

    plan: Any
    head_meta: bytes   # true, the map header, names/dtypes/view_of/keys, and the "values" key
    head_bare: bytes   # the same without "status" and "ts" in the map's size
    features: list[str] | None = None
    service: str | None = None
    full: bool = False
    entries: bytes = b""  # the map's entries alone: a reply echoing a request_id has one entry more
    version: int = -1     # the registry version the plan was built under (the served-read hook's)
    request: Any = None   # a shape with request-time features: its RequestPlan (the fast path declines it)


def prepare_get(plan: Any, features: list[str] | None = None, service: str | None = None,
                full: bool = False, version: int = -1) -> PreparedGet:
    request = plan if isinstance(plan, RequestPlan) else None
    plan = request.plan if request is not None else plan
    entries = b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in
                       (("names", plan.names), ("dtypes", plan.dtypes), ("view_of", plan.view_of),
                        ("keys", plan.key_columns))) + msgpack.packb("values")
    return PreparedGet(plan, b"\xc3\x87" + entries, b"\xc3\x85" + entries,  # true, fixmap of 7 / of 5
                       features, service, full, entries, version, request)


class ServerState:
    """What every connection of one worker shares: the store, limits, counters."""

    def __init__(self, repo: str, limits: Limits, metrics: Any = None) -> None:
        config = RepoConfig.load(repo)
        self.project = config.project   # said in HELLO, so a client can refuse another project's server
        self.tokens = Tokens.load(config)  # None: no token needed
        self.listeners = [hook.subscribe(load_listener(spec)) for spec in config.server["listeners"]]
        self.online = OnlineService(Registry(config), OnlineStore(config))
        if logged_services(self.online.snapshot(), config):  # the feature log (a recorder), attached as any listener
            self.listeners.append(hook.subscribe(load_listener(FEATURE_LOG, config)))
        self.offline = OfflineStore(config)  # PUSHes with offline=true append here
        self.limits = limits
        self.metrics = metrics
        self.slow = threshold_seconds(config.server)  # the slow-request log's threshold; None: off
        self.connections: set[Any] = set()  # Connection or FastConnection
        self.draining = False
        self.drained = 0   # requests read after the stop signal (answered), and of them refused (not run)
        self.refused = 0
        self.inflight = 0  # requests received, not answered: PUSHes queued or being written, and the one handled
        self.pusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fstore-push")
        self.pushes = PushQueue(self)
        self.newest_pushed: dict[str, int] = {}  # view -> newest event time (us) pushed through this worker
        self._packer = msgpack.Packer(datetime=True, use_bin_type=True)
        self._prepared: dict[tuple[Any, ...], PreparedGet] = {}
        self.prepared_under: Any = None  # the registry snapshot they were prepared under
        # the compiled fast path shares the prepared shapes; it answers only while the
        # registry was checked within the second (valid_until), as the OnlineService does
        # the GET metrics (fstore._ext._counters), counted on both paths; None without metrics
        self.counters = metrics.counters if metrics is not None else None
        self.fast = FastGet(self.online.store.env, self._prepared, limits.max_rows, MAX_REQUEST_ID, hook, SERVER_FAST,
                            self.counters)
        self.raw_gets = RawGets(self.fast)  # its requests decoded in C, on plain-TCP connections (fastconn)

    def prepared_get(self, features: Any, service: Any, full: Any) -> PreparedGet:
        """The prepared GET of a request shape; checks the shape only when it is new.

        A shape seen before is found by its hashable key alone: only lists of strings
        (and None or a string) were ever stored under a key, so a request that matches
        one is as valid as the first was.
        """
        snapshot = self.online.snapshot()
        if snapshot is not self.prepared_under:
            self._prepared.clear()
            self.prepared_under = snapshot
        self.fast.valid_until = self.online.registry.fresh_until
        try:
            key = (tuple(features) if type(features) is list else features, service, full)
            found = self._prepared.get(key)
        except TypeError:  # an unhashable part: not a valid shape, reported below
            key, found = None, None
        if found is not None:
            return found
        require_one(features, service, ("features", "service"))
        if features is not None and (type(features) is not list or not all(type(f) is str for f in features)):
            raise BadRequest("features must be a list of strings", "features")
        if service is not None and type(service) is not str:
            raise BadRequest("service must be a string", "service")
        prepared = prepare_get(self.online.plan(features, service, bool(full)), features, service, bool(full),
                               snapshot.version)
        if key is not None and type(full) is bool:
            if len(self._prepared) >= MAX_PLANS:  # as bounded as the plans they hold
                self._prepared.clear()
            self._prepared[key] = prepared
        return prepared

    def pack(self, obj: Any) -> bytes:
        return frame(self._packer.pack(obj))

    def close(self) -> None:
        """Wait for the pusher thread, and unsubscribe the listeners this state subscribed,
        closing those that can be closed (the feature log writes what it holds)."""
        self.pusher.shutdown(wait=True)
        for listener in self.listeners:
            hook.unsubscribe(listener)
            close = getattr(listener, "close", None)
            if close is not None:
                close()
