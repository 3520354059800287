"""A Python function declared in the definitions: how it is named in the registry, and how
it is found again at run time.

The registry is JSON, so a function is stored as ``{"function": name, "file": path,
"source_sha256": hash}``: its name, the definitions file that defines it (relative to the
repository) and a hash of its source code (``inspect.getsource``), so that ``fstore plan``
shows a changed body as a change, and a process that loads it later refuses code that is
not the code applied. (i14-request's minimal version; i14-transform owns the shared one.)
"""
from __future__ import annotations

import hashlib
import inspect
import runpy
from pathlib import Path
from typing import Any, Callable

from ..config import RepoConfig
from ..errors import FunctionNotFound

#: definitions file (absolute) -> (mtime_ns, its module namespace): each file is run once per change
_NAMESPACES: dict[Path, tuple[int, dict[str, Any]]] = {}


def source_hash(fn: Callable[..., Any]) -> str:
    """The sha256 of a function's source text (what ``fstore plan`` compares)."""
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()


def function_name(value: Any, *, obj: str, field: str) -> str:
    """The name a definition gives for a function: a callable's ``__name__``, or the text."""
    name = getattr(value, "__name__", value) if callable(value) else value
    if not isinstance(name, str) or not name.isidentifier():
        raise FunctionNotFound(f"expected a function defined in features/*.py or its name, got {value!r}",
                               obj=obj, field=field)
    return name


def declare(config: RepoConfig, name: str, *, obj: str, field: str,
            fn: Callable[..., Any] | None = None) -> dict[str, str]:
    """The registry record of a function: found by name in the definitions' Python files
    (or given as ``fn``, from a Python definition), with its file and source hash."""
    if fn is None or not _in_repo(config, fn):
        fn, file = _find(config, name, obj=obj, field=field)
    else:
        file = config.rel(Path(inspect.getsourcefile(fn) or ""))
    return {"function": name, "file": file, "source_sha256": source_hash(fn)}


def load(config: RepoConfig, record: dict[str, Any], *, obj: str, field: str = "function") -> Callable[..., Any]:
    """The function a registry record names, from its file; FunctionNotFound naming the file
    and function when it is gone, or when its code is no longer the code applied."""
    path = config.root / record["file"]
    fn = _namespace(path, record["file"], obj, field).get(record["function"])
    if not callable(fn):
        raise FunctionNotFound(f"function {record['function']!r} is not defined in {record['file']}",
                               file=record["file"], obj=obj, field=field)
    if source_hash(fn) != record["source_sha256"]:
        raise FunctionNotFound(f"function {record['function']!r} in {record['file']} changed since it was "
                               "applied: run `fstore apply`", file=record["file"], obj=obj, field=field)
    return fn


def _find(config: RepoConfig, name: str, *, obj: str, field: str) -> tuple[Callable[..., Any], str]:
    from .reader import definition_files  # the reader imports this module's callers
    files = [p for p in definition_files(config) if p.suffix == ".py"]
    for path in files:
        fn = _namespace(path, config.rel(path), obj, field).get(name)
        if callable(fn) and getattr(fn, "__name__", None) == name:
            return fn, config.rel(path)
    where = ", ".join(config.rel(p) for p in files) or "no Python definitions file"
    raise FunctionNotFound(f"no function {name!r} in the definitions' Python files ({where})",
                           obj=obj, field=field)


def _namespace(path: Path, rel: str, obj: str, field: str) -> dict[str, Any]:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise FunctionNotFound(f"the definitions file {rel} is gone", file=rel, obj=obj, field=field) from None
    cached = _NAMESPACES.get(path)
    if cached is None or cached[0] != mtime:
        cached = _NAMESPACES[path] = (mtime, runpy.run_path(str(path), run_name=f"fstore_fns.{path.stem}"))
    return cached[1]


def _in_repo(config: RepoConfig, fn: Callable[..., Any]) -> bool:
    try:
        Path(inspect.getsourcefile(fn) or "").resolve().relative_to(config.root)
        return True
    except (TypeError, ValueError):
        return False
