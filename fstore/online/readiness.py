"""Which view versions have data in the stores (published by fstore.repo.readiness).

A version has offline data when its offline history holds a row, and online data when
its LMDB database holds a row and no materialization of it is unfinished: a half-done
first materialization must not switch live reads over to a half-filled version.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..offline.store import OfflineStore
from ..repo.names import view_name
from ..repo.readiness import Readiness
from .store import OnlineStore


def find_readiness(views: Iterable[dict[str, Any]], offline: OfflineStore, online: OnlineStore | None) -> Readiness:
    """What the stores hold now, for every applied view version (``online`` None: no online store)."""
    off, on = set(), set()
    for view in views:
        name = view_name(view)
        manifest = offline.manifest(view)
        if manifest is not None and manifest.get("rows", 0) > 0:
            off.add(name)
        if online is not None and online.stats(name)["entries"] > 0 and online.job(name) is None:
            on.add(name)
    return Readiness(frozenset(off), frozenset(on))
