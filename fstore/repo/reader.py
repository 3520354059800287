"""Reading a feature repository's definitions from YAML and Python files.

Definitions live under the folders named by ``definitions`` in fstore.yaml
(default: ``features/``). A YAML file holds lists under ``entities``, ``sources``,
``feature_views`` and ``feature_services``; a Python file defines the same
objects at module level. Every problem found is collected and reported together,
each naming its file, object and field.
"""
from __future__ import annotations

import dataclasses
import runpy
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import RepoConfig
from ..errors import DefinitionErrors, InvalidDefinition
from .definition_files import SKIP_DIRS, definition_files
from .definitions import CLASSES, Entity, FeatureService, FeatureView, Source
from .fields import unknown_field_message
from .names import SECTIONS
from .request_time import RequestView

#: fstore's own package: its frames are never the user's line
_FSTORE_DIR = Path(__file__).resolve().parents[1]
#: the keys a YAML mapping of each kind may hold (the dataclass fields)
_CLASSES: dict[str, type] = {**CLASSES, "request_views": RequestView}  # request_time builds on definitions
_FIELDS: dict[str, list[str]] = {kind: [f.name for f in dataclasses.fields(cls)] for kind, cls in _CLASSES.items()}


@dataclass
class Defined:
    """One definition and the file it came from (for error messages)."""

    obj: Any
    file: str


@dataclass
class RepoContents:
    """Everything a repository defines, by kind, in file order."""

    entities: list[Defined] = field(default_factory=list)
    sources: list[Defined] = field(default_factory=list)
    feature_views: list[Defined] = field(default_factory=list)
    feature_services: list[Defined] = field(default_factory=list)
    request_views: list[Defined] = field(default_factory=list)
    #: problems found while reading the files
    errors: list[InvalidDefinition] = field(default_factory=list)
    #: names (by kind) of the objects whose definitions were rejected while reading: they
    #: exist, so validation must not also report references to them as unknown
    rejected: dict[str, set[str]] = field(default_factory=dict)
    #: False when a whole file or section could not be read, so what it defines is unknown
    complete: bool = True

    def add(self, kind: str, obj: Any, file: str) -> None:
        getattr(self, kind).append(Defined(obj, file))


def read_definitions(config: RepoConfig) -> RepoContents:
    """Parse every definition file, keeping the problems in ``contents.errors``.

    Validation can then check the objects that did parse, so that one plan reports
    every problem rather than stopping at the first file that has one.
    """
    contents = RepoContents()
    for path in definition_files(config):
        rel = config.rel(path)
        if path.suffix == ".py":
            _load_python(path, rel, contents, contents.errors, config)
        else:
            _load_yaml(path, rel, contents, contents.errors)
    return contents


def load_definitions(config: RepoConfig) -> RepoContents:
    """Parse every definition file; raises DefinitionErrors listing all problems."""
    contents = read_definitions(config)
    if contents.errors:
        raise DefinitionErrors(contents.errors)
    return contents


def _load_yaml(path: Path, rel: str, contents: RepoContents, errors: list[InvalidDefinition]) -> None:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        errors.append(InvalidDefinition(f"not valid YAML: {exc}", file=rel))
        contents.complete = False
        return
    if doc is None:
        return
    if not isinstance(doc, dict):
        errors.append(InvalidDefinition("expected a mapping with entities, sources, feature_views "
                                        "and feature_services", file=rel))
        contents.complete = False
        return
    for kind, items in doc.items():
        if kind not in SECTIONS:
            errors.append(InvalidDefinition(
                f"unknown section {kind!r}; expected one of {', '.join(SECTIONS)}", file=rel, field=str(kind)))
            contents.complete = False
            continue
        if not isinstance(items, list):
            errors.append(InvalidDefinition("expected a list", file=rel, field=kind))
            contents.complete = False
            continue
        for i, item in enumerate(items or []):
            # named as validation names it ("feature_view customer_stats"), so one object
            # reads the same in every message whichever stage found the problem
            name = item.get("name") if isinstance(item, dict) else None
            label = f"{SECTIONS[kind]} {name}" if isinstance(name, str) else f"{kind}[{i}]"
            try:
                obj = _yaml_object(kind, item)
            except InvalidDefinition as exc:
                errors.append(InvalidDefinition(exc.detail, file=rel, obj=label, field=exc.field))
                if isinstance(name, str):
                    contents.rejected.setdefault(kind, set()).add(name)
                continue
            contents.add(kind, obj, rel)


def _yaml_object(kind: str, item: Any) -> Any:
    """The object one YAML mapping defines; InvalidDefinition (without file or object) if it can't."""
    if not isinstance(item, dict):
        raise InvalidDefinition(f"expected a mapping, got {item!r}")
    unknown = [str(k) for k in item if k not in _FIELDS[kind]]
    if unknown:
        raise InvalidDefinition(f"unknown field {unknown[0]!r} in {SECTIONS[kind]}; "
                                f"known: {', '.join(_FIELDS[kind])}", field=unknown[0])
    try:
        return _CLASSES[kind](**item)
    except TypeError as exc:
        raise InvalidDefinition(unknown_field_message(exc, SECTIONS[kind])) from None


def _user_file(filename: str | None, config: RepoConfig) -> bool:
    """Whether ``filename`` is the user's code: inside the repository, not in a virtualenv,
    a hidden folder or fstore itself."""
    if not filename or filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    if path.is_relative_to(_FSTORE_DIR):
        return False
    try:
        parts = path.relative_to(config.root).parts
    except ValueError:
        return False
    return not any(p in SKIP_DIRS or p.startswith(".") or p == "site-packages" for p in parts[:-1])


def _raised_at(exc: BaseException, config: RepoConfig) -> str:
    """', at features/defs.py:12: `the line`': where in the user's files ``exc`` was raised
    (the innermost frame of theirs; a SyntaxError's own position), or '' if not in them."""
    if isinstance(exc, SyntaxError) and _user_file(exc.filename, config):
        filename, lineno, line = exc.filename, exc.lineno, (exc.text or "").strip()
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if _user_file(f.filename, config)]
        if not frames:
            return ""
        filename, lineno, line = frames[-1].filename, frames[-1].lineno, (frames[-1].line or "").strip()
    where = f", at {config.rel(Path(filename))}:{lineno}"
    return f"{where}: `{line}`" if line else where


def _text_of(exc: BaseException) -> str:
    """An exception's message without the position a SyntaxError appends (shown apart)."""
    return exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)


def _load_python(path: Path, rel: str, contents: RepoContents, errors: list[InvalidDefinition],
                 config: RepoConfig) -> None:
    try:
        namespace = runpy.run_path(str(path), run_name=f"fstore_defs.{path.stem}")
    except InvalidDefinition as exc:
        errors.append(InvalidDefinition(exc.detail + _raised_at(exc, config), file=rel, obj=exc.obj,
                                        field=exc.field))
        contents.complete = False
        return
    except Exception as exc:  # a user's module may raise anything; report it, don't crash
        errors.append(InvalidDefinition(f"failed to run: {type(exc).__name__}: {_text_of(exc)}"
                                        f"{_raised_at(exc, config)}", file=rel))
        contents.complete = False
        return
    seen: set[int] = set()

    def collect(value: Any) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, Entity):
            contents.add("entities", value, rel)
        elif isinstance(value, Source):
            contents.add("sources", value, rel)
        elif isinstance(value, FeatureView):
            contents.add("feature_views", value, rel)
            for e in value._entity_objs:
                collect(e)
            if value._source_obj is not None:
                collect(value._source_obj)
        elif isinstance(value, FeatureService):
            contents.add("feature_services", value, rel)
        elif isinstance(value, RequestView):
            contents.add("request_views", value, rel)

    for name, value in namespace.items():
        if name.startswith("__"):
            continue
        if isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
        else:
            collect(value)
