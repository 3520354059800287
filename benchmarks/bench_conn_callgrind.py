"""Instructions the server spends per GET, counted by callgrind (deterministic on a shared,
noisy machine, where timings are not): ``fstore serve`` under valgrind, a warm-up, the
counters zeroed, N GETs (one at a time on one connection, or PIPELINE per packet), dumped.

usage: python benchmarks/bench_conn_callgrind.py [REPO [TREE [N [PIPELINE [ENTITIES]]]]]
REPO: the bench repository (default: bench-data/loadgen/repo of the checkout this script sits in,
made by ``python benchmarks/bench_loadgen.py --keep bench-data/loadgen``); TREE: a checkout with
built extensions, put first on PYTHONPATH (default: the checkout this script sits in).
"""
from __future__ import annotations

import glob
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time

import msgpack

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout this script sits in
DEFAULT_REPO = os.path.join(HERE, "bench-data", "loadgen", "repo")


def frame(obj: object) -> bytes:
    body = msgpack.packb(obj)
    return struct.pack(">I", len(body)) + body


def read_replies(sock: socket.socket, k: int, buf: bytearray) -> None:
    got = 0
    while got < k:
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            del buf[:4 + struct.unpack(">I", buf[:4])[0]]
            got += 1
        if got < k:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError("closed")
            buf += data


def main() -> None:
    args = sys.argv[1:] + [None] * 5
    repo, tree = args[0] or DEFAULT_REPO, args[1] or HERE
    n, pipe, ents = int(args[2] or 3000), int(args[3] or 1), int(args[4] or 1)
    if not os.path.isfile(os.path.join(repo, "fstore.yaml")):
        sys.exit(f"no bench repository at {repo}: make it with python benchmarks/bench_loadgen.py "
                 f"--keep {os.path.dirname(DEFAULT_REPO)}, or name one")
    out = tempfile.mkdtemp(prefix="cg-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": tree}
    fstore = os.path.join(os.path.dirname(sys.executable), "fstore")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", sys.executable,
                             fstore, "-r", repo, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=120)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
                time.sleep(1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        sock.sendall(frame([1, 1, {"version": 1, "client": "callgrind\r\n\r\n"}]))
        read_replies(sock, 1, buf)
        reqs = [frame([2, i + 2, {"features": ["events"], "entities": {"entity_id": [(i * ents + j) % 1000
                                                                                   for j in range(ents)]},
                                  "meta": True}]) for i in range(n + 200)]
        for r in reqs[:200]:  # warm-up: the shape prepared, caches filled
            sock.sendall(r)
            read_replies(sock, 1, buf)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        for i in range(200, n + 200, pipe):
            sock.sendall(b"".join(reqs[i:i + pipe]))
            read_replies(sock, len(reqs[i:i + pipe]), buf)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        sock.close()
        time.sleep(1)
        dumps = sorted(glob.glob(f"{out}/cg.*.*"), key=os.path.getmtime)
        text = open(dumps[-1]).read()
        total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))
        print(f"{tree}: entities {ents} pipeline {pipe}: {total / n:,.0f} instructions per GET ({n} GETs)")
    finally:
        proc.terminate()
        proc.wait(120)


if __name__ == "__main__":
    main()
