"""Turning feature references into the view versions and columns to read.

``view:feature`` and a bare ``view`` mean the newest applied version of the view;
``view_v2:feature`` pins version 2. The resolution is done once per request
(and, for the server, once per registry version), never per row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import FeatureNameClash, UnknownObject


def find_view(view_ref: str, views: dict[str, Any]) -> dict[str, Any] | None:
    """The view record a reference names: an exact versioned name, else the newest version."""
    if view_ref in views:
        return views[view_ref]
    versions = [r for r in views.values() if r["name"] == view_ref]
    return max(versions, key=lambda r: r["version"]) if versions else None


@dataclass
class ViewRequest:
    """The features wanted from one view version, with their output column names."""

    view: dict[str, Any]
    features: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # where each output goes among all outputs

    @property
    def key(self) -> str:
        return f"{self.view['name']}_v{self.view['version']}"


def resolve(registry: dict[str, Any], features: Sequence[str] | None = None,
            feature_service: str | None = None, full_feature_names: bool = False) -> list[ViewRequest]:
    """Views and output names for a request, in the order the features were asked for.

    Output names are ``feature`` or, with full_feature_names, ``view__feature`` where
    ``view`` is spelled as in the reference. Two features with one output name raise
    FeatureNameClash.
    """
    views = registry["feature_views"]
    if (features is None) == (feature_service is None):
        raise ValueError("pass exactly one of features=[...] or feature_service=NAME")
    if feature_service is not None:
        svc = registry["feature_services"].get(feature_service)
        if svc is None:
            raise UnknownObject(f"unknown feature service {feature_service!r}; known: "
                                f"{', '.join(registry['feature_services']) or 'none'}")
        refs = list(svc["features"])
    else:
        if isinstance(features, str):
            features = [features]
        refs = list(features or [])
        if not refs:
            raise ValueError("no features requested")
    requests: dict[str, ViewRequest] = {}
    owner: dict[str, str] = {}
    for ref in refs:
        view_ref, _, feat = ref.partition(":")
        record = find_view(view_ref, views)
        if record is None:
            raise UnknownObject(f"unknown feature view {view_ref!r} in reference {ref!r}")
        names = [f["name"] for f in record["features"]]
        if feat and feat not in names:
            raise UnknownObject(f"feature view {view_ref!r} has no feature {feat!r}")
        req = requests.setdefault(f"{record['name']}_v{record['version']}", ViewRequest(record))
        for name in [feat] if feat else names:
            if name in req.features:
                continue
            out = f"{view_ref}__{name}" if full_feature_names else name
            if out in owner:
                raise FeatureNameClash(
                    f"feature {ref if feat else view_ref + ':' + name!r} and {owner[out]!r} both give the column "
                    f"{out!r}; pass full_feature_names=True or request only one")
            owner[out] = f"{view_ref}:{name}"
            req.features.append(name)
            req.outputs.append(out)
            req.positions.append(len(owner) - 1)
    return list(requests.values())
