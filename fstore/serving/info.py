"""INFO's result: what a client may want to know of the repository a server serves,
without reading its files (docs/protocol.md, "INFO").

Besides the project, the registry version and the views, it carries what lets a client
answer on its own when the server is unavailable (``fallback="defaults"``): every applied
view version's features with their dtype and declared default (``features``), the
references each feature service lists (``services``), and which version an unpinned
reference reads when served (``live``: the newest version with online data,
fstore.repo.readiness). Defaults are the values a read answers (online.plan.python_default),
so they go on the wire as GET values do: timestamps as the Timestamp extension, bytes as bin.
Request views (features computed at read time, fstore.repo.request_time) are listed with
their function, request fields, inputs and output dtypes (``request_views``), and a view's
``on_miss`` with its view.
"""
from __future__ import annotations

from typing import Any

from .._version import __version__
from ..online.plan import python_default
from ..repo.names import view_name
from ..repo.request_time import on_miss_info, request_view_info
from ..repo.resolve import find_view


def info_result(reg: Any) -> dict[str, Any]:
    """INFO's result for a registry snapshot."""
    views = reg.views
    rviews = reg.doc.get("request_views") or {}
    return {"project": reg.project, "registry_version": reg.version, "server": f"fstore/{__version__}",
            "views": [_view(reg, v) for v in views.values()],
            "services": {s["name"]: list(s["features"]) for s in reg.services.values()},
            "features": {view_name(v): {f["name"]: {"dtype": f["dtype"], "default": python_default(f)}
                                        for f in v["features"]} for v in views.values()},
            "live": _live(views, reg.ready.online),
            **({"request_views": {name: request_view_info(rv) for name, rv in rviews.items()}} if rviews else {})}


def _view(reg: Any, v: dict[str, Any]) -> dict[str, Any]:
    source = reg.source_of(v)
    return {"name": v["name"], "version": v["version"], "entities": v["entities"], "join_keys": v["join_keys"],
            "ttl_us": v.get("ttl_us"), "timestamp_field": source["timestamp_field"],
            "created_timestamp_field": source["created_timestamp_field"],
            "features": [{"name": f["name"], "dtype": f["dtype"]} for f in v["features"]],
            **({"on_miss": on_miss_info(v["on_miss"])} if v.get("on_miss") else {})}


def _live(views: dict[str, Any], online: frozenset[str]) -> dict[str, str]:
    """View name -> the versioned name an unpinned reference reads when served."""
    out: dict[str, str] = {}
    for v in views.values():
        if v["name"] not in out:
            record = find_view(v["name"], views, online)
            if record is not None:
                out[v["name"]] = view_name(record)
    return out
