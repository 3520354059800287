"""Checking a definition against the real columns: which Arrow types a key or a feature of
a declared dtype may be read from, a source's timestamp and label columns, and a view's
registry record built from its source's schema (or its transformation's output).

Apart from fstore.repo.validation, which checks the definitions against each other and
against what is already applied (names, references, schema changes): here one object
meets the data, there the objects meet each other. Both add to one ``Collector``, so one
``fstore plan`` shows every problem.
"""
from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..config import RepoConfig
from ..errors import InvalidDefinition
from .aggregations import resolve_aggregations
from .definition_files import definition_files
from .definitions import AS_OF_CREATED, coerce_default
from .reader import Defined
from .transform_run import view_transform


def key_dtype(t: pa.DataType) -> str | None:
    """The stored type of a join key column, or None when the type cannot be a key."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return None


def compatible(src: pa.DataType, dtype: str) -> bool:
    """Whether a source column of type ``src`` can be ingested as a feature of ``dtype``."""
    if pa.types.is_dictionary(src):
        src = src.value_type
    if pa.types.is_null(src):
        return True
    text = pa.types.is_string(src) or pa.types.is_large_string(src)
    if dtype in ("int32", "int64"):
        return pa.types.is_integer(src)
    if dtype in ("float32", "float64"):
        return pa.types.is_integer(src) or pa.types.is_floating(src) or pa.types.is_decimal(src)
    if dtype == "bool":
        return pa.types.is_boolean(src)
    if dtype == "string":
        return text
    if dtype == "bytes":
        return pa.types.is_binary(src) or pa.types.is_large_binary(src) or text
    if dtype == "timestamp":
        return pa.types.is_timestamp(src) or pa.types.is_date(src) or text
    return False


def is_time_like(src: pa.DataType) -> bool:
    """Whether a column of type ``src`` can be an event or created time (a null column cannot)."""
    return compatible(src, "timestamp") and not pa.types.is_null(src)


class Collector:
    """Every problem found, each naming its file, object and field."""

    def __init__(self) -> None:
        self.errors: list[InvalidDefinition] = []

    def add(self, msg: str, *, file: str | None, obj: str, field: str | None = None,
            cls: type[InvalidDefinition] = InvalidDefinition) -> None:
        self.errors.append(cls(msg, file=file, obj=obj, field=field))


def check_source_times(d: Defined, schema: pa.Schema, err: Collector) -> None:
    """A source's declared label and timestamp columns exist in its schema, the timestamps as times."""
    src = d.obj
    for col in src.labels:  # a declared label must be a real column (docs/validation.md, L2)
        if col not in schema.names:
            err.add(f"label column {col!r} is missing from the source's schema (columns: {', '.join(schema.names)})",
                    file=d.file, obj=f"source {src.name}", field="labels")
    for fld in ("timestamp_field", "created_timestamp_field"):
        col = getattr(src, fld)
        if col is None:
            continue
        if col not in schema.names:
            err.add(f"timestamp column {col!r} is missing from the source's schema "
                    f"(columns: {', '.join(schema.names)})", file=d.file, obj=f"source {src.name}", field=fld)
        elif not is_time_like(schema.field(col).type):
            err.add(f"column {col!r} is {schema.field(col).type}, not a timestamp",
                    file=d.file, obj=f"source {src.name}", field=fld)


def view_record(config: RepoConfig, d: Defined, entities: dict[str, Defined], sources: dict[str, Defined],
                 schemas: dict[str, pa.Schema | None], err: Collector,
                 rejected: dict[str, set[str]]) -> dict[str, Any] | None:
    """The view's registry record, or None after reporting why it cannot have one.

    An entity or source whose own definition was rejected is not reported again as unknown.
    """
    view = d.obj
    obj = f"feature_view {view.name}"
    ok = True
    join_keys: list[str] = []
    for e in view.entities:
        if e not in entities:
            if e not in rejected.get("entities", set()):
                err.add(f"unknown entity {e!r}", file=d.file, obj=obj, field="entities")
            ok = False
        else:
            join_keys.extend(entities[e].obj.join_keys)
    if len(set(join_keys)) != len(join_keys):
        err.add("two of the view's entities share a join key column", file=d.file, obj=obj, field="entities")
        ok = False
    if view.source not in sources:
        if view.source not in rejected.get("sources", set()):
            err.add(f"unknown source {view.source!r}", file=d.file, obj=obj, field="source")
        return None
    schema = schemas.get(view.source)
    if schema is None or not ok:
        return None
    src = sources[view.source].obj
    where = f"source {src.name} ({src.path})"
    transform = None
    if view.transform:  # keys, times and features are the transformation's output columns
        try:
            transform, schema = view_transform(view, schema, config.root, definition_files(config), obj=obj)
        except InvalidDefinition as exc:
            err.add(exc.detail, file=d.file, obj=obj, field=exc.field or "transform")
            return None
        where = f"the output of the transformation of source {src.name}"
        lost = [c for c in (src.timestamp_field, src.created_timestamp_field)
                if c is not None and (c not in schema.names or not is_time_like(schema.field(c).type))]
        if lost:
            err.add(f"the transformation's output must keep the source's timestamp column {lost[0]!r} "
                    f"(output: {', '.join(f'{f.name} {f.type}' for f in schema)})", file=d.file, obj=obj,
                    field="transform")
            ok = False
    key_dtypes: dict[str, str] = {}
    for k in join_keys:
        if k not in schema.names:
            err.add(f"join key column {k!r} is missing from {where}", file=d.file, obj=obj, field="entities")
            ok = False
            continue
        kd = key_dtype(schema.field(k).type)
        if kd is None:
            err.add(f"join key column {k!r} in {where} is {schema.field(k).type}; keys must be integers "
                    "or strings", file=d.file, obj=obj, field="entities")
            ok = False
        else:
            key_dtypes[k] = kd
    reserved = {src.timestamp_field, src.created_timestamp_field, *join_keys}
    for f in view.features:
        field_name = f"features[{f.name}]"
        if f.name in reserved:
            err.add(f"feature {f.name!r} is also a key or timestamp column", file=d.file, obj=obj, field=field_name)
            ok = False
        elif f.name not in schema.names:
            err.add(f"feature {f.name!r} is missing from {where}", file=d.file, obj=obj, field=field_name)
            ok = False
        elif not compatible(schema.field(f.name).type, f.dtype):
            err.add(f"feature {f.name!r} is declared {f.dtype} but column {f.name!r} in {where} is "
                    f"{schema.field(f.name).type}", file=d.file, obj=obj, field=f"{field_name}.dtype")
            ok = False
    if view.as_of == AS_OF_CREATED and src.created_timestamp_field is None:
        err.add(f"as_of: {AS_OF_CREATED} needs a created timestamp, and source {src.name} declares no "
                "created_timestamp_field", file=d.file, obj=obj, field="as_of")
        ok = False
    if view.aggregations and view.as_of == AS_OF_CREATED:
        err.add(f"as_of: {AS_OF_CREATED} is not supported for aggregations (the created time only breaks "
                "ties of last)", file=d.file, obj=obj, field="as_of")
        ok = False
    if not ok:
        return None
    record = view.to_dict()
    record["join_keys"] = join_keys
    record["key_dtypes"] = key_dtypes
    if transform is not None:
        record["transform"] = transform
    if view.aggregations and not resolve_aggregations(
            record, schema, reserved, where, coerce_default,
            lambda msg, fld: err.add(msg, file=d.file, obj=obj, field=fld)):
        return None
    return record
