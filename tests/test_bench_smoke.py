"""Smoke test of benchmarks/bench_historical.py at a tiny scale.

Runs the whole benchmark (data generation, fstore and the peers each in their
own subprocess, the value-for-value agreement check) on both shapes, then
checks fstore's training set row by row against a brute-force reading of the
point-in-time rules, so that fstore and the peers cannot agree on a wrong
answer. No timing assertions: the machine running tests is shared.
"""
from __future__ import annotations

import bisect
import importlib.util
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_historical.py"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _start(data: Path, shape_args: list[str], peers: list[str], plans: str) -> tuple[subprocess.Popen, Path]:
    out = data / "results.json"
    cmd = [sys.executable, str(SCRIPT), *shape_args, "--peers", ",".join(peers), "--peer-plans", plans,
           "--keep-data", str(data), "--out", str(out), "--timeout", "240"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    return proc, out


@pytest.fixture(scope="module")
def bench_runs(tmp_path_factory):
    """Big shape with both peer formulations, wide shape (1,000 features) with one; the two
    benchmark runs go side by side (their timings are not looked at)."""
    # pandas is in the test extra: it is required, the other peers are optional
    peers = ["pandas"] + [p for p in ("duckdb", "polars") if _installed(p)]
    big = tmp_path_factory.mktemp("bench_big")
    wide = tmp_path_factory.mktemp("bench_wide")
    started = {
        # one offline bucket: entity rows with a null key then share a bucket with every key
        "big": (*_start(big, ["--shape", "big", "--scale", "0.002", "--buckets", "1"], peers, "narrow,direct"), big,
                [f"{p}-{x}" for p in peers for x in ("narrow", "direct")]),
        "wide": (*_start(wide, ["--shape", "wide", "--wide-scale", "0.005"], peers, "narrow"), wide,
                 [f"{p}-narrow" for p in peers]),
    }
    runs = {}
    for shape, (proc, out, data, runners) in started.items():
        try:
            stdout, stderr = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        runs[shape] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out, data, runners)
    return runs


@pytest.mark.parametrize("shape", ["big", "wide"])
def test_benchmark_runs_and_engines_agree(bench_runs, shape):
    proc, out, _data, runners = bench_runs[shape]
    assert proc.returncode == 0, (f"benchmark failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    report = json.loads(out.read_text())
    assert report["agree"] is True
    assert report["crashed"] == [] and report["timeouts"] == []
    assert sorted(report["runners"]) == sorted(runners)
    res = report["shapes"][shape]
    assert res["agree"] is True
    runs = res["runs"]
    for key in ("fstore:ingest_join", "fstore:join", *(f"{r}:{m}" for r in runners for m in ("join", "ingest_join"))):
        assert runs[key]["status"] == "ok", (key, runs[key])
        assert runs[key]["rows"] == res["entity_rows"]
        assert runs[key]["peak_rss_mib"] > 0
    compared = set(res["compared"])
    assert {"fstore:join", "pandas-narrow:join", "pandas-narrow:ingest_join"} <= compared
    for r in runners:
        assert {f"{r}:join", f"{r}:ingest_join"} <= compared
    assert all(r["agree"] for r in res["comparison"]["results"].values())
    if shape == "wide":
        assert res["features"] == 1000


def test_fstore_result_matches_brute_force(bench_runs):
    """The big shape's fstore result against the rules applied literally, and the data
    really holds the corner cases (ties, ttl boundaries, nulls, defaults, unknown keys)."""
    _proc, _out, data, _runners = bench_runs["big"]
    shape_dir = next(data.glob("big-*"))  # checked even when the benchmark itself failed
    assert (shape_dir / "results" / "fstore-ingest_join.parquet").exists(), "fstore produced no result"
    spec = json.loads((shape_dir / "spec.json").read_text())
    entity = pq.read_table(shape_dir / "entity.parquet").to_pylist()
    result = pq.read_table(shape_dir / "results" / "fstore-ingest_join.parquet")
    assert result.column_names == spec["entity_columns"] + [
        f"{v['name']}__{f['name']}" for v in spec["views"] for f in v["features"]]
    got = result.to_pydict()
    seen: dict[str, int] = defaultdict(int)
    for v in spec["views"]:
        rows = pq.read_table(shape_dir / "sources" / f"{v['name']}.parquet").to_pylist()
        by_key: dict[tuple, list] = defaultdict(list)
        for r in rows:
            by_key[tuple(r[k] for k in v["keys"])].append(r)
        for lst in by_key.values():
            lst.sort(key=lambda r: (r["event_ts"], r["created_ts"]))
        ttl_us = v["ttl_us"] or 0
        for i, e in enumerate(entity):
            key = tuple(e[k] for k in v["keys"])
            t = e["event_timestamp"]
            hist = by_key.get(key, []) if None not in key else []
            j = bisect.bisect_right([r["event_ts"] for r in hist], t)  # rows with ts <= t: hist[:j]
            win = hist[j - 1] if j else None
            if win is not None and ttl_us:
                age_us = _us(t - win["event_ts"])
                if age_us > ttl_us:
                    win = None
                    seen["ttl miss"] += 1
                elif age_us == ttl_us:
                    seen["exactly at ttl"] += 1
            if None in key:
                seen["null key"] += 1
            elif not hist:
                seen["unknown key"] += 1
            if win is not None:
                if j >= 2 and hist[j - 2]["event_ts"] == win["event_ts"]:
                    seen["event-time tie"] += 1
                if win["event_ts"] == t:
                    seen["exactly at entity ts"] += 1
            for f in v["features"]:
                want = win[f["name"]] if win is not None else f["default"]
                if win is not None and want is None:
                    seen["stored null"] += 1
                if win is None and f["default"] is not None:
                    seen["default"] += 1
                col = f"{v['name']}__{f['name']}"
                assert got[col][i] == want, (col, i, e, want, got[col][i])
    for case in ("ttl miss", "exactly at ttl", "null key", "unknown key", "event-time tie",
                 "exactly at entity ts", "stored null", "default"):
        assert seen[case] > 0, f"the generated data has no {case!r} case: {dict(seen)}"


def _us(td) -> int:
    """Whole microseconds of a timedelta."""
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
