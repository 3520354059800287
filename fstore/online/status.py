"""A view version's state across both stores, as ``fstore describe`` and ``fstore list`` show it.

The keys (every time ISO 8601 UTC, or None when it never happened):

- ``view`` (the versioned name), ``name``, ``version``;
- ``watermark``: every row ingested up to the consumed run with an event time at or before
  it is online (fstore.online.consumed);
- ``last_materialized``: when the last materialization of the view finished; ``last_end``:
  the END it was given;
- ``online_rows``: entities stored online; ``offline_rows``: rows in the offline store;
- ``last_ingest``: when the newest run of the ingest log was written (an ingest, or a push
  with ``offline=True``);
- ``pending_rows``: rows of the ingest log that no materialization has consumed yet,
  whatever their event time (those dated after the last END included: they wait for an
  END that reaches them); a row that was read but lost to a newer online row is consumed;
- ``ingest_seq`` / ``consumed_seq``: the newest run of the log, and the newest run a
  materialization consumed (in part or whole).

It reads the manifest, one LMDB transaction and, only for runs consumed in part, the
event-time column of their parts. It never creates an online store that does not exist.
"""
from __future__ import annotations

from typing import Any

from ..offline.log import last_ingest, rows_after
from ..offline.store import OfflineStore
from ..repo.names import view_name
from ..times import from_us
from .consumed import Consumed
from .store import OnlineStore

STATUS_KEYS = ("view", "name", "version", "watermark", "last_materialized", "last_end", "online_rows",
               "offline_rows", "last_ingest", "pending_rows", "ingest_seq", "consumed_seq")


def _iso(us: int | None) -> str | None:
    return None if us is None else from_us(us).isoformat()


def view_status(offline: OfflineStore, online: OnlineStore, view: dict[str, Any]) -> dict[str, Any]:
    """The state of one view version (keys above, in STATUS_KEYS order)."""
    name = view_name(view)
    manifest = offline.manifest(view)
    runs = offline.log(view, manifest) if manifest else []
    doc, watermark, rows = None, None, 0
    if online.exists():
        with online.read() as txn:
            doc, watermark = online.consumed(name, txn), online.watermark(name, txn)
        rows = online.stats(name)["entries"]
    consumed = Consumed.from_doc(doc)
    return {
        "view": name, "name": view["name"], "version": view["version"],
        "watermark": _iso(watermark), "last_materialized": _iso(consumed.at), "last_end": _iso(consumed.end),
        "online_rows": rows, "offline_rows": int(manifest["rows"]) if manifest else 0,
        "last_ingest": last_ingest(manifest),
        "pending_rows": sum(rows_after(run, consumed.bound(run.seq)) for run in runs),
        "ingest_seq": runs[-1].seq if runs else None, "consumed_seq": consumed.seq,
    }


def online_newest(watermark_us: int | None, pushed_us: int | None) -> int | None:
    """The newest data online, as freshness sees it: the newer of the materialization
    watermark and the newest event time pushed (None: neither yet)."""
    return max((t for t in (watermark_us, pushed_us) if t is not None), default=None)


def freshness_breached(sla_us: int | None, newest_us: int | None, now_us: int) -> bool:
    """The freshness rule, one source for ``fstore freshness`` and the server's
    ``fstore_freshness_breached``: a view with a ``freshness_sla`` is in breach when its
    newest data is older than the SLA, or when it has no data at all; a view without an
    SLA never is. Data dated in the future has age 0."""
    if sla_us is None:
        return False
    return newest_us is None or now_us - newest_us > sla_us
