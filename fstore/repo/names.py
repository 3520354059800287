"""How things are named: object names, versioned view names, feature references.

One definition each, because these spellings are stored (registry, offline folders,
LMDB databases, metrics labels, lineage) and must never drift between modules.
"""
from __future__ import annotations

import re
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VERSION_SUFFIX_RE = re.compile(r"^(?P<name>.+)_v(?P<version>[0-9]+)$")
#: the sections of a definitions file and of the registry, with the singular that names one object
SECTIONS: dict[str, str] = {"entities": "entity", "sources": "source", "feature_views": "feature_view",
                            "feature_services": "feature_service", "request_views": "request_view"}


def versioned_name(name: str, version: int) -> str:
    """``customer_stats`` at version 2 is ``customer_stats_v2``: its offline folder, LMDB
    database and metrics label."""
    return f"{name}_v{version}"


def view_name(view: dict[str, Any]) -> str:
    """The versioned name of a view record."""
    return versioned_name(view["name"], view["version"])


def split_ref(ref: str) -> tuple[str, str]:
    """('view' or 'view_vN', 'feature' or '') of a reference 'view[:feature]'."""
    view_ref, _, feature = ref.partition(":")
    return view_ref, feature


def unversioned(view_ref: str) -> str:
    """The view name of a reference without its version: 'customer_stats_v1' -> 'customer_stats'."""
    m = VERSION_SUFFIX_RE.match(view_ref)
    return m["name"] if m else view_ref
