"""``fstore drift``'s comparison of 20 features over 10M rows (issue 11: under 10 s): 14
float64, 3 int64 and 3 string features, reference and current 10M rows each, in memory
(the PSI, null rates and statistics of ``compare_feature``; reading the sides is I/O and
not counted). One feature's columns are built per dtype and reused, so memory stays near
1 GB.

    .venv/bin/python benchmarks/bench_drift.py [--rows 10000000] [--features 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from fstore.monitoring.drift import compare_feature, compare_features
from fstore.monitoring.drift_data import Output

MIX = ["float64"] * 14 + ["int64"] * 3 + ["string"] * 3


def columns(dtype: str, n: int, shift: float, rng: np.random.Generator) -> pa.ChunkedArray:
    """n values of the dtype with 1% nulls; ``shift`` moves the distribution."""
    mask = rng.random(n) < 0.01
    if dtype == "float64":
        return pa.chunked_array([pa.array(rng.normal(shift, 1, n), mask=mask)])
    if dtype == "int64":
        return pa.chunked_array([pa.array(rng.poisson(3 + shift, n), pa.int64(), mask=mask)])
    cats = pa.array([f"segment-{i}" for i in range(12)])
    idx = np.minimum(rng.zipf(1.5 + shift, n) - 1, 11)
    return pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array(idx, mask=mask), cats).cast(pa.string())])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--features", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(3)
    mix = (MIX * (args.features // len(MIX) + 1))[:args.features]
    data = {d: (columns(d, args.rows, 0.0, rng), columns(d, args.rows, 0.3, rng)) for d in set(mix)}
    outputs, ref_cols, cur_cols = [], {}, {}
    for i, dtype in enumerate(mix):
        outputs.append(Output(f"f{i}", {"name": "v"}, {"name": f"f{i}", "dtype": dtype}))
        ref_cols[f"f{i}"], cur_cols[f"f{i}"] = data[dtype]
    t = time.perf_counter()
    sequential = [compare_feature(o, ref_cols[o.column], cur_cols[o.column]).entry for o in outputs]
    one_core = time.perf_counter() - t
    t = time.perf_counter()
    entries = [f.entry for f in compare_features(outputs, ref_cols, cur_cols)]
    total = time.perf_counter() - t
    assert entries == sequential, "the threaded comparison must equal the sequential one"
    for i, entry in enumerate(entries):
        if i < 3 or mix[i] != mix[i - 1]:
            print(f"  f{i:<3d} {mix[i]:8s} psi {entry['psi']:.4f} ({entry['level']})")
    print(f"one feature at a time: {one_core:.2f} s")
    print(f"{args.features} features x {args.rows:,} rows (reference and current each): {total:.2f} s")


if __name__ == "__main__":
    main()
