"""What depends on a view or source: the services, training sets and model versions that
read it (``dependents``, for ``fstore lineage``), and which changes of a plan a
production model reads (``model_impacts``, for ``fstore plan`` and ``plan --strict``).

A change *breaks* a production model when, after it, the model's service no longer
resolves to the view versions the model was trained on (the newest applied version of
each unpinned reference, whatever data it has yet: it is what the service reads once
the new version has data). A service that pins the trained versions is not broken by a
new view version; a changed source is named, and breaks only with the same rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UnknownObject
from .names import split_ref, unversioned, versioned_name, view_name
from .resolve import find_view


@dataclass
class Impact:
    """One change a production model reads; ``breaking``: the service no longer reads the
    view versions the model was trained on (``plan --strict`` refuses it)."""

    message: str
    breaking: bool
    model: str
    version: int
    service: str


def resolved_versions(state: dict[str, Any], service: str) -> dict[str, int] | None:
    """{view name: version} a service reads under ``state`` (newest applied version for an
    unpinned reference), or None when the service or a view it names is gone. A request view
    is not a view: the views its function reads are (its ``inputs``), as are those a view's
    ``on_miss`` reads, as a training set's lineage lists them (fstore.offline.datasets)."""
    svc = state.get("feature_services", {}).get(service)
    if svc is None:
        return None
    views, rviews = state.get("feature_views", {}), state.get("request_views") or {}
    refs = list(svc["features"])
    for ref in svc["features"]:
        rv = rviews.get(split_ref(ref)[0])
        refs += rv["inputs"] if rv is not None else []
    out: dict[str, int] = {}
    for i, ref in enumerate(refs):
        view_ref, feat = split_ref(ref)
        if view_ref in rviews:
            continue
        record = find_view(view_ref, views, None, feat)
        if record is None:
            return None
        out[record["name"]] = record["version"]
        if i < len(svc["features"]) and record.get("on_miss"):
            refs += record["on_miss"]["inputs"]
    return out


def request_views_changed(trained: list[dict[str, Any]], state: dict[str, Any]) -> list[str]:
    """The request views a model was trained on that ``state`` removed or changed (function
    source, request fields, inputs or features): serving would compute other values."""
    now = state.get("request_views") or {}
    out = []
    for rv in trained:
        cur = now.get(rv["name"])
        if cur is None or cur["function"] != rv["function"] or cur["request"] != rv["request"] or \
                not set(rv["features"]) <= {f["name"] for f in cur["features"]} or \
                [split_ref(r)[1] for r in cur["inputs"]] != [split_ref(r)[1] for r in rv["inputs"]]:
            out.append(rv["name"])
    return out


def production_versions(models: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(model name, record) of every version in production."""
    return [(name, rec) for name, m in sorted(models.items()) for rec in m["versions"] if rec["stage"] == "production"]


def model_impacts(old: dict[str, Any], new: dict[str, Any]) -> list[Impact]:
    """The changes from ``old`` to ``new`` that a production model reads, one per model and change."""
    out: list[Impact] = []
    for name, rec in production_versions(old.get("models", {})):
        svc = rec["service"]
        who = f"read by {name}:{rec['version']} (production) through {svc}"
        trained = {v["name"]: v["version"] for v in rec["views"]}
        changed_fns = request_views_changed(rec.get("request_views") or [], new)
        breaking = resolved_versions(new, svc) != trained or bool(changed_fns)

        def add(message: str) -> None:
            out.append(Impact(f"{message}: {who}" + ("" if breaking else
                                                    f"; {svc} still reads the trained versions"),
                              breaking, name, rec["version"], svc))
        before, after = old.get("feature_services", {}).get(svc), new.get("feature_services", {}).get(svc)
        if after is None:
            add(f"feature service {svc} removed")
        elif before != after:
            add(f"feature service {svc} changed")
        for rv in changed_fns:
            add(f"request view {rv} {'removed' if rv not in (new.get('request_views') or {}) else 'changed'}")
        for view, version in trained.items():
            key = versioned_name(view, version)
            old_rec, new_rec = old.get("feature_views", {}).get(key), new.get("feature_views", {}).get(key)
            if new_rec is None:
                add(f"{key} removed")
            elif old_rec != new_rec:
                add(f"{key} changed")
            old_views = old.get("feature_views", {})
            newer = [r["version"] for r in new.get("feature_views", {}).values()
                     if r["name"] == view and r["version"] > version and view_name(r) not in old_views]
            if newer:
                add(f"{view} v{version} -> v{max(newer)}")
            src = (new_rec or old_rec or {}).get("source")
            if src and old.get("sources", {}).get(src) != new.get("sources", {}).get(src):
                add(f"source {src} (of {key}) changed")
    return out


def _reads_view(ref_views: list[tuple[str, int | None]], view: str, version: int | None) -> bool:
    return any(n == view and (version is None or v is None or v == version) for n, v in ref_views)


def dependents(doc: dict[str, Any], target: str) -> dict[str, Any]:
    """What reads ``target``: a view (``name`` or ``name_vN``) or a source name. For a source,
    everything that reads one of its views."""
    views = doc["feature_views"]
    if target in doc["sources"]:
        names = sorted({(r["name"], r["version"]) for r in views.values() if r["source"] == target})
        out: dict[str, Any] = {"source": target, "views": [versioned_name(n, v) for n, v in names]}
        found = [_for_view(doc, n, v) for n, v in names]
    else:
        record = views.get(target)
        name, version = (record["name"], record["version"]) if record else (unversioned(target), None)
        if not any(r["name"] == name for r in views.values()):
            known = sorted({r["name"] for r in views.values()} | set(doc["sources"]))
            raise UnknownObject(f"unknown feature view or source {target!r}; known: {', '.join(known) or 'none'}")
        out = {"view": target}
        found = [_for_view(doc, name, version)]
    for key in ("services", "datasets", "models"):
        seen: dict[str, Any] = {}
        for f in found:
            for item in f[key]:
                seen.setdefault(item if isinstance(item, str) else f"{item['name']}:{item['version']}", item)
        out[key] = list(seen.values())
    return out


def _for_view(doc: dict[str, Any], name: str, version: int | None) -> dict[str, Any]:
    """The services, training sets and model versions that read view ``name`` (any version
    when ``version`` is None). A service reads the view when one of its references names it,
    or names a request view whose inputs name it."""
    services = []
    rviews = doc.get("request_views") or {}
    for svc in doc["feature_services"].values():
        refs = []
        names = list(svc["features"])
        names += [i for ref in svc["features"] for i in (rviews.get(split_ref(ref)[0]) or {}).get("inputs", [])]
        for ref in names:
            view_ref = split_ref(ref)[0]
            record = doc["feature_views"].get(view_ref)
            refs.append((record["name"], record["version"]) if record else (view_ref, None))
        if _reads_view(refs, name, version):
            services.append(svc["name"])
    datasets, models = [], []
    for model, m in sorted(doc.get("models", {}).items()):
        for rec in m["versions"]:
            if _reads_view([(v["name"], v["version"]) for v in rec["views"]], name, version):
                models.append({"name": model, "version": rec["version"], "stage": rec["stage"],
                               "service": rec["service"], "dataset": rec["dataset"]})
                if rec["dataset"] not in datasets:
                    datasets.append(rec["dataset"])
    return {"services": services, "datasets": datasets, "models": models}
