"""Status access on a 1,000-row x 3-feature OnlineResponse (issue 10: statuses() took longer
than the fetch): the old per-value ``Status(code)`` call against ``statuses()`` (a tuple
index per value) and ``status_matrix`` (a read-only view, no copy), in one run.

    .venv/bin/python benchmarks/bench_statuses.py [--rows 1000]
"""
from __future__ import annotations

import argparse
import timeit

import numpy as np

from fstore._ext._constants import Status
from fstore.online.response import OnlinePlan, OnlineResponse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    n = ap.parse_args().rows
    plan = OnlinePlan(["a", "b", "c"], ["int64"] * 3, [0, 0, 0], [None], ["v_v1"], ["k"])
    codes = np.random.default_rng(1).integers(0, 4, 3 * n).astype(np.uint8)
    resp = OnlineResponse([{"k": i} for i in range(n)], plan, [[1] * n] * 3, bytearray(codes.tobytes()),
                          bytearray(8 * n))
    cases = {"Status(code) per value (before)": lambda: [[Status(s) for s in row] for row in resp.status_matrix],
             "statuses(name) x 3": lambda: [resp.statuses(x) for x in "abc"],
             "status_matrix": lambda: resp.status_matrix}
    base = None
    for name, fn in cases.items():
        t = min(timeit.repeat(fn, number=50, repeat=5)) / 50
        base = base or t
        print(f"{name:34s} {t * 1e3:8.3f} ms  {base / t:7.1f}x")


if __name__ == "__main__":
    main()
