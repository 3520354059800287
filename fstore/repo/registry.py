"""The registry: the applied definitions, one JSON document, replaced atomically.

``apply`` writes the new document to a temporary file, fsyncs it and renames it
over the old one, so a reader (or a crash) sees either the previous registry or
the new one, never a mix. Each applied version is also kept under
``registry_history/`` for audit and lineage. Old view versions are never removed
by an apply: datasets and models that used them stay reproducible.

What an apply would change is computed in ``repo.plan``, and what a process holds of the
applied document is a ``repo.snapshot.Snapshot`` (both importable from here too, as the
registry's methods return them).
"""
from __future__ import annotations

import copy
import datetime as dt
import json
from time import monotonic
from pathlib import Path
from typing import Any, Callable, TypeVar

from .._version import __version__
from ..config import RepoConfig
from ..errors import NotApplied, RegistryError
from ..files import file_lock, read_document, remove_stale_tmp, write_atomic
from .names import view_name
from .plan import Plan, make_plan
from .readiness import Readiness, load_readiness, path_of, save_readiness
from .reader import read_definitions
from .snapshot import Snapshot
from .validation import SchemaReader, build_registry

FORMAT = 1
#: the keys every stored version sets itself (``Registry._write``)
_STAMP_KEYS = frozenset({"format", "version", "fstore_version", "applied_at"})
T = TypeVar("T")
#: how long a process trusts its cached registry before it looks at the file again
RECHECK_SECONDS = 1.0


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
        return make_plan(self.config, current, new_state, ready)

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
