"""What both clients share (fstore.serving.client, fstore.serving.async_client): their
settings, the arguments of a GET, a big GET split by the server's ``max_rows`` and its
replies joined, a reply as an ``OnlineResponse``, an error reply as its class, a socket
failure as ``Unavailable``/``Timeout``, when a request is sent again, and the ``on_request``
hook. Imports neither pyarrow nor LMDB.
"""
from __future__ import annotations

import itertools
import logging
import ssl as _ssl
from typing import Any, Callable, Sequence

from ..config import SERVER_KEYS
from ..errors import BadFrame, BadRequest, FstoreError, ServerUnreachable, ShuttingDown, Timeout, Unavailable
from ..online.entities import entity_columns, is_frame
from ..online.entities import entity_rows as as_rows
from .._ext._response import make_response
from ..online.response import OnlinePlan, OnlineResponse
from ..repo.resolve import require_one
from .handshake import hello_args, reason

DEFAULT_PORT: int = SERVER_KEYS["port"][1]
_MAX_REPLY = 1 << 30
_CLOSED_BEFORE_HELLO = "closed the connection before answering HELLO (does it need TLS, or a client certificate?)"
FALLBACKS = (None, "defaults")
CLIENTS: Any = type("ClientsFallback", (), {"__repr__": lambda self: "<the client's fallback>"})()  # per-call default
log = logging.getLogger("fstore.client")

#: on_request(op, rows, seconds, outcome): op "get"/"push"/"health"/"info", outcome "ok" or an error code
RequestHook = Callable[[str, int, float, str], Any]


class Settings:
    """The settings both clients take (docs/client.md), checked once."""

    def __init__(self, host: str, port: int, timeout: float, connect_timeout: float | None, retries: int,
                 max_connections: int, project: str | None, token: str | None, ssl: _ssl.SSLContext | None,
                 client_name: str, on_request: RequestHook | None, fallback: str | None) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        if connect_timeout is not None and not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, not {connect_timeout!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, not {max_connections!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries!r}")
        check_fallback(fallback)
        self.host, self.port, self.where = host, port, f"{host}:{port}"
        self.timeout, self.retries, self.max_connections = timeout, retries, max_connections
        self.connect_timeout = timeout if connect_timeout is None else min(connect_timeout, timeout)
        self.project, self.ssl, self.on_request, self.fallback = project, ssl, on_request, fallback
        self.hello = hello_args(client_name, token)


def fallback_response(mode: str | None, defaults: Any, model: str | None, features: Any, feature_service: Any,
                      full_feature_names: bool, include_metadata: bool, rows: list[dict[str, Any]],
                      request_id: str | None) -> Any:
    """The declared-defaults answer of a GET the server could not answer (``mode``
    'defaults', both clients), or None when the caller must raise: no fallback asked, no
    defaults learned yet, a read by model (defaults know no models), or a feature INFO did
    not describe."""
    check_fallback(mode)
    if mode != "defaults" or defaults is None or model is not None:
        return None
    return defaults.response(features, feature_service, full_feature_names, include_metadata, rows, request_id)


def check_fallback(fallback: str | None) -> None:
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be None or 'defaults', not {fallback!r}")


def pool_limit(max_connections: int | None, pool_size: int | None, default: int) -> int:
    """``max_connections``, or ``pool_size`` (its older name), or the default."""
    if max_connections is not None and pool_size is not None and max_connections != pool_size:
        raise ValueError("give max_connections or pool_size (its older name), not both")
    return max_connections or pool_size or default


def _columns(entity_rows: Any, want_rows: bool = True) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """(columns for the wire, rows for the response) from a list of dicts, a dict of lists or
    arrays, or a DataFrame.

    Ragged columns raise EntityRowError as in process (not an IndexError); a PUSH
    (``want_rows=False``) sends them as they are and the server names the problem.
    """
    if type(entity_rows) is list:
        return entity_columns(entity_rows), entity_rows
    if isinstance(entity_rows, dict) or is_frame(entity_rows):
        return entity_columns(entity_rows), as_rows(entity_rows) if want_rows else []
    rows = as_rows(entity_rows)
    return entity_columns(rows), rows


def _get_args(features: Sequence[str] | None, feature_service: str | None, cols: dict[str, list[Any]],
              full_feature_names: bool, include_metadata: bool, request_id: str | None = None,
              model: str | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"entities": cols, "full_names": full_feature_names, "meta": include_metadata}
    if model is not None:  # the server resolves it to the model version's service
        if features is not None or feature_service is not None:
            raise BadRequest("give exactly one of features, feature_service or model", "model")
        args["model"] = model
    else:
        require_one(features, feature_service)
        if features is not None:
            args["features"] = [features] if isinstance(features, str) else list(features)
        else:
            args["service"] = feature_service
    if request_id is not None:
        args["request_id"] = str(request_id)
    return args


def split(args: dict[str, Any], n: int, max_rows: int | None) -> list[tuple[dict[str, Any], int]]:
    """A GET of ``n`` rows as requests of at most ``max_rows`` rows each (with their sizes)."""
    if not max_rows or n <= max_rows:
        return [(args, n)]
    out = []
    for start in range(0, n, max_rows):
        part = dict(args)
        part["entities"] = {k: v[start:start + max_rows] for k, v in args["entities"].items()}
        out.append((part, min(max_rows, n - start)))
    return out


def join(results: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    """The replies of a split GET as the one reply the whole request would have had: values
    and the feature-major status and timestamp buffers put back in row order."""
    if len(results) == 1:
        return results[0]
    out = dict(results[0])
    n_names, n_views = len(out["names"]), max(out["view_of"], default=-1) + 1
    out["values"] = [list(itertools.chain.from_iterable(r["values"][f] for r in results)) for f in range(n_names)]
    if out.get("status") is not None:
        out["status"] = b"".join(r["status"][f * n:(f + 1) * n] for f in range(n_names)
                                 for r, n in zip(results, sizes))
        out["ts"] = b"".join(r["ts"][v * n * 8:(v + 1) * n * 8] for v in range(n_views) for r, n in zip(results, sizes))
    return out


class RemoteResponse(OnlineResponse):
    """An OnlineResponse from a server: ``request_id`` is the id the server echoed (the one
    sent, if the server does not echo it; None if none was sent)."""

    __slots__ = ("request_id",)


_last_plan: list[OnlinePlan] = []  # the plan of the last reply: most replies have the same shape


def _plan(result: dict[str, Any]) -> OnlinePlan:
    """The reply's plan, reused when it equals the last one (comparing three short lists
    costs less than building a plan)."""
    names, dtypes, view_of, keys = result["names"], result["dtypes"], result["view_of"], result.get("keys", [])
    if _last_plan:
        last = _last_plan[0]
        if last.names == names and last.view_of == view_of and last.dtypes == dtypes and last.key_columns == keys:
            return last
    n_views = max(view_of, default=-1) + 1
    plan = OnlinePlan(names, dtypes, view_of, [None] * n_views, [""] * n_views, keys)  # type: ignore[list-item]
    _last_plan[:] = [plan]
    return plan


def _response(result: dict[str, Any], rows: list[dict[str, Any]], request_id: str | None = None) -> RemoteResponse:
    plan = _plan(result)
    status, stamps = result.get("status"), result.get("ts")  # absent: asked without metadata
    resp = make_response(RemoteResponse, rows, plan, result["values"], status, stamps)  # no Python __init__
    resp.request_id = result.get("request_id", request_id)
    return resp


def _check(reply: Any, rid: int) -> Any:
    if type(reply) is not list or len(reply) != 3:
        raise BadFrame("the server sent a malformed reply")
    if reply[1]:
        return reply[2]
    raise FstoreError.from_wire(reply[2])


def _tls_failed(where: str, exc: BaseException) -> ServerUnreachable:
    return ServerUnreachable(f"TLS handshake with fstore server at {where} failed: {reason(exc)}")


def _retry_after(exc: FstoreError, attempt: int, attempts: int) -> bool:
    """Whether a refused request is sent again: only one a draining server did not run
    (SHUTTING_DOWN), a PUSH too, since it was not written."""
    return isinstance(exc, ShuttingDown) and attempt + 1 < attempts


def timed_out(s: Settings, what: str = "no reply") -> Timeout:
    return Timeout(f"fstore server at {s.where}: {what} within the call's timeout of {s.timeout} s",
                   s.host, s.port)


def lost(s: Settings, exc: BaseException) -> Unavailable:
    """What a socket error (or an end of stream) becomes: never a bare OSError for the caller."""
    if isinstance(exc, Unavailable):
        return located(exc, s)
    return ServerUnreachable(f"fstore server at {s.where}: {reason(exc)}", s.host, s.port)


def located(exc: FstoreError, s: Settings) -> FstoreError:
    """``exc`` with the server's host and port, when it is an Unavailable (SHUTTING_DOWN,
    OVERLOADED from the wire carry only a code)."""
    if isinstance(exc, Unavailable) and exc.host is None:
        exc.host, exc.port = s.host, s.port
    return exc


def report(hook: RequestHook | None, op: str, rows: int, seconds: float, error: BaseException | None) -> None:
    """Call ``on_request`` once per call; what it raises is logged and swallowed."""
    if hook is None:
        return
    outcome = "ok" if error is None else getattr(error, "code", type(error).__name__)
    try:
        hook(op, rows, seconds, outcome)
    except Exception:  # noqa: BLE001 - a telemetry hook must never fail a read
        log.exception("on_request hook %r raised (ignored)", hook)
