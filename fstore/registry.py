"""The registry: the applied definitions, one JSON document, replaced atomically.

``apply`` writes the new document to a temporary file, fsyncs it and renames it
over the old one, so a reader (or a crash) sees either the previous registry or
the new one, never a mix. Each applied version is also kept under
``registry_history/`` for audit and lineage. Old view versions are never removed
by an apply: datasets and models that used them stay reproducible.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .config import RepoConfig
from .errors import NotApplied, RegistryError
from .repo import read_definitions
from .validation import build_registry

FORMAT = 1
KINDS = ("entities", "sources", "feature_views", "feature_services")


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


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that no reader or crash sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_tmp(path: Path) -> None:
    """Delete temporary files a killed ``write_atomic`` of ``path`` left; call under the writers' lock.

    ``path``'s name may be a glob (``history/*.json``).
    """
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two writers (apply, ingest) never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Registry:
    """The applied registry of one repository."""

    def __init__(self, config: RepoConfig) -> None:
        self.config = config
        self.path = config.registry
        self.history_dir = self.path.parent / "registry_history"

    def load(self) -> dict[str, Any] | None:
        """The applied document, or None before the first apply."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self.config.rel(self.path)} is corrupt: {exc}") from None
        if doc.get("format") != FORMAT:
            raise RegistryError(f"{self.config.rel(self.path)} has registry format {doc.get('format')!r}; "
                                f"this fstore ({__version__}) reads format {FORMAT}")
        return doc

    def require(self) -> dict[str, Any]:
        doc = self.load()
        if doc is None:
            raise NotApplied(f"no registry at {self.config.rel(self.path)}: run `fstore apply` first")
        return doc

    def plan(self) -> Plan:
        """Validate the repository's definitions and compare them with what is applied."""
        current = self.load()
        new_state = build_registry(self.config, read_definitions(self.config), current)
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
    for kind in KINDS:
        before, after = old.get(kind, {}), new.get(kind, {})
        for name in sorted(before.keys() | after.keys()):
            if name not in before:
                changes.append(Change(kind, name, "add"))
            elif name not in after:
                changes.append(Change(kind, name, "remove"))
            elif before[name] != after[name]:
                details = [f"{k}: {before[name].get(k)!r} -> {after[name].get(k)!r}"
                           for k in sorted(before[name].keys() | after[name].keys())
                           if before[name].get(k) != after[name].get(k)]
                changes.append(Change(kind, name, "change", details))
    return changes
