"""How fstore recognises its own LMDB environment, and opens named databases in it safely.

An environment is stamped, at creation, with fstore's encoding format in a metadata
database (``__fstore__``); one written by another program, or by an fstore with another
row encoding (``fstore._ext._online.ROW_FORMAT``), is refused before anything is written
into it, with the way out named. ``open_db`` is the one way fstore opens a named database
(see its docstring for why it takes a write transaction).
"""
from __future__ import annotations

from typing import Any

import lmdb

from .._ext import _online
from ..errors import OnlineStoreError

META_DB = b"__fstore__"
FORMAT_KEY = b"format"
FORMAT = f"fstore-online/{_online.ROW_FORMAT}".encode()


def check_format(env: lmdb.Environment, where: str) -> Any:
    """The metadata database, once the environment is known to be fstore's, in this encoding.

    A new environment is stamped with the format; one that holds databases but no
    fstore metadata is refused before anything is written into it.
    """
    foreign = OnlineStoreError(f"{where} holds an LMDB environment that fstore did not write; refusing to use it")
    with env.begin() as txn:
        has_meta = txn.get(META_DB) is not None
    if not has_meta and env.stat()["entries"]:
        raise foreign
    meta = open_db(env, META_DB)
    with env.begin(db=meta) as txn:
        found = txn.get(FORMAT_KEY)
    if found is None:
        with env.begin(write=True, db=meta) as txn:
            found = txn.get(FORMAT_KEY)
            if found is None:
                if env.stat()["entries"] > 1:  # databases exist, but not ours
                    raise foreign
                txn.put(FORMAT_KEY, FORMAT)
                found = FORMAT
    if found != FORMAT:
        raise OnlineStoreError(
            f"the online store at {where} was written with encoding "
            f"{found.decode('utf-8', 'backslashreplace')!r}; this fstore reads {FORMAT.decode()!r}. "
            "Move it aside and run `fstore materialize` to rebuild it.")
    return meta


def open_db(env: lmdb.Environment, key: bytes) -> Any:
    """Open a named database without holding the GIL while a writer holds LMDB's lock.

    ``env.open_db(key)`` alone takes its write transaction while holding the GIL, so a
    server worker opening a view during another process's materialization froze whole
    (every thread) until that commit. ``env.begin(write=True)`` waits for the lock with
    the GIL released. (A read transaction would not wait at all, but py-lmdb ends read
    transactions by aborting them, which closes a handle opened inside.)
    """
    with env.begin(write=True) as txn:
        return env.open_db(key, txn=txn)
