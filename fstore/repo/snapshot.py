"""The applied registry as one process sees it (``Snapshot``): what the server and the
online reads hold per request, so they need not know how the registry is stored or cached
(``repo.registry``).
"""
from __future__ import annotations

from typing import Any

from .readiness import Readiness


class Snapshot:
    """The applied registry as one process sees it: the stored document, read-only by
    convention, with typed accessors. A new object whenever the document changes, so
    ``snapshot is not before`` says the registry changed."""

    __slots__ = ("doc", "ready")

    def __init__(self, doc: dict[str, Any], ready: Readiness | None = None) -> None:
        self.doc = doc
        self.ready = ready or Readiness()  # which versions unpinned references read (repo.readiness)

    @property
    def version(self) -> int:
        return self.doc["version"]

    @property
    def project(self) -> str:
        return self.doc["project"]

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """Every applied view version by versioned name."""
        return self.doc["feature_views"]

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return self.doc["feature_services"]

    @property
    def sources(self) -> dict[str, dict[str, Any]]:
        return self.doc["sources"]

    def source_of(self, view: dict[str, Any]) -> dict[str, Any]:
        return self.doc["sources"][view["source"]]

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        """Every registered model by name (fstore.repo.models)."""
        return self.doc.get("models", {})
