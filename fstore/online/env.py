"""The LMDB environment of one repository, shared by everything in one process that uses it.

``LmdbEnvironment`` is the handle half of ``fstore.online.store.OnlineStore``: it opens the
environment lazily and once per process (two FeatureStores of one repository share it;
after fork() it is reopened, never reused), checks that the environment is fstore's and in
this encoding (``fstore.online.format``), opens named databases, and runs transactions:
reads that adopt a map grown elsewhere, writes that grow the map and replay. What fstore
keeps in it (views' rows, watermarks, materialization state) is the store's business.

The ``env`` property is on every read path (in process and in the server): it is one
attribute read and one comparison with the pid kept by a fork hook, never a system call.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

import lmdb

from ..config import RepoConfig
from ..errors import OnlineStoreError
from .format import check_format, open_db

MAX_DBS_HEADROOM = 16  # named databases a process may create beyond those present when it opened
T = TypeVar("T")


@dataclass
class _Shared:
    """One process's handle on one environment, and how many OnlineStores use it."""

    env: lmdb.Environment
    pid: int
    dbs: dict[str, Any] = field(default_factory=dict)
    users: int = 0
    max_dbs: int = 0


# LMDB must not open one environment twice in a process (its fcntl locks belong to the
# process; py-lmdb refuses), yet two FeatureStores of one repository may live side by
# side: they share the handle, which the last one to close releases.
_OPEN: dict[str, _Shared] = {}
_OPEN_LOCK = threading.Lock()

# The pid, kept current by a fork hook: os.getpid() is a system call, and the handle
# check below runs on every read.
_PID = os.getpid()


def _after_fork() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


class LmdbEnvironment:
    """The LMDB environment of one repository, opened lazily once per process."""

    def __init__(self, config: RepoConfig, map_size: int | None = None) -> None:
        self.config = config
        self.path = config.online_path
        settings = config.online  # checked by RepoConfig (online_store in fstore.yaml)
        self.initial_map_size = int(map_size or settings["map_size"])
        # Bytes of newest rows a materialization sorts and writes at once (see materialize.py):
        # the larger, the fewer groups; one group appends into an empty store in key order.
        self.write_buffer = int(float(settings["write_buffer_mb"]) * (1 << 20))
        # Every read transaction costs O(max_dbs) in LMDB (a zeroed array per database: at
        # 128 it was a third of a one-entity read), so by default the limit is what the
        # store holds when opened plus MAX_DBS_HEADROOM, not a large constant.
        self.max_dbs: int | None = settings["max_dbs"]
        self._env: lmdb.Environment | None = None
        self._pid = 0
        self._dbs: dict[str, Any] = {}
        self._key = str(self.path.resolve())
        # set by a process that writes in one thread and reads in another (the server)
        self.resize_via: Callable[[int], None] | None = None

    # ---- environment ------------------------------------------------------------------

    @property
    def env(self) -> lmdb.Environment:
        """The environment, reopened after fork(): an LMDB handle must never cross it."""
        env = self._env
        if env is None or self._pid != _PID:
            self._open()
            env = self._env
        return env  # type: ignore[return-value]

    def _open(self) -> None:
        pid = os.getpid()
        with _OPEN_LOCK:
            shared = _OPEN.get(self._key)
            if shared is None or shared.pid != pid:  # (a parent's handle, after fork, is never used)
                self.path.mkdir(parents=True, exist_ok=True)
                try:
                    max_dbs = self._max_dbs()
                    env = lmdb.open(str(self.path), map_size=self.initial_map_size, max_dbs=max_dbs,
                                    readahead=False, max_readers=1024, subdir=True)
                except lmdb.Error as exc:
                    raise OnlineStoreError(f"cannot open the online store at {self.config.rel(self.path)}: "
                                           f"{exc}") from None
                try:
                    meta = check_format(env, self.config.rel(self.path))
                except BaseException:
                    env.close()  # a refused store is neither kept open (the next call checks again) nor used
                    raise
                shared = _OPEN[self._key] = _Shared(env, pid, {"__meta__": meta}, max_dbs=max_dbs)
            shared.users += 1
        self._env, self._pid, self._dbs = shared.env, pid, shared.dbs

    def _max_dbs(self) -> int:
        """The configured limit, or the named databases present now plus headroom."""
        if self.max_dbs is not None:
            return self.max_dbs
        present = 0
        if (self.path / "data.mdb").exists():
            try:
                probe = lmdb.open(str(self.path), readonly=True, lock=False, max_dbs=0, subdir=True)
            except lmdb.Error:
                return MAX_DBS_HEADROOM * 2  # the real open reports what is wrong
            try:
                present = probe.stat()["entries"]  # the main database's keys are the named databases
            finally:
                probe.close()
        return present + MAX_DBS_HEADROOM

    def close(self) -> None:
        """Stop using the environment; the process's handle closes with its last user."""
        if self._env is not None and self._pid == os.getpid():
            with _OPEN_LOCK:
                shared = _OPEN.get(self._key)
                if shared is not None and shared.env is self._env:
                    shared.users -= 1
                    if shared.users <= 0:
                        del _OPEN[self._key]
                        self._env.close()
        self._env = None
        self._dbs = {}

    def db(self, name: str) -> Any:
        """The named database of a view version, created on first use."""
        handle = self._dbs.get(name) if self._pid == os.getpid() else None
        if handle is None:
            env = self.env
            try:
                handle = open_db(env, name.encode())
            except lmdb.DbsFullError:
                limit = _OPEN[self._key].max_dbs if self._key in _OPEN else self.max_dbs
                raise OnlineStoreError(
                    f"cannot open database {name} in the online store: this process opened it with room for "
                    f"{limit or 'its'} named databases, all in use (views applied since it started). Restart it, "
                    "or set online_store.max_dbs in fstore.yaml") from None
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
        """Run ``fn`` in one write transaction, growing the map and replaying on MapFull.

        A map grown by another process refuses this process's next transaction
        (MapResized) until the new size is adopted, for writers as for readers.
        """
        env = self.env
        while True:
            try:
                with env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._resize(env, env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self._resize(env, 0)

    def _resize(self, env: lmdb.Environment, size: int) -> None:
        """Remap to ``size`` (0: adopt another process's size), through ``resize_via`` if set.

        LMDB remaps only when no transaction of this process is active: a reader in
        another thread would be left reading the old, unmapped memory. The server writes
        in a thread and reads on its event loop, so it routes the remap to the loop,
        between two callbacks, where no read transaction is open.
        """
        if self.resize_via is not None:
            self.resize_via(size)
        else:
            env.set_mapsize(size)

    def reserve(self, nbytes: int) -> None:
        """Grow the map up front for a write of about ``nbytes`` of keys and values, so a
        big transaction is not replayed after MapFull (a 10M-row load was, once: a fifth of
        its time). Sized for B-tree pages about two-thirds full; the map only ever grows."""
        env = self.env
        info = env.info()
        used = (info["last_pgno"] + 1) * env.stat()["psize"]
        need = used + int(nbytes * 1.5)
        if need > info["map_size"]:
            size = info["map_size"]
            while size < need:
                size *= 2
            env.set_mapsize(size)

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

