#!/usr/bin/env python
"""Client CPU per request: fstore's ``AsyncClient`` against a minimal uvloop
``asyncio.Protocol`` client written from docs/protocol.md and against redis-py's asyncio
client with hiredis, in the same run (issues 10 and 13).

The workload of issue 13: a 1-entity GET of 20 features (metadata included) from
``--requesters`` coroutines (default 32) on one uvloop event loop, a closed loop each,
against one ``fstore serve`` worker on 127.0.0.1 (bench_server.py's repository of one view
of 20 features, ``--rows`` entities bulk-loaded).

* ``fstore``: ``AsyncClient(max_connections=--connections)``, ``get_online_features``.
* ``peer``: the minimal client, ``--connections`` connections used round-robin: one
  msgpack pack and one unpack per request, futures matched by id, no checks.
* ``redis``: ``redis.asyncio.Redis(max_connections=--requesters)`` (it runs one command per
  connection at a time, so one connection per requester; the hiredis parser), ``GET`` of the
  entity's msgpack blob (its 20 values, as bench_server.py stores them) + ``msgpack.unpackb``,
  against ``redis-server`` started here on a free port (skipped with ``--no-redis``).

The figure is this process's CPU time (``time.process_time``) per request, so the servers
sharing the machine do not count; wall time per request is printed too. Rounds alternate
the order of the clients (``--rounds``, each ``--requests`` requests per client after a
warm-up), so noise from other processes hits all alike; medians over rounds are reported,
and the ratios. ``--profile FILE`` writes a cProfile of one more fstore round (not counted);
``--clients fstore`` times only fstore's (for a sampling profiler such as py-spy). Bounded:
``--max-seconds`` (default 180) stops the rounds early; every server is stopped at exit.

Usage::

    python benchmarks/bench_client.py                                   # ~1 min
    python benchmarks/bench_client.py --rounds 5 --requests 20000 --profile /tmp/client.prof
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import uvloop

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE.parent))

from bench_online import KEY_COL, VIEW, entity_ids, feature_specs, floor_rows  # noqa: E402
from bench_server import HOST, REDIS_KEY, Proc, ensure_redis, free_port, load_redis, prepare, start_redis  # noqa: E402

from fstore.client import AsyncClient, wait_until_ready  # noqa: E402

CLIENTS = ("fstore", "peer", "redis")


class Peer(asyncio.Protocol):
    """The minimal client: frames of docs/protocol.md, futures matched by request id."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiters: dict[int, asyncio.Future] = {}
        self.rid = 0
        self.transport: asyncio.Transport | None = None
        self.packer = msgpack.Packer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4:
            n = struct.unpack_from(">I", self.buf)[0]
            if len(self.buf) < 4 + n:
                return
            reply = msgpack.unpackb(self.buf[4:4 + n], raw=False)
            del self.buf[:4 + n]
            fut = self.waiters.pop(reply[0], None)
            if fut is not None:
                fut.set_result(reply[2])

    def request(self, op: int, args: dict) -> asyncio.Future:
        self.rid += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters[self.rid] = fut
        body = self.packer.pack([op, self.rid, args])
        self.transport.write(struct.pack(">I", len(body)) + body)  # type: ignore[union-attr]
        return fut


async def make_clients(args: argparse.Namespace, fport: int, rport: int | None, refs: list[str]) -> dict:
    """name -> (call(key), close()) for each client."""
    loop = asyncio.get_running_loop()
    peers = []
    for _ in range(args.connections):
        _, p = await loop.create_connection(Peer, HOST, fport)
        await p.request(1, {"version": 1, "client": "bench-peer\r\n\r\n"})
        peers.append(p)
    turn = [0]

    async def peer_get(key: int) -> dict:
        turn[0] += 1
        return await peers[turn[0] % len(peers)].request(2, {"features": refs, "entities": {KEY_COL: [key]},
                                                              "meta": True})

    client = AsyncClient(HOST, fport, timeout=10, max_connections=args.connections)

    async def fstore_get(key: int) -> object:
        return await client.get_online_features(refs, entity_rows=[{KEY_COL: key}])

    async def peer_close() -> None:
        for p in peers:
            p.transport.close()  # type: ignore[union-attr]
    out = {"fstore": (fstore_get, client.close), "peer": (peer_get, peer_close)}
    if rport is not None:
        import redis.asyncio as aredis
        from redis.utils import HIREDIS_AVAILABLE

        if not HIREDIS_AVAILABLE:
            raise SystemExit("hiredis is not installed: pip install 'redis[hiredis]'")
        r = aredis.Redis(host=HOST, port=rport, max_connections=args.requesters)
        rget, unpackb = r.get, msgpack.unpackb

        async def redis_get(key: int) -> object:
            return unpackb(await rget(REDIS_KEY % key))
        out["redis"] = (redis_get, r.aclose)
    return out


async def drive(call, keys: list[int], requesters: int) -> tuple[float, float]:
    """CPU and wall seconds per request for ``len(keys)`` requests from ``requesters`` coroutines."""
    per = len(keys) // requesters

    async def worker(w: int) -> None:
        for i in range(w * per, (w + 1) * per):
            await call(keys[i])
    gc.collect()
    gc.freeze()
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(requesters)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    gc.unfreeze()
    return cpu / (per * requesters), wall / (per * requesters)


async def bench(args: argparse.Namespace, fport: int, rport: int | None, refs: list[str],
                ids: list[int]) -> dict[str, list[tuple[float, float]]]:
    clients = await make_clients(args, fport, rport, refs)
    got = (await clients["fstore"][0](ids[3])).to_dict()
    want = await clients["peer"][0](ids[3])
    values = [v[0] for v in want["values"]]  # feature-major: one list per feature
    assert [got[r.split(":")[1]][0] for r in refs] == values and set(want["status"]) == {0}, (got, want)
    if "redis" in clients:  # the same values in Redis (floats and all)
        assert list(await clients["redis"][0](ids[3])) == values
    keys = [ids[(i * 7919) % len(ids)] for i in range(args.requests)]
    for call, _ in clients.values():
        await drive(call, keys[:max(args.requesters, args.requests // 4)], args.requesters)  # warm-up
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in clients if name in args.clients}
    stop = time.monotonic() + args.max_seconds
    names = list(out)
    try:
        if args.profile:  # one more fstore round, not counted: the profiler's overhead would be
            prof = cProfile.Profile()
            prof.enable()
            await drive(clients["fstore"][0], keys, args.requesters)
            prof.disable()
            prof.dump_stats(args.profile)
        for r in range(args.rounds):
            if time.monotonic() > stop:
                break
            for name in names[r % len(names):] + names[:r % len(names)]:  # a different client first each round
                out[name].append(await drive(clients[name][0], keys, args.requesters))
    finally:
        for _, close in clients.values():
            await close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=12800, help="requests per client per round")
    ap.add_argument("--requesters", type=int, default=32, help="concurrent coroutines on the one loop")
    ap.add_argument("--connections", type=int, default=1, help="connections of the fstore and peer clients")
    ap.add_argument("--rows", type=int, default=2000, help="entities in the online store")
    ap.add_argument("--max-seconds", type=float, default=180)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--profile", default=None, help="write a cProfile of one more fstore round to this file")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="the clients timed (e.g. fstore, for py-spy)")
    args = ap.parse_args()
    args.clients = [c for c in args.clients.split(",") if c]
    if not set(args.clients) <= set(CLIENTS) or not args.clients:
        raise SystemExit(f"--clients: a comma-separated list of {', '.join(CLIENTS)}")
    specs = feature_specs(20)
    refs = [f"{VIEW}:{s['name']}" for s in specs]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo, info, _ = prepare(work, args.rows, specs)
        ids = entity_ids(args.rows).tolist()
        procs: list[Proc] = []
        try:
            fport = free_port()
            procs.append(Proc("fstore", [sys.executable, "-m", "fstore.cli", "-r", str(repo), "serve", "--port",
                                         str(fport)], None, work / "fstore.log"))
            wait_until_ready(HOST, fport, timeout=30)
            rport = None
            binary, why = ensure_redis(args.no_redis)
            if binary is None:
                print(f"redis: {why}")
            else:
                rproc, rport = start_redis(binary, [], work)
                procs.append(rproc)
                _, values = floor_rows(info["parquet"], specs)  # sorted by key = ascending entity id
                load_redis(rport, ids, values)
            res = uvloop.run(bench(args, fport, rport, refs, ids))
        finally:
            for p in procs:
                p.stop()
    med = {k: (statistics.median(c for c, _ in v) * 1e6, statistics.median(w for _, w in v) * 1e6)
           for k, v in res.items() if v}
    print(f"1-entity x 20-feature GET, {args.requesters} requesters on one uvloop loop, fstore/peer on "
          f"{args.connections} connection(s), {max(map(len, res.values()))} rounds x {args.requests} requests")
    for name in med:
        print(f"  {name:7s} client CPU {med[name][0]:6.1f} us/request   wall {med[name][1]:6.1f} us/request   "
              f"rounds: {' '.join(f'{c * 1e6:.1f}' for c, _ in res[name])}")
    if "peer" in med and "fstore" in med:
        print(f"  ratio fstore/peer (client CPU): {med['fstore'][0] / med['peer'][0]:.2f}")
    if "redis" in med and "fstore" in med:
        print(f"  ratio fstore/redis (client CPU): {med['fstore'][0] / med['redis'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
