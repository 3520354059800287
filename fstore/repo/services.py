"""FeatureService: the features one model reads, with its served-feature logging and SLA."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidDefinition
from .fields import check_name, listify, parse_tags, parse_text, str_list
from .views import FeatureView

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
        for item in listify(self.features):
            if isinstance(item, FeatureView):
                refs.append(item.name)
            elif isinstance(item, (list, tuple)):
                refs.extend(item)
            else:
                refs.append(item)
        self.features = str_list(refs, obj=obj, field="features")
        if not self.features:
            raise InvalidDefinition("at least one feature is required", obj=obj, field="features")
        self.description = parse_text(self.description, obj=obj, field="description")
        self.owner = parse_text(self.owner, obj=obj, field="owner")
        self.tags = parse_tags(self.tags, obj=obj)
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
