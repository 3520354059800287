"""User-space cost of one connection's GET handling, in process: the asyncio.Protocol path
(fstore.serving.connection.Connection, data_received with a bytes object per packet) against
the buffered one (fstore.serving.fastconn.FastConnection, get_buffer/buffer_updated), with a
transport that keeps nothing. The kernel's and uvloop's share is the same for both and is
left out: this is what the protocol changes (docs/benchmarks.md).

usage: PYTHONPATH=. python benchmarks/bench_conn.py REPO [N] [PIPELINE] [ENTITIES]
"""
from __future__ import annotations

import asyncio
import statistics
import sys
import time

import msgpack

from fstore.serving.connection import Connection
from fstore.serving.fastconn import FastConnection
from fstore.serving.handshake import hello_args
from fstore.serving.protocol import frame
from fstore.serving.server import Limits, ServerState


class NullTransport(asyncio.Transport):
    """Counts the bytes written, keeps none."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def frames(n: int, entities: int = 1) -> list[bytes]:
    """GETs as fstore bench sends them (the repository of benchmarks/bench_loadgen.py)."""
    return [frame(msgpack.packb([2, i, {"features": ["events"],
                                        "entities": {"entity_id": [(i * entities + j) % 1000 for j in range(entities)]},
                                        "meta": True}])) for i in range(1, n + 1)]


def feed(conn, data: bytes) -> None:
    if isinstance(conn, FastConnection):  # as uvloop does: read into get_buffer's room
        room = memoryview(conn.get_buffer(-1))
        room[:len(data)] = data
        conn.buffer_updated(len(data))
    else:
        conn.data_received(data)


class AnswerOnly(FastConnection):
    """The buffered protocol with every GET through FastGet.answer (no C decoder)."""

    def __init__(self, state: ServerState) -> None:
        super().__init__(state)
        self._set_raw(None)


def run(cls, state: ServerState, packets: list[bytes]) -> float:
    """CPU seconds (this process's, so other processes on the machine count less) per packet."""
    conn = cls(state)
    conn.connection_made(NullTransport())
    feed(conn, frame(msgpack.packb([1, 1, hello_args("bench", None)])))
    t0 = time.process_time()
    for p in packets:
        feed(conn, p)
    return (time.process_time() - t0) / len(packets)


def main() -> None:
    args = sys.argv[1:] + [None] * 3
    repo, n, pipe, ents = args[0], int(args[1] or 20000), int(args[2] or 1), int(args[3] or 1)
    state = ServerState(repo, Limits())
    fs = frames(n, ents)
    packets = [b"".join(fs[i:i + pipe]) for i in range(0, n, pipe)]
    out: dict[str, list[float]] = {"Connection": [], "AnswerOnly": [], "FastConnection": []}
    for _ in range(7):  # alternating rounds
        for cls in (Connection, AnswerOnly, FastConnection):
            out[cls.__name__].append(run(cls, state, packets) / pipe * 1e6)
    for name, xs in out.items():
        print(f"{name:15} entities {ents:3} pipeline {pipe:3}: {statistics.median(xs):6.2f} us CPU per GET "
              f"(median of {len(xs)})")


if __name__ == "__main__":
    main()
