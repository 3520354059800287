"""Smoke test of benchmarks/bench_skew.py at a tiny scale: the whole run (repository, log,
the check in its own process) finds exactly the mismatches it planted. No timing assertions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_skew_finds_what_it_planted(tmp_path: Path) -> None:
    out = tmp_path / "skew.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_skew.py"), "--rows", "25000",
                           "--features", "6", "--entities", "800", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["rows"] == 25000 and result["features"] == 6
    assert result["mismatches"] == result["planted"] > 0
