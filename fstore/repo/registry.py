"""The registry: the applied definitions, one JSON document, replaced atomically.

``apply`` writes the new document to a temporary file, fsyncs it and renames it
over the old one, so a reader (or a crash) sees either the previous registry or
the new one, never a mix. Each applied version is also kept under
``registry_history/`` for audit and lineage. Old view versions are never removed
by an apply: datasets and models that used them stay reproducible.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, field
from time import monotonic
from pathlib import Path
from typing import Any, Callable, TypeVar

from .._version import __version__
from ..config import RepoConfig
from ..errors import NotApplied, RegistryError
from ..files import file_lock, read_document, remove_stale_tmp, write_atomic
from ..times import format_duration
from .definitions import AS_OF_EVENT
from .impact import Impact, model_impacts
from .names import SECTIONS, unversioned, view_name
from .readiness import Readiness, live_version, load_readiness, path_of, save_readiness
from .reader import read_definitions
from .transforms import ingest_mode
from .validation import SchemaReader, build_registry

FORMAT = 1
#: the keys every stored version sets itself (``Registry._write``)
_STAMP_KEYS = frozenset({"format", "version", "fstore_version", "applied_at"})
T = TypeVar("T")
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
    effects: list[str] = field(default_factory=list)  # what the apply does to live reads and training
    warnings: list[str] = field(default_factory=list)  # legal, but likely not what was meant
    impacts: list[Impact] = field(default_factory=list)  # changes a production model reads (repo.impact)
    #: how ``fstore ingest`` runs each view with a transformation: "view_vN: mode (why)"
    ingest: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(c.action != "keep" for c in self.changes)


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


class Registry:
    """The applied registry of one repository.

    ``schema_of`` reads a source's schema for ``plan`` and ``apply`` (the offline engine
    gives it); reading what is applied needs none.
    """

    def __init__(self, config: RepoConfig, schema_of: SchemaReader | None = None) -> None:
        self.config = config
        self.path = config.registry
        self.history_dir = self.path.parent / "registry_history"
        self.ready_path = path_of(self.path)
        self.schema_of = schema_of
        self._snapshot: Snapshot | None = None
        self._stamp: tuple[Any, Any] | None = None
        self.checked_at = float("-inf")  # monotonic time the cached snapshot was last checked

    def snapshot(self) -> Snapshot:
        """The applied registry, cached: the file is looked at again (its mtime and size) at
        most once every RECHECK_SECONDS, and read again only when it changed. The server
        and in-process reads call this per request."""
        clock = monotonic()
        if self._snapshot is not None and clock - self.checked_at < RECHECK_SECONDS:
            return self._snapshot
        stamp = (_stamp(self.path), _stamp(self.ready_path))
        if self._snapshot is None or stamp != self._stamp:
            # a registry that cannot be read now is an error on every call until it can: the
            # old snapshot is not served on (a change was meant, and is unknown)
            self._snapshot = None
            self._snapshot = Snapshot(self.require(), self.readiness())
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

    def readiness(self) -> Readiness:
        """Which applied versions have offline and online data (see fstore.repo.readiness)."""
        return load_readiness(self.ready_path, self.config.rel(self.ready_path))

    def save_readiness(self, ready: Readiness) -> bool:
        """Publish ``ready`` (as the stores found it); True when it changed."""
        with file_lock(self.path.parent / ".registry.lock"):
            if ready == self.readiness():
                return False
            remove_stale_tmp(self.ready_path)
            save_readiness(self.ready_path, ready)
            self.checked_at = float("-inf")  # this process sees its own change at once
            return True

    def plan(self, ready: Readiness | None = None) -> Plan:
        """Validate the repository's definitions and compare them with what is applied.

        ``ready`` (default: as published) says which versions have data, for the plan's
        effects: which versions unpinned references will read after the apply."""
        if self.schema_of is None:
            raise RegistryError("this Registry was made without a schema reader: plan and apply need one")
        current = self.load()
        new_state = build_registry(self.config, read_definitions(self.config), current, self.schema_of)
        ready = self.readiness() if ready is None else ready
        return Plan(current["version"] if current else 0, new_state, _diff(current or {}, new_state),
                    version_effects(current or {}, new_state, ready), store_warnings(self.config, new_state),
                    model_impacts(current or {}, new_state), transform_modes(new_state))

    def apply(self, ready: Readiness | None = None) -> tuple[Plan, int]:
        """Validate and store the definitions; returns the plan and the registry version now in force."""
        with file_lock(self.path.parent / ".registry.lock"):
            remove_stale_tmp(self.path)
            remove_stale_tmp(self.history_dir / "*.json")
            plan = self.plan(ready)
            if plan.empty and plan.current_version:
                return plan, plan.current_version
            # definitions hold no models: the registered ones are carried over unchanged
            models = (self.load() or {}).get("models", {})
            return plan, self._write(plan.current_version, {**plan.new_state, "models": models})

    def update_models(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Change the ``models`` section (fstore.repo.models) as one new registry version, under
        the lock apply takes, with its history copy: ``change`` edits the section in place
        and returns what the caller gets back (raising leaves the registry as it was)."""
        with file_lock(self.path.parent / ".registry.lock"):
            remove_stale_tmp(self.path)
            remove_stale_tmp(self.history_dir / "*.json")
            current = self.require()
            models = copy.deepcopy(current.get("models", {}))
            result = change(models)
            state = {k: v for k, v in current.items() if k not in _STAMP_KEYS}
            self._write(current["version"], {**state, "models": models})
            return result

    def add_view_version(self, record: dict[str, Any]) -> int:
        """Register one new view version (``fstore backfill``'s result) as a new registry
        version, everything else unchanged; returns the registry version now in force."""
        with file_lock(self.path.parent / ".registry.lock"):
            remove_stale_tmp(self.path)
            remove_stale_tmp(self.history_dir / "*.json")
            current = self.require()
            name = view_name(record)
            if name in current["feature_views"]:
                raise RegistryError(f"view version {name} is already applied")
            state = {k: v for k, v in current.items() if k not in _STAMP_KEYS}
            state["feature_views"] = dict(sorted({**current["feature_views"], name: record}.items()))
            return self._write(current["version"], state)

    def _write(self, current_version: int, state: dict[str, Any]) -> int:
        """Store ``state`` as the next registry version (history copy first); returns it."""
        version = current_version + 1
        doc = {"format": FORMAT, "version": version, "fstore_version": __version__,
               "applied_at": dt.datetime.now(dt.timezone.utc).isoformat(), **state}
        data = json.dumps(doc, indent=1, sort_keys=False).encode()
        write_atomic(self.history_dir / f"{version:06d}.json", data)
        write_atomic(self.path, data)
        self.checked_at = float("-inf")
        return version

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


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


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
