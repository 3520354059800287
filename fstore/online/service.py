"""Online reads for one repository in one process: the registry snapshot, the compiled
plan of every request shape, the LMDB store, and the served-read hook.

``FeatureStore.get_online_features`` and the feature server both read through an
OnlineService, so plans are built once per (registry version, request shape) and the
served-read event of an in-process read is emitted in one place.
"""
from __future__ import annotations

import os
import time
from typing import Any, Sequence

from .._ext._online import read
from ..errors import ComputedFeatureError, EntityRowError
from ..monitoring.events import IN_PROCESS, ServedRead, hook, worker_id
from ..repo.models import model_service
from ..repo.registry import Registry, Snapshot
from ..times import now_us, to_us
from .entities import entity_rows as as_rows
from .plan import build_plan, explain_bad_rows
from .request import RequestPlan, build_request_plan, read_request
from .response import OnlinePlan, OnlineResponse
from .store import OnlineStore

MAX_PLANS = 1024  # request shapes come from clients: the cache is bounded
# a busy-wait per read that only the benchmark gate's own test sets (tests/test_gate.py), to
# prove the gate fails on a slower read path; read once, at import (docs/benchmarks.md)
SLOWDOWN_ENV = "FSTORE_GATE_SLOWDOWN_US"  # microseconds
SLOWDOWN_NS = int(float(os.environ.get(SLOWDOWN_ENV) or 0) * 1000)


class OnlineService:
    """Plans and reads over one OnlineStore, under the registry's cached snapshot."""

    def __init__(self, registry: Registry, store: OnlineStore) -> None:
        self.registry = registry
        self.store = store
        self._plans: dict[tuple[Any, ...], OnlinePlan] = {}
        self._plans_for: Snapshot | None = None
        self._last: tuple[Any, ...] | None = None

    def snapshot(self) -> Snapshot:
        """The applied registry (re-read when the file changed, looked at once a second)."""
        return self.registry.snapshot()

    def plan(self, features: Sequence[str] | None, feature_service: str | None,
             full_feature_names: bool = False) -> OnlinePlan | RequestPlan:
        """The compiled read plan of a request shape under the current registry (cached)."""
        snap = self.registry.snapshot()
        if snap is not self._plans_for:
            self._plans.clear()
            self._plans_for = snap
        key = (tuple(features) if features is not None else None, feature_service, full_feature_names)
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._plans[key] = build_request_plan(
                snap.doc, self.store, self.registry.config, features, feature_service, full_feature_names,
                snap.ready.online) or build_plan(snap.doc, self.store, features, feature_service,
                                                 full_feature_names, snap.ready.online)
        self._last = (snap, list(features) if features is not None else None, feature_service,
                      full_feature_names, plan)
        return plan

    def read(self, features: Sequence[str] | None, entity_rows: Any, feature_service: str | None = None,
             full_feature_names: bool = False, now: Any = None, request_id: str | None = None,
             model: str | None = None) -> OnlineResponse:
        """Feature vectors for ``entity_rows`` (see FeatureStore.get_online_features).

        The hot path of in-process serving: the plan of the last request shape is
        reused without a call (``plan`` keeps it in ``_last``), and the hook costs two
        flag checks when nothing listens (listeners; recorders, fstore.monitoring.events).
        """
        active, recorders = hook.active, hook.recorders
        start = time.perf_counter() if active else 0.0
        snap = self.registry.snapshot()
        if model is not None:
            feature_service = model_service(snap.doc, features, feature_service, model)
        last = self._last
        if last is not None and last[0] is snap and last[1] == features and last[2] == feature_service \
                and last[3] == full_feature_names:
            plan = last[4]
        else:
            plan = self.plan(features, feature_service, full_feature_names)
        rows = entity_rows if type(entity_rows) is list else as_rows(entity_rows)
        at = None if now is None else to_us(now)
        # the recorders (the feature log) are handed the read inside the compiled call
        served = (recorders, IN_PROCESS, self, feature_service, full_feature_names, snap.version, request_id,
                  model) if recorders else None
        try:
            if plan.__class__ is RequestPlan:  # request-time features (fstore.online.request)
                resp = read_request(read, self.store.env, plan, rows, at, served)  # type: ignore[arg-type]
                plan = plan.plan  # type: ignore[attr-defined]
            else:
                resp = read(self.store.env, plan, rows, at, OnlineResponse, False, served)
        except (ComputedFeatureError, EntityRowError):  # a request-time function's, already named
            raise
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
            raise explain_bad_rows(rows, getattr(plan, "inner", plan), exc) from None
        if active:
            # the time the read was answered as of: ``now`` when given, so a log of it is checked
            # against training at that instant (fstore skew)
            hook.emit(ServedRead(now_us() if at is None else at, hook.next_id(), IN_PROCESS, worker_id(),
                                 feature_service, None if features is None else list(features), full_feature_names, snap.version,
                                 rows, request_id, time.perf_counter() - start, plan, resp._values,
                                 resp._raw_status, resp._raw_ts, source=self, model=model))
        return resp

    def close(self) -> None:
        """Drop the plans (they hold the store's database handles) and release the store."""
        self._plans.clear()
        self._plans_for = self._last = None
        self.store.close()


def _slowed(read: Any) -> Any:
    """``read`` after a busy-wait of SLOWDOWN_NS (spinning, not sleeping: a sleeping read would
    cost no CPU). Put in place at import only when the variable is set, so the read path of
    every other process has no check for it."""
    def slowed_read(self: OnlineService, *args: Any, **kwargs: Any) -> OnlineResponse:
        end = time.perf_counter_ns() + SLOWDOWN_NS
        while time.perf_counter_ns() < end:
            pass
        return read(self, *args, **kwargs)
    return slowed_read


if SLOWDOWN_NS:
    OnlineService.read = _slowed(OnlineService.read)  # type: ignore[method-assign]
