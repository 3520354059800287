"""Smoke test of benchmarks/bench_logging.py at a tiny size: it runs end to end (logging off
and on, server and in process), its JSON has every figure, and at 100 % sampling every read
made in process is either in the log or counted as dropped by it. No timing assertions."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_bench_logging_smoke(tmp_path: Path) -> None:
    out = tmp_path / "logging.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_logging.py"), "--rows", "2000",
                           "--seconds", "0.5", "--warmup", "0.1", "--reads", "500", "--rounds", "1",
                           "--connections", "4", "--keep", str(tmp_path / "work"), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    summary = doc["summary"]
    assert summary["server_ratio"] > 0 and summary["in_process_ratio"] > 0
    for key in ("server_off", "server_on", "in_process_off", "in_process_on"):
        assert summary["medians"][key] > 0 and summary["cpu_us_per_read_medians"][key] > 0
    on = doc["runs"]["in_process_on"][0]
    assert on["logged_rows"] + on["dropped_counted"] == on["reads"] and on["logged_rows"] > 0
    server = doc["runs"]["server_on"][0]
    assert 0 < server["logged_rows"] <= server["sent"]
