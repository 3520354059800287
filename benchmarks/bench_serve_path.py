#!/usr/bin/env python
"""The server's CPU per GET on the compiled path, in one process, with no network and no
load generator: what a change to the serving path costs, measured where a busy shared
machine's noise (run-queue waits, a client on the same cores) does not reach.

A worker's ``ServerState`` over a repository made by bench_server.py (``--repo``, e.g.
``/tmp/bench/work/repo``), one ``Connection`` on a transport that discards what it is
given, greeted with HELLO; then the same 1-entity GET frame (every feature of the view,
metadata on) handed to ``Connection.data_received`` ``--n`` times, ``--repeat`` times;
the best repeat is reported in ns per GET (the least disturbed). Cases, each where the
tree has it (``--fstore-src`` runs another tree):

* ``plain``: no listener, no slow-request log;
* ``request_id``: the GET carries a 16-character request_id (echoed in the reply);
* ``slow_log``: ``server.slow_request_ms`` set high enough that nothing is logged;
* ``metrics``: the Prometheus metrics listener attached (multiprocess mode, a temp folder).

    python benchmarks/bench_serve_path.py --repo /tmp/bench/work/repo [--fstore-src /tmp/before]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_CHILD = r"""
import json, os, sys, time
import msgpack
repo, n, repeat, case = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
from fstore.serving.server import Limits, ServerState
from fstore.serving.connection import Connection
from fstore.serving.protocol import frame


class Sink:
    def write(self, data): pass
    def set_write_buffer_limits(self, high=None): pass
    def get_extra_info(self, name, default=None): return default
    def is_closing(self): return False
    def close(self): pass
    def pause_reading(self): pass
    def resume_reading(self): pass


metrics = None
if case == "metrics":
    from fstore.serving.metrics import ServerMetrics
    metrics = ServerMetrics().attach()
state = ServerState(repo, Limits(), metrics)
if case == "slow_log":
    if not hasattr(state, "slow"):
        print(json.dumps(None)); sys.exit(0)
    state.slow = 3600.0
reg = state.online.snapshot()
view = next(iter(reg.views.values()))
refs = [f"{view['name']}:{f['name']}" for f in view["features"]]
key = view["join_keys"][0]
conn = Connection(state)
conn.connection_made(Sink())
conn.data_received(frame(msgpack.packb([1, 1, {"version": 1, "client": "bench"}])))
args = {"features": refs, "entities": {key: [1]}}
if case == "request_id":
    args["request_id"] = "req-0123456789ab"
get = frame(msgpack.packb([2, 7, args]))
conn.data_received(get)  # the Python path prepares the shape
best = None
for _ in range(repeat):
    t = time.perf_counter_ns()
    for _ in range(n):
        conn.data_received(get)
    took = (time.perf_counter_ns() - t) / n
    best = took if best is None else min(best, took)
print(json.dumps(best))
"""


def run(src: Path, repo: Path, n: int, repeat: int, case: str, cpu: int | None) -> float | None:
    env = {**os.environ, "PYTHONPATH": str(src)}
    with tempfile.TemporaryDirectory() as tmp:
        env["PROMETHEUS_MULTIPROC_DIR"] = tmp
        cmd = [sys.executable, "-c", _CHILD, str(repo), str(n), str(repeat), case]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu), *cmd]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp)  # not this tree
    if out.returncode != 0:
        raise SystemExit(f"{case} failed:\n{out.stderr[-2000:]}")
    value: Any = out.stdout.strip().splitlines()[-1]
    return None if value == "null" else float(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, required=True, help="a repository made by bench_server.py --keep")
    p.add_argument("--fstore-src", type=Path, action="append", default=[],
                   help="a tree to measure (repeatable; default: this script's tree); trees alternate per round")
    p.add_argument("--n", type=int, default=20_000, help="GETs per repeat")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3, help="rounds over trees and cases (the best is kept)")
    p.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = p.parse_args(argv)
    trees = args.fstore_src or [Path(__file__).resolve().parents[1]]
    cases = ("plain", "request_id", "slow_log", "metrics")
    best: dict[tuple[str, str], float | None] = {}
    for _ in range(args.rounds):
        for case in cases:
            for tree in trees:
                ns = run(tree, args.repo, args.n, args.repeat, case, args.cpu)
                old = best.get((str(tree), case))
                best[(str(tree), case)] = ns if old is None or ns is None else min(old, ns)
    print(time.strftime("%Y-%m-%d %H:%M:%S"), f"ns per GET on the compiled path, best of {args.rounds} rounds x "
          f"{args.repeat} repeats x {args.n} GETs (1 entity, every feature)")
    for case in cases:
        cells = [f"{best[(str(t), case)]:.0f}" if best[(str(t), case)] is not None else "-" for t in trees]
        print(f"{case:12s}", *(f"{str(t)}: {c}" for t, c in zip(trees, cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
