"""What both clients share (fstore.serving.client, fstore.serving.async_client): the
arguments of a GET, its reply as an ``OnlineResponse``, an error reply as its class, and
when a request is sent again. Imports neither pyarrow nor LMDB.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..config import SERVER_KEYS
from ..errors import BadFrame, FstoreError, ServerUnreachable, ShuttingDown
from ..online.entities import entity_columns
from ..online.entities import entity_rows as as_rows
from ..online.response import OnlinePlan, OnlineResponse
from ..repo.resolve import require_one
from .handshake import reason

DEFAULT_PORT: int = SERVER_KEYS["port"][1]
_MAX_REPLY = 1 << 30
_CLOSED_BEFORE_HELLO = "closed the connection before answering HELLO (does it need TLS, or a client certificate?)"


def _columns(entity_rows: Any, want_rows: bool = True) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
    """(columns for the wire, rows for the response) from a list of dicts or a dict of lists.

    Ragged columns raise EntityRowError as in process (not an IndexError); a PUSH
    (``want_rows=False``) sends them as they are and the server names the problem.
    """
    if isinstance(entity_rows, dict):
        return entity_columns(entity_rows), as_rows(entity_rows) if want_rows else []
    rows = as_rows(entity_rows)
    return entity_columns(rows), rows


def _get_args(features: Sequence[str] | None, feature_service: str | None, cols: dict[str, list[Any]],
              full_feature_names: bool, include_metadata: bool) -> dict[str, Any]:
    require_one(features, feature_service)
    args: dict[str, Any] = {"entities": cols, "full_names": full_feature_names, "meta": include_metadata}
    if features is not None:
        args["features"] = [features] if isinstance(features, str) else list(features)
    else:
        args["service"] = feature_service
    return args


def _response(result: dict[str, Any], rows: list[dict[str, Any]]) -> OnlineResponse:
    n_views = max(result["view_of"], default=-1) + 1
    plan = OnlinePlan(result["names"], result["dtypes"], result["view_of"], [None] * n_views,  # type: ignore[list-item]
                      [""] * n_views, result.get("keys", []))
    status, stamps = result.get("status"), result.get("ts")  # absent: asked without metadata
    return OnlineResponse(rows, plan, result["values"], None if status is None else bytearray(status),
                          None if stamps is None else bytearray(stamps))


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


