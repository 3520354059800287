"""Smoke test of benchmarks/bench_client.py at a tiny size: it starts a real server (and
redis-server, when installed), runs the clients and prints their CPU per request and the
ratios. No timing assertions."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_client_smoke() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_client.py"), "--rounds", "1", "--requests", "300",
           "--max-seconds", "60"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = {m[0]: float(m[1])
               for m in re.findall(r"(fstore|peer|redis)\s+client CPU\s+([0-9.]+) us/request", proc.stdout)}
    want = {"fstore", "peer"} | ({"redis"} if shutil.which("redis-server") else set())
    assert set(figures) == want and all(v > 0 for v in figures.values()), proc.stdout
    assert re.search(r"ratio fstore/peer \(client CPU\): [0-9.]+", proc.stdout), proc.stdout
    if "redis" in want:
        assert re.search(r"ratio fstore/redis \(client CPU\): [0-9.]+", proc.stdout), proc.stdout
