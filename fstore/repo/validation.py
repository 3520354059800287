"""Checking definitions against each other and against what is already applied, and
producing the registry contents to store.

Each object is checked against its source's real columns in fstore.repo.columns; here
the objects meet each other: unique names, the references of services, features of one
name from two views, and an applied view version whose schema or transformation changed.
Every problem is collected so that one ``fstore plan`` shows all of them, each naming the
file, the object and the field.
"""
from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa

from ..config import RepoConfig
from ..errors import DefinitionErrors, FeatureNameClash, FstoreError, InvalidDefinition, SchemaChangeRefused
from .columns import Collector, check_source_times, view_record
from .definitions import Source
from .names import split_ref, unversioned, view_name
from .reader import Defined, RepoContents
from .transforms import transform_change
from .request_time import check_request_time
from .resolve import check_reference, find_view, resolve

#: reads a source's columns and types (the offline engine's loaders do, see fstore.offline)
SchemaReader = Callable[[Source], pa.Schema]


def view_schema(record: dict[str, Any]) -> dict[str, Any]:
    """The part of a view version that may never change in place."""
    return {"entities": record["entities"], "join_keys": record["join_keys"],
            "key_dtypes": record["key_dtypes"],
            "features": [(f["name"], f["dtype"]) for f in record["features"]],
            # an aggregation's column, function, window or grain changes what its values mean
            **({"aggregations": record["aggregations"]} if record.get("aggregations") else {})}


def _unique(items: list[Defined], kind: str, key, err: Collector) -> dict[str, Defined]:
    out: dict[str, Defined] = {}
    for d in items:
        k = key(d.obj)
        if k in out:
            if out[k].obj.to_dict() == d.obj.to_dict():
                continue  # the same object reached twice (e.g. imported by two modules)
            err.add(f"duplicate {kind} name {k!r} (also defined in {out[k].file})",
                    file=d.file, obj=f"{kind} {k}", field="name")
            continue
        out[k] = d
    return out


def build_registry(config: RepoConfig, contents: RepoContents, current: dict[str, Any] | None,
                   schema_of: SchemaReader) -> dict[str, Any]:
    """The registry contents the definitions ask for; raises DefinitionErrors listing all problems.

    Problems met while reading the files (``contents.errors``) come first; the objects
    that did parse are still checked, unless a whole file could not be read. ``schema_of``
    reads a source's schema, so that every view is checked against its real columns.
    """
    err = Collector()
    err.errors.extend(contents.errors)
    if not contents.complete:
        raise DefinitionErrors(err.errors)
    rejected = contents.rejected
    entities = _unique(contents.entities, "entity", lambda o: o.name, err)
    sources = _unique(contents.sources, "source", lambda o: o.name, err)
    views = _unique(contents.feature_views, "feature_view", lambda o: o.versioned_name, err)
    services = _unique(contents.feature_services, "feature_service", lambda o: o.name, err)
    old_views: dict[str, Any] = dict((current or {}).get("feature_views", {}))
    old_entities: dict[str, Any] = (current or {}).get("entities", {})
    old_sources: dict[str, Any] = (current or {}).get("sources", {})

    schemas: dict[str, pa.Schema | None] = {}
    for name, d in sources.items():
        try:
            schemas[name] = schema_of(d.obj)
        except FstoreError as exc:  # the loader names the field at fault (path or format)
            definition = isinstance(exc, InvalidDefinition)
            err.add(exc.detail if definition else str(exc), file=d.file, obj=f"source {name}",
                    field=(exc.field if definition else None) or "path")
            schemas[name] = None
            continue
        check_source_times(d, schemas[name], err)

    new_views: dict[str, Any] = {}
    for vname, d in views.items():
        record = view_record(config, d, entities, sources, schemas, err, rejected)
        if record is None:
            continue
        old = old_views.get(vname)
        if old is not None and view_schema(old) != view_schema(record):
            err.add(f"the schema of applied version {d.obj.version} changed "
                    f"({_schema_diff(view_schema(old), view_schema(record))}); "
                    f"give the view a new version (version: {d.obj.version + 1}) instead",
                    file=d.file, obj=f"feature_view {d.obj.name}", field="version", cls=SchemaChangeRefused)
            continue
        changed = None if old is None else transform_change(old.get("transform"), record.get("transform"))
        if changed:  # its stored history was computed by the old transformation
            err.add(f"the transformation of applied version {d.obj.version} changed ({changed}); recompute "
                    f"history with `fstore backfill {d.obj.name} START END` (registers version "
                    f"{d.obj.version + 1}) or give the view a new version (version: {d.obj.version + 1})",
                    file=d.file, obj=f"feature_view {d.obj.name}", field="transform", cls=SchemaChangeRefused)
            continue
        new_views[vname] = record
    all_views = {**old_views, **new_views}
    # a view that failed validation is still defined: its own error is reported above,
    # so a service naming it must not also be told the view does not exist
    referable = {**all_views, **{v: d.obj.to_dict() for v, d in views.items() if v not in new_views}}

    request_views = check_request_time(config, contents, referable, new_views, err)
    for sname, d in services.items():
        problems = [check_reference(ref, referable, request_views) for ref in d.obj.features]
        for i, (ref, problem) in enumerate(zip(d.obj.features, problems)):
            if problem and _ref_view_name(ref) not in rejected.get("feature_views", set()) | \
                    rejected.get("request_views", set()) | {d.obj.name for d in contents.request_views}:
                err.add(problem, file=d.file, obj=f"feature_service {sname}", field=f"features[{i}]")
        if not any(problems):
            _check_name_clash(d, referable, err, request_views)

    if err.errors:
        raise DefinitionErrors(err.errors)

    # keep what old view versions still need
    ent_out = {n: d.obj.to_dict() for n, d in entities.items()}
    src_out = {n: d.obj.to_dict() for n, d in sources.items()}
    for rec in all_views.values():
        for e in rec["entities"]:
            if e not in ent_out and e in old_entities:
                ent_out[e] = old_entities[e]
        if rec["source"] not in src_out and rec["source"] in old_sources:
            src_out[rec["source"]] = old_sources[rec["source"]]
    return {
        "project": config.project,
        "entities": dict(sorted(ent_out.items())),
        "sources": dict(sorted(src_out.items())),
        "feature_views": dict(sorted(all_views.items())),
        "feature_services": {n: d.obj.to_dict() for n, d in sorted(services.items())},
        **({"request_views": request_views} if request_views else {}),  # absent when none
    }


def _check_name_clash(d: Defined, views: dict[str, Any], err: Collector,
                      request_views: dict[str, Any] | None = None) -> None:
    """Two views giving a feature of one name make a service that every read would refuse:
    refused here instead, unless the service reads with full feature names."""
    svc = d.obj
    try:
        resolve({"feature_views": views, "feature_services": {svc.name: svc.to_dict()},
                 "request_views": request_views or {}}, feature_service=svc.name, computed=[])
    except FeatureNameClash as exc:
        first, second = exc.refs
        view_a, view_b = (split_ref(r)[0] if split_ref(r)[0] in (request_views or {}) else
                          view_name(find_view(split_ref(r)[0], views)) for r in exc.refs)  # type: ignore[arg-type]
        err.add(f"{first!r} (view {view_a}) and {second!r} (view {view_b}) both give the feature column "
                f"{exc.column!r}; set full_feature_names: true on the service (columns named view__feature), "
                "or keep only one of them", file=d.file, obj=f"feature_service {svc.name}", field="features")


def _ref_view_name(ref: str) -> str:
    """The view name of a reference, without its version: 'customer_stats_v1:x' -> 'customer_stats'."""
    return unversioned(split_ref(ref)[0])


def _schema_diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = []
    for key in ("entities", "join_keys", "key_dtypes"):
        if old[key] != new[key]:
            parts.append(f"{key}: {old[key]} -> {new[key]}")
    of, nf = dict(old["features"]), dict(new["features"])
    for name in of.keys() - nf.keys():
        parts.append(f"feature {name} removed")
    for name in nf.keys() - of.keys():
        parts.append(f"feature {name} added")
    for name in of.keys() & nf.keys():
        if of[name] != nf[name]:
            parts.append(f"feature {name}: {of[name]} -> {nf[name]}")
    if not parts and old["features"] != new["features"]:
        parts.append("feature order changed")
    if not parts and old.get("aggregations") != new.get("aggregations"):
        parts.append("aggregations changed (column, function, window or tile)")
    return "; ".join(parts)
