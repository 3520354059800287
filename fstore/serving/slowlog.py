"""The slow-request log: one WARNING line on the ``fstore.serve`` logger for every request
that took longer than ``server.slow_request_ms`` (fstore.yaml; null, the default, turns it
off).

A request is timed from the moment its frame was read to the moment its reply was
written (the same span as ``fstore_request_seconds``); a PUSH up to its commit. A line
names what is needed to find the request again and nothing secret: the op, the entity
rows, the milliseconds, the service or the features (or the view of a PUSH), the
caller's ``request_id``, the client name HELLO gave, and the peer's address; never a
token. Caller-chosen strings are written with ``repr`` so that none can forge a line.

    slow request: op=get rows=1000 ms=12.41 service='fraud_v1' request_id='req-7'
    client='checkout' peer=10.0.0.7:51234

With the log off the serving paths make one comparison per request and time nothing
they did not already time.
"""
from __future__ import annotations

from typing import Any

from .log import log

FEATURES_SHOWN = 5  # feature references written out; more are counted


def threshold_seconds(server: dict[str, Any]) -> float | None:
    """``server.slow_request_ms`` of fstore.yaml in seconds, or None (off)."""
    ms = server.get("slow_request_ms")
    return None if ms is None else ms / 1000.0


def describe_target(service: Any, features: Any) -> str:
    """``service='x'`` or ``features='a:b','a:c' (+3 more)``."""
    if service is not None:
        return f"service={service!r}"
    if type(features) is list:
        shown = ",".join(repr(f) for f in features[:FEATURES_SHOWN])
        more = len(features) - FEATURES_SHOWN
        return f"features={shown}" + (f" (+{more} more)" if more > 0 else "")
    return "features=?"


def peer_of(transport: Any) -> str:
    """``host:port`` of the connection's other end ('?' when the transport cannot say)."""
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "?"


def log_slow(op: str, rows: int | None, seconds: float, target: str, request_id: str | None,
             client: str | None, transport: Any) -> None:
    """Write one slow-request line (see the module docstring)."""
    log.warning("slow request: op=%s rows=%s ms=%.2f%s request_id=%r client=%r peer=%s", op,
                "-" if rows is None else rows, seconds * 1e3, f" {target}" if target else "", request_id, client,
                peer_of(transport))
