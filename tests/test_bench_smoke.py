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

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_historical.py"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    # pandas is in the test extra: it is required, the other peers are optional
    peers = ["pandas"] + [p for p in ("duckdb", "polars") if _installed(p)]
    data = tmp_path_factory.mktemp("bench")
    out = data / "results.json"
    cmd = [sys.executable, str(SCRIPT), "--shape", "big,wide", "--scale", "0.002", "--wide-scale", "0.005",
           "--peers", ",".join(peers), "--keep-data", str(data), "--out", str(out), "--timeout", "240"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    return proc, out, data, peers


def test_benchmark_runs_and_engines_agree(bench_run):
    proc, out, _data, peers = bench_run
    assert proc.returncode == 0, f"benchmark failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    report = json.loads(out.read_text())
    assert report["agree"] is True
    assert report["crashed"] == [] and report["timeouts"] == []
    for shape in ("big", "wide"):
        res = report["shapes"][shape]
        assert res["agree"] is True
        runs = res["runs"]
        for key in ("fstore:ingest_join", "fstore:join", *(f"{p}:{m}" for p in peers for m in ("join", "ingest_join"))):
            assert runs[key]["status"] == "ok", (shape, key, runs[key])
            assert runs[key]["rows"] == res["entity_rows"]
            assert runs[key]["peak_rss_mib"] > 0
        compared = set(res["compared"])
        assert {"fstore:join", "pandas:join", "pandas:ingest_join"} <= compared
        for p in peers:
            assert {f"{p}:join", f"{p}:ingest_join"} <= compared
        assert all(r["agree"] for r in res["comparison"]["results"].values())
    assert report["shapes"]["wide"]["features"] == 1000


def test_fstore_result_matches_brute_force(bench_run):
    """The big shape's fstore result against the rules applied literally, and the data
    really holds the corner cases (ties, ttl boundaries, nulls, defaults, unknown keys)."""
    proc, _out, data, _peers = bench_run
    assert proc.returncode == 0
    shape_dir = next(data.glob("big-*"))
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
