"""The handler of each operation a connection answers on the Python path: HELLO, GET (the
shapes the compiled path declines, and request-time features), HEALTH, INFO and PUSH.

Apart from fstore.serving.connection, which owns the connection's life (framing, dispatch,
replies, back pressure, drain): what each request does is read here, how requests come
and go there. ``Handlers`` is a base of ``ConnectionBase``, so a handler is a plain method
of the connection (``HANDLERS`` maps op code -> ``op_<name>``; no call in between). A
handler returns its reply frame, or None when it answered (or will answer) by itself; it
raises an FstoreError to refuse its request, and it replies through the connection's
``_fatal``, ``_reply_error`` and ``_write``.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from .._ext._serve import get_reply
from .._ext._online import read
from .._ext._wire import read_packed
from .._version import __version__
from ..errors import (BadRequest, ComputedFeatureError, EntityRowError, FstoreError, TooManyRows, Unauthenticated,
                      UnsupportedVersion, as_fstore_error)
from ..monitoring.events import SERVER, hook
from ..online.plan import explain_bad_rows
from ..online.request import read_request
from ..repo.models import model_service
from .auth import Token
from .info import info_result
from .protocol import GET, MAX_CLIENT_NAME, MAX_REQUEST_ID, VERSION
from .pushes import QueuedPush
from .slowlog import log_slow
from .state import ServerState


class Handlers:
    """The ``op_<name>`` methods of a connection (see the module's docstring)."""

    # set by ConnectionBase.__init__ (declared here for the reader: nothing is stored on the class)
    state: ServerState
    transport: asyncio.Transport | None
    greeted: bool
    token: Token | None
    fast: Any
    client: str | None
    pushing: int
    _served: tuple[Any, ...] | None

    def _fatal(self, rid: int, exc: FstoreError) -> None:
        raise NotImplementedError  # ConnectionBase's

    def _reply_error(self, rid: int, exc: FstoreError) -> None:
        raise NotImplementedError  # ConnectionBase's

    def _write(self, data: bytes) -> None:
        raise NotImplementedError  # ConnectionBase's

    def op_hello(self, rid: int, args: dict[str, Any], start: float) -> bytes | None:
        if args.get("version") != VERSION:
            self._fatal(rid, UnsupportedVersion(f"this server speaks version {VERSION}", "version"))
            return None
        st = self.state
        client = args.get("client")
        if type(client) is str:  # fstore's clients end it with CR LF CR LF (docs/protocol.md, "Handshake")
            client = client.rstrip("\r\n")
        self.client = checked_name(client, "client", MAX_CLIENT_NAME)
        if st.tokens is not None:  # checked once per connection
            self.token = st.tokens.check(args.get("token"))
            if self.token is None:
                self.greeted, self.fast = False, None
                self._fatal(rid, Unauthenticated("this server needs a valid token in HELLO" if args.get("token")
                                                 is None else "the token is not valid"))
                return None
        self.greeted = True
        self.fast = st.fast if self.token is None or self.token.lacks(GET) is None else None
        lim = st.limits
        return st.pack([rid, True, {"version": VERSION, "server": f"fstore/{__version__}", "project": st.project,
                                    "max_frame": lim.max_frame, "max_rows": lim.max_rows}])

    def op_get(self, rid: int, args: dict[str, Any], start: float) -> bytes:
        st = self.state
        service, model = args.get("service"), args.get("model")
        if model is not None:  # never on the compiled path: no prepared shape has neither features nor service
            service = model_service(st.online.snapshot().doc, args.get("features"), service, model)
        prepared = st.prepared_get(args.get("features"), service, args.get("full_names", False))
        entities = args.get("entities")
        if type(entities) is not dict:
            raise BadRequest("entities must be a map of join key columns", "entities")
        n = -1
        for key, col in entities.items():
            if type(col) is not list:
                raise BadRequest("each entity column must be a list", f"entities.{key}")
            if n >= 0 and len(col) != n:
                raise BadRequest("entity columns differ in length", f"entities.{key}")
            n = len(col)
        n = max(n, 0)  # an empty map is zero rows, as entity_rows=[] in process (a client cannot name its columns)
        if n > st.limits.max_rows:
            raise TooManyRows(f"{n} entity rows; the limit is {st.limits.max_rows}", "entities")
        request_id = checked_name(args.get("request_id"), "request_id", MAX_REQUEST_ID)
        plan = prepared.plan
        recorders = hook.recorders  # the feature log: handed the read inside the compiled call (or its answer)
        served = (recorders, SERVER, None, prepared.service, prepared.full, prepared.version, request_id,
                  model if type(model) is str else None) if recorders and entities else None
        if prepared.request is not None and entities:  # request-time features (fstore.online.request)
            values, status, stamps = self._get_request(prepared.request, entities, n, served)
        elif entities:
            try:
                values, status, stamps = read_packed(st.online.store.env, plan, entities, None, served)
            except (KeyError, TypeError, ValueError, OverflowError):
                rows = [{k: entities[k][i] for k in entities} for i in range(n)]
                err = explain_bad_rows(rows, plan, EntityRowError("bad entity rows"))
                raise EntityRowError(str(err)) from None
        else:
            values, status, stamps = st._packer.pack([[] for _ in plan.names]), bytearray(), bytearray()
        self._served = (args, prepared, values, status, stamps)
        return get_reply(rid, prepared, values, status, stamps, args.get("meta", True), request_id)

    def _get_request(self, rplan: Any, entities: dict[str, list[Any]], n: int,
                     served: tuple[Any, ...] | None) -> tuple[bytes, bytearray, bytearray]:
        """A GET of a shape with request-time features: the compiled read of its stored
        features, then the functions (request fields are columns of ``entities``)."""
        st = self.state
        rows = [{k: col[i] for k, col in entities.items()} for i in range(n)]
        try:
            resp = read_request(read, st.online.store.env, rplan, rows, None, served)
        except (ComputedFeatureError, EntityRowError):
            raise
        except (KeyError, TypeError, ValueError, OverflowError):
            raise EntityRowError(str(explain_bad_rows(rows, rplan.inner, EntityRowError("bad entity rows")))) from None
        flat = resp._values
        values = st._packer.pack([flat[i * n:(i + 1) * n] for i in range(len(rplan.plan.names))])
        return values, resp._raw_status, resp._raw_ts

    def op_health(self, rid: int, args: dict[str, Any], start: float) -> bytes:
        st = self.state
        return st.pack([rid, True, {"live": True, "ready": not st.draining, "draining": st.draining,
                                    "registry_version": st.online.snapshot().version}])

    def op_info(self, rid: int, args: dict[str, Any], start: float) -> bytes:
        return self.state.pack([rid, True, info_result(self.state.online.snapshot())])

    def op_push(self, rid: int, args: dict[str, Any], start: float) -> None:
        """Queued for the writer thread; answered by ``push_done`` once its group is committed."""
        self.state.inflight += 1
        self.pushing += 1
        self.state.pushes.add(QueuedPush(self, rid, args, start))
        return None

    def push_done(self, rid: int, outcome: Any, start: float) -> None:
        """Answer a PUSH once its group is committed (or it was refused)."""
        st = self.state
        self.pushing -= 1
        if isinstance(outcome, Exception):
            self._reply_error(rid, as_fstore_error(outcome))
            return
        view, newest = outcome["view"], outcome["newest_us"]
        if newest is not None:  # for the data age gauge
            st.newest_pushed[view] = max(newest, st.newest_pushed.get(view, newest))
        self._write(st.pack([rid, True, {"written": outcome["written"], "offline": outcome["offline"]}]))
        seconds = time.perf_counter() - start
        if st.metrics:
            st.metrics.pushed(outcome["view"], outcome["written"])
            st.metrics.observe("push", seconds)
        if st.slow is not None and seconds >= st.slow:
            log_slow("push", outcome["written"], seconds, f"view={view!r}", None, self.client, self.transport)


def checked_name(value: Any, field: str, limit: int) -> str | None:
    """An optional caller-chosen name (a GET's request_id, HELLO's client): None, or a str of
    1..``limit`` characters; BadRequest naming ``field`` otherwise (it goes into logs and events)."""
    if value is None or (type(value) is str and 0 < len(value) <= limit):
        return value
    got = f"a string of {len(value)} characters" if type(value) is str else f"a {type(value).__name__}"
    raise BadRequest(f"{field} must be a string of 1 to {limit} characters, got {got}", field)
