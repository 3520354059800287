"""A Python function declared in the definitions: how it is stored and found again.

A transformation (and any other definition that names code) is a function of a file
under the definitions folders (``features/*.py``). The registry is JSON, so a function is
stored by reference: its name, the repository-relative file that defines it, and a hash
of its source code (``inspect.getsource``). The hash makes a changed body a change that
``fstore plan`` shows; the file and name are how ingest finds it again (the file is run
with runpy, as the reader runs definitions).

The one helper for every kind of declared function (batch transformations, request-time
functions and on_miss fills): ``declare`` / ``declare_named`` store one, ``load_function`` /
``load`` find it again, and every error names the file and the function (FunctionNotFound,
an InvalidDefinition).
"""
from __future__ import annotations

import hashlib
import inspect
import runpy
from pathlib import Path
from typing import Any, Callable

from ..errors import FunctionNotFound, InvalidDefinition
from .definition_files import definition_files

#: the attribute ``@transformation`` sets on a function: its declared options
ATTR = "__fstore_transformation__"
#: the keys of a stored function reference
REF_KEYS = ("function", "file", "source_sha256")


def transformation(fn: Callable[..., Any] | None = None, *, row_wise: bool = False) -> Any:
    """Declare a batch transformation (a pyarrow Table -> pyarrow Table function).

    ``row_wise=True`` promises that each output row depends on one input row only (no
    aggregate, sort or look at other rows), so ingest may run it on new source files
    alone; without it every ingest recomputes the whole history. Usable bare
    (``@transformation``) or with options (``@transformation(row_wise=True)``)."""
    if not isinstance(row_wise, bool):
        raise InvalidDefinition(f"row_wise must be true or false, got {row_wise!r}", field="row_wise")

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, ATTR, {"row_wise": row_wise})
        return f

    return mark(fn) if fn is not None else mark


def row_wise(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` was declared row-wise (``@transformation(row_wise=True)``)."""
    return bool(getattr(fn, ATTR, {}).get("row_wise", False))


def source_hash(fn: Callable[..., Any]) -> str:
    """The hash of a function's source text: what makes an edited body a planned change."""
    try:
        text = inspect.getsource(fn)
    except (OSError, TypeError) as exc:
        raise InvalidDefinition(f"cannot read the source of {getattr(fn, '__name__', fn)!r}: {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def declare(fn: Any, root: Path, *, obj: str, field: str) -> dict[str, Any]:
    """The stored reference of a function defined in a definitions file under ``root``."""
    if not callable(fn) or not hasattr(fn, "__name__") or fn.__name__ == "<lambda>":
        raise InvalidDefinition(f"expected a function defined with def in features/*.py, got {fn!r}",
                                obj=obj, field=field)
    try:
        path = Path(inspect.getsourcefile(fn) or "")
    except TypeError:
        path = Path("")
    try:
        rel = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        raise InvalidDefinition(f"function {fn.__name__!r} is defined in {path}, outside the repository: "
                                "define it in a file of the definitions (features/*.py)",
                                obj=obj, field=field) from None
    return {"function": fn.__name__, "file": rel, "source_sha256": source_hash(fn)}


def find_declared(name: str, files: list[Path], root: Path, *, obj: str, field: str) -> Any:
    """The function ``name`` defined at module level in one of the Python definition ``files``
    (for a YAML definition, which can only name it); raises naming the files searched."""
    found = []
    for path in files:
        if path.suffix != ".py":
            continue
        fn = _namespace(path).get(name)
        if callable(fn) and getattr(fn, "__name__", None) == name:
            found.append(fn)
    if not found:
        where = ", ".join(_rel(p, root) for p in files if p.suffix == ".py") or "no Python definition file"
        raise FunctionNotFound(f"no function {name!r} in the definitions (searched {where})", obj=obj, field=field)
    if len({source_hash(f) for f in found}) > 1:
        raise InvalidDefinition(f"function {name!r} is defined differently in two definition files", obj=obj,
                                field=field)
    return found[0]


def load_function(ref: dict[str, Any], root: Path, *, what: str) -> Callable[..., Any]:
    """The function a stored reference names, as applied: the file is run again and the
    function must exist with the same source hash (else the definitions changed since
    ``fstore apply``, and running it would store what the registry does not describe)."""
    path = root / ref["file"]
    name = ref["function"]
    if not path.is_file():
        raise FunctionNotFound(f"{what}: file {ref['file']} of function {name!r} is missing",
                               file=ref["file"])
    fn = _namespace(path).get(name)
    if not callable(fn):
        raise FunctionNotFound(f"{what}: function {name!r} is no longer defined in {ref['file']}", file=ref["file"])
    if source_hash(fn) != ref["source_sha256"]:
        raise FunctionNotFound(f"{what}: function {name!r} in {ref['file']} changed since it was applied "
                                "(`fstore plan` shows the change; a changed transformation needs a new "
                                "version or `fstore backfill`)", file=ref["file"])
    return fn


def function_name(value: Any, *, obj: str, field: str) -> str:
    """The name a definition gives for a function: a callable's ``__name__``, or the text."""
    name = getattr(value, "__name__", value) if callable(value) else value
    if not isinstance(name, str) or not name.isidentifier():
        raise FunctionNotFound(f"expected a function defined in features/*.py or its name, got {value!r}",
                               obj=obj, field=field)
    return name


def declare_named(config: Any, name: str, *, obj: str, field: str,
                  fn: Callable[..., Any] | None = None) -> dict[str, Any]:
    """The stored reference of the function ``name``: ``fn`` when a Python definition gave it
    and it lives in the repository, else found by name in the definitions' Python files."""
    if fn is not None:
        try:
            return declare(fn, config.root, obj=obj, field=field)
        except FunctionNotFound:
            raise
        except InvalidDefinition:
            pass  # defined outside the repository: look for it by name in the definitions
    found = find_declared(name, definition_files(config), config.root, obj=obj, field=field)
    return declare(found, config.root, obj=obj, field=field)


def load(config: Any, record: dict[str, Any], *, obj: str, field: str = "function") -> Callable[..., Any]:
    """``load_function`` for a repository's configuration, the error naming the object too."""
    try:
        return load_function(record, config.root, what=obj)
    except FunctionNotFound as exc:
        raise FunctionNotFound(exc.detail, file=exc.file, obj=obj, field=field) from None


_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def _namespace(path: Path) -> dict[str, Any]:
    """The module-level names of a definitions file, run once per file content."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        try:
            _CACHE[key] = runpy.run_path(str(path), run_name=f"fstore_defs.{path.stem}")
        except Exception as exc:  # a user's module may raise anything
            raise InvalidDefinition(f"failed to run: {type(exc).__name__}: {exc}", file=str(path)) from None
    return _CACHE[key]


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
