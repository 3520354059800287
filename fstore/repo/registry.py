"""The registry: the applied definitions, one JSON document, replaced atomically.

``apply`` writes the new document to a temporary file, fsyncs it and renames it
over the old one, so a reader (or a crash) sees either the previous registry or
the new one, never a mix. Each applied version is also kept under
``registry_history/`` for audit and lineage. Old view versions are never removed
by an apply: datasets and models that used them stay reproducible.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from .._version import __version__
from ..config import RepoConfig
from ..errors import NotApplied, RegistryError
from ..files import file_lock, read_document, remove_stale_tmp, write_atomic
from ..times import format_duration
from .names import SECTIONS
from .reader import read_definitions
from .validation import SchemaReader, build_registry

FORMAT = 1
#: how long a process trusts its cached registry before it looks at the file again
RECHECK_SECONDS = 1.0


@dataclass
class Change:
    kind: str
    name: str
    action: str  # add | change | remove | keep
    details: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What an apply would do; ``changes`` lists only objects that differ."""

    current_version: int
    new_state: dict[str, Any]
    changes: list[Change]

    @property
    def empty(self) -> bool:
        return not any(c.action != "keep" for c in self.changes)


class Snapshot:
    """The applied registry as one process sees it: the stored document, read-only by
    convention, with typed accessors. A new object whenever the document changes, so
    ``snapshot is not before`` says the registry changed."""

    __slots__ = ("doc",)

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

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


class Registry:
    """The applied registry of one repository.

    ``schema_of`` reads a source's schema for ``plan`` and ``apply`` (the offline engine
    gives it); reading what is applied needs none.
    """

    def __init__(self, config: RepoConfig, schema_of: SchemaReader | None = None) -> None:
        self.config = config
        self.path = config.registry
        self.history_dir = self.path.parent / "registry_history"
        self.schema_of = schema_of
        self._snapshot: Snapshot | None = None
        self._stamp: tuple[int, int] | None = None
        self.checked_at = float("-inf")  # monotonic time the cached snapshot was last checked

    def snapshot(self) -> Snapshot:
        """The applied registry, cached: the file is looked at again (its mtime and size) at
        most once every RECHECK_SECONDS, and read again only when it changed. The server
        and in-process reads call this per request."""
        clock = monotonic()
        if self._snapshot is not None and clock - self.checked_at < RECHECK_SECONDS:
            return self._snapshot
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if self._snapshot is None or stamp != self._stamp:
            # a registry that cannot be read now is an error on every call until it can: the
            # old snapshot is not served on (a change was meant, and is unknown)
            self._snapshot = None
            self._snapshot = Snapshot(self.require())
            self._stamp = stamp
        self.checked_at = clock
        return self._snapshot

    @property
    def fresh_until(self) -> float:
        """The monotonic time until which ``snapshot()`` answers from its cache."""
        return self.checked_at + RECHECK_SECONDS

    def load(self) -> dict[str, Any] | None:
        """The applied document, or None before the first apply."""
        return read_document(self.path, FORMAT, name=self.config.rel(self.path), what="registry",
                             error=RegistryError)

    def require(self) -> dict[str, Any]:
        doc = self.load()
        if doc is None:
            raise NotApplied(f"no registry at {self.config.rel(self.path)}: run `fstore apply` first")
        return doc

    def plan(self) -> Plan:
        """Validate the repository's definitions and compare them with what is applied."""
        if self.schema_of is None:
            raise RegistryError("this Registry was made without a schema reader: plan and apply need one")
        current = self.load()
        new_state = build_registry(self.config, read_definitions(self.config), current, self.schema_of)
        return Plan(current["version"] if current else 0, new_state, _diff(current or {}, new_state))

    def apply(self) -> tuple[Plan, int]:
        """Validate and store the definitions; returns the plan and the registry version now in force."""
        with file_lock(self.path.parent / ".registry.lock"):
            remove_stale_tmp(self.path)
            remove_stale_tmp(self.history_dir / "*.json")
            plan = self.plan()
            if plan.empty and plan.current_version:
                return plan, plan.current_version
            version = plan.current_version + 1
            doc = {"format": FORMAT, "version": version, "fstore_version": __version__,
                   "applied_at": dt.datetime.now(dt.timezone.utc).isoformat(), **plan.new_state}
            data = json.dumps(doc, indent=1, sort_keys=False).encode()
            write_atomic(self.history_dir / f"{version:06d}.json", data)
            write_atomic(self.path, data)
            return plan, version

    def history(self) -> list[dict[str, Any]]:
        """Every applied version, oldest first (version, applied_at and the views it held).

        The history copy is written before the registry itself, so an apply that failed
        or was killed in between leaves a copy of a version that never took effect: only
        versions up to the one in force are listed (the next apply overwrites the copy).
        """
        current = self.load()
        in_force = current["version"] if current else 0
        out = []
        for p in sorted(self.history_dir.glob("*.json")):
            doc = json.loads(p.read_bytes())
            if doc["version"] > in_force:
                continue
            out.append({"version": doc["version"], "applied_at": doc["applied_at"],
                        "feature_views": sorted(doc["feature_views"])})
        return out


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    changes: list[Change] = []
    if old and old.get("project") != new.get("project"):
        changes.append(Change("project", str(new.get("project")), "change",
                              [f"project: {old.get('project')!r} -> {new.get('project')!r}"]))
    for kind in SECTIONS:
        before, after = old.get(kind, {}), new.get(kind, {})
        for name in sorted(before.keys() | after.keys()):
            if name not in before:
                changes.append(Change(kind, name, "add"))
            elif name not in after:
                changes.append(Change(kind, name, "remove"))
            elif before[name] != after[name]:
                details = [_field_change(k, before[name].get(k), after[name].get(k))
                           for k in sorted(before[name].keys() | after[name].keys())
                           if before[name].get(k) != after[name].get(k)]
                changes.append(Change(kind, name, "change", details))
    return changes


def _field_change(key: str, old: Any, new: Any) -> str:
    """One changed field as people read it: a duration (stored as ``<name>_us``) in the
    largest unit that divides it exactly (``ttl: 7d -> 5d``), anything else as its value."""
    if key.endswith("_us"):
        return f"{key[:-3]}: {format_duration(old)} -> {format_duration(new)}"
    return f"{key}: {old!r} -> {new!r}"
