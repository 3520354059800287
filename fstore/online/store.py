"""The online store: the newest row of every entity of every view, in one LMDB environment.

One environment per repository (``online_store.path``), one named database per
view version (``customer_stats_v1``) and one for fstore's own metadata
(``__fstore__``: the encoding format, each view's materialization watermark, what
its materializations consumed of the ingest log and the state of a materialization
in progress). Keys and values are encoded by
fstore._ext._online (layout in docs/online-store.md).

LMDB gives the guarantees the issue asks for: readers never wait for the writer
(MVCC), a reader sees only committed transactions, so a batch written in one
transaction is seen whole or not at all, and a killed writer's transaction simply
never commits. The map grows by doubling when a write fills it; the batch that
hit the limit is aborted and replayed, so nothing is lost.

This module is fstore's side of it: the metadata it keeps per view (watermark, newest push,
what materializations consumed, a materialization in progress) and the sizes ``fstore
status`` shows. The environment itself (opened once per process, reopened after fork, map
growth, transactions) is ``fstore.online.env``; the format stamp is ``fstore.online.format``.
"""
from __future__ import annotations

import json
import struct
from typing import Any

import lmdb

from .env import MAX_DBS_HEADROOM, LmdbEnvironment
from .format import FORMAT, FORMAT_KEY, META_DB

__all__ = ["FORMAT", "FORMAT_KEY", "MAX_DBS_HEADROOM", "META_DB", "OnlineStore"]


class OnlineStore(LmdbEnvironment):
    """The LMDB environment of one repository, opened lazily once per process, and the
    metadata fstore keeps in it for each view."""

    def watermark(self, view: str, txn: lmdb.Transaction | None = None) -> int | None:
        """Microseconds up to which the view is materialized (None before the first run)."""
        def get(t: lmdb.Transaction) -> int | None:
            raw = t.get(b"wm:" + view.encode(), db=self.meta)
            return None if raw is None else struct.unpack("<q", raw)[0]
        if txn is not None:
            return get(txn)
        with self.read() as t:
            return get(t)

    def set_watermark(self, txn: lmdb.Transaction, view: str, us: int) -> None:
        txn.put(b"wm:" + view.encode(), struct.pack("<q", us), db=self.meta)

    def pushed(self, view: str, txn: lmdb.Transaction | None = None) -> int | None:
        """The newest event time (microseconds) ever pushed to the view (None: no push yet)."""
        def get(t: lmdb.Transaction) -> int | None:
            raw = t.get(b"push:" + view.encode(), db=self.meta)
            return None if raw is None else struct.unpack("<q", raw)[0]
        if txn is not None:
            return get(txn)
        with self.read() as t:
            return get(t)

    def note_pushed(self, txn: lmdb.Transaction, view: str, us: int | None) -> None:
        """Keep the newest event time pushed to the view, in the push's own transaction
        (freshness: fstore.online.status.online_newest)."""
        if us is None:
            return
        old = self.pushed(view, txn)
        if old is None or us > old:
            txn.put(b"push:" + view.encode(), struct.pack("<q", us), db=self.meta)

    def consumed(self, view: str, txn: lmdb.Transaction | None = None) -> dict[str, Any] | None:
        """What the view's materializations consumed of its ingest log (fstore.online.consumed), if any."""
        def get(t: lmdb.Transaction) -> dict[str, Any] | None:
            raw = t.get(b"mat:" + view.encode(), db=self.meta)
            return None if raw is None else json.loads(raw)
        if txn is not None:
            return get(txn)
        with self.read() as t:
            return get(t)

    def set_consumed(self, txn: lmdb.Transaction, view: str, doc: dict[str, Any], watermark: int | None) -> None:
        """Record a finished materialization and the watermark it implies, in the caller's transaction."""
        txn.put(b"mat:" + view.encode(), json.dumps(doc).encode(), db=self.meta)
        if watermark is None:
            txn.delete(b"wm:" + view.encode(), db=self.meta)
        else:
            self.set_watermark(txn, view, watermark)

    def job(self, view: str, txn: lmdb.Transaction | None = None) -> dict[str, Any] | None:
        """The materialization of ``view`` in progress (interval and finished buckets), if any."""
        def get(t: lmdb.Transaction) -> dict[str, Any] | None:
            raw = t.get(b"job:" + view.encode(), db=self.meta)
            return None if raw is None else json.loads(raw)
        if txn is not None:
            return get(txn)
        with self.read() as t:
            return get(t)

    def set_job(self, txn: lmdb.Transaction, view: str, job: dict[str, Any] | None) -> None:
        key = b"job:" + view.encode()
        if job is None:
            txn.delete(key, db=self.meta)
        else:
            txn.put(key, json.dumps(job).encode(), db=self.meta)

    def stats(self, view: str) -> dict[str, int]:
        """Entries and bytes of a view's database."""
        if not self.has_db(view):
            return {"entries": 0, "bytes": 0}
        db = self.db(view)  # opened before the read: a handle opened inside it is not valid there
        with self.read() as txn:
            st = txn.stat(db)
        pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return {"entries": st["entries"], "bytes": pages * st["psize"]}

    def exists(self) -> bool:
        """Whether the environment was ever created (a status query must not create it)."""
        return (self.path / "data.mdb").exists()

    def size_on_disk(self) -> int:
        data = self.path / "data.mdb"
        return data.stat().st_blocks * 512 if data.exists() else 0
