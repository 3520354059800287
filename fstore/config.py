"""The project file ``fstore.yaml``: where a repository keeps its registry and stores.

Every key but ``project`` has a default, so ``project: demo`` alone is a working
repository. Paths are relative to the repository folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidDefinition

PROJECT_FILE = "fstore.yaml"
DEFAULT_BUCKETS = 8
SERVER_DEFAULTS: dict[str, Any] = {"host": "127.0.0.1", "port": 6570, "workers": 1, "metrics_port": None,
                                   "max_frame_bytes": 8 << 20, "max_rows": 10_000, "max_connections": 10_000,
                                   "idle_timeout_s": 300.0}


@dataclass
class RepoConfig:
    """Settings read from ``fstore.yaml``; see docs/repository.md for each key."""

    root: Path
    project: str
    registry: Path
    offline_path: Path
    offline_buckets: int = DEFAULT_BUCKETS
    online_path: Path | None = None
    definitions: list[Path] = field(default_factory=list)
    entity_timestamp_column: str = "event_timestamp"
    server: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path) -> "RepoConfig":
        root = Path(root).resolve()
        path = root / PROJECT_FILE
        if not path.is_file():
            raise InvalidDefinition(f"no {PROJECT_FILE} in {root}: not a feature repository",
                                    file=str(path))
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidDefinition(f"not valid YAML: {exc}", file=PROJECT_FILE) from None
        return cls.from_dict(root, raw)

    @classmethod
    def from_dict(cls, root: Path, raw: Any) -> "RepoConfig":
        def bad(msg: str, key: str) -> InvalidDefinition:
            return InvalidDefinition(msg, file=PROJECT_FILE, field=key)

        if not isinstance(raw, dict):
            raise bad("expected a mapping of settings", "(top level)")
        known = {"project", "registry", "offline_store", "online_store", "definitions",
                 "entity_timestamp_column", "server"}
        for key in raw:
            if key not in known:
                raise bad(f"unknown setting {key!r}; known: {', '.join(sorted(known))}", str(key))
        project = raw.get("project")
        if not isinstance(project, str) or not project.strip():
            raise bad("'project' (a name) is required", "project")
        offline = raw.get("offline_store") or {}
        online = raw.get("online_store") or {}
        for key, section in (("offline_store", offline), ("online_store", online)):
            if not isinstance(section, dict):
                raise bad("expected a mapping", key)
        for key in offline:
            if key not in ("path", "buckets", "engine"):
                raise bad(f"unknown setting {key!r}; known: buckets, engine, path", f"offline_store.{key}")
        buckets = offline.get("buckets", DEFAULT_BUCKETS)
        if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 4096:
            raise bad(f"buckets must be an integer from 1 to 4096, got {buckets!r}", "offline_store.buckets")
        server = dict(SERVER_DEFAULTS)
        section = raw.get("server") or {}
        if not isinstance(section, dict):
            raise bad("expected a mapping", "server")
        for key, value in section.items():
            if key not in SERVER_DEFAULTS:
                raise bad(f"unknown setting {key!r}; known: {', '.join(SERVER_DEFAULTS)}", f"server.{key}")
            default = SERVER_DEFAULTS[key]
            ok = value is None if key == "metrics_port" and value is None else (
                isinstance(value, type(default) if default is not None else int) and not isinstance(value, bool))
            if not ok and not (isinstance(default, float) and isinstance(value, int)):
                raise bad(f"expected a {type(default or 0).__name__}, got {value!r}", f"server.{key}")
            server[key] = value
        defs = raw.get("definitions")
        if defs is None:
            defs = ["features"] if (root / "features").is_dir() else ["."]
        if isinstance(defs, str):
            defs = [defs]
        ts_col = raw.get("entity_timestamp_column", "event_timestamp")
        if not isinstance(ts_col, str):
            raise bad("expected a column name", "entity_timestamp_column")
        return cls(
            root=root,
            project=project.strip(),
            registry=root / str(raw.get("registry", "data/registry.json")),
            offline_path=root / str(offline.get("path", "data/offline")),
            offline_buckets=buckets,
            online_path=root / str(online.get("path", "data/online")),
            definitions=[root / str(d) for d in defs],
            entity_timestamp_column=ts_col,
            server=server,
            raw=raw,
        )

    def rel(self, path: Path) -> str:
        """A path as people see it in messages: relative to the repository when inside it."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)
