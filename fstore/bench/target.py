"""What a bench run asks for: a service, a feature list or a model, resolved against the
repository as the server resolves it (the versions with online data), so that the keys it
samples, the rows it copies into Redis and the SLA it checks are those of the reads it sends.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PROJECT_FILE, RepoConfig
from ..errors import InvalidArgument
from ..online.codec import key_kinds
from ..online.store import OnlineStore
from ..repo.models import serving_service
from ..repo.names import split_ref, view_name
from ..repo.registry import Registry, Snapshot
from ..repo.request_time import fills_of
from ..repo.resolve import find_view, resolve


@dataclass
class ViewPart:
    """The features a request reads from one view version (one Redis key per entity)."""

    name: str                 # versioned: customer_stats_v1
    join_keys: list[str]
    key_kinds: list[int]
    features: list[str]


@dataclass
class Ask:
    """One request shape: exactly one of ``service``, ``features`` or ``model``."""

    service: str | None = None
    features: list[str] | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.service, self.features, self.model) if x is not None]
        if len(given) != 1:
            raise InvalidArgument("give exactly one of --service, --features or --model")
        if self.features is not None and not self.features:
            raise InvalidArgument("--features names no feature")

    def args(self) -> dict[str, Any]:
        """The GET's first argument (docs/protocol.md)."""
        if self.service is not None:
            return {"service": self.service}
        if self.model is not None:
            return {"model": self.model}
        return {"features": list(self.features or [])}


@dataclass
class Resolved:
    """The request resolved in a repository: its views, join keys (with their dtypes), the
    service whose SLA applies (a model's service for a model) and that SLA."""

    views: list[ViewPart]
    join_keys: list[str]
    key_dtypes: dict[str, str]
    service: str | None
    sla: dict[str, Any] = field(default_factory=dict)
    #: the request fields its request-time features read (name -> dtype): sent from ``--keys``'s columns
    request_fields: dict[str, str] = field(default_factory=dict)


class Repository:
    """The repository a run reads (registry snapshot and online store), opened once."""

    def __init__(self, path: str | Path) -> None:
        self.config = RepoConfig.load(path)
        self.registry = Registry(self.config)
        self.store = OnlineStore(self.config)
        self._snapshot: Snapshot | None = None

    @staticmethod
    def find(path: str | Path | None) -> "Repository | None":
        """The repository at ``path``, or None when there is none (a bench with --keys needs none)."""
        if path is None or not (Path(path) / PROJECT_FILE).is_file():
            return None
        return Repository(path)

    @property
    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = self.registry.snapshot()
        return self._snapshot

    @property
    def project(self) -> str:
        return self.config.project

    def resolve(self, ask: Ask) -> Resolved:
        snap = self.snapshot
        service = serving_service(snap.doc, ask.model) if ask.model is not None else ask.service
        computed: list[Any] = []
        requests = resolve(snap.doc, ask.features, service, False, snap.ready.online, computed)
        fields = {k: d for r in computed for k, d in r.view["request"].items()}
        # the fills that run (fills_of): of the views asked for and of those request views read
        views = snap.doc["feature_views"]
        read = [r.view for r in requests] + [find_view(split_ref(ref)[0], views, snap.ready.online, split_ref(ref)[1])
                                             for r in computed for ref in r.view["inputs"]]
        fields.update({k: d for v in fills_of(read) for k, d in v["on_miss"]["request"].items()})  # type: ignore[arg-type]
        views, keys, dtypes = [], [], {}
        for req in requests:
            v = req.view
            views.append(ViewPart(view_name(v), list(v["join_keys"]), key_kinds(v), list(req.features)))
            for k in v["join_keys"]:
                if k not in keys:
                    keys.append(k)
                    dtypes[k] = v["key_dtypes"][k]
        sla = dict(snap.services[service].get("sla") or {}) if service is not None else {}
        return Resolved(views, keys, dtypes, service, sla, fields)

    def resolve_loosely(self, ask: Ask) -> Resolved | None:
        """For a feature list the repository refuses (an unknown feature, a name clash): the
        views its references name that exist, to take keys from, so the request can still be
        sent and the server's errors counted. None when no view is named (a service or model)."""
        snap = self.snapshot
        parts: dict[str, ViewPart] = {}
        for ref in ask.features or []:
            v = find_view(split_ref(ref)[0], snap.views, snap.ready.online)
            if v is not None and view_name(v) not in parts:
                parts[view_name(v)] = ViewPart(view_name(v), list(v["join_keys"]), key_kinds(v), [])
        if not parts:
            return None
        keys: dict[str, str] = {}
        for v in parts.values():
            view = snap.views[v.name]
            keys.update({k: view["key_dtypes"][k] for k in v.join_keys if k not in keys})
        return Resolved(list(parts.values()), list(keys), keys, None)

    def close(self) -> None:
        self.store.close()
