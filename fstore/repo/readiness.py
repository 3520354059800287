"""Which applied view versions have data, and so what an unpinned reference reads.

A version bump (``version: 2``) is applied before its data exists. If ``customer_stats``
meant the newest version at once, every live service would serve NOT_FOUND and every
training set fail until ingest and materialize had run. So an unpinned reference
(``customer_stats:clicks``, a service listing ``customer_stats``) means the newest
version that has data *for the path that reads it*: offline data for training sets,
online data for serving. It moves to the new version by itself once that version has
its own data; a pinned reference (``customer_stats_v2:clicks``) always means that
version. When no version has data yet (a new view), the newest version is meant.

The stores know what they hold. This document publishes it beside the registry, so a
server notices a version becoming ready the way it notices an apply: the registry's
cached snapshot stamps both files. ``FeatureStore`` brings it up to date after every
apply, ingest, materialize, load and push (``FeatureStore.sync_readiness``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RegistryError
from ..files import read_document, write_atomic
from .names import view_name

FORMAT = 1
FILE_NAME = "ready.json"
OFFLINE, ONLINE = "offline", "online"


@dataclass(frozen=True)
class Readiness:
    """The versioned view names that have offline data and that have online data."""

    offline: frozenset[str] = field(default_factory=frozenset)
    online: frozenset[str] = field(default_factory=frozenset)

    def for_path(self, path: str) -> frozenset[str]:
        return self.offline if path == OFFLINE else self.online

    def describe(self, versioned: str) -> str:
        """'has offline data and online data', 'has no offline data and no online data yet', ..."""
        off, on = versioned in self.offline, versioned in self.online
        if off and on:
            return "has offline data and online data"
        if not off and not on:
            return "has no offline data and no online data yet"
        return "has offline data but no online data yet" if off else "has online data but no offline data yet"


def path_of(registry_path: Path) -> Path:
    return registry_path.parent / FILE_NAME


def load_readiness(path: Path, name: str) -> Readiness:
    """The stored document; empty when there is none (a repository from before it existed)."""
    doc = read_document(path, FORMAT, name=name, what="readiness", error=RegistryError)
    if doc is None:
        return Readiness()
    return Readiness(frozenset(doc.get(OFFLINE, ())), frozenset(doc.get(ONLINE, ())))


def save_readiness(path: Path, ready: Readiness) -> None:
    doc: dict[str, Any] = {"format": FORMAT, OFFLINE: sorted(ready.offline), ONLINE: sorted(ready.online)}
    write_atomic(path, json.dumps(doc, indent=1).encode())


def live_version(name: str, views: dict[str, Any], ready: frozenset[str] | None,
                 feature: str = "") -> dict[str, Any] | None:
    """The version an unpinned reference to view ``name`` (and ``feature``) reads: the newest
    version in ``ready`` that has the feature, else the newest applied one (``ready`` None:
    the newest, for definitions and writers). A feature only a new version has is read
    from that version, ready or not."""
    versions = sorted((r for r in views.values() if r["name"] == name), key=lambda r: r["version"], reverse=True)
    if feature:
        versions = [r for r in versions if any(f["name"] == feature for f in r["features"])]
    if not versions:
        return None
    if ready:
        for record in versions:
            if view_name(record) in ready:
                return record
    return versions[0]
