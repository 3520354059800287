"""FeatureView: a versioned group of features read from one source, keyed by entities,
with its optional transform, windowed aggregations and ``on_miss: compute``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import InvalidDefinition
from ..times import parse_duration
from .aggregations import split_aggregations
from .fields import check_name, listify, parse_monitoring, parse_tags, parse_text, str_list
from .names import VERSION_SUFFIX_RE, versioned_name
from .records import Entity, Source, as_feature
from .request_time import on_miss_dict, parse_on_miss
from .transforms import parse_transform

#: a view's ``as_of``: which time of a row a training set compares with the entity time
#: (docs/training-sets.md); the first is the default and is not stored in the registry
AS_OF_EVENT = "event_timestamp"
AS_OF_CREATED = "created_timestamp"
AS_OF_CHOICES: tuple[str, ...] = (AS_OF_EVENT, AS_OF_CREATED)



def parse_as_of(value: Any, *, obj: str) -> str:
    """A view's ``as_of`` (absent: event_timestamp); anything else is refused naming the choices."""
    if value is None:
        return AS_OF_EVENT
    if isinstance(value, str) and value.strip().lower() in AS_OF_CHOICES:
        return value.strip().lower()
    raise InvalidDefinition(f"as_of must be {' or '.join(AS_OF_CHOICES)}, got {value!r}", obj=obj, field="as_of")


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
        self._entity_objs = [e for e in listify(self.entities) if isinstance(e, Entity)]
        self.entities = [e.name if isinstance(e, Entity) else e for e in listify(self.entities)]
        self.entities = str_list(self.entities, obj=obj, field="entities")
        if not self.entities:
            raise InvalidDefinition("at least one entity is required", obj=obj, field="entities")
        self._source_obj = self.source if isinstance(self.source, Source) else None
        if self._source_obj is not None:
            self.source = self._source_obj.name
        if not isinstance(self.source, str) or not self.source:
            raise InvalidDefinition("a source name is required", obj=obj, field="source")
        split_aggregations(self, obj)
        self.features = [as_feature(f, obj=obj, index=i) for i, f in enumerate(listify(self.features))]
        if not self.features and not self.aggregations:
            raise InvalidDefinition("at least one feature is required", obj=obj, field="features")
        seen: set[str] = set()
        for f in self.features:
            if f.name in seen:
                raise InvalidDefinition(f"feature {f.name!r} is defined twice", obj=obj, field="features")
            seen.add(f.name)
        self.ttl = parse_duration(self.ttl, obj=obj, field="ttl")
        self.freshness_sla = parse_duration(self.freshness_sla, obj=obj, field="freshness_sla")
        self.owner = parse_text(self.owner, obj=obj, field="owner")
        self.description = parse_text(self.description, obj=obj, field="description")
        self.tags = parse_tags(self.tags, obj=obj)
        if not isinstance(self.online, bool):
            raise InvalidDefinition("online must be true or false", obj=obj, field="online")
        self.monitoring = parse_monitoring(self.monitoring, obj=obj)
        self.max_delay = parse_duration(self.max_delay, obj=obj, field="max_delay")
        self.as_of = parse_as_of(self.as_of, obj=obj)
        self.transform, self._transform_fn = parse_transform(self.transform, obj=obj)
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
                **on_miss_dict(self.on_miss),  # absent when unset
                **({"aggregations": [dict(a) for a in self.aggregations]} if self.aggregations else {})}  # as monitoring
