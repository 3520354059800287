"""The view version ``fstore backfill VIEW START END`` registers: the view as the definitions
define it now (its current transformation), numbered one past the newest applied version.

The definitions may still say the applied version (a changed transformation, which plan
refuses in place) or already the next one; both give the same record. The new version's
schema and source must be those of the version it continues, so that the old version's
rows outside the window can be copied as they are.
"""
from __future__ import annotations

from typing import Any

from ..config import RepoConfig
from ..errors import InvalidArgument, UnknownObject
from .names import versioned_name, view_name
from .reader import read_definitions
from .validation import SchemaReader, build_registry, view_schema


def backfill_versions(config: RepoConfig, current: dict[str, Any], name: str,
                      schema_of: SchemaReader) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(the newest applied version of view ``name``, the record of the version to register,
    its source record); InvalidArgument / UnknownObject with the reason when there is none."""
    applied = [r for r in current["feature_views"].values() if r["name"] == name]
    if not applied:
        known = sorted({r["name"] for r in current["feature_views"].values()})
        raise UnknownObject(f"unknown feature view {name!r} (applied views: {', '.join(known) or 'none'})")
    old = max(applied, key=lambda r: r["version"])
    contents = read_definitions(config)
    defined = [d for d in contents.feature_views if d.obj.name == name]
    if not defined:
        raise InvalidArgument(f"feature view {name!r} is not in the definitions any more: backfill recomputes "
                              "with the transformation the definitions give it")
    newest = max(defined, key=lambda d: d.obj.version)
    if newest.obj.version not in (old["version"], old["version"] + 1):
        raise InvalidArgument(f"the definitions give {name} version {newest.obj.version}; backfill registers "
                              f"version {old['version'] + 1} (the newest applied is {old['version']})")
    newest.obj.version = old["version"] + 1
    contents.feature_views = [d for d in contents.feature_views
                              if d.obj.name != name or d is newest]
    state = build_registry(config, contents, current, schema_of)
    record = state["feature_views"][versioned_name(name, old["version"] + 1)]
    if not record.get("transform"):
        raise InvalidArgument(f"feature view {name} has no transformation: there is nothing to recompute "
                              "(ingest reads its source as it is)")
    if view_schema(record) != view_schema(old):
        raise InvalidArgument(f"the definitions change the schema of {name} (entities, features or types) as "
                              f"well: rows of {view_name(old)} cannot be copied into it; give the view version "
                              f"{old['version'] + 1}, `fstore apply` and `fstore ingest` instead")
    source = state["sources"][record["source"]]
    if record["source"] != old["source"] or current["sources"].get(old["source"]) != source:
        raise InvalidArgument(f"the source of {name} changed since it was applied: `fstore apply` the source "
                              "first (a backfill changes only the transformation)")
    return old, record, source
