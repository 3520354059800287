"""Turning feature references into the view versions and columns to read.

``view:feature`` and a bare ``view`` mean the newest applied version of the view;
``view_v2:feature`` pins version 2. The resolution is done once per request
(and, for the server, once per registry version), never per row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import BadRequest, FeatureNameClash, InvalidArgument, UnknownObject
from .names import split_ref, view_name
from .readiness import live_version


def find_view(view_ref: str, views: dict[str, Any], ready: frozenset[str] | None = None,
              feature: str = "") -> dict[str, Any] | None:
    """The view record a reference names: an exact versioned name, else the newest version
    in ``ready`` (the versions with data for the reading path; see fstore.repo.readiness),
    else the newest version."""
    if view_ref in views:
        return views[view_ref]
    return live_version(view_ref, views, ready, feature)


def check_reference(ref: str, views: dict[str, Any], request_views: dict[str, Any] | None = None) -> str | None:
    """None when ``ref`` ('view', 'view:feature', 'view_vN[:feature]', or a request view's
    'name[:feature]') names something applied, else what is wrong with it."""
    view_ref, feat = split_ref(ref)
    if request_views and view_ref in request_views:
        if feat and feat not in {f["name"] for f in request_views[view_ref]["features"]}:
            return f"request view {view_ref!r} has no feature {feat!r}"
        return None
    record = find_view(view_ref, views)
    if record is None:
        return f"unknown feature view {view_ref!r} in reference {ref!r}"
    if feat and feat not in {f["name"] for f in record["features"]}:
        return f"feature view {view_ref!r} has no feature {feat!r}"
    return None


def require_one(features: Any, feature_service: Any, names: tuple[str, str] = ("features", "feature_service")) -> None:
    """A request names its features one way: a list of references or a feature service.

    BadRequest (an InvalidArgument) otherwise, the same in process, remotely and on the
    command line; ``names`` spells the two arguments as the caller knows them."""
    if (features is None) == (feature_service is None):
        raise BadRequest(f"give exactly one of {names[0]} or {names[1]}", names[0])


@dataclass
class ViewRequest:
    """The features wanted from one view version, with their output column names."""

    view: dict[str, Any]
    features: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # where each output goes among all outputs

    @property
    def key(self) -> str:
        return view_name(self.view)


def service_refs(registry: dict[str, Any], feature_service: str) -> list[str]:
    """The references of an applied feature service; UnknownObject names the known ones."""
    svc = registry["feature_services"].get(feature_service)
    if svc is None:
        raise UnknownObject(f"unknown feature service {feature_service!r}; known: "
                            f"{', '.join(registry['feature_services']) or 'none'}")
    return list(svc["features"])


def resolve(registry: dict[str, Any], features: Sequence[str] | None = None,
            feature_service: str | None = None, full_feature_names: bool = False,
            ready: frozenset[str] | None = None, computed: list[ViewRequest] | None = None) -> list[ViewRequest]:
    """Views and output names for a request, in the order the features were asked for.

    An unpinned reference reads the newest version in ``ready`` (the versions that have
    data for this path: offline for training sets, online for serving), else the newest.

    References to request views (features computed at read time, fstore.repo.request_time)
    are put in ``computed``, one ViewRequest per request view, their positions among all
    outputs; a caller that passes no list sees only the stored features (its positions
    count those alone).

    Output names are ``feature`` or, with full_feature_names, ``view__feature`` where
    ``view`` is spelled as in the reference. Two features with one output name raise
    FeatureNameClash.
    """
    views = registry["feature_views"]
    require_one(features, feature_service)
    if feature_service is not None:
        refs = service_refs(registry, feature_service)
        # a service that asks for full names always reads with them (its columns are part of its contract)
        full_feature_names = full_feature_names or registry["feature_services"][feature_service].get(
            "full_feature_names", False)
    else:
        refs = [features] if isinstance(features, str) else list(features or [])
        if not refs:
            raise InvalidArgument("no features requested")
    requests: dict[str, ViewRequest] = {}
    owner: dict[str, str] = {}
    rviews = registry.get("request_views") or {}
    for ref in refs:
        problem = check_reference(ref, views, rviews)
        if problem:
            raise UnknownObject(problem)
        view_ref, feat = split_ref(ref)
        if view_ref in rviews:
            if computed is None:
                continue
            record = rviews[view_ref]
            req = requests.setdefault("\0" + view_ref, ViewRequest(record))  # not a versioned name
        else:
            record = find_view(view_ref, views, ready, feat)
            assert record is not None
            req = requests.setdefault(view_name(record), ViewRequest(record))
        for name in [feat] if feat else [f["name"] for f in record["features"]]:
            if name in req.features:
                continue
            out = f"{view_ref}__{name}" if full_feature_names else name
            if out in owner:
                this = ref if feat else f"{view_ref}:{name}"
                clash = FeatureNameClash(f"feature {this!r} and {owner[out]!r} both give the column "
                                         f"{out!r}; pass full_feature_names=True or request only one")
                clash.column, clash.refs = out, (owner[out], this)
                raise clash
            owner[out] = f"{view_ref}:{name}"
            req.features.append(name)
            req.outputs.append(out)
            req.positions.append(len(owner) - 1)
    if computed is not None:
        computed.extend(r for k, r in requests.items() if k.startswith("\0"))
    return [r for k, r in requests.items() if not k.startswith("\0")]
