"""Smoke test of benchmarks/bench_loadgen.py at a tiny size: it starts redis-server and
fstore serve, runs redis-benchmark and fstore bench against them, and writes every figure.
No timing assertions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_bench_loadgen_smoke(tmp_path: Path) -> None:
    out = tmp_path / "loadgen.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_loadgen.py"), "--rows", "500", "--rounds", "1",
           "--seconds", "0.5", "--connections", "4", "--entities", "1,10", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["median"]) == {"redis-benchmark GET", "fstore bench --redis, 1 entity(ies)",
                                  "fstore bench -> fstore serve, 1 entity(ies)", "fstore bench --redis, 10 entity(ies)",
                                  "fstore bench -> fstore serve, 10 entity(ies)"}
    for name, m in doc["median"].items():
        assert m["rps"] > 0 and m["client_cpu_us"] > 0 and m["server_cpu_us"] >= 0, (name, m)
    assert "| redis-benchmark GET |" in proc.stdout
