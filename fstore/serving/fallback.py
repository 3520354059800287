"""``fallback="defaults"``: the answer a client gives when the server cannot be reached.

The client learns the declared defaults from INFO each time it opens a connection
(docs/protocol.md, "INFO"), so a server that goes away later still leaves the client
able to answer: every requested feature gets its declared default (None where it has
none) with the status UNAVAILABLE, and no event timestamp; a request view's output (computed
at read time by a function only the server runs) is None, UNAVAILABLE. Features are resolved the way
the server resolves them (fstore.repo.resolve): a bare view name reads the view's live
version, ``view_vN`` pins one, output names are ``feature`` or ``view__feature``.
"""
from __future__ import annotations

import struct
from typing import Any, Sequence

from .._ext._constants import Status
from ..repo.names import split_ref, versioned_name
from ..times import NO_TIME
from .calls import RemoteResponse, _response


class Defaults:
    """What INFO said about the served features, enough to answer without the server."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.features: dict[str, dict[str, Any]] = dict(info.get("features") or {})
        self.live: dict[str, str] = dict(info.get("live") or {})
        services = info.get("services") or {}
        if isinstance(services, list):  # the INFO of an older server: [{"name", "features"}]
            services = {s["name"]: s["features"] for s in services if isinstance(s, dict)}
        self.services: dict[str, list[str]] = services
        # request views (INFO of a server before them: none): their outputs have no default
        self.features.update({name: dict(rv.get("features") or {})
                              for name, rv in (info.get("request_views") or {}).items() if isinstance(rv, dict)})
        self.keys: dict[str, list[str]] = {
            versioned_name(v["name"], v["version"]): list(v.get("join_keys") or [])
            for v in info.get("views") or [] if isinstance(v, dict) and "name" in v and "version" in v}

    def _view(self, view_ref: str) -> str | None:
        return view_ref if view_ref in self.features else self.live.get(view_ref)

    def response(self, features: Sequence[str] | str | None, service: str | None, full_names: bool,
                 meta: bool, rows: list[dict[str, Any]], request_id: str | None) -> RemoteResponse | None:
        """The fallback response, or None when INFO did not describe what was asked for."""
        if service is not None:
            refs = self.services.get(service)
        else:
            refs = [features] if isinstance(features, str) else list(features or [])
        if not refs:
            return None
        views: dict[str, list[str]] = {}  # versioned view -> its features, in first-seen order
        names, dtypes, view_of, values = [], [], [], []
        for ref in refs:
            view_ref, feat = split_ref(ref)
            view = self._view(view_ref)
            if view is None or (feat and feat not in self.features[view]):
                return None
            seen = views.setdefault(view, [])
            for name in [feat] if feat else list(self.features[view]):
                if name in seen:
                    continue
                seen.append(name)
                spec = self.features[view][name]
                names.append(f"{view_ref}__{name}" if full_names else name)
                dtypes.append(spec.get("dtype"))
                view_of.append(list(views).index(view))
                values.append([spec.get("default")] * len(rows))
        keys = list(dict.fromkeys(k for v in views for k in self.keys.get(v, []))) or \
            list(dict.fromkeys(k for r in rows for k in r))
        n = len(rows)
        result: dict[str, Any] = {"names": names, "dtypes": dtypes, "view_of": view_of, "keys": keys,
                                  "values": values}
        if meta:
            result["status"] = bytes([int(Status.UNAVAILABLE)]) * (len(names) * n)
            result["ts"] = struct.pack("<q", NO_TIME) * (len(views) * n)
        return _response(result, rows, request_id)
