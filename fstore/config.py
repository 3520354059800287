"""The project file ``fstore.yaml``: where a repository keeps its registry and stores.

Every key but ``project`` has a default, so ``project: demo`` alone is a working
repository. Paths are relative to the repository folder. Every section is checked
against the table of its keys below (``SECTIONS``): an unknown key or a value of the
wrong type is an InvalidConfig naming it, never silently ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidConfig, InvalidDefinition
from .times import parse_duration

PROJECT_FILE = "fstore.yaml"

# key -> (types it may have, default); None in the types means the key may be null.
# One table per section: the only place a setting's default is written.
OFFLINE_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "path": ((str,), "data/offline"),
    "buckets": ((int,), 8),
    "engine": ((str,), "local"),              # local | spark | package.module:Class (offline/engines.py)
    "spark": ((dict, type(None)), None),      # SPARK_KEYS: the Spark engine's session (offline/spark/session.py)
}
# offline_store.spark, one level down; read only when engine is spark
SPARK_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "master": ((str, type(None)), None),      # None: local[N] with this machine's cores
    "app_name": ((str,), "fstore"),
    "conf": ((dict,), {}),                    # spark.* settings passed to the session builder as given
}
ONLINE_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "path": ((str,), "data/online"),
    "map_size": ((int,), 1 << 30),           # bytes the LMDB map starts with (it grows by doubling)
    "write_buffer_mb": ((int, float), 2048),  # newest rows a materialization sorts and writes at once
    "max_dbs": ((int, type(None)), None),     # None: the databases present + headroom (online/store.py)
}
SERVER_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "host": ((str,), "127.0.0.1"),
    "port": ((int,), 6570),
    "workers": ((int,), 1),
    "metrics_port": ((int, type(None)), None),
    "max_frame_bytes": ((int,), 8 << 20),
    "max_rows": ((int,), 10_000),
    "max_connections": ((int,), 10_000),
    "idle_timeout_s": ((int, float), 300.0),
    # a request slower than this logs one WARNING line (serving/slowlog.py); None: off, 0: every request
    "slow_request_ms": ((int, float, type(None)), None),
    "listeners": ((list,), []),               # served-read listeners, "module:callable" (monitoring/events.py)
    "auth": ((dict, type(None)), None),       # {tokens: [...]}: AUTH_KEYS, TOKEN_KEYS (serving/auth.py)
    "tls": ((dict, type(None)), None),        # TLS_KEYS (serving/tls.py)
}
# server.auth and server.tls, one level down (paths relative to the repository)
AUTH_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {"tokens": ((list,), [])}
TOKEN_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "name": ((str,), None),
    "scopes": ((list,), None),
    "secret_env": ((str, type(None)), None),   # exactly one of secret_env and secret_file
    "secret_file": ((str, type(None)), None),
}
SCOPES = ("read", "push", "admin")  # admin implies the others (serving/auth.py)
TLS_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "cert": ((str,), None),
    "key": ((str,), None),
    "client_ca": ((str, type(None)), None),   # set: clients must show a certificate it signed (mutual TLS)
}
MATERIALIZE_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    # how far past now a materialization END may be before it is refused as a likely typo
    # (--allow-future overrides): a duration, '5m' or seconds
    "clock_skew": ((str, int, float), "5m"),
}
MONITORING_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "logging": ((dict, type(None)), None),    # LOGGING_KEYS (monitoring/logging.py, docs/monitoring.md)
}
# monitoring.logging: served-feature logging (its defaults; a feature service's own logging.sample_rate wins)
LOGGING_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "sample_rate": ((int, float, type(None)), None),  # null: only services with a logging mapping are logged
    "queue_size": ((int,), 10_000),    # reads waiting for the writer thread, per process; past it: dropped, counted
    "roll_rows": ((int,), 100_000),    # a log file is written once a service has this many rows buffered...
    "roll_seconds": ((int, float), 60),  # ...or its oldest buffered row is this old (the SIGKILL loss bound)
}
SECTIONS = {"offline_store": OFFLINE_KEYS, "online_store": ONLINE_KEYS, "server": SERVER_KEYS,
            "materialize": MATERIALIZE_KEYS, "monitoring": MONITORING_KEYS}
TOP_KEYS = ("project", "registry", "definitions", "entity_timestamp_column", *SECTIONS)


def defaults(keys: dict[str, tuple[tuple[type, ...], Any]]) -> dict[str, Any]:
    """The default of every key of a section."""
    return {k: list(default) if isinstance(default, list) else default for k, (_, default) in keys.items()}


def _bad(msg: str, key: str) -> InvalidConfig:
    return InvalidConfig(msg, file=PROJECT_FILE, field=key)


def _section(raw: dict[str, Any], name: str, keys: dict[str, tuple[tuple[type, ...], Any]] | None = None
             ) -> dict[str, Any]:
    """A section's settings, every key known and typed, defaults filled in (``keys``: a
    nested table, ``name`` its dotted path)."""
    keys = SECTIONS[name] if keys is None else keys
    given = raw.get(name)
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise _bad("expected a mapping", name)
    out = defaults(keys)
    for key, value in given.items():
        if key not in keys:
            raise _bad(f"unknown setting {key!r}; known: {', '.join(keys)}", f"{name}.{key}")
        types = keys[key][0]
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise _bad(f"expected {wanted}, got {value!r}", f"{name}.{key}")
        out[key] = value
    return out


def _materialize_section(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``materialize`` settings, with ``clock_skew_us`` (microseconds) parsed from ``clock_skew``."""
    out = _section(raw, "materialize")
    try:
        out["clock_skew_us"] = parse_duration(out["clock_skew"], obj="materialize", field="clock_skew") or 0
    except InvalidDefinition:
        raise _bad(f"expected a duration such as '5m', '30s' or a number of seconds, got {out['clock_skew']!r}",
                   "materialize.clock_skew") from None
    return out


def _monitoring_section(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``monitoring`` settings, ``logging`` filled in from LOGGING_KEYS and range-checked."""
    out = _section(raw, "monitoring")
    logging = _section({"monitoring.logging": out["logging"]}, "monitoring.logging", LOGGING_KEYS)
    rate = logging["sample_rate"]
    if rate is not None and not 0 <= rate <= 1:
        raise _bad(f"must be a number from 0 to 1, or null, got {rate!r}", "monitoring.logging.sample_rate")
    for key in ("queue_size", "roll_rows", "roll_seconds"):
        if not logging[key] > 0:
            raise _bad(f"must be greater than 0, got {logging[key]!r}", f"monitoring.logging.{key}")
    out["logging"] = logging
    return out


def _spark_section(offline: dict[str, Any]) -> dict[str, Any]:
    """``offline_store.spark`` filled in from SPARK_KEYS; its ``conf`` values must be scalars
    (Spark takes every setting as a string)."""
    if offline["spark"] is not None and offline["engine"] != "spark":
        raise _bad(f"a spark section needs engine: spark (engine is {offline['engine']!r})", "offline_store.spark")
    spark = _section({"offline_store.spark": offline["spark"]}, "offline_store.spark", SPARK_KEYS)
    for key, value in spark["conf"].items():
        if not isinstance(key, str) or isinstance(value, (dict, list)) or value is None:
            raise _bad(f"expected a setting name and a string, number or boolean, got {key!r}: {value!r}",
                       f"offline_store.spark.conf.{key}")
    return spark


def _server_security(server: dict[str, Any]) -> None:
    """``server.auth`` and ``server.tls`` checked and filled in, in place. The secrets
    themselves are read only by the server (serving/auth.py): a repository whose token
    variables are unset still plans and applies."""
    if server["auth"] is not None:
        auth = _section({"server.auth": server["auth"]}, "server.auth", AUTH_KEYS)
        tokens, names = [], set()
        for i, given in enumerate(auth["tokens"]):
            where = f"server.auth.tokens[{i}]"
            token = _section({where: given}, where, TOKEN_KEYS)
            name = token["name"]
            if not isinstance(name, str) or not name:
                raise _bad("each token needs a name", f"{where}.name")
            if name in names:
                raise _bad(f"two tokens are named {name!r}", f"{where}.name")
            names.add(name)
            scopes = token["scopes"]
            unknown = [x for x in scopes or [] if x not in SCOPES]
            if not scopes or unknown:
                raise _bad(f"token {name!r}: " + (f"unknown scope {unknown[0]!r}" if unknown else "no scopes")
                           + f"; known: {', '.join(SCOPES)}", f"{where}.scopes")
            if (token["secret_env"] is None) == (token["secret_file"] is None):
                raise _bad(f"token {name!r}: give exactly one of secret_env and secret_file", where)
            tokens.append(token)
        server["auth"] = {"tokens": tokens}
    if server["tls"] is not None:
        tls = _section({"server.tls": server["tls"]}, "server.tls", TLS_KEYS)
        for key in ("cert", "key"):
            if tls[key] is None:
                raise _bad(f"a TLS server needs both cert and key; {key} is missing", f"server.tls.{key}")
        server["tls"] = tls


@dataclass
class RepoConfig:
    """Settings read from ``fstore.yaml``; see docs/repository.md for each key."""

    root: Path
    project: str
    registry: Path
    offline_path: Path
    offline_buckets: int = 8
    offline_engine: str = "local"
    offline_spark: dict[str, Any] = field(default_factory=lambda: defaults(SPARK_KEYS))
    online_path: Path | None = None
    online: dict[str, Any] = field(default_factory=lambda: defaults(ONLINE_KEYS))
    definitions: list[Path] = field(default_factory=list)
    entity_timestamp_column: str = "event_timestamp"
    server: dict[str, Any] = field(default_factory=lambda: defaults(SERVER_KEYS))
    materialize: dict[str, Any] = field(default_factory=lambda: _materialize_section({}))
    monitoring: dict[str, Any] = field(default_factory=lambda: _monitoring_section({}))
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | Path) -> "RepoConfig":
        root = Path(root).resolve()
        path = root / PROJECT_FILE
        if not path.is_file():
            raise InvalidConfig(f"no {PROJECT_FILE} in {root}: not a feature repository", file=str(path))
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidConfig(f"not valid YAML: {exc}", file=PROJECT_FILE) from None
        return cls.from_dict(root, raw)

    @classmethod
    def from_dict(cls, root: Path, raw: Any) -> "RepoConfig":
        if not isinstance(raw, dict):
            raise _bad("expected a mapping of settings", "(top level)")
        for key in raw:
            if key not in TOP_KEYS:
                raise _bad(f"unknown setting {key!r}; known: {', '.join(sorted(TOP_KEYS))}", str(key))
        project = raw.get("project")
        if not isinstance(project, str) or not project.strip():
            raise _bad("'project' (a name) is required", "project")
        offline, online, server = (_section(raw, name) for name in ("offline_store", "online_store", "server"))
        materialize = _materialize_section(raw)
        if not 1 <= offline["buckets"] <= 4096:
            raise _bad(f"buckets must be an integer from 1 to 4096, got {offline['buckets']!r}",
                       "offline_store.buckets")
        if not all(isinstance(x, str) and ":" in x for x in server["listeners"]):
            raise _bad("expected a list of 'module:callable'", "server.listeners")
        if server["slow_request_ms"] is not None and not server["slow_request_ms"] >= 0:
            raise _bad(f"must be a number of milliseconds >= 0, or null (off), got {server['slow_request_ms']!r}",
                       "server.slow_request_ms")
        _server_security(server)
        spark = _spark_section(offline)
        for key, least in (("map_size", 1), ("write_buffer_mb", 0), ("max_dbs", 1)):  # write_buffer_mb 0: per bucket
            if online[key] is not None and online[key] < least:
                raise _bad(f"must be at least {least}, got {online[key]!r}", f"online_store.{key}")
        defs = raw.get("definitions")
        if defs is None:
            defs = ["features"] if (root / "features").is_dir() else ["."]
        if isinstance(defs, str):
            defs = [defs]
        ts_col = raw.get("entity_timestamp_column", "event_timestamp")
        if not isinstance(ts_col, str):
            raise _bad("expected a column name", "entity_timestamp_column")
        return cls(
            root=root,
            project=project.strip(),
            registry=root / str(raw.get("registry", "data/registry.json")),
            offline_path=root / offline["path"],
            offline_buckets=offline["buckets"],
            offline_engine=offline["engine"],
            offline_spark=spark,
            online_path=root / online["path"],
            online=online,
            definitions=[root / str(d) for d in defs],
            entity_timestamp_column=ts_col,
            server=server,
            materialize=materialize,
            monitoring=_monitoring_section(raw),
            raw=raw,
        )

    @property
    def store_paths(self) -> tuple[Path, ...]:
        """The folders fstore owns (offline and online store): never read as a source."""
        return tuple(p for p in (self.offline_path, self.online_path) if p is not None)

    def rel(self, path: Path) -> str:
        """A path as people see it in messages: relative to the repository when inside it."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)
