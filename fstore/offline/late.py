"""Rule L1, late-arriving data: rows created later than their event time by more than the
view's ``max_delay`` (default: its ``freshness_sla``).

Such a value did not exist at its event time. A training set joining on event time
(``as_of: event_timestamp``, the default) hands it to entity rows that could never have
seen it: leakage, so an error. With ``as_of: created_timestamp`` the join already waits
for each value, so late rows are no leakage and the rule reports nothing (how late data
arrives is a freshness matter: ``fstore freshness``). A view with neither ``max_delay`` nor ``freshness_sla`` declares no bound and is skipped,
as is a view never ingested; a row with a null created time cannot be judged and is not
counted. The findings have the shape of ``fstore validate`` (docs/validation.md, L1).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..repo.definitions import AS_OF_CREATED
from ..repo.names import view_name
from ..times import format_duration, from_us
from .casting import as_int64
from .layout import CREATED_TS, EVENT_TS
from .store import OfflineStore

RULE = "L1"


def late_rows(offline_store: OfflineStore, view: dict[str, Any]) -> list[dict[str, Any]]:
    """One L1 finding for ``view`` (a registry record) if any of its offline rows is late,
    naming the count, the bound and the latest row; none when on time or unbounded."""
    limit = view.get("max_delay_us") or view.get("freshness_sla_us")
    if not limit or view.get("as_of") == AS_OF_CREATED:
        return []
    manifest = offline_store.manifest(view)
    if manifest is None:
        return []
    count, worst = 0, None  # worst: (delay, key values, event us)
    for b in range(manifest["buckets"]):
        data = offline_store.read_bucket(view, manifest, b, [])
        event = as_int64(data.column(EVENT_TS))
        known = data.column(CREATED_TS).is_valid().to_numpy(zero_copy_only=False)
        delay = np.where(known, as_int64(data.column(CREATED_TS), fill=0) - event, 0)
        late = np.flatnonzero(delay > limit)
        if not len(late):
            continue
        count += len(late)
        i = int(late[np.argmax(delay[late])])
        if worst is None or delay[i] > worst[0]:
            keys = {k: data.column(k)[i].as_py() for k in view["join_keys"]}
            worst = (int(delay[i]), keys, int(event[i]))
    if not count:
        return []
    assert worst is not None
    return [_finding(view, count, limit, worst)]


def _finding(view: dict[str, Any], count: int, limit: int, worst: tuple[int, dict[str, Any], int]) -> dict[str, Any]:
    bound = "its max_delay" if view.get("max_delay_us") else "its freshness_sla, as no max_delay is declared"
    delay, keys, event = worst
    key_text = ", ".join(f"{k}={v!r}" for k, v in keys.items())
    why = ("Training sets join on event time, so they use these values before they existed (leakage): "
           "declare as_of: created_timestamp on the view, or a larger max_delay if such delays are expected.")
    message = (f"{count:,} row(s) of feature view {view_name(view)} were created more than "
               f"{format_duration(limit)} after their event time ({bound}); the most delayed: {key_text}, "
               f"event {from_us(event).isoformat()}, created {format_duration(delay)} later. {why}")
    return {"rule": RULE, "severity": "error", "view": view_name(view),
            "feature": None, "message": message, "rows": count}
