"""PUSH of raw events to an aggregation view: the cost of one push as pushes accumulate.

    PYTHONPATH=$PWD python benchmarks/bench_agg_push.py                 # this tree alone
    python benchmarks/bench_agg_push.py --ab /work/main $PWD --rounds 3  # two trees, alternating A/B

One round: a repository with ``--events`` events of ``--keys`` customers over the last 30
days (a float amount; sum over 1h, count over 1d, mean over 7d), ingested and materialized,
then ``--pushes`` pushes of ``--batch`` events each (random customers, dated in the last
minute) through ``FeatureStore.push``. It prints, as JSON, the median seconds of the first
and the last ``--window`` pushes, and the offline files (event parts, tile files) left.
With ``--ab``, rounds run in fresh processes with PYTHONPATH set to each tree in turn
(A, B, A, B, ...), and the ratio B/A of the medians of the last pushes is printed. Every
round builds its repository from the same seed. Timings on a shared machine are noisy:
compare ratios measured in the same run, not absolute numbers across runs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_aggregations import DEFS  # the same repository as the training-set benchmark


def one_round(args: argparse.Namespace) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fstore import FeatureStore

    rng = np.random.default_rng(args.seed)
    root = Path(tempfile.mkdtemp(prefix="bench_agg_push_"))
    try:
        (root / "data/tx").mkdir(parents=True)
        (root / "features").mkdir()
        (root / "fstore.yaml").write_text(f"project: bench\noffline_store: {{buckets: {args.buckets}}}\n")
        (root / "features/defs.yaml").write_text(DEFS)
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        day = 86_400_000_000
        now_us = int(now.timestamp() * 1_000_000)
        ts = now_us - rng.integers(60_000_000, 30 * day, args.events)
        pq.write_table(pa.table({"cid": rng.integers(0, args.keys, args.events),
                                 "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                                 "amount": rng.random(args.events) * 100}), root / "data/tx/a.parquet")
        with FeatureStore(root) as fs:
            fs.apply()
            fs.ingest()
            fs.materialize(now - dt.timedelta(days=40), now)
            times = []
            for _ in range(args.pushes):
                at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
                rows = {"cid": rng.integers(0, args.keys, args.batch).tolist(), "ts": [at] * args.batch,
                        "amount": (rng.random(args.batch) * 100).tolist()}
                t0 = time.perf_counter()
                fs.push("spend", rows)
                times.append(time.perf_counter() - t0)
        vdir = root / "data" / "offline" / "spend_v1"
        tiles = len(list((vdir / "tiles").rglob("*.parquet")))
        parts = len(list(vdir.glob("b*/*.parquet")))
        w = args.window
        return {"first_s": statistics.median(times[:w]), "last_s": statistics.median(times[-w:]),
                "tile_files": tiles, "part_files": parts}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--keys", type=int, default=5_000)
    p.add_argument("--buckets", type=int, default=4)
    p.add_argument("--pushes", type=int, default=150)
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--window", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="rounds per tree with --ab")
    p.add_argument("--ab", nargs=2, metavar=("TREE_A", "TREE_B"))
    args = p.parse_args()
    if not args.ab:
        print(json.dumps(one_round(args)))
        return
    argv = [a for a in sys.argv[1:]]
    i = argv.index("--ab")
    del argv[i:i + 3]
    results: dict[str, list[dict]] = {"A": [], "B": []}
    for r in range(args.rounds):
        for name, tree in zip("AB", args.ab):
            env = {**os.environ, "PYTHONPATH": tree}
            out = subprocess.run([sys.executable, __file__, *argv], env=env, capture_output=True, text=True,
                                 check=True, timeout=600)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            results[name].append(res)
            print(f"round {r + 1} {name} ({tree}): {json.dumps(res)}", flush=True)
    med = {k: {f: statistics.median(x[f] for x in v) for f in v[0]} for k, v in results.items()}
    print(json.dumps({"A": med["A"], "B": med["B"],
                      "ratio_last_B_over_A": med["B"]["last_s"] / med["A"]["last_s"],
                      "ratio_first_B_over_A": med["B"]["first_s"] / med["A"]["first_s"]}))


if __name__ == "__main__":
    main()
