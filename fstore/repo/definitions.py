"""Feature definitions as code: Entity, Source, Feature, FeatureView, FeatureService.

The same objects come from YAML (``features/*.yaml``) or Python (``features/*.py``);
both are normalised to one canonical dictionary (``to_dict``), so the two forms give
byte-identical registry contents. Durations are stored as whole microseconds, dtypes by
their canonical name.

This module is the one place callers import the definitions from; each concept lives in
a module of its own, lowest first: ``fields`` (checks of one field: names, dtypes,
defaults, tags, drift thresholds), ``records`` (Entity, Source, Feature), ``views``
(FeatureView) and ``services`` (FeatureService and its logging and SLA). Request views
and a view's ``on_miss`` are in ``request_time``, windowed aggregations in
``aggregations``; both build on ``fields`` and ``records``, never on this module.
"""
from __future__ import annotations

from .fields import (AMBIGUOUS_DTYPES, DTYPE_ALIASES, DTYPES, MONITORING_DEFAULTS, check_name, coerce_default,
                     parse_dtype, parse_monitoring)
from .names import SECTIONS
from .records import Entity, Feature, Source, infer_format
from .services import SERVICE_LOGGING_KEYS, SERVICE_SLA_KEYS, FeatureService, logged_services, service_sample_rate
from .views import AS_OF_CHOICES, AS_OF_CREATED, AS_OF_EVENT, FeatureView, parse_as_of

__all__ = ["AMBIGUOUS_DTYPES", "AS_OF_CHOICES", "AS_OF_CREATED", "AS_OF_EVENT", "CLASSES", "DTYPES", "DTYPE_ALIASES",
           "Entity", "Feature", "FeatureService", "FeatureView", "MONITORING_DEFAULTS", "SERVICE_LOGGING_KEYS",
           "SERVICE_SLA_KEYS", "Source", "check_name", "coerce_default", "infer_format", "logged_services",
           "parse_as_of", "parse_dtype", "parse_monitoring", "service_sample_rate"]

#: the class of each section's objects (names in fstore.repo.names.SECTIONS)
CLASSES: dict[str, type] = dict(zip(SECTIONS, (Entity, Source, FeatureView, FeatureService)))
