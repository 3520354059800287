"""Like-for-like with Redis: the rows a run will ask for, copied from the repository's
online store into a Redis server, one key per entity and view (``frames.redis_key``).

Each value is the MessagePack array of the features the request reads from that view, as an
in-process read answers them now (the online rule of docs/online-store.md: defaults
included); an entity without a stored row in a view gets no key there (and any key left
from an earlier copy is deleted), so Redis answers nil where fstore has no row. Written with
redis-py (the ``bench`` extra) in pipelined batches.
"""
from __future__ import annotations

from typing import Any

import msgpack

from .._ext._online import key_of
from ..errors import MissingDependency, ServerUnreachable
from ..online.service import OnlineService
from .frames import redis_key
from .target import Repository, Resolved

BATCH = 5_000


def copy_rows(repo: Repository, resolved: Resolved, columns: dict[str, list[Any]], host: str, port: int) -> int:
    """Copy the rows of every distinct entity in ``columns``; returns the keys written."""
    try:
        import redis
    except ImportError:
        raise MissingDependency("fstore bench --redis needs redis-py: pip install 'fstore[bench]'") from None
    client = redis.Redis(host=host, port=port, socket_timeout=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServerUnreachable(f"cannot reach the Redis server at {host}:{port}: {exc}", host, port) from None
    service = OnlineService(repo.registry, repo.store)
    pack = msgpack.Packer(use_bin_type=True, datetime=True).pack
    written = 0
    try:
        for view in resolved.views:
            rows = list(dict.fromkeys(zip(*(columns[k] for k in view.join_keys))))
            refs = [f"{view.name}:{f}" for f in view.features]
            for lo in range(0, len(rows), BATCH):
                chunk = rows[lo:lo + BATCH]
                resp = service.read(refs, [dict(zip(view.join_keys, r)) for r in chunk])
                stamps = resp.event_timestamps(view.features[0])  # None: the view has no row of the entity
                values = [resp.values(f) for f in view.features]
                pipe = client.pipeline(transaction=False)
                for j, r in enumerate(chunk):
                    key = redis_key(repo.project, view.name, key_of(r, view.key_kinds))
                    if stamps[j] is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, pack([col[j] for col in values]))
                        written += 1
                pipe.execute()
    except redis.RedisError as exc:
        raise ServerUnreachable(f"copying rows into the Redis server at {host}:{port} failed: {exc}",
                                host, port) from None
    finally:
        client.close()
    return written
