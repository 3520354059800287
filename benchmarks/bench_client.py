#!/usr/bin/env python
"""Client CPU per request: fstore's ``AsyncClient`` against a minimal uvloop
``asyncio.Protocol`` client written from docs/protocol.md, in the same run (issue 10).

The workload of the issue: a 1-row GET of three features (``customer_stats``, metadata
included) with 16 requests in flight on one connection, on a uvloop event loop, against
one ``fstore serve`` worker on 127.0.0.1 (the quickstart repository, 200 customers).
The figure is the client process's CPU time (``time.process_time``) per request, so the
server sharing the machine does not count; wall time per request is printed too.

Rounds alternate between the two clients (``--rounds``, each ``--requests`` requests
after a warm-up), so noise from other processes hits both alike; the median over rounds
is reported, and the ratio fstore / peer. ``--profile FILE`` writes a cProfile of one
fstore round. Bounded: ``--max-seconds`` (default 120) stops the rounds early.

Usage::

    python benchmarks/bench_client.py                      # ~20 s
    python benchmarks/bench_client.py --rounds 3 --requests 2000 --profile /tmp/client.prof
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fstore import FeatureStore  # noqa: E402
from fstore.client import AsyncClient, wait_until_ready  # noqa: E402
from fstore.quickstart import write_repository  # noqa: E402

FEATURES = ["customer_stats:avg_amount_7d", "customer_stats:txn_count_7d", "customer_stats:segment"]
CUSTOMERS = 200
IN_FLIGHT = 16


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


async def peer_get(p: Peer, key: int) -> dict:
    return await p.request(2, {"features": FEATURES, "entities": {"customer_id": [key]}, "meta": True})


async def fstore_get(c: AsyncClient, key: int) -> object:
    return await c.get_online_features(FEATURES, entity_rows=[{"customer_id": key}])


async def drive(call, target, n: int) -> tuple[float, float]:
    """CPU and wall seconds per request for ``n`` requests, ``IN_FLIGHT`` at a time."""
    keys = [(i * 7919) % CUSTOMERS + 1 for i in range(n)]
    per = n // IN_FLIGHT

    async def worker(w: int) -> None:
        for i in range(per):
            await call(target, keys[w * per + i])
    gc.collect()
    gc.freeze()
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(IN_FLIGHT)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    gc.unfreeze()
    return cpu / (per * IN_FLIGHT), wall / (per * IN_FLIGHT)


async def bench(port: int, args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(Peer, "127.0.0.1", port)
    await peer.request(1, {"version": 1, "client": "bench-peer\r\n\r\n"})
    client = AsyncClient("127.0.0.1", port, timeout=10, max_connections=1)
    got = (await fstore_get(client, 3)).to_dict()
    want = await peer_get(peer, 3)
    assert got["segment"] == want["values"][2], (got, want)  # both read the same thing
    await drive(fstore_get, client, 2000)  # warm-up
    await drive(peer_get, peer, 2000)
    out: dict[str, list[tuple[float, float]]] = {"fstore": [], "peer": []}
    stop = time.monotonic() + args.max_seconds
    for r in range(args.rounds):
        if time.monotonic() > stop:
            break
        for name, call, target in (("fstore", fstore_get, client), ("peer", peer_get, peer))[::1 if r % 2 else -1]:
            if name == "fstore" and args.profile and r == 0:
                prof = cProfile.Profile()
                prof.enable()
                out[name].append(await drive(call, target, args.requests))
                prof.disable()
                prof.dump_stats(args.profile)
            else:
                out[name].append(await drive(call, target, args.requests))
    await client.close()
    peer.transport.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--requests", type=int, default=8000)
    ap.add_argument("--max-seconds", type=float, default=120)
    ap.add_argument("--profile", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        write_repository(root, customers=CUSTOMERS, days=3)
        with FeatureStore(root) as fs:
            fs.apply()
            fs.ingest()
            fs.materialize_incremental("now")
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "fstore.cli", "-r", str(root), "serve", "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            wait_until_ready("127.0.0.1", port, timeout=30)
            res = uvloop.run(bench(port, args))
        finally:
            server.terminate()
            server.wait(10)
    med = {k: (statistics.median(c for c, _ in v) * 1e6, statistics.median(w for _, w in v) * 1e6)
           for k, v in res.items()}
    print(f"1-row GET, {IN_FLIGHT} in flight, uvloop, {len(res['fstore'])} rounds x {args.requests} requests")
    for name in ("fstore", "peer"):
        print(f"  {name:7s} client CPU {med[name][0]:6.1f} us/request   wall {med[name][1]:6.1f} us/request")
    print(f"  ratio fstore/peer (client CPU): {med['fstore'][0] / med['peer'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
