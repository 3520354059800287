"""What an apply would change: the ``Plan`` of ``fstore plan`` and ``fstore apply``.

The registry (``repo.registry``) stores what is applied; this module compares it with the
new definitions and says, for a person to read before applying: which objects are added,
changed or removed (and which fields, durations in their units), which version unpinned
references will read after a version bump, which source paths reach into a store, how
ingest runs each transformation, and which production models a change touches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RepoConfig
from ..times import format_duration
from .definitions import AS_OF_EVENT
from .impact import Impact, model_impacts
from .names import SECTIONS, unversioned, view_name
from .readiness import Readiness, live_version
from .transforms import ingest_mode


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
    effects: list[str] = field(default_factory=list)  # what the apply does to live reads and training
    warnings: list[str] = field(default_factory=list)  # legal, but likely not what was meant
    impacts: list[Impact] = field(default_factory=list)  # changes a production model reads (repo.impact)
    #: how ``fstore ingest`` runs each view with a transformation: "view_vN: mode (why)"
    ingest: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(c.action != "keep" for c in self.changes)


def make_plan(config: RepoConfig, current: dict[str, Any] | None, new_state: dict[str, Any],
              ready: Readiness) -> Plan:
    """The plan of applying ``new_state`` over ``current`` (None before the first apply), with
    ``ready`` saying which versions have data."""
    old = current or {}
    return Plan(current["version"] if current else 0, new_state, _diff(old, new_state),
                version_effects(old, new_state, ready), store_warnings(config, new_state),
                model_impacts(old, new_state), transform_modes(new_state))


def version_effects(old: dict[str, Any], new: dict[str, Any], ready: Readiness) -> list[str]:
    """What an apply does to reads of each view given a new version: which version
    unpinned references (services, training sets) will read, and why."""
    effects = []
    old_views, new_views = old.get("feature_views", {}), new.get("feature_views", {})
    for name in sorted({r["name"] for r in new_views.values()}):
        newest = live_version(name, new_views, None)
        assert newest is not None
        newest_name = view_name(newest)
        if newest_name in old_views or not any(r["name"] == name for r in old_views.values()):
            continue  # no new version of a view that had one
        readers = _unpinned_readers(new, name)
        state = ready.describe(newest_name)
        for path, label in (("offline", "training sets"), ("online", "serving")):
            live = live_version(name, new_views, ready.for_path(path))
            assert live is not None
            if live is newest:
                effects.append(f"{label}: {readers} will read {newest_name}, which {state}")
            else:
                effects.append(f"{label}: {readers} keep reading {view_name(live)} until {newest_name} has "
                               f"{path} data ({'`fstore ingest`' if path == 'offline' else '`fstore materialize`'}); "
                               f"{newest_name} {state}")
    return effects


def transform_modes(state: dict[str, Any]) -> list[str]:
    """Per view version with a transformation: whether ingest runs it incrementally or in full, and why."""
    out = []
    for name, record in state.get("feature_views", {}).items():
        if record.get("transform"):
            mode, why = ingest_mode(record)
            out.append(f"{name}: {mode} ({why})")
    return out


def store_warnings(config: RepoConfig, state: dict[str, Any]) -> list[str]:
    """A source whose path reaches into a store: its files are skipped (offline.loaders), say so."""
    out = []
    for src in state.get("sources", {}).values():
        path = src.get("path")
        if not path or ":" in (src.get("format") or ""):
            continue  # a plug-in loader reads what it reads
        parts = Path(path).parts
        fixed = Path(*[p for p in parts[:next((i for i, p in enumerate(parts) if any(c in p for c in "*?[")),
                                              len(parts))]] or ["."])
        base = (config.root / fixed).resolve()
        for label, store in (("offline", config.offline_path), ("online", config.online_path)):
            if store is not None and store.resolve().is_relative_to(base):
                out.append(f"source {src['name']}: path {path!r} contains the {label} store "
                           f"({config.rel(store)}); its files are never read as source rows")
    return out


def _unpinned_readers(state: dict[str, Any], name: str) -> str:
    services = [s["name"] for s in state.get("feature_services", {}).values()
                if any(unversioned(ref.partition(":")[0]) == name and ref.partition(":")[0] not in
                       state["feature_views"] for ref in s["features"])]
    who = f"service{'s' if len(services) > 1 else ''} {', '.join(services)} and " if services else ""
    return f"{who}references to {name!r}"


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
    if key == "as_of":  # absent means the default; a training-semantics change, allowed in place
        return f"as_of: {old or AS_OF_EVENT} -> {new or AS_OF_EVENT} (training sets change; serving does not)"
    return f"{key}: {old!r} -> {new!r}"
