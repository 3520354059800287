"""Feature definitions as code: Entity, Source, Feature, FeatureView, FeatureService.

The same objects come from YAML (``features/*.yaml``) or Python (``features/*.py``);
both are normalised here to one canonical dictionary (``to_dict``), so the two forms
give byte-identical registry contents. Durations are stored as whole microseconds,
dtypes by their canonical name.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa

from ..errors import InvalidDefinition
from ..times import parse_duration
from .aggregations import split_aggregations
from .names import NAME_RE, SECTIONS, VERSION_SUFFIX_RE, versioned_name
from .transforms import parse_transform

#: canonical dtype name -> Arrow type of the stored column
DTYPES: dict[str, pa.DataType] = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "bytes": pa.binary(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
#: other spellings taken for a dtype: each means one thing wherever a user may have met it
#: (docs/repository.md lists them)
DTYPE_ALIASES: dict[str, str] = {
    "long": "int64", "double": "float64", "str": "string", "utf8": "string", "boolean": "bool",
    "binary": "bytes", "datetime": "timestamp",
}
#: spellings refused because they mean a different width in different places: why, and the choices
AMBIGUOUS_DTYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "int": ("32 bits in SQL, C and Java, 64 in Python and NumPy", ("int32", "int64")),
    "integer": ("32 bits in SQL, 64 in Python", ("int32", "int64")),
    "float": ("32 bits in Arrow and C, 64 in Python and NumPy", ("float32", "float64")),
}
#: drift thresholds (``monitoring:`` of a view or a feature; docs/monitoring.md, Drift): a PSI at
#: or above psi_warn is a warning, at or above psi_alert an alert; a current null rate above
#: max_null_rate is an alert (None: the null rate is reported, never judged)
MONITORING_DEFAULTS: dict[str, float | None] = {"psi_warn": 0.1, "psi_alert": 0.25, "max_null_rate": None}
#: a view's ``as_of``: which time of a row a training set compares with the entity time
#: (docs/training-sets.md); the first is the default and is not stored in the registry
AS_OF_EVENT = "event_timestamp"
AS_OF_CREATED = "created_timestamp"
AS_OF_CHOICES: tuple[str, ...] = (AS_OF_EVENT, AS_OF_CREATED)


def parse_dtype(value: Any, *, obj: str, field: str) -> str:
    """Canonical dtype name for ``value`` (case-insensitive, aliases taken); raises naming the
    field if unknown, or if it is a spelling whose width depends on where one learned it."""
    if isinstance(value, str):
        name = value.strip().lower()
        if name in AMBIGUOUS_DTYPES:
            why, choices = AMBIGUOUS_DTYPES[name]
            raise InvalidDefinition(f"dtype {value!r} is ambiguous ({why}): write {' or '.join(choices)}",
                                    obj=obj, field=field)
        name = DTYPE_ALIASES.get(name, name)
        if name in DTYPES:
            return name
    raise InvalidDefinition(
        f"unknown dtype {value!r}; expected one of {', '.join(DTYPES)}", obj=obj, field=field)


def check_name(name: Any, *, obj: str, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidDefinition(
            f"{name!r} is not a valid name (letters, digits and _, not starting with a digit)",
            obj=obj, field=field)
    return name


def _str_list(value: Any, *, obj: str, field: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidDefinition(f"expected a list of names, got {value!r}", obj=obj, field=field)
    return list(value)


def _tags(value: Any, *, obj: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinition(f"tags must be a mapping, got {value!r}", obj=obj, field="tags")
    return {str(k): str(v) for k, v in sorted(value.items())}


def _text(value: Any, *, obj: str, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidDefinition(f"expected text, got {value!r}", obj=obj, field=field)
    return value


def parse_monitoring(value: Any, *, obj: str, field: str = "monitoring") -> dict[str, float | None]:
    """The drift thresholds a view or feature sets (only those it sets; the rest come from
    the view, then MONITORING_DEFAULTS): non-negative numbers, a rate at most 1."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinition(f"expected a mapping of {', '.join(MONITORING_DEFAULTS)}, got {value!r}",
                                obj=obj, field=field)
    out: dict[str, float | None] = {}
    for key, v in value.items():
        if key not in MONITORING_DEFAULTS:
            raise InvalidDefinition(f"unknown key {key!r}; expected {', '.join(MONITORING_DEFAULTS)}",
                                    obj=obj, field=f"{field}.{key}")
        if v is None and key == "max_null_rate":
            out[key] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or (key == "max_null_rate" and v > 1):
            limit = "a number from 0 to 1" if key == "max_null_rate" else "a number >= 0"
            raise InvalidDefinition(f"{key} must be {limit}, got {v!r}", obj=obj, field=f"{field}.{key}")
        out[key] = float(v)
    if out.get("psi_warn", 0.0) > out.get("psi_alert", float("inf")):  # type: ignore[operator]
        raise InvalidDefinition(f"psi_warn ({out['psi_warn']}) is above psi_alert ({out['psi_alert']})",
                                obj=obj, field=f"{field}.psi_warn")
    return dict(sorted(out.items()))


def parse_as_of(value: Any, *, obj: str) -> str:
    """A view's ``as_of`` (absent: event_timestamp); anything else is refused naming the choices."""
    if value is None:
        return AS_OF_EVENT
    if isinstance(value, str) and value.strip().lower() in AS_OF_CHOICES:
        return value.strip().lower()
    raise InvalidDefinition(f"as_of must be {' or '.join(AS_OF_CHOICES)}, got {value!r}", obj=obj, field="as_of")


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
        self.join_keys = _str_list(self.join_keys or [self.name], obj=obj, field="join_keys")
        for k in self.join_keys:
            check_name(k, obj=obj, field="join_keys")
        if len(set(self.join_keys)) != len(self.join_keys):
            raise InvalidDefinition("a join key is listed twice", obj=obj, field="join_keys")
        self.description = _text(self.description, obj=obj, field="description")
        self.tags = _tags(self.tags, obj=obj)

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
        self.labels = _str_list(self.labels or [], obj=obj, field="labels")
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
        self.description = _text(self.description, obj=obj, field="description")
        self.tags = _tags(self.tags, obj=obj)

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
        self.description = _text(self.description, obj=obj, field="description")
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


def coerce_default(value: Any, dtype: str, *, obj: str) -> Any:
    """A JSON-safe default of the feature's type (timestamps as ISO 8601 UTC)."""
    if value is None:
        return None
    bad = InvalidDefinition(f"default {value!r} is not a {dtype}", obj=obj, field="default")
    if dtype in ("int32", "int64"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise bad
        return value
    if dtype in ("float32", "float64"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if dtype == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if dtype == "string":
        if not isinstance(value, str):
            raise bad
        return value
    if dtype == "bytes":
        if isinstance(value, str):
            return value
        raise bad
    if dtype == "timestamp":
        try:
            ts = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise bad from None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.timezone.utc)
        return ts.astimezone(dt.timezone.utc).isoformat()
    raise bad


def _as_feature(value: Any, *, obj: str, index: int) -> Feature:
    if isinstance(value, Feature):
        return value
    if isinstance(value, dict):
        try:
            return Feature(**value)
        except TypeError as exc:
            raise InvalidDefinition(_unknown_field_message(exc, "feature"), obj=obj,
                                    field=f"features[{index}]") from None
        except InvalidDefinition as exc:
            raise InvalidDefinition(exc.detail, obj=obj,
                                    field=f"features[{value.get('name', index)}].{exc.field}") from None
    raise InvalidDefinition(f"expected a feature mapping, got {value!r}", obj=obj,
                            field=f"features[{index}]")


def _unknown_field_message(exc: TypeError, kind: str) -> str:
    m = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
    if m:
        return f"unknown field {m[1]!r} in {kind}"
    m = re.search(r"missing \d+ required positional argument[s]?: (.+)$", str(exc))
    if m:
        return f"missing required field(s) {m[1]} in {kind}"
    return str(exc)


@dataclass
class FeatureView:
    """A versioned group of features read from one source, keyed by one or more entities.

    ``customer_stats`` at version 2 is stored as ``customer_stats_v2``; an applied
    version's schema (entities, feature names and dtypes) never changes in place.
    ``ttl``: a row older than ``ttl`` relative to the entity timestamp is not used
    (absent or 0: no limit). ``as_of: created_timestamp`` makes training sets use only the
    rows created by the entity time (what serving could have known then); ``max_delay``
    bounds created - event time before rule L1 calls a row late (default: freshness_sla).
    """

    name: str
    entities: list[Any] = field(default_factory=list)
    source: Any = None
    features: list[Any] = field(default_factory=list)
    version: int = 1
    ttl: Any = None
    owner: str = ""
    freshness_sla: Any = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    online: bool = True
    monitoring: Any = None  # drift thresholds of every feature of the view (parse_monitoring)
    max_delay: Any = None  # the latest a row may be created after its event time (rule L1)
    as_of: Any = None  # AS_OF_CHOICES; None means AS_OF_EVENT
    transform: Any = None  # {sql: ...}, {python: name} or a function (fstore.repo.transforms)
    on_miss: Any = None  # {compute: fn, request: {...}, inputs: [...]} (fstore.repo.request_time)
    aggregations: Any = None  # windowed aggregations (fstore.repo.aggregations); None: a plain view

    def __post_init__(self) -> None:
        obj = f"feature_view {self.name}"
        check_name(self.name, obj="feature_view")
        if VERSION_SUFFIX_RE.match(self.name):
            raise InvalidDefinition("a view name may not end in _v<N>: set 'version' instead",
                                    obj=obj, field="name")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise InvalidDefinition(f"version must be a positive integer, got {self.version!r}",
                                    obj=obj, field="version")
        self._entity_objs = [e for e in _listify(self.entities) if isinstance(e, Entity)]
        self.entities = [e.name if isinstance(e, Entity) else e for e in _listify(self.entities)]
        self.entities = _str_list(self.entities, obj=obj, field="entities")
        if not self.entities:
            raise InvalidDefinition("at least one entity is required", obj=obj, field="entities")
        self._source_obj = self.source if isinstance(self.source, Source) else None
        if self._source_obj is not None:
            self.source = self._source_obj.name
        if not isinstance(self.source, str) or not self.source:
            raise InvalidDefinition("a source name is required", obj=obj, field="source")
        split_aggregations(self, obj)
        self.features = [_as_feature(f, obj=obj, index=i) for i, f in enumerate(_listify(self.features))]
        if not self.features and not self.aggregations:
            raise InvalidDefinition("at least one feature is required", obj=obj, field="features")
        seen: set[str] = set()
        for f in self.features:
            if f.name in seen:
                raise InvalidDefinition(f"feature {f.name!r} is defined twice", obj=obj, field="features")
            seen.add(f.name)
        self.ttl = parse_duration(self.ttl, obj=obj, field="ttl")
        self.freshness_sla = parse_duration(self.freshness_sla, obj=obj, field="freshness_sla")
        self.owner = _text(self.owner, obj=obj, field="owner")
        self.description = _text(self.description, obj=obj, field="description")
        self.tags = _tags(self.tags, obj=obj)
        if not isinstance(self.online, bool):
            raise InvalidDefinition("online must be true or false", obj=obj, field="online")
        self.monitoring = parse_monitoring(self.monitoring, obj=obj)
        self.max_delay = parse_duration(self.max_delay, obj=obj, field="max_delay")
        self.as_of = parse_as_of(self.as_of, obj=obj)
        self.transform, self._transform_fn = parse_transform(self.transform, obj=obj)
        from .request_time import parse_on_miss  # it builds on this module
        self.on_miss = parse_on_miss(self.on_miss, self.features, obj=obj)

    @property
    def versioned_name(self) -> str:
        return versioned_name(self.name, self.version)

    def __getitem__(self, names: Iterable[str]) -> list[str]:
        """``view[["a", "b"]]`` gives the references ``["view:a", "view:b"]`` for a service."""
        return [f"{self.name}:{n}" for n in ([names] if isinstance(names, str) else names)]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "entities": list(self.entities),
                "source": self.source, "features": [f.to_dict() for f in self.features],
                "ttl_us": self.ttl, "owner": self.owner, "freshness_sla_us": self.freshness_sla,
                "description": self.description, "tags": dict(self.tags), "online": self.online,
                **({"monitoring": dict(self.monitoring)} if self.monitoring else {}),  # absent when unset
                **({"max_delay_us": self.max_delay} if self.max_delay else {}),  # as monitoring
                **({"as_of": self.as_of} if self.as_of != AS_OF_EVENT else {}),  # absent when the default
                **({"transform": dict(self.transform)} if self.transform else {}),  # absent when unset
                **_on_miss_dict(self.on_miss),  # absent when unset
                **({"aggregations": [dict(a) for a in self.aggregations]} if self.aggregations else {})}  # as monitoring


def _on_miss_dict(on_miss: Any) -> dict[str, Any]:
    from .request_time import on_miss_dict  # it builds on this module
    return on_miss_dict(on_miss)


@dataclass
class FeatureService:
    """The features one model reads: ``view:feature`` references or whole views.

    An unversioned reference means the newest applied version at query time;
    ``view_v1:feature`` pins a version. Two views giving a feature of the same name are
    refused at plan time unless ``full_feature_names`` is true: then every read of the
    service names its columns ``view__feature``.
    """

    name: str
    features: list[Any] = field(default_factory=list)
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    full_feature_names: bool = False
    #: served-feature logging of this service's reads: ``{sample_rate: 0..1}`` (None: fstore.yaml's
    #: monitoring.logging default decides); see ``service_sample_rate`` and docs/monitoring.md
    logging: dict[str, Any] | None = None
    #: the serving SLA ``fstore bench`` checks by default: ``{p99_ms, min_rps}`` (either or both;
    #: docs/benchmarks.md, "fstore bench")
    sla: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        obj = f"feature_service {self.name}"
        self.logging = _service_logging(self.logging, obj=obj)
        self.sla = _service_sla(self.sla, obj=obj)
        check_name(self.name, obj="feature_service")
        refs: list[str] = []
        for item in _listify(self.features):
            if isinstance(item, FeatureView):
                refs.append(item.name)
            elif isinstance(item, (list, tuple)):
                refs.extend(item)
            else:
                refs.append(item)
        self.features = _str_list(refs, obj=obj, field="features")
        if not self.features:
            raise InvalidDefinition("at least one feature is required", obj=obj, field="features")
        self.description = _text(self.description, obj=obj, field="description")
        self.owner = _text(self.owner, obj=obj, field="owner")
        self.tags = _tags(self.tags, obj=obj)
        if not isinstance(self.full_feature_names, bool):
            raise InvalidDefinition("full_feature_names must be true or false", obj=obj, field="full_feature_names")

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "features": list(self.features), "description": self.description,
               "owner": self.owner, "tags": dict(self.tags)}
        if self.full_feature_names:  # absent when false, so registries applied before it read unchanged
            out["full_feature_names"] = True
        if self.logging is not None:  # absent when not set, as full_feature_names
            out["logging"] = dict(self.logging)
        if self.sla is not None:  # absent when not set, as logging
            out["sla"] = dict(self.sla)
        return out


#: the keys of a service's ``logging`` mapping
SERVICE_LOGGING_KEYS = ("sample_rate",)


def _service_logging(value: Any, *, obj: str) -> dict[str, Any] | None:
    """A service's ``logging`` mapping checked: only known keys, a sample_rate from 0 to 1."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidDefinition(f"expected a mapping such as {{sample_rate: 1.0}}, got {value!r}",
                                obj=obj, field="logging")
    for key in value:
        if key not in SERVICE_LOGGING_KEYS:
            raise InvalidDefinition(f"unknown setting {key!r}; known: {', '.join(SERVICE_LOGGING_KEYS)}",
                                    obj=obj, field=f"logging.{key}")
    rate = value.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1):
        raise InvalidDefinition(f"sample_rate must be a number from 0 to 1, got {rate!r}",
                                obj=obj, field="logging.sample_rate")
    return {} if rate is None else {"sample_rate": float(rate)}


#: the keys of a service's ``sla`` mapping: the p99 latency bound and the throughput floor
SERVICE_SLA_KEYS = ("p99_ms", "min_rps")


def _service_sla(value: Any, *, obj: str) -> dict[str, Any] | None:
    """A service's ``sla`` mapping checked: known keys, each a positive number, at least one."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise InvalidDefinition(f"expected a mapping such as {{p99_ms: 2, min_rps: 10000}}, got {value!r}",
                                obj=obj, field="sla")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if key not in SERVICE_SLA_KEYS:
            raise InvalidDefinition(f"unknown setting {key!r}; known: {', '.join(SERVICE_SLA_KEYS)}",
                                    obj=obj, field=f"sla.{key}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
            raise InvalidDefinition(f"{key} must be a positive number, got {v!r}", obj=obj, field=f"sla.{key}")
        out[key] = v
    return {k: out[k] for k in SERVICE_SLA_KEYS if k in out}


def service_sample_rate(service: dict[str, Any], default: float | None) -> float:
    """The share of a service's reads that are logged (0: off), from its registry record.

    The service's own ``logging.sample_rate`` wins; a service with ``logging: {}`` or no
    ``logging`` takes ``default`` (fstore.yaml's ``monitoring.logging.sample_rate``); with
    no default, ``logging: {}`` means every read and no ``logging`` means none."""
    own = service.get("logging")
    if own is not None and own.get("sample_rate") is not None:
        return float(own["sample_rate"])
    if default is not None:
        return float(default)
    return 1.0 if own is not None else 0.0


def logged_services(snapshot: Any, config: Any) -> dict[str, float]:
    """Service name -> sample rate of every applied service whose reads are logged."""
    default = config.monitoring["logging"]["sample_rate"]
    rates = {name: service_sample_rate(svc, default) for name, svc in snapshot.services.items()}
    return {name: rate for name, rate in rates.items() if rate > 0}


def _listify(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


#: the class of each section's objects (names in fstore.repo.names.SECTIONS)
CLASSES: dict[str, type] = dict(zip(SECTIONS, (Entity, Source, FeatureView, FeatureService)))
