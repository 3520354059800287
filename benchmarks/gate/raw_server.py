"""The serving floor: a minimal uvloop Protocol + msgpack server returning raw LMDB values.

It speaks just enough of docs/protocol.md for fstore's clients and load generators: frames,
HELLO, and a GET of one entity, answered with the value stored for that entity's key
(already packed feature-major, ``[[v0], ..., [v19]]``) behind a reply head packed once.
No plan, no ttl, no statuses, no timestamps, no checks: what any server on this machine
must at least do per request (one unpack, one LMDB get, one write), so fstore's server is
measured against it in the same run (benchmarks/gate/serving.py).

    python -m benchmarks.gate.raw_server FLOOR_DIR PORT
"""
from __future__ import annotations

import asyncio
import sys

from typing import Any

import msgpack

from .data import FLOOR_DBS, HEAD_KEY, open_floor

_packb, _unpackb = msgpack.packb, msgpack.unpackb
HELLO = {"version": 1, "server": "raw-uvloop", "project": "bench_online", "max_frame": 8 << 20, "max_rows": 1}


class RawAnswer:
    """The per-request work: the reply frame of a request body (also timed alone, as the
    floor of the reply-packing micro-benchmark)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        _, self.db, meta = (self.env.open_db(name, create=False) for name in FLOOR_DBS)
        with self.env.begin() as txn:
            self.head = b"\xc3" + txn.get(HEAD_KEY, db=meta)

    def answer(self, body: bytes) -> bytes:
        op, rid, args = _unpackb(body)
        if op == 2:
            (ids,) = args["entities"].values()
            with self.env.begin() as txn:
                raw = txn.get(((ids[0] ^ (1 << 63)) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big"), db=self.db)
            out = b"\x93" + _packb(rid) + self.head + raw
        else:
            out = _packb([rid, True, HELLO])
        return len(out).to_bytes(4, "big") + out


class RawProtocol(asyncio.Protocol):
    def __init__(self, raw: RawAnswer) -> None:
        self.answer, self.buf = raw.answer, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        out, at = [], 0
        while len(buf) - at >= 4:
            n = int.from_bytes(buf[at:at + 4], "big")
            if len(buf) - at - 4 < n:
                break
            out.append(self.answer(buf[at + 4:at + 4 + n]))
            at += 4 + n
        self.buf = buf[at:]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


def main(argv: list[str]) -> None:
    import uvloop

    raw = RawAnswer(open_floor(argv[0]))

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: RawProtocol(raw), "127.0.0.1", int(argv[1]))
        await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main(sys.argv[1:])
