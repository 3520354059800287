"""Which files hold a repository's definitions: the YAML and Python files under the folders
``definitions`` names in fstore.yaml.

Its own module, below both the reader (which parses these files) and fstore.repo.functions
(which finds a declared function in them by name): the reader imports modules that build
on functions, so functions cannot import the reader.
"""
from __future__ import annotations

from pathlib import Path

from ..config import PROJECT_FILE, RepoConfig
from ..errors import InvalidDefinition

#: folders never searched for definitions (data, environments, caches, hidden folders too)
SKIP_DIRS = {"data", ".git", ".venv", "venv", "__pycache__", "node_modules", ".fstore"}


def definition_files(config: RepoConfig) -> list[Path]:
    """The YAML and Python files under the definitions folders (or the files named), in a
    stable order; InvalidDefinition naming fstore.yaml's ``definitions`` for a missing folder."""
    files: list[Path] = []
    for base in config.definitions:
        if base.is_file():
            files.append(base)
            continue
        if not base.is_dir():
            raise InvalidDefinition(f"definitions folder {config.rel(base)} does not exist",
                                    file=PROJECT_FILE, field="definitions")
        for path in sorted(base.rglob("*")):
            rel_parts = path.relative_to(base).parts
            if any(p in SKIP_DIRS or p.startswith(".") for p in rel_parts[:-1]):
                continue
            if path.is_file() and path.suffix in (".yaml", ".yml", ".py") and path.name != PROJECT_FILE:
                files.append(path)
    return files
