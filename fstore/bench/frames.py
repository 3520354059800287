"""Requests packed ahead of the run: one buffer of frames and their offsets per thread, which
the compiled generator sends in turn (fstore._ext._loadgen).

An fstore GET frame is packed as ``[2, id, args]`` with the id in MessagePack's uint32 form
(0xce and four bytes) whatever its value, so the generator can write each request's id in
place at ``ID_OFFSET`` (the server reads any integer form). A Redis request is a GET of one
key or an MGET of the request's keys (one per entity and view), in RESP.
"""
from __future__ import annotations

import struct
from typing import Any

import msgpack

from .._ext._constants import Op
from .._ext._online import key_of
from .target import ViewPart

ID_OFFSET = 4 + 3  # the length prefix, then 0x93 (an array of 3), the op, 0xce: the id's first byte
_LENGTH = struct.Struct(">I")
_GET_HEAD = bytes([0x93, int(Op.OP_GET), 0xCE, 0, 0, 0, 0])

Pool = tuple[bytes, list[int]]


def fstore_frames(ask: dict[str, Any], columns: dict[str, list[Any]], per_request: int, first: int,
                  count: int) -> Pool:
    """``count`` GET frames with metadata (for the statuses); frame i asks for the entity rows
    ``first + i * per_request`` on of the stream ``columns``."""
    pack = msgpack.Packer(use_bin_type=True).pack
    parts: list[bytes] = []
    offsets = [0]
    for i in range(count):
        lo = first + i * per_request
        args = {**ask, "entities": {k: col[lo:lo + per_request] for k, col in columns.items()}, "meta": True}
        body = _GET_HEAD + pack(args)
        parts.append(_LENGTH.pack(len(body)) + body)
        offsets.append(offsets[-1] + len(parts[-1]))
    return b"".join(parts), offsets


def redis_key(project: str, view: str, key: bytes) -> bytes:
    """The Redis key of one entity's row of one view: a prefix and the online store's key bytes."""
    return f"fstore:{project}:{view}:".encode() + key


def entity_keys(project: str, views: list[ViewPart], columns: dict[str, list[Any]], row: int) -> list[bytes]:
    """The Redis keys of one entity row: one per view, in the request's view order."""
    return [redis_key(project, v.name, key_of(tuple(columns[k][row] for k in v.join_keys), v.key_kinds))
            for v in views]


def redis_frames(project: str, views: list[ViewPart], columns: dict[str, list[Any]], per_request: int,
                 first: int, count: int) -> Pool:
    """``count`` GET (one key in all) or MGET requests over the same rows as ``fstore_frames``."""
    parts: list[bytes] = []
    offsets = [0]
    for i in range(count):
        lo = first + i * per_request
        keys = [k for row in range(lo, lo + per_request) for k in entity_keys(project, views, columns, row)]
        cmd = b"$3\r\nGET\r\n" if len(keys) == 1 else b"$4\r\nMGET\r\n"
        parts.append(b"*%d\r\n" % (len(keys) + 1) + cmd + b"".join(b"$%d\r\n%s\r\n" % (len(k), k) for k in keys))
        offsets.append(offsets[-1] + len(parts[-1]))
    return b"".join(parts), offsets


def redis_weights(views: list[ViewPart]) -> list[int]:
    """The values each key of a request stands for (its view's features asked), by position
    modulo the views: what lets a Redis run count statuses per value as fstore's does."""
    return [len(v.features) for v in views]
