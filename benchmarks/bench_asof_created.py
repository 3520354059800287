#!/usr/bin/env python
"""The per-bucket pick of ``as_of: created_timestamp`` against the event-time kernel.

Both run on the same sorted view rows and entity rows (fixed seed), in this process,
each timed as the best of ``--rounds`` runs: ``event`` is ``asof_indices`` alone,
``created`` is ``created_asof_indices`` (a sortedness check, one lexsort by ready time,
a running maximum, the kernel on the reordered rows, the ttl test). It also checks the
two agree where they must: with every row created at its event time the rules coincide.

Usage::

    python benchmarks/bench_asof_created.py --rows 2000000 --keys 100000 --entities 1000000
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fstore._ext._asof import asof_indices
from fstore.offline.asof_created import created_asof_indices


def data(rows: int, keys: int, entities: int, seed: int = 1):
    """Sorted view rows (key, event, created = event + a delay up to 2 days) and entity rows."""
    rng = np.random.default_rng(seed)
    day = 86_400_000_000
    k = rng.integers(0, keys, rows)
    t = rng.integers(0, 365 * day, rows)
    c = t + rng.integers(0, 2 * day, rows)
    order = np.lexsort((c, t, k))
    vk, vt, vc = np.ascontiguousarray(k[order].reshape(-1, 1)), t[order], c[order]
    ek = np.ascontiguousarray(rng.integers(0, keys, entities).reshape(-1, 1))
    et = rng.integers(0, 366 * day, entities)
    return vk, vt, vc, ek, et, np.ones(entities, dtype=np.uint8), 30 * day


def best(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    vk, vt, vc, ek, et, ev, ttl = data(a.rows, a.keys, a.entities)
    event = best(lambda: asof_indices(vk, vt, vc, ek, et, ev, ttl), a.rounds)
    created = best(lambda: created_asof_indices(vk, vt, vc, ek, et, ev, ttl), a.rounds)
    same = np.array_equal(asof_indices(vk, vt, vt, ek, et, ev, ttl), created_asof_indices(vk, vt, vt, ek, et, ev, ttl))
    print(json.dumps({"rows": a.rows, "keys": a.keys, "entities": a.entities, "event_s": round(event, 4),
                      "created_s": round(created, 4), "ratio": round(created / event, 2), "agree_on_time": same}))
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
