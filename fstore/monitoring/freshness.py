"""``fstore freshness``: is each view's newest data within its ``freshness_sla``?

For each view name with a ``freshness_sla``, two checks, each on the version its path
reads (an unpinned reference's version: fstore.repo.readiness):

- ``online`` (views with ``online: true``): the newest data online is the newer of the
  materialization watermark and the newest event time ever pushed (stored by every push);
- ``offline``: the newest event time ingested (the largest event time of the ingest
  log's runs, fstore.offline.log).

A check is in breach when that newest time is older than the SLA, or when there is no
data at all (the rule of fstore.online.status.freshness_breached, which the server's
``fstore_freshness_breached`` uses too). A view without an SLA is listed (with
``all_views``) and never in breach.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..offline.store import OfflineStore
from ..online.status import freshness_breached, online_newest
from ..online.store import OnlineStore
from ..repo.names import view_name
from ..repo.readiness import Readiness
from ..repo.resolve import find_view
from ..times import format_duration, from_us, now_us

STORES = ("online", "offline")


@dataclass
class FreshnessResult:
    now_us: int
    checks: list[dict[str, Any]]

    @property
    def breached(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c["breached"]]

    def to_json(self, all_views: bool = False) -> dict[str, Any]:
        return {"now": from_us(self.now_us).isoformat(), "breached": len(self.breached),
                "views": self.checks if all_views else self.breached}


def offline_newest(offline: OfflineStore, view: dict[str, Any]) -> int | None:
    """The newest event time ingested into the view's offline store (None: nothing)."""
    manifest = offline.manifest(view)
    if not manifest:
        return None
    return max((r.max_us for r in offline.log(view, manifest) if r.max_us is not None), default=None)


def _online_newest(online: OnlineStore, view: dict[str, Any]) -> int | None:
    if not online.exists():
        return None
    name = view_name(view)
    with online.read() as txn:
        return online_newest(online.watermark(name, txn), online.pushed(name, txn))


def _check(view: dict[str, Any], store: str, newest: int | None, now: int) -> dict[str, Any]:
    sla = view.get("freshness_sla_us")
    age = None if newest is None else max(0.0, (now - newest) / 1e6)
    return {"view": view_name(view), "name": view["name"], "store": store,
            "freshness_sla": format_duration(sla) if sla else None,
            "freshness_sla_seconds": None if sla is None else sla / 1e6,
            "newest_event": None if newest is None else from_us(newest).isoformat(),
            "age_seconds": age, "breached": freshness_breached(sla, newest, now)}


def freshness(registry: dict[str, Any], ready: Readiness, offline: OfflineStore, online: OnlineStore,
              now: int | None = None) -> FreshnessResult:
    """Every view name's online and offline check (module docstring), in registry order."""
    now = now_us() if now is None else now
    views = registry["feature_views"]
    checks = []
    for name in dict.fromkeys(v["name"] for v in views.values()):
        for store in STORES:
            view = find_view(name, views, ready.for_path(store))
            if view is None or (store == "online" and not view.get("online", True)):
                continue
            newest = _online_newest(online, view) if store == "online" else offline_newest(offline, view)
            checks.append(_check(view, store, newest, now))
    return FreshnessResult(now, checks)
