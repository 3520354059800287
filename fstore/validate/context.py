"""What every rule reads: the repository's configuration, its applied registry, the offline
store, and the options of the run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import RepoConfig
from ..offline.engine import OfflineEngine
from ..repo.names import view_name
from ..repo.registry import Registry


@dataclass
class Context:
    """One validation run. ``doc`` is the applied registry (None before the first apply: the
    rules that read it then find nothing, and SCHEMA reports it)."""

    config: RepoConfig
    engine: OfflineEngine
    registry: Registry
    doc: dict[str, Any] | None
    sample: int = 200
    seed: int = 0
    dataset: str | None = None
    label: str | None = None
    _manifests: dict[str, Any] = field(default_factory=dict)

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """Every applied view version by versioned name."""
        return (self.doc or {}).get("feature_views", {})

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return (self.doc or {}).get("feature_services", {})

    @property
    def sources(self) -> dict[str, dict[str, Any]]:
        return (self.doc or {}).get("sources", {})

    def manifest(self, view: dict[str, Any]) -> dict[str, Any] | None:
        """The view's offline manifest (None: never ingested), read once per run."""
        name = view_name(view)
        if name not in self._manifests:
            self._manifests[name] = self.engine.store.manifest(view)
        return self._manifests[name]

    def ingested(self) -> list[dict[str, Any]]:
        """The applied view versions that have offline rows."""
        return [v for v in self.views.values() if (self.manifest(v) or {}).get("rows")]
