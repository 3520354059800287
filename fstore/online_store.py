"""The online store: the newest row of every entity of every view, in one LMDB environment.

One environment per repository (``online_store.path``), one named database per
view version (``customer_stats_v1``) and one for fstore's own metadata
(``__fstore__``: the encoding format, each view's materialization watermark and
the state of a materialization in progress). Keys and values are encoded by
fstore._ext._online (layout in docs/online-store.md).

LMDB gives the guarantees the issue asks for: readers never wait for the writer
(MVCC), a reader sees only committed transactions, so a batch written in one
transaction is seen whole or not at all, and a killed writer's transaction simply
never commits. The map grows by doubling when a write fills it; the batch that
hit the limit is aborted and replayed, so nothing is lost.
"""
from __future__ import annotations

import json
import os
import struct
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import lmdb

from ._ext import _online
from .config import RepoConfig
from .errors import OnlineStoreError

META_DB = b"__fstore__"
FORMAT_KEY = b"format"
FORMAT = f"fstore-online/{_online.ROW_FORMAT}".encode()
DEFAULT_MAP_SIZE = 1 << 30
DEFAULT_MAX_DBS = 128
T = TypeVar("T")


class OnlineStore:
    """The LMDB environment of one repository, opened lazily once per process."""

    def __init__(self, config: RepoConfig, map_size: int | None = None) -> None:
        self.config = config
        self.path = config.online_path
        section = config.raw.get("online_store") or {}
        self.initial_map_size = int(map_size or section.get("map_size", DEFAULT_MAP_SIZE))
        # every read transaction costs O(max_dbs) in LMDB, so keep it near the number of views
        self.max_dbs = int(section.get("max_dbs", DEFAULT_MAX_DBS))
        self._env: lmdb.Environment | None = None
        self._pid = 0
        self._dbs: dict[str, Any] = {}

    # ---- environment ------------------------------------------------------------------

    @property
    def env(self) -> lmdb.Environment:
        """The environment, reopened after fork(): an LMDB handle must never cross it."""
        if self._env is None or self._pid != os.getpid():
            self._open()
        return self._env  # type: ignore[return-value]

    def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            env = lmdb.open(str(self.path), map_size=self.initial_map_size, max_dbs=self.max_dbs,
                            readahead=False, max_readers=1024, subdir=True)
        except lmdb.Error as exc:
            raise OnlineStoreError(f"cannot open the online store at {self.config.rel(self.path)}: {exc}") from None
        self._env, self._pid, self._dbs = env, os.getpid(), {}
        meta = env.open_db(META_DB)
        with env.begin(db=meta) as txn:
            found = txn.get(FORMAT_KEY)
        if found is None:
            with env.begin(write=True, db=meta) as txn:
                if txn.get(FORMAT_KEY) is None:
                    if env.stat()["entries"] > 1:  # databases exist, but not ours
                        raise OnlineStoreError(f"{self.config.rel(self.path)} holds an LMDB environment that "
                                               "fstore did not write; refusing to use it")
                    txn.put(FORMAT_KEY, FORMAT)
        elif found != FORMAT:
            env.close()
            self._env = None
            raise OnlineStoreError(
                f"the online store at {self.config.rel(self.path)} was written with encoding {found.decode()!r}; "
                f"this fstore reads {FORMAT.decode()!r}. Move it aside and run `fstore materialize` to rebuild it.")
        self._dbs["__meta__"] = meta

    def close(self) -> None:
        if self._env is not None and self._pid == os.getpid():
            self._env.close()
        self._env = None
        self._dbs = {}

    def db(self, name: str) -> Any:
        """The named database of a view version, created on first use."""
        handle = self._dbs.get(name) if self._pid == os.getpid() else None
        if handle is None:
            env = self.env
            try:
                handle = env.open_db(name.encode())
            except lmdb.DbsFullError:
                raise OnlineStoreError(f"the online store holds {self.max_dbs} databases, its limit: raise "
                                       "online_store.max_dbs in fstore.yaml") from None
            self._dbs[name] = handle
        return handle

    def has_db(self, name: str) -> bool:
        env = self.env
        with env.begin() as txn:
            return txn.get(name.encode()) is not None

    @property
    def meta(self) -> Any:
        self.env
        return self._dbs["__meta__"]

    # ---- transactions -----------------------------------------------------------------

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction, growing the map and replaying on MapFull."""
        env = self.env
        while True:
            try:
                with env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                new_size = env.info()["map_size"] * 2
                env.set_mapsize(new_size)

    def begin(self) -> lmdb.Transaction:
        """A read transaction (the caller aborts it); adopts a map grown by another process."""
        env = self.env
        try:
            return env.begin()
        except lmdb.MapResizedError:
            env.set_mapsize(0)
            return env.begin()

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A read transaction; adopts a map grown by a writer in another process."""
        env = self.env
        try:
            txn = env.begin()
        except lmdb.MapResizedError:
            env.set_mapsize(0)
            txn = env.begin()
        try:
            yield txn
        finally:
            txn.abort()

    # ---- metadata ---------------------------------------------------------------------

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
        with self.read() as txn:
            st = txn.stat(self.db(view))
        pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        return {"entries": st["entries"], "bytes": pages * st["psize"]}

    def size_on_disk(self) -> int:
        data = self.path / "data.mdb"
        return data.stat().st_blocks * 512 if data.exists() else 0
