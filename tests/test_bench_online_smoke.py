"""Smoke test of benchmarks/bench_online.py at a tiny size.

Runs the whole online benchmark (two generated repositories, apply + ingest,
materialize / load / floor writes, checked reads against the floor database) in
a subprocess and checks that it exits 0 and that its JSON has every section
with positive numbers. No timing assertions: the machine running tests is shared.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_online.py"

READ_METHODS = ("fstore", "to_dict", "fstore+to_dict", "to_dict_metadata", "floor")
WRITE_OPS = ("materialize", "load", "materialize_presized", "load_presized", "floor_putmulti",
             "materialize_small", "floor_putmulti_small")


def test_bench_online_smoke(tmp_path: Path) -> None:
    out = tmp_path / "online.json"
    keep = tmp_path / "work"
    cmd = [sys.executable, str(SCRIPT), "--rows", "20000", "--entities-small", "2000", "--features", "20",
           "--calls-1", "400", "--calls-100", "40", "--repeat", "1", "--keep", str(keep), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())

    for section in ("meta", "args", "data", "writes", "check", "prefault", "reads", "targets"):
        assert section in result, section
    machine = result["meta"]["machine"]
    assert machine["nproc"] > 0 and machine["ram_bytes"] > 0
    assert "pinned" in result["meta"]["affinity"]
    assert result["check"]["ok"] is True

    writes = result["writes"]
    for op in WRITE_OPS:
        entry = writes[op]
        assert entry["rows"] > 0 and entry["median_seconds"] > 0 and entry["rows_per_s"] > 0, op
        assert entry["size_on_disk"] > 0 and entry["bytes_per_row"] > 0, op
        for run in entry["runs"]:
            assert run["rows_written"] == run["rows"], op
    assert writes["materialize"]["rows"] == writes["load"]["rows"] == writes["floor_putmulti"]["rows"] == 20000
    assert writes["materialize_small"]["rows"] == 2000

    for label, entities in (("large", 20000), ("small", 2000)):
        store = result["reads"][label]
        assert store["entities"] == entities
        for per_call in ("1", "100"):
            for method in READ_METHODS:
                stats = store[per_call][method]
                assert stats["calls"] > 0, (label, per_call, method)
                for key in ("median_us", "p99_us", "mean_us"):
                    assert stats[key] > 0, (label, per_call, method, key)
                assert stats["p99_us"] >= stats["median_us"]

    names = [t["name"] for t in result["targets"]]
    assert len(names) == 8 and all(t["value"] > 0 for t in result["targets"])
    # the reused data (--keep) is there for a second run
    assert (keep / "large" / "bench_spec.json").exists()
