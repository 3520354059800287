"""Which offline engine a repository's configuration names (``offline_store: {engine: ...}``):
the local engine, the Spark engine, or a ``package.module:Class`` of the user's.

Apart from fstore.offline.engine because the Spark engine builds on that module (it reuses
its ingest of aggregation views): the module that picks the Spark engine sits above both.
pyspark and a user's engine module are imported only when chosen.
"""
from __future__ import annotations

import importlib

from ..config import PROJECT_FILE, RepoConfig
from ..errors import InvalidConfig, MissingDependency
from .engine import LocalEngine, OfflineEngine


def make_engine(config: RepoConfig) -> OfflineEngine:
    """The offline engine ``config`` names; MissingDependency or InvalidConfig naming the field."""
    name = config.offline_engine
    if name == "local":
        return LocalEngine(config)
    if name == "spark":
        try:
            import pyspark  # noqa: F401  (only to say clearly what is missing)
        except ImportError:
            raise MissingDependency("offline_store.engine is spark but pyspark is not installed: "
                               "pip install 'fstore[spark]' (pyspark 4 and a Java 17 runtime)") from None
        from .spark import SparkEngine  # optional: pyspark only when asked for
        return SparkEngine(config)
    module, _, cls = str(name).partition(":")
    try:
        return getattr(importlib.import_module(module), cls)(config)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidConfig(f"cannot load offline engine {name!r}: {exc}", file=PROJECT_FILE,
                            field="offline_store.engine") from None
