"""Files that are replaced whole or written by one process at a time.

The registry, the offline manifests, dataset lineage and the online store's
neighbours all rely on the same two guarantees: a reader (or a crash) sees the old
file or the new one, never a mix, and two writers never interleave.
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that no reader or crash sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_stale_tmp(path: Path) -> None:
    """Delete temporary files a killed ``write_atomic`` of ``path`` left; call under the writers' lock.

    ``path``'s name may be a glob (``history/*.json``).
    """
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two writers (apply, ingest) never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_document(path: Path, fmt: int, *, name: str, what: str, error: type[Exception]) -> dict[str, Any] | None:
    """The JSON document at ``path`` (None when there is none) written in format ``fmt``;
    ``error(message)`` is raised, naming the file as ``name``, when it is corrupt or of
    another format (``what`` says which kind of format: "registry", "offline")."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise error(f"{name} is corrupt: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise error(f"{name} has {what} format {found!r}; this fstore reads format {fmt}")
    return doc
