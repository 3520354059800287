"""Which view versions have data in the stores (published by fstore.repo.readiness).

A version has offline data when its offline history holds a row. Online, a version is
ready once a write of its own rows has finished: a materialization, a bulk load or a push
that wrote rows (FeatureStore marks those from their results). For stores written before
readiness was published, a completed materialization record (its watermark) over
ingested rows counts too. Only the offline manifests and the online metadata database
are read: no view's LMDB database is opened, so a process held to few databases
(``online_store.max_dbs``) is not made to open more.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..errors import OnlineStoreError
from ..offline.store import OfflineStore
from ..repo.names import view_name
from ..repo.readiness import Readiness
from .store import OnlineStore


def find_readiness(views: Iterable[dict[str, Any]], offline: OfflineStore, online: OnlineStore | None,
                   known: Readiness = Readiness()) -> Readiness:
    """What the stores show now, for the view versions ``known`` does not already hold
    (``online`` None: no online store; an online store that refuses to open adds nothing)."""
    off, on = set(), set()
    for view in views:
        name = view_name(view)
        if name in known.offline and name in known.online:
            continue
        manifest = offline.manifest(view)
        has_rows = manifest is not None and manifest.get("rows", 0) > 0
        if has_rows:
            off.add(name)
        if online is not None and has_rows and name not in known.online:
            try:
                if online.watermark(name) is not None:
                    on.add(name)
            except OnlineStoreError:
                online = None  # not a store this process may read: left for a later command
    return Readiness(frozenset(off), frozenset(on))
