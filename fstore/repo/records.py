"""The plain records of a definition: Entity, Source and Feature (a view's typed column)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..errors import InvalidDefinition
from .fields import DTYPES, check_name, coerce_default, parse_dtype, parse_monitoring, parse_tags, parse_text, \
    str_list, unknown_field_message

@dataclass
class Entity:
    """A thing features describe (a customer, a driver), identified by its join key columns."""

    name: str
    join_keys: list[str] = field(default_factory=list)
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        obj = f"entity {self.name}"
        check_name(self.name, obj="entity")
        self.join_keys = str_list(self.join_keys or [self.name], obj=obj, field="join_keys")
        for k in self.join_keys:
            check_name(k, obj=obj, field="join_keys")
        if len(set(self.join_keys)) != len(self.join_keys):
            raise InvalidDefinition("a join key is listed twice", obj=obj, field="join_keys")
        self.description = parse_text(self.description, obj=obj, field="description")
        self.tags = parse_tags(self.tags, obj=obj)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "join_keys": list(self.join_keys),
                "description": self.description, "tags": dict(self.tags)}


@dataclass
class Source:
    """Where a view's raw rows come from: a Parquet or CSV file, folder or glob.

    ``path`` is relative to the repository. ``format`` is inferred from the file
    suffix when absent. ``options`` are passed to the loader (e.g. a CSV delimiter).
    ``labels`` names the columns that are labels (docs/validation.md, rule L2).
    """

    name: str
    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    format: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    #: columns of this source that are labels (what a model predicts): ``fstore validate``
    #: (rule L2) flags a feature of that name and every view that reads this source
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        obj = f"source {self.name}"
        self.labels = str_list(self.labels or [], obj=obj, field="labels")
        for col in self.labels:
            check_name(col, obj=obj, field="labels")
        check_name(self.name, obj="source")
        if not isinstance(self.path, str) or not self.path.strip():
            raise InvalidDefinition("a path (file, folder or glob) is required", obj=obj, field="path")
        check_name(self.timestamp_field, obj=obj, field="timestamp_field")
        if self.created_timestamp_field is not None:
            check_name(self.created_timestamp_field, obj=obj, field="created_timestamp_field")
        if self.format is None:
            self.format = infer_format(self.path)
        if self.format not in ("parquet", "csv") and ":" not in str(self.format):
            raise InvalidDefinition(
                f"unknown format {self.format!r}; expected parquet, csv or 'module:LoaderClass'",
                obj=obj, field="format")
        if not isinstance(self.options, dict):
            raise InvalidDefinition("options must be a mapping", obj=obj, field="options")
        self.description = parse_text(self.description, obj=obj, field="description")
        self.tags = parse_tags(self.tags, obj=obj)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "timestamp_field": self.timestamp_field,
                "created_timestamp_field": self.created_timestamp_field, "format": self.format,
                "options": dict(sorted(self.options.items())), "description": self.description,
                "tags": dict(self.tags),
                **({"labels": list(self.labels)} if self.labels else {})}  # absent when unset


def infer_format(path: str) -> str:
    lower = path.lower().rstrip("/")
    if lower.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    return "parquet"


@dataclass
class Feature:
    """One typed column of a view. ``default`` answers where no row qualifies, offline and online alike."""

    name: str
    dtype: str
    default: Any = None
    description: str = ""
    monitoring: Any = None  # drift thresholds of this feature (parse_monitoring)

    def __post_init__(self) -> None:
        obj = f"feature {self.name}"
        check_name(self.name, obj="feature")
        self.dtype = parse_dtype(self.dtype, obj=obj, field="dtype")
        self.default = coerce_default(self.default, self.dtype, obj=obj)
        self.description = parse_text(self.description, obj=obj, field="description")
        self.monitoring = parse_monitoring(self.monitoring, obj=obj)

    @property
    def arrow_type(self) -> pa.DataType:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "dtype": self.dtype, "default": self.default,
               "description": self.description}
        if self.monitoring:  # absent when unset, so registries applied before it read unchanged
            out["monitoring"] = dict(self.monitoring)
        return out


def as_feature(value: Any, *, obj: str, index: int) -> Feature:
    if isinstance(value, Feature):
        return value
    if isinstance(value, dict):
        try:
            return Feature(**value)
        except TypeError as exc:
            raise InvalidDefinition(unknown_field_message(exc, "feature"), obj=obj,
                                    field=f"features[{index}]") from None
        except InvalidDefinition as exc:
            raise InvalidDefinition(exc.detail, obj=obj,
                                    field=f"features[{value.get('name', index)}].{exc.field}") from None
    raise InvalidDefinition(f"expected a feature mapping, got {value!r}", obj=obj,
                            field=f"features[{index}]")
