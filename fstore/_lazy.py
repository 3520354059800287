"""Lazy public faces for packages: a name is imported from its module on first use.

A package's ``__init__`` names its public API without importing it, so that importing
one light module (``fstore.client``) does not drag in the heavy ones (pyarrow, LMDB)
through the packages above it, and a low module can import from a package whose other
modules sit higher in the layers (docs/architecture.md).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a public name to
    the module (relative to the package, e.g. ``.store``) that defines it."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
