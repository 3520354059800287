"""Smoke test of benchmarks/bench_server.py at a tiny size.

Runs the whole server benchmark (generated repository, bulk load, ``fstore serve``
pinned apart from the load generator, replies checked against in-process reads,
closed-loop runs of 1 and 100 entities at 1 and 4 connections) in a subprocess, with
Redis only when redis-server is installed (the CI machine may not have it). Checks
that it exits 0, that its JSON has every section with positive numbers, that the
check passed and that no server process is left. No timing assertions: the machine
running tests is shared.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_server.py"
SHAPES = (1, 100)
CONNECTIONS = (1, 4)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone too (it is no longer running)
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.timeout(240)
def test_bench_server_smoke(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    with_redis = shutil.which("redis-server") is not None
    if with_redis:
        pytest.importorskip("redis")
    out = tmp_path / "server.json"
    cmd = [sys.executable, str(SCRIPT), "--rows", "2000", "--seconds", "1", "--warmup", "0.2",
           "--connections", ",".join(map(str, CONNECTIONS)), "--keep", str(tmp_path / "work"), "--out", str(out)]
    if not with_redis:
        cmd.append("--no-redis")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=200)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())

    for section in ("meta", "args", "data", "redis", "check", "prefault", "results", "comparison", "targets", "notes"):
        assert section in result, section
    meta = result["meta"]
    assert meta["machine"]["nproc"] > 0 and meta["machine"]["ram_bytes"] > 0
    assert meta["pinning"]["server_cpus"] and meta["pinning"]["client_cpus"]
    assert meta["loadavg_start"] and meta["loadavg_end"]
    assert result["data"]["rows"] == 2000 and result["data"]["features"] == 20

    check = result["check"]
    assert check["ok"] is True and check["fstore"]["ok"] is True, check
    assert result["prefault"]["entities"] == 2000

    targets = ["fstore"] + (["redis"] if with_redis else [])
    if with_redis:
        assert check["redis"]["ok"] is True, check
        assert result["redis"]["load"]["keys"] == 2000
    else:
        assert "skipped" in result["redis"]["status"]

    seen = {(r["target"], r["entities_per_request"], r["connections"]) for r in result["results"]}
    assert seen == {(t, s, c) for t in targets for s in SHAPES for c in CONNECTIONS}
    for r in result["results"]:
        what = (r["target"], r["entities_per_request"], r["connections"])
        for key in ("requests", "window_s", "requests_per_s", "entity_rows_per_s", "p50_ms", "p99_ms", "p999_ms",
                    "server_cpu_us_per_request", "client_cpu_us_per_request"):
            assert r[key] > 0, (what, key)
        assert r["p50_ms"] <= r["p99_ms"] <= r["p999_ms"] <= r["max_ms"], what
        assert r["entity_rows_per_s"] == pytest.approx(r["requests_per_s"] * r["entities_per_request"])

    assert len(result["comparison"]) == (len(SHAPES) * len(CONNECTIONS) if with_redis else 0)
    for c in result["comparison"]:
        assert c["throughput_ratio"] > 0 and c["p99_ratio"] > 0
    # the targets are for 32 connections: reported as not measured at this size
    assert len(result["targets"]) == 5 and all(t["measured"] is False for t in result["targets"])

    # every server the benchmark started is gone
    for name in ("fstore_server", "redis_server"):
        if name in meta["pinning"]:
            assert _gone(meta["pinning"][name]["pid"]), name


@pytest.mark.timeout(240)
def test_bench_server_auth_compare_smoke(tmp_path: Path) -> None:
    """``--auth-compare``: plain, token, TLS and both, in one run; every case checked against
    the plain server's replies, measured, and compared to plain; no server left."""
    pytest.importorskip("uvloop")
    if shutil.which("openssl") is None:
        pytest.fail("--auth-compare needs openssl")
    out = tmp_path / "auth.json"
    cmd = [sys.executable, str(SCRIPT), "--auth-compare", "--rows", "2000", "--seconds", "0.3", "--warmup", "0.1",
           "--connections", "2", "--entities", "1", "--rounds", "1", "--keep", str(tmp_path / "work"),
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=200)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    result = json.loads(out.read_text())
    assert result["check"]["ok"] is True, result["check"]
    [row] = result["auth_compare"]
    assert set(row["cases"]) == {"plain", "token", "tls", "tls+token"}
    assert set(row["vs_plain"]) == {"token", "tls", "tls+token"}
    for case in row["cases"].values():
        assert case["requests_per_s"] > 0 and case["server_cpu_us_per_request"] > 0
    for ratio in row["vs_plain"].values():
        assert ratio["throughput_ratio"] > 0 and ratio["server_cpu_ratio"] > 0
    for log in (tmp_path / "work").glob("fstore-*.log"):
        assert "Traceback" not in log.read_text(), log
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "work")], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout
